//! `coop copy`: a new container or instance from an existing one, as lxc-copy.
//!
//! A container's root filesystem is copied (`cp -a --reflink=auto`, instant on CoW file
//! systems). A coLinux instance's disk can instead be shared with `--snapshot`: the new
//! instance gets a copy-on-write overlay in front of the original image, read-only, so
//! the copy takes no time and no space. The original then becomes a base image: UML
//! refuses an overlay whose backing file changed, so the original must not run again
//! while its snapshots are in use.

use std::path::Path;
use std::process::Command;

use coop_config::Config;

use crate::state::RunState;
use crate::store::validate_name;
use crate::{Error, Result, Store};

pub fn copy(store: &Store, src: &str, dst: &str, snapshot: bool) -> Result<()> {
    store.require(src)?;
    validate_name(dst)?;
    let _lock_src = store.lock(src)?;
    let _lock_dst = store.lock(dst)?;
    if store.dir(dst).exists() {
        return Err(Error::Exists(dst.to_string()));
    }
    if RunState::load(store, src)?.is_some() {
        return Err(Error::Msg(format!(
            "container {src} is running: stop it before copying (`coop stop -n {src}`)"
        )));
    }
    let config = Config::load(&store.config_path(src))?;
    let colinux = config.kind.as_deref() == Some("colinux");
    if snapshot && !colinux {
        return Err(Error::Msg(format!(
            "--snapshot needs a coLinux instance (a disk image); {src} is a container: copy without it"
        )));
    }
    let src_root = config
        .rootfs
        .clone()
        .unwrap_or_else(|| store.dir(src).join("rootfs"));
    let staging = store
        .lib
        .join(format!(".{dst}.creating-{}", std::process::id()));
    let result = (|| -> Result<()> {
        std::fs::create_dir_all(&staging)
            .map_err(Error::io(format!("cannot create {}", staging.display())))?;
        let new_root = staging.join("rootfs");
        if snapshot {
            // The jail is a few empty directories and links; the disk stays where it is.
            copy_tree(&src_root, &new_root, &["disk.img"])?;
        } else {
            copy_tree(&src_root, &new_root, &[])?;
            if !colinux {
                rename_host(&new_root, src, dst);
            }
        }
        let final_root = store.dir(dst).join("rootfs");
        let mut body = String::new();
        for e in &config.entries {
            let v = match e.key.as_str() {
                "lxc.rootfs.path" => format!("dir:{}", final_root.display()),
                "lxc.uts.name" => dst.to_string(),
                "coop.colinux.disk" if snapshot => continue,
                _ => e.value.clone(),
            };
            body += &format!("{} = {v}\n", e.key);
        }
        if snapshot {
            let backing = src_root.join("disk.img");
            if !backing.is_file() {
                return Err(Error::Msg(format!(
                    "{src} has no disk image at {}",
                    backing.display()
                )));
            }
            body += &format!(
                "lxc.mount.entry = {} backing/disk.img none bind,ro,create=file 0 0\n\
                 coop.colinux.disk = /backing/disk.img,cow=/disk.cow\n",
                backing.display()
            );
        }
        Config::parse_str(&format!("{dst}/config"), &body)?;
        std::fs::write(staging.join("config"), body).map_err(Error::io(format!(
            "cannot write {}/config",
            staging.display()
        )))?;
        std::fs::rename(&staging, store.dir(dst))
            .map_err(Error::io(format!("cannot move {} into place", dst)))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn copy_tree(src: &Path, dst: &Path, skip: &[&str]) -> Result<()> {
    if skip.is_empty() {
        let st = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(src)
            .arg(dst)
            .status()
            .map_err(Error::io("cannot run cp"))?;
        if !st.success() {
            return Err(Error::Msg(format!("copying {} failed", src.display())));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dst).map_err(Error::io(format!("cannot create {}", dst.display())))?;
    for e in std::fs::read_dir(src).map_err(Error::io(format!("cannot list {}", src.display())))? {
        let e = e.map_err(Error::io(format!("cannot list {}", src.display())))?;
        let name = e.file_name();
        if skip.iter().any(|s| name == *s) || name == "disk.cow" {
            continue;
        }
        let st = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(e.path())
            .arg(dst.join(&name))
            .status()
            .map_err(Error::io("cannot run cp"))?;
        if !st.success() {
            return Err(Error::Msg(format!("copying {} failed", e.path().display())));
        }
    }
    Ok(())
}

/// The copy's own name in /etc/hostname and /etc/hosts, as LXC's clonehostname hook does.
/// Symlinks are not followed: they could point out of the copy.
fn rename_host(root: &Path, old: &str, new: &str) {
    for f in ["etc/hostname", "etc/hosts"] {
        let p = root.join(f);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            if let Ok(text) = std::fs::read_to_string(&p) {
                let replaced: Vec<String> = text
                    .lines()
                    .map(|l| {
                        l.split_inclusive(char::is_whitespace)
                            .map(|w| {
                                if w.trim() == old {
                                    w.replacen(old, new, 1)
                                } else {
                                    w.to_string()
                                }
                            })
                            .collect()
                    })
                    .collect();
                let mut body = replaced.join("\n");
                if text.ends_with('\n') {
                    body.push('\n');
                }
                let _ = std::fs::write(&p, body);
            }
        }
    }
}
