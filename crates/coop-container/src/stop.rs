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
    let (first, stream) = call(
        &store.socket_path(name),
        &Request::Stop {
            signal: st.halt_signal,
            timeout_ms: opts.timeout.as_millis() as u64,
            kill: opts.kill,
        },
    )?;
    // The monitor answers a stop only when init is gone; a first line that is already the
    // final answer is the usual case.
    let reply = if first.exit.is_some() || !first.ok {
        first
    } else {
        serde_json::from_str(&read_line(&stream)?)
            .map_err(|e| Error::Msg(format!("bad reply from the monitor: {e}")))?
    };
    if !reply.ok {
        return Err(Error::Msg(format!(
            "cannot stop {name}: {}",
            reply.error.unwrap_or_default()
        )));
    }
    // Wait for the monitor itself so that "stopped" means "nothing left".
    for _ in 0..500 {
        if !pid_alive(st.monitor_pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(reply.exit.unwrap_or_default())
}
