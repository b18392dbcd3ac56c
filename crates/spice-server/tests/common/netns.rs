//! Slow links for tests: a veth pair between a server and a client network namespace,
//! the server's side shaped with tc's token bucket (tbf), and a server run inside the
//! server namespace. No traffic leaves those namespaces; they need root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spice_server::coop_display::DisplaySource;
use spice_server::{Config, StatsHandle};

use super::{no_auth, skip_without, Proc};

/// Runs `ip ARGS`; the error carries its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Skips (returns true after printing why) when a tool is missing or the test does not
/// run as root (namespaces need CAP_SYS_ADMIN and /run/netns).
pub fn skip_without_netns(bins: &[&str]) -> bool {
    if skip_without(bins) {
        return true;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIP: network namespaces need root");
        return true;
    }
    false
}

/// Two namespaces joined by a veth; deleted (with the veth) on drop.
pub struct Net {
    pub srv: String,
    pub cli: String,
    pub srv_ip: String,
    pub srv_dev: String,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.srv]);
        let _ = ip(&["netns", "del", &self.cli]);
    }
}

impl Net {
    /// Namespaces `<prefix><pid><idx>s`/`…c` (each test file its own `prefix` and
    /// `subnet`), 10.`subnet`.`idx`.1 (server) and .2 (client); the server's side sends
    /// at `rate` (tc tbf syntax, e.g. `4mbit`) when given.
    pub fn new(prefix: &str, subnet: u8, idx: u8, rate: Option<&str>) -> Result<Net, String> {
        let tag = format!("{prefix}{}{idx}", std::process::id() % 100_000);
        let net = Net {
            srv: format!("{tag}s"),
            cli: format!("{tag}c"),
            srv_ip: format!("10.{subnet}.{idx}.1"),
            srv_dev: format!("{tag}a"),
        };
        let (va, vb) = (net.srv_dev.clone(), format!("{tag}b"));
        ip(&["netns", "add", &net.srv])?;
        ip(&["netns", "add", &net.cli])?;
        ip(&[
            "link", "add", &va, "netns", &net.srv, "type", "veth", "peer", "name", &vb, "netns",
            &net.cli,
        ])?;
        for (ns, dev, addr) in [
            (&net.srv, &va, format!("10.{subnet}.{idx}.1/24")),
            (&net.cli, &vb, format!("10.{subnet}.{idx}.2/24")),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        if let Some(rate) = rate {
            // A queue of at most 400 ms at that rate, as on a real slow uplink.
            ip(&[
                "netns", "exec", &net.srv, "tc", "qdisc", "add", "dev", &va, "root", "tbf", "rate",
                rate, "burst", "32kbit", "latency", "400ms",
            ])
            .map_err(|e| format!("tc tbf unavailable: {e}"))?;
        }
        Ok(net)
    }

    /// [`Net::new`], or `None` after printing why the test is skipped.
    pub fn or_skip(prefix: &str, subnet: u8, idx: u8, rate: Option<&str>) -> Option<Net> {
        Net::new(prefix, subnet, idx, rate)
            .map_err(|e| eprintln!("SKIP: {e}"))
            .ok()
    }

    /// Lifts the rate limit: the link recovers.
    pub fn unshape(&self) -> Result<(), String> {
        ip(&[
            "netns",
            "exec",
            &self.srv,
            "tc",
            "qdisc",
            "del",
            "dev",
            &self.srv_dev,
            "root",
        ])
    }

    /// A command run in the client's namespace.
    pub fn client_cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.cli, prog]);
        c
    }

    /// spice-gtk's `spicy` from the client namespace, shown on X display `display`,
    /// connected to the server's `port`.
    pub fn spicy(&self, display: &str, port: u16) -> Proc {
        let child = self
            .client_cmd("env")
            .arg(format!("DISPLAY={display}"))
            .args(["spicy", "-h", &self.srv_ip, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn spicy");
        Proc(child)
    }
}

/// Moves the calling thread into namespace `ns` (its sockets are made there).
pub fn enter(ns: &str) -> Result<(), String> {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| e.to_string())?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
}

/// A server on its own thread and runtime, inside a namespace when asked (its sockets
/// are made there); stopped on drop.
pub struct NsServer {
    pub stats: StatsHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for NsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A server of X display `display` in namespace `ns`.
pub fn serve_in(ns: &str, display: &str, config: Config) -> NsServer {
    // The X connection is made here, outside the namespace.
    let src = spice_server::coop_display::X11Source::connect(display).expect("X11Source");
    serve_source_in(Some(ns.to_string()), Box::new(src), config)
}

/// A server of `src` on its own thread, in namespace `ns` when given.
pub fn serve_source_in(
    ns: Option<String>,
    src: Box<dyn DisplaySource>,
    config: Config,
) -> NsServer {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        if let Some(ns) = ns {
            enter(&ns).expect("enter the server namespace");
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let server = spice_server::Server::bind(config, src)
                .await
                .expect("bind the server");
            tx.send(server.stats_handle()).expect("report stats handle");
            tokio::select! {
                r = server.run() => r.expect("serve"),
                _ = stop_rx => {}
            }
        });
    });
    let stats = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server started");
    NsServer {
        stats,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// A server without a password on `ip`:`port`.
pub fn ns_config(ip: &str, port: u16) -> Config {
    Config {
        addr: ip.parse().unwrap(),
        port: Some(port),
        ..no_auth()
    }
}

/// spicy-screenshot from the client namespace; the time it took.
pub fn ns_screenshot(net: &Net, port: u16, out: &Path) -> Result<Duration, String> {
    let _ = std::fs::remove_file(out);
    let t0 = Instant::now();
    let o = net
        .client_cmd("timeout")
        .args(["30", "spicy-screenshot", "-h", &net.srv_ip, "-p"])
        .arg(port.to_string())
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.exists() {
        Ok(t0.elapsed())
    } else {
        Err(format!(
            "spicy-screenshot wrote nothing ({:?}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}
