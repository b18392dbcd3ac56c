//! End-to-end: a container's `lxc.cgroup.devices.*` / `lxc.cgroup2.devices.*` keys take
//! effect on top of LXC's default device list, on the cgroup v1 devices controller and on
//! the cgroup v2 eBPF path. The v2 path is forced on this hybrid host by running each coop
//! command in a private mount namespace where /sys/fs/cgroup/devices is unmounted (coop
//! then finds no v1 devices hierarchy and attaches its filter on the cgroup2 mount).
//! Needs root and a busybox template; skips with a printed reason otherwise.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// Rules under test: deny /dev/full (default-allowed), allow /dev/net/tun (not in the
/// default). Probes inside the container tell them apart by their error text:
/// /dev/full allowed → "No space left on device", denied → "Operation not permitted";
/// tun opened without an ioctl → "File descriptor in bad state", denied → "not permitted".
const PROBE: &str = "echo x > /dev/full; echo full=$?; \
     mknod /tmp/tun c 10 200 && cat /tmp/tun; echo tun=$?; \
     head -c 1 /dev/zero >/dev/null; echo zero=$?; \
     mknod /tmp/loop b 7 0 && head -c 1 /tmp/loop; echo loop=$?";

fn v1_config(prefix: &str) -> String {
    format!("{prefix}.devices.deny = c 1:7 rwm\n{prefix}.devices.allow = c 10:200 rwm\n")
}

/// Check the probe output: full and loop denied, tun allowed, zero (default) allowed.
fn check(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("zero=0"), "/dev/zero (default list): {all}");
    assert!(stdout.contains("full=1"), "{all}");
    let full_err = stderr
        .lines()
        .find(|l| l.contains("/dev/full"))
        .unwrap_or("");
    assert!(
        full_err.contains("not permitted"),
        "/dev/full must be denied by devices.deny, not fail with ENOSPC: {all}"
    );
    let line = |what: &str| {
        stderr
            .lines()
            .filter(|l| l.contains(what))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        stderr.contains("bad state") && !line("/tmp/tun").contains("not permitted"),
        "/dev/net/tun must be allowed by devices.allow: {all}"
    );
    assert!(
        line("/tmp/loop").contains("not permitted"),
        "block 7:0 is not in any list: {all}"
    );
}

fn ready() -> bool {
    if !need_root() {
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: /bin/busybox missing (package busybox-static)");
        return false;
    }
    true
}

#[test]
fn v1_devices_keys_apply_after_the_default_list() {
    if !ready() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/devices/devices.list").exists() {
        eprintln!("SKIP: no cgroup v1 devices hierarchy here");
        return;
    }
    let c = Coop::new();
    let n = unique("dkv1");
    c.busybox(&n, &v1_config("lxc.cgroup"));
    c.ok(&["start", "-n", &n]);
    let rel = c.cgroup_rel(&n);
    let list =
        std::fs::read_to_string(format!("/sys/fs/cgroup/devices/{rel}/devices.list")).unwrap();
    assert!(list.lines().any(|l| l == "c 10:200 rwm"), "{list}");
    assert!(!list.lines().any(|l| l == "c 1:7 rwm"), "{list}");
    assert!(
        list.lines().any(|l| l == "c 1:3 rwm"),
        "default kept: {list}"
    );
    check(&c.attach(&n, &["sh", "-c", PROBE]));
    c.ok(&["stop", "-k", "-n", &n]);
}

/// `coop ARGS` in a private mount namespace without the v1 devices hierarchy.
fn coop_v2(c: &Coop, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("umount /sys/fs/cgroup/devices && exec \"$0\" \"$@\"")
        .arg(bin())
        .args(args)
        .env("COOP_ROOT", c.root.path())
        .env("RUST_LOG", "warn,netlink_packet_route=error")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn v2_ebpf_path_honours_cgroup2_device_keys() {
    if !ready() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/devices").exists()
        || !Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
    {
        eprintln!(
            "SKIP: needs the hybrid layout (v1 devices to hide, cgroup2 at /sys/fs/cgroup/unified)"
        );
        return;
    }
    let c = Coop::new();
    let n = unique("dkv2");
    // A config of both kinds, as LXC writes them; the v2 path must pick the cgroup2 keys,
    // so the v1 ones here say something else (allow /dev/full) that must not apply.
    let cfg = format!(
        "lxc.cgroup.devices.allow = c 1:7 rwm\n{}",
        v1_config("lxc.cgroup2")
    );
    c.busybox(&n, &cfg);
    let out = coop_v2(&c, &["start", "-n", &n]);
    assert!(
        out.status.success(),
        "start without v1 devices: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rel = c.cgroup_rel(&n);
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/devices/{rel}")).exists(),
        "the v1 devices hierarchy was not used"
    );
    let out = coop_v2(&c, &["attach", "-n", &n, "--", "sh", "-c", PROBE]);
    check(&out);
    let out = coop_v2(&c, &["stop", "-k", "-n", &n]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
