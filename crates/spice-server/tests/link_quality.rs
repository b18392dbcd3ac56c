//! Link quality with real traffic: the main channel's bandwidth test picks LAN or WAN
//! per client, WAN clients get JPEG and ZLIB_GLZ images, and video streams adapt their
//! rate to spice-gtk's STREAM_REPORTs.
//!
//! A slow link is a veth pair between two network namespaces this test creates (the
//! server in one, the client in the other), shaped with tc's token bucket (tbf). No
//! traffic leaves those namespaces. Names start with `sl`; ports are 5970–5979.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::*;
use common::*;
use spice_server::{Config, ServerStats, StatsHandle, WanCompression};

/// A shaped link of this file's namespaces (`sl…`, 10.213.`idx`.0/24), or `None` after
/// printing why the test is skipped.
fn net_or_skip(idx: u8, rate: Option<&str>) -> Option<Net> {
    Net::or_skip("sl", 213, idx, rate)
}

/// A synthetic desktop: a two-colour plaid root window.
fn synthetic_root(x: &Xvfb) {
    assert!(x.run(
        "xsetroot",
        &["-mod", "16", "16", "-fg", "#336699", "-bg", "#ddeeff"]
    ));
}

/// Shows a photo covering most of the screen and waits until it is drawn.
fn show_photo(x: &mut Xvfb, dir: &Path) {
    let img = plasma(dir, "photo.png", "600x440", 7);
    x.spawn("display", &["-title", "photo", "-geometry", "+20+20", &img]);
    assert!(x.wait_window("photo"), "display did not map");
    std::thread::sleep(Duration::from_millis(700));
}

fn tools_missing(extra: &[&str]) -> bool {
    let mut all = vec![
        "Xvfb", "xsetroot", "import", "display", "convert", "ip", "tc",
    ];
    all.extend_from_slice(extra);
    skip_without_netns(&all)
}

/// On a 4 Mbit/s link the bandwidth test picks WAN: the synthetic desktop arrives as
/// ZLIB_GLZ (lossless, exact pixels), a photographic screen as JPEG within 30 dB PSNR.
#[test]
fn slow_link_is_wan_zlib_glz_exact_and_jpeg_within_psnr() {
    if tools_missing(&["spicy-screenshot", "timeout"]) {
        return;
    }
    let Some(net) = net_or_skip(1, Some("4mbit")) else {
        return;
    };
    let dir = tempdir();
    let mut x = Xvfb::start(640, 480);
    synthetic_root(&x);
    let port = 5971;
    let srv = serve_in(&net.srv, &x.name, ns_config(&net.srv_ip, port));

    let shot = dir.path().join("wan1.ppm");
    let took = ns_screenshot(&net, port, &shot).expect("screenshot over the slow link");
    let st: ServerStats = srv.stats.stats();
    let t = st.net_test.expect("bandwidth test result");
    eprintln!(
        "slow link: latency {:.1} ms, {:.2} Mbit/s measured, first frame in {:.0} ms, display {} B",
        t.latency.as_secs_f64() * 1000.0,
        t.bits_per_sec as f64 / 1e6,
        took.as_secs_f64() * 1000.0,
        st.display_bytes_out
    );
    assert!(t.wan, "4 Mbit/s link not seen as WAN: {t:?}");
    assert!(
        (1_000_000..8_000_000).contains(&t.bits_per_sec),
        "measured {} bit/s on a 4 Mbit/s link",
        t.bits_per_sec
    );
    assert!(st.zlib_glz_images >= 1, "no ZLIB_GLZ image: {st:?}");
    assert_eq!(st.jpeg_images, 0, "JPEG for a synthetic screen");
    let (w, h, got) = read_ppm(&shot).expect("screenshot ppm");
    let (rw, rh, want) = x.reference(dir.path());
    assert_eq!((w, h), (rw, rh));
    assert_eq!(diff_pixels(&got, &want), 0, "ZLIB_GLZ is lossless");

    show_photo(&mut x, dir.path());
    let before = srv.stats.stats().display_bytes_out;
    let shot = dir.path().join("wan2.ppm");
    let took = ns_screenshot(&net, port, &shot).expect("second screenshot");
    let st = srv.stats.stats();
    assert!(
        st.jpeg_images >= 1,
        "no JPEG image for a photo on WAN: {st:?}"
    );
    let (_, _, got) = read_ppm(&shot).expect("screenshot ppm");
    let (_, _, want) = x.reference(dir.path());
    let p = psnr(&got, &want);
    eprintln!(
        "photo screen on WAN: JPEG, PSNR {p:.1} dB, {} B on the display channel, {:.0} ms",
        st.display_bytes_out - before,
        took.as_secs_f64() * 1000.0
    );
    assert!(p >= 30.0, "JPEG screen PSNR {p:.1} dB");
}

