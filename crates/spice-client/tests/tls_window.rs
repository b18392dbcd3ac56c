//! The viewer window over TLS: coop's server serves Xvfb :189 on a TLS port only,
//! our window opens on Xvfb :190 and shows the served colour; every channel,
//! inputs and cursor included, is a TLS connection. Port 16340.

#![cfg(feature = "window")]

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{missing, sh_in, ChildGuard};
use spice_client::viewer::{run_window, ViewerOptions};
use spice_client::ClientConfig;

fn xvfb(num: u32, size: &str) -> ChildGuard {
    let g = ChildGuard(
        Command::new("Xvfb")
            .arg(format!(":{num}"))
            .args(["-screen", "0", size, "-nolisten", "tcp", "-noreset"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while !x_ok(num, "xsetroot", &["-solid", "black"]) {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "Xvfb :{num} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    g
}

fn x_ok(num: u32, cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .env("DISPLAY", format!(":{num}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn x_out(num: u32, cmd: &str, args: &[&str]) -> Vec<u8> {
    Command::new(cmd)
        .args(args)
        .env("DISPLAY", format!(":{num}"))
        .stderr(Stdio::null())
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default()
}

#[test]
fn viewer_window_over_tls_shows_the_screen() {
    if let Some(m) = missing(&[
        "openssl", "Xvfb", "xsetroot", "xdotool", "convert", "import",
    ]) {
        eprintln!("SKIP: {m} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
openssl req -x509 -nodes -days 2 $ec -keyout ca-key.pem -out ca.pem -subj "/CN=window test CA"
openssl req -nodes $ec -keyout key.pem -out s.csr -subj "/CN=localhost"
printf 'subjectAltName=DNS:localhost\n' > ext.cnf
openssl x509 -req -in s.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem
"#;
    sh_in(d, script);

    // The viewer's X server first, so that it goes last: when it dies Xlib ends the
    // process, and on a failed assertion the served one must be gone by then.
    let _viewer_x = xvfb(190, "1280x1024x24");
    let _served = xvfb(189, "640x480x24");
    assert!(x_ok(189, "xsetroot", &["-solid", "#2266aa"]));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let src = spice_server::coop_display::X11Source::connect(":189").expect("X11Source");
    let cfg = spice_server::Config {
        port: None,
        tls: Some(spice_server::TlsConfig {
            port: 16340,
            cert: d.join("cert.pem"),
            key: d.join("key.pem"),
        }),
        ticketing: spice_server::Ticketing::Disabled,
        ..Default::default()
    };
    let server = rt
        .block_on(spice_server::Server::bind(cfg, Box::new(src)))
        .expect("bind");
    let stats = server.stats_handle();
    rt.spawn(server.run());

    // winit finds the X server through DISPLAY; nothing else in this binary uses X.
    std::env::set_var("DISPLAY", ":190");
    let quit = Arc::new(AtomicBool::new(false));
    let q2 = quit.clone();
    let ca = d.join("ca.pem");
    let viewer = std::thread::spawn(move || {
        let mut cfg = ClientConfig::tls("localhost", 16340);
        cfg.ca_file = Some(ca);
        run_window(
            cfg,
            ViewerOptions {
                title: "coop-tls-window".into(),
                any_thread: true,
                quit: Some(q2),
            },
        )
    });
    let t0 = Instant::now();
    let mut win = String::new();
    while win.is_empty() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        win = String::from_utf8_lossy(&x_out(
            190,
            "xdotool",
            &["search", "--name", "coop-tls-window"],
        ))
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    }
    assert!(!win.is_empty(), "the viewer window did not appear");
    // The window's centre pixel turns to the served colour.
    let mut colour = String::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        let shot = d.join("win.ppm");
        if x_ok(
            190,
            "import",
            &["-window", &win, "-depth", "8", shot.to_str().unwrap()],
        ) {
            let txt = Command::new("convert")
                .arg(&shot)
                .args(["-gravity", "center", "-crop", "1x1+0+0", "txt:-"])
                .output()
                .unwrap();
            colour = String::from_utf8_lossy(&txt.stdout).to_string();
            if colour.to_ascii_lowercase().contains("#2266aa") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !colour.to_ascii_lowercase().contains("#2266aa") {
        quit.store(true, Ordering::SeqCst);
        panic!(
            "the window does not show the served colour: {colour}; viewer: {:?}",
            viewer.join()
        );
    }
    // Main, display, inputs and cursor: all linked on the TLS-only server.
    let t0 = Instant::now();
    while stats.stats().connections < 4 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stats.stats().connections, 4, "{:?}", stats.stats());
    quit.store(true, Ordering::SeqCst);
    let r = viewer.join().unwrap().expect("viewer ended cleanly");
    assert!(r.iter().all(|s| s.secure) && r.len() == 4, "{r:?}");
}
