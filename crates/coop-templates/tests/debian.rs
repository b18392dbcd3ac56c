//! The debian template. The full build downloads ~200 MB from the host's Debian mirror and
//! runs only with COOP_TEST_DEBIAN=1; the failure path runs always (it needs no network).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use coop_templates::{
    create, debian_cache_key, detect_init, parse_template, verify_password, InitKind, Progress,
    Request,
};

mod common;

use common::cfg;

/// The host's Debian architecture name (`dpkg --print-architecture`), with its newline.
fn dpkg_arch() -> String {
    String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

fn root_hash(root: &Path) -> String {
    let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
    shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|l| l.split(':').next())
        .unwrap()
        .to_string()
}

#[test]
fn debian_bookworm_minbase() {
    if std::env::var("COOP_TEST_DEBIAN").as_deref() != Ok("1") {
        eprintln!("SKIP: set COOP_TEST_DEBIAN=1 (downloads ~200 MB)");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: debootstrap needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let cache = match std::env::var_os("COOP_TEST_DEBIAN_CACHE") {
        Some(c) => std::path::PathBuf::from(c),
        None => t.path().join("cache"),
    };
    let kind = parse_template("debian", &[]).unwrap();
    let cache_was_filled = cache.join("debian").is_dir();
    let r1 = t.path().join("rootfs1");
    fs::create_dir(&r1).unwrap();
    let mut req = Request::new("deb1", &r1, &cache);
    req.root_password = Some("debpass".into());
    let fractions = std::sync::Mutex::new(0u32);
    let start = Instant::now();
    let out = create(&kind, &req, &|p| {
        if let Progress::Fraction { done, total, .. } = &p {
            assert!(done <= total, "{p:?}");
            *fractions.lock().unwrap() += 1;
        }
        eprintln!("progress: {p:?}");
    })
    .unwrap();
    let first = start.elapsed();

    assert_eq!(cfg(&out, "lxc.signal.halt"), Some("SIGRTMIN+3"));
    assert!(cfg(&out, "lxc.mount.auto").unwrap().contains("cgroup"));
    assert_eq!(cfg(&out, "lxc.uts.name"), Some("deb1"));
    assert!(!out.password_generated);
    assert_eq!(detect_init(&r1).unwrap(), InitKind::Systemd);
    let arch = dpkg_arch();
    let entry = cache.join(format!(
        "debian/{}",
        debian_cache_key("bookworm", "minbase", arch.trim())
    ));
    assert!(entry.join("usr/bin").is_dir(), "{}", entry.display());
    let leftovers: Vec<_> = fs::read_dir(cache.join("debian"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    assert_eq!(
        fs::read_to_string(r1.join("etc/hostname")).unwrap(),
        "deb1\n"
    );
    assert!(fs::read_to_string(r1.join("etc/hosts"))
        .unwrap()
        .contains("127.0.1.1\tdeb1"));
    let hash = root_hash(&r1);
    assert!(verify_password("debpass", &hash), "{hash}");
    // glibc's crypt (through openssl) agrees with our hash.
    let salt = hash.split('$').nth(2).unwrap();
    if let Ok(o) = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, "debpass"])
        .output()
    {
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), hash);
    }
    let sm = fs::metadata(r1.join("etc/shadow")).unwrap();
    assert_eq!(sm.mode() & 0o777, 0o640);
    assert_eq!(sm.gid(), 42, "shadow group kept");
    assert!(!fs::read_to_string(r1.join("etc/fstab"))
        .unwrap()
        .lines()
        .any(|l| !l.starts_with('#')));
    let net = fs::read_to_string(r1.join("etc/systemd/network/80-coop-eth0.network")).unwrap();
    assert!(net.contains("Name=eth0") && net.contains("DHCP=yes"));
    assert!(r1
        .join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
        .exists());
    assert_eq!(
        fs::read_link(r1.join("etc/systemd/system/systemd-networkd-wait-online.service")).unwrap(),
        Path::new("/dev/null")
    );
    assert!(r1.join("lib/systemd/system/console-getty.service").exists());
    assert_eq!(
        fs::read_link(r1.join("etc/resolv.conf")).unwrap(),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
    let id1 = fs::read_to_string(r1.join("etc/machine-id")).unwrap();
    assert_eq!(id1.trim().len(), 32);

    let ok = Command::new("chroot")
        .arg(&r1)
        .args([
            "/bin/sh",
            "-c",
            "dpkg -s systemd-sysv >/dev/null && getent passwd root",
        ])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("root:x:0:0:"));

    // Second container: from the cache, fast, with its own identity.
    let r2 = t.path().join("rootfs2");
    fs::create_dir(&r2).unwrap();
    let req2 = Request::new("deb2", &r2, &cache);
    let start = Instant::now();
    let out2 = create(&kind, &req2, &|_| {}).unwrap();
    let second = start.elapsed();
    assert!(out2.password_generated);
    assert!(verify_password(&out2.root_password, &root_hash(&r2)));
    assert_ne!(fs::read_to_string(r2.join("etc/machine-id")).unwrap(), id1);
    assert_eq!(
        fs::read_to_string(r2.join("etc/hostname")).unwrap(),
        "deb2\n"
    );
    if !cache_was_filled {
        assert!(second * 4 < first, "{second:?} vs {first:?}");
    }

    // Boot the second container under LXC: systemd must reach "running" with no failed unit.
    if common::lxc_available() {
        let name = format!("coop-tpl-deb-{}", std::process::id());
        let c = common::LxcGuard::start(&t.path().join("lxc"), &name, &r2, &out2.config);
        let state = c.wait_for(
            &["systemctl", "is-system-running"],
            std::time::Duration::from_secs(60),
            |o| matches!(o.trim(), "running" | "degraded"),
        );
        let failed = c.attach(&["systemctl", "--failed", "--no-legend", "--plain"]);
        assert_eq!(state.trim(), "running", "failed units: {failed}");
        let active = c.attach(&[
            "systemctl",
            "is-active",
            "console-getty",
            "systemd-networkd",
            "systemd-resolved",
        ]);
        assert_eq!(active, "active\nactive\nactive\n");
        let took = c.stop();
        eprintln!("debian container: lxc-stop took {took:?}");
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    } else {
        eprintln!("SKIP (boot part): LXC not installed");
    }
    eprintln!(
        "debian: first create {first:.1?} ({} fraction reports), from cache {second:.1?}",
        fractions.lock().unwrap()
    );
}