/// On loopback the test picks LAN: the same photographic screen stays lossless
/// (exact pixels, no JPEG); forcing `jpeg_wan_compression=always` sends JPEG anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_lan_and_lossless_unless_jpeg_is_forced() {
    if skip_without(&[
        "Xvfb",
        "xsetroot",
        "import",
        "display",
        "convert",
        "spicy-screenshot",
    ]) {
        return;
    }
    let dir = tempdir();
    let mut x = Xvfb::start(640, 480);
    synthetic_root(&x);
    tokio::task::block_in_place(|| show_photo(&mut x, dir.path()));
    let (_, _, want) = tokio::task::block_in_place(|| x.reference(dir.path()));

    let srv = start_server(&x.name, no_auth()).await;
    let port = srv.addr.unwrap().port().to_string();
    let shot = dir.path().join("lan.ppm");
    tokio::task::block_in_place(|| screenshot(&["-h", "127.0.0.1", "-p", &port], &shot, &[]))
        .expect("screenshot");
    let st = srv.stats.stats();
    let t = st.net_test.expect("bandwidth test result");
    eprintln!(
        "loopback: latency {:.2} ms, {} Mbit/s measured; photo screen lossless: {} B",
        t.latency.as_secs_f64() * 1000.0,
        if t.bits_per_sec == u64::MAX {
            "too fast to time".to_string()
        } else {
            format!("{:.0}", t.bits_per_sec as f64 / 1e6)
        },
        st.display_bytes_out
    );
    assert!(!t.wan, "loopback seen as WAN: {t:?}");
    assert_eq!((st.jpeg_images, st.zlib_glz_images), (0, 0), "{st:?}");
    let (_, _, got) = read_ppm(&shot).expect("ppm");
    assert_eq!(diff_pixels(&got, &want), 0, "LAN must be lossless");
    drop(srv);

    let forced = Config {
        jpeg_wan_compression: WanCompression::Always,
        zlib_glz_wan_compression: WanCompression::Always,
        ..no_auth()
    };
    let srv = start_server(&x.name, forced).await;
    let port = srv.addr.unwrap().port().to_string();
    tokio::task::block_in_place(|| screenshot(&["-h", "127.0.0.1", "-p", &port], &shot, &[]))
        .expect("screenshot");
    let st = srv.stats.stats();
    assert!(!st.net_test.expect("bandwidth test").wan);
    assert!(st.jpeg_images >= 1, "forced JPEG not used: {st:?}");
    let (_, _, got) = read_ppm(&shot).expect("ppm");
    let p = psnr(&got, &want);
    eprintln!(
        "forced JPEG on LAN: PSNR {p:.1} dB, {} B",
        st.display_bytes_out
    );
    assert!(p >= 30.0 && p.is_finite(), "forced JPEG PSNR {p:.1} dB");
}

/// What a stream did while spicy watched it for a while.
#[derive(Debug)]
struct StreamRun {
    frames_per_sec: f64,
    bytes_per_sec: f64,
    reports: u64,
    min_quality: u8,
    end_quality: u8,
    end_fps: u32,
    /// Rate-control steps: down for reports, down for the link, up.
    steps: (u64, u64, u64),
}

/// Runs spicy (on `viewer`) from the client namespace against `port`, waits for the
/// video stream, then measures it for `secs` seconds.
fn watch_stream(net: &Net, viewer: &Xvfb, port: u16, stats: &StatsHandle, secs: u64) -> StreamRun {
    let _spicy = net.spicy(&viewer.name, port);
    let t0 = Instant::now();
    while stats.stats().video_streams == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "no video stream: {:?}",
            stats.stats()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the rate control settle, then measure.
    std::thread::sleep(Duration::from_secs(3));
    let a = stats.stats();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let b = stats.stats();
    let el = t.elapsed().as_secs_f64();
    StreamRun {
        frames_per_sec: (b.video_frames - a.video_frames) as f64 / el,
        bytes_per_sec: (b.video_bytes - a.video_bytes) as f64 / el,
        reports: b.stream_reports,
        min_quality: b.stream_min_quality,
        end_quality: b.stream_quality,
        end_fps: b.stream_fps,
        steps: (
            b.stream_steps_down_report,
            b.stream_steps_down_link,
            b.stream_steps_up,
        ),
    }
}

