//! coop-cgroups: the cgroup layer of coop's container engine.
//!
//! It finds where each controller lives ([`Hierarchy`]: cgroup v1, pure v2, or hybrid — v1
//! controllers plus a cgroup2 mount), and manages one container's cgroup across all of them
//! ([`Cgroup`]): create, limits, raw `lxc.cgroup.*` / `lxc.cgroup2.*` keys, processes,
//! stats, freeze/thaw, kill and destroy.
//!
//! On a hybrid host the container cgroup is also made in the cgroup2 hierarchy and in the
//! named `systemd` v1 hierarchy, and processes are added there too: a container running
//! systemd as PID 1 inside a cgroup namespace needs to own its subtree there.
//!
//! Device rules ([`devices`]: LXC's default list, then a config's `devices.allow` /
//! `devices.deny` entries in order) go to v1 `devices.deny`/`devices.allow` when a v1
//! devices hierarchy exists, otherwise to a cgroup v2 eBPF device filter ([`devices_bpf`])
//! compiled from the composed policy and attached to the container's cgroup2 directory.

mod cgroup;
pub mod devices;
pub mod devices_bpf;
mod error;
mod fsutil;
mod hierarchy;

pub use cgroup::{Cgroup, CPU_PERIOD_US};
pub use devices::{DeviceOp, DevicePolicy, DeviceRule, DeviceRuleError};
pub use error::CgroupError;
pub use hierarchy::{Hierarchy, Layout, V1_CONTROLLERS};

/// Resource limits; `None` leaves the current setting alone.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Limits {
    /// CPUs worth of time, e.g. 0.5 (quota against a 100 ms period); at least 0.01.
    pub cpu: Option<f64>,
    /// Bytes. v1 also sets memory.memsw.limit_in_bytes to the same value when it exists
    /// (no swap beyond the limit); v2 leaves memory.swap.max alone.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// CPU list like "0-1" or "0,2"; memory nodes are inherited from the parent.
    pub cpuset: Option<String>,
}

/// Usage and limits read back from the cgroup; `None` when the file is absent or there is
/// no limit.
#[derive(Default, Clone, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    pub cpu_usage_ns: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit: Option<u64>,
    /// CPUs in force (quota / period).
    pub cpu_quota: Option<f64>,
    pub pids_current: Option<u64>,
    pub pids_max: Option<u64>,
    pub cpuset: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_serializes() {
        let s = Stats {
            cpu_usage_ns: Some(5),
            cpu_quota: Some(0.5),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cpu_usage_ns"], 5);
        assert_eq!(v["cpu_quota"], 0.5);
        assert!(v["pids_max"].is_null());
        assert_eq!(v.as_object().unwrap().len(), 7);
    }
}
