//! Where each controller lives: detection from /proc/self/mountinfo, or a test tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::CgroupError;
use crate::fsutil::read_small;

/// The v1 controllers this crate drives.
pub const V1_CONTROLLERS: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];

/// The v2 controllers a container cgroup needs enabled from its ancestors.
pub(crate) const V2_WANTED: [&str; 5] = ["cpu", "cpuset", "memory", "pids", "io"];

/// Named v1 hierarchies we mirror the container cgroup into. Only systemd's: a systemd
/// container expects to own its subtree there; other named hierarchies are left alone.
const NAMED_WANTED: [&str; 1] = ["systemd"];

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// What the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Layout {
    /// Only cgroup v1 controller hierarchies (maybe with a named systemd one).
    V1,
    /// Only the unified cgroup2 hierarchy.
    V2,
    /// v1 controller hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
    Hybrid,
}

/// Where a controller's files are for a given cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    V1(PathBuf),
    V2(PathBuf),
}

/// The mount points of every cgroup hierarchy we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1 controller name → mount point (co-mounted controllers share one).
    v1: BTreeMap<String, PathBuf>,
    /// Named v1 hierarchy ("systemd") → mount point.
    named: BTreeMap<String, PathBuf>,
    unified: Option<PathBuf>,
    /// Controllers listed in the unified root's cgroup.controllers.
    unified_controllers: Vec<String>,
}

impl Hierarchy {
    /// Detect the hierarchies of the running host from /proc/self/mountinfo.
    pub fn detect() -> Result<Hierarchy, CgroupError> {
        let text = read_small(Path::new(MOUNTINFO))?;
        let mut h = Self::from_mountinfo(&text);
        if h.v1.is_empty() && h.unified.is_none() {
            return Err(CgroupError::NoCgroupFs {
                path: PathBuf::from(MOUNTINFO),
            });
        }
        if let Some(u) = &h.unified {
            h.unified_controllers = read_controllers(&u.join("cgroup.controllers"));
        }
        tracing::debug!(layout = ?h.layout(), v1 = ?h.v1, unified = ?h.unified,
            unified_controllers = ?h.unified_controllers, "cgroup hierarchy detected");
        Ok(h)
    }

