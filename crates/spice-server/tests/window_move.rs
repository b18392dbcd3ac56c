//! A window mapped and moved at once (before its first picture could reach the client),
//! moved several times quickly, or moved partly off the screen and back, on an X server
//! without a window manager: once the screen is quiet, the client's picture equals the X
//! server's pixels exactly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spice_proto::consts::{channel, msg};

/// Display traffic seen by the test client.
#[derive(Default, Debug)]
struct Seen {
    copy_bits: usize,
    draws: usize,
}

/// Starts a server on a fresh 640x480 Xvfb, links a client, then runs `moves` (a shell
/// script; `$ID` is the id of a `display` window mapped at +10+10 by the same script just
/// before) and checks the client ends up with the X server's exact picture.
async fn map_and_move(moves: &str) -> Option<Seen> {
    if skip_without(&["Xvfb", "import", "xdotool", "convert", "display"]) {
        return None;
    }
    let dir = tempdir();
    let x = Xvfb::start(640, 480);
    let photo = dir.path().join("photo.png");
    assert!(x.run(
        "convert",
        &[
            "-size",
            "200x150",
            "plasma:fractal",
            photo.to_str().unwrap()
        ]
    ));

    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut disp = link_channel(addr, sid, channel::DISPLAY).await;
    let mut canvas = Canvas::new();
    read_first_frame(&mut disp, &mut canvas).await;

    // The window is mapped and moved straight away: no pause lets its first picture
    // reach the client before the move.
    let sh = format!(
        "display -title movee -geometry +10+10 '{}' & \
         ID=$(xdotool search --sync --onlyvisible --name movee | head -n1); {moves}; \
         sleep 0.5",
        photo.display()
    );
    let mut busy = x.script(&sh);
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the display channel never went quiet ({seen:?})"
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(100), disp.recv()).await {
            let m = m.expect("display channel closed");
            match m.msg_type {
                msg::display::COPY_BITS => seen.copy_bits += 1,
                msg::display::DRAW_COPY => seen.draws += 1,
                _ => {}
            }
            canvas.apply(&m);
            quiet_since = None;
            continue;
        }
        if busy.try_wait().ok().flatten().is_none() {
            continue;
        }
        let q = *quiet_since.get_or_insert_with(Instant::now);
        if q.elapsed() < Duration::from_millis(300) {
            continue;
        }
        let (w, h, want) = tokio::task::block_in_place(|| x.reference(dir.path()));
        assert_eq!((w, h), (canvas.w, canvas.h), "screen size");
        let got = canvas.rgb();
        let diff = diff_pixels(&got, &want);
        if diff == 0 {
            return Some(seen);
        }
        // Quiet for a while and still different: the missing pixels are never coming.
        assert!(
            q.elapsed() < Duration::from_secs(5),
            "after the move the client's picture differs from the X screen in {diff} \
             pixels, within {:?} ({seen:?})",
            diff_box(&got, &want, w)
        );
    }
}

/// The smallest (x, y, w, h) holding every differing pixel of two RGB pictures `w` wide.
fn diff_box(a: &[u8], b: &[u8], w: u32) -> Option<(u32, u32, u32, u32)> {
    let mut bx: Option<(u32, u32, u32, u32)> = None;
    for (i, (p, q)) in a.chunks_exact(3).zip(b.chunks_exact(3)).enumerate() {
        if p != q {
            let (x, y) = (i as u32 % w, i as u32 / w);
            let (x0, y0, x1, y1) = bx.unwrap_or((x, y, x, y));
            bx = Some((x0.min(x), y0.min(y), x1.max(x), y1.max(y)));
        }
    }
    bx.map(|(x0, y0, x1, y1)| (x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_moved_right_after_mapping_reaches_the_client_whole() {
    if let Some(seen) = map_and_move("xdotool windowmove $ID 300 200").await {
        eprintln!("one move: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_moved_several_times_quickly_reaches_the_client_whole() {
    let steps = "for p in '60 40' '120 90' '200 130' '260 180' '330 240' '400 300'; do \
                 xdotool windowmove $ID $p; done";
    if let Some(seen) = map_and_move(steps).await {
        eprintln!("quick moves: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_moved_partly_off_screen_and_back_reaches_the_client_whole() {
    let steps = "xdotool windowmove $ID -80 -60; sleep 0.2; xdotool windowmove $ID 520 400; \
                 sleep 0.2; xdotool windowmove $ID 150 100";
    if let Some(seen) = map_and_move(steps).await {
        eprintln!("off screen and back: {seen:?}");
    }
}

/// A window already shown on the client still moves by COPY_BITS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shown_window_still_moves_by_copy_bits() {
    if let Some(seen) = map_and_move("sleep 1.5; xdotool windowmove $ID 300 200").await {
        eprintln!("shown, then moved: {seen:?}");
        if std::env::var("COOP_X11_COPYRECT").is_ok_and(|v| v == "0") {
            eprintln!("SKIP: COPY_BITS check, move detection is off (COOP_X11_COPYRECT=0)");
            return;
        }
        assert!(seen.copy_bits >= 1, "no COPY_BITS for the move: {seen:?}");
    }
}
