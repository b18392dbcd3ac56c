//! Host tests (root): real bridges, veths, nft rules and dnsmasq, with traffic only between
//! network namespaces these tests create. Every object has a unique name and is removed
//! by a Drop guard, also when an assertion fails. Tests run one at a time (they share the
//! kernel's forwarding state).

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coop_net::{
    host_veth_name, iface_stats_attached, parse_interfaces, setup, teardown, Attached, IfaceSpec,
    NetStore,
};

static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn uniq() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// Returns a reason to skip when this host cannot run the tests.
fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for tool in ["nft", "dnsmasq", "unshare", "nsenter", "ip"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Some(format!("{tool} not installed"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox missing (install busybox-static)".into());
    }
    None
}

macro_rules! require_host {
    () => {
        if let Some(r) = skip_reason() {
            eprintln!("SKIP: {r}");
            return;
        }
    };
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command")
}

/// A process in a fresh network namespace (`unshare -n sleep`), killed on drop.
struct Ns {
    child: Child,
    pid: i32,
}

impl Ns {
    fn new() -> Ns {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "120"])
            .spawn()
            .expect("spawn unshare");
        let pid = child.id() as i32;
        let me = fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // unshare(2) happens after spawn returns: wait until the namespace differs.
        loop {
            if let Ok(l) = fs::read_link(format!("/proc/{pid}/ns/net")) {
                if l != me {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "unshare -n did not take effect");
            std::thread::sleep(Duration::from_millis(2));
        }
        Ns { child, pid }
    }

    fn exec(&self, args: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let mut full = vec!["nsenter", "-t", &pid, "-n"];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.exec(args).stdout).into_owned()
    }

    fn ping(&self, ip: &str) -> bool {
        self.exec(&["busybox", "ping", "-c", "1", "-W", "1", ip])
            .status
            .success()
    }

    /// One DHCP exchange on eth0 (busybox udhcpc, 5 tries): (success, stdout+stderr).
    fn udhcpc(&self) -> (bool, String) {
        let out = self.exec(&[
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs `f` on a thread inside this namespace.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns = fs::File::open(format!("/proc/{}/ns/net", self.pid)).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store in a temp dir with its own nft table; removes its networks on drop.
struct Env {
    store: NetStore,
    dir: tempfile::TempDir,
    table: String,
    nets: Vec<String>,
    tag: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let tag = format!("{}{}", std::process::id() % 100_000, uniq());
        let table = format!("coopt{tag}");
        let store = NetStore::open_with_table(dir.path(), &table).unwrap();
        Env {
            store,
            dir,
            table,
            nets: Vec::new(),
            tag,
        }
    }

    /// A new network `cb<tag><i>` on a free 10.231.x.0/24 (or nearby).
    fn net(&mut self, nat: bool) -> (String, String) {
        let name = format!("cb{}{}", self.tag, self.nets.len());
        assert!(name.len() <= 15);
        for _ in 0..64 {
            let third = (std::process::id() * 7 + uniq() * 13) % 250 + 1;
            let subnet = format!("10.231.{third}.1/24");
            match self.store.create_network(&name, &subnet, nat) {
                Ok(_) => {
                    self.nets.push(name.clone());
                    return (name, format!("10.231.{third}.1"));
                }
                Err(e) if e.to_string().contains("overlaps") => continue,
                Err(e) => panic!("create_network {name} {subnet}: {e}"),
            }
        }
        panic!("no free 10.231.x.0/24");
    }

    /// `setup`, insisting on success; the result and a guard that tears it down.
    fn attach(&self, name: &str, pid: i32, spec: &[IfaceSpec]) -> (Attached, Att<'_>) {
        let a = setup(&self.store, name, pid, spec).unwrap();
        let g = Att::new(&self.store, &a);
        (a, g)
    }

    /// `create_network` (with NAT)'s error as text (panics if it succeeded).
    fn create_err(&self, name: &str, subnet: &str) -> String {
        self.store
            .create_network(name, subnet, true)
            .unwrap_err()
            .to_string()
    }

    /// Our table as compact JSON without handles (they change on every rewrite).
    fn ruleset(&self) -> String {
        let out = sh(&["nft", "-j", "list", "table", "inet", &self.table]);
        if !out.status.success() {
            return String::new();
        }
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        fn strip(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    m.remove("handle");
                    m.remove("metainfo");
                    m.values_mut().for_each(strip);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                _ => {}
            }
        }
        strip(&mut v);
        v.to_string()
    }

    fn dnsmasq_pids(&self) -> Vec<i32> {
        let needle = self.dir.path().to_string_lossy().into_owned();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) {
                let c = String::from_utf8_lossy(&c);
                if c.starts_with("dnsmasq") && c.contains(&needle) {
                    out.push(pid);
                }
            }
        }
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for n in self.nets.drain(..).rev() {
            if let Err(e) = self.store.remove(&n, &[]) {
                eprintln!("cleanup of network {n}: {e}");
                let _ = sh(&["ip", "link", "del", &n]);
            }
        }
        let _ = sh(&["nft", "delete", "table", "inet", &self.table]);
    }
}

