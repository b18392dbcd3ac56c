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
    served.line_reading_xterm("80x20+0+0", "target", &file);
    let srv = start_server(&served.name, no_auth()).await;
    let port = srv.addr.unwrap().port().to_string();

    let mut viewer = Xvfb::start(1280, 1024);
    viewer.spicy(&port);
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
    let win = viewer
        .output(
            "xdotool",
            &["search", "--onlyvisible", "--name", "spice display"],
        )
        .lines()
        .next()
        .expect("spicy window id")
        .to_string();
    assert!(viewer.run("xdotool", &["windowfocus", "--sync", &win]));
    assert!(viewer.run("xdotool", &["mousemove", "--window", &win, "100", "100"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(viewer.run("xdotool", &["type", "--delay", "40", "typed in spicy"]));
    assert!(viewer.run("xdotool", &["key", "Return"]));
    let got = wait_for_file(&file)
        .await
        .expect("the served xterm never got Enter");
    assert_eq!(got.trim_end(), "typed in spicy");
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
    let frames = plasma_frames(dir.path(), "f", 6, "200x150");
    served.animate(&frames, "video");
    let srv = start_server(&served.name, no_auth()).await;
    let port = srv.addr.unwrap().port().to_string();

    let mut viewer = Xvfb::start(1280, 1024);
    viewer.spicy(&port);
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
