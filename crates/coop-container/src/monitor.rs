//! The per-container monitor: one small process for each running container.
//!
//! It creates the cgroup and the console ptys, clones init into its namespaces, then
//! stays as init's parent: it reaps init, logs and relays console traffic, answers the
//! CLI on a unix socket, and when init ends it removes everything start created
//! (cgroup, network, runtime files) before exiting. Being single-threaded and
//! synchronous (poll), it stays small; no daemon outlives its container.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{chown, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use coop_cgroups::{Cgroup, DeviceOp, Hierarchy};
use coop_config::{CgroupMode, Config};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{openpty, Winsize};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::init::{self, ChildSpec};
use crate::proto::{Reply, Request};
use crate::state::{now_secs, RunState, Status};
use crate::{seccomp, Error, Result, Store};

/// Capabilities LXC's common.conf drops when a config says nothing.
const DEFAULT_CAP_DROP: &[&str] = &[
    "mac_admin",
    "mac_override",
    "sys_time",
    "sys_module",
    "sys_rawio",
];

/// Bytes of console output one slow console client may miss before it is dropped.
const CLIENT_IO_TIMEOUT: Duration = Duration::from_millis(200);

/// Entry point of the hidden `coop __monitor` command. Its stdout is the start pipe: one
/// line, `OK <init pid>` or `ERR <message>`, then it detaches and runs the container.
pub fn main(
    store: &Store,
    name: &str,
    spice: Option<String>,
    spice_password_file: Option<PathBuf>,
) -> i32 {
    run_monitor(store, name, spice, spice_password_file, None)
}

/// The container's cgroup, made by the process that forked the monitor (the CLI) while
/// the monitor makes the ptys and clones init: on two cores the two halves of a start
/// overlap instead of adding up. `ready` brings one message: `C` when the group exists
/// with its limits and device rules, else why it could not be made; EOF when that
/// process died first.
pub(crate) struct CgroupHandoff {
    pub hier: Hierarchy,
    pub ready: OwnedFd,
    /// The CPUs the CLI could use; the monitor starts pinned to one of them (see
    /// start::spread) and takes them all back before it clones init.
    pub cpus: Option<nix::sched::CpuSet>,
}

/// The half of a start that [`CgroupHandoff`] describes, run by the CLI: the group,
/// made fresh, with the config's limits and device rules. The message for `ready`.
pub(crate) fn prepare_cgroup(
    store: &Store,
    name: &str,
    hier: &Hierarchy,
    config: &Config,
) -> Vec<u8> {
    let cgroup = Cgroup::new(hier, &store.cgroup_name(name));
    match cgroup
        .create_fresh()
        .map_err(Error::from)
        .and_then(|()| configure_cgroup(&cgroup, hier, config))
    {
        Ok(()) => b"C".to_vec(),
        Err(e) => e.to_string().into_bytes(),
    }
}

/// Blocks until the CLI's half of the start is done; Ok when the cgroup is ready.
fn await_cgroup(ready: OwnedFd) -> Result<()> {
    let mut msg = String::new();
    let _ = File::from(ready).read_to_string(&mut msg);
    match msg.as_str() {
        "C" => Ok(()),
        "" => Err(Error::Msg(
            "the command that started the container ended before its cgroup was made".into(),
        )),
        _ => Err(Error::Msg(msg)),
    }
}

pub(crate) fn run_monitor(
    store: &Store,
    name: &str,
    spice: Option<String>,
    spice_password_file: Option<PathBuf>,
    mut handoff: Option<CgroupHandoff>,
) -> i32 {
    let _ = nix::unistd::setsid();
    // Descriptors the CLI inherited from its own caller must not live as long as the
    // container (a test harness waiting for a pipe to close would wait forever).
    // The hand-off's pipe is the one descriptor above 2 we own.
    let ranges = match handoff.as_ref().map(|h| h.ready.as_raw_fd() as u32) {
        Some(k) if k > 3 => vec![(3, k - 1), (k + 1, u32::MAX)],
        Some(3) => vec![(4, u32::MAX)],
        _ => vec![(3, u32::MAX)],
    };
    for (first, last) in ranges {
        // SAFETY: close_range only closes descriptors; of those above 2 only the
        // hand-off's is in use yet, and it is outside every range.
        unsafe {
            libc::syscall(libc::SYS_close_range, first, last, 0u32);
        }
    }
    let mut ready = File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .expect("stdout"),
    );
    let mut mon = match launch(store, name, spice, spice_password_file, &mut handoff) {
        Ok(m) => m,
        Err(e) => {
            // Failed before the monitor took the group over: it may still be in the
            // making; wait for that, then remove it.
            if let Some(h) = handoff.take() {
                let _ = await_cgroup(h.ready);
                let _ = Cgroup::new(&h.hier, &store.cgroup_name(name)).destroy();
            }
            let _ = writeln!(ready, "ERR {e}");
            return 1;
        }
    };
    let _ = writeln!(ready, "OK {}", mon.init);
    drop(ready);
    await_cli_return();
    redirect_output(&store.run_dir(name).join("monitor.log"));
    if let Some(exe) = small_monitor(&mon) {
        // Returns only when the exec failed; this process then stays the monitor.
        let e = hand_over(&mon, &exe);
        tracing::warn!("cannot run {}: {e}; the full monitor stays", exe.display());
    }
    shed_startup_pages();
    mon.run();
    0
}

/// The small steady-state monitor (crates/coop-monitor) this container can use, if any:
/// `$COOP_MONITOR` (empty: none), else `coop-monitor` beside this binary. GUI containers
/// and coLinux instances keep the full monitor, which also serves their display and
/// guest agent.
fn small_monitor(mon: &Monitor) -> Option<PathBuf> {
    if mon.gui.is_some() || mon.agent.is_some() {
        return None;
    }
    let exe = match std::env::var_os("COOP_MONITOR") {
        Some(p) if p.is_empty() => return None,
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().ok()?.with_file_name("coop-monitor"),
    };
    exe.is_file().then_some(exe)
}

