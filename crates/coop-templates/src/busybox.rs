//! The `busybox` template: a minimal root made from the host's static busybox.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fsutil::{mkdir_in_root, resolve_in_root, symlink_in_root, write_in_root};
use crate::host::{ensure_package, is_static_elf, run};
use crate::password::{hash_password, shadow_today};
use crate::{choose_password, common_config, Outcome, Progress, Request, TemplateError};

/// Where Debian's busybox-static puts the binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("etc/init.d", 0o755),
    ("etc/udhcpc", 0o755),
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("root", 0o700),
    ("run", 0o755),
    ("var", 0o755),
    ("var/log", 0o755),
    ("home", 0o755),
    ("mnt", 0o755),
];

pub(crate) fn create(req: &Request, progress: &dyn Fn(Progress)) -> Result<Outcome, TemplateError> {
    let host_bb = Path::new(HOST_BUSYBOX);
    progress(Progress::Step("checking for static busybox".into()));
    ensure_package(
        "busybox-static",
        "the busybox template",
        &|| is_static_elf(host_bb),
        progress,
    )?;
    let root = req.rootfs;

    progress(Progress::Step("creating directories".into()));
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(|e| TemplateError::io("cannot chmod", root, e))?;
    for (d, mode) in DIRS {
        let p = mkdir_in_root(root, Path::new(d), *mode)?;
        // mkdir_in_root applies the mode only to dirs it creates; the staging dir may hold some.
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
            .map_err(|e| TemplateError::io("cannot chmod", &p, e))?;
    }

    progress(Progress::Step("installing busybox".into()));
    install_busybox(host_bb, root)?;
    let applets = applet_list(host_bb)?;
    let total = applets.len() as u64;
    for (i, a) in applets.iter().enumerate() {
        symlink_in_root(root, a, Path::new("/bin/busybox"))?;
        if i % 64 == 0 || i + 1 == applets.len() {
            progress(Progress::Fraction {
                done: i as u64 + 1,
                total,
                what: "applet links".into(),
            });
        }
    }

    progress(Progress::Step("writing configuration files".into()));
    let (password, generated) = choose_password(req);
    let hash = hash_password(&password)?;
    for (path, data, mode) in files(req, &hash) {
        write_in_root(root, Path::new(path), data.as_bytes(), mode)?;
    }
    let mut config = common_config(req, "SIGUSR1");
    config.retain(|(k, _)| k != "lxc.mount.auto");
    config.push(("lxc.mount.auto".into(), "proc:mixed sys:ro".into()));
    Ok(Outcome {
        config,
        root_password: password,
        password_generated: generated,
    })
}

fn install_busybox(host_bb: &Path, root: &Path) -> Result<(), TemplateError> {
    // Resolved in-root: a staging dir handed over with a `bin` symlink must not redirect
    // the copy to the host.
    let dst = resolve_in_root(root, Path::new("bin/busybox"))?;
    let tmp = dst.with_file_name(".busybox.coop-tmp");
    let res = fs::copy(host_bb, &tmp)
        .and_then(|_| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)))
        .and_then(|_| fs::rename(&tmp, &dst));
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(TemplateError::io("cannot install busybox to", dst, e));
    }
    Ok(())
}

/// Applet paths relative to the root (`bin/sh`, `sbin/init`, …) from `busybox --list-full`.
fn applet_list(bb: &Path) -> Result<Vec<PathBuf>, TemplateError> {
    let out = run(Command::new(bb).arg("--list-full"))?;
    let mut v: Vec<PathBuf> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(l.trim_start_matches('/')))
        .filter(|p| {
            p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
                && p != Path::new("bin/busybox")
        })
        .collect();
    v.sort();
    v.dedup();
    if !v.iter().any(|p| p == Path::new("sbin/init")) || !v.iter().any(|p| p == Path::new("bin/sh"))
    {
        return Err(TemplateError::Command {
            cmd: format!("{} --list-full", bb.display()),
            detail: "busybox lacks the init or sh applet".into(),
        });
    }
    Ok(v)
}

/// The busybox init configuration for `tty_max` ttys.
pub fn inittab(tty_max: u32) -> String {
    let mut s = String::from(
        "# busybox init configuration, written by coop\n\
         ::sysinit:/etc/init.d/rcS\n\
         console::respawn:/sbin/getty -L 115200 console vt100\n",
    );
    for n in 1..=tty_max {
        s.push_str(&format!(
            "tty{n}::respawn:/sbin/getty -L 38400 tty{n} vt100\n"
        ));
    }
    s.push_str("::ctrlaltdel:/sbin/reboot\n::shutdown:/bin/sync\n");
    s
}

const RCS: &str = r#"#!/bin/sh
# Early boot of a coop busybox container. The engine normally mounts /proc, /sys, /dev and
# /dev/pts already; only what is missing is mounted here.
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH

