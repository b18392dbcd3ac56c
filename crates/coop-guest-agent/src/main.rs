//! `coop-guest-agent`: runs inside a coop coLinux (User-Mode Linux) guest.
//!
//! - `coop-guest-agent --boot [--serve]` (from init, once, before the guest's own boot
//!   scripts): renames UML's `vecN` interfaces to `ethN` and mounts the hostfs shares named
//!   by `coop.share=HOST:GUEST[:ro]` on the kernel command line. With `--serve` it then
//!   starts the server below in the background, so that `coop attach` works while the
//!   guest's boot scripts still run (they take longer than the kernel's whole boot).
//! - `coop-guest-agent [TTY]` (respawned by init): serves `coop attach` on the serial line
//!   (`coop.agent=` on the command line, else `ttyS0`), whose host end the coop monitor
//!   holds. It speaks `coop_colinux::proto`: a request (argv, env, pty flag), stdin frames
//!   in, stdout/stderr frames out, then the exit code. One command runs at a time; a new
//!   request ends the previous command (its host side has gone away). Only one server
//!   uses the line: each first takes a lock on its own executable, so init's respawned
//!   copy waits while the one started at boot serves, and takes over if it dies.
//!
//! Built statically so that it runs in any guest, whatever its libc.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use coop_colinux::proto::{read_frame, Frame, Kind, Request, CHUNK};

const VERSION: &str = concat!("coop-guest-agent ", env!("CARGO_PKG_VERSION"));
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

type Writer = Arc<Mutex<File>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("--boot") => {
            let code = boot();
            if args.get(2).map(String::as_str) == Some("--serve") {
                serve_in_background();
            }
            code
        }
        Some("--version") => {
            println!("{VERSION}");
            0
        }
        Some(tty) => serve(tty),
        None => serve(&cmdline_value("coop.agent").unwrap_or_else(|| "ttyS0".into())),
    };
    std::process::exit(code);
}

/// Mounts /proc when init has not yet: the boot hook runs before the guest's scripts.
fn ensure_proc() {
    if !Path::new("/proc/self").exists() {
        let _ = mount("proc", "/proc", "proc", 0, "");
    }
}

fn cmdline() -> String {
    ensure_proc();
    fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

fn cmdline_value(key: &str) -> Option<String> {
    cmdline()
        .split_whitespace()
        .find_map(|a| a.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let (src, target, fstype, data) = (c(src)?, c(target)?, c(fstype)?, c(data)?);
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_mountpoint(p: &str) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p))
}

/// UML names its vector interfaces `vecN`; guests (and their DHCP setup) expect `ethN`.
/// Renames each `vecN` to `ethN` when that name is free; the links are still down at
/// this point of the boot, as renaming requires.
fn rename_vector_ifaces() -> usize {
    let mut failed = 0;
    // SAFETY: plain socket creation; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return 0;
    }
    // SAFETY: fd was just returned by socket() and is not owned elsewhere.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let ifaces = interfaces();
    for i in 0..16 {
        let (old, new) = (format!("vec{i}"), format!("eth{i}"));
        if !ifaces.contains(&old) || ifaces.contains(&new) {
            continue;
        }
        // SAFETY: ifreq is plain data; both names are shorter than IFNAMSIZ and stay
        // NUL-terminated in the zeroed arrays.
        let r = unsafe {
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, b) in ifr.ifr_name.iter_mut().zip(old.bytes()) {
                *d = b as libc::c_char;
            }
            for (d, b) in ifr.ifr_ifru.ifru_newname.iter_mut().zip(new.bytes()) {
                *d = b as libc::c_char;
            }
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFNAME as _, &ifr)
        };
        if r != 0 {
            eprintln!(
                "coop-guest-agent: cannot rename {old} to {new}: {}",
                io::Error::last_os_error()
            );
            failed += 1;
        }
    }
    failed
}

/// The network interfaces, from `/proc/net/dev` (sysfs is not mounted this early). Not
/// by asking the kernel for each name: looking up a missing interface as root makes the
/// kernel run `modprobe netdev-NAME`, a new guest process each time (0.5 s for 32 names).
fn interfaces() -> Vec<String> {
    parse_net_dev(&fs::read_to_string("/proc/net/dev").unwrap_or_default())
}

fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| !n.is_empty() && !n.contains(' ') && !n.contains('|'))
        .collect()
}