/// Deletes a host link on drop.
struct DelLink(String);

impl Drop for DelLink {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.0]);
    }
}

/// Tears down on drop.
struct Att<'a> {
    store: &'a NetStore,
    a: Option<Attached>,
}

impl<'a> Att<'a> {
    /// Guards (a copy of) `a`.
    fn new(store: &'a NetStore, a: &Attached) -> Att<'a> {
        Att {
            store,
            a: Some(a.clone()),
        }
    }
}

impl Drop for Att<'_> {
    fn drop(&mut self) {
        if let Some(a) = self.a.take() {
            let _ = teardown(self.store, &a);
        }
    }
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `setup`'s error as text (panics if it succeeded).
fn setup_err(store: &NetStore, name: &str, pid: i32, spec: &[IfaceSpec]) -> String {
    setup(store, name, pid, spec).unwrap_err().to_string()
}

fn veth_spec(net: &str, extra: &[(&str, &str)]) -> Vec<IfaceSpec> {
    let mut keys = vec![
        ("0.type", "veth"),
        ("0.link", net),
        ("0.flags", "up"),
        ("0.hwaddr", "00:16:3e:xx:xx:xx"),
    ];
    keys.extend_from_slice(extra);
    parse_interfaces(&kv(&keys)).unwrap()
}

fn ip_of(a: &Attached) -> String {
    a.ifaces[0]
        .ipv4
        .as_deref()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn link_exists(name: &str) -> bool {
    Path::new(&format!("/sys/class/net/{name}")).exists()
}

/// Links and files that an operation could change.
/// Host links with our prefixes, our nft table, our state files, our dnsmasq pids.
type Snapshot = (Vec<String>, String, Vec<(String, String)>, Vec<i32>);

fn snapshot(env: &Env) -> Snapshot {
    let mut links: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vc") || n.starts_with("vp") || n.starts_with("cb"))
        .collect();
    links.sort();
    let mut files = Vec::new();
    for sub in ["networks", "leases", "run"] {
        let d = env.dir.path().join(sub);
        let mut names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            if p.extension().is_some_and(|e| e == "pid") {
                continue;
            }
            files.push((
                p.display().to_string(),
                fs::read_to_string(&p).unwrap_or_default(),
            ));
        }
    }
    (links, env.ruleset(), files, env.dnsmasq_pids())
}

#[test]
fn addresses_routes_ping_restart_and_stats() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (net, gw) = env.net(true);
    let ns1 = Ns::new();
    let ns2 = Ns::new();
    let c1 = format!("ct{}a", env.tag);
    let c2 = format!("ct{}b", env.tag);
    let spec1 = veth_spec(&net, &[("0.ipv4.gateway", "auto")]);
    let (a1, g1) = env.attach(&c1, ns1.pid, &spec1);
    let (a2, _g2) = env.attach(&c2, ns2.pid, &veth_spec(&net, &[]));
    let ip1 = ip_of(&a1);
    let ip2 = ip_of(&a2);
    assert_ne!(ip1, ip2);
    let addr = ns1.stdout(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!("{ip1}/24")), "{addr}");
    let link = ns1.stdout(&["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(
        link.contains(spec1[0].hwaddr.as_deref().unwrap()),
        "MAC not set: {link}"
    );
    let route = ns1.stdout(&["ip", "-4", "route"]);
    assert!(
        route.contains(&format!("default via {gw} dev eth0")),
        "{route}"
    );
    let lo = ns1.stdout(&["ip", "-o", "link", "show", "dev", "lo"]);
    assert!(lo.contains("UP"), "{lo}");
    assert!(link_exists(a1.ifaces[0].host_veth.as_deref().unwrap()));
    assert_eq!(
        a1.ifaces[0].host_veth.as_deref(),
        Some(host_veth_name(&c1, 0).as_str())
    );

    assert!(ns1.ping(&gw), "container cannot ping its bridge");
    assert!(
        ns1.ping(&ip2),
        "containers on one bridge cannot reach each other"
    );
    assert!(ns2.ping(&ip1));

    let stats = iface_stats_attached(&a1).unwrap();
    let eth0 = stats
        .iter()
        .find(|s| s.name == "eth0")
        .expect("eth0 in stats");
    assert!(eth0.addresses.iter().any(|a| a == &format!("{ip1}/24")));
    assert!(eth0.rx_bytes > 0 && eth0.tx_bytes > 0, "{eth0:?}");
    assert_eq!(eth0.host_veth, a1.ifaces[0].host_veth);

    // Stop + start: same lease, and the Attached round-trips through JSON.
    let json = serde_json::to_string(&a1).unwrap();
    let back: Attached = serde_json::from_str(&json).unwrap();
    drop(g1);
    assert!(!link_exists(back.ifaces[0].host_veth.as_deref().unwrap()));
    drop(ns1);
    let ns1 = Ns::new();
    let (again, _g1) = env.attach(&c1, ns1.pid, &spec1);
    assert_eq!(ip_of(&again), ip1, "lease not kept across restart");
    assert!(ns1.ping(&ip2));

    let info = env.store.list().unwrap();
    let me = info.iter().find(|i| i.name == net).unwrap();
    assert!(me.bridge_up);
    assert_eq!(me.leases, 2);
    assert!(me.nat);
}

