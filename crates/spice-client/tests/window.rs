//! The viewer window under Xvfb, connected to Xspice: keys typed into our
//! window (by xdotool) reach an xterm on the Xspice display as text, and the
//! window shows the Xspice screen.

#![cfg(feature = "window")]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{missing, start_xvfb, Xspice};
use spice_client::viewer::{run_window, ViewerOptions};
use spice_client::ClientConfig;

#[test]
fn typing_into_the_window_reaches_the_guest() {
    if let Some(m) = missing(&["Xvfb", "xdotool", "xterm", "Xspice", "import"]) {
        eprintln!("SKIP: {m} is not installed");
        return;
    }
    let Some(mut x) = Xspice::start(4, None) else {
        return;
    };
    let out = x.dir.path().join("typed.txt");
    x.spawn(&[
        "xterm",
        "-geometry",
        "160x60+0+0",
        "-e",
        &format!("sh -c 'cat > {}'", out.display()),
    ]);
    let (_xvfb, vdisp) = start_xvfb(5);
    std::thread::sleep(Duration::from_millis(1500));
    // winit finds the X server through DISPLAY; this test binary runs no other X client in-process.
    std::env::set_var("DISPLAY", format!(":{vdisp}"));
    let quit = Arc::new(AtomicBool::new(false));
    let q2 = quit.clone();
    let port = x.port;
    let viewer = std::thread::spawn(move || {
        let mut cfg = ClientConfig::new("127.0.0.1", port);
        cfg.timeout = Duration::from_secs(10);
        run_window(
            cfg,
            ViewerOptions {
                title: format!("coop-view-test-{port}"),
                any_thread: true,
                quit: Some(q2),
            },
        )
    });
    let xdo = |args: &[&str]| {
        Command::new("xdotool")
            .env("DISPLAY", format!(":{vdisp}"))
            .args(args)
            .output()
            .unwrap()
    };
    let mut win = String::new();
    let t = Instant::now();
    while win.is_empty() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
        let o = xdo(&["search", "--name", &format!("coop-view-test-{port}")]);
        win = String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
    }
    assert!(!win.is_empty(), "the viewer window did not appear");
    // Let the inputs channel link and the first picture arrive.
    std::thread::sleep(Duration::from_millis(1500));
    xdo(&["windowfocus", "--sync", &win]);
    xdo(&["mousemove", "--window", &win, "500", "400"]);
    xdo(&["type", "--delay", "60", "Hello, spice 42"]);
    xdo(&["key", "Return"]);
    let t = Instant::now();
    let mut typed = String::new();
    while t.elapsed() < Duration::from_secs(10) {
        typed = std::fs::read_to_string(&out).unwrap_or_default();
        if typed.contains('\n') {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Xspice offers client mouse mode: our pointer position becomes the guest's.
    xdo(&["mousemove", "--window", &win, "321", "234"]);
    let mut guest_pointer = String::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let o = Command::new("xdotool")
            .env("DISPLAY", format!(":{}", x.display))
            .arg("getmouselocation")
            .output()
            .unwrap();
        guest_pointer = String::from_utf8_lossy(&o.stdout).to_string();
        if guest_pointer.starts_with("x:321 y:234 ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The window shows the Xspice screen (all but the locally drawn cursor).
    std::thread::sleep(Duration::from_millis(500));
    let shot = x.dir.path().join("viewer.ppm");
    let st = Command::new("import")
        .env("DISPLAY", format!(":{vdisp}"))
        .args(["-window", &win, "-depth", "8"])
        .arg(&shot)
        .status()
        .unwrap();
    let reference = x.import();
    quit.store(true, Ordering::Relaxed);
    let r = viewer.join().unwrap();
    assert_eq!(typed, "Hello, spice 42\n");
    assert!(
        guest_pointer.starts_with("x:321 y:234 "),
        "guest pointer: {guest_pointer}"
    );
    assert!(r.is_ok(), "{r:?}");
    assert!(st.success());
    let (w, h, ours) = spice_client::output::read_ppm(&shot).unwrap();
    assert_eq!((w, h), (reference.0, reference.1));
    let same = ours
        .chunks_exact(3)
        .zip(reference.2.chunks_exact(3))
        .filter(|(a, b)| a == b)
        .count();
    let total = (w * h) as usize;
    assert!(
        same * 1000 >= total * 998,
        "only {same} of {total} pixels match the Xspice screen"
    );
}
