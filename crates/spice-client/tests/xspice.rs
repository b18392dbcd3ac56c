//! Against a real Xspice (spice-server 0.15): for each preferred compression
//! our picture equals the X server's own pixels exactly, both for the
//! initial screen and after X clients drew while we were connected; and a
//! wrong password is reported as an authentication failure.

mod common;

use std::time::Duration;

use common::{assert_same, which, Xspice};
use spice_client::image::image_type_name;
use spice_client::spice_proto::consts::{image_compression as ic, image_type};
use spice_client::{ClientConfig, ClientError, Session};

const QUIET: Duration = Duration::from_millis(400);
const SETTLE: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(30);

fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

fn count(counts: &[(u8, u64)], t: u8) -> u64 {
    counts.iter().find(|(k, _)| *k == t).map_or(0, |(_, n)| *n)
}

/// Image counts with the types named, for the log.
fn named(counts: &[(u8, u64)]) -> Vec<(&'static str, u64)> {
    counts
        .iter()
        .map(|(t, n)| (image_type_name(*t), *n))
        .collect()
}

/// `convert ARGS OUT`, insisting it succeeded.
fn convert(args: &[&str], out: &std::path::Path) {
    let st = std::process::Command::new("convert")
        .args(args)
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "convert {args:?} {}", out.display());
}

/// A display-only session on `port`, with `compression` preferred when given.
async fn connect(port: u16, compression: Option<u8>) -> Session {
    let mut cfg = ClientConfig::new("127.0.0.1", port);
    cfg.preferred_compression = compression;
    cfg.all_channels = false;
    Session::connect(cfg).await.unwrap()
}

