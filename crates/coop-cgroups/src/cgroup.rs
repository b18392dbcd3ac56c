//! One container's cgroup across every hierarchy of the host.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::devices::{DeviceOp, DevicePolicy, DeviceRule, DeviceRuleError};
use crate::error::CgroupError;
use crate::fsutil::{mkdir, read_opt, read_small, write_file};
use crate::hierarchy::{read_controllers, Hierarchy, Place};
use crate::{Limits, Stats};

/// The CFS period we always use; quota is expressed against it.
pub const CPU_PERIOD_US: u64 = 100_000;
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// While killing under v1 we freeze first so nothing forks between listing and killing;
/// a task stuck in D state must not stall the kill loop for long.
const KILL_FREEZE_TIMEOUT: Duration = Duration::from_millis(500);
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
const RMDIR_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);
/// Bound on directories visited when walking a cgroup subtree.
const MAX_WALK: usize = 100_000;
/// v1 reports "no memory limit" as PAGE_COUNTER_MAX pages, just under 2^63; anything this
/// large is no limit at all.
const V1_UNLIMITED: u64 = 1 << 62;

/// A cgroup at the same relative path in every hierarchy of a [`Hierarchy`].
///
/// Paths are relative to each hierarchy's mount point (not to the caller's own cgroup).
#[derive(Debug, Clone)]
pub struct Cgroup {
    h: Hierarchy,
    raw: String,
    /// `None` when `raw` is empty or escapes the hierarchy; every operation then fails with
    /// [`CgroupError::InvalidPath`] — the root cgroup must never be killed or removed.
    rel: Option<PathBuf>,
}

impl Cgroup {
    pub fn new(h: &Hierarchy, rel: &str) -> Cgroup {
        Cgroup {
            h: h.clone(),
            raw: rel.to_string(),
            rel: normalize_rel(rel),
        }
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.h
    }

    /// The relative path as given to [`Cgroup::new`].
    pub fn rel(&self) -> &str {
        &self.raw
    }

    fn relp(&self) -> Result<&Path, CgroupError> {
        self.rel
            .as_deref()
            .ok_or_else(|| CgroupError::InvalidPath(self.raw.clone()))
    }

