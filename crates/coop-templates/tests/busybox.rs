//! The busybox template, built for real and run with chroot.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use coop_templates::{create, parse_template, verify_password, Outcome, Progress, Request};

mod common;

use common::cfg;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `sh -c SCRIPT` in new mount, UTS, network and PID namespaces (private propagation).
fn in_new_namespaces(script: &str) -> std::process::Output {
    Command::new("unshare")
        .args([
            "--mount",
            "--uts",
            "--net",
            "--pid",
            "--fork",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", script])
        .output()
        .unwrap()
}

/// Root, /bin/busybox, unshare and ip: what the namespaced network tests need. Prints SKIP
/// when something is missing.
fn can_run_namespaced_network() -> bool {
    let ok = is_root()
        && Path::new("/bin/busybox").exists()
        && which("unshare").is_some()
        && which("ip").is_some();
    if !ok {
        eprintln!("SKIP: needs root, /bin/busybox, unshare and ip");
    }
    ok
}

fn build(root: &Path, cache: &Path, password: Option<&str>, ttys: u32) -> (Outcome, Vec<Progress>) {
    let kind = parse_template("busybox", &[]).unwrap();
    let mut req = Request::new("bbtest", root, cache);
    req.root_password = password.map(str::to_string);
    req.tty_max = ttys;
    let seen = Mutex::new(Vec::new());
    let out = create(&kind, &req, &|p| seen.lock().unwrap().push(p)).unwrap();
    (out, seen.into_inner().unwrap())
}

#[test]
fn busybox_rootfs_contents() {
    if !is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: needs root and /bin/busybox (busybox-static)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("rootfs");
    fs::create_dir(&root).unwrap();
    let (out, progress) = build(&root, t.path(), Some("pa55word"), 3);

    assert!(!out.password_generated);
    assert_eq!(out.root_password, "pa55word");
    assert_eq!(cfg(&out, "lxc.uts.name"), Some("bbtest"));
    assert_eq!(cfg(&out, "lxc.signal.halt"), Some("SIGUSR1"));
    assert_eq!(cfg(&out, "lxc.tty.max"), Some("3"));
    assert_eq!(cfg(&out, "lxc.init.cmd"), Some("/sbin/init"));
    assert!(out
        .config
        .iter()
        .all(|(k, _)| k != "lxc.rootfs.path" && !k.starts_with("lxc.net.")));
    assert!(progress
        .iter()
        .any(|p| matches!(p, Progress::Step(s) if s.contains("busybox"))));
    assert!(progress.iter().any(
        |p| matches!(p, Progress::Fraction { done, total, .. } if done == total && *total > 100)
    ));

    // Applets: every entry of --list-full is a symlink to /bin/busybox.
    let list = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let mut n = 0;
    for a in list
        .lines()
        .filter(|l| !l.is_empty() && *l != "bin/busybox")
    {
        let p = root.join(a.trim_start_matches('/'));
        let target = fs::read_link(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(target, Path::new("/bin/busybox"), "{a}");
        n += 1;
    }
    assert!(n > 200, "only {n} applets");
    for a in [
        "bin/sh",
        "sbin/init",
        "sbin/getty",
        "bin/login",
        "sbin/udhcpc",
        "sbin/ip",
    ] {
        assert!(
            root.join(a)
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink(),
            "{a}"
        );
    }
    let bb = fs::metadata(root.join("bin/busybox")).unwrap();
    assert!(bb.is_file() && bb.permissions().mode() & 0o111 != 0);
    assert_eq!(
        fs::read(root.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );

    for (d, mode) in [
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var/log", 0o755),
        ("home", 0o755),
    ] {
        let m = fs::metadata(root.join(d)).unwrap();
        assert!(m.is_dir(), "{d}");
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{d}");
    }

    let inittab = fs::read_to_string(root.join("etc/inittab")).unwrap();
    for line in [
        "::sysinit:/etc/init.d/rcS",
        "console::respawn:/sbin/getty -L 115200 console vt100",
        "tty1::respawn:/sbin/getty -L 38400 tty1 vt100",
        "tty3::respawn:/sbin/getty -L 38400 tty3 vt100",
        "::ctrlaltdel:/sbin/reboot",
        "::shutdown:/bin/sync",
    ] {
        assert!(
            inittab.lines().any(|l| l == line),
            "missing {line:?} in\n{inittab}"
        );
    }
    assert!(!inittab.contains("tty4"));

    for script in ["etc/init.d/rcS", "etc/udhcpc/default.script"] {
        let m = fs::metadata(root.join(script)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755, "{script}");
    }
    let rcs = fs::read_to_string(root.join("etc/init.d/rcS")).unwrap();
    let udhcpc = rcs
        .lines()
        .find(|l| l.trim_start().starts_with("udhcpc "))
        .unwrap();
    assert!(
        udhcpc.contains(" -b ") && udhcpc.trim_end().ends_with('&'),
        "{udhcpc}"
    );

    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "bbtest\n"
    );
    assert!(fs::read_to_string(root.join("etc/hosts"))
        .unwrap()
        .contains("127.0.1.1\tbbtest"));
    assert!(fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:root:/root:/bin/sh\n"));
    let profile = fs::read_to_string(root.join("etc/profile")).unwrap();
    assert!(profile.contains("PATH=") && profile.contains("PS1="));

    // The shadow hash: verified by our crate and reproduced by busybox's own crypt.
    let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert_eq!(
        fs::metadata(root.join("etc/shadow"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let hash = shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|l| l.split(':').next())
        .unwrap();
    assert!(hash.starts_with("$6$"), "{hash}");
    assert!(verify_password("pa55word", hash));
    assert!(!verify_password("pa55worD", hash));
    let salt = hash.split('$').nth(2).unwrap();
    // Debian's busybox names the applet mkpasswd (cryptpw is the same program).
    let bb = Command::new("/bin/busybox")
        .args(["mkpasswd", "-m", "sha512", "pa55word", salt])
        .output()
        .unwrap();
    assert!(bb.status.success(), "{bb:?}");
    assert_eq!(String::from_utf8(bb.stdout).unwrap().trim(), hash);
}

#[test]
fn generated_password_is_reported() {
    if !is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: needs root and /bin/busybox (busybox-static)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (out, _) = build(t.path(), t.path(), None, 4);
    assert!(out.password_generated);
    assert_eq!(out.root_password.len(), 16);
    assert!(out.root_password.bytes().all(|b| b.is_ascii_alphanumeric()));
    let shadow = fs::read_to_string(t.path().join("etc/shadow")).unwrap();
    let hash = shadow.lines().next().unwrap().split(':').nth(1).unwrap();
    assert!(verify_password(&out.root_password, hash));
    assert_eq!(
        fs::read_to_string(t.path().join("etc/inittab"))
            .unwrap()
            .matches("::respawn:/sbin/getty -L 38400 tty")
            .count(),
        4
    );
    // Nothing but the tree itself was created next to it.
    let names: Vec<_> = fs::read_dir(t.path().join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("coop-tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn chroot_runs_busybox() {
    if !is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: needs root and /bin/busybox (busybox-static)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    build(t.path(), t.path(), Some("x"), 1);
    let st = Command::new("chroot")
        .arg(t.path())
        .args(["/bin/busybox", "true"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("chroot")
        .arg(t.path())
        .args(["/bin/sh", "-c", "echo ok"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // A user lookup through the container's own files.
    let out = Command::new("chroot")
        .arg(t.path())
        .args(["/bin/sh", "-c", "id -un; . /etc/profile; echo $PATH"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "root\n/sbin:/bin:/usr/sbin:/usr/bin\n",
        "{out:?}"
    );
}

/// Runs rcS inside fresh mount, uts, net and pid namespaces: it must set the hostname, bring
/// up lo, mount what is missing (the mounts die with the namespace) and return at once.
#[test]
fn rcs_boots_in_namespaces() {
    if !is_root() || !Path::new("/bin/busybox").exists() || which("unshare").is_none() {
        eprintln!("SKIP: needs root, /bin/busybox and unshare");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    build(t.path(), t.path(), Some("x"), 1);
    let start = std::time::Instant::now();
    // eth0 is one end of a veth pair inside the new network namespace: DHCP requests go
    // nowhere, and rcS must not wait for them.
    let inner = "/etc/init.d/rcS && hostname && ip link show lo && \
                 grep -c ' /proc ' /proc/self/mountinfo && ls /proc/1/ >/dev/null && \
                 sleep 0.3 && pidof udhcpc >/dev/null && echo dhcp-running";
    let script = format!(
        "ip link add eth0 type veth peer name eth1 && chroot {} /bin/sh -c \"{inner}\"",
        t.path().display()
    );
    let out = in_new_namespaces(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("bbtest\n"), "{text}");
    assert!(text.contains("UP"), "{text}");
    assert!(text.ends_with("\n1\ndhcp-running\n"), "{text}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(t.path().to_str().unwrap()),
        "mount left behind"
    );
}

/// The udhcpc event script, fed a lease by hand inside a network namespace with a dummy eth0.
#[test]
fn udhcpc_script_applies_a_lease() {
    if !can_run_namespaced_network() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    build(t.path(), t.path(), Some("x"), 1);
    let root = t.path().to_str().unwrap();
    let script = format!(
        "ip link add eth0 type veth peer name eth1 && \
         chroot {root} /bin/sh -c 'export interface=eth0 ip=192.0.2.10 mask=24 \
           router=192.0.2.1 dns=\"192.0.2.53 192.0.2.54\" domain=example.test; \
           /etc/udhcpc/default.script deconfig && /etc/udhcpc/default.script bound && \
           /etc/udhcpc/default.script renew && ip -4 addr show dev eth0 && ip -4 route'"
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text.matches("inet 192.0.2.10/24").count(), 1, "{text}");
    assert!(text.contains("default via 192.0.2.1 dev eth0"), "{text}");
    assert_eq!(
        fs::read_to_string(t.path().join("etc/resolv.conf")).unwrap(),
        "search example.test\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"
    );
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

#[test]
fn bad_requests_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let kind = parse_template("busybox", &[]).unwrap();
    let req = Request::new("bad name", t.path(), t.path());
    let e = create(&kind, &req, &|_| {}).unwrap_err().to_string();
    assert!(e.contains("bad name"), "{e}");
    let mut req = Request::new("ok", t.path(), t.path());
    req.tty_max = 10_000;
    assert!(create(&kind, &req, &|_| {}).is_err());
    let missing = t.path().join("missing");
    let req = Request::new("ok", &missing, t.path());
    let e = create(&kind, &req, &|_| {}).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    let e = parse_template("lxc-busybox", &[]).unwrap_err().to_string();
    assert!(
        e.contains("lxc-busybox") && e.contains("busybox, debian, tar"),
        "{e}"
    );
    let e = parse_template("tar", &[("mirror".into(), "x".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--mirror") && e.contains("--file"), "{e}");
}

/// End to end: rcS starts udhcpc, which gets a lease from busybox udhcpd at the other end of
/// a veth pair, all inside one private network namespace (documentation addresses only).
#[test]
fn rcs_gets_a_dhcp_lease() {
    if !can_run_namespaced_network() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    build(t.path(), t.path(), Some("x"), 1);
    fs::write(
        t.path().join("tmp/udhcpd.conf"),
        "start 192.0.2.100\nend 192.0.2.110\ninterface srv0\nlease_file /tmp/udhcpd.leases\n\
         pidfile /tmp/udhcpd.pid\nopt subnet 255.255.255.0\nopt router 192.0.2.1\n\
         opt dns 192.0.2.53\nopt domain lab.test\n",
    )
    .unwrap();
    fs::write(
        t.path().join("tmp/run.sh"),
        "touch /tmp/udhcpd.leases && udhcpd /tmp/udhcpd.conf && /etc/init.d/rcS || exit 1\n\
         for i in $(seq 250); do\n\
           ip -4 addr show dev eth0 | grep -q 'inet 192.0.2.1[01]' && break\n\
           sleep 0.1\n\
         done\n\
         ip -4 addr show dev eth0; ip -4 route; ps >&2; ip link >&2\n",
    )
    .unwrap();
    let script = format!(
        "ip link add eth0 type veth peer name srv0 && ip addr add 192.0.2.1/24 dev srv0 && \
         ip link set srv0 up && chroot {} /bin/sh /tmp/run.sh",
        t.path().display()
    );
    let out = in_new_namespaces(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // udhcpd hands out any address of its pool, 192.0.2.100 to .110.
    let leased = text
        .split("inet 192.0.2.")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse::<u8>().ok());
    assert!(
        leased.is_some_and(|n| (100..=110).contains(&n)),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("default via 192.0.2.1 dev eth0"), "{text}");
    assert_eq!(
        fs::read_to_string(t.path().join("etc/resolv.conf")).unwrap(),
        "search lab.test\nnameserver 192.0.2.53\n"
    );
}

/// The tree and its config lines boot under LXC: busybox init runs rcS and the gettys, and
/// the halt signal stops it cleanly.
#[test]
fn boots_under_lxc() {
    if !is_root() || !Path::new("/bin/busybox").exists() || !common::lxc_available() {
        eprintln!("SKIP: needs root, /bin/busybox and LXC (package lxc)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("rootfs");
    fs::create_dir(&root).unwrap();
    let name = format!("coop-tpl-bb-{}", std::process::id());
    let kind = parse_template("busybox", &[]).unwrap();
    let mut req = Request::new(&name, &root, t.path());
    req.tty_max = 2;
    let out = create(&kind, &req, &|_| {}).unwrap();
    let c = common::LxcGuard::start(&t.path().join("lxc"), &name, &root, &out.config);
    let ps = c.wait_for(&["ps"], std::time::Duration::from_secs(5), |o| {
        o.contains("tty2 vt100")
    });
    assert!(ps.contains("init"), "{ps}");
    assert!(ps.contains("/sbin/getty -L 115200 console vt100"), "{ps}");
    assert!(ps.contains("/sbin/getty -L 38400 tty1 vt100"), "{ps}");
    assert_eq!(c.attach(&["hostname"]).trim(), name);
    let took = c.stop();
    eprintln!("busybox container: lxc-stop took {took:?}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}