/// Waits until the display has been quiet for a while (see the constants).
async fn complete(s: &Session) {
    s.wait_display_complete(QUIET, SETTLE, TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_gives_the_x_servers_pixels() {
    let Some(mut x) = Xspice::start(1, None) else {
        return;
    };
    let have_clients =
        which("xterm").is_some() && which("display").is_some() && which("convert").is_some();
    if !have_clients {
        eprintln!("SKIP (partly): xterm/display/convert missing, testing the root window only");
    }
    let photo = x.dir.path().join("photo.png");
    if have_clients {
        convert(
            &["-size", "320x240", "-seed", "3", "plasma:fractal"],
            &photo,
        );
    }
    x.run(&[
        "xsetroot", "-mod", "16", "16", "-fg", "#884422", "-bg", "#224488",
    ]);
    if have_clients {
        x.spawn(&[
            "xterm",
            "-geometry",
            "70x20+10+10",
            "-e",
            "ls -l /usr/bin | head -40; sleep 600",
        ]);
    }
    settle();
    let modes = [
        ("auto_glz", ic::AUTO_GLZ, None),
        ("auto_lz", ic::AUTO_LZ, None),
        ("quic", ic::QUIC, Some(image_type::QUIC)),
        ("glz", ic::GLZ, Some(image_type::GLZ_RGB)),
        ("lz", ic::LZ, Some(image_type::LZ_RGB)),
        ("lz4", ic::LZ4, Some(image_type::LZ4)),
    ];
    for (i, (name, comp, expect)) in modes.into_iter().enumerate() {
        let s = connect(x.port, Some(comp)).await;
        complete(&s).await;
        let reference = x.import();
        assert_same(
            &format!("{name}-initial"),
            &s.screen().unwrap(),
            &reference,
            x.dir.path(),
        );
        // Drawing while connected: new windows, text, a photo, a root change.
        let y = 280 + 20 * i as i32;
        if have_clients {
            x.spawn(&[
                "display",
                "-geometry",
                &format!("+{}+{}", 600 - 30 * i as i32, y),
                photo.to_str().unwrap(),
            ]);
            x.spawn(&[
                "xterm",
                "-geometry",
                &format!("40x8+{}+{}", 40 + 25 * i, 420 + 10 * i),
                "-e",
                &format!("echo mode {name}; seq 1 30; sleep 600"),
            ]);
        }
        x.run(&["xsetroot", "-solid", &format!("#{:02x}5030", 40 * i)]);
        settle();
        complete(&s).await;
        let reference = x.import();
        let counts = s.image_counts();
        eprintln!(
            "{name}: images {:?}, display messages {:?}",
            named(&counts),
            s.display_message_counts()
        );
        assert_same(
            &format!("{name}-updated"),
            &s.screen().unwrap(),
            &reference,
            x.dir.path(),
        );
        if let (Some(t), true) = (expect, have_clients) {
            assert!(
                count(&counts, t) > 0,
                "{name}: no {} image decoded: {counts:?}",
                image_type_name(t)
            );
        }
        assert!(s.error().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_authentication_failure() {
    let Some(x) = Xspice::start(2, Some("s3cret")) else {
        return;
    };
    let mut cfg = ClientConfig::new("127.0.0.1", x.port);
    cfg.password = "wrong".into();
    let e = match Session::connect(cfg).await {
        Ok(_) => panic!("a wrong password was accepted"),
        Err(e) => e,
    };
    assert!(matches!(e, ClientError::AuthFailed(_)), "{e:?}");
    assert!(e.to_string().contains("authentication failed"), "{e}");
    // The right one works, so the failure above was about the password.
    let mut cfg = ClientConfig::new("127.0.0.1", x.port);
    cfg.password = "s3cret".into();
    cfg.all_channels = false;
    let s = Session::connect(cfg).await.unwrap();
    complete(&s).await;
    assert!(s.screen().is_some());
}

/// With video streaming forced on, an animation arrives as an M-JPEG stream
/// (spice-server leaves the Huffman tables out of later frames) and is drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn animation_arrives_as_a_drawn_mjpeg_stream() {
    if let Some(m) = common::missing(&["animate", "convert"]) {
        eprintln!("SKIP: {m} is not installed");
        return;
    }
    let Some(mut x) = Xspice::start_with(
        7,
        None,
        &[(
            "#Option \"SpiceStreamingVideo\" \"\"",
            "Option \"SpiceStreamingVideo\" \"all\"",
        )],
    ) else {
        return;
    };
    let mut frames = Vec::new();
    for i in 0..6 {
        let f = x.dir.path().join(format!("f{i}.gif"));
        let seed = i.to_string();
        convert(&["-size", "240x180", "-seed", &seed, "plasma:fractal"], &f);
        frames.push(f.to_str().unwrap().to_string());
    }
    let anim = x.dir.path().join("anim.gif");
    let mut args = vec!["-delay", "4", "-loop", "0"];
    args.extend(frames.iter().map(String::as_str));
    convert(&args, &anim);
    x.spawn(&["animate", "-geometry", "+100+100", anim.to_str().unwrap()]);
    settle();
    let s = connect(x.port, None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drawn = s.with_display(|d| d.map_or(0, |d| d.stream_frames));
    assert!(s.error().is_none(), "{:?}", s.error());
    assert!(drawn >= 10, "only {drawn} stream frames drawn");
    // The frames land where the animation is: the region is not uniform.
    let screen = s.screen().unwrap();
    let region: std::collections::HashSet<u32> = (110..300)
        .flat_map(|y| (110..300).map(move |x| (x, y)))
        .map(|(px, py)| screen.get(px, py) & 0xffffff)
        .collect();
    assert!(
        region.len() > 50,
        "animation area looks empty ({} colours)",
        region.len()
    );
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// With the WAN compressions forced on, a photo drawn while connected comes
/// as JPEG (lossy: close to X's pixels) and the rest as ZLIB_GLZ; asking
/// for plain GLZ keeps everything lossless (ZLIB-wrapped): exact pixels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_and_zlib_glz_images() {
    if let Some(m) = common::missing(&["display", "convert"]) {
        eprintln!("SKIP: {m} is not installed");
        return;
    }
    let Some(mut x) = Xspice::start_with(
        8,
        None,
        &[
            (
                "#Option \"SpiceJpegWanCompression\" \"\"",
                "Option \"SpiceJpegWanCompression\" \"always\"",
            ),
            (
                "#Option \"SpiceZlibGlzWanCompression\" \"\"",
                "Option \"SpiceZlibGlzWanCompression\" \"always\"",
            ),
        ],
    ) else {
        return;
    };
    let photo = x.dir.path().join("photo.png");
    convert(
        &["-size", "300x200", "-seed", "11", "plasma:fractal"],
        &photo,
    );
    x.run(&["xsetroot", "-solid", "#203040"]);
    for (i, (comp, lossy)) in [(ic::AUTO_GLZ, true), (ic::GLZ, false)]
        .into_iter()
        .enumerate()
    {
        let s = connect(x.port, Some(comp)).await;
        complete(&s).await;
        x.spawn(&[
            "display",
            "-geometry",
            &format!("+{}+{}", 40 + 200 * i, 60 + 100 * i),
            photo.to_str().unwrap(),
        ]);
        settle();
        complete(&s).await;
        let reference = x.import();
        let counts = s.image_counts();
        eprintln!("images {:?}", named(&counts));
        assert!(
            count(&counts, image_type::ZLIB_GLZ_RGB) > 0,
            "no ZLIB_GLZ image: {counts:?}"
        );
        let ours = s.screen().unwrap();
        if lossy {
            let jpegs = count(&counts, image_type::JPEG) + count(&counts, image_type::JPEG_ALPHA);
            assert!(jpegs > 0, "no JPEG image: {counts:?}");
            let p = psnr(&ours.to_rgb8(), &reference.2);
            assert!(p > 30.0, "JPEG picture too far from X's: PSNR {p:.1} dB");
        } else {
            assert_same("zlib-glz", &ours, &reference, x.dir.path());
        }
        assert!(s.error().is_none(), "{:?}", s.error());
    }
}
