//! The `tar` template: unpacks a root filesystem archive safely and detects its init.

use std::cell::Cell;
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use crate::fsutil::{read_in_root, resolve_in_root, write_in_root};
use crate::password::{hash_password, set_root_hash, shadow_today};
use crate::{choose_password, common_config, Outcome, Progress, Request, TarOpts, TemplateError};

/// Compression of an archive, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// Picks the decompressor from the file name, falling back to the magic bytes.
    pub fn detect(file: &Path) -> Result<Compression, TemplateError> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let by_name = [
            (".tar.gz", Compression::Gzip),
            (".tgz", Compression::Gzip),
            (".tar.xz", Compression::Xz),
            (".txz", Compression::Xz),
            (".tar.zst", Compression::Zstd),
            (".tzst", Compression::Zstd),
            (".tar", Compression::None),
        ];
        if let Some((_, c)) = by_name.iter().find(|(s, _)| name.ends_with(s)) {
            return Ok(*c);
        }
        let mut magic = [0u8; 6];
        let n = fs::File::open(file)
            .and_then(|mut f| f.read(&mut magic))
            .map_err(|e| TemplateError::io("cannot read archive", file, e))?;
        let m = &magic[..n];
        Ok(if m.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if m.starts_with(b"\xfd7zXZ\0") {
            Compression::Xz
        } else if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        })
    }
}

/// The init a tree boots with, which decides the halt signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    Systemd,
    Busybox,
    Other,
}

impl InitKind {
    /// The signal that makes this init shut the container down cleanly.
    pub fn halt_signal(self) -> &'static str {
        match self {
            InitKind::Systemd => "SIGRTMIN+3",
            InitKind::Busybox => "SIGUSR1",
            InitKind::Other => "SIGPWR",
        }
    }
}

