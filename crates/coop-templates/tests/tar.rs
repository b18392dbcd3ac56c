//! The tar template: archives of a real busybox tree in every compression, unpacked and
//! compared entry by entry; hostile archives are refused without writing outside the root.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use coop_templates::{
    create, parse_template, verify_password, Outcome, Progress, Request, TemplateError,
};

fn usable() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Path::new("/bin/busybox").exists()
        && Command::new("tar").arg("--version").output().is_ok();
    if !ok {
        eprintln!("SKIP: needs root, /bin/busybox and GNU tar");
    }
    ok
}

/// A busybox tree plus the awkward entries: device nodes, a fifo, hard links, setuid,
/// foreign owners, an absolute symlink.
fn source_tree(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir(&root).unwrap();
    let kind = parse_template("busybox", &[]).unwrap();
    create(&kind, &Request::new("src", &root, dir), &|_| {}).unwrap();
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let node = |path: &str, kind: SFlag, mode: u32, dev: u64| {
        mknod(&root.join(path), kind, Mode::from_bits_truncate(mode), dev)
            .unwrap_or_else(|e| panic!("mknod {path}: {e}"));
    };
    node("dev/null", SFlag::S_IFCHR, 0o666, makedev(1, 3));
    node("dev/console", SFlag::S_IFCHR, 0o600, makedev(5, 1));
    node("dev/loop9", SFlag::S_IFBLK, 0o660, makedev(7, 9));
    node("run/initctl", SFlag::S_IFIFO, 0o600, 0);
    fs::set_permissions(root.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::create_dir_all(root.join("usr/share/data")).unwrap();
    fs::write(root.join("usr/share/data/a"), b"shared bytes\n").unwrap();
    fs::hard_link(root.join("usr/share/data/a"), root.join("usr/share/data/b")).unwrap();
    let suid = root.join("usr/bin/suidtool");
    fs::write(&suid, vec![7u8; 70_000]).unwrap();
    std::os::unix::fs::chown(&suid, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("var/www")).unwrap();
    std::os::unix::fs::chown(root.join("var/www"), Some(33), Some(33)).unwrap();
    fs::set_permissions(root.join("var/www"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("etc/pw-link")).unwrap();
    std::os::unix::fs::lchown(root.join("etc/pw-link"), Some(5), Some(6)).unwrap();
    root
}

#[derive(Debug, PartialEq)]
struct Entry {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    mtime: Option<i64>,
    link: Option<PathBuf>,
    data: Option<Vec<u8>>,
}

/// Files the template rewrites (hostname, hosts, shadow) are left out.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        let skip = ["etc/hostname", "etc/hosts", "etc/shadow"];
        if rel.as_os_str().is_empty() || skip.iter().any(|s| rel == Path::new(s)) {
            continue;
        }
        let rewritten_dir = rel == Path::new("etc");
        out.insert(
            rel,
            Entry {
                kind: m.mode() & 0o170000,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                rdev: m.rdev(),
                mtime: (!rewritten_dir).then(|| m.mtime()),
                link: m
                    .file_type()
                    .is_symlink()
                    .then(|| fs::read_link(&p).unwrap()),
                data: m.is_file().then(|| fs::read(&p).unwrap()),
            },
        );
    }
    out
}