/// Exec `coop-monitor` in this process, handing it init (still our child), the socket,
/// the ptys and the console log. Ends the handover with the steady state in a process
/// that maps a fraction of this one's memory; see crates/coop-monitor. Returns the error
/// when the exec fails (everything is then as before).
fn hand_over(mon: &Monitor, exe: &Path) -> std::io::Error {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    let coop = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut args: Vec<String> = vec![
        "coop-monitor".into(),
        "__monitor".into(),
        "--init".into(),
        mon.init.to_string(),
        "--coop".into(),
        coop.display().to_string(),
        "--lib".into(),
        mon.store.lib.display().to_string(),
        "--run".into(),
        mon.store.run.display().to_string(),
    ];
    let mut inherit: Vec<i32> = Vec::new();
    if let Some(l) = &mon.listener {
        args.extend(["--listen".into(), l.as_raw_fd().to_string()]);
        inherit.push(l.as_raw_fd());
    }
    if let Some(l) = &mon.log {
        args.extend(["--log".into(), l.as_raw_fd().to_string()]);
        inherit.push(l.as_raw_fd());
    }
    for (m, s) in mon.masters.iter().zip(&mon._slaves) {
        args.extend([
            "--tty".into(),
            format!("{},{}", m.as_raw_fd(), s.as_raw_fd()),
        ]);
        inherit.extend([m.as_raw_fd(), s.as_raw_fd()]);
    }
    if let Some((file, value)) = thaw_file(&mon.cgroup) {
        args.extend(["--thaw".into(), format!("{}={value}", file.display())]);
    }
    args.push(mon.name.clone());
    let (Ok(path), Ok(argv)) = (
        CString::new(exe.as_os_str().as_encoded_bytes()),
        args.into_iter()
            .map(CString::new)
            .collect::<std::result::Result<Vec<_>, _>>(),
    ) else {
        return std::io::Error::other("NUL byte in a path");
    };
    for fd in &inherit {
        let _ = nix::fcntl::fcntl(
            *fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
    }
    // The new program reads these through a signalfd; blocked across exec, none that
    // arrives in between is lost (our handlers do not survive the exec).
    let mut block = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        block.add(s);
    }
    let mut old = SigSet::empty();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old));
    let err = nix::unistd::execv(&path, &argv).unwrap_err();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    for fd in &inherit {
        init::set_cloexec(fd);
    }
    std::io::Error::from(err)
}

/// The file and value that thaw the container's cgroup: a SIGKILL reaches a frozen init
/// only once thawed.
fn thaw_file(cg: &Cgroup) -> Option<(PathBuf, &'static str)> {
    if cg.hierarchy().v1_mount("freezer").is_some() {
        Some((cg.path("freezer")?.join("freezer.state"), "THAWED"))
    } else {
        Some((cg.unified_path()?.join("cgroup.freeze"), "0"))
    }
}

/// `coop __monitor --teardown EXIT`: run by coop-monitor once init is gone, in the
/// monitor's process (same pid): remove what start built, as the full monitor's
/// `finish` does, then answer the stops waiting on `waiters` (inherited descriptors).
pub fn teardown(store: &Store, name: &str, exit: &str, waiters: &[i32]) -> i32 {
    let waiters: Vec<UnixStream> = waiters
        .iter()
        .filter(|fd| **fd > 2 && nix::fcntl::fcntl(**fd, nix::fcntl::FcntlArg::F_GETFD).is_ok())
        .map(|fd| {
            init::set_cloexec(fd);
            // SAFETY: coop-monitor passed us this open descriptor (checked above) and
            // nothing else in this process owns it.
            UnixStream::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(*fd) })
        })
        .collect();
    let mut code = 0;
    match RunState::load(store, name) {
        Ok(Some(st)) => {
            let cg = Hierarchy::detect().map(|h| Cgroup::new(&h, &st.cgroup));
            if let Err(e) = cg.map_err(Error::from).and_then(|c| Ok(c.destroy()?)) {
                tracing::error!("cannot remove cgroup: {e}");
                code = 1;
            }
            // Reap whatever the cgroup kill left as our zombies.
            while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                if st == WaitStatus::StillAlive {
                    break;
                }
            }
            if let Some(net) = st.net {
                let res = serde_json::from_value::<coop_net::Attached>(net)
                    .map_err(|e| Error::Msg(format!("network record of {name}: {e}")))
                    .and_then(|a| Ok(coop_net::teardown(&store.net()?, &a)?));
                if let Err(e) = res {
                    tracing::error!("network teardown: {e}");
                    code = 1;
                }
            }
        }
        Ok(None) => tracing::error!("{name}: no state file; nothing to tear down"),
        Err(e) => {
            tracing::error!("{e}");
            code = 1;
        }
    }
    cleanup_files(store, name);
    let msg = format!("{{\"ok\":true,\"exit\":{}}}\n", serde_json::json!(exit));
    for mut w in waiters {
        let _ = w.write_all(msg.as_bytes());
    }
    code
}

/// Resources start made; dropping a `Monitor` removes all of them, which is how a failed
/// start leaves nothing behind.
struct Monitor {
    store: Store,
    name: String,
    init: Pid,
    cgroup: Cgroup,
    /// The CLI is still making `cgroup` (see [`CgroupHandoff`]).
    cgroup_pending: Option<File>,
    masters: Vec<OwnedFd>,
    /// Kept open so reading a master never fails with EIO between two gettys.
    _slaves: Vec<OwnedFd>,
    listener: Option<UnixListener>,
    sigfd: OwnedFd,
    log: Option<File>,
    clients: Vec<Client>,
    stop_waiters: Vec<UnixStream>,
    stop_deadline: Option<Instant>,
    exit: Option<String>,
    net: Option<coop_net::Attached>,
    gui: Option<crate::display::GuiDisplay>,
    /// coLinux with a display: the guest's X clients come in over the network.
    xrelay: Option<crate::xrelay::XRelay>,
    /// coLinux: our end of the guest agent's serial line, and who uses it now.
    agent: Option<UnixStream>,
    agent_client: Option<UnixStream>,
}

struct Client {
    stream: UnixStream,
    tty: usize,
}

