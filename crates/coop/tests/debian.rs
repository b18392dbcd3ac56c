//! The debian template end to end: debootstrap (cached in /var/cache/coop after the
//! first run), systemd as PID 1, a getty login on the console, a clean halt.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn debian_boots_systemd_logs_in_and_halts() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let n = unique("deb");
    let cfg = c.root.path().join("deb.conf");
    std::fs::write(&cfg, "lxc.net.0.type = empty\n").unwrap();
    c.track(&n);
    let t = Instant::now();
    c.ok(&[
        "create",
        "-n",
        &n,
        "-t",
        "debian",
        "--release",
        "bookworm",
        "--root-password",
        "deb-pw-1",
        "-f",
        cfg.to_str().unwrap(),
    ]);
    eprintln!("debian create took {:?}", t.elapsed());
    // A second create of the same release comes from the cache: seconds, not minutes.
    let n2 = unique("deb");
    c.track(&n2);
    let t = Instant::now();
    c.ok(&[
        "create",
        "-n",
        &n2,
        "-t",
        "debian",
        "-f",
        cfg.to_str().unwrap(),
    ]);
    let cached = t.elapsed();
    eprintln!("cached debian create took {cached:?}");
    assert!(
        cached < Duration::from_secs(30),
        "cached create took {cached:?}"
    );
    c.ok(&["destroy", "-n", &n2]);

    c.ok(&["start", "-n", &n]);
    let comm = c.attach_ok(&n, &["cat", "/proc/1/comm"]);
    assert_eq!(comm.trim(), "systemd");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut state = String::new();
    while Instant::now() < deadline {
        let out = c.attach(&n, &["systemctl", "is-system-running"]);
        state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state == "running" || state == "degraded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let failed = c.attach_ok(&n, &["systemctl", "--failed", "--no-legend"]);
    eprintln!("system state {state}; failed units: {failed:?}");
    assert!(
        state == "running" || state == "degraded",
        "systemd state {state}"
    );

    // Log in on the console (tty 0), where systemd runs console-getty in containers.
    let mut p = console_login(&c, &n, Some("0"), "deb-pw-1", Duration::from_secs(20));
    p.send("echo DEB-$((6*7)); cat /etc/debian_version\r");
    p.expect("DEB-42", Duration::from_secs(10));
    p.detach();

    // SIGRTMIN+3 asks systemd to halt; well under the kill timeout means it was clean.
    let t = Instant::now();
    c.ok(&["stop", "-n", &n, "-t", "30"]);
    let took = t.elapsed();
    eprintln!("debian stop took {took:?}");
    assert!(
        took < Duration::from_secs(25),
        "stop took {took:?} (killed?)"
    );
    let log = std::fs::read_to_string(c.root.path().join(&n).join("console.log")).unwrap();
    assert!(
        log.contains("Halting system") || log.contains("System Halt"),
        "{log}"
    );
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}

#[test]
fn interrupted_create_leaves_nothing() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let cfg = c.root.path().join("deb.conf");
    std::fs::write(&cfg, "lxc.net.0.type = empty\n").unwrap();
    // Make sure the release is cached, so the interrupt lands in the copy.
    let warm = unique("warm");
    c.track(&warm);
    c.ok(&[
        "create",
        "-n",
        &warm,
        "-t",
        "debian",
        "-f",
        cfg.to_str().unwrap(),
    ]);
    c.ok(&["destroy", "-n", &warm]);
    let n = unique("intr");
    let mut child = c
        .cmd()
        .args([
            "create",
            "-n",
            &n,
            "-t",
            "debian",
            "-f",
            cfg.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SIGINT to coop alone: whatever the template was doing, nothing may be kept.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    if status.success() {
        eprintln!("SKIP: the create finished within 300 ms, before the interrupt");
        c.ok(&["destroy", "-n", &n]);
        return;
    }
    let left: Vec<String> = std::fs::read_dir(c.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|f| f.contains(&n))
        .collect();
    assert!(left.is_empty(), "an interrupted create left {left:?}");
    assert!(c.fails(&["info", "-n", &n]).contains("does not exist"));
}
