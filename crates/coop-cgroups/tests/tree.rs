//! v1, v2 and hybrid logic against temporary directory trees shaped like cgroupfs. The kernel
//! provides interface files; here each test creates the ones the code must find.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use coop_cgroups::{Cgroup, CgroupError, Hierarchy, Layout, Limits};

/// Create `dir` with each (file, content).
fn files(dir: &Path, list: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, content) in list {
        fs::write(dir.join(name), content).unwrap();
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const V2_LEAF: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cgroup.freeze", "0"),
    ("cgroup.events", "populated 0\nfrozen 1\n"),
    ("cgroup.controllers", ""),
    ("cgroup.subtree_control", ""),
    ("cpu.max", "max 100000\n"),
    (
        "cpu.stat",
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
    ),
    ("memory.max", "max\n"),
    ("memory.current", "12345\n"),
    ("memory.high", "max\n"),
    ("pids.max", "max\n"),
    ("pids.current", "3\n"),
    ("cpuset.cpus", ""),
    ("cpuset.cpus.effective", "0-1\n"),
];

/// A v2 root offering `ctrls`, with `coop/c1` pre-made.
fn v2_tree(root: &Path, ctrls: &str) {
    files(
        root,
        &[
            ("cgroup.controllers", ctrls),
            ("cgroup.subtree_control", ""),
        ],
    );
    files(
        &root.join("coop"),
        &[
            ("cgroup.controllers", ctrls),
            ("cgroup.subtree_control", ""),
        ],
    );
    files(&root.join("coop/c1"), V2_LEAF);
}

#[test]
fn v2_create_enables_controllers_in_every_ancestor() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v2_tree(root, "cpuset cpu io memory hugetlb pids rdma\n");
    let h = Hierarchy::v2_at(root);
    assert_eq!(h.layout(), Layout::V2);
    let cg = Cgroup::new(&h, "coop/c1");
    cg.create().unwrap();
    assert!(cg.exists());
    // Only what a container needs, in one write per ancestor; the leaf itself untouched.
    assert_eq!(
        read(&root.join("cgroup.subtree_control")),
        "+cpu +cpuset +memory +pids +io"
    );
    assert_eq!(
        read(&root.join("coop/cgroup.subtree_control")),
        "+cpu +cpuset +memory +pids +io"
    );
    assert_eq!(read(&root.join("coop/c1/cgroup.subtree_control")), "");
    assert_eq!(cg.unified_path().unwrap(), root.join("coop/c1"));
    assert_eq!(cg.paths(), vec![root.join("coop/c1")]);
}

#[test]
fn v2_create_skips_enabled_and_unavailable_controllers() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v2_tree(root, "cpu memory pids\n");
    fs::write(root.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
    fs::write(
        root.join("coop/cgroup.subtree_control"),
        "cpu memory pids\n",
    )
    .unwrap();
    let cg = Cgroup::new(&Hierarchy::v2_at(root), "coop/c1");
    cg.create().unwrap();
    assert_eq!(read(&root.join("cgroup.subtree_control")), "+pids");
    // Nothing missing: the file keeps the kernel's own listing.
    assert_eq!(
        read(&root.join("coop/cgroup.subtree_control")),
        "cpu memory pids\n"
    );
}

