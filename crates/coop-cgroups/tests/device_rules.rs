//! Host tests of user device rules (`devices.allow` / `devices.deny` after LXC's default
//! list) through `Cgroup::set_device_rules`:
//! - on the cgroup2 mount (a pure-v2 `Hierarchy` over it, so the eBPF path is taken even
//!   on a hybrid host), a child process moved into the cgroup may open exactly what the
//!   composed policy permits;
//! - on the v1 devices hierarchy, the kernel's own composition (devices.list) equals
//!   `DevicePolicy`'s, and the same probes give the same answers.
//!
//! Needs root; skips with a printed reason where BPF device programs, cgroup2 or v1 devices
//! are missing. Cgroups are named "dk-<pid>-<n>-<tag>" and destroyed by Drop guards.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use coop_cgroups::devices::DevType;
use coop_cgroups::{devices_bpf, Cgroup, DeviceOp, DevicePolicy, Hierarchy};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use DeviceOp::{Allow, Deny};

/// LXC's default list, as coop-container applies it.
const DEFAULT: &[&str] = coop_cgroups::devices::LXC_DEFAULT_DEVICES;

static N: AtomicUsize = AtomicUsize::new(0);

struct CgGuard(Cgroup);
impl Drop for CgGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.destroy() {
            eprintln!("cleanup of {}: {e}", self.0.rel());
        }
    }
}

fn new_cgroup(h: &Hierarchy, tag: &str) -> CgGuard {
    let name = format!(
        "dk-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let g = CgGuard(Cgroup::new(h, &name));
    g.0.create().expect("create test cgroup");
    g
}

fn cgroup2_mount() -> Option<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2")
            .then(|| PathBuf::from(pre.split_whitespace().nth(4).unwrap_or("/")))
    })
}

/// A pure-v2 view of this host's cgroup2 mount, or the SKIP reason.
fn v2_hierarchy() -> Result<Hierarchy, &'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root");
    }
    if !devices_bpf::supported() {
        return Err("the kernel refuses BPF_PROG_TYPE_CGROUP_DEVICE programs");
    }
    cgroup2_mount()
        .map(|m| Hierarchy::v2_at(&m))
        .ok_or("no cgroup2 mount")
}