#[test]
fn failed_debootstrap_leaves_no_cache_entry() {
    if !nix::unistd::geteuid().is_root() || !Path::new("/usr/sbin/debootstrap").exists() {
        eprintln!("SKIP: needs root and debootstrap");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let root = t.path().join("rootfs");
    fs::create_dir(&root).unwrap();
    // A build left behind by a killed run is cleared away too.
    let arch = dpkg_arch();
    let stale = cache.join(format!(
        "debian/.tmp-{}-1-deadbeef",
        debian_cache_key("bookworm", "minbase", arch.trim())
    ));
    fs::create_dir_all(stale.join("etc")).unwrap();
    // Nothing listens on the discard port of the loopback address: debootstrap fails at once.
    let kind = parse_template(
        "debian",
        &[
            ("mirror".into(), "http://127.0.0.1:9/debian".into()),
            ("release".into(), "bookworm".into()),
        ],
    )
    .unwrap();
    let e = create(&kind, &Request::new("d", &root, &cache), &|_| {})
        .unwrap_err()
        .to_string();
    eprintln!("expected error: {e}");
    assert!(e.contains("Failed getting release file"), "{e}");
    let left: Vec<_> = fs::read_dir(cache.join("debian"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        fs::metadata(cache.join("debian"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
}

/// The cache-hit path without network: a prepared cache entry is copied and configured.
#[test]
fn configures_a_copy_of_the_cache() {
    if !nix::unistd::geteuid().is_root() || !Path::new("/usr/sbin/debootstrap").exists() {
        eprintln!("SKIP: needs root and debootstrap");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let arch = dpkg_arch();
    let entry = cache.join(format!(
        "debian/{}",
        debian_cache_key("testing", "minbase", arch.trim())
    ));
    let units = entry.join("usr/lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::create_dir_all(entry.join("usr/sbin")).unwrap();
    fs::create_dir_all(entry.join("etc")).unwrap();
    std::os::unix::fs::symlink("usr/lib", entry.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/sbin", entry.join("sbin")).unwrap();
    for u in [
        "systemd",
        "system/systemd-journald.service",
        "system/systemd-networkd.service",
        "system/systemd-networkd.socket",
    ] {
        fs::write(entry.join("usr/lib/systemd").join(u), "x").unwrap();
    }
    std::os::unix::fs::symlink("/lib/systemd/systemd", entry.join("usr/sbin/init")).unwrap();
    fs::write(
        entry.join("etc/shadow"),
        "root:*:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n",
    )
    .unwrap();
    std::os::unix::fs::chown(entry.join("etc/shadow"), Some(0), Some(42)).unwrap();
    fs::set_permissions(entry.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(
        entry.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    // A stale build left by a killed run must not matter for a cache hit.
    let stale = cache.join("debian/.tmp-testing-minbase-x-1-1");
    fs::create_dir_all(&stale).unwrap();

    let root = t.path().join("rootfs");
    fs::create_dir(&root).unwrap();
    let kind = parse_template("debian", &[("release".into(), "testing".into())]).unwrap();
    let mut req = Request::new("cached", &root, &cache);
    req.root_password = Some("pw".into());
    let steps = std::sync::Mutex::new(Vec::new());
    let out = create(&kind, &req, &|p| steps.lock().unwrap().push(p)).unwrap();
    assert!(steps
        .lock()
        .unwrap()
        .iter()
        .any(|p| matches!(p, Progress::Step(s) if s.contains("using cached"))));
    assert_eq!(cfg(&out, "lxc.signal.halt"), Some("SIGRTMIN+3"));
    assert_eq!(detect_init(&root).unwrap(), InitKind::Systemd);
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "cached\n"
    );
    let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert!(shadow.ends_with("\nbin:*:19000:0:99999:7:::\n"), "{shadow}");
    assert!(verify_password("pw", &root_hash(&root)));
    let m = fs::metadata(root.join("etc/shadow")).unwrap();
    assert_eq!((m.mode() & 0o777, m.gid()), (0o640, 42));
    let id = fs::read_to_string(root.join("etc/machine-id")).unwrap();
    assert_ne!(id, "0123456789abcdef0123456789abcdef\n");
    assert_eq!(id.trim().len(), 32);
    assert_eq!(
        fs::read_link(
            root.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
        )
        .unwrap(),
        Path::new("/usr/lib/systemd/system/systemd-networkd.service")
    );
    assert!(root
        .join("etc/systemd/system/sockets.target.wants/systemd-networkd.socket")
        .is_symlink());
    // No resolved in this tree: resolv.conf is left alone, and its unit is not enabled.
    assert!(!root.join("etc/resolv.conf").exists());
    assert!(!root
        .join("etc/systemd/system/sysinit.target.wants/systemd-resolved.service")
        .exists());
    assert_eq!(
        fs::read_link(root.join("etc/systemd/system/getty-static.service")).unwrap(),
        Path::new("/dev/null")
    );
    assert!(fs::read_to_string(root.join("etc/fstab"))
        .unwrap()
        .lines()
        .all(|l| l.starts_with('#')));
    // The cache entry itself is untouched.
    assert_eq!(
        fs::read_to_string(entry.join("etc/machine-id")).unwrap(),
        "0123456789abcdef0123456789abcdef\n"
    );
    assert!(!entry.join("etc/hostname").exists());
}
