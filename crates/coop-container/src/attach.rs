//! `coop attach`: run a command inside a running container.
//!
//! The command joins all of init's namespaces and its cgroup and loses the same
//! capabilities as init, so it sees exactly what the container sees. It goes straight
//! to the kernel (setns) rather than through the monitor, which keeps attach cheap.
//! With a terminal on stdin the command gets a pty of its own, pumped by this process.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use coop_cgroups::{Cgroup, Hierarchy};
use coop_config::Config;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use crate::console::{window_size, RawMode};
use crate::state::{AttachSpec, RunState};
use crate::{Error, Result, Store};

pub struct AttachOptions {
    /// Empty: the container root's login shell.
    pub command: Vec<String>,
    /// Extra `NAME=VALUE` pairs.
    pub env: Vec<(String, String)>,
    /// Give the command a pty (the default when stdin is a terminal).
    pub pty: bool,
}

/// Namespaces in the order they must be joined: the user namespace first (it grants the
/// rights for the others), the mount namespace after the ones that need /proc paths.
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Runs the command and returns its exit status (128 + N when killed by signal N).
pub fn attach(store: &Store, name: &str, opts: &AttachOptions) -> Result<i32> {
    store.require(name)?;
    let st = RunState::load(store, name)?.ok_or_else(|| Error::NotRunning(name.into()))?;
    if st.kind.as_deref() == Some("colinux") {
        return attach_guest(store, name, &st, opts);
    }
    let spec = match &st.attach {
        Some(a) => a.clone(),
        // A state file from before attach specs were recorded.
        None => {
            let config = Config::load(&store.config_path(name))?;
            AttachSpec {
                cgroup_dirs: Cgroup::new(&Hierarchy::detect()?, &st.cgroup).paths(),
                drop_caps: crate::monitor::capability_drop_list(&config)?
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                env: config.environment.clone(),
            }
        }
    };
    let drop_caps: Vec<caps::Capability> = spec
        .drop_caps
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();

    let pid = st.init_pid;
    let mut ns = Vec::new();
    for (n, flag) in NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{n}");
        let ours = format!("/proc/self/ns/{n}");
        let same = match (std::fs::metadata(&theirs), std::fs::metadata(&ours)) {
            (Ok(a), Ok(b)) => {
                use std::os::unix::fs::MetadataExt;
                a.ino() == b.ino() && a.dev() == b.dev()
            }
            _ => false,
        };
        if same {
            continue;
        }
        let f = File::open(&theirs).map_err(Error::io(format!(
            "container {name}: cannot open {theirs} (did it just stop?)"
        )))?;
        ns.push((OwnedFd::from(f), *flag, *n));
    }

    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        (
            "TERM".into(),
            std::env::var("TERM").unwrap_or_else(|_| "linux".into()),
        ),
        ("HOME".into(), "/root".into()),
        ("USER".into(), "root".into()),
        ("container".into(), "lxc".into()),
    ];
    env.extend(spec.env.iter().cloned());
    if st.spice.is_some() {
        env.push(("DISPLAY".into(), ":0".into()));
    }
    env.extend(opts.env.iter().cloned());
    let command = if opts.command.is_empty() {
        vec![login_shell(pid)]
    } else {
        opts.command.clone()
    };
    let argv: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Msg("NUL byte in the command".into()))?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Msg("NUL byte in the environment".into()))?;

    let pty = if opts.pty {
        let p = nix::pty::openpty(None, None).map_err(Error::sys("openpty"))?;
        if let Some((rows, cols)) = window_size(&std::io::stdin()) {
            let ws = nix::pty::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads the Winsize behind the pointer during the call.
            unsafe { libc::ioctl(p.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        Some(p)
    } else {
        None
    };

    // Joining the PID namespace here changes only where our children are born, so the
    // one child below is the command itself, already inside the container's PID
    // namespace: no intermediate process to fork, move into the cgroup and wait for.
    let mut child_ns = Vec::with_capacity(ns.len());
    for (fd, flag, n) in ns {
        if flag == CloneFlags::CLONE_NEWPID {
            setns(fd.as_fd(), flag).map_err(|e| {
                Error::Msg(format!(
                    "container {name}: cannot join the pid namespace: {e}"
                ))
            })?;
        } else {
            child_ns.push((fd, flag, n));
        }
    }
    // SAFETY: the CLI is single-threaded here; the child only makes syscalls, then
    // execs or exits.
    match unsafe { fork() }.map_err(Error::sys("fork"))? {
        ForkResult::Child => {
            let slave = pty.map(|p| {
                drop(p.master);
                p.slave
            });
            let err = match enter(&spec.cgroup_dirs, &child_ns) {
                Ok(()) => exec_command(slave, &argv, &envp, &drop_caps),
                Err(msg) => msg,
            };
            eprintln!("coop attach {name}: {err}");
            std::process::exit(if err.contains("not found") { 127 } else { 126 });
        }
        ForkResult::Parent { child } => {
            drop(child_ns);
            let code = match pty {
                Some(p) => {
                    drop(p.slave);
                    pump(p.master);
                    wait_code(child)
                }
                None => wait_code(child),
            };
            Ok(code)
        }
    }
}

fn wait_code(child: nix::unistd::Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// In the child (already in the container's PID namespace): join the cgroup, then the
/// other namespaces, user first, mount last.
fn enter(
    cgroup_dirs: &[std::path::PathBuf],
    ns: &[(OwnedFd, CloneFlags, &str)],
) -> std::result::Result<(), String> {
    for d in cgroup_dirs {
        let f = d.join("cgroup.procs");
        // "0" is the writer itself; our pid as the host sees it is not ours to print
        // from inside the container's PID namespace.
        std::fs::write(&f, "0")
            .map_err(|e| format!("cannot join the cgroup {}: {e}", f.display()))?;
    }
    for (fd, flag, n) in ns {
        setns(fd.as_fd(), *flag).map_err(|e| format!("cannot join the {n} namespace: {e}"))?;
    }
    if ns.iter().any(|(_, f, _)| *f == CloneFlags::CLONE_NEWUSER) {
        // Our host uid 0 means nothing inside an lxc.idmap namespace (the command would
        // run as the overflow id, "nobody"): become the container's own root, as init is.
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        let root = (Uid::from_raw(0), Gid::from_raw(0));
        setgroups(&[]).map_err(|e| format!("cannot drop supplementary groups: {e}"))?;
        setresgid(root.1, root.1, root.1)
            .map_err(|e| format!("cannot become the container's root group: {e}"))?;
        setresuid(root.0, root.0, root.0)
            .map_err(|e| format!("cannot become the container's root: {e}"))?;
    }
    Ok(())
}

fn exec_command(
    slave: Option<OwnedFd>,
    argv: &[CString],
    envp: &[CString],
    drop_caps: &[caps::Capability],
) -> String {
    if let Some(s) = slave {
        let _ = nix::unistd::setsid();
        // SAFETY: TIOCSCTTY with an int argument on a tty we hold.
        unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCSCTTY, 0) };
        for t in 0..3 {
            let _ = nix::unistd::dup2(s.as_raw_fd(), t);
        }
    }
    let _ = nix::unistd::chdir("/");
    if let Err(e) = crate::init::drop_capabilities(drop_caps) {
        return e;
    }
    crate::init::reset_signals();
    let prog = match resolve(argv[0].to_str().unwrap_or_default()) {
        Some(p) => p,
        None => {
            return format!(
                "{}: command not found in the container",
                argv[0].to_string_lossy()
            )
        }
    };
    let e = nix::unistd::execve(&prog, argv, envp).unwrap_err();
    format!("cannot run {}: {e}", prog.to_string_lossy())
}

/// PATH search inside the container (we are in its mount namespace now).
fn resolve(cmd: &str) -> Option<CString> {
    if cmd.contains('/') {
        return CString::new(cmd).ok();
    }
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let p = Path::new(dir).join(cmd);
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return CString::new(p.into_os_string().into_encoded_bytes()).ok();
        }
    }
    None
}

