//! Moved content (a scrolling xterm, a moved window) on a real X server reaches a
//! spice-proto client as COPY_BITS plus the newly exposed strips, and the client's picture
//! still equals the X server's pixels exactly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spice_proto::consts::{channel, msg};

/// Display traffic seen by the test client.
#[derive(Default, Debug)]
struct Seen {
    copy_bits: usize,
    draw_copy_bytes: usize,
}

/// Follows the display channel until `busy` has ended and the canvas equals the X screen.
async fn follow(
    x: &Xvfb,
    disp: &mut Client,
    canvas: &mut Canvas,
    dir: &std::path::Path,
    busy: &mut Option<std::process::Child>,
    seen: &mut Seen,
) {
    let t0 = Instant::now();
    let mut last_check = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "client canvas never matched the X screen ({seen:?})"
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(100), disp.recv()).await {
            let m = m.expect("display channel closed");
            match m.msg_type {
                msg::display::COPY_BITS => seen.copy_bits += 1,
                msg::display::DRAW_COPY => seen.draw_copy_bytes += m.body.len(),
                _ => {}
            }
            canvas.apply(&m);
        }
        let running = busy
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none());
        if !running && last_check.elapsed() > Duration::from_millis(400) {
            last_check = Instant::now();
            let (w, h, want) = tokio::task::block_in_place(|| x.reference(dir));
            if (w, h) == (canvas.w, canvas.h) && diff_pixels(&canvas.rgb(), &want) == 0 {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scroll_and_window_move_become_copy_bits_and_stay_exact() {
    if skip_without(&["Xvfb", "xterm", "import", "xdotool", "convert", "display"]) {
        return;
    }
    let dir = tempdir();
    let mut x = Xvfb::start(800, 600);
    let photo = dir.path().join("photo.png");
    assert!(x.run(
        "convert",
        &[
            "-size",
            "240x180",
            "plasma:fractal",
            photo.to_str().unwrap()
        ]
    ));
    let flag = dir.path().join("go");
    let lines = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; for i in $(seq 1 300); do echo \"scrolling line $i $(date +%N)\"; [ $((i % 20)) -eq 0 ] && sleep 0.05; done; sleep 600",
        flag.display()
    );
    x.spawn(
        "xterm",
        &[
            "-geometry",
            "80x24+10+10",
            "-T",
            "scroller",
            "-e",
            "sh",
            "-c",
            &lines,
        ],
    );
    x.show_image("photo", "+500+300", &photo);
    assert!(x.wait_window("scroller") && x.wait_window("photo"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut disp = link_channel(addr, sid, channel::DISPLAY).await;
    let mut canvas = Canvas::new();
    read_first_frame(&mut disp, &mut canvas).await;
    let mut seen = Seen::default();
    follow(&x, &mut disp, &mut canvas, dir.path(), &mut None, &mut seen).await;

    // Scrolling text.
    let before = std::mem::take(&mut seen);
    std::fs::write(&flag, b"").unwrap();
    let mut wait_scroll = Some(x.script("sleep 4"));
    follow(
        &x,
        &mut disp,
        &mut canvas,
        dir.path(),
        &mut wait_scroll,
        &mut seen,
    )
    .await;
    eprintln!("scroll: {seen:?} (first frame {before:?})");
    assert!(
        seen.copy_bits >= 5,
        "scrolling sent too few COPY_BITS: {seen:?}"
    );
    let scroll = std::mem::take(&mut seen);

    // A window moved in steps.
    let id = x.window_id("photo");
    let steps = (1..=25)
        .map(|i| {
            format!(
                "xdotool windowmove {id} {} {}; sleep 0.04",
                500 - i * 12,
                300 - i * 8
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut mover = Some(x.script(&steps));
    follow(
        &x,
        &mut disp,
        &mut canvas,
        dir.path(),
        &mut mover,
        &mut seen,
    )
    .await;
    eprintln!("move: {seen:?}");
    assert!(
        seen.copy_bits >= 5,
        "the move sent too few COPY_BITS: {seen:?}"
    );
    // The photo itself (240x180, noisy) is ~170 kB raw; 25 steps re-sent as images would
    // cost several times that even compressed.
    assert!(
        seen.draw_copy_bytes < 25 * 240 * 180 * 4 / 4,
        "the move re-sent too many image bytes: {seen:?}"
    );
    let _ = scroll;
}
