//! Tests against the running host's cgroups (needs root). Each test uses a unique cgroup
//! "coop-test-<pid>-<n>" and removes it, also on failure, through Drop guards. Tests whose
//! controllers are missing print "SKIP: <reason>" and return.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use coop_cgroups::{Cgroup, CgroupError, Hierarchy, Layout, Limits};

static N: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "coop-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Destroys the cgroup when the test ends, however it ends.
struct CgGuard(Cgroup);
impl Drop for CgGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.destroy() {
            eprintln!("cleanup of {}: {e}", self.0.rel());
        }
    }
}

/// A new cgroup `unique(tag)`, created, and the guard that destroys it.
fn created(h: &Hierarchy, tag: &str) -> (Cgroup, CgGuard) {
    let cg = Cgroup::new(h, &unique(tag));
    let guard = CgGuard(cg.clone());
    cg.create().unwrap();
    (cg, guard)
}

/// Kills and reaps the child when the test ends.
struct ChildGuard(Child);
impl ChildGuard {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &str) -> ChildGuard {
    ChildGuard(
        Command::new("sh")
            .args(["-c", cmd])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh"),
    )
}

fn spawn_sleep() -> ChildGuard {
    ChildGuard(
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    )
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The detected hierarchy when it has every v1 controller we test; else the SKIP reason.
fn v1_host() -> Result<Hierarchy, String> {
    if !is_root() {
        return Err("not root".into());
    }
    let h = Hierarchy::detect().map_err(|e| e.to_string())?;
    if h.layout() == Layout::V2 {
        return Err("host has no cgroup v1 controllers (pure v2)".into());
    }
    for c in [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices",
    ] {
        if h.v1_mount(c).is_none() {
            return Err(format!("v1 controller {c} is not mounted"));
        }
    }
    Ok(h)
}

macro_rules! need {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reason) => {
                eprintln!("SKIP: {reason}");
                return;
            }
        }
    };
}

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn proc_state(pid: i32) -> String {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}

/// Lines of /proc/<pid>/cgroup.
fn proc_cgroups(pid: i32) -> String {
    read(Path::new(&format!("/proc/{pid}/cgroup")))
}

fn usage_ns(cg: &Cgroup) -> u64 {
    cg.stats().unwrap().cpu_usage_ns.expect("cpu usage")
}

/// CPUs used by the cgroup over `wall`.
fn measure_cpu(cg: &Cgroup, wall: Duration) -> f64 {
    let u0 = usage_ns(cg);
    let t0 = Instant::now();
    sleep(wall);
    let u1 = usage_ns(cg);
    let dt = t0.elapsed();
    (u1 - u0) as f64 / dt.as_nanos() as f64
}

/// Half a CPU, 64 MiB and 50 pids: a limit on each of the three controllers.
fn three_limits() -> Limits {
    Limits {
        cpu: Some(0.5),
        memory: Some(64 << 20),
        pids: Some(50),
        cpuset: None,
    }
}

/// The stats of a cgroup under [`three_limits`] with one process in it.
fn assert_three_limits_in_stats(s: &coop_cgroups::Stats) {
    assert_eq!(s.pids_current, Some(1));
    assert_eq!(s.pids_max, Some(50));
    assert_eq!(s.memory_limit, Some(64 << 20));
    assert_eq!(s.cpu_quota, Some(0.5));
}

/// A busy loop in `cg` (limited to half a CPU): asserts it uses 0.5 CPU (±0.05) over 3 s,
/// `label` naming the case in the log. Returns the loop, still running.
fn busy_loop_uses_half_a_cpu(cg: &Cgroup, label: &str) -> ChildGuard {
    let child = spawn("while :; do :; done");
    cg.add_process(child.pid()).unwrap();
    sleep(Duration::from_millis(300));
    let used = measure_cpu(cg, Duration::from_secs(3));
    eprintln!("{label} busy loop with cpu=0.5 used {used:.3} CPU over 3 s");
    assert!((used - 0.5).abs() <= 0.05, "used {used:.3} CPU");
    child
}