fn launch(
    store: &Store,
    name: &str,
    spice: Option<String>,
    spice_password_file: Option<PathBuf>,
    handoff: &mut Option<CgroupHandoff>,
) -> Result<Monitor> {
    let t0 = std::time::Instant::now();
    let config = Config::load(&store.config_path(name))?;
    // Network keys are checked before anything changes on the host.
    let ifaces = coop_net::parse_interfaces(&config.net)?;
    let spice = spice.or_else(|| config.display_spice.clone());
    if spice.is_none() && spice_password_file.is_some() {
        return Err(Error::Msg(format!(
            "container {name}: a SPICE password file but no display to serve; \
             give --spice HOST:PORT or set coop.display.spice"
        )));
    }
    let spice_password_file =
        spice_password_file.or_else(|| config.display_spice_password_file.clone());
    // coLinux guests reach their X display over their network: without one, refuse now.
    let x11_link = match (&spice, config.kind.as_deref()) {
        (Some(_), Some("colinux")) => Some(crate::xrelay::require_network(store, name, &ifaces)?),
        _ => None,
    };
    let rootfs = config
        .rootfs
        .clone()
        .unwrap_or_else(|| store.dir(name).join("rootfs"));
    if !rootfs.is_dir() {
        return Err(Error::Msg(format!(
            "container {name}: root filesystem {} does not exist (lxc.rootfs.path)",
            rootfs.display()
        )));
    }
    if let (Some(uid), Some(gid)) = (
        crate::idmap::host_id(&config.idmap, 'u', 0),
        crate::idmap::host_id(&config.idmap, 'g', 0),
    ) {
        crate::idmap::check_reachable(name, &rootfs, uid, gid)?;
    }
    let run_dir = store.run_dir(name);
    fs::create_dir_all(&run_dir)
        .map_err(Error::io(format!("cannot create {}", run_dir.display())))?;

    // Signals arrive through a self-pipe rather than a signalfd: a signalfd needs the
    // signals blocked, and a blocked mask would be inherited by every helper we spawn
    // (Xvfb, dnsmasq), which could then never be stopped with SIGTERM.
    let sigpipe = signal_pipe()?;
    // A console client that goes away must not kill the monitor.
    // SAFETY: SIG_IGN runs no code; children reset it before exec.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
    }

    tracing::debug!(elapsed = ?t0.elapsed(), "config");
    let hier = match handoff {
        Some(h) => h.hier.clone(),
        None => Hierarchy::detect()?,
    };
    let cpus = handoff.as_ref().and_then(|h| h.cpus);
    let cgroup = Cgroup::new(&hier, &store.cgroup_name(name));
    if handoff.is_none() {
        // A group a killed monitor left behind is reclaimed (destroyed and made anew).
        cgroup.create_fresh()?;
    }
    let mut mon = Monitor {
        cgroup_pending: handoff.take().map(|h| File::from(h.ready)),
        store: store.clone(),
        name: name.to_string(),
        init: Pid::from_raw(0),
        cgroup,
        masters: vec![],
        _slaves: vec![],
        listener: None,
        sigfd: sigpipe,
        log: None,
        clients: vec![],
        stop_waiters: vec![],
        stop_deadline: None,
        exit: None,
        net: None,
        gui: None,
        xrelay: None,
        agent: None,
        agent_client: None,
    };
    tracing::debug!(elapsed = ?t0.elapsed(), "cgroup created");
    if mon.cgroup_pending.is_none() {
        configure_cgroup(&mon.cgroup, &hier, &config)?;
    }

    // Console (index 0) and lxc.tty.max ttys.
    let mut tty_paths = Vec::new();
    let root_uid = config
        .idmap
        .iter()
        .find(|m| m.kind == 'u' && m.container_id == 0)
        .map(|m| m.host_id);
    let root_gid = config
        .idmap
        .iter()
        .find(|m| m.kind == 'g' && m.container_id == 0)
        .map(|m| m.host_id);
    for _ in 0..=config.tty_max {
        let pty = openpty(None, None).map_err(Error::sys("openpty"))?;
        init::set_cloexec(&pty.master);
        init::set_cloexec(&pty.slave);
        let path = nix::unistd::ttyname(pty.slave.as_fd()).map_err(Error::sys("ttyname"))?;
        if root_uid.is_some() || root_gid.is_some() {
            chown(&path, root_uid, root_gid)
                .map_err(Error::io(format!("cannot chown {}", path.display())))?;
        }
        tty_paths.push(path);
        mon.masters.push(pty.master);
        mon._slaves.push(pty.slave);
    }
    let log_path = config
        .console_logfile
        .clone()
        .unwrap_or_else(|| store.console_log(name));
    mon.log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .ok();

    tracing::debug!(elapsed = ?t0.elapsed(), "cgroup configured + ptys");
    let mut spec = child_spec(&config, name, &rootfs, &tty_paths, &mon.cgroup, &hier)?;
    spec.loopback_up = coop_net::needs_netns(&ifaces);
    let colinux = config.kind.as_deref() == Some("colinux");
    let mut agent_child_end = None;
    if colinux {
        let (ours, theirs) =
            colinux_spec(store, name, &config, &ifaces, x11_link.is_some(), &mut spec)?;
        init::set_cloexec(&ours);
        spec.agent_fd = Some(theirs.as_raw_fd());
        agent_child_end = Some(theirs);
        mon.agent = Some(ours);
    }
    let mut x11_bridge = None;
    if let Some(addr) = spice {
        let cookie_dir = crate::xrelay::host_dir(&store.run_dir(name).join("uml"));
        if let Some(link) = &x11_link {
            x11_bridge = Some(crate::xrelay::bridge_of(store, link)?);
        }
        let cookie = x11_bridge.map(|b| (cookie_dir.as_path(), b));
        let gui =
            crate::display::GuiDisplay::start(name, &addr, spice_password_file.as_deref(), cookie)?;
        if !colinux {
            spec.mounts.push(gui.mount_entry());
        }
        mon.gui = Some(gui);
    }
    let userns = spec.userns;
    let (sync_r, sync_w) = nix::unistd::pipe().map_err(Error::sys("pipe"))?;
    let (err_r, err_w) = nix::unistd::pipe().map_err(Error::sys("pipe"))?;
    for fd in [&sync_r, &sync_w, &err_r, &err_w] {
        init::set_cloexec(fd);
    }
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    let net_store = store.net()?;
    for i in &ifaces {
        if let coop_net::IfaceType::Veth {
            link: Some(link), ..
        } = &i.kind
        {
            if link == coop_net::DEFAULT_NETWORK {
                net_store.ensure_default()?;
            } else if net_store.get(link)?.is_some() {
                net_store.ensure_up(link)?;
            }
        }
    }
    if coop_net::needs_netns(&ifaces) {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let mut stack = vec![0u8; 256 * 1024];
    let mut child_fds = Some((sync_r, err_w));
    let cb = Box::new(|| {
        let (s, e) = child_fds.take().expect("clone callback runs once");
        init::run(&spec, s, e)
    });
    tracing::debug!(elapsed = ?t0.elapsed(), "spec built");
    if let Some(cpus) = cpus {
        // Init inherits our affinity: it gets every CPU the CLI had.
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &cpus);
    }
    // SAFETY: the monitor is single-threaded, so the child (a copy of this process, no
    // CLONE_VM) cannot inherit a lock held by another thread; the callback only uses
    // state prepared above and ends in exec or exit.
    let pid = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(Error::sys("cannot clone the container's init"))?;
    mon.init = pid;
    // Our copies of the child's ends must close so EOF means "exec'd".
    drop(child_fds);
    drop(agent_child_end);

    tracing::debug!(elapsed = ?t0.elapsed(), "cloned");
    let go = (|| -> Result<()> {
        if let Some(ready) = mon.cgroup_pending.take() {
            await_cgroup(ready.into())?;
        }
        mon.cgroup.add_process(pid.as_raw())?;
        tracing::debug!(elapsed = ?t0.elapsed(), "cgroup joined");
        if userns {
            write_id_maps(pid, &config)?;
        }
        // Loopback alone needs no netlink session: init's side raises it (see init.rs).
        let only_loopback = ifaces.iter().all(|i| {
            matches!(
                i.kind,
                coop_net::IfaceType::Empty | coop_net::IfaceType::None
            )
        });
        if !only_loopback {
            let attached = coop_net::setup(&net_store, name, pid.as_raw(), &ifaces)?;
            mon.net = Some(attached);
            if colinux {
                if let Some(i) = ifaces.iter().find(|i| guest_link(i)) {
                    coop_net::lend_to_guest(pid.as_raw(), &i.ifname())?;
                }
            }
        }
        Ok(())
    })();
    let mut sync_w = File::from(sync_w);
    if let Err(e) = go {
        drop(sync_w);
        return Err(e);
    }
    if let (Some(gui), Some(bridge)) = (&mon.gui, x11_bridge) {
        let guest = crate::xrelay::guest_addr(name, mon.net.as_ref())?;
        mon.xrelay = Some(crate::xrelay::XRelay::start(
            name,
            bridge,
            gui.display,
            guest,
            gui.socket(),
        )?);
    }
    tracing::debug!(elapsed = ?t0.elapsed(), "cloned + cgroup joined + net");
    // Init makes its mounts meanwhile and may already have failed (and closed the pipe):
    // then its own message says why, not our failed write.
    let released = sync_w.write_all(b"G");
    drop(sync_w);
    // While init pivots and execs, make the socket and the state file: they are what
    // the next command reads, and building them here takes them off the start's
    // critical path. If init fails, Drop removes both with the rest.
    let sock = store.socket_path(name);
    let _ = fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)
        .map_err(Error::io(format!("cannot listen on {}", sock.display())))?;
    init::set_cloexec(&listener);
    mon.listener = Some(listener);

    let attach = crate::state::AttachSpec {
        cgroup_dirs: mon.cgroup.paths(),
        drop_caps: capability_drop_list(&config)?
            .iter()
            .map(|c| c.to_string())
            .collect(),
        env: config
            .environment
            .iter()
            .cloned()
            .chain(mon.xrelay.iter().flat_map(|x| x.env.clone()))
            .collect(),
    };
    let state = RunState {
        name: name.to_string(),
        status: Status::Running,
        monitor_pid: std::process::id() as i32,
        init_pid: pid.as_raw(),
        started_at: now_secs(),
        cgroup: store.cgroup_name(name),
        ttys: tty_paths.iter().map(|p| p.display().to_string()).collect(),
        halt_signal: halt_signal(&config, &rootfs),
        userns,
        spice: mon.gui.as_ref().map(|g| g.addr.clone()),
        spice_password: mon.gui.as_ref().is_some_and(|g| g.password_file.is_some()),
        net: mon.net.as_ref().and_then(|a| serde_json::to_value(a).ok()),
        attach: Some(attach),
        kind: config.kind.clone(),
    };
    state.write(store)?;
    let mut msg = String::new();
    let _ = File::from(err_r).read_to_string(&mut msg);
    if msg.is_empty() {
        released.map_err(Error::io("cannot release the container's init"))?;
    }
    if !msg.is_empty() {
        return Err(Error::Msg(format!("container {name}: {msg}")));
    }

    if let Some(gui) = &mut mon.gui {
        gui.serve(
            Path::new("/proc/self/exe"),
            &crate::display::control_socket(store, name),
        )?;
    }
    tracing::debug!(elapsed = ?t0.elapsed(), "init exec'd");
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(mon)
}