/// spicy's STREAM_REPORTs drive the stream: on a 1 Mbit/s link late frames lower its
/// JPEG quality and frame rate; on an unshaped link it keeps the top quality and rate.
#[test]
fn stream_reports_lower_the_rate_on_a_slow_link_only() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if tools_missing(&["spicy", "animate", "env", "xdpyinfo"]) {
        return;
    }
    let Some(fast) = net_or_skip(2, None) else {
        return;
    };
    let Some(slow) = net_or_skip(3, Some("1mbit")) else {
        return;
    };
    let dir = tempdir();
    let mut x = Xvfb::start(640, 480);
    assert!(x.run("xsetroot", &["-solid", "#204060"]));
    let frames = plasma_frames(dir.path(), "f", 8, "320x240");
    x.animate(&frames, "video");
    let viewer = Xvfb::start(1024, 768);
    assert!(viewer.ready(), "viewer Xvfb");

    let srv = serve_in(&fast.srv, &x.name, ns_config(&fast.srv_ip, 5972));
    let f = watch_stream(&fast, &viewer, 5972, &srv.stats, 6);
    drop(srv);
    eprintln!("unshaped link: {f:?}");
    let srv = serve_in(&slow.srv, &x.name, ns_config(&slow.srv_ip, 5973));
    let s = watch_stream(&slow, &viewer, 5973, &srv.stats, 6);
    let net_test = srv.stats.stats().net_test;
    drop(srv);
    eprintln!("1 Mbit/s link: {s:?}, {net_test:?}");

    assert!(
        f.reports > 0 && s.reports > 0,
        "spicy sent no STREAM_REPORT"
    );
    // Unshaped, frames arrive in time: the stream stays at (or, after a hiccup of this
    // busy machine, within one step of) the top quality and full rate.
    assert!(
        f.min_quality >= 72 && f.end_fps == 30,
        "unshaped link lost quality or rate: {f:?}"
    );
    assert!(
        f.frames_per_sec >= 8.0,
        "unshaped link: {:.1} frames/s",
        f.frames_per_sec
    );
    assert!(
        s.min_quality < 85 && (s.end_quality < 85 || s.end_fps < 30),
        "slow link kept full quality/rate: {s:?}"
    );
    assert!(s.steps.0 + s.steps.1 >= 1, "no step down: {s:?}");
    // Lower quality shows in the frames' size.
    let per_frame = |r: &StreamRun| r.bytes_per_sec / r.frames_per_sec.max(0.1);
    assert!(
        per_frame(&s) < per_frame(&f),
        "frames on the slow link are not smaller: {s:?} vs {f:?}"
    );
}

/// Animated frames of flat colours and hard edges (a UI redrawn fast, not a video).
fn synthetic_frames(dir: &Path) -> Vec<String> {
    (0..6)
        .map(|i| {
            let rect = format!("rectangle {} 20 {} 160", 10 + i * 30, 60 + i * 30);
            convert(
                &[
                    "-size",
                    "240x180",
                    "xc:#e0e0e0",
                    "-fill",
                    "#2050c0",
                    "-draw",
                    &rect,
                ],
                &dir.join(format!("s{i}.png")),
            )
        })
        .collect()
}

/// An X server showing `frames` animated at 25 frames a second.
fn animated(frames: &[String]) -> Xvfb {
    let mut x = Xvfb::start(640, 480);
    assert!(x.run("xsetroot", &["-solid", "#204060"]));
    x.animate(frames, "anim");
    x
}

/// Follows a server's display channel for `secs` seconds as a client that decodes
/// everything; returns (streams created, frames, image draws) as the client saw them.
async fn follow(x: &Xvfb, mode: spice_server::StreamingVideo, secs: u64) -> (usize, usize, usize) {
    let srv = start_server(
        &x.name,
        Config {
            streaming_video: mode,
            ..no_auth()
        },
    )
    .await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut disp = link_channel(addr, sid, spice_proto::consts::channel::DISPLAY).await;
    disp.send(&spice_gtk_display_init()).await;
    let mut canvas = Canvas::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), disp.recv()).await {
            canvas.apply(&m.expect("display channel closed"));
        }
    }
    let st = srv.stats.stats();
    assert_eq!(canvas.streams_created as u64, st.video_streams);
    (canvas.streams_created, canvas.stream_frames, canvas.draws)
}

