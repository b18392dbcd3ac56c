//! Shared harness for the end-to-end tests: runs the real `coop` binary as root against
//! a temporary store, and cleans up containers and networks even when a test fails.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `coop` under test: this build's, or `$COOP_TEST_BIN` (the test command also runs
/// the container tests against the static release build that setup.sh installs).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("COOP_TEST_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_coop").to_string())
    })
}

/// Root is needed for namespaces and cgroups; without it the test says so and passes
/// nothing silently: it prints SKIP and returns.
pub fn need_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        true
    } else {
        eprintln!("SKIP: needs root (namespaces, cgroups)");
        false
    }
}

/// Whether `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What every coLinux test needs besides root: the UML kernel and a static guest agent
/// (named by COOP_GUEST_AGENT). Prints SKIP and returns false when one is missing.
pub fn colinux_prerequisites() -> bool {
    if !Path::new("/usr/bin/linux.uml").exists() {
        eprintln!("SKIP: /usr/bin/linux.uml missing (package user-mode-linux)");
        return false;
    }
    match std::env::var("COOP_GUEST_AGENT") {
        Ok(p) if Path::new(&p).exists() => true,
        _ => {
            eprintln!(
                "SKIP: COOP_GUEST_AGENT does not name a static coop-guest-agent (scripts/test.sh builds one)"
            );
            false
        }
    }
}