/// Whether udevd will run in this guest: its binary is there and its unit not masked.
fn udev_will_run() -> bool {
    let installed = [
        "/lib/systemd/systemd-udevd",
        "/usr/lib/systemd/systemd-udevd",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    let masked = fs::read_link("/etc/systemd/system/systemd-udevd.service")
        .is_ok_and(|t| t == Path::new("/dev/null"));
    installed && !masked
}

/// The line udev's database keeps for a device it has processed: `I:` and the
/// CLOCK_MONOTONIC microseconds of that moment.
fn udev_db_entry(now_usec: u64) -> String {
    format!("I:{now_usec}\n")
}

fn monotonic_usec() -> u64 {
    // SAFETY: timespec is plain data that clock_gettime fills in.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

fn ifindex(sock: &OwnedFd, name: &str) -> Option<i32> {
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: ifreq is plain data; the name is shorter than IFNAMSIZ and stays
    // NUL-terminated in the zeroed array; the kernel fills in ifru_ifindex.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, b) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut ifr) != 0 {
            return None;
        }
        Some(ifr.ifr_ifru.ifru_ifindex)
    }
}

/// Marks every network interface as processed by udev when the guest runs systemd but
/// no udev (the debian template masks udev: its coldplug of every device costs seconds
/// of a UML boot, and nothing in a UML guest needs its rules).
///
/// systemd-networkd configures a link only once udev has "initialized" it, that is once
/// `/run/udev/data/n<ifindex>` exists — unless /sys is read-only, its sign of a container
/// without udev. UML's /sys is writable, so without this entry networkd leaves eth0
/// "pending" forever and the guest gets no DHCP lease. The boot unit runs before
/// systemd-networkd, so networkd finds the entries when it first lists the links. Where
/// udevd runs it writes these files itself; there we leave them alone.
fn mark_links_initialized() -> usize {
    let systemd_booted = Path::new("/run/systemd/system").is_dir();
    if !systemd_booted || !is_mountpoint("/run") || udev_will_run() {
        return 0;
    }
    let dir = Path::new("/run/udev/data");
    if let Err(e) = fs::create_dir_all(dir) {
        eprintln!("coop-guest-agent: cannot create {}: {e}", dir.display());
        return 1;
    }
    // SAFETY: plain socket creation; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return 1;
    }
    // SAFETY: fd was just returned by socket() and is not owned elsewhere.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let entry = udev_db_entry(monotonic_usec());
    let mut failed = 0;
    for name in interfaces() {
        let Some(idx) = ifindex(&sock, &name) else {
            continue;
        };
        let path = dir.join(format!("n{idx}"));
        if path.exists() {
            continue;
        }
        if let Err(e) = fs::write(&path, &entry) {
            eprintln!("coop-guest-agent: cannot write {}: {e}", path.display());
            failed += 1;
        }
    }
    failed
}

/// Names the network interfaces, marks them ready for systemd-networkd and mounts the
/// hostfs shares; errors are reported and the rest still done.
fn boot() -> i32 {
    ensure_proc();
    let mut failed = rename_vector_ifaces();
    failed += mark_links_initialized();
    for arg in cmdline().split_whitespace() {
        let Some(v) = arg.strip_prefix("coop.share=") else {
            continue;
        };
        let parts: Vec<&str> = v.split(':').collect();
        let (host, guest, ro) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, true),
            _ => {
                eprintln!("coop-guest-agent: bad coop.share={v}");
                failed += 1;
                continue;
            }
        };
        if is_mountpoint(guest) {
            continue;
        }
        let flags = if ro { libc::MS_RDONLY } else { 0 };
        let res =
            fs::create_dir_all(guest).and_then(|_| mount("none", guest, "hostfs", flags, host));
        match res {
            Ok(()) => eprintln!("coop-guest-agent: share {host} mounted on {guest}"),
            Err(e) => {
                eprintln!("coop-guest-agent: cannot mount share {host} on {guest}: {e}");
                failed += 1;
            }
        }
    }
    i32::from(failed > 0)
}

