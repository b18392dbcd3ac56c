//! The `debian` template: a cached debootstrap tree, copied and configured per container.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::Rng;

use crate::fsutil::{
    mkdir_in_root, read_in_root, remove_tree, resolve_in_root, symlink_in_root, write_in_root,
};
use crate::host::{debian_arch, ensure_package, host_debian_mirror, run, tail};
use crate::password::{hash_password, set_root_hash, shadow_today};
use crate::{
    choose_password, common_config, DebianOpts, Outcome, Progress, Request, TemplateError,
};

const DEBOOTSTRAP: &str = "/usr/sbin/debootstrap";

/// Release and variant names end up in paths and command lines: keep them plain.
pub(crate) fn check_name(key: &str, v: &str) -> Result<(), TemplateError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && !v.starts_with(['-', '.'])
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TemplateError::InvalidValue {
            key: format!("--{key}"),
            value: v.into(),
            reason: "use letters, digits, '-', '_' or '.'".into(),
        })
    }
}

pub(crate) fn check_mirror(m: &str) -> Result<(), TemplateError> {
    let ok = (m.starts_with("http://") || m.starts_with("https://") || m.starts_with("file:///"))
        && m.len() <= 1024
        && !m.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(TemplateError::InvalidValue {
            key: "--mirror".into(),
            value: m.into(),
            reason: "expected an http://, https:// or file:/// URL without spaces".into(),
        })
    }
}

/// Packages added to the variant: systemd as /sbin/init, and (from bookworm on, where it is
/// a package of its own) systemd-resolved so that DHCP-supplied DNS servers reach resolv.conf.
/// resolved needs a system bus, and debootstrap does not pick a provider for an alternative
/// dependency by itself, so dbus is named too. kmod (modprobe, 0.1 MB; its library is
/// already there for systemd): a coLinux guest gets the UML kernel's modules in
/// /lib/modules, and without kmod it can load none of them and systemd's
/// kmod-static-nodes.service fails (exec of /bin/kmod), leaving the guest "degraded".
fn includes(release: &str) -> &'static str {
    match release {
        "stretch" | "buster" | "bullseye" | "oldoldstable" => "systemd-sysv,dbus,kmod",
        _ => "systemd-sysv,dbus,systemd-resolved,kmod",
    }
}

/// The cache entry's name: release, variant, architecture and a digest of the package
/// list, so that a tree built with an older list is not reused for a newer one (it would
/// lack the packages added since; a new entry is built beside it).
pub fn cache_key(release: &str, variant: &str, arch: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in includes(release).bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{release}-{variant}-{arch}-{h:08x}")
}

pub(crate) fn create(
    opts: &DebianOpts,
    req: &Request,
    progress: &dyn Fn(Progress),
) -> Result<Outcome, TemplateError> {
    check_name("release", &opts.release)?;
    check_name("variant", &opts.variant)?;
    progress(Progress::Step("checking for debootstrap".into()));
    ensure_package(
        "debootstrap",
        "the debian template",
        &|| Path::new(DEBOOTSTRAP).exists(),
        progress,
    )?;
    let mirror = match &opts.mirror {
        Some(m) => m.clone(),
        None => host_debian_mirror(),
    };
    check_mirror(&mirror)?;
    let arch = debian_arch();
    let cached = ensure_cache(req.cache_dir, opts, &arch, &mirror, progress)?;

    progress(Progress::Step(format!("copying {}", cached.display())));
    let mut src = cached.clone().into_os_string();
    src.push("/.");
    run(Command::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(&src)
        .arg(req.rootfs))?;

    progress(Progress::Step("configuring the container".into()));
    let (password, generated) = choose_password(req);
    configure(req.rootfs, req.name, &password)?;
    Ok(Outcome {
        config: common_config(req, "SIGRTMIN+3"),
        root_password: password,
        password_generated: generated,
    })
}

