//! A container with a user namespace (`lxc.idmap`), end to end through the `coop`
//! binary: the rootfs shifted into the mapped range at create, init running as an
//! unprivileged host uid, attach and the console as the container's own root, and a
//! clear error (with nothing left behind) when the mapped root cannot reach its rootfs.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::*;

const MAP: &str = "lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n";

#[test]
fn idmapped_container_runs_as_an_unprivileged_host_uid() {
    if !need_root() {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/user").exists() {
        eprintln!("SKIP: this kernel has no user namespaces");
        return;
    }
    let c = Coop::new();
    let n = unique("uns");
    let dir = c.busybox(&n, MAP);
    let rootfs = dir.join("rootfs");
    let busybox = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert_eq!((busybox.uid(), busybox.gid()), (100000, 100000));
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o711
    );

    // A store the mapped root cannot pass (as LXC's 0700 /var/lib/lxc would be).
    std::fs::set_permissions(c.root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = c.fails(&["start", "-n", &n]);
    let root = c.root.path().display().to_string();
    assert!(
        err.contains(&format!("chmod o+x {root}")) && err.contains("uid 100000"),
        "{err}"
    );
    assert!(leftovers(&c, &n).is_empty(), "{:?}", leftovers(&c, &n));
    assert_eq!(c.info(&n)["state"], "STOPPED");

    std::fs::set_permissions(c.root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    c.ok(&["start", "-n", &n]);
    let pid = c.info(&n)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["100000"; 4],
        "{uid}"
    );
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );

    // attach is the container's root, and what it writes is owned by the mapped uid.
    assert_eq!(c.attach_ok(&n, &["id", "-u"]).trim(), "0");
    assert_eq!(c.attach_ok(&n, &["id", "-g"]).trim(), "0");
    c.attach_ok(&n, &["touch", "/tmp/made-inside"]);
    let made = std::fs::metadata(rootfs.join("tmp/made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (100000, 100000));
    // Root inside is not root outside: the host's files it cannot see stay unmapped.
    let ls = c.attach_ok(&n, &["stat", "-c", "%u", "/proc/1"]);
    assert_eq!(ls.trim(), "0");

    // The console's getty runs on a pty the container's root owns.
    let mut p = console_login(&c, &n, Some("1"), "s3cret-pw", Duration::from_secs(10));
    // (The marker is computed so that the echoed command line does not match it.)
    p.send("id -u; echo uid-$((40+2))-shown\r");
    let got = p.expect("uid-42-shown", Duration::from_secs(5));
    assert!(got.contains("\r\n0\r\n"), "{got:?}");
    p.detach();

    // A clean halt in a PID namespace ends init with SIGINT (the kernel's answer to
    // reboot(HALT) there); SIGKILL would mean the halt timed out.
    let how = c.stop_how(&n, 10);
    assert!(how.contains("SIGINT") && !how.contains("SIGKILL"), "{how}");
    assert!(leftovers(&c, &n).is_empty(), "{:?}", leftovers(&c, &n));
}

#[test]
fn an_unmapped_owner_in_the_rootfs_is_refused_at_create() {
    if !need_root() {
        return;
    }
    let c = Coop::new();
    let n = unique("unsbad");
    // Container root only: the busybox tree's files (uid 0) are covered, but a map
    // without any gid range cannot own them.
    let cfg = c.root.path().join("bad.conf");
    std::fs::write(
        &cfg,
        "lxc.net.0.type = empty\nlxc.idmap = u 0 100000 65536\nlxc.idmap = g 1 100000 10\n",
    )
    .unwrap();
    let err = c.fails(&[
        "create",
        "-n",
        &n,
        "-t",
        "busybox",
        "-f",
        cfg.to_str().unwrap(),
    ]);
    assert!(err.contains("gid 0") && err.contains("lxc.idmap"), "{err}");
    assert!(
        !c.root.path().join(&n).exists(),
        "a half-made container was left"
    );
}
