//! The container side of start: what the cloned child does between `clone` and `exec`.
//!
//! It runs as PID 1 of the new PID namespace, already inside new mount, UTS, IPC and
//! network namespaces. It waits for the monitor to finish the host side (cgroup, id maps,
//! network), then builds the container's view of the world — its root, /proc, /sys, /dev,
//! consoles — pivots into it, sheds privileges and becomes the container's init. Any
//! failure is written to the error pipe, which `exec` closes on success.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use coop_config::{CgroupMode, MountEntry, ProcMode, SysMode};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::{makedev, mknod, umask, Mode, SFlag};
use nix::unistd::{chdir, dup2, execvpe, pivot_root, sethostname, setsid};

/// Everything the child needs, prepared by the monitor before `clone` so the child does
/// no parsing of its own.
pub(crate) struct ChildSpec {
    pub rootfs: PathBuf,
    pub hostname: String,
    /// Host paths of pty slaves: index 0 becomes /dev/console, i becomes /dev/tty<i>.
    pub ttys: Vec<PathBuf>,
    pub mounts: Vec<MountEntry>,
    pub proc: Option<ProcMode>,
    pub sys: Option<SysMode>,
    pub cgroup: CgroupMode,
    /// Mount cgroup2 at /sys/fs/cgroup (the container's cgroup is in a v2 hierarchy).
    pub cgroup2: bool,
    /// v1 controllers to mount under a tmpfs at /sys/fs/cgroup when there is no v2.
    pub cgroup_v1: Vec<String>,
    pub autodev: bool,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: String,
    pub drop_caps: Vec<caps::Capability>,
    pub seccomp: Option<seccompiler::BpfProgram>,
    pub userns: bool,
    /// Raise `lo` in the new network namespace (networking adds the other links).
    pub loopback_up: bool,
    /// A descriptor init gets as fd 3 (a coLinux kernel's guest-agent channel).
    pub agent_fd: Option<std::os::fd::RawFd>,
}

/// Proc files that leak host information or allow host damage; hidden as LXC does.
const MASKED_PROC: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
];

/// The device nodes of a container's /dev (LXC's default allow list): name, major, minor.
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Entry point in the child. Returns only on failure (exit status of the child).
pub(crate) fn run(spec: &ChildSpec, sync: OwnedFd, err: OwnedFd) -> isize {
    let mut errf = fs::File::from(err);
    match setup_and_exec(spec, sync) {
        Ok(never) => match never {},
        Err(msg) => {
            let _ = errf.write_all(msg.as_bytes());
            1
        }
    }
}

enum Never {}

