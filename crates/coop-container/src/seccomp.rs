//! Seccomp: coop's default deny list, or an LXC version-2 profile (`lxc.seccomp.profile`).
//!
//! Only deny lists are supported: the allow-list form would need a complete syscall
//! table to be safe, and LXC's shipped profiles are all deny lists.

use std::collections::BTreeMap;
use std::path::Path;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// What LXC's common.seccomp denies: loading kernel code and handle-based opens that
/// escape a chroot.
pub const DEFAULT_DENY: &[&str] = &[
    "kexec_load",
    "open_by_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
];

/// Names we can translate to x86_64 numbers. An LXC profile naming another syscall gets
/// a warning (LXC does the same for syscalls unknown on the running architecture).
fn syscall_number(name: &str) -> Option<i64> {
    let n = match name {
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "reboot" => libc::SYS_reboot,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "acct" => libc::SYS_acct,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        "adjtimex" => libc::SYS_adjtimex,
        "ptrace" => libc::SYS_ptrace,
        "personality" => libc::SYS_personality,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "bpf" => libc::SYS_bpf,
        "perf_event_open" => libc::SYS_perf_event_open,
        "userfaultfd" => libc::SYS_userfaultfd,
        "iopl" => libc::SYS_iopl,
        "ioperm" => libc::SYS_ioperm,
        "syslog" => libc::SYS_syslog,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "pivot_root" => libc::SYS_pivot_root,
        "chroot" => libc::SYS_chroot,
        "quotactl" => libc::SYS_quotactl,
        "nfsservctl" => libc::SYS_nfsservctl,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "mbind" => libc::SYS_mbind,
        "move_pages" => libc::SYS_move_pages,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "vhangup" => libc::SYS_vhangup,
        "fanotify_init" => libc::SYS_fanotify_init,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        _ => return None,
    };
    Some(n)
}

/// A parsed profile: syscall name → errno to return.
#[derive(Debug, Default, PartialEq)]
pub struct Profile {
    pub deny: Vec<(String, u32)>,
    pub warnings: Vec<String>,
}

pub fn default_profile() -> Profile {
    Profile {
        deny: DEFAULT_DENY.iter().map(|s| (s.to_string(), 1)).collect(),
        warnings: vec![],
    }
}

pub fn load_profile(path: &Path) -> Result<Profile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("lxc.seccomp.profile {}: {e}", path.display()))?;
    parse_profile(&text).map_err(|e| format!("lxc.seccomp.profile {}: {e}", path.display()))
}

pub fn parse_profile(text: &str) -> Result<Profile, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty());
    match lines.next() {
        Some((_, "2")) => {}
        Some((n, v)) => return Err(format!("line {n}: version {v:?} is not supported (only 2)")),
        None => return Err("empty profile".into()),
    }
    match lines.next() {
        Some((_, "denylist" | "blacklist")) => {}
        Some((n, v)) => {
            return Err(format!(
                "line {n}: {v:?}: only denylist profiles are supported"
            ))
        }
        None => return Err("missing the denylist line".into()),
    }
    let mut p = Profile::default();
    let mut arch_ok = true;
    for (n, line) in lines {
        if line.starts_with('[') {
            let arch = line
                .trim_matches(|c| c == '[' || c == ']')
                .to_ascii_lowercase();
            arch_ok = matches!(arch.as_str(), "all" | "x86_64" | "amd64");
            continue;
        }
        if !arch_ok {
            continue;
        }
        if line == "reject_force_umount" {
            p.warnings
                .push("reject_force_umount is not enforced by coop's seccomp filter".into());
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let errno = match f.as_slice() {
            [_] => 1,
            [_, "errno", e] => e
                .parse()
                .map_err(|_| format!("line {n}: bad errno {e:?}"))?,
            [_, "kill"] | [_, "trap"] => 1,
            _ => return Err(format!("line {n}: {line:?} is not `syscall [errno N]`")),
        };
        p.deny.push((f[0].to_string(), errno));
    }
    Ok(p)
}

pub fn compile(p: &Profile) -> Result<(BpfProgram, Vec<String>), String> {
    let mut warnings = p.warnings.clone();
    // seccompiler takes one match action per filter, so group by errno.
    let mut by_errno: BTreeMap<u32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for (name, errno) in &p.deny {
        match syscall_number(name) {
            Some(nr) => {
                by_errno.entry(*errno).or_default().insert(nr, vec![]);
            }
            None => warnings.push(format!("seccomp: unknown syscall {name:?} ignored")),
        }
    }
    // One filter per errno value; the kernel applies all loaded filters, and we chain
    // them into one program by concatenating in order of most specific first.
    let mut prog: BpfProgram = Vec::new();
    let n = by_errno.len();
    for (i, (errno, rules)) in by_errno.into_iter().enumerate() {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            TargetArch::x86_64,
        )
        .map_err(|e| format!("seccomp: {e}"))?;
        let mut p: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e}"))?;
        if i + 1 < n {
            return Err(
                "seccomp: profiles with different errno values per syscall are not supported yet"
                    .into(),
            );
        }
        prog.append(&mut p);
    }
    Ok((prog, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lxc_common_profile() {
        let p = parse_profile(
            "2\ndenylist\nreject_force_umount  # x\n[all]\nkexec_load errno 1\nopen_by_handle_at errno 1\n[arm64]\nfoo errno 2\n",
        )
        .unwrap();
        assert_eq!(p.deny.len(), 2);
        assert_eq!(p.warnings.len(), 1);
        let (prog, _) = compile(&p).unwrap();
        assert!(!prog.is_empty());
    }

    #[test]
    fn rejects_other_versions_and_allowlists() {
        assert!(parse_profile("1\nkexec_load\n").is_err());
        assert!(parse_profile("2\nallowlist\nread\n").is_err());
        assert!(parse_profile("2\ndenylist\nkexec_load errno x\n").is_err());
    }

    #[test]
    fn default_compiles() {
        let (prog, w) = compile(&default_profile()).unwrap();
        assert!(!prog.is_empty());
        assert!(w.is_empty());
    }
}