/// `coop attach -n NAME -- ARGS` until `ready` accepts its output: a coLinux guest's
/// agent only answers once the guest's init started it. Panics after `limit`.
pub fn attach_when(
    c: &Coop,
    name: &str,
    args: &[&str],
    limit: Duration,
    ready: impl Fn(&Output) -> bool,
) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        let out = c
            .cmd()
            .args(["attach", "-n", name, "--"])
            .args(args)
            .output()
            .unwrap();
        if ready(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "coop attach {name} -- {args:?} never got ready: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `timeout 30 spicy-screenshot` of the SPICE server on 127.0.0.1:`port` into `out`,
/// insisting it succeeded.
pub fn spicy_screenshot(port: u16, out: &Path) {
    let o = Command::new("timeout")
        .args(["30", "spicy-screenshot", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "spicy-screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every pixel of a binary PPM (P6, maxval 255) of `path`.
pub fn ppm_pixels(path: &Path) -> Vec<[u8; 3]> {
    let ppm = std::fs::read(path).unwrap();
    let header_end = ppm
        .windows(4)
        .position(|w| w == b"255\n")
        .expect("P6 header")
        + 4;
    let body = &ppm[header_end..];
    assert_eq!(
        body.len() % 3,
        0,
        "{} holds a partial pixel",
        path.display()
    );
    body.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100000,
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct Coop {
    pub root: tempfile::TempDir,
    containers: std::sync::Mutex<Vec<String>>,
    networks: std::sync::Mutex<Vec<String>>,
}

impl Coop {
    pub fn new() -> Coop {
        Coop {
            root: tempfile::Builder::new()
                .prefix("coopt")
                .tempdir_in("/tmp")
                .unwrap(),
            containers: Default::default(),
            networks: Default::default(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("COOP_ROOT", self.root.path());
        c.env("RUST_LOG", "warn,netlink_packet_route=error");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        if !out.status.success() {
            eprintln!(
                "coop {args:?} -> {:?}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    /// Run and insist on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "coop {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    /// `coop stop`, insisting on success; returns how init ended, as the stop logs it.
    pub fn stop_how(&self, name: &str, timeout_s: u32) -> String {
        let out = self
            .cmd()
            .args(["stop", "-n", name, "-t", &timeout_s.to_string()])
            .env("RUST_LOG", "warn,coop=info")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "coop stop {name} failed: {err}");
        err
    }

    /// Stops a coLinux instance and insists the stop was an orderly poweroff by the
    /// guest's own init (not the mconsole fallback, not a kill) within `limit`, and that
    /// its disk image is fsck-clean afterwards. Returns the image's path.
    pub fn stop_guest_cleanly(&self, name: &str, timeout_s: u32, limit: Duration) -> PathBuf {
        let t = Instant::now();
        let how = self.stop_how(name, timeout_s);
        let took = t.elapsed();
        eprintln!("colinux {name} stop took {took:?}");
        assert!(took < limit, "stop took {took:?} (killed?)");
        assert!(
            how.contains("powered off"),
            "stop was not a guest poweroff: {how}"
        );
        let img = self.root.path().join(name).join("rootfs/disk.img");
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "the disk is not clean after stop: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        img
    }

    /// `coop attach -n NAME -- ARGS`; its output, whatever the exit status.
    pub fn attach(&self, name: &str, args: &[&str]) -> Output {
        let mut full = vec!["attach", "-n", name, "--"];
        full.extend_from_slice(args);
        self.run(&full)
    }

    /// `coop attach -n NAME -- ARGS`, insisting on success; returns stdout.
    pub fn attach_ok(&self, name: &str, args: &[&str]) -> String {
        let mut full = vec!["attach", "-n", name, "--"];
        full.extend_from_slice(args);
        self.ok(&full)
    }

    /// `coop create -n NAME --kind colinux -t TEMPLATE --memory MEMORY EXTRA…`, tracked
    /// for clean-up.
    pub fn create_colinux(&self, name: &str, template: &str, memory: &str, extra: &[&str]) {
        self.track(name);
        let mut args = vec![
            "create", "-n", name, "--kind", "colinux", "-t", template, "--memory", memory,
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// Run and insist on failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            !out.status.success(),
            "coop {args:?} succeeded but should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// A busybox container with network type `empty` unless `config` says otherwise.
    pub fn busybox(&self, name: &str, config: &str) -> PathBuf {
        let cfg = self.root.path().join(format!("{name}.conf"));
        let body = if config.contains("lxc.net.") {
            config.to_string()
        } else {
            format!("lxc.net.0.type = empty\n{config}")
        };
        std::fs::write(&cfg, body).unwrap();
        self.containers.lock().unwrap().push(name.to_string());
        self.ok(&[
            "create",
            "-n",
            name,
            "-t",
            "busybox",
            "--root-password",
            "s3cret-pw",
            "-f",
            cfg.to_str().unwrap(),
        ]);
        self.root.path().join(name)
    }

    pub fn track(&self, name: &str) {
        self.containers.lock().unwrap().push(name.to_string());
    }

    pub fn network(&self, name: &str, subnet: &str) {
        self.networks.lock().unwrap().push(name.to_string());
        self.ok(&["net", "create", name, "--subnet", subnet]);
    }

    pub fn info(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["info", "-n", name, "--json"])).unwrap()
    }

    pub fn cgroup_rel(&self, name: &str) -> String {
        // Mirrors Store::cgroup_name for a moved store.
        let mut h: u32 = 2166136261;
        for b in self.root.path().as_os_str().as_encoded_bytes() {
            h = (h ^ u32::from(*b)).wrapping_mul(16777619);
        }
        format!("coop/{name}-{h:08x}")
    }
}

impl Drop for Coop {
    fn drop(&mut self) {
        for c in self.containers.lock().unwrap().iter() {
            let _ = self
                .cmd()
                .args(["destroy", "-f", "-n", c])
                .stdin(Stdio::null())
                .output();
        }
        for n in self.networks.lock().unwrap().iter() {
            let _ = self
                .cmd()
                .args(["net", "rm", n])
                .stdin(Stdio::null())
                .output();
        }
    }
}

/// Every place a container leaves traces on the host, for "nothing left" checks.
pub fn leftovers(coop: &Coop, name: &str) -> Vec<String> {
    let mut left = Vec::new();
    let rel = coop.cgroup_rel(name);
    for ctrl in [
        "cpu", "memory", "pids", "freezer", "devices", "cpuset", "unified", "systemd",
    ] {
        let p = Path::new("/sys/fs/cgroup").join(ctrl).join(&rel);
        if p.exists() {
            left.push(p.display().to_string());
        }
    }
    let run = coop.root.path().join(".run").join(name);
    if run.exists() {
        left.push(run.display().to_string());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mounts.lines() {
        if l.contains(coop.root.path().to_str().unwrap()) {
            left.push(format!("mount: {l}"));
        }
    }
    left
}

/// A process on the slave side of a fresh pty, with expect-style helpers on the master.
pub struct PtyProc {
    pub child: std::process::Child,
    master: OwnedFd,
    pub seen: String,
}

impl PtyProc {
    pub fn spawn(mut cmd: Command) -> PtyProc {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().unwrap();
        PtyProc {
            child,
            master: pty.master,
            seen: String::new(),
        }
    }

    pub fn send(&self, s: &str) {
        nix::unistd::write(self.master.as_fd(), s.as_bytes()).unwrap();
    }

    /// Read until `needle` appears (in what was read since the last expect), or panic.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        match self.expect_any(&[needle], timeout) {
            Ok((_, got)) => got,
            Err(seen) => panic!("timed out waiting for {needle:?}; saw {seen:?}"),
        }
    }

    /// Waits for the first of `needles`; returns its index and the output up to it, or
    /// on timeout the output seen meanwhile (kept for the next expect).
    pub fn expect_any(
        &mut self,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(usize, String), String> {
        let deadline = Instant::now() + timeout;
        let start = self.seen.len();
        let mut buf = [0u8; 4096];
        loop {
            let first = needles
                .iter()
                .enumerate()
                .filter_map(|(k, n)| self.seen[start..].find(n).map(|i| (i, k, n.len())))
                .min();
            if let Some((i, k, len)) = first {
                let upto = start + i + len;
                let got = self.seen[start..upto].to_string();
                self.seen = self.seen[upto..].to_string();
                return Ok((k, got));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.seen[start..].to_string());
            }
            let mut fds = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ms = left.as_millis().min(1000) as u16;
            let _ = nix::poll::poll(&mut fds, ms);
            if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                match nix::unistd::read(self.master.as_raw_fd(), &mut buf) {
                    Ok(n) if n > 0 => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// Ctrl-a q: detaches from the console, insisting `coop console` then exits 0.
    pub fn detach(&mut self) {
        self.send("\x01q");
        assert!(
            self.wait(Duration::from_secs(5))
                .is_some_and(|s| s.success()),
            "coop console did not exit cleanly on Ctrl-a q"
        );
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            // Drain output so the child never blocks on a full pty.
            let mut b = [0u8; 4096];
            let mut fds = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, 20u16).unwrap_or(0) > 0 {
                let _ = nix::unistd::read(self.master.as_raw_fd(), &mut b);
            }
        }
    }
}

impl Drop for PtyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_to_string(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

/// CPU time (ns) charged to a container's v1 cpuacct group, or v2 cpu.stat.
pub fn cpu_usage_ns(rel: &str) -> u64 {
    let v1 = Path::new("/sys/fs/cgroup/cpuacct")
        .join(rel)
        .join("cpuacct.usage");
    if let Ok(s) = std::fs::read_to_string(&v1) {
        return s.trim().parse().unwrap();
    }
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("cpu.stat");
    let s = std::fs::read_to_string(&v2).unwrap();
    let usec: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    usec * 1000
}

/// `coop console` on a pty, through the getty: the login prompt, root, the password,
/// a shell prompt. `tty` is `-t`'s value, or none for the default.
pub fn console_login(
    c: &Coop,
    name: &str,
    tty: Option<&str>,
    password: &str,
    wait: Duration,
) -> PtyProc {
    let mut cmd = c.cmd();
    cmd.args(["console", "-n", name]);
    if let Some(t) = tty {
        cmd.args(["-t", t]);
    }
    let mut p = PtyProc::spawn(cmd);
    p.expect("Ctrl a q", Duration::from_secs(5));
    p.send("\r");
    p.expect("login:", wait);
    p.send("root\r");
    p.expect("assword:", wait);
    // login flushes pending input when it turns echo off, and on a slow guest (UML
    // under load) that can happen after our typing: then nothing answers, and the
    // password is typed again. Typed once too often, it only reaches the shell as an
    // unknown command.
    let deadline = Instant::now() + wait;
    for attempt in 0.. {
        std::thread::sleep(Duration::from_millis(300));
        p.send(&format!("{password}\r"));
        let left = deadline.saturating_duration_since(Instant::now());
        let step = if attempt < 3 {
            Duration::from_secs(8).min(left)
        } else {
            left
        };
        // ("login:" is no needle: debian's "Last login: ..." comes before its prompt.)
        match p.expect_any(&["#", "incorrect"], step) {
            Ok((0, _)) => break,
            // A password cut by the flush: log in again.
            Ok(_) if attempt < 3 => {
                p.expect("login:", left);
                p.send("root\r");
                p.expect("assword:", left);
            }
            Ok((_, got)) => panic!("console login refused the password: {got:?}"),
            Err(seen) if attempt >= 3 || left.is_zero() => {
                panic!("no shell prompt after the password; saw {seen:?}")
            }
            // Nothing at all: a login that lost the typed line. Interrupt it; init
            // respawns the getty, and the login starts over.
            Err(_) => {
                p.send("\x03");
                p.send("\r");
                p.expect("login:", left);
                p.send("root\r");
                p.expect("assword:", left);
            }
        }
    }
    p
}

/// A /24 of the 10.x range that nothing else on this host uses.
pub fn free_subnet(seed: u32) -> (String, String) {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    for i in 0..200u32 {
        let b = 100 + (seed + i * 7) % 150;
        let c = (seed / 3 + i * 13) % 250 + 1;
        // /proc/net/route stores destinations as little-endian hex.
        let hex = format!("{:02X}{:02X}{:02X}{:02X}", 0, c, b, 10);
        if !routes.contains(&hex) {
            return (format!("10.{b}.{c}.1/24"), format!("10.{b}.{c}."));
        }
    }
    panic!("no free 10.x.y.0/24 subnet");
}

/// A 10.`b`.X.0/24 (a test's own `b`) that no route of this host uses, starting the
/// search at X = this process's id: (`10.b.X.1/24`, `10.b.X.`).
pub fn free_subnet_in(b: u8) -> Option<(String, String)> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    (0..250u32)
        .map(|i| (std::process::id() + i) % 250 + 1)
        .find(|x| {
            // /proc/net/route stores destinations as little-endian hex.
            !routes.contains(&format!("00{x:02X}{b:02X}0A"))
        })
        .map(|x| (format!("10.{b}.{x}.1/24"), format!("10.{b}.{x}.")))
}

/// Waits (up to `limit`) until systemd in coLinux guest `name` has settled, "running"
/// or "degraded"; returns which.
pub fn wait_systemd_settled(c: &Coop, name: &str, limit: Duration) -> String {
    let out = attach_when(c, name, &["systemctl", "is-system-running"], limit, |o| {
        let s = String::from_utf8_lossy(&o.stdout);
        s.trim() == "running" || s.trim() == "degraded"
    });
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A plain HTTP/1.0 GET; the whole response, headers included.
pub fn http_get(addr: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}
