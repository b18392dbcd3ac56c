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
