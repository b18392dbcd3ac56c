//! The runtime record of a running container, written by its monitor.
//!
//! It lives under the run directory, so a host reboot (which empties /run) can never
//! leave a container that claims to run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, Store};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Starting,
    Running,
    Frozen,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub name: String,
    pub status: Status,
    pub monitor_pid: i32,
    pub init_pid: i32,
    /// Seconds since the epoch.
    pub started_at: u64,
    /// Cgroup path relative to each hierarchy's root.
    pub cgroup: String,
    /// Host paths of the console (index 0) and tty 1..N pty slaves.
    pub ttys: Vec<String>,
    /// The signal `coop stop` sends to ask init to halt.
    pub halt_signal: i32,
    /// Whether init runs in its own user namespace (attach must join it too).
    pub userns: bool,
    #[serde(default)]
    pub spice: Option<String>,
    /// Whether SPICE clients must send a password (the password itself is not kept here).
    #[serde(default)]
    pub spice_password: bool,
    /// Opaque record of what networking created (for teardown and `info`).
    #[serde(default)]
    pub net: Option<serde_json::Value>,
    /// What `coop attach` needs, worked out once at start so attach reads one small
    /// file instead of parsing the config and the host's mount table.
    #[serde(default)]
    pub attach: Option<AttachSpec>,
    /// "container" or "colinux".
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AttachSpec {
    /// The container's cgroup directory in every hierarchy.
    pub cgroup_dirs: Vec<std::path::PathBuf>,
    /// Capabilities init lost (names as `CAP_…`), which attached commands lose too.
    pub drop_caps: Vec<String>,
    /// `lxc.environment` of the container.
    pub env: Vec<(String, String)>,
}

impl RunState {
    pub fn write(&self, store: &Store) -> Result<()> {
        let path = store.state_path(&self.name);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self).expect("state serializes");
        std::fs::write(&tmp, body)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(Error::io(format!("cannot write {}", path.display())))
    }

    /// The state of a running container, or `None` when it is not running. A state file
    /// whose monitor is gone (killed, host crash) counts as not running.
    pub fn load(store: &Store, name: &str) -> Result<Option<RunState>> {
        let path = store.state_path(name);
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()))(e)),
        };
        let st: RunState = serde_json::from_slice(&body)
            .map_err(|e| Error::Msg(format!("corrupt state file {}: {e}", path.display())))?;
        if !pid_alive(st.monitor_pid) {
            return Ok(None);
        }
        Ok(Some(st))
    }
}

pub fn pid_alive(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