/// Opens the serial line raw: no echo, no line editing, no CR/NL mapping, 8-bit clean.
fn open_tty(name: &str) -> io::Result<File> {
    let path = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/dev/{name}")
    };
    if !Path::new(&path).exists() {
        // Without devtmpfs: UML serial lines are char 4, 64+N.
        if let Some(n) = name
            .strip_prefix("ttyS")
            .and_then(|n| n.parse::<u32>().ok())
        {
            let c = CString::new(path.clone())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: `c` is a valid path string; mknod only reads it.
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(4, 64 + n)) };
        }
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)?;
    // SAFETY: termios is plain data; the fd is open for the duration of the calls.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(f.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            t.c_cflag |= libc::CLOCAL | libc::CREAD;
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            libc::tcsetattr(f.as_raw_fd(), libc::TCSANOW, &t);
        }
        // Bytes the host sent before the line was raw went through the cooked line
        // discipline (CR mapped to NL, control bytes eaten): drop them. The host learns
        // from our hello frame that the line is ready and asks again.
        libc::tcflush(f.as_raw_fd(), libc::TCIFLUSH);
    }
    Ok(f)
}

fn send(w: &Writer, f: Frame) -> bool {
    let mut g = match w.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    f.write_to(&mut *g).is_ok()
}

enum Event {
    Host(Frame),
    Done(u32),
}

struct Session {
    id: u32,
    pid: i32,
    stdin: Option<Sender<Vec<u8>>>,
    pty_master: Option<Arc<OwnedFd>>,
}

/// The filesystems an attached command expects, which the guest's boot scripts would
/// mount only after the early server is up: (target, type, flags, options). The options
/// are those of the busybox template's rcS, which skips what is already mounted.
const BASIC_MOUNTS: &[(&str, &str, libc::c_ulong, &str)] = &[
    (
        "/sys",
        "sysfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ),
    (
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    ),
    (
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    ),
];

/// Starts the server as a daemon of its own session, so that it outlives the boot hook
/// and no hang-up of the console's session reaches it; init adopts it.
fn serve_in_background() {
    for (target, fstype, flags, data) in BASIC_MOUNTS {
        if is_mountpoint(target) {
            continue;
        }
        let res =
            fs::create_dir_all(target).and_then(|_| mount(fstype, target, fstype, *flags, data));
        if let Err(e) = res {
            eprintln!("coop-guest-agent: cannot mount {fstype} on {target}: {e}");
        }
    }
    // A fork that goes on to serve rather than a new exec of the agent: under UML an exec
    // of this 1.6 MB binary costs tens of milliseconds of page faults.
    // SAFETY: the boot hook has no other thread, so the child may run any code; it only
    // changes its own session and stdin before serving.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain syscalls on the child's own session and descriptors.
            unsafe {
                libc::setsid();
                if let Ok(null) = File::open("/dev/null") {
                    libc::dup2(null.as_raw_fd(), 0);
                }
            }
            let tty = cmdline_value("coop.agent").unwrap_or_else(|| "ttyS0".into());
            std::process::exit(serve(&tty));
        }
        -1 => eprintln!(
            "coop-guest-agent: cannot fork the server: {}",
            io::Error::last_os_error()
        ),
        _ => {}
    }
}

/// Blocks until this process holds the exclusive lock on its own executable: the one
/// server that owns the serial line. The lock goes with the process, however it ends.
fn lock_server() -> Option<File> {
    let exe = std::env::current_exe().ok()?;
    let f = File::open(&exe).ok()?;
    loop {
        // SAFETY: plain syscall on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Some(f);
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

fn serve(tty: &str) -> i32 {
    // Without a lock (no /proc, an odd filesystem) serve all the same, as before.
    let _lock = lock_server();
    // A session of our own without a controlling terminal (init may have given us the
    // console), inherited by the commands; fails harmlessly when we lead one already.
    // SAFETY: plain syscall.
    unsafe { libc::setsid() };
    // Commands start in root's home (see `command`).
    let _ = std::env::set_current_dir("/root").or_else(|_| std::env::set_current_dir("/"));
    let tty_file = match open_tty(tty) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("coop-guest-agent: cannot open {tty}: {e}");
            // Keep init's respawn from spinning.
            thread::sleep(Duration::from_secs(5));
            return 1;
        }
    };
    let writer: Writer = match tty_file.try_clone() {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            eprintln!("coop-guest-agent: {e}");
            return 1;
        }
    };
    let (tx, rx) = mpsc::channel::<Event>();
    let rtx = tx.clone();
    thread::spawn(move || reader(tty_file, rtx));
    send(&writer, Frame::new(Kind::Hello, 0, VERSION.as_bytes()));
    main_loop(rx, tx, writer);
    0
}

