//! End-to-end container tests through the `coop` binary, as root, on real namespaces
//! and cgroups. Run one at a time (`--test-threads=1`): the CPU measurement needs the
//! machine's cores to itself.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn lifecycle_busybox() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let n = unique("life");
    c.busybox(&n, "");
    assert!(c.ok(&["ls"]).lines().any(|l| l == n));
    let cfg = std::fs::read_to_string(c.root.path().join(&n).join("config")).unwrap();
    assert!(cfg.contains("lxc.rootfs.path = dir:"), "{cfg}");

    let t = Instant::now();
    c.ok(&["start", "-n", &n]);
    eprintln!("start took {:?}", t.elapsed());
    let info = c.info(&n);
    assert_eq!(info["state"], "RUNNING");
    let pid = info["pid"].as_i64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Init runs as PID 1 of its own namespace, in its own cgroup.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&c.cgroup_rel(&n)), "{cg}");
    // The human form names the state too, as lxc-info does.
    assert!(c.ok(&["info", &n]).contains("State:          RUNNING"));
    let fancy = c.ok(&["ls", "-f"]);
    assert!(fancy.contains(&n) && fancy.contains("RUNNING"), "{fancy}");

    let uname = c.attach_ok(&n, &["uname", "-n"]);
    assert_eq!(uname.trim(), n, "the container has its own host name");

    // Starting twice is refused; destroying a running container needs -f.
    assert!(c.fails(&["start", "-n", &n]).contains("already running"));
    assert!(c.fails(&["destroy", "-n", &n]).contains("is running"));

    c.ok(&["freeze", "-n", &n]);
    assert_eq!(c.info(&n)["state"], "FROZEN");
    c.ok(&["unfreeze", "-n", &n]);
    assert_eq!(c.info(&n)["state"], "RUNNING");

    let t = Instant::now();
    c.ok(&["stop", "-n", &n]);
    let took = t.elapsed();
    eprintln!("clean stop took {took:?}");
    assert!(took < Duration::from_secs(3), "busybox stop took {took:?}");
    assert_eq!(c.info(&n)["state"], "STOPPED");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());

    // It starts again after a stop, and -k kills at once.
    c.ok(&["start", &n]);
    let t = Instant::now();
    c.ok(&["stop", "-k", "-n", &n]);
    assert!(t.elapsed() < Duration::from_secs(1));
    c.ok(&["destroy", "-n", &n]);
    assert!(!c.root.path().join(&n).exists());
    assert!(c.fails(&["info", "-n", &n]).contains("does not exist"));
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}

