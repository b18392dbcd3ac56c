//! `coop start`: launch a container's monitor and wait until its init runs.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use coop_cgroups::Hierarchy;
use coop_config::Config;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use crate::state::RunState;
use crate::{Error, Result, Store};

/// Start NAME detached. The monitor of a plain container is a fork of this process when
/// it is single-threaded (the CLI), else `exe` (the coop binary) re-executed as
/// `coop __monitor`, so the monitor never inherits another thread's locks. Forking saves
/// loading the whole binary a second time; the monitor's long-lived part is a fresh
/// program anyway (crates/coop-monitor, see monitor.rs).
/// `spice_password_file` (absolute) overrides `coop.display.spice.password-file`.
/// Returns init's host PID, as the monitor reported it.
pub fn start(
    store: &Store,
    name: &str,
    exe: &Path,
    spice: Option<&str>,
    spice_password_file: Option<&Path>,
) -> Result<i32> {
    store.require(name)?;
    let _lock = store.lock(name)?;
    if RunState::load(store, name)?.is_some() {
        return Err(Error::Running(name.to_string()));
    }
    let plain = match plain_config(store, name, spice) {
        Some(config) if single_threaded() && spice_password_file.is_none() => Some(config),
        _ => None,
    };
    let (out, pid) = if let Some(config) = plain {
        fork_monitor(store, name, &config)?
    } else {
        exec_monitor(store, name, exe, spice, spice_password_file)?
    };
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    let line = line.trim_end();
    if let Some(msg) = line.strip_prefix("ERR ") {
        let _ = waitpid(pid, None);
        return Err(Error::Msg(format!("cannot start {name}: {msg}")));
    }
    // The monitor writes the state file before it says OK, and the CLI has nothing
    // else to learn from it: reading and parsing it again would only delay the return.
    match line.strip_prefix("OK ").and_then(|p| p.parse::<i32>().ok()) {
        Some(init) => Ok(init),
        None => {
            let status = waitpid(pid, None).ok();
            Err(Error::Msg(format!(
                "cannot start {name}: the monitor ended without a word ({status:?})"
            )))
        }
    }
}

/// The read end of the monitor's start pipe (its stdout) and its pid. While the monitor
/// makes the ptys and clones init, this process makes the cgroup (see
/// monitor::CgroupHandoff).
fn fork_monitor(store: &Store, name: &str, config: &Config) -> Result<(File, Pid)> {
    let hier = Hierarchy::detect()?;
    let (r, w) = nix::unistd::pipe().map_err(Error::sys("pipe"))?;
    crate::init::set_cloexec(&r);
    let (cg_r, cg_w) = nix::unistd::pipe().map_err(Error::sys("pipe"))?;
    crate::init::set_cloexec(&cg_r);
    crate::init::set_cloexec(&cg_w);
    let null = File::open("/dev/null").map_err(Error::io("cannot open /dev/null"))?;
    let cpus = sched_getaffinity(Pid::from_raw(0)).ok();
    // SAFETY: the caller checked that this process has one thread, so the child cannot
    // inherit a lock another thread holds; it runs the monitor and leaves with _exit.
    match unsafe { fork() }.map_err(Error::sys("cannot fork the monitor"))? {
        ForkResult::Child => {
            // The same stdio an exec'd monitor gets: the start pipe as stdout, no stdin.
            let ok = nix::unistd::dup2(w.as_raw_fd(), 1).is_ok()
                && nix::unistd::dup2(null.as_raw_fd(), 0).is_ok();
            drop((r, w, null, cg_w));
            let handoff = crate::monitor::CgroupHandoff {
                hier,
                ready: cg_r,
                cpus,
            };
            let code = if ok {
                crate::monitor::run_monitor(store, name, None, None, Some(handoff))
            } else {
                1
            };
            // SAFETY: _exit ends the child without running the CLI's exit path (atexit
            // handlers, buffered output that belongs to the parent).
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((w, cg_r));
            spread(child, &cpus);
            let msg = crate::monitor::prepare_cgroup(store, name, &hier, config);
            // A monitor that already failed has closed its end; it reports why itself.
            let _ = File::from(cg_w).write_all(&msg);
            Ok((File::from(r), child))
        }
    }
}

fn exec_monitor(
    store: &Store,
    name: &str,
    exe: &Path,
    spice: Option<&str>,
    spice_password_file: Option<&Path>,
) -> Result<(File, Pid)> {
    let mut cmd = Command::new(exe);
    cmd.arg("__monitor");
    if let Some(addr) = spice {
        cmd.arg("--spice").arg(addr);
    }
    if let Some(f) = spice_password_file {
        cmd.arg("--spice-password-file").arg(f);
    }
    let mut child = cmd
        .arg("--lib")
        .arg(&store.lib)
        .arg("--run")
        .arg(&store.run)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::io(format!(
            "cannot run the monitor {}",
            exe.display()
        )))?;
    let out = child.stdout.take().expect("piped stdout");
    Ok((
        File::from(std::os::fd::OwnedFd::from(out)),
        Pid::from_raw(child.id() as i32),
    ))
}

/// Puts the just-forked monitor on another core than ours. Left to the scheduler, a
/// fork child on this VM often waits for its parent's core (or for an idle virtual CPU
/// to wake), and the two halves of the start run one after the other after all. The
/// monitor restores `cpus` before it clones init.
fn spread(child: Pid, cpus: &Option<CpuSet>) {
    let Some(cpus) = cpus else { return };
    // SAFETY: sched_getcpu only reads which CPU this thread runs on.
    let here = unsafe { libc::sched_getcpu() };
    let other = (0..CpuSet::count())
        .filter(|&c| c as i32 != here)
        .find(|&c| cpus.is_set(c).unwrap_or(false));
    if let Some(c) = other {
        let mut one = CpuSet::new();
        if one.set(c).is_ok() {
            let _ = sched_setaffinity(child, &one);
        }
    }
}

/// The config of a container whose monitor hands over to the small coop-monitor: no
/// display, not a coLinux instance. Only those get a forked monitor; the others keep
/// their full monitor for life, and a freshly exec'd one as before (which also reports
/// a config that does not load).
fn plain_config(store: &Store, name: &str, spice: Option<&str>) -> Option<Config> {
    if spice.is_some() {
        return None;
    }
    Config::load(&store.config_path(name))
        .ok()
        .filter(|c| c.kind.as_deref() != Some("colinux") && c.display_spice.is_none())
}

/// Whether this process runs one thread (field 20 of /proc/self/stat).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(17).map(|n| n == "1"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_threads() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(!single_threaded());
        drop(tx);
        let _ = t.join();
    }
}