/// One probe: a device access the child tries.
#[derive(Clone, Copy, Debug)]
enum Probe {
    Read(&'static str),
    Write(&'static str),
    Mknod(SFlag, u64, u64),
}

impl Probe {
    /// `node` is where a mknod probe creates its node (made before the fork).
    fn run(self, node: &Path) -> std::io::Result<()> {
        match self {
            Probe::Read(p) => OpenOptions::new().read(true).open(p).map(drop),
            Probe::Write(p) => OpenOptions::new().write(true).open(p).map(drop),
            Probe::Mknod(kind, maj, min) => mknod(
                node,
                kind,
                Mode::from_bits_truncate(0o600),
                makedev(maj, min),
            )
            .map_err(std::io::Error::from),
        }
    }

    /// What a policy says about this probe (host paths' numbers are fixed by Linux).
    fn expected(self, p: &DevicePolicy) -> bool {
        let num = |path: &str| match path {
            "/dev/null" => (1, 3),
            "/dev/zero" => (1, 5),
            "/dev/full" => (1, 7),
            "/dev/urandom" => (1, 9),
            "/dev/net/tun" => (10, 200),
            other => panic!("no numbers for {other}"),
        };
        match self {
            Probe::Read(path) => {
                let (a, b) = num(path);
                p.permits(DevType::Char, a, b, "r")
            }
            Probe::Write(path) => {
                let (a, b) = num(path);
                p.permits(DevType::Char, a, b, "w")
            }
            Probe::Mknod(kind, a, b) => {
                let t = if kind == SFlag::S_IFBLK {
                    DevType::Block
                } else {
                    DevType::Char
                };
                p.permits(t, a as u32, b as u32, "m")
            }
        }
    }
}

/// Fork a child that joins each `cgroup.procs` file and runs the probes; one result per
/// probe: true when permitted. Any errno other than EPERM fails the test.
fn probe_in_child(procs: &[PathBuf], probes: &[Probe]) -> Vec<bool> {
    let tmp = tempfile::tempdir().unwrap();
    // Everything the child needs is allocated before the fork: other test threads may hold
    // the allocator's lock at that moment.
    let nodes: Vec<PathBuf> = (0..probes.len())
        .map(|i| tmp.path().join(format!("n{i}")))
        .collect();
    let mut out: Vec<u8> = Vec::with_capacity(probes.len());
    let (rd, wr) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only makes syscalls on data prepared above (short paths go through
    // stack buffers, `out` has its capacity) and leaves with _exit, never returning into
    // the test harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(rd);
            for p in procs {
                if fs::write(p, "0").is_err() {
                    // SAFETY: _exit ends the forked child without running the parent's
                    // atexit handlers or destructors.
                    unsafe { libc::_exit(99) };
                }
            }
            for (p, node) in probes.iter().zip(&nodes) {
                out.push(match p.run(node) {
                    Ok(()) => 0,
                    Err(e) => e.raw_os_error().unwrap_or(255).min(255) as u8,
                });
            }
            let _ = nix::unistd::write(&wr, &out);
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut buf = vec![0u8; probes.len()];
            use std::io::Read;
            let n = (&fs::File::from(rd)).read(&mut buf).unwrap_or(0);
            let st = waitpid(child, None).unwrap();
            assert_eq!(st, WaitStatus::Exited(child, 0), "child failed to join");
            assert_eq!(n, probes.len(), "child reported every probe");
            buf.iter()
                .zip(probes)
                .map(|(&e, p)| {
                    assert!(
                        e == 0 || e == libc::EPERM as u8,
                        "{p:?}: unexpected errno {e}"
                    );
                    e == 0
                })
                .collect()
        }
    }
}

const PROBES: &[Probe] = &[
    Probe::Read("/dev/null"),
    Probe::Write("/dev/null"),
    Probe::Read("/dev/zero"),
    Probe::Read("/dev/full"),
    Probe::Write("/dev/full"),
    Probe::Read("/dev/urandom"),
    Probe::Read("/dev/net/tun"),
    Probe::Mknod(SFlag::S_IFCHR, 1, 8),
    Probe::Mknod(SFlag::S_IFBLK, 7, 200),
];

/// User rule sets and the probe results they must give, in PROBES order:
/// null r, null w, zero r, full r, full w, urandom r, tun r, mknod c 1:8, mknod b 7:200.
/// A scenario: name, user rules, expected probe results.
type Scenario = (&'static str, Vec<(DeviceOp, &'static str)>, [bool; 9]);

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "default",
            vec![],
            [true, true, true, true, true, true, false, true, true],
        ),
        (
            "deny-null",
            vec![(Deny, "c 1:3 rwm")],
            [false, false, true, true, true, true, false, true, true],
        ),
        (
            "allow-tun",
            vec![(Allow, "c 10:200 rwm")],
            [true, true, true, true, true, true, true, true, true],
        ),
        (
            "urandom-only",
            vec![(Deny, "a"), (Allow, "c 1:9 rwm")],
            [false, false, false, false, false, true, false, false, false],
        ),
        (
            "allow-all-minus",
            vec![(Allow, "a"), (Deny, "c 1:3 w"), (Deny, "b *:* m")],
            [true, false, true, true, true, true, true, true, false],
        ),
    ]
}

fn check_scenarios(h: &Hierarchy, procs_of: impl Fn(&Cgroup) -> Vec<PathBuf>) {
    for (tag, user, want) in scenarios() {
        let g = new_cgroup(h, tag);
        let notes = g.0.set_device_rules(DEFAULT, &user).unwrap();
        assert!(notes.is_empty(), "{tag}: {notes:?}");
        let mut policy = DevicePolicy::allowing(DEFAULT).unwrap();
        for (op, v) in &user {
            policy.apply_str(*op, v).unwrap();
        }
        let from_policy: Vec<bool> = PROBES.iter().map(|p| p.expected(&policy)).collect();
        assert_eq!(
            from_policy, want,
            "{tag}: the table agrees with DevicePolicy"
        );
        let got = probe_in_child(&procs_of(&g.0), PROBES);
        assert_eq!(got, want, "{tag}: kernel enforcement, probes {PROBES:?}");
    }
}

#[test]
fn v2_bpf_enforces_user_rules_after_the_default() {
    let h = match v2_hierarchy() {
        Ok(h) => h,
        Err(why) => return eprintln!("SKIP: {why}"),
    };
    check_scenarios(&h, |cg| {
        vec![cg.unified_path().unwrap().join("cgroup.procs")]
    });
}

#[test]
fn v2_bad_user_rule_names_key_and_value_and_attaches_nothing() {
    let h = match v2_hierarchy() {
        Ok(h) => h,
        Err(why) => return eprintln!("SKIP: {why}"),
    };
    let g = new_cgroup(&h, "bad");
    let e =
        g.0.set_device_rules(DEFAULT, &[(Allow, "c 10:200 rwm"), (Deny, "c 1:x rwm")])
            .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("devices.deny") && s.contains("\"c 1:x rwm\""),
        "{s}"
    );
    // Nothing attached: the child may still write /dev/full (not in the default list).
    let got = probe_in_child(
        &[g.0.unified_path().unwrap().join("cgroup.procs")],
        &[Probe::Write("/dev/full"), Probe::Read("/dev/net/tun")],
    );
    assert_eq!(got, [true, true]);
}

