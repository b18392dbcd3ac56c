//! virt-viewer's `remote-viewer`, on a second Xvfb, shows the screen we serve.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_viewer_window_shows_the_served_screen() {
    if skip_without(&["Xvfb", "remote-viewer", "xsetroot", "xdotool", "import"]) {
        return;
    }
    let dir = tempdir();
    let served = Xvfb::start(640, 480);
    assert!(served.run("xsetroot", &["-solid", "#3366cc"]));
    let srv = start_server(&served.name, no_auth()).await;
    let port = srv.addr.unwrap().port();

    let mut viewer = Xvfb::start(1280, 1024);
    viewer.spawn("remote-viewer", &[&format!("spice://127.0.0.1:{port}")]);
    assert!(
        // The display window is titled "NAME (1)", NAME being the server's name.
        viewer.wait_window(r"\(1\)"),
        "remote-viewer did not open its window"
    );
    // The served colour must fill (at least) the served area inside the viewer's window.
    let want = 640 * 480 * 9 / 10;
    let t0 = Instant::now();
    let mut seen = 0;
    while t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, _, px) = viewer.reference(dir.path());
        seen = px.chunks(3).filter(|p| *p == [0x33, 0x66, 0xcc]).count();
        if seen >= want {
            break;
        }
    }
    assert!(
        seen >= want,
        "remote-viewer shows {seen} pixels of the served colour, want ≥ {want}"
    );
}