    /// This cgroup's directory in every hierarchy (v1 controllers, named systemd, unified);
    /// empty when the relative path is invalid.
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.rel {
            Some(rel) => self.h.mounts().into_iter().map(|m| m.join(rel)).collect(),
            None => Vec::new(),
        }
    }

    /// Directory holding `controller`'s files ("cpu", "cpuacct", "memory", "blkio", …).
    pub fn path(&self, controller: &str) -> Option<PathBuf> {
        let rel = self.rel.as_ref()?;
        Some(match self.h.place_root(controller)? {
            Place::V1(m) | Place::V2(m) => m.join(rel),
        })
    }

    /// This cgroup in the cgroup2 hierarchy, when the host has one (pure v2 or hybrid).
    /// A systemd container with a cgroup namespace sees this directory as its cgroup2 root.
    pub fn unified_path(&self) -> Option<PathBuf> {
        Some(self.h.unified_mount()?.join(self.rel.as_ref()?))
    }

    fn place(&self, controller: &str, what: &str) -> Result<Place, CgroupError> {
        let rel = self.relp()?;
        match self.h.place_root(controller) {
            Some(Place::V1(m)) => Ok(Place::V1(m.join(rel))),
            Some(Place::V2(m)) => Ok(Place::V2(m.join(rel))),
            None => Err(CgroupError::Unavailable {
                controller: controller.to_string(),
                what: what.to_string(),
            }),
        }
    }

    /// mkdir in every hierarchy, parents included. In the v1 cpuset hierarchy each new level
    /// gets its parent's cpuset.cpus/mems (an empty cpuset refuses tasks). In v2, each
    /// ancestor gets the needed controllers in cgroup.subtree_control before its child is
    /// made. On error the directories made so far stay: call [`Cgroup::destroy`].
    pub fn create(&self) -> Result<(), CgroupError> {
        let rel = self.relp()?;
        let cpuset_mount = self.h.v1_mount("cpuset").map(Path::to_path_buf);
        let unified = self.h.unified_mount().map(Path::to_path_buf);
        let wanted = self.h.v2_wanted();
        for mount in self.h.mounts() {
            let is_cpuset = cpuset_mount.as_deref() == Some(mount.as_path());
            let is_unified = unified.as_deref() == Some(mount.as_path());
            let mut dir = mount.clone();
            for comp in rel.components() {
                if is_unified && !wanted.is_empty() {
                    enable_subtree(&dir, &wanted)?;
                }
                let parent = dir.clone();
                dir.push(comp);
                mkdir(&dir)?;
                if is_cpuset {
                    inherit_cpuset(&parent, &dir)?;
                }
            }
        }
        tracing::debug!(rel = %self.raw, "cgroup created");
        Ok(())
    }

    /// Like [`Cgroup::create`], for a group that should not exist yet: one left behind
    /// (its monitor was killed) is destroyed and made anew, so no old limit or task
    /// carries over. Where the parents exist, as on every start but the first, each
    /// hierarchy costs one mkdir: the per-level walk of `create` (a lookup, a mkdir and, in
    /// cpuset, two reads per level) is only taken where a parent is missing.
    pub fn create_fresh(&self) -> Result<(), CgroupError> {
        let rel = self.relp()?;
        let cpuset_mount = self.h.v1_mount("cpuset").map(Path::to_path_buf);
        // Enabling controllers on each v2 ancestor is part of the walk: v2 always takes it.
        let v2_walk = self
            .h
            .unified_mount()
            .map(Path::to_path_buf)
            .filter(|_| !self.h.v2_wanted().is_empty());
        let mut walk = false;
        let mut leftover = false;
        for mount in self.h.mounts() {
            if v2_walk.as_deref() == Some(mount.as_path()) {
                walk = true;
                continue;
            }
            let dir = mount.join(rel);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    if cpuset_mount.as_deref() == Some(mount.as_path()) {
                        if let Some(parent) = dir.parent() {
                            inherit_cpuset(parent, &dir)?;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => walk = true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => leftover = true,
                Err(source) => return Err(CgroupError::Mkdir { path: dir, source }),
            }
        }
        if leftover {
            tracing::debug!(rel = %self.raw, "reclaiming a cgroup left behind");
            self.destroy()?;
            return self.create();
        }
        if walk {
            // Idempotent where the fast path already made the directory.
            return self.create();
        }
        tracing::debug!(rel = %self.raw, "cgroup created");
        Ok(())
    }

    /// Whether the directory exists in at least one hierarchy.
    pub fn exists(&self) -> bool {
        self.paths().iter().any(|p| p.is_dir())
    }

    /// Apply the limits that are `Some`; values are all checked before anything is written.
    pub fn apply_limits(&self, l: &Limits) -> Result<(), CgroupError> {
        self.relp()?;
        let quota = l.cpu.map(cpu_quota_us).transpose()?;
        if let Some(cs) = &l.cpuset {
            validate_cpuset(cs)?;
        }
        if let Some(q) = quota {
            match self.place("cpu", "cpu limit")? {
                Place::V1(d) => {
                    write_file(&d.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write_file(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
                }
                Place::V2(d) => write_file(&d.join("cpu.max"), &format!("{q} {CPU_PERIOD_US}"))?,
            }
        }
        if let Some(m) = l.memory {
            match self.place("memory", "memory limit")? {
                Place::V1(d) => set_v1_memory(&d, m)?,
                // Swap is left alone on v2 (memory.swap.max untouched): the container may
                // swap as much as its ancestors allow.
                Place::V2(d) => write_file(&d.join("memory.max"), &m.to_string())?,
            }
        }
        if let Some(p) = l.pids {
            let (Place::V1(d) | Place::V2(d)) = self.place("pids", "pids limit")?;
            write_file(&d.join("pids.max"), &p.to_string())?;
        }
        if let Some(cs) = &l.cpuset {
            let (Place::V1(d) | Place::V2(d)) = self.place("cpuset", "cpuset")?;
            write_file(&d.join("cpuset.cpus"), cs)?;
        }
        Ok(())
    }

    /// Write a v1 file (`lxc.cgroup.<key>`); the controller is the text before the first '.'.
    pub fn set_v1(&self, key: &str, value: &str) -> Result<(), CgroupError> {
        let rel = self.relp()?;
        let ctrl = key_controller(key)?;
        let Some(mount) = self.h.v1_mount(ctrl) else {
            return Err(CgroupError::NoV1 {
                key: key.to_string(),
                controller: ctrl.to_string(),
            });
        };
        write_file(&mount.join(rel).join(key), value)
    }

    /// Write a v2 file (`lxc.cgroup2.<key>`). Keys of a controller not available in the
    /// unified hierarchy are refused; the controller is enabled in the ancestors first.
    pub fn set_v2(&self, key: &str, value: &str) -> Result<(), CgroupError> {
        let rel = self.relp()?;
        let ctrl = key_controller(key)?;
        let no_v2 = || CgroupError::NoV2 {
            key: key.to_string(),
            controller: ctrl.to_string(),
        };
        let unified = self.h.unified_mount().ok_or_else(no_v2)?;
        if ctrl != "cgroup" {
            if !self.h.unified_controllers().iter().any(|c| c == ctrl) {
                return Err(no_v2());
            }
            let mut dir = unified.to_path_buf();
            for comp in rel.components() {
                enable_subtree(&dir, &[ctrl.to_string()])?;
                dir.push(comp);
            }
        }
        write_file(&unified.join(rel).join(key), value)
    }

    /// Move `pid` (its whole thread group) into this cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.relp()?;
        if pid <= 0 {
            return Err(CgroupError::InvalidValue {
                what: "pid".into(),
                value: pid.to_string(),
                reason: "must be positive".into(),
            });
        }
        for dir in self.paths() {
            write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Processes directly in this cgroup in any hierarchy, sorted, without duplicates.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        self.relp()?;
        let mut set = BTreeSet::new();
        let mut found = false;
        for dir in self.paths() {
            let file = dir.join("cgroup.procs");
            if let Some(text) = read_opt(&file)? {
                found = true;
                set.extend(parse_pids(&file, &text)?);
            }
        }
        if !found {
            return Err(self.not_found());
        }
        Ok(set.into_iter().collect())
    }

    /// Processes in this cgroup or any descendant, in any hierarchy.
    fn procs_recursive(&self) -> Result<Vec<i32>, CgroupError> {
        let mut set = BTreeSet::new();
        for dir in self.paths() {
            for d in walk_post_order(&dir)? {
                let file = d.join("cgroup.procs");
                if let Some(text) = read_opt(&file)? {
                    set.extend(parse_pids(&file, &text)?);
                }
            }
        }
        Ok(set.into_iter().collect())
    }

    fn not_found(&self) -> CgroupError {
        CgroupError::NotFound {
            rel: self.raw.clone(),
        }
    }

    /// Usage and limits; a figure whose file is absent is `None`, as is "no limit".
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        self.relp()?;
        if !self.exists() {
            return Err(self.not_found());
        }
        let mut s = Stats::default();
        match self.place("cpuacct", "") {
            Ok(Place::V1(d)) => s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"))?,
            Ok(Place::V2(d)) => {
                let file = d.join("cpu.stat");
                if let Some(text) = read_opt(&file)? {
                    s.cpu_usage_ns =
                        keyed_u64(&file, &text, "usage_usec")?.map(|us| us.saturating_mul(1000));
                }
            }
            Err(_) => {}
        }
        match self.place("memory", "") {
            Ok(Place::V1(d)) => {
                s.memory_bytes = read_u64(&d.join("memory.usage_in_bytes"))?;
                s.memory_limit =
                    read_u64(&d.join("memory.limit_in_bytes"))?.filter(|v| *v < V1_UNLIMITED);
            }
            Ok(Place::V2(d)) => {
                s.memory_bytes = read_u64(&d.join("memory.current"))?;
                s.memory_limit = read_max_u64(&d.join("memory.max"))?;
            }
            Err(_) => {}
        }
        match self.place("cpu", "") {
            Ok(Place::V1(d)) => {
                let quota = read_i64(&d.join("cpu.cfs_quota_us"))?;
                let period = read_u64(&d.join("cpu.cfs_period_us"))?;
                if let (Some(q), Some(p)) = (quota, period) {
                    if q > 0 && p > 0 {
                        s.cpu_quota = Some(q as f64 / p as f64);
                    }
                }
            }
            Ok(Place::V2(d)) => {
                let file = d.join("cpu.max");
                if let Some(text) = read_opt(&file)? {
                    s.cpu_quota = parse_cpu_max(&file, &text)?;
                }
            }
            Err(_) => {}
        }
        if let Ok(Place::V1(d) | Place::V2(d)) = self.place("pids", "") {
            s.pids_current = read_u64(&d.join("pids.current"))?;
            s.pids_max = read_max_u64(&d.join("pids.max"))?;
        }
        match self.place("cpuset", "") {
            Ok(Place::V1(d)) => s.cpuset = read_trimmed(&d.join("cpuset.cpus"))?,
            Ok(Place::V2(d)) => {
                s.cpuset = match read_trimmed(&d.join("cpuset.cpus"))? {
                    Some(c) => Some(c),
                    None => read_trimmed(&d.join("cpuset.cpus.effective"))?,
                }
            }
            Err(_) => {}
        }
        Ok(s)
    }

    /// Freeze every task: v1 freezer.state (waits until FROZEN, rewriting it as new tasks
    /// may join meanwhile), else v2 cgroup.freeze (waits for "frozen 1" in cgroup.events).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.freeze_within(FREEZE_TIMEOUT)
    }

    fn freeze_within(&self, timeout: Duration) -> Result<(), CgroupError> {
        let rel = self.relp()?;
        if let Some(m) = self.h.v1_mount("freezer") {
            let state = m.join(rel).join("freezer.state");
            let start = Instant::now();
            loop {
                write_file(&state, "FROZEN")?;
                if read_small(&state)?.trim() == "FROZEN" {
                    return Ok(());
                }
                if start.elapsed() > timeout {
                    // Leave nothing half-frozen behind.
                    let _ = write_file(&state, "THAWED");
                    return Err(CgroupError::Timeout {
                        what: "freezer.state FROZEN".into(),
                        path: state,
                        ms: timeout.as_millis() as u64,
                    });
                }
                sleep(POLL);
            }
        }
        if let Some(d) = self.unified_path() {
            write_file(&d.join("cgroup.freeze"), "1")?;
            return wait_event(&d.join("cgroup.events"), "frozen", 1, timeout).inspect_err(|_| {
                let _ = write_file(&d.join("cgroup.freeze"), "0");
            });
        }
        Err(CgroupError::Unavailable {
            controller: "freezer".into(),
            what: "freeze".into(),
        })
    }

    /// Whether the cgroup is frozen now: v1 freezer.state reads FROZEN, or v2
    /// cgroup.events says "frozen 1". A freeze still in progress counts as not frozen.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        let rel = self.relp()?;
        if let Some(m) = self.h.v1_mount("freezer") {
            return Ok(read_small(&m.join(rel).join("freezer.state"))?.trim() == "FROZEN");
        }
        if let Some(d) = self.unified_path() {
            let file = d.join("cgroup.events");
            let text = read_small(&file)?;
            return Ok(keyed_u64(&file, &text, "frozen")? == Some(1));
        }
        Err(CgroupError::Unavailable {
            controller: "freezer".into(),
            what: "freezer state".into(),
        })
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        let rel = self.relp()?;
        if let Some(m) = self.h.v1_mount("freezer") {
            return write_file(&m.join(rel).join("freezer.state"), "THAWED");
        }
        if let Some(d) = self.unified_path() {
            return write_file(&d.join("cgroup.freeze"), "0");
        }
        Err(CgroupError::Unavailable {
            controller: "freezer".into(),
            what: "thaw".into(),
        })
    }

    /// SIGKILL every process of this cgroup and its descendants, in every hierarchy, and
    /// wait (at most 5 s) until none is left. Uses v2 cgroup.kill when present; under v1 it
    /// freezes first so no task forks between listing and killing. Refuses when the calling
    /// process is inside. A cgroup that does not exist is already empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        self.relp()?;
        let me = std::process::id() as i32;
        let first = self.procs_recursive()?;
        if first.is_empty() {
            return Ok(());
        }
        if first.contains(&me) {
            return Err(CgroupError::ContainsSelf {
                rel: self.raw.clone(),
                pid: me,
            });
        }
        // Pids listed in a test tree are somebody else's real processes: never signal them.
        for dir in self.paths() {
            if dir.exists() && !on_cgroupfs(&dir) {
                return Err(CgroupError::NotCgroupFs { path: dir });
            }
        }
        if let Some(d) = self.unified_path() {
            let k = d.join("cgroup.kill");
            if k.exists() {
                write_file(&k, "1")?;
            }
        }
        let has_freezer = self.h.v1_mount("freezer").is_some();
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let pids = self.procs_recursive()?;
            if pids.is_empty() {
                return Ok(());
            }
            if pids.contains(&me) {
                return Err(CgroupError::ContainsSelf {
                    rel: self.raw.clone(),
                    pid: me,
                });
            }
            if Instant::now() > deadline {
                let path = self.paths().into_iter().next().unwrap_or_default();
                return Err(CgroupError::Timeout {
                    what: format!("{} process(es) to exit (pids {:?})", pids.len(), pids),
                    path,
                    ms: KILL_TIMEOUT.as_millis() as u64,
                });
            }
            let frozen = has_freezer && self.freeze_within(KILL_FREEZE_TIMEOUT).is_ok();
            let mut result = Ok(());
            for &pid in &pids {
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(errno) => {
                        result = Err(CgroupError::Kill { pid, errno });
                        break;
                    }
                }
            }
            if frozen {
                // Frozen tasks act on SIGKILL only once thawed.
                self.thaw()?;
            }
            result?;
            sleep(POLL);
        }
    }

    /// Kill everything, then rmdir this cgroup and its descendants (children first) in every
    /// hierarchy. Directories already gone are fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        self.relp()?;
        self.kill_all()?;
        for dir in self.paths() {
            for d in walk_post_order(&dir)? {
                rmdir_retry(&d)?;
            }
        }
        tracing::debug!(rel = %self.raw, "cgroup destroyed");
        Ok(())
    }

    /// Deny every device, then allow each rule ("c 1:3 rwm", "b 8:* r", "a"): the same as
    /// [`Cgroup::set_device_rules`] with no user rules.
    pub fn deny_devices_except(&self, allow: &[&str]) -> Result<(), CgroupError> {
        self.set_device_rules(allow, &[]).map(drop)
    }

    /// Device access: deny every device, allow each rule of `base` (LXC's default list),
    /// then apply `user`'s `devices.allow` / `devices.deny` rules in order (see
    /// [`crate::devices`] for how they compose: `deny a` starts from nothing, `allow a`
    /// allows everything, a deny removes an exactly matching allow).
    ///
    /// With a v1 devices hierarchy the rules are written, in that order, to the kernel's
    /// devices.deny/devices.allow files; otherwise, with a cgroup2 hierarchy, the composed
    /// policy becomes an eBPF device filter attached to this cgroup's cgroup2 directory (see
    /// [`crate::devices_bpf`]). Every rule is parsed before anything is written. Returns
    /// notes on rules that changed nothing (for the caller to warn about).
    pub fn set_device_rules(
        &self,
        base: &[&str],
        user: &[(DeviceOp, &str)],
    ) -> Result<Vec<String>, CgroupError> {
        let rel = self.relp()?;
        let bad_rule = |e: DeviceRuleError| CgroupError::InvalidValue {
            what: e.key.clone().unwrap_or_else(|| "device rule".into()),
            value: e.rule.clone(),
            reason: e.reason.clone(),
        };
        let mut policy = DevicePolicy::allowing(base).map_err(bad_rule)?;
        let mut notes = Vec::new();
        let mut parsed = Vec::with_capacity(user.len());
        for (op, value) in user {
            let rule = DeviceRule::parse(value).map_err(|e| {
                bad_rule(DeviceRuleError {
                    key: Some(op.key().into()),
                    ..e
                })
            })?;
            notes.extend(policy.apply(*op, &rule));
            parsed.push((*op, rule));
        }
        if let Some(m) = self.h.v1_mount("devices") {
            // The kernel composes v1 rules the way DevicePolicy does: hand it the rules
            // themselves so its own checks (a child never gets more than its parent) apply.
            let d = m.join(rel);
            write_file(&d.join("devices.deny"), "a")?;
            for rule in base {
                write_file(&d.join("devices.allow"), rule)?;
            }
            // Canonical text: the kernel's parser wants single spaces.
            for (op, rule) in &parsed {
                write_file(&d.join(op.key()), &rule.to_string())?;
            }
            return Ok(notes);
        }
        if let Some(dir) = self.unified_path() {
            crate::devices_bpf::apply_policy(&dir, &policy)?;
            return Ok(notes);
        }
        Err(CgroupError::Unavailable {
            controller: "devices".into(),
            what: "device rules".into(),
        })
    }
}