/// The cache entry for these options, built with debootstrap if missing. Builds are
/// serialised by a lock on `<cache_dir>/debian` and happen under a temporary name that is
/// renamed only when debootstrap succeeded.
pub(crate) fn ensure_cache(
    cache_dir: &Path,
    opts: &DebianOpts,
    arch: &str,
    mirror: &str,
    progress: &dyn Fn(Progress),
) -> Result<PathBuf, TemplateError> {
    let base = cache_dir.join("debian");
    fs::create_dir_all(&base).map_err(|e| TemplateError::io("cannot create cache", &base, e))?;
    let key = cache_key(&opts.release, &opts.variant, arch);
    let done = base.join(&key);
    let dir =
        fs::File::open(&base).map_err(|e| TemplateError::io("cannot open cache", &base, e))?;
    progress(Progress::Step("locking the cache".into()));
    let _lock =
        nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            TemplateError::io(
                "cannot lock cache",
                &base,
                std::io::Error::from_raw_os_error(e as i32),
            )
        })?;
    if done.join("sbin").symlink_metadata().is_ok() || done.join("usr/sbin").is_dir() {
        progress(Progress::Step(format!("using cached {key}")));
        return Ok(done);
    }
    // Leftovers of a build that was killed; we hold the lock, so nobody is using them.
    let stale_prefix = format!(".tmp-{key}-");
    for e in fs::read_dir(&base).map_err(|e| TemplateError::io("cannot list cache", &base, e))? {
        let Ok(e) = e else { continue };
        if e.file_name().to_string_lossy().starts_with(&stale_prefix) {
            tracing::warn!(dir = %e.path().display(), "removing stale cache build");
            remove_tree(&e.path())?;
        }
    }
    if done.symlink_metadata().is_ok() {
        // Something is there but not a tree: it was not made by us, refuse to guess.
        return Err(TemplateError::io(
            "cache entry exists but holds no root filesystem",
            &done,
            std::io::Error::from(std::io::ErrorKind::InvalidData),
        ));
    }
    let tmp = base.join(format!(
        "{stale_prefix}{}-{:08x}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    ));
    progress(Progress::Step(format!(
        "debootstrap {} ({}, {arch}) from {mirror}",
        opts.release, opts.variant
    )));
    let res = debootstrap(opts, arch, mirror, &tmp, progress).and_then(|()| {
        fs::rename(&tmp, &done)
            .map_err(|e| TemplateError::io("cannot rename cache build to", &done, e))
    });
    if let Err(e) = res {
        if let Err(rm) = remove_tree(&tmp) {
            tracing::error!(error = %rm, "could not remove failed cache build");
        }
        return Err(e);
    }
    Ok(done)
}

/// Counts from debootstrap's `I:` lines, turned into progress.
#[derive(Debug, Default)]
pub(crate) struct DebootstrapProgress {
    retrieved: u64,
    unpacked: u64,
    configured: u64,
}

impl DebootstrapProgress {
    pub(crate) fn line(&mut self, line: &str) -> Option<Progress> {
        let msg = line.strip_prefix("I: ")?.trim();
        let first_word = |rest: &str| {
            rest.split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches("...")
                .to_string()
        };
        if let Some(rest) = msg.strip_prefix("Retrieving ") {
            let pkg = first_word(rest);
            // Index files (Release, Packages…) are not packages.
            if rest.split_whitespace().count() >= 2 {
                self.retrieved += 1;
                return Some(Progress::Step(format!(
                    "retrieving {pkg} ({} packages so far)",
                    self.retrieved
                )));
            }
            return Some(Progress::Step(format!("retrieving {pkg}")));
        }
        if let Some(rest) = msg.strip_prefix("Unpacking ") {
            if rest.ends_with("...") && !rest.contains(' ') {
                self.unpacked += 1;
                return Some(self.fraction(self.unpacked, "unpacking packages"));
            }
        }
        if let Some(rest) = msg.strip_prefix("Configuring ") {
            if rest.ends_with("...") && !rest.contains(' ') {
                self.configured += 1;
                return Some(self.fraction(self.configured, "configuring packages"));
            }
        }
        if msg.starts_with("Validating ") {
            return None;
        }
        Some(Progress::Step(msg.trim_end_matches("...").to_string()))
    }

    fn fraction(&self, done: u64, what: &str) -> Progress {
        let total = self.retrieved.max(done);
        Progress::Fraction {
            done,
            total,
            what: what.into(),
        }
    }
}

fn debootstrap(
    opts: &DebianOpts,
    arch: &str,
    mirror: &str,
    target: &Path,
    progress: &dyn Fn(Progress),
) -> Result<(), TemplateError> {
    let mut cmd = Command::new(DEBOOTSTRAP);
    cmd.arg(format!("--variant={}", opts.variant))
        .arg(format!("--arch={arch}"))
        .arg(format!("--include={}", includes(&opts.release)))
        // debootstrap knows no `--`: the release is checked not to start with '-', and the
        // target is made absolute so it cannot either.
        .arg(&opts.release)
        .arg(
            std::path::absolute(target)
                .map_err(|e| TemplateError::io("cannot resolve", target, e))?,
        )
        .arg(mirror)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    tracing::info!(cmd = %shown, "running debootstrap");
    let mut child = cmd.spawn().map_err(|e| TemplateError::Command {
        cmd: shown.clone(),
        detail: e.to_string(),
    })?;
    let mut stderr = child.stderr.take();
    // stderr is drained on its own thread so a chatty debootstrap cannot block on a full pipe.
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 64 * 1024 {
                    buf.drain(..buf.len() - 32 * 1024);
                }
            }
        }
        buf
    });
    let mut state = DebootstrapProgress::default();
    let mut last_lines: Vec<String> = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            tracing::debug!(target: "debootstrap", "{line}");
            if line.starts_with("W: ") || line.starts_with("E: ") {
                tracing::warn!(target: "debootstrap", "{line}");
            }
            if let Some(p) = state.line(&line) {
                progress(p);
            }
            last_lines.push(line);
            if last_lines.len() > 20 {
                last_lines.remove(0);
            }
        }
    }
    let status = child.wait().map_err(|e| TemplateError::Command {
        cmd: shown.clone(),
        detail: e.to_string(),
    })?;
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        let log = fs::read(target.join("debootstrap/debootstrap.log")).unwrap_or_default();
        return Err(TemplateError::Command {
            cmd: shown,
            detail: format!(
                "{status}\n{}\n{}\nlog tail: {}",
                last_lines.join("\n"),
                tail(&err, 2000),
                tail(&log, 2000)
            ),
        });
    }
    // The retrieved count slightly overestimates what is configured: close the bar.
    let total = state.retrieved.max(state.configured);
    progress(Progress::Fraction {
        done: total,
        total,
        what: "configuring packages".into(),
    });
    tracing::info!(packages = state.retrieved, "debootstrap finished");
    Ok(())
}