fn configure_cgroup(cg: &Cgroup, hier: &Hierarchy, config: &Config) -> Result<()> {
    let l = &config.limits;
    cg.apply_limits(&coop_cgroups::Limits {
        cpu: l.cpu,
        memory: l.memory,
        pids: l.pids,
        cpuset: l.cpuset.clone(),
    })?;
    // Devices: LXC's default list, then the config's own rules in order (see
    // coop_cgroups::devices), as v1 files or as a cgroup v2 eBPF filter.
    let v1_devices = hier.v1_mount("devices").is_some();
    let notes = cg.set_device_rules(
        coop_cgroups::devices::LXC_DEFAULT_DEVICES,
        &device_rules(config, v1_devices),
    )?;
    for n in notes {
        tracing::warn!("{n}");
    }
    let v1_host = matches!(
        hier.layout(),
        coop_cgroups::Layout::V1 | coop_cgroups::Layout::Hybrid
    );
    for (k, v) in &config.cgroup_v1 {
        if v1_host && !k.starts_with("devices.") {
            cg.set_v1(k, v)?;
        }
    }
    for (k, v) in &config.cgroup_v2 {
        if k.starts_with("devices.") {
            continue;
        }
        // LXC configs carry both kinds; each applies only where its version runs.
        if let Err(e) = cg.set_v2(k, v) {
            if v1_host {
                tracing::warn!("lxc.cgroup2.{k} ignored on this cgroup v1 host: {e}");
            } else {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// The config's device rules for this host, in file order: `lxc.cgroup.devices.*` where
/// the v1 devices controller serves, `lxc.cgroup2.devices.*` where the eBPF filter does.
/// A config with rules of only the other kind gets those (a v1-era config keeps its rules
/// on a v2 host and the reverse); LXC's own configs carry both kinds, with the same rules.
fn device_rules(config: &Config, v1_devices: bool) -> Vec<(DeviceOp, &str)> {
    let (own, other) = if v1_devices {
        (&config.cgroup_v1, &config.cgroup_v2)
    } else {
        (&config.cgroup_v2, &config.cgroup_v1)
    };
    let rules = pick_device_rules(own);
    if rules.is_empty() {
        pick_device_rules(other)
    } else {
        rules
    }
}

fn pick_device_rules(list: &[(String, String)]) -> Vec<(DeviceOp, &str)> {
    list.iter()
        .filter_map(|(k, v)| DeviceOp::from_key(k).map(|op| (op, v.as_str())))
        .collect()
}

fn write_id_maps(pid: Pid, config: &Config) -> Result<()> {
    for (kind, file) in [('u', "uid_map"), ('g', "gid_map")] {
        let body: String = config
            .idmap
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.count))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, body).map_err(Error::io(format!("cannot write {path} (lxc.idmap)")))?;
    }
    Ok(())
}

/// The signal that asks this init to halt: the config's, else guessed from the init.
fn halt_signal(config: &Config, rootfs: &Path) -> i32 {
    if let Some(s) = config.signal_halt {
        return s;
    }
    let init = config
        .init_cmd
        .as_ref()
        .and_then(|a| a.first().cloned())
        .unwrap_or_else(|| "/sbin/init".into());
    let target = resolve_in_root(rootfs, &init);
    let name = target
        .as_deref()
        .and_then(|t| t.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    match name.as_str() {
        "systemd" => libc::SIGRTMIN() + 3,
        "busybox" => libc::SIGUSR1,
        _ => libc::SIGPWR,
    }
}

/// Follow symlinks of `path` inside `root` without leaving it.
fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut p = PathBuf::from(path);
    for _ in 0..16 {
        let host = root.join(p.strip_prefix("/").unwrap_or(&p));
        match fs::read_link(&host) {
            Ok(t) => {
                p = if t.is_absolute() {
                    t
                } else {
                    p.parent().unwrap_or(Path::new("/")).join(t)
                }
            }
            Err(_) => return Some(p),
        }
    }
    None
}

fn child_spec(
    config: &Config,
    name: &str,
    rootfs: &Path,
    ttys: &[PathBuf],
    cgroup: &Cgroup,
    hier: &Hierarchy,
) -> Result<ChildSpec> {
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| Error::Msg(format!("container {name}: NUL byte in {s:?}")))
    };
    let argv: Vec<String> = config
        .init_cmd
        .clone()
        .unwrap_or_else(|| vec!["/sbin/init".into()]);
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "container=lxc".to_string(),
        format!(
            "container_ttys={}",
            (1..ttys.len())
                .map(|i| format!("tty{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "TERM=linux".to_string(),
        "HOME=/root".to_string(),
    ];
    for (k, v) in &config.environment {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }
    let drop_caps = capability_drop_list(config)?;
    let seccomp_profile = match &config.seccomp_profile {
        Some(p) => seccomp::load_profile(p).map_err(Error::Msg)?,
        None => seccomp::default_profile(),
    };
    let (prog, warnings) = seccomp::compile(&seccomp_profile).map_err(Error::Msg)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let cgroup_v1 = hier
        .controllers()
        .into_iter()
        .filter(|(_, ok)| *ok)
        .map(|(c, _)| c)
        .filter(|c| c != "io")
        .collect();
    Ok(ChildSpec {
        rootfs: rootfs.to_path_buf(),
        hostname: config.uts_name.clone().unwrap_or_else(|| name.to_string()),
        ttys: ttys.to_vec(),
        mounts: config.mount_entries.clone(),
        proc: config.mount_auto.proc,
        sys: config.mount_auto.sys,
        cgroup: if config.mount_auto.cgroup == CgroupMode::None {
            CgroupMode::None
        } else {
            config.mount_auto.cgroup
        },
        cgroup2: cgroup.unified_path().is_some(),
        cgroup_v1,
        autodev: config.autodev,
        argv: argv.iter().map(|a| cstr(a)).collect::<Result<_>>()?,
        env: env.iter().map(|a| cstr(a)).collect::<Result<_>>()?,
        cwd: config.init_cwd.clone().unwrap_or_else(|| "/".into()),
        drop_caps,
        seccomp: (!prog.is_empty()).then_some(prog),
        userns: !config.idmap.is_empty(),
        loopback_up: false,
        agent_fd: None,
    })
}

/// A coLinux instance: the container's init is the UML kernel. Its disk image lives in
/// the (otherwise nearly empty) rootfs, the host's /usr provides the kernel binary, the
/// mconsole socket directory is bound from the run directory so the host can reach it,
/// and a socket pair becomes the kernel's fd 3, the guest agent's serial line.
fn colinux_spec(
    store: &Store,
    name: &str,
    config: &Config,
    ifaces: &[coop_net::IfaceSpec],
    x11: bool,
    spec: &mut ChildSpec,
) -> Result<(UnixStream, UnixStream)> {
    let cc = coop_colinux::parse_keys(&config.colinux)?;
    let uml_host = store.run_dir(name).join("uml");
    // A kernel killed last time leaves its socket and pid file; start clean.
    let _ = fs::remove_dir_all(&uml_host);
    fs::create_dir_all(&uml_host)
        .map_err(Error::io(format!("cannot create {}", uml_host.display())))?;
    spec.mounts.push(coop_config::MountEntry {
        source: uml_host.display().to_string(),
        target: "run/uml".into(),
        fstype: "none".into(),
        options: vec!["bind".into(), "create=dir".into()],
    });
    // CoFS: hostfs reads host paths from inside the kernel process, so each shared
    // directory is bound into the jail at its own path; nothing else of the host is there.
    for sh in &cc.shares {
        if !sh.host.is_dir() {
            return Err(Error::Msg(format!(
                "instance {name}: coop.colinux.share {} does not exist or is not a directory",
                sh.host.display()
            )));
        }
        let mut options = vec!["bind".to_string(), "create=dir".to_string()];
        if sh.read_only {
            options.push("ro".into());
        }
        spec.mounts.push(coop_config::MountEntry {
            source: sh.host.display().to_string(),
            target: sh
                .host
                .display()
                .to_string()
                .trim_start_matches('/')
                .to_string(),
            fstype: "none".into(),
            options,
        });
    }
    let mut inst = cc.instance_spec(name);
    if x11 {
        // The X cookie, read-only; its directory is made with the cookie before boot.
        inst.shares.push(crate::xrelay::guest_share());
    }
    if inst.net.is_none() {
        // conet: the guest's eth0 goes out through the container's veth (a raw socket)
        // with the MAC the network's lease was made for; see coop_net::lend_to_guest.
        if let Some(i) = ifaces.iter().find(|i| guest_link(i)) {
            inst.net = Some(coop_colinux::NetSpec {
                host_ifname: i.ifname(),
                transport: coop_colinux::Transport::Raw,
                mac: i.hwaddr.clone().unwrap_or_default(),
            });
        }
    }
    let mut argv = vec![cc.kernel.display().to_string()];
    argv.extend(coop_colinux::kernel_cmdline(&inst, Path::new("/run/uml")));
    spec.argv = argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::Msg(format!(
                "instance {name}: NUL byte in the kernel command line"
            ))
        })?;
    // UML backs guest memory with a file; keep it in RAM.
    spec.env
        .push(CString::new("TMPDIR=/dev/shm").expect("static"));
    UnixStream::pair().map_err(Error::io("cannot make the guest agent channel"))
}

