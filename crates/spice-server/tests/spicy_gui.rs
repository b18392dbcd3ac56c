//! spice-gtk's GUI client `spicy`, running on a second Xvfb, drives the served display:
//! keys typed into the spicy window reach an xterm on the served X server.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_typed_into_spicy_reach_the_served_xterm() {
    if skip_without(&["Xvfb", "spicy", "xterm", "xdotool", "xdpyinfo"]) {
        return;
    }
    let dir = tempdir();
    let file = dir.path().join("typed.txt");
    let mut served = Xvfb::start(800, 600);
    let script = format!("read x; echo \"$x\" > {}", file.display());
    served.spawn(
        "xterm",
        &[
            "-geometry",
            "80x20+0+0",
            "-T",
            "target",
            "-e",
            "sh",
            "-c",
            &script,
        ],
    );
    assert!(served.wait_window("target"), "xterm did not map");
    let srv = start_server(&served.name, no_auth()).await;
    let port = srv.addr.unwrap().port().to_string();

    let mut viewer = Xvfb::start(1280, 1024);
    viewer.spawn("spicy", &["-h", "127.0.0.1", "-p", &port]);
    assert!(
        viewer.wait_window("spice display"),
        "spicy did not open its display window"
    );
    // spicy links main, display, inputs and cursor.
    let t0 = Instant::now();
    while srv.stats.stats().connections < 4 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        srv.stats.stats().connections >= 4,
        "spicy did not link all channels"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = std::process::Command::new("xdotool")
        .args(["search", "--onlyvisible", "--name", "spice display"])
        .env("DISPLAY", &viewer.name)
        .output()
        .unwrap();
    let win = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .expect("spicy window id")
        .to_string();
    assert!(viewer.run("xdotool", &["windowfocus", "--sync", &win]));
    assert!(viewer.run("xdotool", &["mousemove", "--window", &win, "100", "100"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(viewer.run("xdotool", &["type", "--delay", "40", "typed in spicy"]));
    assert!(viewer.run("xdotool", &["key", "Return"]));
    let t0 = Instant::now();
    while !file.exists() && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = std::fs::read_to_string(&file).expect("the served xterm never got Enter");
    assert_eq!(got.trim_end(), "typed in spicy");
}

/// PSNR in dB of two equally sized RGB buffers (infinite when equal).
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    if se == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 * a.len() as f64 / se).log10()
}

fn crop(rgb: &[u8], stride_w: u32, x: u32, y: u32, w: u32, h: u32) -> Vec<u8> {
    (y..y + h)
        .flat_map(|r| {
            let o = ((r * stride_w + x) * 3) as usize;
            rgb[o..o + w as usize * 3].to_vec()
        })
        .collect()
}

/// spicy shows the MJPEG video stream the server makes of an animation: the area in
/// spicy's window matches the served screen within a PSNR bound while the stream is
/// live, and exactly once it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spicy_displays_the_video_stream() {
    if skip_without(&[
        "Xvfb", "spicy", "animate", "convert", "import", "xsetroot", "xdotool", "xdpyinfo",
    ]) {
        return;
    }
    let dir = tempdir();
    let mut served = Xvfb::start(640, 480);
    // A colour spicy's own widgets do not use marks where the served screen starts.
    let (br, bg, bb) = (0x20u8, 0x60u8, 0x30u8);
    assert!(served.run("xsetroot", &["-solid", "#206030"]));
    let mut frames = Vec::new();
    for i in 0..6 {
        let f = dir.path().join(format!("f{i}.png"));
        let ok = std::process::Command::new("convert")
            .args(["-seed", &(i + 1).to_string(), "-size", "200x150", "plasma:"])
            .arg(&f)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "convert frame failed");
        frames.push(f.to_str().unwrap().to_string());
    }
    let mut args = vec!["-delay", "4", "-geometry", "+100+80", "-title", "video"];
    args.extend(frames.iter().map(String::as_str));
    served.spawn("animate", &args);
    assert!(served.wait_window("video"), "animate did not map");
    let srv = start_server(&served.name, no_auth()).await;
    let port = srv.addr.unwrap().port().to_string();

    let mut viewer = Xvfb::start(1280, 1024);
    viewer.spawn("spicy", &["-h", "127.0.0.1", "-p", &port]);
    assert!(
        viewer.wait_window("spice display"),
        "spicy did not open its display window"
    );
    let t0 = Instant::now();
    while srv.stats.stats().video_frames < 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no video stream towards spicy: {:?}",
            srv.stats.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = served.children[0].0.id().to_string();
    assert!(served.run("kill", &["-STOP", &pid]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let frames_sent = srv.stats.stats().video_frames;
    let (vw, _, view) = tokio::task::block_in_place(|| viewer.reference(dir.path()));
    let (sw, sh, want) = tokio::task::block_in_place(|| served.reference(dir.path()));
    // The served screen's top-left: the first pixel of the root colour in spicy's window.
    let origin = view
        .chunks(3)
        .position(|p| p == [br, bg, bb])
        .map(|i| (i as u32 % vw, i as u32 / vw))
        .expect("the served screen is not visible in spicy");
    let (ox, oy) = origin;
    let whole = crop(&view, vw, ox, oy, sw, sh);
    let outside = {
        // Compare only the root around the video: the last column of the screen.
        let a = crop(&whole, sw, sw - 1, 0, 1, sh);
        let b = crop(&want, sw, sw - 1, 0, 1, sh);
        a == b
    };
    assert!(
        outside,
        "spicy's view is offset or scaled (origin {origin:?})"
    );
    // animate's window has a 2-pixel border around the 200x150 frame.
    let (x, y, w, h) = (102, 82, 200, 150);
    let p = psnr(&crop(&whole, sw, x, y, w, h), &crop(&want, sw, x, y, w, h));
    eprintln!(
        "spicy: {frames_sent} stream frames sent, live video area PSNR {p:.1} dB, {:?}",
        srv.stats.stats()
    );
    // Finite: what spicy shows is the lossy stream frame, not a lossless redraw.
    assert!(
        p >= 28.0 && p.is_finite(),
        "spicy's video area PSNR {p:.1} dB"
    );
    // After the idle second the area is redrawn losslessly.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, _, view) = tokio::task::block_in_place(|| viewer.reference(dir.path()));
    let exact = crop(&view, vw, ox, oy, sw, sh);
    assert_eq!(
        diff_pixels(&exact, &want),
        0,
        "spicy's view differs after the stream ended"
    );
    let _ = served.run("kill", &["-CONT", &pid]);
}