#[test]
fn static_address_and_release() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (net, gw) = env.net(false);
    let prefix = gw.rsplit_once('.').unwrap().0.to_string();
    let want = format!("{prefix}.77");
    let ns = Ns::new();
    let c = format!("ct{}s", env.tag);
    let spec = veth_spec(
        &net,
        &[
            ("0.ipv4.address", &format!("{want}/24")),
            ("0.name", "lan0"),
            ("0.mtu", "1400"),
            ("0.veth.pair", &format!("vc{}p", env.tag)),
        ],
    );
    let (a, _g) = env.attach(&c, ns.pid, &spec);
    assert_eq!(
        a.ifaces[0].host_veth.as_deref(),
        Some(format!("vc{}p", env.tag).as_str())
    );
    let out = ns.stdout(&["ip", "-4", "-o", "addr", "show", "dev", "lan0"]);
    assert!(out.contains(&format!("{want}/24")), "{out}");
    let out = ns.stdout(&["ip", "-o", "link", "show", "dev", "lan0"]);
    assert!(out.contains("mtu 1400"), "{out}");
    assert!(ns.ping(&gw));
    assert_eq!(env.store.leases(&net).unwrap().len(), 1);
    env.store.release_leases(&c).unwrap();
    assert!(env.store.leases(&net).unwrap().is_empty());
}

#[test]
fn networks_are_isolated() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (n1, gw1) = env.net(true);
    let (n2, gw2) = env.net(true);
    let ns1 = Ns::new();
    let ns2 = Ns::new();
    let (a1, _g1) = env.attach(&format!("ct{}x", env.tag), ns1.pid, &veth_spec(&n1, &[]));
    let (a2, _g2) = env.attach(&format!("ct{}y", env.tag), ns2.pid, &veth_spec(&n2, &[]));
    assert!(ns1.ping(&gw1));
    assert!(ns2.ping(&gw2));
    assert!(!ns1.ping(&ip_of(&a2)), "network 1 reached network 2");
    assert!(!ns2.ping(&ip_of(&a1)), "network 2 reached network 1");
}

/// A "remote host": a namespace joined to the host by its own veth pair on a test subnet.
struct Remote {
    ns: Ns,
    host_if: String,
    host_ip: String,
    ip: String,
}

