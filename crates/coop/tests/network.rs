//! End-to-end networking through the `coop` binary: real traffic, but only between
//! network namespaces this test makes (containers and a fake "remote host").

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn ip_of(c: &Coop, n: &str) -> String {
    c.info(n)["ips"][0].as_str().unwrap().to_string()
}

struct NetnsGuard(String, String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.1]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

#[test]
fn bridge_addresses_dhcp_http_ports_nat_and_cleanup() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let seed = std::process::id();
    let net1 = unique("cn");
    let net2 = unique("cm");
    let (sub1, pre1) = free_subnet(seed);
    c.network(&net1, &sub1);
    let (sub2, pre2) = free_subnet(seed + 1000);
    assert_ne!(pre1, pre2);
    c.network(&net2, &sub2);
    let bridge_ip = format!("{pre1}1");
    let port = 20000 + seed % 20000;

    // A: address allocated from the range, a published port.
    let a = unique("na");
    c.busybox(
        &a,
        &format!(
            "lxc.net.0.type = veth\nlxc.net.0.link = {net1}\nlxc.net.0.flags = up\ncoop.net.0.publish = {port}:80/tcp\n"
        ),
    );
    // B: a static address on the same bridge.
    let b = unique("nb");
    let b_ip = format!("{pre1}77");
    c.busybox(
        &b,
        &format!(
            "lxc.net.0.type = veth\nlxc.net.0.link = {net1}\nlxc.net.0.flags = up\nlxc.net.0.ipv4.address = {b_ip}/24\nlxc.net.0.ipv4.gateway = auto\n"
        ),
    );
    // C: on the other network.
    let cc = unique("nc");
    c.busybox(
        &cc,
        &format!("lxc.net.0.type = veth\nlxc.net.0.link = {net2}\nlxc.net.0.flags = up\n"),
    );
    let t = Instant::now();
    c.ok(&["start", "-n", &a]);
    eprintln!("start with veth + published port took {:?}", t.elapsed());
    c.ok(&["start", "-n", &b]);
    c.ok(&["start", "-n", &cc]);
    let a_ip = ip_of(&c, &a);
    assert!(a_ip.starts_with(&pre1), "{a_ip} not in {sub1}");
    assert_eq!(ip_of(&c, &b), b_ip);
    let info = c.info(&a);
    let link = &info["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap()
        .clone();
    assert!(link["host_veth"].as_str().is_some(), "{info}");

    // Same bridge: reachable. Other network: not.
    c.attach_ok(&a, &["ping", "-c", "1", "-W", "2", &b_ip]);
    let out = c.attach(&cc, &["ping", "-c", "1", "-W", "1", &a_ip]);
    assert!(
        !out.status.success(),
        "containers on two networks reached each other"
    );

    // busybox httpd answers at the container's address and at the published port.
    c.attach_ok(
        &a,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-coop > /www/index.html && httpd -h /www -p 80",
        ],
    );
    assert!(http_get(&format!("{a_ip}:80"))
        .unwrap()
        .contains("hello-from-coop"));
    assert!(http_get(&format!("{bridge_ip}:{port}"))
        .unwrap()
        .contains("hello-from-coop"));

    // The template's own DHCP client gets the very address coop leased.
    let dhcp = c.attach_ok(&a, &["sh", "-c",
        "printf '#!/bin/sh\\n[ \"$1\" = bound ] && echo LEASE=$ip\\n' > /tmp/s; chmod +x /tmp/s; udhcpc -i eth0 -n -q -t 5 -s /tmp/s",
    ]);
    assert!(dhcp.contains(&format!("LEASE={a_ip}")), "{dhcp}");

    // Outbound NAT to a "remote host" namespace that has no route back to the bridge:
    // a reply can only come back if the host masqueraded the container.
    let ns = unique("rh");
    let hv = unique("rv");
    let _g = NetnsGuard(ns.clone(), hv.clone());
    let (rsub, rpre) = free_subnet(seed + 2000);
    let _ = rsub;
    sh(&format!(
        "ip netns add {ns} && ip link add {hv} type veth peer name eth9 netns {ns} && \
         ip addr add {rpre}1/24 dev {hv} && ip link set {hv} up && \
         ip -n {ns} addr add {rpre}2/24 dev eth9 && ip -n {ns} link set eth9 up && ip -n {ns} link set lo up"
    ));
    c.attach_ok(&a, &["ping", "-c", "1", "-W", "2", &format!("{rpre}2")]);

    // A clean stop with networking still takes under 3 s, and leaves no veth behind.
    let host_veth = link["host_veth"].as_str().unwrap().to_string();
    let t = Instant::now();
    c.ok(&["stop", "-n", &a]);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(!std::path::Path::new(&format!("/sys/class/net/{host_veth}")).exists());
    assert!(
        http_get(&format!("{bridge_ip}:{port}")).is_err(),
        "port still published"
    );
    // The lease survives a restart…
    c.ok(&["start", "-n", &a]);
    assert_eq!(ip_of(&c, &a), a_ip);
    c.ok(&["stop", "-k", "-n", &a]);

    // …a network in use cannot be removed…
    assert!(c.fails(&["net", "rm", &net1]).contains("in use"));

    // …and destroy gives the address back.
    c.ok(&["destroy", "-n", &a]);
    let nets: serde_json::Value = serde_json::from_str(&c.ok(&["net", "ls", "--json"])).unwrap();
    let n1 = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == net1.as_str())
        .unwrap();
    assert_eq!(n1["leases"], 1, "only B's lease is left: {n1}");
    c.ok(&["stop", "-k", "-n", &b]);
    c.ok(&["stop", "-k", "-n", &cc]);
    assert_eq!(leftovers(&c, &a), Vec::<String>::new());
}