/// Looks at `/sbin/init` inside `root` (following links in-root) to tell which init it is.
pub fn detect_init(root: &Path) -> Result<InitKind, TemplateError> {
    let init = resolve_in_root(root, Path::new("sbin/init"))?;
    let Ok(meta) = fs::metadata(&init) else {
        tracing::warn!(root = %root.display(), "no /sbin/init in the tree");
        return Ok(InitKind::Other);
    };
    let base = init
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base == "systemd" {
        return Ok(InitKind::Systemd);
    }
    if base == "busybox" {
        return Ok(InitKind::Busybox);
    }
    // A copied rather than linked binary: look for the program's name in its first megabytes.
    if meta.is_file() {
        let mut buf = Vec::new();
        if let Ok(f) = fs::File::open(&init) {
            let _ = f.take(4 << 20).read_to_end(&mut buf);
        }
        if contains(&buf, b"BusyBox v") {
            return Ok(InitKind::Busybox);
        }
        if contains(&buf, b"systemd") && contains(&buf, b"SYSTEMD_") {
            return Ok(InitKind::Systemd);
        }
    }
    Ok(InitKind::Other)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Counts bytes read from the compressed file, for progress.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

pub(crate) fn create(
    opts: &TarOpts,
    req: &Request,
    progress: &dyn Fn(Progress),
) -> Result<Outcome, TemplateError> {
    progress(Progress::Step(format!("unpacking {}", opts.file.display())));
    unpack(&opts.file, req.rootfs, progress)?;

    progress(Progress::Step("detecting init".into()));
    let init = detect_init(req.rootfs)?;
    tracing::info!(?init, "detected init");

    progress(Progress::Step("configuring".into()));
    let root = req.rootfs;
    write_in_root(
        root,
        Path::new("etc/hostname"),
        format!("{}\n", req.name).as_bytes(),
        0o644,
    )?;
    if let Some(hosts) = read_in_root(root, Path::new("etc/hosts"))? {
        write_in_root(
            root,
            Path::new("etc/hosts"),
            hosts_with_name(&hosts, req.name).as_bytes(),
            0o644,
        )?;
    }
    let (password, generated) = match read_in_root(root, Path::new("etc/shadow"))? {
        Some(shadow) => {
            let (password, generated) = choose_password(req);
            let hash = hash_password(&password)?;
            let new = set_root_hash(&shadow, &hash, shadow_today());
            write_in_root(root, Path::new("etc/shadow"), new.as_bytes(), 0o640)?;
            (password, generated)
        }
        None => {
            progress(Progress::Step(
                "no /etc/shadow in the archive: root password left unchanged".into(),
            ));
            tracing::warn!("archive has no /etc/shadow; root password not set");
            (String::new(), false)
        }
    };
    let mut config = common_config(req, init.halt_signal());
    if init != InitKind::Systemd {
        config.retain(|(k, _)| k != "lxc.mount.auto");
        config.push(("lxc.mount.auto".into(), "proc:mixed sys:ro".into()));
    }
    Ok(Outcome {
        config,
        root_password: password,
        password_generated: generated,
    })
}

/// Keeps /etc/hosts but makes 127.0.1.1 name the container.
pub(crate) fn hosts_with_name(hosts: &str, name: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in hosts.lines() {
        if l.split_whitespace().next() == Some("127.0.1.1") {
            if !done {
                out.push_str(&format!("127.0.1.1\t{name}\n"));
                done = true;
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !done {
        out.push_str(&format!("127.0.1.1\t{name}\n"));
    }
    out
}

/// Unpacks `file` into `root`, keeping modes, owners, links and device nodes, refusing any
/// entry that would land outside `root`. A single top-level directory holding the tree is
/// stripped.
pub fn unpack(file: &Path, root: &Path, progress: &dyn Fn(Progress)) -> Result<(), TemplateError> {
    let comp = Compression::detect(file)?;
    let f = fs::File::open(file).map_err(|e| TemplateError::io("cannot open archive", file, e))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let count = Rc::new(Cell::new(0));
    let counted = BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: f,
            count: count.clone(),
        },
    );
    let reader: Box<dyn Read> = match comp {
        Compression::None => Box::new(counted),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(counted)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(counted)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(counted)
                .map_err(|e| TemplateError::io("cannot start zstd decoder for", file, e))?,
        ),
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);

    let archive_err = |reason: String| TemplateError::Archive {
        file: file.to_path_buf(),
        reason,
    };
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    let mut last_report = 0u64;
    let entries = ar
        .entries()
        .map_err(|e| archive_err(format!("cannot read: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_err(format!("corrupt archive: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = safe_relative(
            &entry
                .path()
                .map_err(|e| archive_err(format!("bad path `{shown}`: {e}")))?,
        )
        .map_err(|reason| TemplateError::UnsafeEntry {
            file: file.to_path_buf(),
            entry: shown.clone(),
            reason,
        })?;
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| archive_err(format!("bad link name in `{shown}`: {e}")))?
                .unwrap_or_default();
            safe_relative(&target).map_err(|reason| TemplateError::UnsafeEntry {
                file: file.to_path_buf(),
                entry: shown.clone(),
                reason: format!("hard link target: {reason}"),
            })?;
        }
        if rel.as_os_str().is_empty() {
            // `./` itself: the rootfs already exists; take its mode.
            if kind.is_dir() {
                if let Ok(mode) = entry.header().mode() {
                    let _ = fs::set_permissions(root, fs::Permissions::from_mode(mode & 0o7777));
                }
            }
            continue;
        }
        let is_special = kind.is_character_special() || kind.is_block_special() || kind.is_fifo();
        if is_special {
            make_node(root, &rel, &entry)
                .map_err(|e| archive_err(format!("cannot create device/fifo `{shown}`: {e}")))?;
        } else {
            let done = entry
                .unpack_in(root)
                .map_err(|e| TemplateError::UnsafeEntry {
                    file: file.to_path_buf(),
                    entry: shown.clone(),
                    reason: e.to_string(),
                })?;
            if !done {
                return Err(TemplateError::UnsafeEntry {
                    file: file.to_path_buf(),
                    entry: shown,
                    reason: "refused by the unpacker".into(),
                });
            }
            if kind.is_dir() {
                if let Ok(mtime) = entry.header().mtime() {
                    dirs.push((root.join(&rel), mtime));
                }
            }
        }
        let c = count.get();
        if c - last_report >= (1 << 22) {
            last_report = c;
            progress(Progress::Fraction {
                done: c.min(total),
                total,
                what: "unpacking".into(),
            });
        }
    }
    progress(Progress::Fraction {
        done: total,
        total,
        what: "unpacking".into(),
    });
    // Files written into directories bumped their mtimes; put the archive's back.
    for (d, mtime) in dirs.iter().rev() {
        let t = nix::sys::time::TimeSpec::new(*mtime as i64, 0);
        let _ = nix::sys::stat::utimensat(
            None,
            d,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    strip_single_top_dir(root)
}

/// The entry path as a relative path of normal components; `..` anywhere is refused.
fn safe_relative(p: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("path contains `..`".into()),
            Component::Prefix(_) => return Err("path has a prefix".into()),
        }
    }
    Ok(out)
}

/// Creates a device node or fifo (the tar crate would write these as empty regular files).
fn make_node<R: Read>(root: &Path, rel: &Path, entry: &tar::Entry<R>) -> io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let h = entry.header();
    let kind = h.entry_type();
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = crate::fsutil::mkdir_in_root(root, parent_rel, 0o755)
        .map_err(|e| io::Error::other(e.to_string()))?;
    // mkdir_in_root resolves in-root; also make sure the kernel sees the same place.
    let canon_root = root.canonicalize()?;
    if !parent.canonicalize()?.starts_with(&canon_root) {
        return Err(io::Error::other("parent directory escapes the root"));
    }
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?;
    let dst = parent.join(name);
    if let Ok(m) = fs::symlink_metadata(&dst) {
        if m.is_dir() {
            return Err(io::Error::other("a directory is in the way"));
        }
        fs::remove_file(&dst)?;
    }
    let mode = h.mode()? & 0o7777;
    let (sflag, dev) = if kind.is_fifo() {
        (SFlag::S_IFIFO, 0)
    } else {
        let major = h.device_major()?.unwrap_or(0) as u64;
        let minor = h.device_minor()?.unwrap_or(0) as u64;
        let dev = nix::sys::stat::makedev(major, minor);
        if kind.is_character_special() {
            (SFlag::S_IFCHR, dev)
        } else {
            (SFlag::S_IFBLK, dev)
        }
    };
    mknod(&dst, sflag, Mode::from_bits_truncate(mode), dev).map_err(io::Error::from)?;
    let uid = h.uid()? as u32;
    let gid = h.gid()? as u32;
    nix::unistd::fchownat(
        None,
        &dst,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)?;
    // mknod applied the umask; set the exact mode.
    fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
    if let Ok(mtime) = h.mtime() {
        let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
        let _ = nix::sys::stat::utimensat(
            None,
            &dst,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    Ok(())
}

/// Names that show a directory is a root filesystem.
const ROOT_MARKERS: &[&str] = &["etc", "bin", "sbin", "usr", "lib"];

/// If `root` holds nothing but one directory that looks like a root filesystem (e.g. an archive
/// of `rootfs/`), moves its contents up one level.
fn strip_single_top_dir(root: &Path) -> Result<(), TemplateError> {
    let io_err = |op, p: &Path, e| TemplateError::io(op, p, e);
    let children: Vec<_> = fs::read_dir(root)
        .map_err(|e| io_err("cannot list", root, e))?
        .take(2)
        .collect::<Result<_, _>>()
        .map_err(|e| io_err("cannot list", root, e))?;
    let [only] = children.as_slice() else {
        return Ok(());
    };
    let top = only.path();
    let is_dir = fs::symlink_metadata(&top)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if !is_dir
        || ROOT_MARKERS.contains(&only.file_name().to_string_lossy().as_ref())
        || !ROOT_MARKERS
            .iter()
            .any(|m| top.join(m).symlink_metadata().is_ok())
    {
        return Ok(());
    }
    tracing::info!(dir = %top.display(), "archive holds a single top-level directory; stripping it");
    // Rename first so a child with the same name as the top dir cannot collide.
    let moved = root.join(format!(".coop-strip-{}", std::process::id()));
    fs::rename(&top, &moved).map_err(|e| io_err("cannot rename", &top, e))?;
    let meta = fs::symlink_metadata(&moved).map_err(|e| io_err("cannot stat", &moved, e))?;
    for child in fs::read_dir(&moved).map_err(|e| io_err("cannot list", &moved, e))? {
        let child = child.map_err(|e| io_err("cannot list", &moved, e))?;
        let dst = root.join(child.file_name());
        fs::rename(child.path(), &dst).map_err(|e| io_err("cannot move", &child.path(), e))?;
    }
    fs::remove_dir(&moved).map_err(|e| io_err("cannot remove", &moved, e))?;
    fs::set_permissions(root, meta.permissions()).map_err(|e| io_err("cannot chmod", root, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_name_and_magic() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            Compression::detect(Path::new("a.TGZ")).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(Path::new("a.tar.xz")).unwrap(),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(Path::new("a.tar.zst")).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(Path::new("a.tar")).unwrap(),
            Compression::None
        );
        let p = t.path().join("rootfs.img");
        fs::write(&p, [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
        assert_eq!(Compression::detect(&p).unwrap(), Compression::Zstd);
        assert!(Compression::detect(&t.path().join("missing")).is_err());
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_relative(Path::new("a/../b")).is_err());
        assert!(safe_relative(Path::new("../x")).is_err());
        assert_eq!(
            safe_relative(Path::new("/./etc/x")).unwrap(),
            PathBuf::from("etc/x")
        );
    }

    #[test]
    fn hosts_gets_the_container_name() {
        let h = hosts_with_name("127.0.0.1 localhost\n127.0.1.1 old\n", "new");
        assert_eq!(h, "127.0.0.1 localhost\n127.0.1.1\tnew\n");
        assert_eq!(hosts_with_name("", "n"), "127.0.1.1\tn\n");
    }

    #[test]
    fn init_detection_by_link() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        assert_eq!(detect_init(r).unwrap(), InitKind::Other);
        fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        fs::write(r.join("usr/lib/systemd/systemd"), "x").unwrap();
        fs::create_dir_all(r.join("usr/sbin")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", r.join("sbin")).unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", r.join("usr/sbin/init")).unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        assert_eq!(detect_init(r).unwrap(), InitKind::Systemd);
        fs::remove_file(r.join("usr/sbin/init")).unwrap();
        fs::write(r.join("usr/sbin/init"), "#!/bin/sh\n").unwrap();
        assert_eq!(detect_init(r).unwrap(), InitKind::Other);
    }
}
