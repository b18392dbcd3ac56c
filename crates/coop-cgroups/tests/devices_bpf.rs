//! Host test of the cgroup v2 eBPF device filter: a child moved into a cgroup2 directory
//! with the filter attached may open only the allowed device nodes. Needs root and a
//! cgroup2 mount; skips with a printed reason otherwise.

use coop_cgroups::devices_bpf;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

/// Removes the test cgroup on drop (after the child has exited), also when a test fails.
struct CgDir(PathBuf);
impl Drop for CgDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.0) {
            eprintln!("cannot remove {}: {e}", self.0.display());
        }
    }
}

fn cgroup2_root() -> Option<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2")
            .then(|| PathBuf::from(pre.split_whitespace().nth(4).unwrap_or("/")))
    })
}

fn setup(tag: &str) -> Option<CgDir> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: not root");
        return None;
    }
    if !devices_bpf::supported() {
        eprintln!("SKIP: the kernel refuses BPF_PROG_TYPE_CGROUP_DEVICE programs");
        return None;
    }
    let Some(root) = cgroup2_root() else {
        eprintln!("SKIP: no cgroup2 mount");
        return None;
    };
    let dir = root.join(format!("coop-devbpf-{tag}-{}", std::process::id()));
    fs::create_dir(&dir).expect("mkdir test cgroup");
    Some(CgDir(dir))
}

/// Results of the child's probes, one byte each: 0 ok, else errno (capped at 255).
fn probe_in_child(cg: &Path, probes: &[&dyn Fn() -> std::io::Result<()>]) -> Vec<u8> {
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let procs = cg.join("cgroup.procs");
    // SAFETY: the test process forks; the child only does syscalls and plain Rust that does
    // not take locks held by other threads (no allocation-free guarantee is needed for a
    // test child that exits right away).
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(rd);
            let mut out = Vec::new();
            if fs::write(&procs, "0").is_err() {
                std::process::exit(99);
            }
            for p in probes {
                out.push(match p() {
                    Ok(()) => 0,
                    Err(e) => e.raw_os_error().unwrap_or(255).min(255) as u8,
                });
            }
            let _ = nix::unistd::write(&wr, &out);
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut buf = vec![0u8; probes.len()];
            let f = fs::File::from(rd);
            use std::io::Read;
            let n = (&f).read(&mut buf).unwrap_or(0);
            let st = waitpid(child, None).unwrap();
            assert_eq!(
                st,
                WaitStatus::Exited(child, 0),
                "child failed to join the cgroup"
            );
            buf.truncate(n);
            buf
        }
    }
}

fn open_r(p: &'static str) -> impl Fn() -> std::io::Result<()> {
    move || OpenOptions::new().read(true).open(p).map(drop)
}
fn open_w(p: &'static str) -> impl Fn() -> std::io::Result<()> {
    move || OpenOptions::new().write(true).open(p).map(drop)
}
/// A probe making a device node `kind` (S_IFCHR or S_IFBLK) major:minor at `path`.
fn make_node(
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
) -> impl Fn() -> std::io::Result<()> + '_ {
    move || {
        mknod(
            path,
            kind,
            Mode::from_bits_truncate(0o600),
            makedev(major, minor),
        )
        .map_err(std::io::Error::from)
    }
}

#[test]
fn filter_allows_only_listed_devices() {
    let Some(cg) = setup("exact") else { return };
    devices_bpf::apply(&cg.0, &["c 1:3 rwm", "c 1:5 rwm"]).unwrap();
    // The program fd was closed inside apply: the attachment must keep it working.
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("random");
    let mk = make_node(&node, SFlag::S_IFCHR, 1, 8);
    let (nw, zr, fr) = (
        open_w("/dev/null"),
        open_r("/dev/zero"),
        open_r("/dev/full"),
    );
    let got = probe_in_child(&cg.0, &[&nw, &zr, &fr, &mk]);
    let eperm = libc::EPERM as u8;
    assert_eq!(
        got,
        vec![0, 0, eperm, eperm],
        "null w, zero r, full r, mknod 1:8"
    );
}

#[test]
fn wildcard_minor_with_read_only_access() {
    let Some(cg) = setup("wild") else { return };
    devices_bpf::apply(&cg.0, &["c 1:* r"]).unwrap();
    let (fr, fw, nw) = (
        open_r("/dev/full"),
        open_w("/dev/full"),
        open_w("/dev/null"),
    );
    let got = probe_in_child(&cg.0, &[&fr, &fw, &nw]);
    let eperm = libc::EPERM as u8;
    assert_eq!(got, vec![0, eperm, eperm], "full r, full w, null w");
}

#[test]
fn bad_rule_is_named_and_nothing_attached() {
    let e = devices_bpf::apply(Path::new("/nonexistent-cgroup"), &["c 1:3 rwm", "q 1:1 r"])
        .unwrap_err();
    assert!(e.to_string().contains("\"q 1:1 r\""), "{e}");
}

#[test]
fn verifier_rejection_carries_its_log() {
    if !nix::unistd::geteuid().is_root() || !devices_bpf::supported() {
        eprintln!("SKIP: not root or no cgroup device BPF");
        return;
    }
    // `exit` with r0 never written: the verifier must refuse it and say why.
    let bad = [devices_bpf::Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    }];
    let e = devices_bpf::load(&bad, Path::new("/sys/fs/cgroup/x")).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("/sys/fs/cgroup/x") && s.contains("verifier log"),
        "{s}"
    );
    assert!(s.contains("R0"), "{s}");
    assert!(s.len() < 6000, "log is bounded: {} bytes", s.len());
}

#[test]
fn container_default_style_rules_mknod_anywhere_open_listed() {
    let Some(cg) = setup("deflt") else { return };
    // The shape of coop-container's default list: mknod of any char/block device, use of
    // a few listed nodes and every pty (136:*).
    let rules = [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 136:* rwm",
        "c 10:229 rwm",
    ];
    devices_bpf::apply(&cg.0, &rules).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (c, b) = (tmp.path().join("c"), tmp.path().join("b"));
    let mk_c = make_node(&c, SFlag::S_IFCHR, 1, 8);
    let mk_b = make_node(&b, SFlag::S_IFBLK, 7, 200);
    let (nw, fr) = (open_w("/dev/null"), open_r("/dev/full"));
    let got = probe_in_child(&cg.0, &[&mk_c, &mk_b, &nw, &fr]);
    let eperm = libc::EPERM as u8;
    assert_eq!(
        got,
        vec![0, 0, 0, eperm],
        "mknod c, mknod b, null w, full r"
    );
}