fn normalize_rel(rel: &str) -> Option<PathBuf> {
    if rel.contains('\0') {
        return None;
    }
    let mut p = PathBuf::new();
    for comp in rel.split('/') {
        match comp {
            "" | "." => {}
            ".." => return None,
            c => p.push(c),
        }
    }
    (!p.as_os_str().is_empty()).then_some(p)
}

/// `<controller>.<file>` → controller; refuses anything that could leave the cgroup dir.
fn key_controller(key: &str) -> Result<&str, CgroupError> {
    let bad = || CgroupError::InvalidKey(key.to_string());
    if key.contains('/') || key.contains('\0') {
        return Err(bad());
    }
    match key.split_once('.') {
        Some((ctrl, rest)) if !ctrl.is_empty() && !rest.is_empty() => Ok(ctrl),
        _ => Err(bad()),
    }
}

fn enable_subtree(dir: &Path, wanted: &[String]) -> Result<(), CgroupError> {
    let available = read_controllers(&dir.join("cgroup.controllers"));
    let enabled = read_controllers(&dir.join("cgroup.subtree_control"));
    let add: Vec<String> = wanted
        .iter()
        .filter(|c| available.contains(c) && !enabled.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if add.is_empty() {
        return Ok(());
    }
    // One write: the kernel applies the whole list or none of it.
    write_file(&dir.join("cgroup.subtree_control"), &add.join(" "))
}

fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if read_small(&dir.join(f))?.trim().is_empty() {
            let from_parent = read_small(&parent.join(f))?;
            let v = from_parent.trim();
            if !v.is_empty() {
                write_file(&dir.join(f), v)?;
            }
        }
    }
    Ok(())
}

