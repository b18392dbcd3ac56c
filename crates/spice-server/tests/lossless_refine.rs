//! A still screen becomes exact: areas a client got lossy (a photo sent as JPEG on a
//! slow link, the last frame of a video stream) are sent again losslessly once they stop
//! changing, and spice-gtk (`spicy`) and our own client then show the X server's pixels
//! exactly.
//!
//! The slow link is a veth pair between two network namespaces shaped with tc tbf, as in
//! `link_quality.rs` (the shared `common::netns`). This file's names: TCP ports
//! 6010–6029, namespaces `ll…`, addresses 10.217.N.0/24; Xvfb picks its displays.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::netns::*;
use common::*;
use spice_server::coop_display::{Rect, SourceEvent};
use spice_server::{Config, WanCompression};

/// A shaped link of this file's namespaces, or `None` after printing why the test is
/// skipped.
fn net_or_skip(idx: u8, rate: &str) -> Option<Net> {
    Net::or_skip("ll", 217, idx, Some(rate))
}

/// The bounding box (x0, y0, x1, y1) of differing pixels of two `w`-wide RGB images.
fn diff_box(a: &[u8], b: &[u8], w: u32) -> Option<(u32, u32, u32, u32)> {
    let mut bb: Option<(u32, u32, u32, u32)> = None;
    for (i, (p, q)) in a.chunks(3).zip(b.chunks(3)).enumerate() {
        if p != q {
            let (x, y) = (i as u32 % w, i as u32 / w);
            bb = Some(bb.map_or((x, y, x, y), |(x0, y0, x1, y1)| {
                (x0.min(x), y0.min(y), x1.max(x), y1.max(y))
            }));
        }
    }
    bb
}

/// What our client shows: (w, h, RGB) and its display messages by type.
type Shot = (u32, u32, Vec<u8>, Vec<(u16, u64)>);

