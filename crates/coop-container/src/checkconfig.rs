//! `coop checkconfig`: can this kernel run containers? (lxc-checkconfig's job.)
//!
//! Each feature is checked by trying or observing it rather than by reading a kernel
//! config file, which many systems do not ship.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Check {
    pub group: &'static str,
    pub name: String,
    pub ok: bool,
    /// Required features make `checkconfig` fail when missing.
    pub required: bool,
    pub detail: String,
}

pub fn run() -> Vec<Check> {
    let mut out = Vec::new();
    for (ns, required) in [
        ("mnt", true),
        ("pid", true),
        ("uts", true),
        ("ipc", true),
        ("net", true),
        ("user", false),
        ("cgroup", true),
        ("time", false),
    ] {
        let ok = Path::new(&format!("/proc/self/ns/{ns}")).exists();
        out.push(Check {
            group: "Namespaces",
            name: format!("{ns} namespace"),
            ok,
            required,
            detail: String::new(),
        });
    }
    match coop_cgroups::Hierarchy::detect() {
        Ok(h) => {
            let layout = match h.layout() {
                coop_cgroups::Layout::V1 => "v1",
                coop_cgroups::Layout::V2 => "v2",
                coop_cgroups::Layout::Hybrid => "hybrid (controllers on v1, cgroup2 beside)",
            };
            out.push(Check {
                group: "Control groups",
                name: "cgroup layout".into(),
                ok: true,
                required: true,
                detail: layout.into(),
            });
            for (c, ok) in h.controllers() {
                let required = matches!(c.as_str(), "cpu" | "memory" | "pids");
                out.push(Check {
                    group: "Control groups",
                    name: format!("{c} controller"),
                    ok,
                    required,
                    detail: String::new(),
                });
            }
        }
        Err(e) => out.push(Check {
            group: "Control groups",
            name: "cgroup layout".into(),
            ok: false,
            required: true,
            detail: e.to_string(),
        }),
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for (name, fstype, required) in [
        ("overlayfs", "overlay", false),
        ("devpts", "devpts", true),
        ("tmpfs", "tmpfs", true),
    ] {
        out.push(Check {
            group: "Filesystems",
            name: name.into(),
            ok: fs
                .lines()
                .any(|l| l.split_whitespace().last() == Some(fstype))
                || module_available(fstype),
            required,
            detail: String::new(),
        });
    }
    for (name, module, required) in [
        ("veth pair device", "veth", true),
        ("bridge", "bridge", true),
        ("macvlan", "macvlan", false),
        ("nf_tables (NAT)", "nf_tables", false),
    ] {
        out.push(Check {
            group: "Network",
            name: name.into(),
            ok: module_available(module),
            required,
            detail: String::new(),
        });
    }
    out.push(Check {
        group: "Security",
        name: "seccomp filter".into(),
        ok: Path::new("/proc/sys/kernel/seccomp/actions_avail").exists()
            || std::fs::read_to_string("/proc/self/status")
                .map(|s| s.contains("Seccomp:"))
                .unwrap_or(false),
        required: false,
        detail: String::new(),
    });
    out.push(Check {
        group: "Security",
        name: "capabilities (bounding set)".into(),
        ok: std::fs::read_to_string("/proc/self/status")
            .map(|s| s.contains("CapBnd:"))
            .unwrap_or(false),
        required: true,
        detail: String::new(),
    });
    out
}

/// Built in (visible in /sys/module or the kernel's builtin list) or loadable.
fn module_available(m: &str) -> bool {
    if Path::new(&format!("/sys/module/{m}")).exists() {
        return true;
    }
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().to_string())
        .unwrap_or_default();
    for list in ["modules.builtin", "modules.dep"] {
        if let Ok(s) = std::fs::read_to_string(format!("/lib/modules/{rel}/{list}")) {
            let needle = format!("/{m}.ko");
            if s.lines()
                .any(|l| l.split(':').next().is_some_and(|p| p.contains(&needle)))
            {
                return true;
            }
        }
    }
    // Kernels that ship their config: look for =y or =m.
    if config_option(m) {
        return true;
    }
    // A kernel without modules or a config file (as here) still lists the functions of
    // its built-in drivers in /proc/kallsyms.
    kallsyms_has(match m {
        "veth" => "veth_newlink",
        "bridge" => "br_dev_xmit",
        "macvlan" => "macvlan_common_newlink",
        "nf_tables" => "nft_register_chain_type",
        "overlay" => "ovl_fill_super",
        _ => return false,
    })
}

fn kallsyms_has(symbol: &str) -> bool {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open("/proc/kallsyms") else {
        return false;
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        // "ADDRESS TYPE NAME [MODULE]"
        .any(|l| l.split_whitespace().nth(2) == Some(symbol))
}

fn config_option(m: &str) -> bool {
    let key = match m {
        "veth" => "CONFIG_VETH",
        "bridge" => "CONFIG_BRIDGE",
        "macvlan" => "CONFIG_MACVLAN",
        "nf_tables" => "CONFIG_NF_TABLES",
        "overlay" => "CONFIG_OVERLAY_FS",
        _ => return false,
    };
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().to_string())
        .unwrap_or_default();
    let text = std::fs::read_to_string(format!("/boot/config-{rel}")).unwrap_or_default();
    text.lines()
        .any(|l| l == format!("{key}=y") || l == format!("{key}=m"))
}

pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    let mut group = "";
    for c in checks {
        if c.group != group {
            group = c.group;
            s += &format!("--- {group} ---\n");
        }
        let status = match (c.ok, c.required) {
            (true, _) => "OK".to_string(),
            (false, true) => "missing (required)".to_string(),
            (false, false) => "missing".to_string(),
        };
        let detail = if c.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.detail)
        };
        s += &format!("{:<32} {status}{detail}\n", format!("{}:", c.name));
    }
    s
}
