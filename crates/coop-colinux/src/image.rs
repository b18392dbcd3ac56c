//! Disk images: the guest agent and its boot hooks go into a root directory, which then
//! becomes an ext4 image with `mkfs.ext4 -d` (e2fsprogs copies the tree itself, so no loop
//! mount is needed).

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ColinuxError;

/// Where Debian's `user-mode-linux` keeps the kernel's modules, one directory per release.
pub const UML_MODULES: &str = "/usr/lib/uml/modules";
/// Where the agent is installed in the guest.
const GUEST_AGENT_PATH: &str = "sbin/coop-guest-agent";
const INITTAB_BOOT: &str = "::sysinit:/sbin/coop-guest-agent --boot --serve";
/// The boot hook of images made before the agent started serving from it.
const INITTAB_BOOT_OLD: &str = "::sysinit:/sbin/coop-guest-agent --boot";
const INITTAB_AGENT: &str = "::respawn:/sbin/coop-guest-agent";
/// Smallest image worth making (ext4 metadata alone takes a few MiB).
const MIN_IMAGE: u64 = 8 << 20;

/// What [`build_image_with`] installs besides the root tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    /// The statically linked `coop-guest-agent`.
    pub agent: PathBuf,
    /// Copied to `lib/modules/<its name>` in the image when set.
    pub modules: Option<PathBuf>,
}