/// The interface a coLinux guest takes over: the first veth.
fn guest_link(i: &coop_net::IfaceSpec) -> bool {
    matches!(i.kind, coop_net::IfaceType::Veth { .. })
}

/// The host path of a coLinux instance's mconsole socket.
pub fn mconsole_path(store: &Store, name: &str) -> PathBuf {
    coop_colinux::mconsole::socket_path(&store.run_dir(name).join("uml"), name)
}

/// `lxc.cap.keep` wins over `lxc.cap.drop`, as in LXC; with neither, LXC's common list.
pub(crate) fn capability_drop_list(config: &Config) -> Result<Vec<caps::Capability>> {
    let parse = |n: &str| -> Result<caps::Capability> {
        format!("CAP_{}", n.to_ascii_uppercase())
            .parse()
            .map_err(|_| Error::Msg(format!("unknown capability {n:?}")))
    };
    if let Some(keep) = &config.cap_keep {
        let keep: Vec<caps::Capability> = keep
            .iter()
            .filter(|k| *k != "none")
            .map(|k| parse(k))
            .collect::<Result<_>>()?;
        return Ok(caps::all()
            .into_iter()
            .filter(|c| !keep.contains(c))
            .collect());
    }
    let names: Vec<String> = match &config.cap_drop {
        Some(d) => d.clone(),
        None => DEFAULT_CAP_DROP.iter().map(|s| s.to_string()).collect(),
    };
    names.iter().map(|n| parse(n)).collect()
}