/// Our own client (spice-client), connected for as long as the value lives, in
/// namespace `ns` when given; `shot` asks it for its current picture.
struct OurClient {
    req: Option<mpsc::Sender<mpsc::Sender<Option<Shot>>>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl OurClient {
    fn connect(ns: Option<String>, host: &str, port: u16) -> OurClient {
        let (req, rx) = mpsc::channel::<mpsc::Sender<Option<Shot>>>();
        let host = host.to_string();
        let thread = std::thread::spawn(move || -> Result<(), String> {
            if let Some(ns) = ns {
                enter(&ns)?;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let s = spice_client::Session::connect(spice_client::ClientConfig::new(host, port))
                    .await
                    .map_err(|e| e.to_string())?;
                loop {
                    match rx.try_recv() {
                        Ok(reply) => {
                            let shot = s.screen().map(|p| {
                                (p.width, p.height, p.to_rgb8(), s.display_message_counts())
                            });
                            let _ = reply.send(shot);
                        }
                        Err(mpsc::TryRecvError::Empty) => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                    if let Some(e) = s.error() {
                        return Err(e.to_string());
                    }
                }
                Ok(())
            })
        });
        OurClient {
            req: Some(req),
            thread: Some(thread),
        }
    }

    fn shot(&self) -> Option<Shot> {
        let (tx, rx) = mpsc::channel();
        self.req.as_ref()?.send(tx).ok()?;
        rx.recv_timeout(Duration::from_secs(10)).ok().flatten()
    }
}

impl Drop for OurClient {
    fn drop(&mut self) {
        self.req.take();
        if let Some(t) = self.thread.take() {
            if let Ok(Err(e)) = t.join() {
                eprintln!("our client ended with: {e}");
            }
        }
    }
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls until our client's picture equals the X server's; returns when it did.
fn wait_exact(client: &OurClient, x: &Xvfb, dir: &Path, secs: u64) -> Result<Duration, String> {
    let t0 = Instant::now();
    loop {
        let (w, h, want) = x.reference(dir);
        let shot = client.shot().ok_or("our client has no picture")?;
        let d = if (shot.0, shot.1) == (w, h) {
            diff_pixels(&shot.2, &want)
        } else {
            usize::MAX
        };
        if d == 0 {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            if let Ok(d) = std::env::var("LL_DEBUG_DIR") {
                let mut f = format!("P6\n{w} {h}\n255\n").into_bytes();
                f.extend_from_slice(&shot.2);
                let _ = std::fs::write(Path::new(&d).join("client.ppm"), f);
                let mut f = format!("P6\n{w} {h}\n255\n").into_bytes();
                f.extend_from_slice(&want);
                let _ = std::fs::write(Path::new(&d).join("server.ppm"), f);
            }
            return Err(format!(
                "{d} pixels still differ after {secs} s (PSNR {:.1} dB), within {:?}",
                psnr(&shot.2, &want),
                diff_box(&shot.2, &want, w)
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The served screen as spicy shows it on `viewer`: found by the served root colour
/// `root` (a colour spicy's own widgets do not use) at the screen's top-left corner.
fn spicy_view(viewer: &Xvfb, dir: &Path, root: [u8; 3], sw: u32, sh: u32) -> Option<Vec<u8>> {
    let (vw, vh, view) = viewer.reference(dir);
    let i = view.chunks(3).position(|p| p == root)?;
    let (ox, oy) = (i as u32 % vw, i as u32 / vw);
    (ox + sw <= vw && oy + sh <= vh).then(|| crop(&view, vw, ox, oy, sw, sh))
}

const ROOT: [u8; 3] = [0x20, 0x60, 0x30];
const ROOT_HEX: &str = "#206030";

/// On a 4 Mbit/s link a photo appears as JPEG; once it stays still, both spice-gtk
/// (spicy, its window captured on a second Xvfb) and our client show the X server's
/// exact pixels, and the refine's bytes are counted.
#[test]
fn wan_jpeg_photo_becomes_exact_in_spicy_and_our_client() {
    if skip_without_netns(&[
        "Xvfb", "xdpyinfo", "xsetroot", "import", "display", "convert", "xdotool", "spicy", "ip",
        "tc", "env",
    ]) {
        return;
    }
    let Some(net) = net_or_skip(1, "4mbit") else {
        return;
    };
    let dir = tempdir();
    let (sw, sh) = (640, 480);
    let mut served = Xvfb::start(sw, sh);
    assert!(served.run("xsetroot", &["-solid", ROOT_HEX]));
    let port = 6010;
    let srv = serve_in(&net.srv, &served.name, ns_config(&net.srv_ip, port));

    let ours = OurClient::connect(Some(net.cli.clone()), &net.srv_ip, port);
    let mut viewer = Xvfb::start(1024, 768);
    let spicy = net.spicy(&viewer.name, port);
    viewer.children.push(spicy);
    assert!(viewer.wait_window("spice display"), "spicy did not open");
    wait_for("both clients' first frames", 30, || {
        ours.shot().is_some() && spicy_view(&viewer, dir.path(), ROOT, sw, sh).is_some()
    });
    let t = srv.stats.stats().net_test.expect("bandwidth test");
    assert!(t.wan, "4 Mbit/s link not seen as WAN: {t:?}");
    std::thread::sleep(Duration::from_secs(1));

    let before = srv.stats.stats();
    let img = plasma(dir.path(), "photo.png", "400x300", 7);
    served.spawn("display", &["-title", "photo", "-geometry", "+60+50", &img]);
    assert!(served.wait_window("photo"), "display did not map");
    wait_for("the photo as JPEG", 20, || {
        srv.stats.stats().jpeg_images > before.jpeg_images
    });
    // Right after the JPEG our client shows it lossy (informative: it may be in flight).
    std::thread::sleep(Duration::from_millis(150));
    let (_, _, want) = served.reference(dir.path());
    if let Some(s) = ours.shot() {
        eprintln!(
            "our client just after the JPEG: PSNR {:.1} dB",
            psnr(&s.2, &want)
        );
    }

    let took = wait_exact(&ours, &served, dir.path(), 30).expect("our client exact");
    let st = srv.stats.stats();
    assert!(
        st.refine_images > before.refine_images,
        "exact without a refine? {st:?}"
    );
    // spicy shows the same exact pixels.
    let t0 = Instant::now();
    let spicy_diff = loop {
        let (_, _, want) = served.reference(dir.path());
        let d = spicy_view(&viewer, dir.path(), ROOT, sw, sh)
            .map_or(usize::MAX, |v| diff_pixels(&v, &want));
        if d == 0 || t0.elapsed() > Duration::from_secs(15) {
            break d;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let st = srv.stats.stats();
    eprintln!(
        "WAN photo 400x300: {} JPEG image(s); exact in our client {:.0} ms after the JPEG; \
         refine: {} image(s), {} B; display channel {} B for the photo and refine \
         (both clients)",
        st.jpeg_images - before.jpeg_images,
        took.as_secs_f64() * 1000.0,
        st.refine_images - before.refine_images,
        st.refine_bytes - before.refine_bytes,
        st.display_bytes_out - before.display_bytes_out
    );
    assert_eq!(spicy_diff, 0, "spicy's view is not exact after the refine");
    // Still: nothing more is refined (no loop).
    let settled = srv.stats.stats();
    std::thread::sleep(Duration::from_secs(2));
    let later = srv.stats.stats();
    assert_eq!(
        (later.refine_images, later.refine_bytes),
        (settled.refine_images, settled.refine_bytes),
        "refines continue on a still screen"
    );
}

/// A video stream on a 1 Mbit/s link, stopped: its last frame was JPEG; STREAM_DESTROY
/// is followed by a lossless redraw, and our client's picture ends exact.
#[test]
fn ended_video_stream_on_wan_becomes_exact() {
    if skip_without_netns(&[
        "Xvfb", "xdpyinfo", "xsetroot", "import", "animate", "convert", "xdotool", "ip", "tc",
    ]) {
        return;
    }
    let Some(net) = net_or_skip(2, "2mbit") else {
        return;
    };
    let dir = tempdir();
    let mut served = Xvfb::start(640, 480);
    assert!(served.run("xsetroot", &["-solid", ROOT_HEX]));
    let port = 6012;
    let srv = serve_in(&net.srv, &served.name, ns_config(&net.srv_ip, port));
    let ours = OurClient::connect(Some(net.cli.clone()), &net.srv_ip, port);
    wait_for("our client's first frame", 30, || ours.shot().is_some());

    // A video stream, stopped: its last frame was JPEG; the end redraws it exactly.
    let frames = plasma_frames(dir.path(), "f", 6, "240x180");
    served.animate(&frames, "video");
    wait_for("a video stream", 40, || {
        srv.stats.stats().video_frames >= 10
    });
    let pid = served.children.last().unwrap().0.id().to_string();
    assert!(served.run("kill", &["-STOP", &pid]));
    let mid = srv.stats.stats();
    let took = wait_exact(&ours, &served, dir.path(), 30).expect("exact after the stream");
    let st = srv.stats.stats();
    assert!(st.net_test.is_some_and(|t| t.wan), "{st:?}");
    eprintln!(
        "stopped video 240x180 on 2 Mbit/s: exact after {:.0} ms; lossless redraws {} image(s), {} B",
        took.as_secs_f64() * 1000.0,
        st.refine_images - mid.refine_images,
        st.refine_bytes - mid.refine_bytes
    );
    assert!(st.refine_images > mid.refine_images, "{st:?}");
    let _ = served.run("kill", &["-CONT", &pid]);
}

/// The RGB bytes of a fake screen.
fn rgb(s: &FakeState) -> Vec<u8> {
    s.px.chunks(4).flat_map(|p| [p[2], p[1], p[0]]).collect()
}

/// Paints `r` of a fake screen with `f(x, y)` (relative to `r`).
fn fill(s: &mut FakeState, r: Rect, f: impl Fn(u32, u32) -> [u8; 3]) {
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            let o = ((y * s.w + x) * 4) as usize;
            let [red, g, b] = f(x - r.x, y - r.y);
            s.px[o..o + 4].copy_from_slice(&[b, g, red, 0xff]);
        }
    }
}

/// Copies `src` of a fake screen to (`dx`, `dy`), as the X server's CopyArea does.
fn copy(s: &mut FakeState, src: Rect, dx: u32, dy: u32) {
    let old = s.px.clone();
    for y in 0..src.h {
        let from = (((src.y + y) * s.w + src.x) * 4) as usize;
        let to = (((dy + y) * s.w + dx) * 4) as usize;
        let n = src.w as usize * 4;
        s.px[to..to + n].copy_from_slice(&old[from..from + n]);
    }
}

/// A photo-like patch: smooth diagonal gradients with a little deterministic grain.
fn photo_px(x: u32, y: u32) -> [u8; 3] {
    let grain = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 13) % 7;
    [
        (40 + x + y / 2 + grain) as u8,
        (90 + y + grain) as u8,
        (200 - x / 2 + grain) as u8,
    ]
}

/// COPY_BITS of a lossy area carries its lossiness: a photo sent as JPEG (forced on
/// loopback) is moved right after, the client copies the lossy pixels, and the refine
/// at the destination makes the picture exact. Driven by an in-memory source, so the
/// move is a real COPY_BITS every time.
#[test]
fn copy_bits_of_a_lossy_area_is_refined_at_its_destination() {
    let (w, h) = (320u32, 240u32);
    let screen = std::sync::Arc::new(std::sync::Mutex::new(FakeState {
        w,
        h,
        px: [0x80u8, 0x80, 0x80, 0xff].repeat((w * h) as usize),
        ..Default::default()
    }));
    let port = 6013;
    let srv = serve_source_in(
        None,
        Box::new(FakeSource(screen.clone())),
        Config {
            jpeg_wan_compression: WanCompression::Always,
            ..ns_config("127.0.0.1", port)
        },
    );
    let ours = OurClient::connect(None, "127.0.0.1", port);
    wait_for("our client's first frame", 20, || ours.shot().is_some());
    let count = |t: u16| {
        ours.shot().map_or(0, |s| {
            s.3.iter()
                .filter(|(m, _)| *m == t)
                .map(|(_, n)| *n)
                .sum::<u64>()
        })
    };
    use spice_proto::consts::msg::display::{COPY_BITS, DRAW_COPY};
    let draws0 = count(DRAW_COPY);

    let before = srv.stats.stats();
    let patch = Rect::new(10, 10, 120, 90);
    {
        let mut s = screen.lock().unwrap();
        fill(&mut s, patch, photo_px);
        s.events.push(SourceEvent::Damage(vec![patch]));
    }
    wait_for("the patch as JPEG", 10, || {
        srv.stats.stats().jpeg_images > before.jpeg_images && count(DRAW_COPY) > draws0
    });
    // Move it right away: far from its old place; the old place becomes grey again.
    let (dx, dy) = (180, 130);
    {
        let mut s = screen.lock().unwrap();
        copy(&mut s, patch, dx, dy);
        fill(&mut s, patch, |_, _| [0x80, 0x80, 0x80]);
        s.events.push(SourceEvent::CopyRect {
            src: patch,
            dst_x: dx,
            dst_y: dy,
        });
        s.events.push(SourceEvent::Damage(vec![patch]));
    }
    wait_for("the COPY_BITS", 10, || count(COPY_BITS) >= 1);
    let want = rgb(&screen.lock().unwrap());
    let moved = ours.shot().expect("picture");
    let dst = crop(&moved.2, w, dx, dy, patch.w, patch.h);
    let p = psnr(&dst, &crop(&want, w, dx, dy, patch.w, patch.h));
    eprintln!("moved JPEG patch right after COPY_BITS: PSNR {p:.1} dB");
    let t0 = Instant::now();
    loop {
        let s = ours.shot().expect("picture");
        let d = diff_pixels(&s.2, &want);
        if d == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{d} pixels differ, within {:?}; {:?}",
            diff_box(&s.2, &want, w),
            srv.stats.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = srv.stats.stats();
    eprintln!(
        "exact {:.0} ms after the move; refine {} image(s), {} B",
        t0.elapsed().as_secs_f64() * 1000.0,
        st.refine_images - before.refine_images,
        st.refine_bytes - before.refine_bytes
    );
    assert!(
        p.is_finite(),
        "the copied pixels were already exact: no JPEG?"
    );
    assert!(st.refine_images > before.refine_images, "{st:?}");
    // The refine covered the destination, not the (now grey, lossless) source area:
    // one patch worth of pixels at most, well under the raw size.
    assert!(
        st.refine_bytes - before.refine_bytes < u64::from(patch.w * patch.h) * 4,
        "{st:?}"
    );
}

/// A new client on a 4 Mbit/s link gets a photographic screen's first frame as JPEG; a
/// headless capture with our client library (what `coop view --screenshot --wait-ms
/// 1500` does) that waits past the settle time gets the refined, exact screen.
/// spicy-screenshot saves the first frame it draws, so it shows the JPEG (printed).
#[test]
fn headless_capture_after_the_refine_is_exact_on_wan() {
    if skip_without_netns(&[
        "Xvfb", "xdpyinfo", "import", "display", "convert", "ip", "tc",
    ]) {
        return;
    }
    let Some(net) = net_or_skip(3, "4mbit") else {
        return;
    };
    let dir = tempdir();
    let mut served = Xvfb::start(640, 480);
    assert!(served.run("xsetroot", &["-solid", ROOT_HEX]));
    let img = plasma(dir.path(), "photo.png", "600x440", 5);
    served.spawn("display", &["-title", "photo", "-geometry", "+20+20", &img]);
    assert!(served.wait_window("photo"), "display did not map");
    std::thread::sleep(Duration::from_millis(700));
    let (_, _, want) = served.reference(dir.path());
    let port = 6014;
    let srv = serve_in(&net.srv, &served.name, ns_config(&net.srv_ip, port));

    if have("spicy-screenshot") {
        let out = dir.path().join("first.ppm");
        if let (Ok(_), Some((_, _, got))) = (ns_screenshot(&net, port, &out), read_ppm(&out)) {
            eprintln!(
                "spicy-screenshot (first frame) on WAN: PSNR {:.1} dB",
                psnr(&got, &want)
            );
        }
    }
    let before = srv.stats.stats();
    let capture = |quiet_ms: u64, lossy_quiet: Option<Duration>| -> (Vec<u8>, Duration) {
        let cli = net.cli.clone();
        let host = net.srv_ip.clone();
        std::thread::spawn(move || {
            enter(&cli).expect("enter the client namespace");
            let opts = spice_client::headless::CaptureOptions {
                quiet: Duration::from_millis(quiet_ms),
                settle: Duration::from_millis(quiet_ms * 5).max(Duration::from_secs(1)),
                timeout: Duration::from_secs(30),
                lossy_quiet,
            };
            let c =
                spice_client::headless::capture(spice_client::ClientConfig::new(host, port), &opts)
                    .expect("headless capture");
            (c.screen.to_rgb8(), c.complete)
        })
        .join()
        .expect("capture thread")
    };
    // A plain 300 ms quiet period catches the JPEG; the default options (what
    // `coop view --screenshot` uses) wait for the lossless re-send once JPEG was drawn.
    let (quick, quick_t) = capture(300, None);
    let mid = srv.stats.stats();
    let (waited, waited_t) = capture(300, Some(spice_client::headless::LOSSY_QUIET));
    let st = srv.stats.stats();
    eprintln!(
        "headless capture on WAN: wait 300 ms → PSNR {:.1} dB in {:.0} ms; default (lossy-aware) → \
         {} differing pixels in {:.0} ms; display bytes: first capture {} B, second {} B of \
         which refine {} image(s) {} B",
        psnr(&quick, &want),
        quick_t.as_secs_f64() * 1000.0,
        diff_pixels(&waited, &want),
        waited_t.as_secs_f64() * 1000.0,
        mid.display_bytes_out - before.display_bytes_out,
        st.display_bytes_out - mid.display_bytes_out,
        st.refine_images - mid.refine_images,
        st.refine_bytes - mid.refine_bytes
    );
    assert!(st.net_test.is_some_and(|t| t.wan), "{st:?}");
    assert!(
        mid.jpeg_images > before.jpeg_images && st.jpeg_images > mid.jpeg_images,
        "the first frames were not JPEG: {st:?}"
    );
    assert!(st.refine_images > mid.refine_images, "{st:?}");
    assert_eq!(
        diff_pixels(&waited, &want),
        0,
        "capture after the refine not exact"
    );
}