/// True when `path` is an ELF executable without a program interpreter (statically
/// linked, so it runs in any guest whatever its libc).
pub fn is_static_elf(path: &Path) -> Result<bool, ColinuxError> {
    let mut f = fs::File::open(path).map_err(|e| ColinuxError::io("cannot open", path, e))?;
    let mut hdr = [0u8; 64];
    if f.read(&mut hdr)
        .map_err(|e| ColinuxError::io("cannot read", path, e))?
        < 64
    {
        return Ok(false);
    }
    // 64-bit little-endian ELF only: the agent is built for x86_64.
    if &hdr[..4] != b"\x7fELF" || hdr[4] != 2 || hdr[5] != 1 {
        return Ok(false);
    }
    let u16at = |o: usize| u16::from_le_bytes([hdr[o], hdr[o + 1]]) as u64;
    let phoff = u64::from_le_bytes(hdr[32..40].try_into().expect("8 bytes"));
    let (phentsize, phnum) = (u16at(54), u16at(56));
    if phentsize < 56 || phnum == 0 {
        return Ok(false);
    }
    let data = fs::read(path).map_err(|e| ColinuxError::io("cannot read", path, e))?;
    for i in 0..phnum {
        let off = phoff.saturating_add(i * phentsize) as usize;
        let Some(ty) = data.get(off..off + 4) else {
            return Ok(false);
        };
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes(ty.try_into().expect("4 bytes")) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Finds the static guest agent: `$COOP_GUEST_AGENT`, next to the running program, or
/// `/usr/lib/coop/coop-guest-agent` / `/usr/local/lib/coop/coop-guest-agent`.
pub fn find_guest_agent() -> Result<PathBuf, ColinuxError> {
    let mut cands = Vec::new();
    if let Some(p) = std::env::var_os("COOP_GUEST_AGENT") {
        cands.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            cands.push(dir.join("coop-guest-agent"));
        }
    }
    cands.push("/usr/lib/coop/coop-guest-agent".into());
    cands.push("/usr/local/lib/coop/coop-guest-agent".into());
    for c in &cands {
        if c.is_file() && is_static_elf(c)? {
            return Ok(c.clone());
        }
    }
    Err(ColinuxError::Invalid {
        path: cands[0].clone(),
        detail: format!(
            "no statically linked coop-guest-agent found (looked at {}); build it with \
             RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release \
             --target x86_64-unknown-linux-gnu -p coop-guest-agent and set COOP_GUEST_AGENT",
            cands
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// The release of the UML kernel whose modules are installed (`6.1.176`), if exactly one.
pub fn kernel_release() -> Option<String> {
    let mut v: Vec<String> = fs::read_dir(UML_MODULES)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("modules.dep").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v.pop()
}

/// `rel` inside `root`, refusing a path that symlinks out of the root (the tree may come
/// from an untrusted template).
fn in_root(root: &Path, rel: &str) -> Result<PathBuf, ColinuxError> {
    let croot = root
        .canonicalize()
        .map_err(|e| ColinuxError::io("cannot resolve", root, e))?;
    let p = croot.join(rel);
    // Resolve the deepest existing ancestor; what does not exist yet cannot be a symlink.
    let mut existing = p.clone();
    while !existing.exists() {
        if !existing.pop() {
            break;
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|e| ColinuxError::io("cannot resolve", &existing, e))?;
    if !real.starts_with(&croot) {
        return Err(ColinuxError::Invalid {
            path: p,
            detail: format!("leads out of the root {}", croot.display()),
        });
    }
    // Joining an empty rest would add a trailing slash, which makes a file look like a dir.
    match p.strip_prefix(&existing) {
        Ok(rest) if !rest.as_os_str().is_empty() => Ok(real.join(rest)),
        _ => Ok(real),
    }
}

fn write_file(root: &Path, rel: &str, data: &[u8], mode: u32) -> Result<(), ColinuxError> {
    let p = in_root(root, rel)?;
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).map_err(|e| ColinuxError::io("cannot create", d, e))?;
    }
    fs::write(&p, data).map_err(|e| ColinuxError::io("cannot write", &p, e))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
        .map_err(|e| ColinuxError::io("cannot chmod", &p, e))
}

const BOOT_UNIT: &str = "[Unit]\n\
Description=coop coLinux boot hook (interface names, hostfs shares)\n\
DefaultDependencies=no\n\
After=local-fs.target\n\
Before=sysinit.target systemd-networkd.service\n\n\
[Service]\n\
Type=oneshot\n\
ExecStart=/sbin/coop-guest-agent --boot\n\
RemainAfterExit=yes\n\n\
[Install]\n\
WantedBy=sysinit.target\n";

const AGENT_UNIT: &str = "[Unit]\n\
Description=coop guest agent (coop attach)\n\
After=coop-colinux-boot.service\n\n\
[Service]\n\
ExecStart=/sbin/coop-guest-agent\n\
Restart=always\n\
RestartSec=1\n\n\
[Install]\n\
WantedBy=multi-user.target\n";

/// Installs the agent into `rootfs` and hooks it into the guest's init: two lines in a
/// busybox-style `/etc/inittab`, and/or two enabled units for systemd.
pub fn install_guest(rootfs: &Path, agent: &Path) -> Result<(), ColinuxError> {
    if !is_static_elf(agent)? {
        return Err(ColinuxError::Invalid {
            path: agent.to_path_buf(),
            detail: "the guest agent must be a statically linked x86_64 ELF".into(),
        });
    }
    let bin = fs::read(agent).map_err(|e| ColinuxError::io("cannot read", agent, e))?;
    write_file(rootfs, GUEST_AGENT_PATH, &bin, 0o755)?;

    let mut hooked = false;
    let inittab = in_root(rootfs, "etc/inittab")?;
    if inittab.is_file() {
        let text = fs::read_to_string(&inittab)
            .map_err(|e| ColinuxError::io("cannot read", &inittab, e))?;
        let text = hook_inittab(&text);
        fs::write(&inittab, text).map_err(|e| ColinuxError::io("cannot write", &inittab, e))?;
        hooked = true;
    }
    let systemd = ["lib/systemd/systemd", "usr/lib/systemd/systemd"]
        .iter()
        .any(|p| in_root(rootfs, p).is_ok_and(|p| p.exists()));
    if systemd {
        let units = [
            (
                "coop-colinux-boot.service",
                BOOT_UNIT,
                "sysinit.target.wants",
            ),
            (
                "coop-guest-agent.service",
                AGENT_UNIT,
                "multi-user.target.wants",
            ),
        ];
        for (name, text, wants) in units {
            write_file(
                rootfs,
                &format!("etc/systemd/system/{name}"),
                text.as_bytes(),
                0o644,
            )?;
            let link = in_root(rootfs, &format!("etc/systemd/system/{wants}/{name}"))?;
            if let Some(d) = link.parent() {
                fs::create_dir_all(d).map_err(|e| ColinuxError::io("cannot create", d, e))?;
            }
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("/etc/systemd/system/{name}"), &link)
                .map_err(|e| ColinuxError::io("cannot link", &link, e))?;
        }
        hooked = true;
    }
    if !hooked {
        return Err(ColinuxError::Invalid {
            path: rootfs.to_path_buf(),
            detail: "neither /etc/inittab nor systemd found: cannot start the guest agent at boot"
                .into(),
        });
    }
    Ok(())
}

/// Adds the agent's lines to a busybox inittab: the boot hook as the *first* sysinit
/// entry (interfaces must be renamed before the guest's rcS configures `eth0`, and the
/// agent it starts answers while rcS runs), the agent as a respawned process (it waits
/// while the boot hook's serves). Lines already there are left alone; an older boot hook
/// line is replaced.
fn hook_inittab(text: &str) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim() != INITTAB_BOOT_OLD)
        .collect();
    if !lines.iter().any(|l| l.trim() == INITTAB_BOOT) {
        let at = lines
            .iter()
            .position(|l| l.split(':').nth(2) == Some("sysinit"))
            .unwrap_or(lines.len());
        lines.insert(at, INITTAB_BOOT);
    }
    if !lines.iter().any(|l| l.trim() == INITTAB_AGENT) {
        lines.push(INITTAB_AGENT);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn run(cmd: &mut Command) -> Result<(), ColinuxError> {
    let desc = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| ColinuxError::Command {
        cmd: desc.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(ColinuxError::Command {
            cmd: desc,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// [`build_image_with`] using [`find_guest_agent`] and the host's UML modules.
pub fn build_image(
    rootfs: &Path,
    image: &Path,
    size: u64,
    progress: &dyn Fn(String),
) -> Result<(), ColinuxError> {
    let opts = ImageOptions {
        agent: find_guest_agent()?,
        modules: kernel_release().map(|r| Path::new(UML_MODULES).join(r)),
    };
    build_image_with(rootfs, image, size, &opts, progress)
}

/// Installs the agent, hooks and modules into `rootfs`, then makes `image`, an ext4
/// filesystem of `size` bytes holding the tree. The image is built under a temporary
/// name and renamed into place, so a failed build leaves no half image. Run as root so
/// that file ownership is kept.
pub fn build_image_with(
    rootfs: &Path,
    image: &Path,
    size: u64,
    opts: &ImageOptions,
    progress: &dyn Fn(String),
) -> Result<(), ColinuxError> {
    if !rootfs.is_dir() {
        return Err(ColinuxError::Invalid {
            path: rootfs.to_path_buf(),
            detail: "root filesystem directory does not exist".into(),
        });
    }
    if size < MIN_IMAGE {
        return Err(ColinuxError::Invalid {
            path: image.to_path_buf(),
            detail: format!(
                "image size {size} is below the {} MiB minimum",
                MIN_IMAGE >> 20
            ),
        });
    }
    progress("installing the guest agent".into());
    install_guest(rootfs, &opts.agent)?;
    if let Some(m) = &opts.modules {
        let rel = m
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ColinuxError::Invalid {
                path: m.clone(),
                detail: "modules directory has no release name".into(),
            })?;
        progress(format!("copying kernel modules {rel}"));
        let dst = in_root(rootfs, "lib/modules")?;
        fs::create_dir_all(&dst).map_err(|e| ColinuxError::io("cannot create", &dst, e))?;
        let target = dst.join(rel);
        if target.exists() {
            fs::remove_dir_all(&target)
                .map_err(|e| ColinuxError::io("cannot remove", &target, e))?;
        }
        run(Command::new("cp").arg("-a").arg(m).arg(&target))?;
    }
    progress(format!(
        "making ext4 image {} ({} MiB)",
        image.display(),
        size >> 20
    ));
    let tmp = image.with_extension("coop-tmp");
    let _ = fs::remove_file(&tmp);
    let res = run(Command::new("mkfs.ext4")
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .args(["-q", "-F", "-L", "coop-root", "-d"])
        .arg(rootfs)
        .arg(&tmp)
        .arg(format!("{}k", size / 1024)))
    .and_then(|_| {
        fs::rename(&tmp, image).map_err(|e| ColinuxError::io("cannot rename to", image, e))
    });
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_elf_detection() {
        // The test binary itself is dynamically linked (it has PT_INTERP).
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&me).unwrap());
        let d = tempfile::tempdir().unwrap();
        let junk = d.path().join("junk");
        fs::write(&junk, b"\x7fELF\x02\x01 not really").unwrap();
        assert!(!is_static_elf(&junk).unwrap());
        assert!(is_static_elf(&d.path().join("missing")).is_err());
    }

    #[test]
    fn in_root_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("etc")).unwrap();
        assert!(in_root(d.path(), "etc/inittab").is_err());
        fs::create_dir(d.path().join("usr")).unwrap();
        std::os::unix::fs::symlink("usr", d.path().join("lib")).unwrap();
        let p = in_root(d.path(), "lib/modules").unwrap();
        assert!(p.ends_with("usr/modules"), "{}", p.display());
    }

    #[test]
    fn inittab_hooks() {
        let t = "# c\n::sysinit:/etc/init.d/rcS\nconsole::respawn:/sbin/getty -L 115200 console vt100\n";
        let h = hook_inittab(t);
        assert_eq!(
            h,
            "# c\n::sysinit:/sbin/coop-guest-agent --boot --serve\n::sysinit:/etc/init.d/rcS\n\
             console::respawn:/sbin/getty -L 115200 console vt100\n::respawn:/sbin/coop-guest-agent\n"
        );
        assert_eq!(hook_inittab(&h), h);
        assert_eq!(
            hook_inittab(""),
            "::sysinit:/sbin/coop-guest-agent --boot --serve\n::respawn:/sbin/coop-guest-agent\n"
        );
        // An image hooked by an older coop: its boot line is replaced, not doubled.
        let old = "::sysinit:/sbin/coop-guest-agent --boot\n::sysinit:/etc/init.d/rcS\n\
                   ::respawn:/sbin/coop-guest-agent\n";
        assert_eq!(
            hook_inittab(old),
            "::sysinit:/sbin/coop-guest-agent --boot --serve\n::sysinit:/etc/init.d/rcS\n\
             ::respawn:/sbin/coop-guest-agent\n"
        );
    }

    #[test]
    fn install_needs_static_agent_and_an_init() {
        let d = tempfile::tempdir().unwrap();
        let me = std::env::current_exe().unwrap();
        assert!(install_guest(d.path(), &me).is_err());
    }
}
