//! End-to-end tests with the real User-Mode Linux kernel: busybox image, console login,
//! guest agent, hostfs shares, mconsole, COW snapshots. They need root, `linux.uml`,
//! `mkfs.ext4` and the busybox-static package, and skip with a reason otherwise.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use coop_colinux::{
    build_image_with, kernel_cmdline, kernel_release, run_captured, snapshot, wait_agent, Captured,
    Disk, ImageOptions, InstanceSpec, Mconsole, Share, DEFAULT_KERNEL, UML_MODULES,
};
use coop_templates::{Request, TemplateKind};

const PASSWORD: &str = "coop-uml-test";

/// UML boots are heavy and the machine is small: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new(DEFAULT_KERNEL).exists() {
        return Some(format!(
            "{DEFAULT_KERNEL} missing (package user-mode-linux)"
        ));
    }
    if Command::new("mkfs.ext4").arg("-V").output().is_err()
        && !Path::new("/usr/sbin/mkfs.ext4").exists()
    {
        return Some("mkfs.ext4 missing (package e2fsprogs)".into());
    }
    if agent_binary().is_none() {
        return Some("could not build a static coop-guest-agent".into());
    }
    None
}

macro_rules! require_uml {
    () => {
        if let Some(r) = skip_reason() {
            eprintln!("SKIP: {r}");
            return;
        }
    };
}

/// The static agent: `$COOP_GUEST_AGENT`, else built once with cargo in a target dir of
/// its own (the running `cargo test` holds the lock of ours).
fn agent_binary() -> Option<PathBuf> {
    static AGENT: OnceLock<Option<PathBuf>> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("COOP_GUEST_AGENT") {
                return Some(PathBuf::from(p));
            }
            let exe = std::env::current_exe().ok()?;
            let target = exe.parent()?.parent()?.parent()?.join("guest-agent-static");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "x86_64-unknown-linux-gnu",
                    "-p",
                    "coop-guest-agent",
                ])
                .env("CARGO_TARGET_DIR", &target)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .ok()?;
            let bin = target.join("x86_64-unknown-linux-gnu/release/coop-guest-agent");
            (st.success() && coop_colinux::is_static_elf(&bin).ok()?).then_some(bin)
        })
        .clone()
}

/// A busybox root with the agent, made into an ext4 image of 256 MiB.
fn make_image(dir: &Path, with_modules: bool) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let cache = dir.join("cache");
    fs::create_dir_all(&rootfs).unwrap();
    fs::create_dir_all(&cache).unwrap();
    let mut req = Request::new("umltest", &rootfs, &cache);
    req.root_password = Some(PASSWORD.into());
    coop_templates::create(&TemplateKind::Busybox, &req, &|_| {}).expect("busybox template");
    let opts = ImageOptions {
        agent: agent_binary().unwrap(),
        modules: if with_modules {
            kernel_release().map(|r| Path::new(UML_MODULES).join(r))
        } else {
            None
        },
    };
    let image = dir.join("root.img");
    build_image_with(&rootfs, &image, 256 << 20, &opts, &|m| {
        eprintln!("image: {m}")
    })
    .expect("build_image");
    image
}

/// A running kernel; killed (whole process group) when dropped.
struct Uml {
    child: Child,
    console: Arc<Mutex<Vec<u8>>>,
    /// When "login:" first appeared on the console, from exec.
    login_at: Arc<Mutex<Option<Duration>>>,
    master: File,
    agent: UnixStream,
    started: Instant,
    mconsole: PathBuf,
    umid: String,
}