fn set_v1_memory(d: &Path, bytes: u64) -> Result<(), CgroupError> {
    let limit = d.join("memory.limit_in_bytes");
    let memsw = d.join("memory.memsw.limit_in_bytes");
    let has_memsw = memsw.exists();
    let v = bytes.to_string();
    match write_file(&limit, &v) {
        Ok(()) => {}
        // The kernel refuses memory > memsw: when raising, memsw has to go first.
        Err(CgroupError::Write { source, .. })
            if has_memsw && source.raw_os_error() == Some(Errno::EINVAL as i32) =>
        {
            write_file(&memsw, &v)?;
            write_file(&limit, &v)?;
        }
        Err(e) => return Err(e),
    }
    if has_memsw {
        write_file(&memsw, &v)?;
    }
    Ok(())
}

fn cpu_quota_us(cpu: f64) -> Result<u64, CgroupError> {
    // The kernel's minimum quota is 1 ms, i.e. 0.01 CPU at our 100 ms period.
    if !cpu.is_finite() || !(0.01..=100_000.0).contains(&cpu) {
        return Err(CgroupError::InvalidValue {
            what: "cpu limit (CPUs)".into(),
            value: cpu.to_string(),
            reason: "must be between 0.01 and 100000".into(),
        });
    }
    Ok((cpu * CPU_PERIOD_US as f64).round() as u64)
}