    /// Parse mountinfo text. The unified controllers are left empty: they come from the
    /// mounted filesystem, which `detect` reads.
    pub(crate) fn from_mountinfo(text: &str) -> Hierarchy {
        let mut h = Hierarchy {
            v1: BTreeMap::new(),
            named: BTreeMap::new(),
            unified: None,
            unified_controllers: Vec::new(),
        };
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            if fields.len() < 5 || fields.len() < sep + 4 {
                continue;
            }
            let mount_point = PathBuf::from(unescape_mount(fields[4]));
            let fstype = fields[sep + 1];
            let super_opts = fields[sep + 3];
            match fstype {
                "cgroup2" if h.unified.is_none() => h.unified = Some(mount_point),
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if let Some(name) = opt.strip_prefix("name=") {
                            if NAMED_WANTED.contains(&name) {
                                h.named
                                    .entry(name.to_string())
                                    .or_insert_with(|| mount_point.clone());
                            }
                        } else if V1_CONTROLLERS.contains(&opt) {
                            h.v1.entry(opt.to_string())
                                .or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        h
    }

    /// A pure v1 layout for tests: every controller of [`V1_CONTROLLERS`] at
    /// `<root>/<controller>`, no named hierarchy, no unified one.
    pub fn v1_at(root: &Path) -> Hierarchy {
        Hierarchy {
            v1: V1_CONTROLLERS
                .iter()
                .map(|c| (c.to_string(), root.join(c)))
                .collect(),
            named: BTreeMap::new(),
            unified: None,
            unified_controllers: Vec::new(),
        }
    }

    /// A pure v2 layout for tests: the unified tree at `root`. Its controllers are read
    /// from `<root>/cgroup.controllers`; when that file is missing, all of
    /// cpu, cpuset, memory, pids and io are assumed.
    pub fn v2_at(root: &Path) -> Hierarchy {
        let file = root.join("cgroup.controllers");
        let unified_controllers = if file.exists() {
            read_controllers(&file)
        } else {
            V2_WANTED.iter().map(|s| s.to_string()).collect()
        };
        Hierarchy {
            v1: BTreeMap::new(),
            named: BTreeMap::new(),
            unified: Some(root.to_path_buf()),
            unified_controllers,
        }
    }

    /// A hybrid layout for tests, shaped like this project's build machine: v1 controllers at
    /// `<root>/<controller>`, the named systemd hierarchy at `<root>/systemd`, cgroup2 at
    /// `<root>/unified` (controllers read from its cgroup.controllers, none when missing).
    pub fn hybrid_at(root: &Path) -> Hierarchy {
        let mut h = Self::v1_at(root);
        h.named.insert("systemd".into(), root.join("systemd"));
        let unified = root.join("unified");
        h.unified_controllers = read_controllers(&unified.join("cgroup.controllers"));
        h.unified = Some(unified);
        h
    }

    pub fn layout(&self) -> Layout {
        match (self.v1.is_empty(), self.unified.is_some()) {
            (false, true) => Layout::Hybrid,
            (true, true) => Layout::V2,
            _ => Layout::V1,
        }
    }

    /// Controller name → whether this crate can enforce it on this host, in a fixed order:
    /// cpu, cpuset, memory, pids, blkio (named "io" when served by v2), devices, freezer.
    /// `devices` on a host without v1 devices is served by a cgroup2 eBPF device filter when
    /// the kernel loads one (probed once); `freezer` counts cgroup v2's built-in `cgroup.freeze` (kernel ≥ 5.2).
    pub fn controllers(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for c in ["cpu", "cpuset", "memory", "pids"] {
            out.push((c.to_string(), self.place_root(c).is_some()));
        }
        if self.v1.contains_key("blkio") {
            out.push(("blkio".into(), true));
        } else {
            out.push(("io".into(), self.place_root("io").is_some()));
        }
        let devices = self.v1.contains_key("devices")
            || (self.unified.is_some() && crate::devices_bpf::supported());
        out.push(("devices".into(), devices));
        let freezer =
            self.v1.contains_key("freezer") || (self.unified.is_some() && kernel_at_least(5, 2));
        out.push(("freezer".into(), freezer));
        out
    }

    /// Mount point of a v1 controller's hierarchy.
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// Mount point of the cgroup2 hierarchy, if any.
    pub fn unified_mount(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// Controllers available at the root of the cgroup2 hierarchy.
    pub fn unified_controllers(&self) -> &[String] {
        &self.unified_controllers
    }

    /// Where a controller lives, v1 first (a controller bound to v1 cannot also be in v2).
    /// `cpuacct`'s v2 counterpart is `cpu.stat`, present in every v2 cgroup; `blkio`
    /// maps to v2 `io`.
    pub(crate) fn place_root(&self, controller: &str) -> Option<Place> {
        if let Some(p) = self.v1.get(controller) {
            return Some(Place::V1(p.clone()));
        }
        let u = self.unified.as_ref()?;
        let v2name = match controller {
            "blkio" => "io",
            c => c,
        };
        if controller == "cpuacct" || self.unified_controllers.iter().any(|c| c == v2name) {
            return Some(Place::V2(u.clone()));
        }
        None
    }

    /// Every distinct hierarchy mount point: v1 controllers, named, unified.
    pub(crate) fn mounts(&self) -> Vec<PathBuf> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let all = self
            .v1
            .values()
            .chain(self.named.values())
            .chain(self.unified.iter());
        for p in all {
            if seen.insert(p.clone()) {
                out.push(p.clone());
            }
        }
        out
    }

    /// v2 controllers the container cgroup should get: wanted, available at the root, and
    /// not already served by a v1 hierarchy.
    pub(crate) fn v2_wanted(&self) -> Vec<String> {
        V2_WANTED
            .iter()
            .filter(|c| {
                let v1name = if **c == "io" { "blkio" } else { c };
                !self.v1.contains_key(v1name) && self.unified_controllers.iter().any(|u| u == *c)
            })
            .map(|c| c.to_string())
            .collect()
    }
}

/// Read a space-separated controller list; a missing or unreadable file means none.
pub(crate) fn read_controllers(path: &Path) -> Vec<String> {
    read_small(path)
        .map(|s| {
            s.split_whitespace()
                .map(|c| c.trim_start_matches('+').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the running kernel is at least `major.minor` (from /proc/sys/kernel/osrelease).
pub(crate) fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(rel) = read_small(Path::new("/proc/sys/kernel/osrelease")) else {
        return false;
    };
    let mut parts = rel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let maj = parts.next().unwrap_or(0);
    let min = parts.next().unwrap_or(0);
    (maj, min) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PURE_V2: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const COMOUNTED_V1: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/my\\040mem rw,nosuid shared:11 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/net_cls rw,nosuid shared:12 - cgroup cgroup rw,net_cls
33 25 0:29 / /sys/fs/cgroup/odd rw,nosuid - cgroup cgroup rw,name=odd
";

    #[test]
    fn parses_hybrid_mountinfo() {
        let h = Hierarchy::from_mountinfo(HYBRID);
        assert_eq!(h.layout(), Layout::Hybrid);
        for c in V1_CONTROLLERS {
            assert_eq!(
                h.v1_mount(c),
                Some(Path::new("/sys/fs/cgroup").join(c).as_path())
            );
        }
        assert_eq!(h.unified_mount(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(
            h.named.get("systemd").map(PathBuf::as_path),
            Some(Path::new("/sys/fs/cgroup/systemd"))
        );
        // 8 controllers + systemd + unified, all distinct.
        assert_eq!(h.mounts().len(), 10);
        assert!(h.v2_wanted().is_empty());
    }

    #[test]
    fn parses_pure_v2_mountinfo() {
        let h = Hierarchy::from_mountinfo(PURE_V2);
        assert_eq!(h.layout(), Layout::V2);
        assert_eq!(h.unified_mount(), Some(Path::new("/sys/fs/cgroup")));
        assert!(h.v1.is_empty());
    }

    #[test]
    fn parses_comounted_and_escaped_v1() {
        let h = Hierarchy::from_mountinfo(COMOUNTED_V1);
        assert_eq!(h.layout(), Layout::V1);
        let cc = Path::new("/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(h.v1_mount("cpu"), Some(cc));
        assert_eq!(h.v1_mount("cpuacct"), Some(cc));
        assert_eq!(
            h.v1_mount("memory"),
            Some(Path::new("/sys/fs/cgroup/my mem"))
        );
        assert_eq!(h.v1_mount("net_cls"), None);
        assert!(h.named.is_empty(), "unknown named hierarchies are ignored");
        // co-mounted cpu,cpuacct counted once
        assert_eq!(h.mounts().len(), 2);
        let ctl: BTreeMap<_, _> = h.controllers().into_iter().collect();
        assert!(ctl["cpu"]);
        assert!(ctl["memory"]);
        assert!(!ctl["pids"]);
        assert!(!ctl["io"]);
        assert!(!ctl["devices"]);
    }

    #[test]
    fn garbage_mountinfo_is_ignored() {
        let h = Hierarchy::from_mountinfo("x\n- -\n1 2 3 4 5 - cgroup\n\n\\\\\\");
        assert!(h.v1.is_empty() && h.unified.is_none());
    }

    #[test]
    fn test_tree_constructors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let h = Hierarchy::v2_at(dir.path());
        assert_eq!(h.layout(), Layout::V2);
        assert_eq!(h.unified_controllers(), ["cpu", "memory", "pids"]);
        assert_eq!(h.v2_wanted(), ["cpu", "memory", "pids"]);
        let ctl: BTreeMap<_, _> = h.controllers().into_iter().collect();
        assert!(ctl["cpu"]);
        assert!(!ctl["cpuset"]);
        assert!(!ctl["io"]);
        assert_eq!(ctl["devices"], crate::devices_bpf::supported());
        assert_eq!(h.place_root("cpuacct"), Some(Place::V2(dir.path().into())));

        let h1 = Hierarchy::v1_at(dir.path());
        assert_eq!(h1.layout(), Layout::V1);
        assert!(h1.controllers().iter().all(|(_, ok)| *ok));
        assert_eq!(h1.controllers()[4].0, "blkio");

        let hy = Hierarchy::hybrid_at(dir.path());
        assert_eq!(hy.layout(), Layout::Hybrid);
        assert!(hy.unified_controllers().is_empty());
        assert_eq!(hy.mounts().len(), 10);
    }

    #[test]
    fn hybrid_controller_placement() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("unified")).unwrap();
        std::fs::write(
            dir.path().join("unified/cgroup.controllers"),
            "memory pids io\n",
        )
        .unwrap();
        let mut h = Hierarchy::hybrid_at(dir.path());
        // Bound to v1 (as in a real hybrid host): v2 is not asked for them.
        assert!(h.v2_wanted().is_empty());
        assert!(matches!(h.place_root("memory"), Some(Place::V1(_))));
        // A controller v1 does not mount is served by the unified tree.
        h.v1.remove("pids");
        h.v1.remove("blkio");
        assert_eq!(h.v2_wanted(), ["pids", "io"]);
        let u = dir.path().join("unified");
        assert_eq!(h.place_root("pids"), Some(Place::V2(u.clone())));
        assert_eq!(h.place_root("blkio"), Some(Place::V2(u)));
        let ctl: BTreeMap<_, _> = h.controllers().into_iter().collect();
        assert!(ctl["io"] && ctl["pids"] && !ctl.contains_key("blkio"));
    }

    #[test]
    fn kernel_version_compare() {
        assert!(kernel_at_least(2, 6));
        assert!(!kernel_at_least(999, 0));
    }
}