#[test]
fn detect_matches_this_host() {
    need!(if is_root() { Ok(()) } else { Err("not root") });
    let h = Hierarchy::detect().unwrap();
    let mountinfo = read(Path::new("/proc/self/mountinfo"));
    let has_v2 = mountinfo.lines().any(|l| l.contains(" - cgroup2 "));
    let has_v1 = mountinfo
        .lines()
        .any(|l| l.contains(" - cgroup ") && l.contains(",cpu"));
    let want = match (has_v1, has_v2) {
        (true, true) => Layout::Hybrid,
        (false, true) => Layout::V2,
        _ => Layout::V1,
    };
    assert_eq!(h.layout(), want);
    let ctl = h.controllers();
    eprintln!("layout {:?}, controllers {ctl:?}", h.layout());
    let names: Vec<&str> = ctl.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..4], ["cpu", "cpuset", "memory", "pids"]);
    assert_eq!(names[5..], ["devices", "freezer"]);
    if let Some(m) = h.v1_mount("memory") {
        assert!(m.join("memory.limit_in_bytes").exists(), "{}", m.display());
    }
    if let Some(u) = h.unified_mount() {
        assert!(u.join("cgroup.controllers").exists(), "{}", u.display());
    }
}

#[test]
fn v1_lifecycle() {
    let h = need!(v1_host());
    let cg = Cgroup::new(&h, &unique("life"));
    let guard = CgGuard(cg.clone());
    assert!(!cg.exists());
    cg.create().unwrap();
    assert!(cg.exists());
    for p in cg.paths() {
        assert!(p.is_dir(), "{}", p.display());
    }
    let cpuset = cg.path("cpuset").unwrap();
    assert!(!read(&cpuset.join("cpuset.cpus")).is_empty(), "cpus copied");
    assert!(!read(&cpuset.join("cpuset.mems")).is_empty(), "mems copied");
    if h.layout() == Layout::Hybrid {
        assert!(cg.unified_path().unwrap().is_dir());
    }

    cg.apply_limits(&three_limits()).unwrap();
    let cpu = cg.path("cpu").unwrap();
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    let mem = cg.path("memory").unwrap();
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
    let memsw = mem.join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        assert_eq!(read(&memsw), "67108864");
    } else {
        eprintln!("note: no memory.memsw.limit_in_bytes on this kernel (swap accounting off)");
    }
    assert_eq!(read(&cg.path("pids").unwrap().join("pids.max")), "50");

    // The kernel's refusal is reported with file, value and errno text.
    let e = cg
        .set_v1("cpu.cfs_quota_us", "abc")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "cannot write \"abc\" to {}: Invalid argument",
            cpu.join("cpu.cfs_quota_us").display()
        )
    );
    if !h.unified_controllers().iter().any(|c| c == "memory") {
        assert!(matches!(
            cg.set_v2("memory.max", "1"),
            Err(CgroupError::NoV2 { .. })
        ));
    }
    cg.set_v1("memory.soft_limit_in_bytes", "33554432").unwrap();
    assert_eq!(read(&mem.join("memory.soft_limit_in_bytes")), "33554432");

    cg.deny_devices_except(&["c 1:3 rwm", "c 1:5 rwm"]).unwrap();
    assert_eq!(
        read(&cg.path("devices").unwrap().join("devices.list")),
        "c 1:3 rwm\nc 1:5 rwm"
    );

    let mut child = spawn_sleep();
    let pid = child.pid();
    cg.add_process(pid).unwrap();
    assert_eq!(cg.procs().unwrap(), vec![pid]);
    let lines = proc_cgroups(pid);
    let rel = cg.rel();
    for want in [
        format!(":memory:/{rel}"),
        format!(":cpu:/{rel}"),
        format!(":pids:/{rel}"),
    ] {
        assert!(lines.contains(&want), "{want} not in\n{lines}");
    }
    if h.layout() == Layout::Hybrid {
        // Mirrored into cgroup2 and the named systemd hierarchy.
        assert!(lines.contains(&format!("0::/{rel}")), "{lines}");
        assert!(lines.contains(&format!("name=systemd:/{rel}")), "{lines}");
    }

    assert!(!cg.is_frozen().unwrap());
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let frozen_state = proc_state(pid);
    assert_eq!(
        read(&cg.path("freezer").unwrap().join("freezer.state")),
        "FROZEN"
    );
    // A task frozen by the v1 freezer shows as uninterruptible sleep.
    assert!(frozen_state.starts_with('D'), "frozen: {frozen_state}");
    cg.thaw().unwrap();
    sleep(Duration::from_millis(50));
    let thawed_state = proc_state(pid);
    assert!(thawed_state.starts_with('S'), "thawed: {thawed_state}");
    eprintln!("sleep state frozen: {frozen_state}, thawed: {thawed_state}");

    let s = cg.stats().unwrap();
    eprintln!("stats: {s:?}");
    assert_three_limits_in_stats(&s);
    assert!(s.cpu_usage_ns.is_some());
    assert!(s.memory_bytes.is_some());
    assert!(s.cpuset.is_some());

    let paths = cg.paths();
    cg.destroy().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "sleep killed by SIGKILL: {status:?}"
    );
    for p in paths {
        assert!(!p.exists(), "{} still there", p.display());
    }
    assert!(!cg.exists());
    drop(guard);
}

