//! A coLinux instance end to end through the `coop` binary: a User-Mode Linux kernel as
//! the init of a confined container, its disk an ext4 image, its console our console.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// How long a busybox guest may take to answer an attach.
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn busybox_instance_boots_logs_in_attaches_and_halts_cleanly() {
    if !need_root() || !colinux_prerequisites() {
        return;
    }
    let c = Coop::new();
    let n = unique("co");
    let t = Instant::now();
    c.create_colinux(&n, "busybox", "128M", &["--root-password", "uml-pw"]);
    eprintln!("colinux create took {:?}", t.elapsed());
    let t = Instant::now();
    c.ok(&["start", "-n", &n]);
    let info = c.info(&n);
    assert_eq!(info["kind"], "colinux");
    assert_eq!(info["state"], "RUNNING");
    // The kernel process is confined: its own PID namespace and the instance's cgroup.
    let pid = info["pid"].as_i64().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert!(
        comm.starts_with("linux") || comm.starts_with("vmlinux"),
        "{comm}"
    );
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&c.cgroup_rel(&n)), "{cg}");

    // The guest agent answers once the guest's init started it.
    let out = attach_when(&c, &n, &["uname", "-r"], MINUTE, |o| o.status.success());
    let release = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("start to a usable attach: {:?}", t.elapsed());
    assert!(
        release.starts_with("6.1"),
        "guest kernel release {release:?}"
    );
    let out = c.attach(&n, &["sh", "-c", "grep MemTotal /proc/meminfo; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    let kb: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(kb <= 128 * 1024 && kb > 64 * 1024, "guest sees {kb} kB");

    // The console is the kernel's con0: a getty login with the template's password. The
    // agent answers while the guest's rcS still runs; init starts the gettys after it.
    // Log in once the guest is idle: on a loaded host, login's flush of typed-ahead input
    // can otherwise eat the password (the helper types it 300 ms after the prompt).
    attach_when(&c, &n, &["pidof", "getty"], MINUTE, |o| o.status.success());
    let mut p = console_login(&c, &n, None, "uml-pw", Duration::from_secs(20));
    p.send("echo UML-$((40+2))\r");
    p.expect("UML-42", Duration::from_secs(10));
    p.detach();

    // The boot hook's agent serves; init's respawned copy waits on the lock. When the
    // serving one dies, the other takes over: the attach that lost its agent fails rather
    // than hanging, and the next one works.
    let out = attach_when(&c, &n, &["pidof", "coop-guest-agent"], MINUTE, |o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .count()
            == 2
    });
    let mut pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    pids.sort();
    let t = Instant::now();
    let out = c.attach(&n, &["sh", "-c", &format!("kill -9 {}", pids[0])]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restarted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let left = c.attach_ok(&n, &["pidof", "coop-guest-agent"]);
    assert_eq!(left.trim(), pids[1].to_string());

    // A file written in the guest survives a clean halt, and the image is fsck-clean.
    c.attach_ok(&n, &["sh", "-c", "echo kept > /root/mark; sync"]);
    let img = c.stop_guest_cleanly(&n, 20, Duration::from_secs(15));
    let dump = Command::new("debugfs")
        .args(["-R", "cat /root/mark"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&dump.stdout).trim(), "kept");
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}

#[test]
fn shared_folder_both_ways_and_missing_share_refused() {
    if !need_root() || !colinux_prerequisites() {
        return;
    }
    let c = Coop::new();
    let n = unique("cs");
    let share = c.root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("from-host"), "written on the host\n").unwrap();
    let cfg = c.root.path().join("share.conf");
    std::fs::write(
        &cfg,
        format!("coop.colinux.share = {}:/mnt/host\n", share.display()),
    )
    .unwrap();
    c.create_colinux(&n, "busybox", "96M", &["-f", cfg.to_str().unwrap()]);
    c.ok(&["start", "-n", &n]);
    let out = attach_when(&c, &n, &["cat", "/mnt/host/from-host"], MINUTE, |o| {
        o.status.success()
    });
    let seen = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(seen, "written on the host\n");
    c.attach_ok(
        &n,
        &["sh", "-c", "echo from the guest > /mnt/host/from-guest"],
    );
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest")).unwrap(),
        "from the guest\n"
    );
    c.ok(&["stop", "-n", &n]);
    // A share that does not exist: a clear error, the instance left stopped and intact.
    std::fs::remove_dir_all(&share).unwrap();
    let err = c.fails(&["start", "-n", &n]);
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(c.info(&n)["state"], "STOPPED");
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}

