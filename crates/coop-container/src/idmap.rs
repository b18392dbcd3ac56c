//! `lxc.idmap` on disk: a container with a user namespace sees its files through the
//! id mapping, so its root filesystem must be owned by the *host* ids its container ids
//! map to, and its root (an unprivileged host uid) must be able to reach that rootfs.
//! `coop create` shifts a fresh rootfs into the mapped range, as LXC's unprivileged
//! templates do by running inside the namespace; `coop start` checks the path first so
//! that a lacking search permission is reported as such, not as a bare EACCES from
//! the bind mount deep inside the container's setup.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use coop_config::IdMap;

use crate::{Error, Result};

/// The host id that container id `id` of `kind` ('u' or 'g') maps to, if any.
pub fn host_id(maps: &[IdMap], kind: char, id: u32) -> Option<u32> {
    maps.iter()
        .filter(|m| m.kind == kind)
        .find(|m| id >= m.container_id && id - m.container_id < m.count)
        .map(|m| m.host_id + (id - m.container_id))
}

/// Re-owns every entry below (and including) `root` from container ids to the host ids
/// `maps` gives them. Symlinks are re-owned themselves, never followed. An id the map
/// does not cover is an error naming the file: the container could not own it.
pub fn shift_tree(root: &Path, maps: &[IdMap]) -> Result<u64> {
    let mut count = 0u64;
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md =
            fs::symlink_metadata(&p).map_err(Error::io(format!("cannot stat {}", p.display())))?;
        let (uid, gid) = (md.uid(), md.gid());
        let hu = host_id(maps, 'u', uid).ok_or_else(|| unmapped(&p, "uid", uid))?;
        let hg = host_id(maps, 'g', gid).ok_or_else(|| unmapped(&p, "gid", gid))?;
        // lchown clears set-id bits on regular files; put them back (the mode of a
        // symlink means nothing and cannot be set).
        let mode = md.permissions().mode();
        std::os::unix::fs::lchown(&p, Some(hu), Some(hg)).map_err(Error::io(format!(
            "cannot change the owner of {}",
            p.display()
        )))?;
        if !md.file_type().is_symlink() && mode & 0o6000 != 0 {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode & 0o7777)).map_err(
                Error::io(format!("cannot restore the mode of {}", p.display())),
            )?;
        }
        count += 1;
        if md.is_dir() {
            let rd = fs::read_dir(&p).map_err(Error::io(format!("cannot read {}", p.display())))?;
            for e in rd {
                let e = e.map_err(Error::io(format!("cannot read {}", p.display())))?;
                stack.push(e.path());
            }
        }
    }
    Ok(count)
}

fn unmapped(p: &Path, what: &str, id: u32) -> Error {
    Error::Msg(format!(
        "{} is owned by {what} {id}, which lxc.idmap does not map; add a range covering it",
        p.display()
    ))
}

/// Checks that the container's root, host uid `uid` with host gid `gid`, may search every
/// directory from `/` down to `rootfs`; the first that it may not is named in the error
/// with the fix.
pub fn check_reachable(name: &str, rootfs: &Path, uid: u32, gid: u32) -> Result<()> {
    let mut dirs: Vec<&Path> = rootfs.ancestors().collect();
    dirs.reverse();
    for d in dirs {
        let Ok(md) = fs::metadata(d) else { continue };
        let mode = md.permissions().mode();
        let ok = if md.uid() == uid {
            mode & 0o100 != 0
        } else if md.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Err(Error::Msg(format!(
                "container {name}: its root is uid {uid} on the host (lxc.idmap) and cannot \
                 reach its rootfs: {} is mode {:04o}, owner {}; grant search access \
                 (`chmod o+x {}`) or an ACL for uid {uid}",
                d.display(),
                mode & 0o7777,
                md.uid(),
                d.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps() -> Vec<IdMap> {
        vec![
            IdMap {
                kind: 'u',
                container_id: 0,
                host_id: 100000,
                count: 65536,
            },
            IdMap {
                kind: 'g',
                container_id: 0,
                host_id: 200000,
                count: 1000,
            },
        ]
    }

    #[test]
    fn maps_ids_inside_ranges_only() {
        let m = maps();
        assert_eq!(host_id(&m, 'u', 0), Some(100000));
        assert_eq!(host_id(&m, 'u', 65535), Some(165535));
        assert_eq!(host_id(&m, 'u', 65536), None);
        assert_eq!(host_id(&m, 'g', 999), Some(200999));
        assert_eq!(host_id(&m, 'g', 1000), None);
    }

    #[test]
    fn shifts_a_tree_and_keeps_setuid_bits() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: re-owning files needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/su"), b"x").unwrap();
        fs::set_permissions(root.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("su", root.join("bin/link")).unwrap();
        fs::write(root.join("user-file"), b"y").unwrap();
        std::os::unix::fs::chown(root.join("user-file"), Some(1000), Some(100)).unwrap();
        let n = shift_tree(&root, &maps()).unwrap();
        assert_eq!(n, 5);
        let su = fs::metadata(root.join("bin/su")).unwrap();
        assert_eq!((su.uid(), su.gid()), (100000, 200000));
        assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
        let l = fs::symlink_metadata(root.join("bin/link")).unwrap();
        assert_eq!(l.uid(), 100000);
        let u = fs::metadata(root.join("user-file")).unwrap();
        assert_eq!((u.uid(), u.gid()), (101000, 200100));
    }

    #[test]
    fn an_unmapped_owner_is_named() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: re-owning files needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        fs::write(&f, b"x").unwrap();
        std::os::unix::fs::chown(&f, Some(0), Some(5000)).unwrap();
        let e = shift_tree(&f, &maps()).unwrap_err().to_string();
        assert!(e.contains("gid 5000") && e.contains("/f"), "{e}");
    }

    #[test]
    fn an_unreachable_directory_is_named_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let inner = t.path().join("ct");
        fs::create_dir_all(inner.join("rootfs")).unwrap();
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o700)).unwrap();
        let e = check_reachable("c1", &inner.join("rootfs"), 100000, 100000)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("chmod o+x {}", inner.display())), "{e}");
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o711)).unwrap();
        check_reachable("c1", &inner.join("rootfs"), 100000, 100000).unwrap();
    }
}