#[test]
fn v2_apply_limits_writes_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v2_tree(root, "cpuset cpu io memory pids\n");
    let cg = Cgroup::new(&Hierarchy::v2_at(root), "coop/c1");
    cg.create().unwrap();
    cg.apply_limits(&Limits {
        cpu: Some(0.5),
        memory: Some(256 << 20),
        pids: Some(100),
        cpuset: Some("0-1".into()),
    })
    .unwrap();
    let d = root.join("coop/c1");
    assert_eq!(read(&d.join("cpu.max")), "50000 100000");
    assert_eq!(read(&d.join("memory.max")), "268435456");
    assert_eq!(read(&d.join("pids.max")), "100");
    assert_eq!(read(&d.join("cpuset.cpus")), "0-1");
    assert!(!d.join("memory.swap.max").exists(), "swap left alone");

    cg.apply_limits(&Limits {
        cpu: Some(1.5),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(read(&d.join("cpu.max")), "150000 100000");
    assert_eq!(read(&d.join("pids.max")), "100", "None leaves pids alone");
}

#[test]
fn v2_limits_checked_before_writing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v2_tree(root, "cpuset cpu io memory pids\n");
    let cg = Cgroup::new(&Hierarchy::v2_at(root), "coop/c1");
    for (lim, what) in [
        (
            Limits {
                cpu: Some(0.0),
                ..Default::default()
            },
            "cpu 0",
        ),
        (
            Limits {
                cpu: Some(f64::NAN),
                ..Default::default()
            },
            "cpu NaN",
        ),
        (
            Limits {
                memory: Some(1),
                cpuset: Some("3-1".into()),
                ..Default::default()
            },
            "reversed cpuset",
        ),
        (
            Limits {
                memory: Some(1),
                cpuset: Some("0;1".into()),
                ..Default::default()
            },
            "bad cpuset",
        ),
    ] {
        let e = cg.apply_limits(&lim).expect_err(what);
        assert!(matches!(e, CgroupError::InvalidValue { .. }), "{what}: {e}");
    }
    assert_eq!(read(&root.join("coop/c1/memory.max")), "max\n");
}

#[test]
fn v2_missing_controller_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v2_tree(root, "memory pids\n");
    let cg = Cgroup::new(&Hierarchy::v2_at(root), "coop/c1");
    cg.create().unwrap();
    let e = cg
        .apply_limits(&Limits {
            cpu: Some(0.5),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(&e, CgroupError::Unavailable { controller, .. } if controller == "cpu"),
        "{e}"
    );
    let ctl: BTreeMap<_, _> = Hierarchy::v2_at(root).controllers().into_iter().collect();
    assert!(!ctl["cpu"] && ctl["memory"] && ctl["pids"]);
}

#[test]
fn v2_stats_parse() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v2_tree(root, "cpuset cpu io memory pids\n");
    let cg = Cgroup::new(&Hierarchy::v2_at(root), "coop/c1");
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu_usage_ns, Some(1_500_000));
    assert_eq!(s.memory_bytes, Some(12345));
    assert_eq!(s.memory_limit, None, "max = no limit");
    assert_eq!(s.cpu_quota, None);
    assert_eq!(s.pids_current, Some(3));
    assert_eq!(s.pids_max, None);
    assert_eq!(s.cpuset.as_deref(), Some("0-1"), "falls back to effective");

    let d = root.join("coop/c1");
    fs::write(d.join("cpu.max"), "25000 50000\n").unwrap();
    fs::write(d.join("memory.max"), "1048576\n").unwrap();
    fs::write(d.join("pids.max"), "64\n").unwrap();
    fs::write(d.join("cpuset.cpus"), "1\n").unwrap();
    fs::remove_file(d.join("memory.current")).unwrap();
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu_quota, Some(0.5));
    assert_eq!(s.memory_limit, Some(1 << 20));
    assert_eq!(s.memory_bytes, None, "absent file = unknown");
    assert_eq!(s.pids_max, Some(64));
    assert_eq!(s.cpuset.as_deref(), Some("1"));

    fs::write(d.join("cpu.stat"), "usage_usec lots\n").unwrap();
    let e = cg.stats().unwrap_err();
    assert!(matches!(e, CgroupError::Parse { .. }), "{e}");
    assert!(e.to_string().contains("cpu.stat"), "{e}");

    let gone = Cgroup::new(&Hierarchy::v2_at(root), "coop/nope");
    assert!(matches!(gone.stats(), Err(CgroupError::NotFound { .. })));
}