/// `streaming_video`: `Off` sends a video as images, `Filter` streams it but not a
/// fast-redrawn UI area, `All` streams that too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_video_off_filter_all() {
    use spice_server::StreamingVideo as S;
    if skip_without(&["Xvfb", "xsetroot", "animate", "convert"]) {
        return;
    }
    let dir = tempdir();
    let photo = plasma_frames(dir.path(), "p", 6, "240x180");
    let xp = tokio::task::block_in_place(|| animated(&photo));
    let xs = tokio::task::block_in_place(|| animated(&synthetic_frames(dir.path())));

    let (streams, frames, draws) = follow(&xp, S::Off, 4).await;
    eprintln!("off, video: {streams} streams, {frames} frames, {draws} draws");
    assert_eq!((streams, frames), (0, 0), "streaming off still streamed");
    assert!(draws >= 30, "off: only {draws} image updates of the video");

    let (streams, frames, _) = follow(&xp, S::Filter, 4).await;
    eprintln!("filter, video: {streams} streams, {frames} frames");
    assert!(
        streams >= 1 && frames > 0,
        "filter did not stream the video"
    );

    let (streams, _, draws) = follow(&xs, S::Filter, 4).await;
    eprintln!("filter, UI: {streams} streams, {draws} draws");
    assert_eq!(streams, 0, "filter streamed synthetic content");
    assert!(draws >= 30, "filter: only {draws} image updates of the UI");

    let (streams, frames, _) = follow(&xs, S::All, 4).await;
    eprintln!("all, UI: {streams} streams, {frames} frames");
    assert!(streams >= 1 && frames > 0, "all did not stream the UI area");
}

/// Our own client library, run from the client namespace on a 1 Mbit/s link, reports
/// on the stream like spice-gtk, and the server lowers the stream's quality for it;
/// once the link's limit is lifted, timely reports bring the quality back up.
#[test]
fn our_client_reports_and_the_stream_adapts() {
    if tools_missing(&["animate"]) {
        return;
    }
    let Some(net) = net_or_skip(4, Some("1mbit")) else {
        return;
    };
    let dir = tempdir();
    let frames = plasma_frames(dir.path(), "f", 8, "320x240");
    let x = animated(&frames);
    let srv = serve_in(&net.srv, &x.name, ns_config(&net.srv_ip, 5974));
    let path = format!("/run/netns/{}", net.cli);
    let host = net.srv_ip.clone();
    let client = std::thread::spawn(move || -> Result<u64, String> {
        let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let s = spice_client::Session::connect(spice_client::ClientConfig::new(host, 5974))
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_secs(36)).await;
            if let Some(e) = s.error() {
                return Err(e.to_string());
            }
            Ok(s.stream_reports())
        })
    });
    std::thread::sleep(Duration::from_secs(14));
    let slow = srv.stats.stats();
    eprintln!(
        "our client on 1 Mbit/s: {} reports, {} frames, {} B of video, quality min {} now {}, \
         {} fps, steps down {} (reports) {} (link), up {}",
        slow.stream_reports,
        slow.video_frames,
        slow.video_bytes,
        slow.stream_min_quality,
        slow.stream_quality,
        slow.stream_fps,
        slow.stream_steps_down_report,
        slow.stream_steps_down_link,
        slow.stream_steps_up
    );
    net.unshape().expect("lift the rate limit");
    let sent = client
        .join()
        .expect("client thread")
        .expect("client session");
    let st = srv.stats.stats();
    eprintln!(
        "after the limit is lifted: {} reports, quality now {}, {} fps, steps up {}",
        st.stream_reports, st.stream_quality, st.stream_fps, st.stream_steps_up
    );
    assert!(slow.video_streams >= 1, "no stream: {slow:?}");
    assert!(sent > 0 && slow.stream_reports > 0, "no reports: {slow:?}");
    assert!(
        slow.stream_min_quality < 85,
        "quality never lowered: {slow:?}"
    );
    assert!(
        st.stream_steps_up > slow.stream_steps_up && st.stream_quality > slow.stream_min_quality,
        "quality did not recover: {slow:?} then {st:?}"
    );
}