/// "0-1", "0,2-3": the list syntax the kernel takes for cpuset.cpus.
fn validate_cpuset(s: &str) -> Result<(), CgroupError> {
    let bad = |reason: &str| CgroupError::InvalidValue {
        what: "cpuset".into(),
        value: s.to_string(),
        reason: reason.into(),
    };
    if s.trim().is_empty() {
        return Err(bad("empty"));
    }
    for item in s.trim().split(',') {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
            return Err(bad("expected CPU numbers and ranges like 0-1,3"));
        };
        if a > b {
            return Err(bad("range start is after its end"));
        }
    }
    Ok(())
}

pub(crate) fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>, CgroupError> {
    text.split_whitespace()
        .map(|t| match t.parse::<i32>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(CgroupError::Parse {
                path: path.to_path_buf(),
                content: t.to_string(),
            }),
        })
        .collect()
}

fn parse_err(path: &Path, text: &str) -> CgroupError {
    CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.chars().take(200).collect(),
    }
}

fn read_trimmed(path: &Path) -> Result<Option<String>, CgroupError> {
    Ok(read_opt(path)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

fn read_u64(path: &Path) -> Result<Option<u64>, CgroupError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(t) => t.trim().parse().map(Some).map_err(|_| parse_err(path, &t)),
    }
}