fn gnu_tar(args: &[&str]) -> Vec<u8> {
    let out = Command::new("tar").args(args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

fn compress(data: &[u8], ext: &str) -> Vec<u8> {
    match ext {
        "tar" => data.to_vec(),
        "tar.gz" | "tgz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "tar.xz" => {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "tar.zst" => zstd::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

fn unpack_with_template(
    archive: &Path,
    dir: &Path,
    password: Option<&str>,
) -> (PathBuf, Result<Outcome, TemplateError>) {
    let root = dir.join(format!(
        "out-{}",
        archive.file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir(&root).unwrap();
    let kind = parse_template("tar", &[("file".into(), archive.to_str().unwrap().into())]).unwrap();
    let mut req = Request::new("fromtar", &root, dir);
    req.root_password = password.map(str::to_string);
    let last = std::sync::Mutex::new(None);
    let res = create(&kind, &req, &|p| {
        if let Progress::Fraction { .. } = p {
            *last.lock().unwrap() = Some(p);
        }
    });
    if res.is_ok() {
        // The unpacking bar ends full, measured in compressed bytes read.
        let size = fs::metadata(archive).unwrap().len();
        let want = Progress::Fraction {
            done: size,
            total: size,
            what: "unpacking".into(),
        };
        assert_eq!(last.into_inner().unwrap(), Some(want));
    }
    (root, res)
}

#[test]
fn every_compression_round_trips() {
    if !usable() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = source_tree(t.path());
    let want = snapshot(&src);
    let plain = gnu_tar(&[
        "--numeric-owner",
        "-cf",
        "-",
        "-C",
        src.to_str().unwrap(),
        ".",
    ]);
    for ext in ["tar", "tar.gz", "tar.xz", "tar.zst"] {
        let archive = t.path().join(format!("rootfs.{ext}"));
        fs::write(&archive, compress(&plain, ext)).unwrap();
        let (root, res) = unpack_with_template(&archive, t.path(), Some("tarpass"));
        let out = res.unwrap_or_else(|e| panic!("{ext}: {e}"));
        let got = snapshot(&root);
        for (k, v) in &want {
            assert_eq!(got.get(k), Some(v), "{ext}: {}", k.display());
        }
        assert_eq!(got.len(), want.len(), "{ext}");
        let a = fs::metadata(root.join("usr/share/data/a")).unwrap();
        let b = fs::metadata(root.join("usr/share/data/b")).unwrap();
        assert_eq!(a.ino(), b.ino(), "{ext}: hard link kept");
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o7777, 0o755);

        assert!(
            out.config
                .contains(&("lxc.signal.halt".into(), "SIGUSR1".into())),
            "{ext}"
        );
        assert!(out
            .config
            .contains(&("lxc.uts.name".into(), "fromtar".into())));
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "fromtar\n"
        );
        assert!(fs::read_to_string(root.join("etc/hosts"))
            .unwrap()
            .contains("127.0.1.1\tfromtar"));
        let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
        let hash = shadow.lines().next().unwrap().split(':').nth(1).unwrap();
        assert!(verify_password("tarpass", hash), "{ext}");
        assert_eq!(
            fs::metadata(root.join("etc/shadow")).unwrap().mode() & 0o777,
            0o600
        );
        let ok = Command::new("chroot")
            .arg(&root)
            .args(["/bin/sh", "-c", "echo ok"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok\n", "{ext}");
    }
}

#[test]
fn single_top_dir_is_stripped() {
    if !usable() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = source_tree(t.path());
    let want = snapshot(&src);
    let plain = gnu_tar(&[
        "--numeric-owner",
        "-cf",
        "-",
        "-C",
        t.path().to_str().unwrap(),
        "rootfs",
    ]);
    let archive = t.path().join("nested.tgz");
    fs::write(&archive, compress(&plain, "tgz")).unwrap();
    let (root, res) = unpack_with_template(&archive, t.path(), None);
    let out = res.unwrap();
    assert!(out.password_generated);
    let got = snapshot(&root);
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "{}", k.display());
    }
    assert!(!root.join("rootfs").exists());
}

#[test]
fn init_detection_sets_halt_signal() {
    if !usable() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    for (init, signal) in [
        (Some("/lib/systemd/systemd"), "SIGRTMIN+3"),
        (None, "SIGPWR"),
    ] {
        let src = t.path().join("src");
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(src.join("lib/systemd")).unwrap();
        fs::create_dir_all(src.join("sbin")).unwrap();
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::write(src.join("lib/systemd/systemd"), b"\x7fELF").unwrap();
        match init {
            Some(target) => std::os::unix::fs::symlink(target, src.join("sbin/init")).unwrap(),
            None => fs::write(src.join("sbin/init"), b"#!/bin/sh\n").unwrap(),
        }
        let archive = t.path().join(format!("init-{signal}.tar"));
        fs::write(
            &archive,
            gnu_tar(&["-cf", "-", "-C", src.to_str().unwrap(), "."]),
        )
        .unwrap();
        let (_, res) = unpack_with_template(&archive, t.path(), None);
        let out = res.unwrap();
        assert!(
            out.config
                .contains(&("lxc.signal.halt".into(), signal.into())),
            "{:?}",
            out.config
        );
        // No /etc/shadow in the archive: no password can be set.
        assert_eq!(out.root_password, "");
        assert!(!out.password_generated);
    }
}

/// A raw header, so that names the tar crate's builder refuses (`..`) can be written.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// Name, type, link target, data.
type RawEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

fn hostile(entries: &[RawEntry], path: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        raw_entry(&mut b, name, *kind, link, data);
    }
    fs::write(path, b.into_inner().unwrap()).unwrap();
}

#[test]
fn hostile_archives_are_refused() {
    if !usable() {
        return;
    }
    use tar::EntryType as E;
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), "untouched").unwrap();
    let o = outside.to_str().unwrap().to_string();
    let victim = format!("{o}/victim");
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        (
            "dotdot",
            vec![
                ("etc/", E::Directory, "", b""),
                ("../evil", E::Regular, "", b"x"),
            ],
        ),
        (
            "deep-dotdot",
            vec![("a/../../outside/evil", E::Regular, "", b"x")],
        ),
        (
            "through-symlink",
            vec![
                ("etc", E::Symlink, &o, b""),
                ("etc/passwd", E::Regular, "", b"x"),
            ],
        ),
        (
            "dir-through-symlink",
            vec![
                ("var", E::Symlink, &o, b""),
                ("var/lib/", E::Directory, "", b""),
            ],
        ),
        (
            "hardlink-out",
            vec![("h", E::Link, "../outside/victim", b"")],
        ),
        (
            "hardlink-via-symlink",
            vec![
                ("l", E::Symlink, &victim, b""),
                ("h", E::Link, "l/../victim", b""),
            ],
        ),
        (
            "hardlink-to-outside-symlink",
            vec![("l", E::Symlink, &victim, b""), ("h", E::Link, "l", b"")],
        ),
    ];
    for (name, entries) in &cases {
        let archive = t.path().join(format!("{name}.tar"));
        hostile(entries, &archive);
        let (_, res) = unpack_with_template(&archive, t.path(), None);
        let e = res.expect_err(name);
        eprintln!("{name}: {e}");
        assert!(
            matches!(e, TemplateError::UnsafeEntry { .. }),
            "{name}: {e}"
        );
        let listed: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(listed, ["victim"], "{name}");
        assert_eq!(
            fs::read_to_string(outside.join("victim")).unwrap(),
            "untouched",
            "{name}"
        );
        assert!(!t.path().join("evil").exists());
    }

    // Allowed but defused: a link pointing outside is kept as a link and a file of the same
    // name replaces the link instead of writing through it; an absolute name lands inside.
    let unique = format!("coop-abs-{}", std::process::id());
    let abs = format!("/{unique}");
    let archive = t.path().join("defused.tar");
    hostile(
        &[
            ("lnk", E::Symlink, &victim, b""),
            ("lnk", E::Regular, "", b"replaced"),
            ("keep", E::Symlink, &victim, b""),
            (&abs, E::Regular, "", b"inside"),
        ],
        &archive,
    );
    let (root, res) = unpack_with_template(&archive, t.path(), None);
    res.unwrap();
    assert_eq!(
        fs::read_to_string(outside.join("victim")).unwrap(),
        "untouched"
    );
    assert_eq!(fs::read_to_string(root.join("lnk")).unwrap(), "replaced");
    assert_eq!(
        fs::read_link(root.join("keep")).unwrap(),
        Path::new(&victim)
    );
    assert_eq!(fs::read_to_string(root.join(&unique)).unwrap(), "inside");
    assert!(!Path::new(&abs).exists());
}

#[test]
fn corrupt_and_missing_archives_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("r");
    fs::create_dir(&root).unwrap();
    let missing = t.path().join("nope.tar.gz");
    let kind = parse_template("tar", &[("file".into(), missing.to_str().unwrap().into())]).unwrap();
    let e = create(&kind, &Request::new("x", &root, t.path()), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.tar.gz"), "{e}");
    let bad = t.path().join("bad.tar.xz");
    fs::write(&bad, b"this is not xz").unwrap();
    let kind = parse_template("tar", &[("file".into(), bad.to_str().unwrap().into())]).unwrap();
    let e = create(&kind, &Request::new("x", &root, t.path()), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.tar.xz"), "{e}");
}
