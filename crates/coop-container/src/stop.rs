//! `coop stop`: ask init to halt, kill it when it does not in time.

use std::time::Duration;

use crate::proto::{call, read_line, Request};
use crate::state::{pid_alive, RunState};
use crate::{Error, Result, Store};

pub struct StopOptions {
    pub timeout: Duration,
    pub kill: bool,
}

/// Returns how init ended. Returns only after the monitor cleaned up and exited.
pub fn stop(store: &Store, name: &str, opts: &StopOptions) -> Result<String> {
    store.require(name)?;
    let _lock = store.lock(name)?;
    let st = RunState::load(store, name)?.ok_or_else(|| Error::NotRunning(name.into()))?;
    let colinux = st.kind.as_deref() == Some("colinux");
    if colinux && !opts.kill {
        // First the guest's own orderly shutdown: its init stops the services, unmounts
        // and powers off, and the kernel process ends (a debian guest's systemd runs its
        // whole shutdown). The monitor then cleans up and exits.
        match poweroff_guest(store, name) {
            Ok(()) if wait_exit(st.monitor_pid, opts.timeout) => return Ok("powered off".into()),
            Ok(()) => tracing::warn!(
                "{name}: the guest did not power off within {:?}; halting it through mconsole",
                opts.timeout
            ),
            Err(e) => tracing::info!("{name}: no orderly poweroff through the agent: {e}"),
        }
        // A UML kernel ignores the signals an init would take as "halt": ask through
        // its management console (sync, remount read-only, halt), then wait.
        let sock = crate::monitor::mconsole_path(store, name);
        let netns = format!("/proc/{}/ns/net", st.init_pid);
        // The kernel replies to the client's abstract address, which exists only in one
        // network namespace: talk from inside the instance's, on a thread of our own.
        let res = std::thread::spawn(move || -> std::result::Result<(), String> {
            let ns = std::fs::File::open(&netns).map_err(|e| format!("{netns}: {e}"))?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot enter {netns}: {e}"))?;
            coop_colinux::Mconsole::connect(&sock)
                .and_then(|mut m| m.stop_clean())
                .map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("mconsole thread panicked".into()));
        if let Err(e) = res {
            tracing::warn!("{name}: clean halt through mconsole failed: {e}");
        }
    }
    let called = call(
        &store.socket_path(name),
        &Request::Stop {
            signal: if colinux { 0 } else { st.halt_signal },
            timeout_ms: opts.timeout.as_millis() as u64,
            kill: opts.kill,
        },
    );
    let (first, stream) = match called {
        Ok(x) => x,
        // Init ended on its own while we asked: the container is stopped all the same.
        Err(_) if wait_gone(st.monitor_pid) => return Ok("stopped on its own".into()),
        Err(e) => return Err(e),
    };
    // The monitor answers a stop only when init is gone; a first line that is already the
    // final answer is the usual case.
    let reply = if first.exit.is_some() || !first.ok {
        first
    } else {
        match read_line(&stream) {
            Ok(l) => serde_json::from_str(&l)
                .map_err(|e| Error::Msg(format!("bad reply from the monitor: {e}")))?,
            Err(_) if wait_gone(st.monitor_pid) => return Ok("stopped".into()),
            Err(e) => return Err(e),
        }
    };
    if !reply.ok {
        return Err(Error::Msg(format!(
            "cannot stop {name}: {}",
            reply.error.unwrap_or_default()
        )));
    }
    // Wait for the monitor itself so that "stopped" means "nothing left".
    wait_gone(st.monitor_pid);
    Ok(reply.exit.unwrap_or_default())
}

/// Asks a coLinux guest's init to power off, through the guest agent.
fn poweroff_guest(store: &Store, name: &str) -> Result<()> {
    let stream = crate::attach::agent_stream(store, name)?;
    // A guest whose agent does not answer soon is hung or still booting: fall back.
    coop_colinux::wait_agent(&stream, Duration::from_secs(5))?;
    coop_colinux::poweroff(&stream)?;
    Ok(())
}

/// True once `pid` (the monitor) has exited, within `timeout`.
fn wait_exit(pid: i32, timeout: Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// True once the monitor has exited (it cleans up before it does), within a second.
fn wait_gone(monitor_pid: i32) -> bool {
    for _ in 0..500 {
        if !pid_alive(monitor_pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}