/// Where the tree keeps systemd units (`/lib` on bookworm, `/usr/lib` on later releases;
/// with merged /usr both resolve to the same place).
fn unit_dir(root: &Path) -> Result<PathBuf, TemplateError> {
    for d in ["usr/lib/systemd/system", "lib/systemd/system"] {
        let p = resolve_in_root(root, Path::new(d))?;
        if p.join("systemd-journald.service").exists() {
            return Ok(PathBuf::from("/").join(d));
        }
    }
    Ok(PathBuf::from("/lib/systemd/system"))
}

const NETWORK_FILE: &str = "# Written by coop: DHCP on the container's interface.\n\
[Match]\nName=eth0\n\n[Network]\nDHCP=yes\nLinkLocalAddressing=ipv6\n\n\
[DHCPv4]\nUseDomains=yes\n";

/// Units that only make sense on real hardware or would stall a container's boot.
const MASKED: &[&str] = &[
    // Waits up to two minutes for a DHCP lease that may never come.
    "systemd-networkd-wait-online.service",
    // Debian's fallback that starts gettys on tty2..6, which a container does not have.
    "getty-static.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
];

/// Applies the per-container settings to a fresh copy of the tree.
pub(crate) fn configure(root: &Path, name: &str, password: &str) -> Result<(), TemplateError> {
    write_in_root(
        root,
        Path::new("etc/hostname"),
        format!("{name}\n").as_bytes(),
        0o644,
    )?;
    write_in_root(
        root,
        Path::new("etc/hosts"),
        format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        )
        .as_bytes(),
        0o644,
    )?;
    let hash = hash_password(password)?;
    let shadow = read_in_root(root, Path::new("etc/shadow"))?.unwrap_or_default();
    write_in_root(
        root,
        Path::new("etc/shadow"),
        set_root_hash(&shadow, &hash, shadow_today()).as_bytes(),
        0o640,
    )?;
    write_in_root(
        root,
        Path::new("etc/fstab"),
        b"# <file system> <mount point> <type> <options> <dump> <pass>\n",
        0o644,
    )?;
    // Every container needs its own machine id; the cached tree's would be shared.
    let id: String = (0..16)
        .map(|_| format!("{:02x}", rand::thread_rng().gen::<u8>()))
        .collect();
    write_in_root(
        root,
        Path::new("etc/machine-id"),
        format!("{id}\n").as_bytes(),
        0o444,
    )?;

    let units = unit_dir(root)?;
    write_in_root(
        root,
        Path::new("etc/systemd/network/80-coop-eth0.network"),
        NETWORK_FILE.as_bytes(),
        0o644,
    )?;
    let system = Path::new("etc/systemd/system");
    mkdir_in_root(root, system, 0o755)?;
    for (wants, unit) in [
        ("multi-user.target.wants", "systemd-networkd.service"),
        ("sockets.target.wants", "systemd-networkd.socket"),
        ("sysinit.target.wants", "systemd-resolved.service"),
    ] {
        if resolve_in_root(root, &units.join(unit))?.exists() {
            symlink_in_root(root, &system.join(wants).join(unit), &units.join(unit))?;
        }
    }
    if resolve_in_root(root, &units.join("systemd-networkd.service"))?.exists() {
        symlink_in_root(
            root,
            &system.join("dbus-org.freedesktop.network1.service"),
            &units.join("systemd-networkd.service"),
        )?;
    }
    if resolve_in_root(root, &units.join("systemd-resolved.service"))?.exists() {
        symlink_in_root(
            root,
            Path::new("etc/resolv.conf"),
            Path::new("../run/systemd/resolve/stub-resolv.conf"),
        )?;
    }
    for unit in MASKED {
        symlink_in_root(root, &system.join(unit), Path::new("/dev/null"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_lines_become_progress() {
        let mut s = DebootstrapProgress::default();
        assert_eq!(
            s.line("I: Retrieving InRelease "),
            Some(Progress::Step("retrieving InRelease".into()))
        );
        assert_eq!(s.line("I: Validating libc6 2.36-9"), None);
        for p in ["libc6 2.36-9+deb12u10", "base-files 12.4", "dash 0.5.12-2"] {
            assert!(matches!(
                s.line(&format!("I: Retrieving {p}")),
                Some(Progress::Step(_))
            ));
        }
        assert_eq!(s.retrieved, 3);
        assert_eq!(
            s.line("I: Unpacking required packages..."),
            Some(Progress::Step("Unpacking required packages".into()))
        );
        assert_eq!(
            s.line("I: Unpacking libc6:amd64..."),
            Some(Progress::Fraction {
                done: 1,
                total: 3,
                what: "unpacking packages".into()
            })
        );
        assert_eq!(
            s.line("I: Configuring dash..."),
            Some(Progress::Fraction {
                done: 1,
                total: 3,
                what: "configuring packages".into()
            })
        );
        assert_eq!(s.line("not an info line"), None);
    }

    #[test]
    fn names_and_mirrors_are_checked() {
        assert!(check_name("release", "bookworm").is_ok());
        assert!(check_name("release", "../x").is_err());
        assert!(check_name("release", "-x").is_err());
        assert!(check_mirror("http://deb.debian.org/debian").is_ok());
        assert!(check_mirror("file:///srv/mirror").is_ok());
        assert!(check_mirror("http://a b").is_err());
        assert!(check_mirror("--foo").is_err());
    }
}
