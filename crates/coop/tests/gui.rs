//! A GUI container: `coop start --spice` gives it an X display served over SPICE; an X
//! program run with `coop attach` shows in a real SPICE client's screenshot.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn x_program_in_a_container_shows_in_spicy_screenshot() {
    if !need_root() {
        return;
    }
    for tool in ["Xvfb", "spicy-screenshot", "xsetroot"] {
        if !have(tool) {
            eprintln!("SKIP: {tool} not installed (xvfb, spice-client-gtk, x11-xserver-utils)");
            return;
        }
    }
    let c = Coop::new();
    let n = unique("gui");
    // The host's /usr, read-only, brings X client programs into the busybox container.
    let dir = c.busybox(&n, "lxc.mount.entry = /usr usr none ro,bind 0 0\n");
    for l in ["lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), dir.join("rootfs").join(l)).unwrap();
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    c.ok(&["start", "-n", &n, "--spice", &addr]);
    assert_eq!(c.info(&n)["spice"], addr.as_str());
    let disp = c.attach_ok(&n, &["sh", "-c", "echo $DISPLAY"]);
    assert_eq!(disp.trim(), ":0");
    c.attach_ok(&n, &["/usr/bin/xsetroot", "-solid", "#12ab34"]);
    let shot = c.root.path().join("shot.ppm");
    spicy_screenshot(port, &shot);
    let pixels = ppm_pixels(&shot);
    assert!(!pixels.is_empty());
    let all = pixels.iter().all(|p| *p == [0x12, 0xab, 0x34]);
    assert!(
        all,
        "the container's X root colour is not on the SPICE screen"
    );
    c.ok(&["stop", "-k", "-n", &n]);
    // The display and its server end with the container.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "SPICE still served"
    );
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}