impl Remote {
    fn new(tag: &str) -> Remote {
        let ns = Ns::new();
        let host_if = format!("cbr{tag}h");
        let peer = format!("cbr{tag}p");
        let mut third = 0;
        for t in (std::process::id() % 200 + 20)..250 {
            let r = sh(&["ip", "-4", "route", "show", &format!("10.232.{t}.0/24")]);
            if r.stdout.is_empty() {
                third = t;
                break;
            }
        }
        assert!(third > 0);
        let host_ip = format!("10.232.{third}.1");
        let ip = format!("10.232.{third}.2");
        let pid = ns.pid.to_string();
        let r = Remote {
            ns,
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
            ip: ip.clone(),
        };
        for cmd in [
            vec![
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
            ],
            vec!["ip", "link", "set", &peer, "netns", &pid],
            vec![
                "ip",
                "addr",
                "add",
                &format!("{host_ip}/24"),
                "dev",
                &host_if,
            ],
            vec!["ip", "link", "set", &host_if, "up"],
        ] {
            let o = sh(&cmd);
            assert!(
                o.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        for cmd in [
            vec!["ip", "addr", "add", &format!("{ip}/24"), "dev", &peer],
            vec!["ip", "link", "set", &peer, "up"],
            vec!["ip", "link", "set", "lo", "up"],
        ] {
            let o = r.ns.exec(&cmd);
            assert!(
                o.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        r
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.host_if]);
    }
}

#[test]
fn nat_and_published_ports() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    // Behave as on a host where coop itself turned forwarding on: our forward chain then
    // drops everything that is not our bridges' traffic.
    fs::write(env.dir.path().join("run/forwarding-enabled-by-coop"), "1\n").unwrap();
    let (net, gw) = env.net(true);
    assert!(
        env.ruleset().contains("\"policy\":\"drop\""),
        "{}",
        env.ruleset()
    );
    let remote = Remote::new(&env.tag);
    let ns = Ns::new();
    let hp = 20000 + (std::process::id() % 20000) as u16;
    let publish = format!("{hp}:80/tcp");
    let c = format!("ct{}n", env.tag);
    let (a, _g) = env.attach(&c, ns.pid, &veth_spec(&net, &[("0.publish", &publish)]));

    // Outbound: the remote sees the host's address, not the container's.
    let listen_ip: Ipv4Addr = remote.ip.parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = remote.ns.run(move || {
        let l = TcpListener::bind((listen_ip, 9000)).unwrap();
        tx.send(()).unwrap();
        let (mut s, peer) = l.accept().unwrap();
        let _ = s.write_all(b"hi");
        peer
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let target: SocketAddr = format!("{}:9000", remote.ip).parse().unwrap();
    let client = ns.run(move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok::<_, std::io::Error>(buf)
    });
    assert_eq!(client.join().unwrap().expect("container -> remote"), "hi");
    let peer = server.join().unwrap();
    assert_eq!(peer.ip().to_string(), remote.host_ip, "not masqueraded");
    assert_ne!(peer.ip().to_string(), ip_of(&a));

    // Inbound: remote -> host:hp reaches the container's port 80; so does the host itself
    // connecting to the bridge address.
    let (tx, rx) = std::sync::mpsc::channel();
    let inside = ns.run(move || {
        let l = TcpListener::bind(("0.0.0.0", 80)).unwrap();
        tx.send(()).unwrap();
        let mut peers = Vec::new();
        for _ in 0..2 {
            let (mut s, peer) = l.accept().unwrap();
            let _ = s.write_all(b"from container");
            peers.push(peer);
        }
        peers
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let target: SocketAddr = format!("{}:{hp}", remote.host_ip).parse().unwrap();
    let client = remote.ns.run(move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok::<_, std::io::Error>(buf)
    });
    assert_eq!(
        client.join().unwrap().expect("remote -> published port"),
        "from container"
    );
    let target: SocketAddr = format!("{gw}:{hp}").parse().unwrap();
    let mut s =
        TcpStream::connect_timeout(&target, Duration::from_secs(3)).expect("host -> bridge:port");
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "from container");
    let peers = inside.join().unwrap();
    assert_eq!(
        peers[0].ip().to_string(),
        remote.ip,
        "DNAT kept the client address"
    );

    // The port is ours now: another container cannot publish it.
    let ns2 = Ns::new();
    let err = setup_err(
        &env.store,
        &format!("ct{}m", env.tag),
        ns2.pid,
        &veth_spec(&net, &[("0.publish", &publish)]),
    );
    assert!(
        err.contains(&hp.to_string()) && err.contains("already published"),
        "{err}"
    );

    // Teardown removes the rule.
    let port_rule = format!("\"right\":{hp}}}");
    assert!(
        env.ruleset().contains(&port_rule),
        "no rule for {hp}: {}",
        env.ruleset()
    );
    teardown(&env.store, &a).unwrap();
    assert!(!env.ruleset().contains(&port_rule), "port rule left behind");
}

#[test]
fn dhcp_hands_out_the_allocated_lease() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    // A world-searchable state dir lets dnsmasq drop root (it re-reads hosts as nobody).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (net, gw) = env.net(true);
    let pid = env.dnsmasq_pids()[0];
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    let real_uid = uid_line.split_whitespace().nth(1).unwrap_or("");
    assert!(
        !real_uid.is_empty() && real_uid != "0",
        "dnsmasq kept root: {uid_line}"
    );
    let ns = Ns::new();
    let c = format!("ct{}d", env.tag);
    let (a, _g) = env.attach(&c, ns.pid, &veth_spec(&net, &[]));
    // Two other leases first, so the answer is not just "the first free address".
    let ns_b = Ns::new();
    let (b, _gb) = env.attach(&format!("ct{}e", env.tag), ns_b.pid, &veth_spec(&net, &[]));
    for (n, att) in [(&ns, &a), (&ns_b, &b)] {
        let (ok, text) = n.udhcpc();
        let want = format!("lease of {} obtained from {gw}", ip_of(att));
        assert!(ok && text.contains(&want), "want {want:?}, got: {text}");
    }
    // Destroying a container frees its address for the next one at once, also for DHCP.
    let freed = ip_of(&a);
    drop(_g);
    env.store.release_leases(&c).unwrap();
    let ns_c = Ns::new();
    let (cc, _gc) = env.attach(&format!("ct{}f", env.tag), ns_c.pid, &veth_spec(&net, &[]));
    assert_eq!(ip_of(&cc), freed, "first free address is the released one");
    let (_, text) = ns_c.udhcpc();
    assert!(
        text.contains(&format!("lease of {freed} obtained")),
        "reused address not served: {text}"
    );
}

#[test]
fn twenty_cycles_leave_nothing_behind() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (net, gw) = env.net(true);
    let baseline = env.ruleset();
    let dnsmasq = env.dnsmasq_pids();
    assert_eq!(dnsmasq.len(), 1, "one dnsmasq per network");
    let c = format!("ct{}c", env.tag);
    let hp = 40000 + (std::process::id() % 20000) as u16;
    let publish = format!("{hp}:80");
    let spec = veth_spec(&net, &[("0.publish", &publish)]);
    let mut times = Vec::new();
    let mut ip = None;
    for i in 0..20 {
        let ns = Ns::new();
        let t = Instant::now();
        let a = setup(&env.store, &c, ns.pid, &spec).unwrap();
        times.push(t.elapsed());
        if i % 5 == 0 {
            assert!(ns.ping(&gw), "cycle {i}: no connectivity");
        }
        let got = ip_of(&a);
        assert_eq!(ip.get_or_insert(got.clone()), &got);
        teardown(&env.store, &a).unwrap();
        assert!(!link_exists(a.ifaces[0].host_veth.as_deref().unwrap()));
    }
    assert_eq!(env.ruleset(), baseline, "rules left after teardown");
    assert_eq!(env.dnsmasq_pids(), dnsmasq);
    assert!(env.store.ports().unwrap().is_empty());
    times.sort();
    eprintln!(
        "setup() median {:?}, max {:?} over {} cycles",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    // Removing the network removes bridge, table and dnsmasq.
    let name = env.nets.pop().unwrap();
    env.store.remove(&name, &[]).unwrap();
    assert!(!link_exists(&name));
    assert!(env.dnsmasq_pids().is_empty());
    assert!(
        !sh(&["nft", "list", "table", "inet", &env.table])
            .status
            .success(),
        "table left after last network removed"
    );
    let links: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!links.iter().any(|l| l == &host_veth_name(&c, 0)));
}