#[test]
fn snapshot_copy_boots_and_leaves_the_original_disk_unchanged() {
    if !need_root() || !colinux_prerequisites() {
        return;
    }
    let c = Coop::new();
    let base = unique("cb");
    let snap = unique("cn");
    c.track(&snap);
    c.create_colinux(&base, "busybox", "96M", &[]);
    let img = c.root.path().join(&base).join("rootfs/disk.img");
    let sum = || {
        let o = Command::new("sha256sum").arg(&img).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let before = sum();
    let t = Instant::now();
    c.ok(&["copy", "-n", &base, "-N", &snap, "--snapshot"]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "snapshot copy took {took:?}");
    c.ok(&["start", "-n", &snap]);
    attach_when(
        &c,
        &snap,
        &[
            "sh",
            "-c",
            "echo changed > /root/in-snapshot; sync; hostname",
        ],
        MINUTE,
        |o| o.status.success(),
    );
    c.ok(&["stop", "-n", &snap]);
    assert!(c.root.path().join(&snap).join("rootfs/disk.cow").exists());
    assert_eq!(sum(), before, "the original image changed under a snapshot");
    // Copying a container needs no --snapshot; asking for one is refused clearly.
    let ct = unique("ct");
    c.busybox(&ct, "");
    assert!(c
        .fails(&["copy", "-n", &ct, "-N", &unique("cx"), "--snapshot"])
        .contains("coLinux"));
    let ct2 = unique("cu");
    c.track(&ct2);
    c.ok(&["copy", "-n", &ct, "-N", &ct2]);
    c.ok(&["start", "-n", &ct2]);
    assert_eq!(c.attach_ok(&ct2, &["hostname"]).trim(), ct2);
    c.ok(&["stop", "-k", "-n", &ct2]);
}

#[test]
fn conet_guest_gets_its_lease_by_dhcp_and_serves_the_host() {
    if !need_root() || !colinux_prerequisites() {
        return;
    }
    let c = Coop::new();
    let net = unique("cl");
    let (subnet, dotted) = free_subnet(std::process::id() + 7000);
    let prefix = dotted.trim_end_matches('.').to_string();
    c.network(&net, &subnet);
    let port = 30000 + std::process::id() % 20000;
    let n = unique("cg");
    let cfg = c.root.path().join("net.conf");
    std::fs::write(
        &cfg,
        format!("lxc.net.0.type = veth\nlxc.net.0.link = {net}\nlxc.net.0.flags = up\ncoop.net.0.publish = {port}:80\n"),
    )
    .unwrap();
    c.create_colinux(&n, "busybox", "96M", &["-f", cfg.to_str().unwrap()]);
    c.ok(&["start", "-n", &n]);
    // The guest's own DHCP client (the template's rcS) gets the lease coop made.
    let out = attach_when(
        &c,
        &n,
        &["ip", "-4", "-o", "addr", "show", "eth0"],
        MINUTE,
        |o| String::from_utf8_lossy(&o.stdout).contains(&dotted),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let addr = text
        .split_whitespace()
        .find(|w| w.starts_with(&dotted))
        .and_then(|a| a.split('/').next())
        .unwrap()
        .to_string();
    c.attach_ok(&n, &["sh", "-c",
        "mkdir -p /www && echo hello-from-the-guest-kernel > /www/index.html && httpd -h /www -p 80",
    ]);
    assert!(http_get(&format!("{addr}:80"))
        .unwrap()
        .contains("hello-from-the-guest-kernel"));
    assert!(http_get(&format!("{prefix}.1:{port}"))
        .unwrap()
        .contains("hello-from-the-guest-kernel"));
    c.ok(&["stop", "-n", &n]);
    assert_eq!(leftovers(&c, &n), Vec::<String>::new());
}