/// The monitor is the coop binary, and launching touched code for parsing, cgroups and
/// netlink that the event loop never runs again. Hand those file-backed pages back to
/// the page cache so the long-lived monitor stays small; the few pages the loop needs
/// fault back in from the cache.
fn shed_startup_pages() {
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perms), Some(_off), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if inode == "0" {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: MADV_PAGEOUT is advisory and never changes memory contents; the range
        // is a whole mapping of this process as listed by the kernel.
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_PAGEOUT);
        }
    }
}

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    let saved = nix::errno::Errno::last_raw();
    if sig != libc::SIGCHLD {
        TERMINATE.store(true, Ordering::SeqCst);
    }
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    // SAFETY: write(2) on a non-blocking pipe is async-signal-safe; a full pipe already
    // holds a wake-up, so a failed write loses nothing.
    unsafe {
        libc::write(fd, b"s".as_ptr().cast(), 1);
    }
    nix::errno::Errno::set_raw(saved);
}

/// Route SIGCHLD, SIGTERM, SIGINT and SIGHUP to a pipe the event loop polls.
fn signal_pipe() -> Result<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let (r, w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(Error::sys("pipe"))?;
    SIGNAL_PIPE.store(w.as_raw_fd(), Ordering::SeqCst);
    // The write end lives as long as the process.
    std::mem::forget(w);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        // SAFETY: the handler only touches atomics and write(2).
        unsafe { sigaction(s, &action) }.map_err(Error::sys("sigaction"))?;
    }
    Ok(r)
}

/// Waits (briefly) until the CLI that started us has closed its end of the start pipe,
/// our stdout. On two cores the container's init is already busy; handing over to the
/// small monitor (an exec) before the CLI has returned would take a core from it and
/// delay `coop start` by the exec's time. Nothing else is urgent: init's exit and CLI
/// requests wait in the kernel until the poll loop runs.
fn await_cli_return() {
    // SAFETY: fd 1 is open (the start pipe) until redirect_output replaces it.
    let out = unsafe { BorrowedFd::borrow_raw(1) };
    let mut fds = [PollFd::new(out, PollFlags::empty())];
    // A pipe's write end reports POLLERR once no reader is left.
    let _ = poll(&mut fds, PollTimeout::from(100u8));
}