fn setup_and_exec(spec: &ChildSpec, sync: OwnedFd) -> Result<Never, String> {
    // Without a user namespace the mounts need nothing from the monitor, so they are
    // made while it moves us into the cgroup and plugs in the network (two cores: the
    // start waits for the longer of the two, not their sum). In a user namespace they
    // need the id maps first. A coLinux kernel keeps the old order: with early mounts its
    // console login failed intermittently (the guest stopped answering after the
    // password; the cause is not understood yet).
    let early = !spec.userns && spec.agent_fd.is_none();
    if early {
        if spec.loopback_up {
            loopback_up()?;
        }
        prepare_rootfs(spec)?;
    }
    // Wait for the monitor: cgroup joined, id maps written, network plugged in.
    let mut go = [0u8; 1];
    let mut f = fs::File::from(sync);
    match f.read(&mut go) {
        Ok(1) if go[0] == b'G' => {}
        _ => return Err("the monitor aborted the start".into()),
    }
    drop(f);

    if spec.userns {
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .map_err(|e| format!("cannot become gid 0 in the user namespace: {e}"))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .map_err(|e| format!("cannot become uid 0 in the user namespace: {e}"))?;
    }
    // Now that we sit in the container's cgroup, a cgroup namespace makes it the root.
    unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| format!("cannot create the cgroup namespace: {e}"))?;

    if !early {
        if spec.loopback_up {
            loopback_up()?;
        }
        prepare_rootfs(spec)?;
    }
    finish_rootfs(spec)?;
    sethostname(&spec.hostname).map_err(|e| format!("cannot set the host name: {e}"))?;
    setup_console()?;
    if spec.agent_fd.is_some() {
        // A UML kernel: its console channel puts this pty into raw mode while the guest
        // has its console open, and puts back what it found whenever the guest closes it
        // (getty handing over to login, rcS ending). Found cooked, the pty would then
        // echo and hold typed lines itself, and a login could wait forever for a password
        // stuck in its line buffer; found raw, every restore leaves it raw.
        let stdin = std::io::stdin();
        if let Ok(mut t) = nix::sys::termios::tcgetattr(&stdin) {
            nix::sys::termios::cfmakeraw(&mut t);
            nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &t)
                .map_err(|e| format!("cannot make the kernel's console raw: {e}"))?;
        }
    }

    if let Some(prog) = &spec.seccomp {
        seccompiler::apply_filter(prog)
            .map_err(|e| format!("cannot load the seccomp filter: {e}"))?;
    }
    drop_capabilities(&spec.drop_caps)?;
    reset_signals();

    if let Some(fd) = spec.agent_fd {
        let target = coop_colinux::AGENT_FD;
        if fd == target {
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            );
        } else {
            // dup2 leaves the copy without close-on-exec, so init inherits it.
            dup2(fd, target).map_err(|e| format!("cannot pass the agent channel: {e}"))?;
        }
    }
    chdir(Path::new(&spec.cwd)).map_err(|e| format!("cannot enter {}: {e}", spec.cwd))?;
    let e = execvpe(&spec.argv[0], &spec.argv, &spec.env).unwrap_err();
    Err(format!(
        "cannot run init {:?} in the container: {e} (check lxc.init.cmd and the rootfs)",
        spec.argv[0]
    ))
}

fn m(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    mount(src, target, fstype, flags, data).map_err(|e| {
        format!(
            "cannot mount {} on {} ({}): {e}",
            src.unwrap_or("none"),
            target.display(),
            fstype.unwrap_or("bind")
        )
    })
}