fn read_i64(path: &Path) -> Result<Option<i64>, CgroupError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(t) => t.trim().parse().map(Some).map_err(|_| parse_err(path, &t)),
    }
}

/// v2 style: a number, or "max" for no limit (→ None).
fn read_max_u64(path: &Path) -> Result<Option<u64>, CgroupError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(t) if t.trim() == "max" => Ok(None),
        Some(t) => t.trim().parse().map(Some).map_err(|_| parse_err(path, &t)),
    }
}

/// A flat-keyed file ("usage_usec 123\nuser_usec 100\n…"): the value of `key`.
pub(crate) fn keyed_u64(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some(key) {
            return match it.next().map(str::parse::<u64>) {
                Some(Ok(v)) => Ok(Some(v)),
                _ => Err(parse_err(path, line)),
            };
        }
    }
    Ok(None)
}

/// cpu.max: "max 100000" → None, "50000 100000" → 0.5.
pub(crate) fn parse_cpu_max(path: &Path, text: &str) -> Result<Option<f64>, CgroupError> {
    let mut it = text.split_whitespace();
    let (Some(q), p) = (it.next(), it.next()) else {
        return Err(parse_err(path, text));
    };
    if q == "max" {
        return Ok(None);
    }
    let period: u64 = match p {
        Some(p) => p.parse().map_err(|_| parse_err(path, text))?,
        None => CPU_PERIOD_US,
    };
    let quota: u64 = q.parse().map_err(|_| parse_err(path, text))?;
    if period == 0 {
        return Err(parse_err(path, text));
    }
    Ok(Some(quota as f64 / period as f64))
}