fn redirect_output(log: &Path) {
    if let Ok(f) = OpenOptions::new().create(true).append(true).open(log) {
        let _ = nix::unistd::dup2(f.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(f.as_raw_fd(), 2);
    }
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig:?}"),
        other => format!("{other:?}"),
    }
}

impl Monitor {
    fn run(&mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        while self.exit.is_none() {
            let timeout = match self.stop_deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                        .unwrap_or(PollTimeout::ZERO)
                }
                None => PollTimeout::NONE,
            };
            let (
                sig_ready,
                listen_ready,
                master_ready,
                client_ready,
                agent_ready,
                agent_client_ready,
            ) = {
                let listener = self.listener.as_ref().expect("listener");
                let mut fds = vec![
                    PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                ];
                for m in &self.masters {
                    fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                }
                for c in &self.clients {
                    fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
                }
                let agent_at = fds.len();
                if let Some(a) = &self.agent {
                    fds.push(PollFd::new(a.as_fd(), PollFlags::POLLIN));
                }
                if let Some(a) = &self.agent_client {
                    fds.push(PollFd::new(a.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::error!("poll: {e}");
                        break;
                    }
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                let n = self.masters.len();
                (
                    ready(&fds[0]),
                    ready(&fds[1]),
                    (0..n).filter(|i| ready(&fds[2 + i])).collect::<Vec<_>>(),
                    (0..self.clients.len())
                        .filter(|i| ready(&fds[2 + n + i]))
                        .collect::<Vec<_>>(),
                    self.agent.is_some() && ready(&fds[agent_at]),
                    self.agent_client.is_some()
                        && ready(&fds[agent_at + usize::from(self.agent.is_some())]),
                )
            };
            if sig_ready {
                self.on_signal();
            }
            if listen_ready {
                self.on_accept();
            }
            // Clients before masters: `client_ready` holds indices, and relaying master
            // output may drop clients. Highest index first so removals do not shift the
            // ones still to visit.
            for i in client_ready.into_iter().rev() {
                self.on_client(i, &mut buf);
            }
            for i in master_ready {
                self.on_master(i, &mut buf);
            }
            if agent_ready {
                self.on_agent(&mut buf);
            }
            if agent_client_ready {
                self.on_agent_client(&mut buf);
            }
            if let Some(d) = self.stop_deadline {
                if Instant::now() >= d {
                    tracing::info!("halt timed out; killing the container");
                    self.stop_deadline = None;
                    let _ = self.cgroup.kill_all();
                    let _ = kill(self.init, Signal::SIGKILL);
                }
            }
        }
        self.finish();
    }

