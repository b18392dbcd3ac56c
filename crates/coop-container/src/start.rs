//! `coop start`: launch a container's monitor and wait until its init runs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::state::RunState;
use crate::{Error, Result, Store};

/// Start NAME detached. `exe` is the coop binary, re-executed as `coop __monitor`, so the
/// monitor is a fresh single-threaded process rather than a fork of the CLI.
pub fn start(store: &Store, name: &str, exe: &Path, spice: Option<&str>) -> Result<RunState> {
    store.require(name)?;
    let _lock = store.lock(name)?;
    if RunState::load(store, name)?.is_some() {
        return Err(Error::Running(name.to_string()));
    }
    let mut cmd = Command::new(exe);
    cmd.arg("__monitor");
    if let Some(addr) = spice {
        cmd.arg("--spice").arg(addr);
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
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    let line = line.trim_end();
    if let Some(msg) = line.strip_prefix("ERR ") {
        let _ = child.wait();
        return Err(Error::Msg(format!("cannot start {name}: {msg}")));
    }
    if !line.starts_with("OK ") {
        let status = child.wait().ok();
        return Err(Error::Msg(format!(
            "cannot start {name}: the monitor ended without a word ({status:?})"
        )));
    }
    // The monitor lives on as a daemon; we never wait for it.
    std::mem::forget(child);
    RunState::load(store, name)?
        .ok_or_else(|| Error::Msg(format!("container {name} stopped right after starting")))
}