/// The v1 devices hierarchy of this host, when it has one.
fn v1_devices() -> Option<(Hierarchy, PathBuf)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: not root");
        return None;
    }
    let h = Hierarchy::detect().ok()?;
    let Some(m) = h.v1_mount("devices").map(Path::to_path_buf) else {
        eprintln!("SKIP: no cgroup v1 devices hierarchy on this host");
        return None;
    };
    Some((h, m))
}

#[test]
fn v1_files_get_user_rules_after_the_default() {
    let Some((h, mount)) = v1_devices() else {
        return;
    };
    check_scenarios(&h, |cg| vec![mount.join(cg.rel()).join("cgroup.procs")]);
}

#[test]
fn v1_kernel_composition_equals_device_policy() {
    let Some((h, mount)) = v1_devices() else {
        return;
    };
    let seqs: Vec<Vec<(DeviceOp, &str)>> = vec![
        vec![
            (Allow, "c 10:200 rw"),
            (Allow, "c 10:200 m"),
            (Deny, "c 1:3 rwm"),
        ],
        vec![(Deny, "c 1:5 w"), (Deny, "c 136:* rw"), (Allow, "b 7:* r")],
        vec![(Deny, "a"), (Allow, "c 1:9 rwm"), (Allow, "b  8:0   r")],
        vec![(Allow, "c *:* rwm"), (Deny, "c 1:3 rwm")],
    ];
    for (i, user) in seqs.iter().enumerate() {
        let g = new_cgroup(&h, &format!("list{i}"));
        g.0.set_device_rules(DEFAULT, user).unwrap();
        let list = fs::read_to_string(mount.join(g.0.rel()).join("devices.list")).unwrap();
        let mut kernel: Vec<String> = list.lines().map(str::to_string).collect();
        let mut policy = DevicePolicy::allowing(DEFAULT).unwrap();
        for (op, v) in user {
            policy.apply_str(*op, v).unwrap();
        }
        assert!(!policy.allows_by_default());
        let mut ours: Vec<String> = policy.exceptions().iter().map(|r| r.to_string()).collect();
        kernel.sort();
        ours.sort();
        assert_eq!(kernel, ours, "sequence {user:?}");
    }
    // Allow-all: the kernel lists "a *:* rwm" only.
    let g = new_cgroup(&h, "lista");
    g.0.set_device_rules(DEFAULT, &[(Allow, "a"), (Deny, "c 1:3 w")])
        .unwrap();
    let list = fs::read_to_string(mount.join(g.0.rel()).join("devices.list")).unwrap();
    assert_eq!(list.trim(), "a *:* rwm");
}

/// A fake v1 tree (plain files): every rule is parsed before anything is written, and the
/// user's rules are written after the default list, in canonical single-space form.
#[test]
fn v1_fake_tree_parses_all_first_and_writes_user_rules_last() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("devices/dk1");
    fs::create_dir_all(&dir).unwrap();
    for f in ["devices.allow", "devices.deny"] {
        fs::write(dir.join(f), "").unwrap();
    }
    let cg = Cgroup::new(&Hierarchy::v1_at(t.path()), "dk1");
    let e = cg
        .set_device_rules(DEFAULT, &[(Allow, "c 10:200 rwm"), (Deny, "c 1:3 rwz")])
        .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("devices.deny") && s.contains("\"c 1:3 rwz\""),
        "{s}"
    );
    assert_eq!(fs::read_to_string(dir.join("devices.deny")).unwrap(), "");
    assert_eq!(fs::read_to_string(dir.join("devices.allow")).unwrap(), "");

    let notes = cg
        .set_device_rules(DEFAULT, &[(Deny, "c  1:3   rwm"), (Allow, "c 10:200 wr")])
        .unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    // Each write replaces a plain file's content: the last rule of each kind remains.
    assert_eq!(
        fs::read_to_string(dir.join("devices.deny")).unwrap(),
        "c 1:3 rwm"
    );
    assert_eq!(
        fs::read_to_string(dir.join("devices.allow")).unwrap(),
        "c 10:200 rw"
    );

    // A deny that cannot cut into a wider allow is reported back.
    let notes = cg
        .set_device_rules(&["c *:* rwm"], &[(Deny, "c 1:3 rwm")])
        .unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("c 1:3 rwm has no effect"), "{}", notes[0]);
}
