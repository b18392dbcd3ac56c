//! File operations inside a container root that may hold hostile symlinks.
//!
//! A tree unpacked from an archive (or a Debian tree) can contain absolute symlinks such as
//! `etc -> /etc`; written to naively, they would redirect our writes to the host. Paths are
//! therefore resolved here the way the kernel would inside a chroot of the rootfs.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rand::Rng;

use crate::TemplateError;

/// Symlink hops allowed while resolving one path, as Linux's MAXSYMLINKS.
const MAX_HOPS: u32 = 40;

/// Resolves `rel` (relative, or absolute as seen from inside the container) against `root`
/// with chroot semantics: symlinks are followed but can never leave `root`. Missing trailing
/// components are kept as they are.
pub(crate) fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf, TemplateError> {
    let mut todo: VecDeque<OsString> = components(rel);
    let mut done: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let mut cand = root.to_path_buf();
        cand.extend(&done);
        cand.push(&c);
        match fs::symlink_metadata(&cand) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(TemplateError::Escape {
                        path: rel.to_path_buf(),
                        reason: "too many levels of symbolic links".into(),
                    });
                }
                let target = fs::read_link(&cand)
                    .map_err(|e| TemplateError::io("cannot read link", &cand, e))?;
                if target.is_absolute() {
                    done.clear();
                }
                for t in components(&target).into_iter().rev() {
                    todo.push_front(t);
                }
            }
            _ => done.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    Ok(out)
}

/// Normal components and `..` of a path; `/` and `.` are dropped.
fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Creates `rel` and its missing parents inside `root` (mode for new dirs), refusing to
/// create anything through a symlink that leaves the root.
pub(crate) fn mkdir_in_root(root: &Path, rel: &Path, mode: u32) -> Result<PathBuf, TemplateError> {
    let mut cur = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => cur.push(n),
            Component::ParentDir => {
                cur.pop();
            }
            _ => {}
        }
        let real = resolve_in_root(root, &cur)?;
        match fs::symlink_metadata(&real) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(TemplateError::io(
                    "not a directory",
                    &real,
                    std::io::Error::from(std::io::ErrorKind::NotADirectory),
                ))
            }
            Err(_) => {
                fs::create_dir(&real)
                    .map_err(|e| TemplateError::io("cannot create directory", &real, e))?;
                fs::set_permissions(&real, fs::Permissions::from_mode(mode))
                    .map_err(|e| TemplateError::io("cannot chmod", &real, e))?;
            }
        }
    }
    resolve_in_root(root, rel)
}

/// Atomically writes `data` to `rel` inside `root`: a temporary file in the same directory,
/// then a rename. An existing file's owner and mode are kept, else `mode` (owner root) is used.
pub(crate) fn write_in_root(
    root: &Path,
    rel: &Path,
    data: &[u8],
    mode: u32,
) -> Result<PathBuf, TemplateError> {
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name().ok_or_else(|| TemplateError::Escape {
        path: rel.to_path_buf(),
        reason: "no file name".into(),
    })?;
    mkdir_in_root(root, parent_rel, 0o755)?;
    let target = resolve_in_root(root, rel)?;
    let dir = target.parent().unwrap_or(root).to_path_buf();
    let existing = fs::symlink_metadata(&target).ok().filter(|m| m.is_file());
    let tmp = dir.join(format!(
        ".{}.coop-tmp-{:08x}",
        name.to_string_lossy(),
        rand::thread_rng().gen::<u32>()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        use std::os::unix::fs::MetadataExt;
        let (uid, gid, mode) = match &existing {
            Some(m) => (m.uid(), m.gid(), m.mode() & 0o7777),
            None => (0, 0, mode),
        };
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(TemplateError::io("cannot write", &target, e));
    }
    Ok(target)
}

/// Reads `rel` inside `root` if it is a regular file there.
pub(crate) fn read_in_root(root: &Path, rel: &Path) -> Result<Option<String>, TemplateError> {
    let target = resolve_in_root(root, rel)?;
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_file() => fs::read_to_string(&target)
            .map(Some)
            .map_err(|e| TemplateError::io("cannot read", &target, e)),
        _ => Ok(None),
    }
}

/// Makes `rel` (inside `root`, parents resolved in-root) a symlink to `target`, replacing a
/// file or link that was there.
pub(crate) fn symlink_in_root(root: &Path, rel: &Path, target: &Path) -> Result<(), TemplateError> {
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let dir = mkdir_in_root(root, parent_rel, 0o755)?;
    let name = rel.file_name().ok_or_else(|| TemplateError::Escape {
        path: rel.to_path_buf(),
        reason: "no file name".into(),
    })?;
    let link = dir.join(name);
    if let Ok(m) = fs::symlink_metadata(&link) {
        if m.is_dir() {
            return Err(TemplateError::io(
                "cannot replace directory with a symlink",
                &link,
                std::io::Error::from(std::io::ErrorKind::IsADirectory),
            ));
        }
        fs::remove_file(&link).map_err(|e| TemplateError::io("cannot remove", &link, e))?;
    }
    std::os::unix::fs::symlink(target, &link)
        .map_err(|e| TemplateError::io("cannot create symlink", &link, e))
}

/// Mount points at or below `dir`, deepest first, from /proc/self/mountinfo.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(&dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Removes a tree we created (a failed or stale cache build). Anything mounted below it is
/// detached first, so that removing never reaches into a bind-mounted host directory.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), TemplateError> {
    for m in mounts_under(dir) {
        tracing::warn!(mount = %m.display(), "detaching leftover mount before removal");
        nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
            TemplateError::io(
                "cannot unmount",
                &m,
                std::io::Error::from_raw_os_error(e as i32),
            )
        })?;
    }
    if !mounts_under(dir).is_empty() {
        return Err(TemplateError::io(
            "refusing to remove a tree that still has mounts",
            dir,
            std::io::Error::from(std::io::ErrorKind::ResourceBusy),
        ));
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TemplateError::io("cannot remove", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolution_stays_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("lib/x.so")).unwrap(),
            root.join("usr/lib/x.so")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("up/usr/x")).unwrap(),
            root.join("usr/x")
        );
        // `etc -> /etc` is the container's /etc, i.e. the link itself: a loop, never the
        // host's /etc.
        assert!(resolve_in_root(root, Path::new("up/etc/shadow")).is_err());
        assert!(resolve_in_root(root, Path::new("loop1")).is_err());
        assert_eq!(
            resolve_in_root(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
    }

    #[test]
    fn writes_never_follow_links_out() {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        symlink(outside.path(), root.join("etc")).unwrap();
        // The container's /etc is a link to an absolute host path that, seen from inside, does
        // not exist: the write must land inside the root.
        let r = write_in_root(root, Path::new("etc/hostname"), b"x\n", 0o644);
        if let Ok(p) = &r {
            assert!(p.starts_with(root), "{}", p.display());
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);

        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), "old").unwrap();
        fs::set_permissions(root.join("d/f"), fs::Permissions::from_mode(0o640)).unwrap();
        write_in_root(root, Path::new("/d/f"), b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(root.join("d/f")).unwrap(), "new");
        let m = fs::metadata(root.join("d/f")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(fs::read_dir(root.join("d")).unwrap().count(), 1);
    }

    #[test]
    fn mountinfo_paths_unescape() {
        assert_eq!(
            unescape_mount_path("/a\\040b\\134c"),
            PathBuf::from("/a b\\c")
        );
    }
}