# Debian's busybox has no `mountpoint` applet: look the target up in mountinfo instead.
is_mounted() {
    [ -r /proc/self/mountinfo ] && awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

[ -e /proc/self/stat ] || mount -t proc proc /proc
is_mounted /sys || mount -t sysfs -o ro sysfs /sys 2>/dev/null
if ! is_mounted /dev && [ ! -c /dev/null ]; then
    mount -t devtmpfs devtmpfs /dev 2>/dev/null || { mount -t tmpfs -o mode=0755,nosuid tmpfs /dev && mdev -s; }
fi
[ -d /dev/pts ] || mkdir -p /dev/pts
is_mounted /dev/pts || mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts 2>/dev/null
is_mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run 2>/dev/null

[ -s /etc/hostname ] && hostname -F /etc/hostname

ip link set lo up 2>/dev/null

# DHCP on eth0 unless the engine already gave it an address. udhcpc runs in the background
# (-b, and started with &) so that a network without a DHCP server never delays boot.
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up 2>/dev/null
    if ! ip -4 addr show dev eth0 2>/dev/null | grep -q ' inet '; then
        udhcpc -b -i eth0 -s /etc/udhcpc/default.script -p /run/udhcpc.eth0.pid </dev/null >/dev/null 2>&1 &
    fi
fi
exit 0
"#;

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc event handler written by coop: applies a lease with busybox ip.
# udhcpc sets: interface ip mask (prefix length) broadcast router dns domain
RESOLV_CONF=/etc/resolv.conf

case "$1" in
deconfig)
    ip -4 addr flush dev "$interface" 2>/dev/null
    ip link set "$interface" up
    ;;
bound|renew)
    current=$(ip -4 addr show dev "$interface" | awk '$1 == "inet" { print $2; exit }')
    if [ "$current" != "$ip/${mask:-24}" ]; then
        ip -4 addr flush dev "$interface"
        if [ -n "$broadcast" ]; then
            ip -4 addr add "$ip/${mask:-24}" broadcast "$broadcast" dev "$interface"
        else
            ip -4 addr add "$ip/${mask:-24}" dev "$interface"
        fi
    fi
    if [ -n "$router" ]; then
        while ip -4 route del default dev "$interface" 2>/dev/null; do :; done
        for gw in $router; do
            ip -4 route add default via "$gw" dev "$interface" && break
        done
    fi
    if [ -n "$dns" ]; then
        tmp="$RESOLV_CONF.udhcpc.$$"
        {
            [ -n "$domain" ] && echo "search $domain"
            for ns in $dns; do echo "nameserver $ns"; done
        } > "$tmp" && mv -f "$tmp" "$RESOLV_CONF"
    fi
    ;;
leasefail|nak)
    ;;
esac
exit 0
"#;

const PROFILE: &str = r#"# /etc/profile, written by coop
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PS1='\u@\h:\w\$ '
export HOME=${HOME:-/root}
umask 022
"#;

fn files(req: &Request, hash: &str) -> Vec<(&'static str, String, u32)> {
    let name = req.name;
    let today = shadow_today();
    vec![
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\n\
             daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .into(),
            0o644,
        ),
        (
            "etc/group",
            "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n".into(),
            0o644,
        ),
        (
            "etc/shadow",
            format!(
                "root:{hash}:{today}:0:99999:7:::\n\
                 daemon:*:{today}:0:99999:7:::\n\
                 nobody:*:{today}:0:99999:7:::\n"
            ),
            0o600,
        ),
        ("etc/hostname", format!("{name}\n"), 0o644),
        (
            "etc/hosts",
            format!(
                "127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n\
                 ::1\tlocalhost ip6-localhost ip6-loopback\n"
            ),
            0o644,
        ),
        ("etc/profile", PROFILE.into(), 0o644),
        ("etc/shells", "/bin/sh\n/bin/ash\n".into(), 0o644),
        (
            "etc/fstab",
            "# the engine mounts what the container needs\n".into(),
            0o644,
        ),
        ("etc/resolv.conf", String::new(), 0o644),
        ("etc/inittab", inittab(req.tty_max), 0o644),
        ("etc/init.d/rcS", RCS.into(), 0o755),
        ("etc/udhcpc/default.script", UDHCPC_SCRIPT.into(), 0o755),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inittab_has_console_and_ttys() {
        let t = inittab(2);
        let lines: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "::sysinit:/etc/init.d/rcS",
                "console::respawn:/sbin/getty -L 115200 console vt100",
                "tty1::respawn:/sbin/getty -L 38400 tty1 vt100",
                "tty2::respawn:/sbin/getty -L 38400 tty2 vt100",
                "::ctrlaltdel:/sbin/reboot",
                "::shutdown:/bin/sync",
            ]
        );
        assert!(!inittab(0).contains("tty1"));
    }
}