#[test]
fn v2_set_keys() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v2_tree(root, "cpu memory pids hugetlb\n");
    let cg = Cgroup::new(&Hierarchy::v2_at(root), "coop/c1");
    cg.create().unwrap();
    cg.set_v2("memory.high", "1G").unwrap();
    assert_eq!(read(&root.join("coop/c1/memory.high")), "1G");
    // A controller outside the standard set is enabled on demand in the ancestors.
    files(&root.join("coop/c1"), &[("hugetlb.2MB.max", "max")]);
    cg.set_v2("hugetlb.2MB.max", "0").unwrap();
    assert_eq!(read(&root.join("cgroup.subtree_control")), "+hugetlb");
    assert_eq!(read(&root.join("coop/c1/hugetlb.2MB.max")), "0");
    cg.set_v2("cgroup.max.descendants", "5").unwrap_err(); // file absent in the tree
    files(&root.join("coop/c1"), &[("cgroup.max.descendants", "max")]);
    cg.set_v2("cgroup.max.descendants", "5").unwrap();

    let e = cg.set_v2("rdma.max", "x").unwrap_err();
    assert!(
        matches!(&e, CgroupError::NoV2 { controller, .. } if controller == "rdma"),
        "{e}"
    );
    let e = cg.set_v1("memory.limit_in_bytes", "1").unwrap_err();
    assert!(matches!(e, CgroupError::NoV1 { .. }), "{e}");
    assert!(e.to_string().contains("memory.limit_in_bytes"), "{e}");
    for key in [
        "memory",
        ".max",
        "memory.",
        "../memory.max",
        "x/y.z",
        "a\0.b",
    ] {
        let e = cg.set_v2(key, "1").unwrap_err();
        assert!(matches!(e, CgroupError::InvalidKey(_)), "{key:?}: {e}");
    }
}

#[test]
fn v2_procs_freeze_devices() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v2_tree(root, "cpu memory pids\n");
    let cg = Cgroup::new(&Hierarchy::v2_at(root), "coop/c1");
    cg.create().unwrap();
    cg.add_process(4242).unwrap();
    assert_eq!(read(&root.join("coop/c1/cgroup.procs")), "4242");
    assert_eq!(cg.procs().unwrap(), vec![4242]);
    assert!(cg.add_process(0).is_err());
    assert!(cg.add_process(-5).is_err());

    cg.freeze().unwrap();
    assert_eq!(read(&root.join("coop/c1/cgroup.freeze")), "1");
    assert!(cg.is_frozen().unwrap(), "cgroup.events says frozen 1");
    fs::write(
        root.join("coop/c1/cgroup.events"),
        "populated 1\nfrozen 0\n",
    )
    .unwrap();
    assert!(!cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert_eq!(read(&root.join("coop/c1/cgroup.freeze")), "0");

    // v2 devices go to an eBPF filter; a plain directory is no cgroup to attach it to (or
    // the load is refused when not root): an error naming the directory, nothing written.
    let e = cg.deny_devices_except(&["c 1:3 rwm"]).unwrap_err();
    assert!(matches!(e, CgroupError::DeviceFilter(_)), "{e}");
    assert!(e.to_string().contains("coop/c1"), "{e}");
    assert!(!root.join("coop/c1/devices.deny").exists());
    assert!(cg.deny_devices_except(&["c 1:3 rwx"]).is_err());

    // Pids in a plain directory are not ours to kill.
    let e = cg.kill_all().unwrap_err();
    assert!(matches!(e, CgroupError::NotCgroupFs { .. }), "{e}");
    fs::write(root.join("coop/c1/cgroup.procs"), "12 x\n").unwrap();
    assert!(matches!(cg.procs(), Err(CgroupError::Parse { .. })));
}