/// `dir` and its subdirectories, deepest first; empty when `dir` does not exist.
fn walk_post_order(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    // Pre-order by stack, then reverse: every child comes before its parent.
    let mut order = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if order.len() >= MAX_WALK {
            return Err(CgroupError::InvalidValue {
                what: "cgroup tree".into(),
                value: dir.display().to_string(),
                reason: format!("more than {MAX_WALK} descendants"),
            });
        }
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // Removed concurrently: nothing below it any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CgroupError::Read { path: d, source }),
        };
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
        order.push(d);
    }
    order.reverse();
    Ok(order)
}

/// rmdir, retrying while the kernel still reports the cgroup busy (tasks just killed are
/// unlinked asynchronously).
fn rmdir_retry(dir: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(Errno::EBUSY as i32)
                    && start.elapsed() < RMDIR_TIMEOUT =>
            {
                sleep(POLL)
            }
            Err(source) => {
                return Err(CgroupError::Rmdir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Poll a flat-keyed events file until `key` equals `want`. A missing file (test tree, old
/// kernel) means there is nothing to wait for.
fn wait_event(file: &Path, key: &str, want: u64, timeout: Duration) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        let Some(text) = read_opt(file)? else {
            return Ok(());
        };
        if keyed_u64(file, &text, key)? == Some(want) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(CgroupError::Timeout {
                what: format!("\"{key} {want}\""),
                path: file.to_path_buf(),
                ms: timeout.as_millis() as u64,
            });
        }
        sleep(POLL);
    }
}

fn on_cgroupfs(dir: &Path) -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    statfs(dir)
        .map(|st| {
            let t = st.filesystem_type();
            t == CGROUP_SUPER_MAGIC || t == CGROUP2_SUPER_MAGIC
        })
        .unwrap_or(false)
}