impl Uml {
    fn boot(spec: &InstanceSpec, uml_dir: &Path) -> Uml {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let (agent, guest_end) = UnixStream::pair().unwrap();
        let slave: OwnedFd = pty.slave;
        let args = kernel_cmdline(spec, uml_dir);
        eprintln!("linux.uml {}", args.join(" "));
        let mut cmd = Command::new(DEFAULT_KERNEL);
        cmd.args(&args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .process_group(0);
        let gfd = guest_end.as_raw_fd();
        // SAFETY: dup2/fcntl are async-signal-safe; they put the channel on fd 3 without
        // close-on-exec (dup2 onto itself would keep the flag, hence the fcntl).
        unsafe {
            cmd.pre_exec(move || {
                if gfd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else if libc::dup2(gfd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let child = cmd.spawn().expect("spawn linux.uml");
        drop(cmd);
        drop(guest_end);
        let master = File::from(pty.master);
        let console = Arc::new(Mutex::new(Vec::new()));
        let (mut rd, buf) = (master.try_clone().unwrap(), console.clone());
        let login_at = Arc::new(Mutex::new(None));
        let seen = login_at.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = rd.read(&mut b) {
                if n == 0 {
                    break;
                }
                let mut all = buf.lock().unwrap();
                all.extend_from_slice(&b[..n]);
                let mut s = seen.lock().unwrap();
                if s.is_none() && all.windows(6).any(|w| w == b"login:") {
                    *s = Some(started.elapsed());
                }
            }
        });
        Uml {
            child,
            console,
            login_at,
            master,
            agent,
            started,
            mconsole: coop_colinux::mconsole::socket_path(uml_dir, &spec.name),
            umid: spec.name.clone(),
        }
    }

    fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.console.lock().unwrap()).into_owned()
    }

    /// Waits until `pat` appears on the console after byte `from`; returns the end offset.
    fn wait_console(&self, pat: &str, from: usize, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            {
                let b = self.console.lock().unwrap();
                let hay = String::from_utf8_lossy(&b[from.min(b.len())..]).into_owned();
                if let Some(i) = hay.find(pat) {
                    return from + i + pat.len();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{pat:?} not seen on the console within {timeout:?}; console:\n{}",
            self.console_text()
        );
    }

    fn type_line(&mut self, s: &str) {
        self.master.write_all(format!("{s}\n").as_bytes()).unwrap();
    }

    fn run(&self, argv: &[&str]) -> (i32, String, String) {
        let c = self.run_full(argv, b"", false);
        (
            c.code,
            String::from_utf8_lossy(&c.stdout).into_owned(),
            String::from_utf8_lossy(&c.stderr).into_owned(),
        )
    }

    /// `run_captured` with a 60 s limit; a hang fails with the console log.
    fn run_full(&self, argv: &[&str], stdin: &[u8], pty: bool) -> Captured {
        let stream = self.agent.try_clone().unwrap();
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.to_vec();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let a: Vec<&str> = argv.iter().map(String::as_str).collect();
            let _ = tx.send(run_captured(&stream, &a, &stdin, pty));
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(r) => r.expect("attach"),
            Err(_) => panic!(
                "no exit code within 60 s; console:\n{}",
                self.console_text()
            ),
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SysRq sync + remount-ro + halt over mconsole, then wait for the process to end.
    fn stop(&mut self) {
        let mut mc = Mconsole::connect(&self.mconsole).expect("mconsole connect");
        mc.stop_clean().expect("stop_clean");
        let st = self.wait_exit(Duration::from_secs(20));
        assert!(
            st.is_some(),
            "kernel still running after halt; console:\n{}",
            self.console_text()
        );
    }
}

impl Drop for Uml {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill on the process group this test created (process_group(0)).
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
        // UML's SIGWINCH helper for a tty console calls setsid(), so it is in no group of
        // ours and outlives the kernel, even after a clean halt. Find it (and any other
        // straggler) by this instance's unique umid and kill it by pid.
        for pid in pids_with_arg(&format!("umid={}", self.umid)) {
            // SAFETY: plain kill of a process running our kernel with our unique umid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn pids_with_arg(arg: &str) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

fn umid() -> String {
    format!(
        "coop-t{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `e2fsck -fn` finds nothing wrong with `image` (checked after the guest's `when`).
fn assert_fsck_clean(image: &Path, when: &str) {
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn after {when}: {}\n{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}

fn spec(name: String, disk: Disk, shares: Vec<Share>) -> InstanceSpec {
    InstanceSpec {
        name,
        memory: 128 << 20,
        disks: vec![disk],
        shares,
        net: None,
        extra_cmdline: Vec::new(),
        fast_boot: true,
    }
}

#[test]
fn boot_login_agent_share_mconsole_halt() {
    require_uml!();
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), true);
    let share = dir.path().join("share");
    fs::create_dir(&share).unwrap();
    fs::write(share.join("in.txt"), "from-host 314\n").unwrap();
    let uml_dir = dir.path().join("uml");
    fs::create_dir(&uml_dir).unwrap();
    let sp = spec(
        umid(),
        Disk {
            image: image.clone(),
            cow: None,
        },
        vec![Share {
            host: share.clone(),
            guest: "/mnt/host".into(),
            read_only: false,
        }],
    );
    let mut uml = Uml::boot(&sp, &uml_dir);

    let version = wait_agent(&uml.agent, Duration::from_secs(60)).expect("agent answers");
    let to_agent = uml.started.elapsed();
    eprintln!(
        "MEASURE: exec of linux.uml to guest agent answering: {} ms ({version})",
        to_agent.as_millis()
    );
    assert!(version.starts_with("coop-guest-agent"), "{version}");

    let (code, out, _) = uml.run(&["uname", "-r"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("6.1."), "uname -r: {out:?}");
    if let Some(rel) = kernel_release() {
        assert_eq!(out.trim(), rel);
        let (code, out, _) = uml.run(&["ls", "/lib/modules"]);
        assert_eq!((code, out.trim()), (0, rel.as_str()));
    }

    let (code, out, err) = uml.run(&["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    let (code, _, err) = uml.run(&["/no/such/program"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("cannot run"), "{err}");

    let c = uml.run_full(&["tty"], b"", true);
    let tty = String::from_utf8_lossy(&c.stdout);
    assert!(tty.trim().starts_with("/dev/pts/"), "tty on a pty: {tty:?}");
    let c = uml.run_full(&["sh", "-c", "read x; echo got-$x"], b"abc\n", true);
    assert!(
        String::from_utf8_lossy(&c.stdout).contains("got-abc"),
        "{c:?}"
    );
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let c = uml.run_full(&["cat"], &data, false);
    assert_eq!(c.code, 0);
    assert!(
        c.stdout == data,
        "binary stdin/stdout through the serial line differ"
    );
    let (code, out, _) = uml.run(&["echo", "after-bulk"]);
    assert_eq!((code, out.as_str()), (0, "after-bulk\n"));

    // Memory cap.
    let (_, meminfo, _) = uml.run(&["cat", "/proc/meminfo"]);
    let total_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("MemTotal");
    eprintln!("guest MemTotal: {total_kb} kB for mem=128M");
    assert!(total_kb <= 128 * 1024 && total_kb > 96 * 1024, "{total_kb}");

    // hostfs share both ways.
    let (code, out, err) = uml.run(&["cat", "/mnt/host/in.txt"]);
    assert_eq!((code, out.as_str()), (0, "from-host 314\n"), "{err}");
    let (code, _, err) = uml.run(&["sh", "-c", "echo from-guest 271 > /mnt/host/out.txt"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read_to_string(share.join("out.txt")).unwrap(),
        "from-guest 271\n"
    );

    // Console: getty on con0, log in as root.
    let at = uml.wait_console("login:", 0, Duration::from_secs(30));
    eprintln!(
        "MEASURE: exec of linux.uml to login prompt on the console: {} ms",
        uml.login_at
            .lock()
            .unwrap()
            .expect("prompt time")
            .as_millis()
    );
    uml.type_line("root");
    let at = uml.wait_console("assword:", at, Duration::from_secs(10));
    uml.type_line(PASSWORD);
    std::thread::sleep(Duration::from_millis(500));
    uml.type_line("echo mark-$((6*7))");
    uml.wait_console("mark-42", at, Duration::from_secs(10));

    // mconsole.
    let mut mc = Mconsole::connect(&uml.mconsole).expect("mconsole");
    let v = mc.version().unwrap();
    assert!(v.contains("6.1."), "mconsole version: {v:?}");
    let up = mc.proc_read("uptime").unwrap();
    let secs: f64 = up
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("uptime {up:?}"));
    assert!(secs > 0.0 && secs < 600.0, "{up}");
    assert!(mc.command("no-such-command").is_err());

    uml.stop();
    assert_fsck_clean(&image, "halt");
}

#[test]
fn cow_snapshot_leaves_backing_unchanged() {
    require_uml!();
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), false);
    let before = sha256(&image);
    let cow = dir.path().join("snap.cow");
    snapshot(&image, &cow).unwrap();
    let uml_dir = dir.path().join("uml");
    fs::create_dir(&uml_dir).unwrap();
    let disk = Disk {
        image: image.clone(),
        cow: Some(cow.clone()),
    };
    {
        let mut uml = Uml::boot(&spec(umid(), disk.clone(), vec![]), &uml_dir);
        wait_agent(&uml.agent, Duration::from_secs(60)).expect("agent answers");
        let (code, _, err) = uml.run(&["sh", "-c", "echo in-the-cow > /root/marker && sync"]);
        assert_eq!(code, 0, "{err}");
        uml.stop();
    }
    assert!(cow.is_file(), "UML did not create the COW file");
    assert_eq!(sha256(&image), before, "backing image changed");
    // Second boot from the same COW: the change persisted there.
    let mut uml = Uml::boot(&spec(umid(), disk, vec![]), &uml_dir);
    wait_agent(&uml.agent, Duration::from_secs(60)).expect("agent answers");
    let (code, out, _) = uml.run(&["cat", "/root/marker"]);
    assert_eq!((code, out.as_str()), (0, "in-the-cow\n"));
    uml.stop();
    assert_eq!(sha256(&image), before, "backing image changed");
}

/// A host tap device, deleted on drop.
struct Tap(String);

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn vector_tap_network_reaches_the_host() {
    require_uml!();
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("SKIP: /dev/net/tun missing");
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let n = std::process::id() % 10000;
    let tap = Tap(format!("cltap{n}"));
    if !ip(&["tuntap", "add", "dev", &tap.0, "mode", "tap"]) {
        eprintln!("SKIP: cannot create tap {}", tap.0);
        return;
    }
    let net = format!("10.213.{}", n % 250);
    assert!(ip(&["addr", "add", &format!("{net}.1/30"), "dev", &tap.0]));
    assert!(ip(&["link", "set", &tap.0, "up"]));

    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), false);
    let uml_dir = dir.path().join("uml");
    fs::create_dir(&uml_dir).unwrap();
    let cfg = coop_colinux::parse_keys(&[
        ("memory".to_string(), "96M".to_string()),
        ("disk".to_string(), image.display().to_string()),
        ("net".to_string(), format!("{},transport=tap", tap.0)),
    ])
    .unwrap();
    let sp = cfg.instance_spec(&umid());
    let mac = sp.net.as_ref().unwrap().mac.clone();
    let mut uml = Uml::boot(&sp, &uml_dir);
    wait_agent(&uml.agent, Duration::from_secs(60)).expect("agent answers");
    let (_, addr, _) = uml.run(&["cat", "/sys/class/net/eth0/address"]);
    assert_eq!(addr.trim(), mac, "console:\n{}", uml.console_text());
    // The agent answers while rcS still runs; wait until init moved on to the gettys so
    // that rcS's network setup cannot come after ours.
    let t = std::time::Instant::now();
    while uml.run(&["pidof", "getty"]).0 != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "rcS never finished:\n{}",
            uml.console_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The template's rcS runs udhcpc in the background; stop it so that it cannot flush
    // the static address.
    let script = format!(
        "kill $(cat /run/udhcpc.eth0.pid 2>/dev/null) 2>/dev/null; sleep 0.2; \
         ip addr flush dev eth0; ip addr add {net}.2/30 dev eth0 && ip link set eth0 up && \
         ping -c 1 -W 5 {net}.1"
    );
    let (code, out, err) = uml.run(&["sh", "-c", &script]);
    assert_eq!(code, 0, "ping from the guest failed:\n{out}\n{err}");
    assert!(out.contains("1 packets received"), "{out}");

    // Clean shutdown from inside: init unmounts, the kernel powers off, the process ends.
    coop_colinux::poweroff(&uml.agent).unwrap();
    assert!(
        uml.wait_exit(Duration::from_secs(30)).is_some(),
        "kernel still running after poweroff; console:\n{}",
        uml.console_text()
    );
    assert_fsck_clean(&image, "poweroff");
}
