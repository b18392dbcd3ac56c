//! coLinux guests end to end, part two: a GUI program in the guest shown over SPICE
//! (`coop start --spice` on a coLinux instance), and a debian guest booting systemd to a
//! console login.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A free SPICE port of this test's range, 5960–5969.
fn free_spice_port() -> Option<u16> {
    (5960..=5969).find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

#[test]
fn x_program_in_a_colinux_guest_shows_in_spicy_screenshot() {
    if !need_root() || !colinux_prerequisites() {
        return;
    }
    for tool in ["Xvfb", "spicy-screenshot", "xsetroot"] {
        if !have(tool) {
            eprintln!("SKIP: {tool} not installed (xvfb, spice-client-gtk, x11-xserver-utils)");
            return;
        }
    }
    let loader = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
    if !Path::new(loader).exists() {
        eprintln!("SKIP: no {loader} to run the host's xsetroot in the guest");
        return;
    }
    let (Some(subnet), Some(port)) = (free_subnet_in(232).map(|(cidr, _)| cidr), free_spice_port())
    else {
        eprintln!("SKIP: no free 10.232.x.0/24 subnet or SPICE port 5960-5969");
        return;
    };
    let bridge = subnet.trim_end_matches("/24").to_string();
    let c = Coop::new();
    let net = unique("gunet");
    c.network(&net, &subnet);
    let addr = format!("127.0.0.1:{port}");

    // Without a network the guest could not reach its display: refused before anything
    // starts, saying what to add (here the display comes from the config key).
    let lone = unique("gu");
    let lone_cfg = c.root.path().join("lone.conf");
    std::fs::write(&lone_cfg, format!("coop.display.spice = {addr}\n")).unwrap();
    c.create_colinux(&lone, "busybox", "64M", &["-f", lone_cfg.to_str().unwrap()]);
    let err = c.fails(&["start", "-n", &lone]);
    assert!(
        err.contains("needs a network") && err.contains("lxc.net.0.link"),
        "{err}"
    );
    assert_eq!(c.info(&lone)["state"], "STOPPED");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "a refused start left the SPICE port taken"
    );
    assert_eq!(leftovers(&c, &lone), Vec::<String>::new());

    // The host's /usr, read-only, brings an X client (xsetroot) and its libraries.
    let n = unique("gu");
    let cfg = c.root.path().join("gui.conf");
    std::fs::write(
        &cfg,
        format!(
            "lxc.net.0.type = veth\nlxc.net.0.link = {net}\nlxc.net.0.flags = up\n\
             coop.colinux.share = /usr:/host/usr:ro\n"
        ),
    )
    .unwrap();
    c.create_colinux(&n, "busybox", "96M", &["-f", cfg.to_str().unwrap()]);
    let t = Instant::now();
    c.ok(&["start", "-n", &n, "--spice", &addr]);
    eprintln!("colinux start with a SPICE display took {:?}", t.elapsed());
    assert_eq!(c.info(&n)["spice"], addr.as_str());

    // Commands get the display on the bridge and the cookie; the guest has its lease.
    let out = attach_when(
        &c,
        &n,
        &["sh", "-c", "echo $DISPLAY; ip -4 -o addr show eth0"],
        Duration::from_secs(60),
        |o| String::from_utf8_lossy(&o.stdout).contains(" inet "),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let display = text.lines().next().unwrap().trim().to_string();
    let (host, num) = display.rsplit_once(':').expect("DISPLAY is HOST:D");
    assert_eq!(host, bridge, "DISPLAY {display:?}");
    let num: u16 = num.parse().unwrap();
    eprintln!(
        "guest display {display}, start to a usable attach {:?}",
        t.elapsed()
    );

    let xsetroot = |colour: &str, with_cookie: bool| {
        let mut args = vec![];
        if !with_cookie {
            args.extend(["env", "-u", "XAUTHORITY"]);
        }
        args.extend([
            "/host/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "--library-path",
            "/host/usr/lib/x86_64-linux-gnu",
            "/host/usr/bin/xsetroot",
            "-solid",
            colour,
        ]);
        c.attach(&n, &args)
    };
    // The display demands the cookie: a client without it is turned away.
    let out = xsetroot("#ff0000", false);
    assert!(!out.status.success(), "an X client without the cookie drew");
    let t = Instant::now();
    let out = xsetroot("#12ab34", true);
    assert!(
        out.status.success(),
        "xsetroot in the guest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("xsetroot in the guest took {:?}", t.elapsed());

    let shot = c.root.path().join("shot.ppm");
    let t = Instant::now();
    spicy_screenshot(port, &shot);
    eprintln!("spicy-screenshot took {:?}", t.elapsed());
    let pixels = ppm_pixels(&shot);
    assert_eq!(pixels.len(), 1024 * 768);
    assert!(
        pixels.iter().all(|p| *p == [0x12, 0xab, 0x34]),
        "the guest's X root colour is not on the SPICE screen"
    );

    // The X port takes only the guest: the host, dialling from the bridge address, is cut.
    let x_addr = format!("{bridge}:{}", 6000 + u32::from(num));
    let mut s = std::net::TcpStream::connect(&x_addr).expect("the X relay listens");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the X relay served a client that is not the guest: {other:?}"),
    }

    c.ok(&["stop", "-n", &n, "-t", "20"]);
    // Display, SPICE server and relay end with the instance.
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "SPICE still served"
    );
    assert!(
        std::net::TcpStream::connect(&x_addr).is_err(),
        "X relay still listening"
    );
    assert!(
        !Path::new(&format!("/tmp/.X11-unix/X{num}")).exists(),
        "Xvfb :{num} still runs"
    );
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}

#[test]
fn debian_instance_boots_systemd_to_a_console_login() {
    if !need_root() || !colinux_prerequisites() {
        return;
    }
    if !have("debootstrap") && !Path::new("/var/cache/coop/debian").is_dir() {
        eprintln!("SKIP: neither debootstrap nor a cached debian tree in /var/cache/coop");
        return;
    }
    let c = Coop::new();
    let n = unique("gu");
    let t = Instant::now();
    c.create_colinux(&n, "debian", "256M", &["--root-password", "uml-deb-pw"]);
    eprintln!("colinux debian create took {:?}", t.elapsed());
    let t = Instant::now();
    c.ok(&["start", "-n", &n]);
    // The guest kernel's PID 1 is systemd (the agent runs under it).
    let out = attach_when(
        &c,
        &n,
        &["cat", "/proc/1/comm"],
        Duration::from_secs(90),
        |o| o.status.success(),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "systemd");
    eprintln!("debian guest: start to a usable attach {:?}", t.elapsed());
    let state = wait_systemd_settled(&c, &n, Duration::from_secs(120));
    eprintln!("debian guest: systemd {state} after {:?}", t.elapsed());
    let failed = c.attach_ok(&n, &["systemctl", "--failed", "--no-legend", "--plain"]);
    eprintln!("failed units: {failed:?}");
    let release = c.attach_ok(&n, &["uname", "-r"]);
    assert!(release.starts_with("6.1"), "guest kernel {release:?}");

    // The console (the kernel's con0) shows a getty login; the password works.
    let mut p = console_login(&c, &n, None, "uml-deb-pw", Duration::from_secs(30));
    p.send("echo DEB-UML-$((6*7)); cat /etc/debian_version\r");
    p.expect("DEB-UML-42", Duration::from_secs(10));
    p.detach();

    c.stop_guest_cleanly(&n, 30, Duration::from_secs(25));
    assert_eq!(c.info(&n)["state"], "STOPPED");
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}
