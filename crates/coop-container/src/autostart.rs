//! Starting containers at boot: `lxc.start.auto`, as lxc-autostart does.
//!
//! `enable` marks a container and, where systemd runs, installs one unit that runs
//! `coop autostart run` at boot and `coop autostart stop` at shutdown. Without systemd
//! the marks are kept and the host's own init must call `coop autostart run`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coop_config::Config;

use crate::state::RunState;
use crate::stop::{stop, StopOptions};
use crate::{Error, Result, Store};

const UNIT: &str = "/etc/systemd/system/coop-autostart.service";

/// How the host will start marked containers at boot.
#[derive(Debug, PartialEq, Eq)]
pub enum BootHook {
    SystemdUnit(PathBuf),
    /// No service manager we know: the text says what to do.
    Manual(String),
}

pub fn set(store: &Store, name: &str, on: bool, exe: &Path) -> Result<BootHook> {
    store.require(name)?;
    let _lock = store.lock(name)?;
    coop_config::set_key(
        &store.config_path(name),
        "lxc.start.auto",
        if on { "1" } else { "0" },
    )?;
    if !Path::new("/run/systemd/system").is_dir() {
        return Ok(BootHook::Manual(format!(
            "systemd is not running here: have the host's init run `{} autostart run` at boot",
            exe.display()
        )));
    }
    let root = if store.lib == Path::new("/var/lib/coop") {
        String::new()
    } else {
        format!(" --root {}", store.lib.display())
    };
    let unit = format!(
        "[Unit]\nDescription=coop: start containers marked lxc.start.auto = 1\n\
         After=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStart={exe}{root} autostart run\nExecStop={exe}{root} autostart stop\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        exe = exe.display()
    );
    std::fs::write(UNIT, unit).map_err(Error::io(format!("cannot write {UNIT}")))?;
    let ok = std::process::Command::new("systemctl")
        .args(["enable", "coop-autostart.service"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(Error::Msg(format!(
            "wrote {UNIT} but `systemctl enable coop-autostart.service` failed"
        )));
    }
    Ok(BootHook::SystemdUnit(UNIT.into()))
}

/// Marked containers in start order: `lxc.start.order` descending (LXC's rule), then name.
pub fn marked(store: &Store) -> Result<Vec<(String, Duration)>> {
    let mut v = Vec::new();
    for n in store.list()? {
        let c = Config::load(&store.config_path(&n))?;
        if c.start_auto {
            let num = |k: &str| {
                c.values(k)
                    .last()
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let delay = Duration::from_secs(num("lxc.start.delay").max(0) as u64);
            v.push((num("lxc.start.order"), n, delay));
        }
    }
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(v.into_iter().map(|(_, n, d)| (n, d)).collect())
}

/// Start every marked container that is not running; one failure does not stop the rest.
pub fn run(store: &Store, exe: &Path) -> Result<Vec<(String, Result<()>)>> {
    let mut out = Vec::new();
    for (n, delay) in marked(store)? {
        if RunState::load(store, &n)?.is_some() {
            continue;
        }
        let r = crate::start::start(store, &n, exe, None, None).map(|_| ());
        let started = r.is_ok();
        out.push((n, r));
        if started && !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
    Ok(out)
}

/// Stop every running marked container, in reverse start order.
pub fn stop_all(store: &Store, timeout: Duration) -> Result<Vec<(String, Result<()>)>> {
    let mut out = Vec::new();
    for (n, _) in marked(store)?.into_iter().rev() {
        if RunState::load(store, &n)?.is_none() {
            continue;
        }
        let r = stop(
            store,
            &n,
            &StopOptions {
                timeout,
                kill: false,
            },
        )
        .map(|_| ());
        out.push((n, r));
    }
    Ok(out)
}
