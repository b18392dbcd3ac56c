//! The viewer on QEMU (server mouse mode, no agent): the window takes the
//! guest's 720×400 text screen size and shows it, a click grabs the mouse
//! and Ctrl+Alt gives it back.

#![cfg(feature = "window")]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{missing, start_qemu, start_xvfb};
use spice_client::viewer::{run_window, ViewerOptions};
use spice_client::ClientConfig;

#[test]
fn click_grabs_and_ctrl_alt_releases() {
    if let Some(m) = missing(&["Xvfb", "xdotool"]) {
        eprintln!("SKIP: {m} is not installed");
        return;
    }
    let Some((_qemu, port)) = start_qemu(9) else {
        return;
    };
    let (_xvfb, vdisp) = start_xvfb(10);
    // winit finds the X server through DISPLAY.
    std::env::set_var("DISPLAY", format!(":{vdisp}"));
    let quit = Arc::new(AtomicBool::new(false));
    let q2 = quit.clone();
    let title = format!("coop-view-qemu-{port}");
    let t2 = title.clone();
    let viewer = std::thread::spawn(move || {
        run_window(
            ClientConfig::new("127.0.0.1", port),
            ViewerOptions {
                title: t2,
                any_thread: true,
                quit: Some(q2),
            },
        )
    });
    let xdo = |args: &[&str]| {
        let o = Command::new("xdotool")
            .env("DISPLAY", format!(":{vdisp}"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let wait_for = |what: &dyn Fn() -> bool| {
        let t = Instant::now();
        // Generous: QEMU boots under TCG and CI shares two cores with the build.
        while t.elapsed() < Duration::from_secs(30) {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    let mut win = String::new();
    wait_for(&|| !xdo(&["search", "--name", &title]).is_empty());
    if let Some(w) = xdo(&["search", "--name", &title]).lines().next() {
        win = w.to_string();
    }
    assert!(!win.is_empty(), "the viewer window did not appear");
    let sized = wait_for(&|| xdo(&["getwindowgeometry", &win]).contains("Geometry: 720x400"));
    xdo(&["windowfocus", "--sync", &win]);
    xdo(&["mousemove", "--window", &win, "100", "100"]);
    xdo(&["click", "1"]);
    let grabbed = wait_for(&|| xdo(&["getwindowname", &win]).contains("Ctrl+Alt releases"));
    xdo(&["keydown", "Control_L"]);
    xdo(&["keydown", "Alt_L"]);
    xdo(&["keyup", "Alt_L"]);
    xdo(&["keyup", "Control_L"]);
    let released = wait_for(&|| xdo(&["getwindowname", &win]) == title);
    quit.store(true, Ordering::Relaxed);
    let r = viewer.join().unwrap();
    assert!(sized, "window not resized to the guest's 720x400");
    assert!(grabbed, "a click did not grab the mouse");
    assert!(released, "Ctrl+Alt did not release the mouse");
    assert!(r.is_ok(), "{r:?}");
}