/// root's shell from the container's /etc/passwd, else /bin/sh.
fn login_shell(init_pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{init_pid}/root/etc/passwd"))
        .ok()
        .and_then(|p| {
            p.lines()
                .find(|l| l.starts_with("root:"))
                .and_then(|l| l.rsplit(':').next())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/bin/sh".into())
}

/// Copy between our terminal and the command's pty until the command side closes.
fn pump(master: OwnedFd) {
    let stdin = std::io::stdin();
    let _raw = RawMode::enter(&stdin);
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        let (m_ready, i_ready) = {
            let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
            let r = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (r(&fds[0]), stdin_open && r(&fds[1]))
        };
        if m_ready {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => write_all(1, &buf[..n]),
                // EIO: every holder of the slave is gone, i.e. the command ended.
                _ => return,
            }
        }
        if i_ready {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => write_all(master.as_raw_fd(), &buf[..n]),
                _ => {
                    stdin_open = false;
                    // Pass end-of-file on as the terminal would (Ctrl-D).
                    write_all(master.as_raw_fd(), &[4]);
                }
            }
        }
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    // SAFETY: fd is open for the whole call (stdout or the pty master we own).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// A coLinux instance's guest agent, lent by its monitor.
pub(crate) fn agent_stream(store: &Store, name: &str) -> Result<std::os::unix::net::UnixStream> {
    // The monitor lends the agent to one attach at a time and sees a finished attach hang
    // up only on its next turn, so one started right after another can be told "busy":
    // ask again for a little while.
    let busy_until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let (reply, stream) =
            crate::proto::call(&store.socket_path(name), &crate::proto::Request::Agent)?;
        if reply.ok {
            return Ok(stream);
        }
        let msg = reply.error.unwrap_or_default();
        if msg.starts_with("another attach") && std::time::Instant::now() < busy_until {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        return Err(Error::Msg(format!("coop attach {name}: {msg}")));
    }
}

/// coLinux: the command runs in the guest kernel, through our agent on its serial line,
/// which the instance's monitor lends to one attach at a time.
fn attach_guest(store: &Store, name: &str, st: &RunState, opts: &AttachOptions) -> Result<i32> {
    let stream = agent_stream(store, name)?;
    let mut argv = if opts.command.is_empty() {
        vec!["/bin/sh".to_string()]
    } else {
        opts.command.clone()
    };
    // lxc.environment and the monitor's (DISPLAY for a SPICE display), then the caller's.
    let env: Vec<&(String, String)> = st
        .attach
        .iter()
        .flat_map(|a| a.env.iter())
        .chain(opts.env.iter())
        .collect();
    if !env.is_empty() {
        // The agent runs argv directly; `env` sets the extra variables in the guest.
        let mut with_env = vec!["/usr/bin/env".to_string()];
        with_env.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        with_env.append(&mut argv);
        argv = with_env;
    }
    // The agent gives the command a pty in the guest; ours must pass keys through raw.
    let _raw = if opts.pty {
        RawMode::enter(&std::io::stdin())
    } else {
        None
    };
    Ok(coop_colinux::attach_over(&stream, &argv, opts.pty)?)
}
