//! Helpers for the tests against real peers: finding programs, starting
//! Xspice / QEMU on unique ports with Drop guards, reading reference pictures.

#![allow(dead_code)]

pub mod fake;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spice_client::Pixmap;

pub fn which(p: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(p))
            .find(|f| f.is_file())
    })
}

/// Returns the first program missing from PATH.
pub fn missing(progs: &[&str]) -> Option<String> {
    progs
        .iter()
        .find(|p| which(p).is_none())
        .map(|p| p.to_string())
}

/// Kills and reaps a child on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A free (display, port) pair derived from `base`, avoiding X locks and bound ports.
pub fn free_slot(base: u16) -> (u16, u16) {
    let pid = std::process::id() as u16;
    for i in 0..200u16 {
        let d = 100 + (base.wrapping_add(pid % 50).wrapping_add(i * 7)) % 400;
        let port = 20000 + d * 10 + (base % 10);
        let lock = format!("/tmp/.X{d}-lock");
        if Path::new(&lock).exists() || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        return (d, port);
    }
    panic!("no free X display / port found");
}

/// An Xspice server with its X clients; everything is killed on drop.
pub struct Xspice {
    pub display: u16,
    pub port: u16,
    pub dir: tempfile::TempDir,
    clients: Vec<ChildGuard>,
    server: Option<ChildGuard>,
}

impl Drop for Xspice {
    fn drop(&mut self) {
        self.clients.clear();
        self.server.take();
        let _ = std::fs::remove_file(format!("/tmp/.X{}-lock", self.display));
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{}", self.display));
    }
}

/// The Xspice config that works on these machines (shared/peers/xspice.conf); the test
/// command exports its path, beside the checkout.
pub fn xspice_conf() -> String {
    std::env::var("COOP_XSPICE_CONF").unwrap_or_else(|_| "/work/shared/peers/xspice.conf".into())
}

impl Xspice {
    /// Starts Xspice; `password` turns ticketing on.
    pub fn start(base: u16, password: Option<&str>) -> Option<Xspice> {
        Self::start_with(base, password, &[])
    }