#[test]
fn v1_destroy_nested_children_first() {
    let h = need!(v1_host());
    let top = unique("nest");
    let parent = Cgroup::new(&h, &top);
    let _g = CgGuard(parent.clone());
    let cg = Cgroup::new(&h, &format!("{top}/ct"));
    cg.create().unwrap();
    // As a container would: a sub-cgroup of its own, with a process in it.
    let sub = Cgroup::new(&h, &format!("{top}/ct/sub"));
    sub.create().unwrap();
    let mut a = spawn_sleep();
    let mut b = spawn_sleep();
    cg.add_process(a.pid()).unwrap();
    sub.add_process(b.pid()).unwrap();
    assert_eq!(cg.procs().unwrap(), vec![a.pid()]);

    cg.destroy().unwrap();
    assert_eq!(a.0.wait().unwrap().signal(), Some(9));
    assert_eq!(b.0.wait().unwrap().signal(), Some(9));
    assert!(!cg.exists() && !sub.exists());
    assert!(parent.exists(), "only the given cgroup goes");
    parent.destroy().unwrap();
    assert!(!parent.exists());
    // Destroying what is gone is fine.
    parent.destroy().unwrap();
}

#[test]
fn v1_cpu_quota_measured() {
    let h = need!(v1_host());
    let (cg, _g) = created(&h, "busy");
    cg.apply_limits(&Limits {
        cpu: Some(0.5),
        ..Default::default()
    })
    .unwrap();
    // Other work shares this 2-core machine; a large weight keeps the loop from being
    // starved below its quota, so what we measure is the quota itself.
    cg.set_v1("cpu.shares", "262144").unwrap();
    let _child = busy_loop_uses_half_a_cpu(&cg, "v1");

    // Frozen, it uses nothing; thawed, it runs again.
    cg.freeze().unwrap();
    let frozen = measure_cpu(&cg, Duration::from_millis(500));
    cg.thaw().unwrap();
    let thawed = measure_cpu(&cg, Duration::from_millis(500));
    eprintln!("frozen {frozen:.4} CPU, thawed {thawed:.3} CPU");
    assert!(frozen < 0.01, "frozen used {frozen}");
    assert!(thawed > 0.3, "thawed used {thawed}");
    cg.destroy().unwrap();
    assert!(!cg.exists());
}

#[test]
fn v1_kill_all_stops_a_forking_tree() {
    let h = need!(v1_host());
    let (cg, _g) = created(&h, "fork");
    cg.apply_limits(&Limits {
        pids: Some(200),
        ..Default::default()
    })
    .unwrap();
    // A shell that keeps spawning sleeping children: the kill must not race with forks.
    let mut child = spawn("while :; do sleep 30 & sleep 0.01; done");
    cg.add_process(child.pid()).unwrap();
    sleep(Duration::from_millis(300));
    let n = cg.procs().unwrap().len();
    assert!(n > 3, "only {n} processes");
    let t0 = Instant::now();
    cg.kill_all().unwrap();
    eprintln!("killed {n}+ processes in {:?}", t0.elapsed());
    assert!(cg.procs().unwrap().is_empty());
    assert_eq!(child.0.wait().unwrap().signal(), Some(9));
    // Nothing left in any hierarchy, so rmdir works.
    cg.destroy().unwrap();
}