#[test]
fn invalid_relative_paths_refused() {
    let t = tempfile::tempdir().unwrap();
    let h = Hierarchy::v2_at(t.path());
    for rel in ["", "/", ".", "./", "../x", "a/../../b", "a\0b"] {
        let cg = Cgroup::new(&h, rel);
        assert!(
            matches!(cg.create(), Err(CgroupError::InvalidPath(_))),
            "{rel:?}"
        );
        assert!(matches!(cg.destroy(), Err(CgroupError::InvalidPath(_))));
        assert!(matches!(cg.kill_all(), Err(CgroupError::InvalidPath(_))));
        assert!(cg.paths().is_empty());
        assert!(cg.unified_path().is_none());
    }
    let cg = Cgroup::new(&h, "/coop//x/./");
    assert_eq!(cg.unified_path().unwrap(), t.path().join("coop/x"));
}

/// Every v1 controller dir plus a `rel` under each, with typical files.
fn v1_tree(root: &Path, rel: &str, memsw: bool) {
    for c in coop_cgroups::V1_CONTROLLERS {
        files(&root.join(c).join(rel), &[("cgroup.procs", "")]);
    }
    files(
        &root.join("cpuset"),
        &[("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")],
    );
    // Intermediate levels of `rel` in cpuset, empty as the kernel makes them.
    let mut d = root.join("cpuset");
    for comp in Path::new(rel).components() {
        d.push(comp);
        files(&d, &[("cpuset.cpus", "\n"), ("cpuset.mems", "\n")]);
    }
    files(
        &root.join("cpu").join(rel),
        &[
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_quota_us", "-1\n"),
        ],
    );
    files(
        &root.join("cpuacct").join(rel),
        &[("cpuacct.usage", "123456789\n")],
    );
    let mut mem = vec![
        ("memory.limit_in_bytes", "9223372036854771712\n"),
        ("memory.usage_in_bytes", "4096\n"),
    ];
    if memsw {
        mem.push(("memory.memsw.limit_in_bytes", "9223372036854771712\n"));
    }
    files(&root.join("memory").join(rel), &mem);
    files(
        &root.join("pids").join(rel),
        &[("pids.max", "max\n"), ("pids.current", "2\n")],
    );
    files(
        &root.join("freezer").join(rel),
        &[("freezer.state", "THAWED\n")],
    );
    files(
        &root.join("devices").join(rel),
        &[("devices.allow", ""), ("devices.deny", "")],
    );
}

#[test]
fn v1_create_copies_cpuset_at_every_level() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v1_tree(root, "coop/c1", true);
    let h = Hierarchy::v1_at(root);
    assert_eq!(h.layout(), Layout::V1);
    let cg = Cgroup::new(&h, "coop/c1");
    cg.create().unwrap();
    for lvl in ["coop", "coop/c1"] {
        assert_eq!(
            read(&root.join("cpuset").join(lvl).join("cpuset.cpus")),
            "0-3"
        );
        assert_eq!(
            read(&root.join("cpuset").join(lvl).join("cpuset.mems")),
            "0"
        );
    }
    assert_eq!(cg.unified_path(), None);
    assert_eq!(cg.paths().len(), 8);
    assert_eq!(cg.path("cpuacct").unwrap(), root.join("cpuacct/coop/c1"));
}

#[test]
fn v1_create_keeps_existing_cpuset() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v1_tree(root, "c2", true);
    fs::write(root.join("cpuset/c2/cpuset.cpus"), "1\n").unwrap();
    Cgroup::new(&Hierarchy::v1_at(root), "c2").create().unwrap();
    assert_eq!(read(&root.join("cpuset/c2/cpuset.cpus")), "1\n");
    assert_eq!(read(&root.join("cpuset/c2/cpuset.mems")), "0");
}