#[test]
fn errors_change_nothing() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (net, gw) = env.net(true);
    let prefix = gw.rsplit_once('.').unwrap().0.to_string();
    let ns = Ns::new();
    let ns2 = Ns::new();
    let holder = format!("ct{}h", env.tag);
    let (held, _gh) = env.attach(&holder, ns.pid, &veth_spec(&net, &[]));
    let c = format!("ct{}q", env.tag);
    let before = snapshot(&env);

    // Overlapping one of ours.
    let e = env.create_err(&format!("cb{}z", env.tag), &format!("{prefix}.129/25"));
    assert!(e.contains("overlaps network"), "{e}");
    assert_eq!(snapshot(&env), before);

    // Overlapping a host address (whatever the host's first global IPv4 is).
    let out =
        String::from_utf8_lossy(&sh(&["ip", "-4", "-o", "addr", "show", "scope", "global"]).stdout)
            .into_owned();
    if let Some(cidr) = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .filter(|c| !c.starts_with("10.23"))
    {
        let addr: Ipv4Addr = cidr.split('/').next().unwrap().parse().unwrap();
        let o = addr.octets();
        let e = env.create_err(
            &format!("cb{}z", env.tag),
            &format!("{}.{}.{}.200/24", o[0], o[1], o[2]),
        );
        assert!(e.contains("overlaps host"), "{e}");
        assert_eq!(snapshot(&env), before);
    }

    // Overlapping a host route that has no address behind it.
    let rlink = format!("cbr{}q", env.tag);
    let o = sh(&[
        "ip",
        "link",
        "add",
        &rlink,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{rlink}x"),
    ]);
    assert!(o.status.success());
    let _rg = DelLink(rlink.clone());
    assert!(sh(&["ip", "link", "set", &rlink, "up"]).status.success());
    let routed = (200..250)
        .map(|t| format!("10.234.{t}.0/24"))
        .find(|r| sh(&["ip", "-4", "route", "show", r]).stdout.is_empty())
        .unwrap();
    let o = sh(&["ip", "route", "add", &routed, "dev", &rlink]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inside_route = routed.replace(".0/24", ".1/24");
    let before_r = snapshot(&env);
    let e = env.create_err(&format!("cb{}z", env.tag), &inside_route);
    assert!(
        e.contains("overlaps host route") && e.contains(&rlink),
        "{e}"
    );
    assert_eq!(snapshot(&env), before_r);
    drop(_rg);

    // A foreign bridge of that name.
    let foreign = format!("cb{}f", env.tag);
    assert!(sh(&["ip", "link", "add", &foreign, "type", "bridge"])
        .status
        .success());
    let _fg = DelLink(foreign.clone());
    let before_f = snapshot(&env);
    let e = env.create_err(&foreign, "10.233.250.1/24");
    assert!(e.contains("not a coop network"), "{e}");
    assert_eq!(snapshot(&env), before_f);
    drop(_fg);
    assert_eq!(snapshot(&env), before);

    // Bad names and subnets.
    for (n, s) in [
        ("a/b", "10.233.1.1/24"),
        ("waytoolongname123", "10.233.1.1/24"),
        ("cbq", "10.233.1.0/24"),
        ("cbq", "10.233.1.1/31"),
        ("cbq", "nonsense"),
    ] {
        assert!(env.store.create_network(n, s, true).is_err(), "{n} {s}");
    }
    assert_eq!(snapshot(&env), before);

    // Host port in use.
    let l = TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let e = setup_err(
        &env.store,
        &c,
        ns2.pid,
        &veth_spec(&net, &[("0.publish", &format!("{port}:80"))]),
    );
    assert!(e.contains(&port) && e.contains("cannot bind"), "{e}");
    assert_eq!(snapshot(&env), before);
    drop(l);

    // Address outside the subnet, taken, or the bridge's own.
    for (addr, what) in [
        ("10.99.99.5/24".to_string(), "outside"),
        (format!("{}/24", ip_of(&held)), "already taken"),
        (format!("{gw}/24"), "bridge"),
    ] {
        let e = setup_err(
            &env.store,
            &c,
            ns2.pid,
            &veth_spec(&net, &[("0.ipv4.address", &addr)]),
        );
        assert!(e.contains(what), "{addr}: {e}");
        assert_eq!(snapshot(&env), before, "after {addr}");
    }

    // A link that is not there: fails after the lease was taken, which must be undone.
    let e = setup_err(
        &env.store,
        &c,
        ns2.pid,
        &parse_interfaces(&kv(&[
            ("0.type", "veth"),
            ("0.link", &net),
            ("1.type", "macvlan"),
            ("1.link", "nosuchdev0"),
        ]))
        .unwrap(),
    );
    assert!(e.contains("nosuchdev0"), "{e}");
    assert_eq!(snapshot(&env), before);
    let inside = ns2.stdout(&["ip", "-o", "link"]);
    assert_eq!(inside.lines().count(), 1, "links left inside: {inside}");

    // A pid in the host's own namespace.
    let e = setup_err(
        &env.store,
        &c,
        std::process::id() as i32,
        &veth_spec(&net, &[]),
    );
    assert!(e.contains("host's network namespace"), "{e}");
    assert_eq!(snapshot(&env), before);

    // Unknown type.
    let e = parse_interfaces(&kv(&[("0.type", "vxlan")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("0.type") && e.contains("vxlan"), "{e}");

    // Removing a network in use is refused.
    let e = env
        .store
        .remove(&net, std::slice::from_ref(&holder))
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use"), "{e}");
    assert_eq!(snapshot(&env), before);
}

#[test]
fn empty_type_only_loopback() {
    require_host!();
    let _s = serial();
    let env = Env::new();
    let ns = Ns::new();
    let spec = parse_interfaces(&kv(&[("0.type", "empty")])).unwrap();
    let a = setup(&env.store, &format!("ct{}l", env.tag), ns.pid, &spec).unwrap();
    assert!(a.ifaces[0].host_veth.is_none());
    let out = ns.stdout(&["ip", "-o", "link"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("lo:") && out.contains("UP"), "{out}");
    assert!(ns.ping("127.0.0.1"));
    teardown(&env.store, &a).unwrap();
}

#[test]
fn macvlan_and_phys() {
    require_host!();
    let _s = serial();
    let env = Env::new();
    let lower = format!("cbm{}", env.tag);
    let phys = format!("cbp{}", env.tag);
    // This kernel has no dummy driver: veth ends serve as host devices.
    for l in [&lower, &phys] {
        let peer = format!("{l}x");
        let o = sh(&[
            "ip", "link", "add", l, "type", "veth", "peer", "name", &peer,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let _g1 = DelLink(lower.clone());
    let _g2 = DelLink(phys.clone());
    assert!(sh(&["ip", "link", "set", &lower, "up"]).status.success());
    let ns = Ns::new();
    let spec = parse_interfaces(&kv(&[
        ("0.type", "macvlan"),
        ("0.link", &lower),
        ("0.macvlan.mode", "bridge"),
        ("0.flags", "up"),
        ("0.ipv4.address", "10.233.77.5/24"),
        ("1.type", "phys"),
        ("1.link", &phys),
        ("1.name", "uplink1"),
        ("1.flags", "up"),
        ("1.ipv4.address", "10.233.78.5/24"),
        ("1.ipv4.gateway", "dev"),
    ]))
    .unwrap();
    let a = setup(&env.store, &format!("ct{}v", env.tag), ns.pid, &spec).unwrap();
    let out = ns.stdout(&["ip", "-o", "-4", "addr"]);
    assert!(
        out.contains("eth0") && out.contains("10.233.77.5/24"),
        "{out}"
    );
    assert!(
        out.contains("uplink1") && out.contains("10.233.78.5/24"),
        "{out}"
    );
    let link = ns.stdout(&["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains("macvlan") || link.contains("@"), "{link}");
    assert!(link.contains(spec[0].hwaddr.as_deref().unwrap()), "{link}");
    let route = ns.stdout(&["ip", "-4", "route"]);
    assert!(route.contains("default dev uplink1"), "{route}");
    assert!(!link_exists(&phys), "phys device still on the host");
    teardown(&env.store, &a).unwrap();
    assert!(link_exists(&phys), "phys device not given back");
    let inside = ns.stdout(&["ip", "-o", "link"]);
    assert!(!inside.contains("uplink1"), "{inside}");
}

#[test]
fn ensure_up_repairs_after_reboot() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (net, gw) = env.net(true);
    let json = serde_json::to_value(env.store.list().unwrap()).unwrap();
    assert_eq!(json[0]["name"], net.as_str());
    assert_eq!(json[0]["subnet"], format!("{gw}/24"));
    assert_eq!(json[0]["bridge_up"], true);
    assert_eq!(json[0]["nat"], true);
    // What a reboot loses: the bridge, the table, dnsmasq.
    let pids = env.dnsmasq_pids();
    for p in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::SIGKILL);
    }
    assert!(sh(&["ip", "link", "del", &net]).status.success());
    assert!(sh(&["nft", "delete", "table", "inet", &env.table])
        .status
        .success());
    let deadline = Instant::now() + Duration::from_secs(2);
    while !env.dnsmasq_pids().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!env.store.list().unwrap()[0].bridge_up);
    env.store.ensure_up(&net).unwrap();
    assert!(link_exists(&net));
    assert!(env.store.list().unwrap()[0].bridge_up);
    assert!(env.ruleset().contains("masquerade"));
    assert_eq!(env.dnsmasq_pids().len(), 1);
    let ns = Ns::new();
    let (_, _g) = env.attach(&format!("ct{}r", env.tag), ns.pid, &veth_spec(&net, &[]));
    assert!(ns.ping(&gw));
}

#[test]
fn parallel_setups_get_distinct_leases() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (net, gw) = env.net(true);
    let nss: Vec<Ns> = (0..6).map(|_| Ns::new()).collect();
    let results: Vec<Attached> = std::thread::scope(|s| {
        let hs: Vec<_> = nss
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let (store, net, tag) = (&env.store, &net, &env.tag);
                s.spawn(move || {
                    setup(store, &format!("ct{tag}p{i}"), ns.pid, &veth_spec(net, &[])).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let guards: Vec<Att> = results.iter().map(|a| Att::new(&env.store, a)).collect();
    let mut ips: Vec<String> = results.iter().map(ip_of).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6, "duplicate leases: {ips:?}");
    assert_eq!(env.store.leases(&net).unwrap().len(), 6);
    assert!(nss[5].ping(&gw) && nss[5].ping(&ip_of(&results[0])));
    drop(guards);
}

#[test]
fn veth_on_a_bridge_coop_does_not_own() {
    require_host!();
    let _s = serial();
    let env = Env::new();
    let br = format!("cbx{}", env.tag);
    assert!(sh(&["ip", "link", "add", &br, "type", "bridge"])
        .status
        .success());
    let _g = DelLink(br.clone());
    let third = (200..250)
        .find(|t| {
            sh(&["ip", "-4", "route", "show", &format!("10.235.{t}.0/24")])
                .stdout
                .is_empty()
        })
        .unwrap();
    let o = sh(&[
        "ip",
        "addr",
        "add",
        &format!("10.235.{third}.1/24"),
        "dev",
        &br,
    ]);
    assert!(o.status.success());
    assert!(sh(&["ip", "link", "set", &br, "up"]).status.success());
    let ns = Ns::new();
    let spec = veth_spec(
        &br,
        &[
            ("0.ipv4.address", &format!("10.235.{third}.9/24")),
            ("0.ipv4.gateway", "auto"),
        ],
    );
    let (a, _ga) = env.attach(&format!("ct{}o", env.tag), ns.pid, &spec);
    assert_eq!(a.ifaces[0].network, None);
    let route = ns.stdout(&["ip", "-4", "route"]);
    assert!(
        route.contains(&format!("default via 10.235.{third}.1")),
        "{route}"
    );
    assert!(ns.ping(&format!("10.235.{third}.1")));
    // Publishing needs a coop network (no NAT table to put the rule in).
    let ns2 = Ns::new();
    let e = setup_err(
        &env.store,
        &format!("ct{}o2", env.tag),
        ns2.pid,
        &veth_spec(&br, &[("0.publish", "8080:80")]),
    );
    assert!(e.contains("publish"), "{e}");
}

/// Handle of our nft table: a rebuild (delete + add) gives it a new one.
fn table_handle(table: &str) -> Option<u64> {
    let out = sh(&["nft", "-j", "list", "table", "inet", table]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["nftables"]
        .as_array()?
        .iter()
        .find_map(|e| e["table"]["handle"].as_u64())
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

#[test]
fn restart_on_a_ready_network_rebuilds_nothing() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (net, gw) = env.net(true);
    let handle = table_handle(&env.table).expect("table exists");
    let pids = env.dnsmasq_pids();
    assert_eq!(pids.len(), 1);
    // ensure_up on a ready network: no nft rebuild, same dnsmasq.
    env.store.ensure_up(&net).unwrap();
    assert_eq!(table_handle(&env.table), Some(handle), "table rebuilt");
    assert_eq!(env.dnsmasq_pids(), pids);

    let spec = veth_spec(&net, &[]);
    let c = format!("ct{}s", env.tag);
    let ns = Ns::new();
    let a = setup(&env.store, &c, ns.pid, &spec).unwrap();
    let ip = ip_of(&a);
    teardown(&env.store, &a).unwrap();
    drop(ns);
    let leases = env.dir.path().join("leases").join(format!("{net}.json"));
    let hosts = env.dir.path().join("run").join(format!("{net}.dhcp-hosts"));
    let (li, hi) = (inode(&leases), inode(&hosts));
    let hosts_text = fs::read_to_string(&hosts).unwrap();
    assert!(hosts_text.contains(&ip), "{hosts_text}");

    // Restart with the same lease and MAC: lease file and DHCP hosts file untouched.
    let ns = Ns::new();
    let (again, _g) = env.attach(&c, ns.pid, &spec);
    assert_eq!(ip_of(&again), ip);
    assert_eq!(inode(&leases), li, "lease file rewritten");
    assert_eq!(inode(&hosts), hi, "DHCP hosts file rewritten");
    assert_eq!(table_handle(&env.table), Some(handle), "table rebuilt");
    assert_eq!(env.dnsmasq_pids(), pids);
    assert!(ns.ping(&gw));

    // A new MAC for the same interface does update the hosts file.
    let spec2 = veth_spec(&net, &[]);
    assert_ne!(spec2[0].hwaddr, spec[0].hwaddr);
    drop(_g);
    drop(ns);
    let ns = Ns::new();
    let (_, _g) = env.attach(&c, ns.pid, &spec2);
    let text = fs::read_to_string(&hosts).unwrap();
    assert!(
        text.contains(spec2[0].hwaddr.as_deref().unwrap()),
        "hosts file not updated: {text}"
    );
    assert!(ns.ping(&gw));
}

#[test]
fn failure_inside_the_namespace_rolls_back() {
    require_host!();
    let _s = serial();
    let mut env = Env::new();
    let (net, _gw) = env.net(true);
    // Another container holds a lease, so the lease file exists and must come back as is.
    let other = Ns::new();
    let (_, _go) = env.attach(&format!("ct{}o", env.tag), other.pid, &veth_spec(&net, &[]));
    let before = snapshot(&env);
    // An off-link gateway: the veth is made and configured, then the route is refused
    // (the last request of the batch), so everything before it must be undone.
    let spec = veth_spec(&net, &[("0.ipv4.gateway", "192.0.2.77")]);
    let c = format!("ct{}f", env.tag);
    let ns = Ns::new();
    let e = setup_err(&env.store, &c, ns.pid, &spec);
    assert!(e.contains("default route via 192.0.2.77"), "{e}");
    assert!(
        !link_exists(&host_veth_name(&c, 0)),
        "host veth left behind"
    );
    assert_eq!(snapshot(&env), before);
    // The same container then starts fine with a usable gateway.
    let (_, _g) = env.attach(&c, ns.pid, &veth_spec(&net, &[]));
    let route = ns.stdout(&["ip", "-4", "route"]);
    assert!(route.contains("default via"), "{route}");
}