/// The cgroup2 core features (no controller needed): every host with a cgroup2 mount has
/// them, including the hybrid build machine whose unified tree owns only hugetlb.
#[test]
fn v2_core_on_real_unified_mount() {
    need!(if is_root() { Ok(()) } else { Err("not root") });
    let detected = Hierarchy::detect().unwrap();
    let unified: PathBuf = need!(detected
        .unified_mount()
        .map(Path::to_path_buf)
        .ok_or("no cgroup2 mount"));
    let h = Hierarchy::v2_at(&unified);
    let (cg, _g) = created(&h, "v2core");
    let dir = cg.unified_path().unwrap();
    assert!(dir.join("cgroup.procs").exists());
    let mut child = spawn_sleep();
    let pid = child.pid();
    cg.add_process(pid).unwrap();
    assert_eq!(cg.procs().unwrap(), vec![pid]);
    assert!(proc_cgroups(pid).contains(&format!("0::/{}", cg.rel())));

    if !dir.join("cgroup.freeze").exists() {
        eprintln!("SKIP (freeze part): kernel has no cgroup.freeze");
    } else {
        cg.freeze().unwrap();
        assert!(read(&dir.join("cgroup.events")).contains("frozen 1"));
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        sleep(Duration::from_millis(50));
        assert!(read(&dir.join("cgroup.events")).contains("frozen 0"));
        assert!(!cg.is_frozen().unwrap());
    }
    let s = cg.stats().unwrap();
    assert!(s.cpu_usage_ns.is_some(), "cpu.stat is in every v2 cgroup");

    for c in ["cpu", "memory", "pids"] {
        if !h.unified_controllers().iter().any(|u| u == c) {
            let lim = Limits {
                cpu: (c == "cpu").then_some(0.5),
                memory: (c == "memory").then_some(1 << 26),
                pids: (c == "pids").then_some(10),
                cpuset: None,
            };
            let e = cg.apply_limits(&lim).unwrap_err();
            assert!(
                matches!(&e, CgroupError::Unavailable { controller, .. } if controller == c),
                "{e}"
            );
        }
    }
    // v2 has no devices controller: accepted with a warning.
    cg.deny_devices_except(&["c 1:3 rwm"]).unwrap();

    cg.kill_all().unwrap();
    assert_eq!(child.0.wait().unwrap().signal(), Some(9));
    cg.destroy().unwrap();
    assert!(!dir.exists());
}

/// The detected host when cgroup v2 serves cpu, memory and pids; else the SKIP reason.
fn v2_host() -> Result<Hierarchy, String> {
    if !is_root() {
        return Err("not root".into());
    }
    let h = Hierarchy::detect().map_err(|e| e.to_string())?;
    let Some(u) = h.unified_mount() else {
        return Err("no cgroup2 mount".into());
    };
    for c in ["cpu", "memory", "pids"] {
        if h.v1_mount(c).is_some() || !h.unified_controllers().iter().any(|x| x == c) {
            return Err(format!(
                "cgroup2 at {} does not offer the {c} controller (controllers: {:?}; \
                 it is bound to v1 on this host)",
                u.display(),
                h.unified_controllers()
            ));
        }
    }
    Ok(h)
}

#[test]
fn v2_real_limits_and_lifecycle() {
    let h = need!(v2_host());
    let (cg, _g) = created(&h, "v2life");
    cg.apply_limits(&three_limits()).unwrap();
    let d = cg.unified_path().unwrap();
    assert_eq!(read(&d.join("cpu.max")), "50000 100000");
    assert_eq!(read(&d.join("memory.max")), "67108864");
    assert_eq!(read(&d.join("pids.max")), "50");
    cg.set_v2("memory.high", "33554432").unwrap();
    assert_eq!(read(&d.join("memory.high")), "33554432");
    let e = cg.set_v2("cpu.max", "abc").unwrap_err().to_string();
    assert!(e.contains("cpu.max") && e.contains("\"abc\""), "{e}");

    let mut child = spawn_sleep();
    cg.add_process(child.pid()).unwrap();
    assert_eq!(cg.procs().unwrap(), vec![child.pid()]);
    cg.freeze().unwrap();
    assert!(read(&d.join("cgroup.events")).contains("frozen 1"));
    cg.thaw().unwrap();
    let s = cg.stats().unwrap();
    assert_three_limits_in_stats(&s);
    cg.destroy().unwrap();
    assert_eq!(child.0.wait().unwrap().signal(), Some(9));
    assert!(!cg.exists());
}

#[test]
fn v2_real_cpu_quota_measured() {
    let h = need!(v2_host());
    let (cg, _g) = created(&h, "v2busy");
    cg.apply_limits(&Limits {
        cpu: Some(0.5),
        ..Default::default()
    })
    .unwrap();
    // See v1_cpu_quota_measured: weight against other work on the machine.
    cg.set_v2("cpu.weight", "10000").unwrap();
    let _child = busy_loop_uses_half_a_cpu(&cg, "v2");
    cg.destroy().unwrap();
}