#[test]
fn v1_apply_limits_writes_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v1_tree(root, "c1", true);
    let cg = Cgroup::new(&Hierarchy::v1_at(root), "c1");
    cg.create().unwrap();
    cg.apply_limits(&Limits {
        cpu: Some(0.5),
        memory: Some(256 << 20),
        pids: Some(100),
        cpuset: Some("1".into()),
    })
    .unwrap();
    assert_eq!(read(&root.join("cpu/c1/cpu.cfs_period_us")), "100000");
    assert_eq!(read(&root.join("cpu/c1/cpu.cfs_quota_us")), "50000");
    assert_eq!(
        read(&root.join("memory/c1/memory.limit_in_bytes")),
        "268435456"
    );
    assert_eq!(
        read(&root.join("memory/c1/memory.memsw.limit_in_bytes")),
        "268435456"
    );
    assert_eq!(read(&root.join("pids/c1/pids.max")), "100");
    assert_eq!(read(&root.join("cpuset/c1/cpuset.cpus")), "1");
}

#[test]
fn v1_memory_without_memsw() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v1_tree(root, "c1", false);
    let cg = Cgroup::new(&Hierarchy::v1_at(root), "c1");
    cg.apply_limits(&Limits {
        memory: Some(1 << 20),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        read(&root.join("memory/c1/memory.limit_in_bytes")),
        "1048576"
    );
    assert!(!root.join("memory/c1/memory.memsw.limit_in_bytes").exists());
}

#[test]
fn v1_stats_parse() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v1_tree(root, "c1", true);
    let cg = Cgroup::new(&Hierarchy::v1_at(root), "c1");
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu_usage_ns, Some(123_456_789));
    assert_eq!(s.memory_bytes, Some(4096));
    assert_eq!(s.memory_limit, None, "kernel's 'unlimited' value");
    assert_eq!(s.cpu_quota, None, "-1 = no quota");
    assert_eq!(s.pids_current, Some(2));
    assert_eq!(s.pids_max, None);
    assert_eq!(s.cpuset, None, "empty cpuset.cpus");

    fs::write(root.join("cpu/c1/cpu.cfs_quota_us"), "150000\n").unwrap();
    fs::write(root.join("memory/c1/memory.limit_in_bytes"), "268435456\n").unwrap();
    fs::write(root.join("pids/c1/pids.max"), "100\n").unwrap();
    fs::write(root.join("cpuset/c1/cpuset.cpus"), "0-1\n").unwrap();
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu_quota, Some(1.5));
    assert_eq!(s.memory_limit, Some(256 << 20));
    assert_eq!(s.pids_max, Some(100));
    assert_eq!(s.cpuset.as_deref(), Some("0-1"));

    fs::write(root.join("cpuacct/c1/cpuacct.usage"), "garbage\n").unwrap();
    let e = cg.stats().unwrap_err().to_string();
    assert!(
        e.contains("cpuacct/c1/cpuacct.usage") && e.contains("garbage"),
        "{e}"
    );
}

#[test]
fn v1_set_keys_and_errors() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v1_tree(root, "c1", true);
    let cg = Cgroup::new(&Hierarchy::v1_at(root), "c1");
    cg.set_v1("memory.limit_in_bytes", "1000").unwrap();
    assert_eq!(read(&root.join("memory/c1/memory.limit_in_bytes")), "1000");
    cg.set_v1("cpuacct.usage", "0").unwrap();
    assert_eq!(read(&root.join("cpuacct/c1/cpuacct.usage")), "0");

    let e = cg.set_v1("net_cls.classid", "1").unwrap_err();
    assert!(
        matches!(&e, CgroupError::NoV1 { controller, .. } if controller == "net_cls"),
        "{e}"
    );
    // The file does not exist: the message names the value, the file and the errno text.
    let e = cg.set_v1("cpu.nonexistent", "abc").unwrap_err().to_string();
    let want = format!(
        "cannot write \"abc\" to {}: No such file or directory",
        root.join("cpu/c1/cpu.nonexistent").display()
    );
    assert_eq!(e, want);
    let e = cg.set_v2("memory.max", "1").unwrap_err();
    assert!(matches!(e, CgroupError::NoV2 { .. }), "{e}");
}