#[test]
fn failed_start_leaves_no_network_traces() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let net = unique("cf");
    let (sub, _) = free_subnet(std::process::id() + 3000);
    c.network(&net, &sub);
    // The published host port is taken by someone else.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let n = unique("nf");
    c.busybox(
        &n,
        &format!("lxc.net.0.type = veth\nlxc.net.0.link = {net}\ncoop.net.0.publish = {port}:80\n"),
    );
    let links_before = std::fs::read_dir("/sys/class/net").unwrap().count();
    let err = c.fails(&["start", "-n", &n]);
    assert!(err.contains(&port.to_string()), "{err}");
    assert_eq!(
        std::fs::read_dir("/sys/class/net").unwrap().count(),
        links_before
    );
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
    assert_eq!(c.info(&n)["state"], "STOPPED");
    // An unknown interface type is refused before anything happens.
    let bad = c.root.path().join("bad.conf");
    std::fs::write(&bad, "lxc.net.0.type = wormhole\n").unwrap();
    let err = c.fails(&[
        "create",
        "-n",
        &unique("nz"),
        "-t",
        "busybox",
        "-f",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("wormhole"), "{err}");
    drop(taken);
}

#[test]
fn hundred_start_stop_cycles_leave_nothing() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let net = unique("cy");
    let (sub, pre) = free_subnet(std::process::id() + 5000);
    c.network(&net, &sub);
    let port = 40000 + std::process::id() % 20000;
    let n = unique("cyc");
    c.busybox(
        &n,
        &format!(
            "lxc.net.0.type = veth\nlxc.net.0.link = {net}\nlxc.net.0.flags = up\ncoop.net.0.publish = {port}:80\n"
        ),
    );
    let links = || {
        let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    let procs = || {
        Command::new("pgrep")
            .args(["-c", "-f", &format!("__monitor.*{n}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let links_before = links();
    let mut ip = None;
    for i in 0..100 {
        c.ok(&["start", "-n", &n]);
        let now = ip_of(&c, &n);
        assert!(now.starts_with(&pre));
        assert_eq!(
            ip.get_or_insert(now.clone()),
            &now,
            "cycle {i}: the address moved"
        );
        c.ok(&["stop", "-k", "-n", &n]);
    }
    // Only new links count: other work on the host may remove its own meanwhile.
    let new_links: Vec<String> = links()
        .into_iter()
        .filter(|l| !links_before.contains(l))
        .collect();
    assert!(
        new_links.is_empty(),
        "links left after 100 cycles: {new_links:?}"
    );
    assert_eq!(procs(), "0", "monitors left");
    assert!(
        http_get(&format!("{pre}1:{port}")).is_err(),
        "port still published"
    );
    let rules = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        !rules.contains(&format!("dport {port}")),
        "nft rule left: {rules}"
    );
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
    c.ok(&["destroy", "-n", &n]);
    let nets: serde_json::Value = serde_json::from_str(&c.ok(&["net", "ls", "--json"])).unwrap();
    let entry = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == net.as_str())
        .unwrap();
    assert_eq!(entry["leases"], 0, "lease kept after destroy");
}