#[test]
fn attach_stdio_exit_code_namespaces_and_cgroup() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let n = unique("att");
    c.busybox(&n, "");
    c.ok(&["start", "-n", &n]);

    // Exit codes come back.
    let out = c.attach(&n, &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = c.attach(&n, &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));

    // stdin and stdout pass through.
    let mut child = c
        .cmd()
        .args(["attach", "-n", &n, "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through the pipe\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "THROUGH THE PIPE\n");

    // Inside the PID namespace: init is PID 1 and the host's processes are invisible.
    let ps = c.attach_ok(
        &n,
        &["sh", "-c", "cat /proc/1/comm; ls /proc | grep -c '^[0-9]'"],
    );
    let mut lines = ps.lines();
    assert_eq!(lines.next(), Some("init"));
    let nprocs: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(nprocs < 20, "container sees {nprocs} processes");

    // In the container's cgroup: seen from the host, the attached process is in it.
    let mut sleeper = c
        .cmd()
        .args(["attach", "-n", &n, "--", "sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let rel = c.cgroup_rel(&n);
    let procs_file = format!("/sys/fs/cgroup/pids/{rel}/cgroup.procs");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = false;
    while Instant::now() < deadline && !found {
        let procs = std::fs::read_to_string(&procs_file).unwrap();
        found = procs.lines().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\u{0}30"))
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(found, "sleep 30 not in {procs_file}");
    // Inside, the cgroup namespace shows the container's group as the root.
    let own = c.attach_ok(&n, &["cat", "/proc/self/cgroup"]);
    assert!(own.lines().all(|l| l.ends_with(":/")), "{own}");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    c.ok(&["stop", "-k", "-n", &n]);
}

#[test]
fn console_login_through_a_pty() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let n = unique("con");
    c.busybox(&n, "");
    c.ok(&["start", "-n", &n]);
    let mut p = console_login(&c, &n, Some("1"), "s3cret-pw", Duration::from_secs(10));
    p.send("echo CONSOLE-$((20+22))\r");
    p.expect("CONSOLE-42", Duration::from_secs(5));
    // A second console on another tty at the same time.
    let mut cmd2 = c.cmd();
    cmd2.args(["console", "-n", &n, "-t", "2"]);
    let mut p2 = PtyProc::spawn(cmd2);
    p2.expect("Ctrl a q", Duration::from_secs(5));
    p2.send("\r");
    p2.expect("login:", Duration::from_secs(10));
    // Ctrl-a q detaches without stopping the container.
    p2.detach();
    p.detach();
    assert_eq!(c.info(&n)["state"], "RUNNING");
    // The console (tty 0) output is kept in a log file.
    let log = std::fs::read_to_string(c.root.path().join(&n).join("console.log")).unwrap();
    assert!(log.contains("login:"), "console log: {log:?}");
    // A tty that does not exist is a clear error.
    assert!(c
        .fails(&["console", "-n", &n, "-t", "9"])
        .contains("no tty 9"));
    c.ok(&["stop", "-k", "-n", &n]);
}

#[test]
fn cpu_limit_half_a_cpu() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let n = unique("cpu");
    // A high share keeps other work on this 2-core machine from starving the loop below
    // its quota; it also shows raw lxc.cgroup keys reach the cgroup.
    c.busybox(
        &n,
        "coop.limits.cpu = 0.5\nlxc.cgroup.cpu.shares = 262144\nlxc.cgroup2.cpu.weight = 10000\n",
    );
    c.ok(&["start", "-n", &n]);
    assert_eq!(c.info(&n)["limits"]["cpu"], 0.5);
    let mut busy = c
        .cmd()
        .args(["attach", "-n", &n, "--", "sh", "-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let rel = c.cgroup_rel(&n);
    let t0 = Instant::now();
    let u0 = cpu_usage_ns(&rel);
    std::thread::sleep(Duration::from_secs(5));
    let used = (cpu_usage_ns(&rel) - u0) as f64 / t0.elapsed().as_nanos() as f64;
    let _ = busy.kill();
    let _ = busy.wait();
    c.ok(&["stop", "-k", "-n", &n]);
    eprintln!("busy loop used {used:.3} CPU under a 0.5 CPU limit");
    assert!((used - 0.5).abs() <= 0.05, "used {used:.3} CPU");
}

#[test]
fn memory_limit_stops_a_hog() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let n = unique("mem");
    c.busybox(&n, "coop.limits.memory = 32M\n");
    c.ok(&["start", "-n", &n]);
    assert_eq!(c.info(&n)["limits"]["memory_bytes"], 32 << 20);
    // The shell holds 64 MiB in a variable: more than the container may have.
    let out = c.attach(
        &n,
        &[
            "sh",
            "-c",
            "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("survived"), "the hog survived: {stdout}");
    assert_eq!(
        c.info(&n)["state"],
        "RUNNING",
        "the container itself lives on"
    );
    c.ok(&["stop", "-k", "-n", &n]);
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let n = unique("pid");
    c.busybox(&n, "coop.limits.pids = 40\n");
    c.ok(&["start", "-n", &n]);
    // The attached shell itself may be refused a fork once the limit is reached, so
    // its exit status says nothing; the cgroup's own counters do.
    c.attach(
        &n,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do sleep 3 & i=$((i+1)); done 2>/dev/null; echo started",
        ],
    );
    let rel = c.cgroup_rel(&n);
    let current: u64 = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/{rel}/pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 40, "{current} processes in a 40-pid container");
    let events = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/{rel}/pids.events"))
        .unwrap_or_default();
    eprintln!("pids.current={current} {events}");
    // The bomb really ran into the limit (forks were refused), not merely stayed small.
    let refused: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "no fork was refused: pids.events = {events:?}");
    // The host is unaffected: we can still fork here.
    assert!(Command::new("true").status().unwrap().success());
    c.ok(&["stop", "-k", "-n", &n]);
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    for bad in ["-bad", "a/b", "x y", ""] {
        let err = c.fails(&["create", &format!("--name={bad}"), "-t", "busybox"]);
        assert!(err.contains("invalid container name"), "{bad:?}: {err}");
    }
    assert!(c.fails(&["info", "-n", "ghost"]).contains("does not exist"));
    assert!(c
        .fails(&["start", "-n", "ghost"])
        .contains("does not exist"));
    assert!(c.fails(&["stop", "-n", "ghost"]).contains("does not exist"));
    let err = c.fails(&["create", "-n", "x1", "-t", "nosuch"]);
    assert!(err.contains("unknown template"), "{err}");
    // A config error names the file, line and key, and nothing is created.
    let cfg = c.root.path().join("bad.conf");
    std::fs::write(&cfg, "lxc.uts.name = ok\ncoop.limits.cpu = lots\n").unwrap();
    let err = c.fails(&[
        "create",
        "-n",
        "x2",
        "-t",
        "busybox",
        "-f",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        err.contains("bad.conf:2") && err.contains("coop.limits.cpu"),
        "{err}"
    );
    let n = unique("dup");
    c.busybox(&n, "");
    assert!(c
        .fails(&["create", "-n", &n, "-t", "busybox"])
        .contains("already exists"));
    assert!(c.fails(&["stop", "-n", &n]).contains("not running"));
    // A start that fails half-way (init missing) leaves no cgroup, mount or state.
    let rootfs = c.root.path().join(&n).join("rootfs");
    std::fs::rename(rootfs.join("sbin/init"), rootfs.join("sbin/init.off")).unwrap();
    let err = c.fails(&["start", "-n", &n]);
    assert!(err.contains("cannot run init"), "{err}");
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
    assert_eq!(c.info(&n)["state"], "STOPPED");
    let entries: Vec<_> = std::fs::read_dir(c.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|f| f.starts_with('x') || f.contains("creating"))
        .collect();
    assert!(entries.is_empty(), "half-made containers: {entries:?}");
}

#[test]
fn lxc_created_busybox_config_runs_unchanged() {
    if !need_root() {
        return;
    }
    if Command::new("lxc-create")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: lxc-create not installed (Debian package lxc)");
        return;
    }
    let c = Coop::new();
    let n = unique("lxc");
    let lxcpath = c.root.path().join("lxc");
    std::fs::create_dir_all(&lxcpath).unwrap();
    // LXC's own default.conf names lxcbr0, which this host need not have; give
    // lxc-create an initial config with an empty network, as a user without lxc-net would.
    let init = c.root.path().join("lxc-init.conf");
    std::fs::write(&init, "lxc.net.0.type = empty\n").unwrap();
    let out = Command::new("lxc-create")
        .args([
            "-P",
            lxcpath.to_str().unwrap(),
            "-n",
            &n,
            "-t",
            "busybox",
            "-f",
        ])
        .arg(&init)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lxc-create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lxc_cfg = lxcpath.join(&n).join("config");
    let text = std::fs::read_to_string(&lxc_cfg).unwrap();
    assert!(text.contains("lxc.rootfs.path"), "{text}");
    // The config file goes into coop's store byte for byte.
    std::fs::create_dir_all(c.root.path().join(&n)).unwrap();
    std::fs::copy(&lxc_cfg, c.root.path().join(&n).join("config")).unwrap();
    c.track(&n);
    c.ok(&["start", "-n", &n]);
    let out = c.attach_ok(&n, &["sh", "-c", "hostname; cat /proc/1/comm"]);
    assert_eq!(out, format!("{n}\ninit\n"));
    let t = Instant::now();
    c.ok(&["stop", "-n", &n]);
    eprintln!("stop of the LXC-made busybox took {:?}", t.elapsed());
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}

#[test]
fn autostart_marks_and_starts_in_order() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let a = unique("aua");
    let b = unique("aub");
    let off = unique("auo");
    c.busybox(&a, "lxc.start.order = 1\n");
    c.busybox(&b, "lxc.start.order = 5\n");
    c.busybox(&off, "");
    let out = c.ok(&["autostart", "enable", &a]);
    if std::path::Path::new("/run/systemd/system").is_dir() {
        eprintln!("SKIP part: systemd runs here; not installing a unit from a test");
    } else {
        assert!(out.contains("autostart run"), "{out}");
    }
    c.ok(&["autostart", "enable", &b]);
    let cfg = std::fs::read_to_string(c.root.path().join(&a).join("config")).unwrap();
    assert!(cfg.contains("lxc.start.auto = 1"), "{cfg}");
    // Higher lxc.start.order starts first, as with lxc-autostart.
    assert_eq!(c.ok(&["autostart", "ls"]), format!("{b}\n{a}\n"));
    c.ok(&["autostart", "run"]);
    assert_eq!(c.info(&a)["state"], "RUNNING");
    assert_eq!(c.info(&b)["state"], "RUNNING");
    assert_eq!(c.info(&off)["state"], "STOPPED");
    // Running twice is harmless.
    c.ok(&["autostart", "run"]);
    c.ok(&["autostart", "disable", &b]);
    c.ok(&["autostart", "stop", "-t", "5"]);
    assert_eq!(c.info(&a)["state"], "STOPPED");
    assert_eq!(
        c.info(&b)["state"],
        "RUNNING",
        "disabled containers are not stopped"
    );
    c.ok(&["stop", "-k", "-n", &b]);
    assert!(c
        .fails(&["autostart", "enable", "ghost"])
        .contains("does not exist"));
}

#[test]
fn checkconfig_reports_every_feature() {
    let out = Command::new(bin()).arg("checkconfig").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "mnt namespace:",
        "pid namespace:",
        "uts namespace:",
        "ipc namespace:",
        "net namespace:",
        "user namespace:",
        "cgroup namespace:",
        "cgroup layout:",
        "cpu controller:",
        "cpuset controller:",
        "memory controller:",
        "pids controller:",
        "devices controller:",
        "freezer controller:",
        "veth pair device:",
        "bridge:",
        "overlayfs:",
        "seccomp filter:",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // Exit status 1 exactly when a required feature is reported missing.
    let missing_required = text.contains("missing (required)");
    assert_eq!(
        out.status.code(),
        Some(i32::from(missing_required)),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &Command::new(bin())
            .args(["checkconfig", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(json.as_array().unwrap().len() >= 20);
    if need_root() {
        // This machine runs containers (the other tests prove it): nothing required is missing.
        assert!(!missing_required, "{text}");
    }
}
