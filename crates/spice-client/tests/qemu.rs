//! Against QEMU 7.2 (TCG, `-vga qxl`) showing the SeaBIOS screen: our picture
//! equals `spicy-screenshot`'s pixel for pixel.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_same, missing, start_qemu};
use spice_client::{capture, CaptureOptions, ClientConfig};

#[test]
fn seabios_screen_matches_spicy_screenshot() {
    if let Some(m) = missing(&["spicy-screenshot"]) {
        eprintln!("SKIP: {m} is not installed");
        return;
    }
    let Some((_qemu, port)) = start_qemu(3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = CaptureOptions {
        quiet: Duration::from_millis(300),
        settle: Duration::from_millis(1000),
        timeout: Duration::from_secs(30),
        lossy_quiet: None,
    };
    let reference = dir.path().join("root.ppm");
    // The text cursor blinks, so both pictures are taken until they catch the
    // same phase; SeaBIOS also needs a few seconds to reach its final screen.
    let mut last = String::new();
    for attempt in 0..20 {
        let mut cfg = ClientConfig::new("127.0.0.1", port);
        cfg.all_channels = false;
        let ours = capture(cfg, &opts).unwrap();
        let st = Command::new("spicy-screenshot")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-o"])
            .arg(&reference)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "spicy-screenshot failed");
        let r = spice_client::output::read_ppm(&reference).unwrap();
        // Wait for text on the screen: an all-black early frame proves little.
        let colours: std::collections::HashSet<u32> =
            ours.screen.data.iter().map(|p| p & 0xffffff).collect();
        if colours.len() < 2 {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if ours.screen.to_rgb8() == r.2 && (ours.screen.width, ours.screen.height) == (r.0, r.1) {
            eprintln!(
                "identical on attempt {attempt}; images {:?}",
                ours.image_counts
            );
            return;
        }
        last = format!("attempt {attempt}");
        if attempt == 19 {
            assert_same("qemu-seabios", &ours.screen, &r, dir.path());
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    panic!("never identical ({last})");
}
