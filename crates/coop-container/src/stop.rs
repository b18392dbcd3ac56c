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
    let called = call(
        &store.socket_path(name),
        &Request::Stop {
            signal: st.halt_signal,
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