/// The container's tree up to its cgroup mounts: /proc, /sys, /dev, the console.
fn prepare_rootfs(spec: &ChildSpec) -> Result<(), String> {
    let root = &spec.rootfs;
    // Nothing we mount may propagate back to the host.
    m(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    // pivot_root needs the new root to be a mount point.
    m(
        Some(&root.to_string_lossy()),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;

    if let Some(mode) = spec.proc {
        let p = root.join("proc");
        mkdir(&p)?;
        m(
            Some("proc"),
            &p,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        )?;
        if mode == ProcMode::Mixed {
            for sub in ["sys", "sysrq-trigger"] {
                let t = p.join(sub);
                // Kernels built without magic SysRq have no sysrq-trigger.
                if t.exists() {
                    bind_readonly(&t)?;
                }
            }
        }
        for f in MASKED_PROC {
            let t = p.join(f);
            if t.exists() {
                m(Some("/dev/null"), &t, None, MsFlags::MS_BIND, None)?;
            }
        }
    }
    if let Some(mode) = spec.sys {
        let s = root.join("sys");
        mkdir(&s)?;
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if mode == SysMode::Ro {
            flags |= MsFlags::MS_RDONLY;
        }
        m(Some("sysfs"), &s, Some("sysfs"), flags, None)?;
        if mode == SysMode::Mixed {
            bind_readonly(&s)?;
        }
    }

    if spec.autodev {
        setup_dev(spec)?;
    } else if let Some(console) = spec.ttys.first() {
        let t = root.join("dev/console");
        if t.exists() {
            m(
                Some(&console.to_string_lossy()),
                &t,
                None,
                MsFlags::MS_BIND,
                None,
            )?;
        }
    }

    Ok(())
}

/// After the cgroup namespace exists: the cgroup mounts (which show it), the config's
/// mount entries, then the pivot into the new root.
fn finish_rootfs(spec: &ChildSpec) -> Result<(), String> {
    let root = &spec.rootfs;
    if spec.sys.is_some() && spec.cgroup != CgroupMode::None {
        mount_cgroups(spec, &root.join("sys/fs/cgroup"))?;
    }
    for e in &spec.mounts {
        if let Err(err) = mount_entry(root, e) {
            if e.has_option("optional") {
                continue;
            }
            return Err(format!("lxc.mount.entry {} {}: {err}", e.source, e.target));
        }
    }

    chdir(root).map_err(|e| format!("cannot enter {}: {e}", root.display()))?;
    pivot_root(".", ".").map_err(|e| format!("pivot_root into {}: {e}", root.display()))?;
    // The old root is stacked under the new one; detach it so the host tree is gone.
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("cannot detach the host root: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

fn bind_readonly(p: &Path) -> Result<(), String> {
    m(Some(&p.to_string_lossy()), p, None, MsFlags::MS_BIND, None)?;
    m(
        None,
        p,
        None,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None,
    )
}

fn mount_cgroups(spec: &ChildSpec, target: &Path) -> Result<(), String> {
    let ro = if spec.cgroup == CgroupMode::Ro {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if spec.cgroup2 {
        // Our cgroup namespace roots the view at the container's own cgroup, so a
        // systemd init can manage its subtree and sees nothing of the host's.
        return m(Some("cgroup2"), target, Some("cgroup2"), base | ro, None);
    }
    m(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        base,
        Some("mode=755,size=64k"),
    )?;
    for c in &spec.cgroup_v1 {
        let t = target.join(c);
        mkdir(&t)?;
        m(Some("cgroup"), &t, Some("cgroup"), base | ro, Some(c))?;
    }
    Ok(())
}

fn setup_dev(spec: &ChildSpec) -> Result<(), String> {
    let dev = spec.rootfs.join("dev");
    mkdir(&dev)?;
    m(
        Some("none"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=500k"),
    )?;
    // Made as nodes where we may (as LXC does): a mknod costs a fraction of a bind
    // mount, and these are on the start's critical path. In a user namespace mknod is
    // refused, so the host's nodes are bound instead.
    let old_umask = (!spec.userns).then(|| umask(Mode::empty()));
    for &(d, major, minor) in DEVICES {
        let t = dev.join(d);
        let made = !spec.userns
            && mknod(
                &t,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            )
            .is_ok();
        if !made {
            touch(&t)?;
            m(Some(&format!("/dev/{d}")), &t, None, MsFlags::MS_BIND, None)?;
        }
    }
    if let Some(mask) = old_umask {
        umask(mask);
    }
    let pts = dev.join("pts");
    mkdir(&pts)?;
    let opts = if spec.userns {
        "newinstance,ptmxmode=0666,mode=0620"
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    m(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(opts),
    )?;
    symlink("pts/ptmx", dev.join("ptmx")).map_err(|e| format!("dev/ptmx: {e}"))?;
    for (i, tty) in spec.ttys.iter().enumerate() {
        let name = if i == 0 {
            "console".to_string()
        } else {
            format!("tty{i}")
        };
        let t = dev.join(&name);
        touch(&t)?;
        m(
            Some(&tty.to_string_lossy()),
            &t,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    let shm = dev.join("shm");
    mkdir(&shm)?;
    m(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    let mq = dev.join("mqueue");
    mkdir(&mq)?;
    // mqueue is optional: a kernel without POSIX message queues still runs containers.
    let _ = mount(
        Some("mqueue"),
        &mq,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    for (l, t) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(t, dev.join(l)).map_err(|e| format!("dev/{l}: {e}"))?;
    }
    Ok(())
}

fn mount_entry(root: &Path, e: &MountEntry) -> Result<(), String> {
    let target = root.join(&e.target);
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut ro = false;
    for o in &e.options {
        match o.as_str() {
            "defaults" | "rw" | "optional" | "auto" | "noauto" => {}
            "ro" => ro = true,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "create=dir" => mkdir(&target)?,
            "create=file" => {
                if let Some(p) = target.parent() {
                    mkdir(p)?;
                }
                touch(&target)?;
            }
            other => data.push(other.to_string()),
        }
    }
    let data = data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    let is_bind = flags.contains(MsFlags::MS_BIND);
    if is_bind && !Path::new(&e.source).exists() {
        return Err(format!("source {} does not exist", e.source));
    }
    let fstype = (!is_bind && e.fstype != "none").then_some(e.fstype.as_str());
    let first = if is_bind {
        flags
    } else if ro {
        flags | MsFlags::MS_RDONLY
    } else {
        flags
    };
    m(Some(&e.source), &target, fstype, first, data)?;
    if is_bind && ro {
        m(
            None,
            &target,
            None,
            flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// `ip link set lo up`, with one ioctl instead of a netlink conversation.
fn loopback_up() -> Result<(), String> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket for lo: {e}"))?;
    // SAFETY: ifreq is plain data; zeroed is a valid value. The ioctls read and write
    // only that struct, which lives across both calls.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(format!("lo flags: {}", std::io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) < 0 {
            return Err(format!(
                "cannot raise lo: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn setup_console() -> Result<(), String> {
    setsid().map_err(|e| format!("setsid: {e}"))?;
    let fd = nix::fcntl::open(
        "/dev/console",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("cannot open /dev/console: {e}"))?;
    // SAFETY: TIOCSCTTY takes an int argument and only affects this process's session;
    // `fd` is an open tty we own.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(format!(
            "cannot make /dev/console the controlling tty: {}",
            std::io::Error::last_os_error()
        ));
    }
    for target in 0..3 {
        dup2(fd, target).map_err(|e| format!("dup2 console: {e}"))?;
    }
    if fd > 2 {
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}

/// Drop capabilities from the bounding set first (so no exec can regain them), then
/// from the process's own sets.
pub(crate) fn drop_capabilities(drop: &[caps::Capability]) -> Result<(), String> {
    for c in drop {
        if caps::has_cap(None, caps::CapSet::Bounding, *c).unwrap_or(false) {
            caps::drop(None, caps::CapSet::Bounding, *c)
                .map_err(|e| format!("cannot drop {c} from the bounding set: {e}"))?;
        }
        for set in [
            caps::CapSet::Inheritable,
            caps::CapSet::Effective,
            caps::CapSet::Permitted,
        ] {
            caps::drop(None, set, *c).map_err(|e| format!("cannot drop {c}: {e}"))?;
        }
    }
    let _ = caps::clear(None, caps::CapSet::Ambient);
    Ok(())
}

/// Signal dispositions and the mask survive exec; the container's processes must start
/// with defaults, not with what the monitor (and Rust's runtime, for SIGPIPE) set.
pub(crate) fn reset_signals() {
    use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
    for s in Signal::iterator() {
        if s != Signal::SIGKILL && s != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL runs no handler code.
            unsafe {
                let _ = signal(s, SigHandler::SigDfl);
            }
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn mkdir(p: &Path) -> Result<(), String> {
    fs::create_dir_all(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
}

fn touch(p: &Path) -> Result<(), String> {
    if p.exists() {
        return Ok(());
    }
    fs::File::create(p)
        .and_then(|f| f.set_permissions(fs::Permissions::from_mode(0o644)))
        .map_err(|e| format!("cannot create {}: {e}", p.display()))
}

/// Keep a descriptor across nothing: exec must not leak monitor descriptors into init.
pub(crate) fn set_cloexec(fd: &impl AsRawFd) {
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
}