fn reader(mut tty: File, tx: Sender<Event>) {
    loop {
        match read_frame(&mut tty) {
            Ok(Some(f)) => {
                if tx.send(Event::Host(f)).is_err() {
                    return;
                }
            }
            // Hang-up or garbage: the line stays ours; wait a little and read on.
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn main_loop(rx: Receiver<Event>, tx: Sender<Event>, w: Writer) {
    let mut cur: Option<Session> = None;
    while let Ok(ev) = rx.recv() {
        match ev {
            Event::Done(id) => {
                if cur.as_ref().is_some_and(|s| s.id == id) {
                    cur = None;
                }
            }
            Event::Host(f) => match f.kind {
                Kind::Ping => {
                    send(&w, Frame::new(Kind::Pong, f.session, VERSION.as_bytes()));
                }
                Kind::Request => {
                    if let Some(old) = cur.take() {
                        kill_group(old.pid, libc::SIGKILL);
                    }
                    match Request::decode(&f.payload) {
                        Ok(req) => cur = start(f.session, &req, &w, &tx),
                        Err(e) => {
                            send(
                                &w,
                                Frame::new(Kind::Error, f.session, format!("bad request: {e}")),
                            );
                            send(
                                &w,
                                Frame::new(Kind::Exit, f.session, 127i32.to_le_bytes().to_vec()),
                            );
                        }
                    }
                }
                _ => {
                    let Some(s) = cur.as_mut().filter(|s| s.id == f.session) else {
                        continue;
                    };
                    match f.kind {
                        Kind::Stdin => {
                            let n = f.payload.len() as u32;
                            let fed = s
                                .stdin
                                .as_ref()
                                .is_some_and(|tx| tx.send(f.payload).is_ok());
                            if !fed {
                                send(
                                    &w,
                                    Frame::new(Kind::StdinAck, f.session, n.to_le_bytes().to_vec()),
                                );
                            }
                        }
                        Kind::StdinEof => {
                            if s.pty_master.is_some() {
                                // A terminal has no EOF of its own: send the EOF character.
                                if let Some(tx) = &s.stdin {
                                    let _ = tx.send(vec![4]);
                                }
                            } else {
                                s.stdin = None;
                            }
                        }
                        Kind::Resize => {
                            if let (Some(m), Some(rows), Some(cols)) =
                                (&s.pty_master, f.payload.get(0..2), f.payload.get(2..4))
                            {
                                let rows = u16::from_le_bytes([rows[0], rows[1]]);
                                let cols = u16::from_le_bytes([cols[0], cols[1]]);
                                set_winsize(m.as_raw_fd(), rows, cols);
                            }
                        }
                        Kind::Signal => {
                            if let Some(sig) = f.payload_i32() {
                                kill_group(s.pid, sig);
                            }
                        }
                        _ => {}
                    }
                }
            },
        }
    }
}

fn kill_group(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: plain syscall; the child leads its own process group (setsid).
        unsafe { libc::kill(-pid, sig) };
    }
}

fn set_winsize(fd: i32, rows: u16, cols: u16) {
    if rows == 0 || cols == 0 {
        return;
    }
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `ws` is a valid winsize for the duration of the ioctl.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// `prog` looked up in `path` as execvp would, when it names no directory.
fn resolve(prog: &str, path: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if prog.contains('/') {
        return None;
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(prog))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The command of a request. The program is looked up here and no working directory is
/// set (the agent's own is the one commands start in), so that std can start it with
/// posix_spawn (a vfork) rather than fork: under UML a fork copies the agent's whole
/// address space into a new host process.
fn command(req: &Request) -> Command {
    let path = req
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut c = match resolve(&req.argv[0], path) {
        Some(p) => {
            let mut c = Command::new(p);
            c.arg0(&req.argv[0]);
            c
        }
        None => Command::new(&req.argv[0]),
    };
    c.args(&req.argv[1..]);
    c.env_clear();
    c.env("PATH", DEFAULT_PATH)
        .env("HOME", "/root")
        .env("USER", "root")
        .env("LOGNAME", "root");
    if req.pty {
        c.env("TERM", "vt100");
    }
    for e in &req.env {
        if let Some((k, v)) = e.split_once('=') {
            if !k.is_empty() {
                c.env(k, v);
            }
        }
    }
    c
}

fn start(id: u32, req: &Request, w: &Writer, tx: &Sender<Event>) -> Option<Session> {
    let res = if req.pty {
        start_pty(id, req, w, tx)
    } else {
        start_pipes(id, req, w, tx)
    };
    match res {
        Ok(s) => Some(s),
        Err(e) => {
            let code: i32 = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            send(
                w,
                Frame::new(Kind::Error, id, format!("cannot run {}: {e}", req.argv[0])),
            );
            send(w, Frame::new(Kind::Exit, id, code.to_le_bytes().to_vec()));
            None
        }
    }
}

fn pump_out(
    mut r: impl Read + Send + 'static,
    w: Writer,
    id: u32,
    kind: Kind,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !send(&w, Frame::new(kind, id, &buf[..n])) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO on a pty master: the last slave fd closed.
                Err(_) => break,
            }
        }
    })
}

