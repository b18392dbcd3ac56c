//! The one error type of this crate; every variant names the file, key or value involved.

use std::io;
use std::path::PathBuf;

/// Text of an I/O error without Rust's " (os error N)" tail, so messages read like
/// `cannot write "abc" to …/cpu.cfs_quota_us: Invalid argument`.
pub(crate) fn os_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot write {value:?} to {}: {}", path.display(), os_text(source))]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cannot read {}: {}", path.display(), os_text(source))]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create cgroup directory {}: {}", path.display(), os_text(source))]
    Mkdir { path: PathBuf, source: io::Error },
    #[error("cannot remove cgroup directory {}: {}", path.display(), os_text(source))]
    Rmdir { path: PathBuf, source: io::Error },
    #[error("cannot parse {}: unexpected content {content:?}", path.display())]
    Parse { path: PathBuf, content: String },
    #[error("no cgroup filesystem is mounted (read {})", path.display())]
    NoCgroupFs { path: PathBuf },
    #[error("invalid cgroup path {0:?}: must be relative, non-empty, without \"..\"")]
    InvalidPath(String),
    #[error("invalid cgroup key {0:?}: expected <controller>.<file>")]
    InvalidKey(String),
    #[error("invalid value {value:?} for {what}: {reason}")]
    InvalidValue {
        what: String,
        value: String,
        reason: String,
    },
    #[error(
        "cannot set {key:?}: no cgroup v1 hierarchy for controller {controller:?} on this host"
    )]
    NoV1 { key: String, controller: String },
    #[error("cannot set {key:?}: no usable cgroup v2 for controller {controller:?} on this host")]
    NoV2 { key: String, controller: String },
    #[error("controller {controller:?} is not available on this host (needed for {what})")]
    Unavailable { controller: String, what: String },
    #[error("cgroup {} does not exist in any hierarchy", rel)]
    NotFound { rel: String },
    #[error("timed out after {ms} ms waiting for {what} in {}", path.display())]
    Timeout {
        what: String,
        path: PathBuf,
        ms: u64,
    },
    #[error("refusing to kill cgroup {rel}: it contains this process (pid {pid})")]
    ContainsSelf { rel: String, pid: i32 },
    #[error("refusing to kill the processes listed in {}: not a cgroup filesystem", path.display())]
    NotCgroupFs { path: PathBuf },
    #[error("cannot send SIGKILL to pid {pid}: {errno}")]
    Kill { pid: i32, errno: nix::errno::Errno },
    #[error(transparent)]
    DeviceFilter(#[from] crate::devices_bpf::DeviceFilterError),
}