    /// Like `start`, also replacing config lines (`from` → `to`).
    pub fn start_with(base: u16, password: Option<&str>, edits: &[(&str, &str)]) -> Option<Xspice> {
        if let Some(m) = missing(&["Xspice", "import", "xsetroot"]) {
            eprintln!("SKIP: {m} is not installed");
            return None;
        }
        let Ok(conf) = std::fs::read_to_string(xspice_conf()) else {
            eprintln!("SKIP: {} is missing", xspice_conf());
            return None;
        };
        let (display, port) = free_slot(base);
        let mut conf = conf.replace(
            "Option \"SpicePort\" \"5912\"",
            &format!("Option \"SpicePort\" \"{port}\""),
        );
        if let Some(pw) = password {
            conf = conf
                .replace(
                    "Option \"SpiceDisableTicketing\" \"True\"",
                    "Option \"SpiceDisableTicketing\" \"False\"",
                )
                .replace(
                    "#Option \"SpicePassword\" \"\"",
                    &format!("Option \"SpicePassword\" \"{pw}\""),
                );
        }
        for (from, to) in edits {
            assert!(
                conf.contains(from),
                "{} has no line {from:?}",
                xspice_conf()
            );
            conf = conf.replace(from, to);
        }
        let dir = tempfile::tempdir().unwrap();
        let cf = dir.path().join("xspice.conf");
        std::fs::write(&cf, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("xspice.log")).unwrap();
        // Xorg with the spiceqxl driver is what the Xspice wrapper runs; started
        // directly, the guard's kill reaches the server itself and not only the
        // wrapper (which would leave Xorg running).
        let xorg = ["/usr/lib/xorg/Xorg", "/usr/libexec/Xorg"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("Xorg");
        let child = Command::new(xorg)
            .arg("-config")
            .arg(&cf)
            .arg("-noreset")
            .arg("-logfile")
            .arg(dir.path().join("xorg.log"))
            .arg(format!(":{display}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut x = Xspice {
            display,
            port,
            dir,
            clients: Vec::new(),
            server: Some(ChildGuard(child)),
        };
        assert!(
            wait_port(port, Duration::from_secs(20)),
            "Xspice :{display} did not open port {port}; log: {}",
            std::fs::read_to_string(x.dir.path().join("xspice.log")).unwrap_or_default()
        );
        // The X socket appears with the SPICE port; give the server a moment more.
        x.run(&["xsetroot", "-solid", "black"]);
        // X draws its software cursor into the framebuffer (so SPICE sends
        // it) but hides it from GetImage: park it in the corner, away from
        // what the tests compare.
        if which("xdotool").is_some() {
            x.run(&["xdotool", "mousemove", "1023", "767"]);
        }
        Some(x)
    }

    /// `argv` as an X client of this server, its output discarded.
    fn client(&self, argv: &[&str]) -> Command {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..])
            .env("DISPLAY", format!(":{}", self.display))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Runs an X client to completion.
    pub fn run(&mut self, argv: &[&str]) {
        let st = self.client(argv).status().unwrap();
        assert!(st.success(), "{argv:?} failed: {st}");
    }

    /// Starts a long-running X client, killed with the server.
    pub fn spawn(&mut self, argv: &[&str]) {
        let c = self.client(argv).spawn().unwrap();
        self.clients.push(ChildGuard(c));
    }

    /// The X server's own pixels, via `import -window root`.
    pub fn import(&self) -> (u32, u32, Vec<u8>) {
        let f = self.dir.path().join("root.ppm");
        let st = Command::new("import")
            .env("DISPLAY", format!(":{}", self.display))
            .args(["-window", "root", "-depth", "8"])
            .arg(&f)
            .status()
            .unwrap();
        assert!(st.success());
        spice_client::output::read_ppm(&f).unwrap()
    }
}

/// Compares our screen with reference RGB pixels; on mismatch saves both and panics.
pub fn assert_same(what: &str, ours: &Pixmap, reference: &(u32, u32, Vec<u8>), dir: &Path) {
    assert_eq!(
        (ours.width, ours.height),
        (reference.0, reference.1),
        "{what}: screen size differs"
    );
    let rgb = ours.to_rgb8();
    if rgb != reference.2 {
        let diffs: Vec<usize> = (0..rgb.len() / 3)
            .filter(|i| rgb[i * 3..i * 3 + 3] != reference.2[i * 3..i * 3 + 3])
            .collect();
        let keep = std::env::temp_dir().join(format!("spice-client-{what}.png"));
        let _ = spice_client::output::write_image(ours, &keep);
        let _ = std::fs::copy(dir.join("root.ppm"), keep.with_extension("ref.ppm"));
        let first = diffs[0];
        panic!(
            "{what}: {} pixels differ, first at ({}, {}): ours {:?} reference {:?}; saved {}",
            diffs.len(),
            first % ours.width as usize,
            first / ours.width as usize,
            &rgb[first * 3..first * 3 + 3],
            &reference.2[first * 3..first * 3 + 3],
            keep.display()
        );
    }
}

/// Starts Xvfb (24-bit, 1280×1024) on a free display; killed with the guard.
pub fn start_xvfb(base: u16) -> (ChildGuard, u16) {
    let (d, _) = free_slot(base);
    let child = Command::new("Xvfb")
        .arg(format!(":{d}"))
        .args(["-screen", "0", "1280x1024x24"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = format!("/tmp/.X11-unix/X{d}");
    let t = Instant::now();
    while !Path::new(&sock).exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    (ChildGuard(child), d)
}

/// Where QEMU was unpacked (`dpkg -x` of the Debian packages), see
/// /work/shared/docs/environment.md.
pub fn qemu_root() -> PathBuf {
    std::env::var_os("COOP_QEMU_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/tgt/qemu/root"))
}

/// Starts QEMU (TCG, `-vga qxl`, no disk: SeaBIOS's screen) with SPICE on a
/// free loopback port; `None` (after a SKIP line) when QEMU is not unpacked.
pub fn start_qemu(base: u16) -> Option<(ChildGuard, u16)> {
    let (_, port) = free_slot(base);
    let g = start_qemu_spice(
        &format!("port={port},addr=127.0.0.1,disable-ticketing=on"),
        port,
    )?;
    Some((g, port))
}

/// Starts QEMU as [`start_qemu`] does but with the given `-spice` option string,
/// and waits until `wait` (one of its ports) accepts; `None` (after a SKIP line)
/// when QEMU is not unpacked.
pub fn start_qemu_spice(spice: &str, wait: u16) -> Option<ChildGuard> {
    let root = qemu_root();
    let bin = root.join("usr/bin/qemu-system-x86_64");
    if !bin.exists() {
        eprintln!("SKIP: no QEMU at {} (set COOP_QEMU_ROOT)", bin.display());
        return None;
    }
    let libs = format!(
        "{}:{}",
        root.join("usr/lib/x86_64-linux-gnu").display(),
        root.join("lib/x86_64-linux-gnu").display()
    );
    let child = Command::new(&bin)
        .env("LD_LIBRARY_PATH", libs)
        .arg("-L")
        .arg(root.join("usr/share/seabios"))
        .arg("-L")
        .arg(root.join("usr/share/qemu"))
        .args(["-nodefaults", "-vga", "qxl", "-display", "none", "-m", "64"])
        .args(["-spice", spice])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let g = ChildGuard(child);
    assert!(
        wait_port(wait, Duration::from_secs(20)),
        "QEMU did not open port {wait}"
    );
    Some(g)
}

/// Runs the `sh` script `script` in `dir` (the tests' openssl recipes), failing the
/// test with its stderr when it does not succeed.
pub fn sh_in(dir: &Path, script: &str) {
    let o = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