/// Feeds the command's stdin and acknowledges each chunk once written, which paces the
/// host (see `STDIN_WINDOW`) and so bounds both the tty buffer and this queue.
fn pump_in(mut dst: impl Write + Send + 'static, w: Writer, id: u32) -> Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    thread::spawn(move || {
        let mut broken = false;
        for chunk in rx {
            // After the command stopped reading, keep acknowledging so that the host's
            // stdin copier is not left waiting for credit.
            if !broken && dst.write_all(&chunk).and_then(|_| dst.flush()).is_err() {
                broken = true;
            }
            let n = chunk.len() as u32;
            send(&w, Frame::new(Kind::StdinAck, id, n.to_le_bytes().to_vec()));
        }
    });
    tx
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    st.code().or(st.signal().map(|s| 128 + s)).unwrap_or(255)
}

fn start_pipes(id: u32, req: &Request, w: &Writer, tx: &Sender<Event>) -> io::Result<Session> {
    let mut c = command(req);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so that a signal or a superseding request reaches all of it.
    // (No setsid in a pre_exec hook: that would force a fork. The agent has no
    // controlling terminal, so neither has the command.)
    c.process_group(0);
    let mut child = c.spawn()?;
    let pid = child.id() as i32;
    let stdin = child.stdin.take().map(|i| pump_in(i, w.clone(), id));
    let out = child
        .stdout
        .take()
        .map(|o| pump_out(o, w.clone(), id, Kind::Stdout));
    let err = child
        .stderr
        .take()
        .map(|e| pump_out(e, w.clone(), id, Kind::Stderr));
    let (w, tx) = (w.clone(), tx.clone());
    thread::spawn(move || {
        // Output first, so that the exit frame is the last of the session.
        for h in [out, err].into_iter().flatten() {
            let _ = h.join();
        }
        let code = child.wait().map(exit_code).unwrap_or(255);
        send(&w, Frame::new(Kind::Exit, id, code.to_le_bytes().to_vec()));
        let _ = tx.send(Event::Done(id));
    });
    Ok(Session {
        id,
        pid,
        stdin,
        pty_master: None,
    })
}

fn start_pty(id: u32, req: &Request, w: &Writer, tx: &Sender<Event>) -> io::Result<Session> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two fds into the provided ints; name and termios are null.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both fds are open and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    set_winsize(master.as_raw_fd(), req.rows, req.cols);
    let mut c = command(req);
    c.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?));
    // SAFETY: setsid and ioctl are async-signal-safe; the child gets its own session with
    // the pty (its stdin) as controlling terminal, as a login shell would.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let child = c.spawn();
    drop(c);
    drop(slave);
    let mut child = child?;
    let pid = child.id() as i32;
    let master = Arc::new(master);
    let rd = File::from(master.try_clone()?);
    let wr = File::from(master.try_clone()?);
    let out = pump_out(rd, w.clone(), id, Kind::Stdout);
    let stdin = Some(pump_in(wr, w.clone(), id));
    let (w, tx) = (w.clone(), tx.clone());
    thread::spawn(move || {
        let _ = out.join();
        let code = child.wait().map(exit_code).unwrap_or(255);
        send(&w, Frame::new(Kind::Exit, id, code.to_le_bytes().to_vec()));
        let _ = tx.send(Event::Done(id));
    });
    Ok(Session {
        id,
        pid,
        stdin,
        pty_master: Some(master),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_names() {
        let text = "Inter-|   Receive                            |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
                    lo:       0       0    0    0    0     0          0         0        0\n  \
                    vec0: 1234      10    0    0    0     0          0         0      999\n";
        assert_eq!(parse_net_dev(text), vec!["lo", "vec0"]);
        assert!(parse_net_dev("").is_empty());
    }
}