    fn on_signal(&mut self) {
        let mut b = [0u8; 64];
        while matches!(nix::unistd::read(self.sigfd.as_raw_fd(), &mut b), Ok(n) if n > 0) {}
        self.reap();
        if TERMINATE.swap(false, Ordering::SeqCst) {
            tracing::info!("monitor asked to end: killing the container");
            let _ = kill(self.init, Signal::SIGKILL);
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => {
                    if st.pid() == Some(self.init) {
                        let d = describe(st);
                        tracing::info!("init {d}");
                        self.exit = Some(d);
                    }
                }
            }
        }
    }

    fn on_accept(&mut self) {
        let Ok((stream, _)) = self.listener.as_ref().expect("listener").accept() else {
            return;
        };
        // A client gets a second to say what it wants; a silent one is dropped.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let req = match crate::proto::read_line(&stream)
            .ok()
            .and_then(|l| serde_json::from_str::<Request>(&l).ok())
        {
            Some(r) => r,
            None => return,
        };
        let _ = stream.set_read_timeout(None);
        match req {
            Request::Console { tty, rows, cols } => {
                let i = tty as usize;
                if i >= self.masters.len() {
                    let max = self.masters.len() - 1;
                    reply(
                        &stream,
                        false,
                        Some(format!(
                            "container {} has no tty {tty} (ttys 0..={max}; lxc.tty.max)",
                            self.name
                        )),
                    );
                    return;
                }
                if rows > 0 && cols > 0 {
                    let ws = Winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ reads a Winsize from the pointer, which outlives
                    // the call; the fd is a pty master we own.
                    unsafe {
                        libc::ioctl(self.masters[i].as_raw_fd(), libc::TIOCSWINSZ, &ws);
                    }
                }
                reply(&stream, true, None);
                let _ = stream.set_write_timeout(Some(CLIENT_IO_TIMEOUT));
                self.clients.push(Client { stream, tty: i });
            }
            Request::Agent => {
                if self.agent.is_none() {
                    reply(
                        &stream,
                        false,
                        Some(format!("{} is not a coLinux instance", self.name)),
                    );
                } else if self.agent_client.is_some() {
                    reply(
                        &stream,
                        false,
                        Some("another attach is using the guest agent; try again".into()),
                    );
                } else {
                    reply(&stream, true, None);
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                    self.agent_client = Some(stream);
                }
            }
            Request::Stop {
                signal,
                timeout_ms,
                kill: now,
            } => {
                if now {
                    let _ = self.cgroup.kill_all();
                    let _ = kill(self.init, Signal::SIGKILL);
                } else if signal != 0 {
                    if let Ok(s) = Signal::try_from(signal) {
                        let _ = kill(self.init, s);
                    } else {
                        // Real-time signals are outside nix's enum.
                        // SAFETY: kill(2) with a plain pid and signal number.
                        unsafe {
                            libc::kill(self.init.as_raw(), signal);
                        }
                    }
                }
                if !now {
                    let d = Instant::now() + Duration::from_millis(timeout_ms);
                    self.stop_deadline = Some(self.stop_deadline.map_or(d, |o| o.min(d)));
                }
                self.stop_waiters.push(stream);
            }
        }
    }

    fn on_master(&mut self, i: usize, buf: &mut [u8]) {
        let n = match nix::unistd::read(self.masters[i].as_raw_fd(), buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let data = &buf[..n];
        if i == 0 {
            if let Some(log) = &mut self.log {
                let _ = log.write_all(data);
            }
        }
        self.clients.retain_mut(|c| {
            if c.tty != i {
                return true;
            }
            // A client that cannot keep up is dropped rather than stalling the container.
            c.stream.write_all(data).is_ok()
        });
    }

    fn on_client(&mut self, i: usize, buf: &mut [u8]) {
        let c = &mut self.clients[i];
        match c.stream.read(buf) {
            Ok(n) if n > 0 => {
                let fd = self.masters[c.tty].as_fd();
                write_all_fd(fd, &buf[..n]);
            }
            _ => {
                self.clients.remove(i);
            }
        }
    }

    /// Guest agent output goes to the attached client; with none, it is dropped (the
    /// agent's greeting at boot, say).
    fn on_agent(&mut self, buf: &mut [u8]) {
        let Some(a) = &mut self.agent else { return };
        match a.read(buf) {
            Ok(n) if n > 0 => {
                if let Some(c) = &mut self.agent_client {
                    if c.write_all(&buf[..n]).is_err() {
                        self.agent_client = None;
                    }
                }
            }
            // The kernel closed the line: it is going down.
            _ => {
                self.agent = None;
                self.agent_client = None;
            }
        }
    }

    fn on_agent_client(&mut self, buf: &mut [u8]) {
        let Some(c) = &mut self.agent_client else {
            return;
        };
        match c.read(buf) {
            Ok(n) if n > 0 => {
                if let Some(a) = &mut self.agent {
                    if a.write_all(&buf[..n]).is_err() {
                        self.agent = None;
                    }
                }
            }
            _ => self.agent_client = None,
        }
    }

    /// Init is gone: tear down what start built, then tell whoever asked to stop.
    fn finish(&mut self) {
        let exit = self
            .exit
            .clone()
            .unwrap_or_else(|| "monitor stopped".into());
        // The last lines init wrote (a guest's shutdown messages) may still sit in the
        // console pty: log them before it goes. Bounded: a pty holds a few pages.
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            let Some(m) = self.masters.first() else { break };
            let mut fds = [nix::poll::PollFd::new(
                m.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let readable = matches!(nix::poll::poll(&mut fds, 0u16), Ok(n) if n > 0)
                && fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN));
            if !readable {
                break;
            }
            self.on_master(0, &mut buf);
        }
        if let Err(e) = self.cgroup.destroy() {
            tracing::error!("cannot remove cgroup: {e}");
        }
        // Reap whatever the cgroup kill left as our zombies.
        while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if st == WaitStatus::StillAlive {
                break;
            }
        }
        self.teardown_net();
        self.xrelay = None;
        self.gui = None;
        self.cleanup_files();
        let msg = format!("{{\"ok\":true,\"exit\":{}}}\n", serde_json::json!(exit));
        for mut w in self.stop_waiters.drain(..) {
            let _ = w.write_all(msg.as_bytes());
        }
        self.clients.clear();
    }

    fn teardown_net(&mut self) {
        if let Some(attached) = self.net.take() {
            let res = self
                .store
                .net()
                .and_then(|s| Ok(coop_net::teardown(&s, &attached)?));
            if let Err(e) = res {
                tracing::error!("network teardown: {e}");
            }
        }
    }

    fn cleanup_files(&self) {
        cleanup_files(&self.store, &self.name);
    }
}

fn cleanup_files(store: &Store, name: &str) {
    let _ = fs::remove_file(store.socket_path(name));
    let _ = fs::remove_file(store.state_path(name));
    let _ = fs::remove_file(store.run_dir(name).join("monitor.log"));
    let _ = fs::remove_dir_all(store.run_dir(name).join("uml"));
    let _ = fs::remove_dir(store.run_dir(name));
}

impl Drop for Monitor {
    /// Only reached with `exit == None` when start failed half-way.
    fn drop(&mut self) {
        if self.exit.is_none() {
            if let Some(ready) = self.cgroup_pending.take() {
                // Removing the group while the CLI still makes it would leave a part.
                let _ = await_cgroup(ready.into());
            }
            if self.init.as_raw() > 0 {
                let _ = kill(self.init, Signal::SIGKILL);
                let _ = waitpid(self.init, None);
            }
            let _ = self.cgroup.destroy();
            self.teardown_net();
            self.cleanup_files();
        }
    }
}

fn reply(mut s: &UnixStream, ok: bool, error: Option<String>) {
    let r = Reply {
        ok,
        error,
        exit: None,
    };
    let mut line = serde_json::to_string(&r).expect("reply serializes");
    line.push('\n');
    let _ = s.write_all(line.as_bytes());
}

fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod device_rule_tests {
    use super::*;

    #[test]
    fn rules_of_the_serving_version_else_the_other() {
        let both = Config::parse_str(
            "b.conf",
            "lxc.cgroup.devices.allow = c 10:200 rwm\n\
             lxc.cgroup2.devices.deny = c 1:3 rwm\n\
             lxc.cgroup2.devices.allow = c 1:9 rw\n",
        )
        .unwrap();
        assert_eq!(
            device_rules(&both, true),
            vec![(DeviceOp::Allow, "c 10:200 rwm")]
        );
        assert_eq!(
            device_rules(&both, false),
            vec![(DeviceOp::Deny, "c 1:3 rwm"), (DeviceOp::Allow, "c 1:9 rw")]
        );
        let v1_only = Config::parse_str("v1.conf", "lxc.cgroup.devices.deny = c 1:3 w\n").unwrap();
        assert_eq!(
            device_rules(&v1_only, false),
            vec![(DeviceOp::Deny, "c 1:3 w")]
        );
        let none = Config::parse_str("n.conf", "lxc.cgroup2.memory.max = 1G\n").unwrap();
        assert!(device_rules(&none, false).is_empty());
        assert!(device_rules(&none, true).is_empty());
    }
}
