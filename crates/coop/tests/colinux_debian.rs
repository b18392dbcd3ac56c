//! A debian (systemd) coLinux guest on a coop network end to end: systemd-networkd in the
//! guest takes the bridge's DHCP lease although the guest runs no udev, `coop info` shows
//! that lease, the host reaches a TCP service in the guest (directly and through a
//! published port), systemd reaches "running" (not "degraded"), and `coop stop` is an
//! orderly guest poweroff leaving a clean disk.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;

fn prerequisites() -> bool {
    if !colinux_prerequisites() {
        return false;
    }
    if !have("debootstrap") {
        // Without debootstrap the template can use only a cache built with the current
        // package list; whether that is there is the template's business, so ask for
        // the tool itself.
        eprintln!("SKIP: debootstrap missing (the debian template builds its tree with it)");
        return false;
    }
    true
}

/// A free host port for the published port, from 47700–47799.
fn free_port() -> Option<u16> {
    (0..100u32)
        .map(|i| 47700 + ((i + std::process::id()) % 100) as u16)
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
}

/// Everything the guest's service sends on a fresh connection to `addr`.
fn tcp_read_all(addr: &str) -> std::io::Result<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

#[test]
fn debian_guest_takes_its_dhcp_lease_serves_the_host_and_runs_clean() {
    if !need_root() || !prerequisites() {
        return;
    }
    let Some((subnet, dotted)) = free_subnet_in(77) else {
        eprintln!("SKIP: no free 10.77.x.0/24 subnet");
        return;
    };
    let Some(port) = free_port() else {
        eprintln!("SKIP: no free host port in 47700-47799");
        return;
    };
    let c = Coop::new();
    let net = unique("gnnet");
    c.network(&net, &subnet);
    let n = unique("gn-");
    c.track(&n);
    let cfg = c.root.path().join("net.conf");
    std::fs::write(
        &cfg,
        format!(
            "lxc.net.0.type = veth\nlxc.net.0.link = {net}\nlxc.net.0.flags = up\n\
             coop.net.0.publish = {port}:8077\n"
        ),
    )
    .unwrap();
    let t = Instant::now();
    c.ok(&[
        "create",
        "-n",
        &n,
        "--kind",
        "colinux",
        "-t",
        "debian",
        "--root-password",
        "gn-deb-pw",
        "--memory",
        "256M",
        "-f",
        cfg.to_str().unwrap(),
    ]);
    eprintln!("colinux debian create took {:?}", t.elapsed());

    let t = Instant::now();
    c.ok(&["start", "-n", &n]);
    // systemd settles: every unit that can start under UML did ("running"); a failed
    // unit ("degraded", e.g. kmod-static-nodes without kmod) fails the test below.
    let state = wait_systemd_settled(&c, &n, Duration::from_secs(150));
    eprintln!("debian guest: start to systemd {state} {:?}", t.elapsed());
    let failed = c.ok(&[
        "attach",
        "-n",
        &n,
        "--",
        "systemctl",
        "--failed",
        "--no-legend",
        "--plain",
    ]);
    assert_eq!(state, "running", "failed units: {failed}");

    // networkd configured eth0 from the bridge's DHCP server (no udev in the guest).
    let out = attach_when(
        &c,
        &n,
        &["networkctl", "--no-pager", "status", "eth0"],
        Duration::from_secs(30),
        |o| String::from_utf8_lossy(&o.stdout).contains("(DHCP4 via"),
    );
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("debian guest: lease after {:?}", t.elapsed());
    assert!(status.contains("configured"), "{status}");
    let addr = status
        .split_whitespace()
        .find(|w| w.starts_with(&dotted))
        .unwrap_or_else(|| panic!("no {dotted}x address in {status}"))
        .to_string();
    // The kernel's own view agrees: the address is local to the guest.
    let trie = c.ok(&["attach", "-n", &n, "--", "cat", "/proc/net/fib_trie"]);
    assert!(trie.contains(&format!("|-- {addr}\n")), "{trie}");
    // coop info shows the address its DHCP server handed out.
    let info = c.info(&n);
    assert_eq!(info["ips"], serde_json::json!([addr]), "{info}");
    let eth0 = info["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .expect("eth0 in coop info")
        .clone();
    assert_eq!(eth0["addresses"], serde_json::json!([format!("{addr}/24")]));

    // A TCP service in the guest (systemd's socket activator: minbase has no netcat or
    // python), reached from the host directly and through the published port.
    c.ok(&[
        "attach",
        "-n",
        &n,
        "--",
        "sh",
        "-c",
        "echo served-by-$(hostname) > /run/gn-hello && \
         systemd-run --quiet --unit=gn-hello systemd-socket-activate -l 8077 --inetd -a \
         cat /run/gn-hello",
    ]);
    let want = format!("served-by-{n}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let direct = loop {
        match tcp_read_all(&format!("{addr}:8077")) {
            Ok(s) if s.contains(&want) => break s,
            r => assert!(
                Instant::now() < deadline,
                "service at {addr}:8077 never answered: {r:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(direct.trim(), want);
    let bridge = format!("{dotted}1:{port}");
    assert_eq!(tcp_read_all(&bridge).unwrap().trim(), want, "via {bridge}");

    c.stop_guest_cleanly(&n, 30, Duration::from_secs(25));
    assert_eq!(c.info(&n)["state"], "STOPPED");
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}