#[test]
fn v1_devices_freezer_procs() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v1_tree(root, "c1", true);
    let cg = Cgroup::new(&Hierarchy::v1_at(root), "c1");
    // A bad rule anywhere in the list: nothing is written.
    let e = cg
        .deny_devices_except(&["c 1:3 rwm", "z 1:3 rwm"])
        .unwrap_err();
    assert!(matches!(e, CgroupError::InvalidValue { .. }), "{e}");
    assert_eq!(read(&root.join("devices/c1/devices.deny")), "");
    for bad in ["c 1 rwm", "c a:3 rwm", "c 1:3", "c 1:3 rr", "c 1:3 x", ""] {
        assert!(cg.deny_devices_except(&[bad]).is_err(), "{bad:?}");
    }
    cg.deny_devices_except(&["c 1:3 rwm", "c *:* m", "b 8:0 r"])
        .unwrap();
    assert_eq!(read(&root.join("devices/c1/devices.deny")), "a");
    // Each rule is its own write; the test file keeps the last one.
    assert_eq!(read(&root.join("devices/c1/devices.allow")), "b 8:0 r");

    assert!(!cg.is_frozen().unwrap());
    cg.freeze().unwrap();
    assert_eq!(read(&root.join("freezer/c1/freezer.state")), "FROZEN");
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert_eq!(read(&root.join("freezer/c1/freezer.state")), "THAWED");
    assert!(!cg.is_frozen().unwrap());

    cg.add_process(777).unwrap();
    for c in coop_cgroups::V1_CONTROLLERS {
        assert_eq!(read(&root.join(c).join("c1/cgroup.procs")), "777", "{c}");
    }
    fs::write(root.join("pids/c1/cgroup.procs"), "778\n").unwrap();
    assert_eq!(cg.procs().unwrap(), vec![777, 778]);
}

#[test]
fn hybrid_tree_mirrors_into_unified_and_systemd() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    v1_tree(root, "coop/c1", true);
    files(&root.join("systemd/coop/c1"), &[("cgroup.procs", "")]);
    files(
        &root.join("unified"),
        &[("cgroup.controllers", "hugetlb\n")],
    );
    files(
        &root.join("unified/coop/c1"),
        &[("cgroup.procs", ""), ("cgroup.freeze", "0")],
    );
    let h = Hierarchy::hybrid_at(root);
    assert_eq!(h.layout(), Layout::Hybrid);
    assert!(
        h.controllers().iter().all(|(_, ok)| *ok),
        "{:?}",
        h.controllers()
    );
    let cg = Cgroup::new(&h, "coop/c1");
    cg.create().unwrap();
    assert!(
        !root.join("unified/cgroup.subtree_control").exists(),
        "hugetlb is not needed: nothing enabled"
    );
    assert_eq!(cg.unified_path().unwrap(), root.join("unified/coop/c1"));
    assert_eq!(cg.paths().len(), 10);
    cg.add_process(999).unwrap();
    assert_eq!(read(&root.join("unified/coop/c1/cgroup.procs")), "999");
    assert_eq!(read(&root.join("systemd/coop/c1/cgroup.procs")), "999");
    assert_eq!(read(&root.join("memory/coop/c1/cgroup.procs")), "999");
    // v1 serves the controllers; v2 keys for them are refused.
    assert!(matches!(
        cg.set_v2("memory.max", "1"),
        Err(CgroupError::NoV2 { .. })
    ));
    cg.apply_limits(&Limits {
        cpu: Some(0.25),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(read(&root.join("cpu/coop/c1/cpu.cfs_quota_us")), "25000");
    // The v1 freezer is used, not cgroup.freeze.
    cg.freeze().unwrap();
    assert_eq!(read(&root.join("freezer/coop/c1/freezer.state")), "FROZEN");
    assert_eq!(read(&root.join("unified/coop/c1/cgroup.freeze")), "0");
}
