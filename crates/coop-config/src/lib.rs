//! Container configuration in LXC's `key = value` format.
//!
//! An existing LXC container config must work unchanged with coop, so this crate accepts
//! LXC's key names (`lxc.*`) and semantics (`lxc.include`, list keys cleared by an empty
//! value, `dir:` rootfs prefixes) and adds coop's own high-level keys (`coop.*`). Keys that
//! LXC knows but coop does not act on are kept and reported as warnings; keys that neither
//! knows are errors naming the file, line and key, so a typo never silently does nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

mod signal;
mod size;

pub use signal::{parse_signal, signal_name};
pub use size::parse_size;

/// How deep `lxc.include` may nest before we assume a loop.
const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}: {key}: {reason}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        reason: String,
    },
    #[error("{file}:{line}: not a `key = value` line: {text:?}")]
    Syntax {
        file: String,
        line: usize,
        text: String,
    },
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write config {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Where a key was set: used in every error and warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// One `lxc.mount.entry`, in fstab order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    pub source: String,
    /// Always relative to the container's root.
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
}

impl MountEntry {
    pub fn has_option(&self, opt: &str) -> bool {
        self.options.iter().any(|o| o == opt)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum ProcMode {
    /// `/proc` with `/proc/sys` and `/proc/sysrq-trigger` read-only (LXC's `proc:mixed`).
    #[default]
    Mixed,
    Rw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum SysMode {
    #[default]
    Ro,
    Mixed,
    Rw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum CgroupMode {
    /// No cgroup filesystem inside the container.
    #[default]
    None,
    /// The container's own cgroup, writable; the rest read-only (LXC's `cgroup:mixed`).
    Mixed,
    Ro,
    Rw,
}

/// What `lxc.mount.auto` asks for. `None` for a kind means "not mounted".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MountAuto {
    pub proc: Option<ProcMode>,
    pub sys: Option<SysMode>,
    pub cgroup: CgroupMode,
}

impl Default for MountAuto {
    /// coop mounts /proc and /sys even when the config is silent, because an init without
    /// them is useless; an explicit `lxc.mount.auto =` turns them off.
    fn default() -> Self {
        MountAuto {
            proc: Some(ProcMode::Mixed),
            sys: Some(SysMode::Ro),
            cgroup: CgroupMode::Mixed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdMap {
    /// 'u' or 'g'.
    pub kind: char,
    pub container_id: u32,
    pub host_id: u32,
    pub count: u32,
}

/// coop's resource limits, mapped onto whichever cgroup version the host runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    /// CPUs, e.g. 0.5 for half of one CPU.
    pub cpu: Option<f64>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpuset: Option<String>,
}

/// The whole configuration of one container.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    /// Every line in file order, includes expanded; kept so nothing is lost on rewrite
    /// and so sub-systems (networking, coLinux) can read their own keys.
    pub entries: Vec<Entry>,
    pub uts_name: Option<String>,
    pub rootfs: Option<PathBuf>,
    pub mount_entries: Vec<MountEntry>,
    pub mount_auto: MountAuto,
    pub autodev: bool,
    pub cap_drop: Option<Vec<String>>,
    pub cap_keep: Option<Vec<String>>,
    pub cgroup_v1: Vec<(String, String)>,
    pub cgroup_v2: Vec<(String, String)>,
    pub idmap: Vec<IdMap>,
    pub tty_max: u32,
    pub pty_max: Option<u32>,
    pub signal_halt: Option<i32>,
    pub signal_reboot: Option<i32>,
    pub signal_stop: Option<i32>,
    pub init_cmd: Option<Vec<String>>,
    pub init_cwd: Option<String>,
    pub environment: Vec<(String, String)>,
    pub start_auto: bool,
    pub arch: Option<String>,
    pub apparmor_profile: Option<String>,
    pub seccomp_profile: Option<PathBuf>,
    pub console_logfile: Option<PathBuf>,
    /// `lxc.net.N.subkey` and `coop.net.N.subkey`, without the prefix (`"0.type"`), for
    /// the networking crate to interpret.
    pub net: Vec<(String, String)>,
    pub limits: Limits,
    /// `coop.display.spice = ADDR:PORT`.
    pub display_spice: Option<String>,
    /// `coop.display.spice.password-file = /ABSOLUTE/PATH`: SPICE clients must send the
    /// file's first line as password (which also allows non-loopback addresses).
    pub display_spice_password_file: Option<PathBuf>,
    /// `coop.kind` = `container` (default) or `colinux`.
    pub kind: Option<String>,
    /// `coop.colinux.*` keys without the prefix, for the cooperative-Linux engine.
    pub colinux: Vec<(String, String)>,
    /// Keys LXC knows that coop accepts but does not act on.
    pub warnings: Vec<String>,
}

impl Config {
    /// Parse a config file, following `lxc.include`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut entries = Vec::new();
        read_into(path, 0, &mut entries)?;
        Config::from_entries(entries)
    }

    /// Parse config text that came from somewhere other than a file (tests, `-f -`).
    pub fn parse_str(name: &str, text: &str) -> Result<Config, ConfigError> {
        let mut entries = Vec::new();
        parse_text(name, text, 0, &mut entries)?;
        Config::from_entries(entries)
    }

    pub fn from_entries(entries: Vec<Entry>) -> Result<Config, ConfigError> {
        let mut c = Config {
            autodev: true,
            tty_max: 0,
            ..Config::default()
        };
        for e in &entries {
            c.apply(e)?;
        }
        c.entries = entries;
        Ok(c)
    }

    /// The values of every occurrence of `key`, in order.
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key == key)
            .map(|e| e.value.as_str())
    }

    fn apply(&mut self, e: &Entry) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::Invalid {
            file: e.origin.file.clone(),
            line: e.origin.line,
            key: e.key.clone(),
            reason,
        };
        let v = e.value.as_str();
        let key = e.key.as_str();
        match key {
            "lxc.uts.name" => {
                validate_hostname(v).map_err(bad)?;
                self.uts_name = Some(v.to_string());
            }
            "lxc.rootfs.path" => {
                let p = v.strip_prefix("dir:").unwrap_or(v);
                if p.contains(':') && !p.starts_with('/') {
                    return Err(bad(format!(
                        "storage type in {v:?} is not supported; use a directory (dir:/path)"
                    )));
                }
                self.rootfs = if p.is_empty() { None } else { Some(p.into()) };
            }
            "lxc.mount.entry" => self.mount_entries.push(parse_mount_entry(v).map_err(bad)?),
            "lxc.mount.auto" => self.mount_auto = parse_mount_auto(v).map_err(bad)?,
            "lxc.mount.fstab" => self.warnings.push(format!(
                "{}: lxc.mount.fstab is not supported; use lxc.mount.entry lines",
                e.origin
            )),
            "lxc.autodev" => self.autodev = parse_bool(v).map_err(bad)?,
            "lxc.cap.drop" => set_list(&mut self.cap_drop, v, &e.key).map_err(bad)?,
            "lxc.cap.keep" => set_list(&mut self.cap_keep, v, &e.key).map_err(bad)?,
            "lxc.idmap" => {
                if v.is_empty() {
                    self.idmap.clear();
                } else {
                    self.idmap.push(parse_idmap(v).map_err(bad)?);
                }
            }
            "lxc.tty.max" => self.tty_max = parse_num(v).map_err(bad)?,
            "lxc.pty.max" => self.pty_max = Some(parse_num(v).map_err(bad)?),
            "lxc.signal.halt" => self.signal_halt = Some(parse_signal(v).map_err(bad)?),
            "lxc.signal.reboot" => self.signal_reboot = Some(parse_signal(v).map_err(bad)?),
            "lxc.signal.stop" => self.signal_stop = Some(parse_signal(v).map_err(bad)?),
            "lxc.init.cmd" => {
                let argv = split_command(v).map_err(bad)?;
                self.init_cmd = if argv.is_empty() { None } else { Some(argv) };
            }
            "lxc.init.cwd" => self.init_cwd = Some(v.to_string()),
            "lxc.environment" => {
                if v.is_empty() {
                    self.environment.clear();
                } else {
                    let (k, val) = match v.split_once('=') {
                        Some((k, val)) => (k.trim().to_string(), val.trim().to_string()),
                        // LXC passes the host's value through for a bare name.
                        None => (v.to_string(), std::env::var(v).unwrap_or_default()),
                    };
                    if k.is_empty() || k.contains(char::is_whitespace) {
                        return Err(bad(format!("{v:?} is not NAME=VALUE")));
                    }
                    self.environment.push((k, val));
                }
            }
            "lxc.start.auto" => self.start_auto = parse_bool(v).map_err(bad)?,
            "lxc.arch" => {
                let arch = match v {
                    "x86_64" | "amd64" | "x86-64" => "x86_64",
                    "i686" | "i386" | "x86" | "linux32" => {
                        return Err(bad(format!(
                            "{v:?}: 32-bit personalities are not supported yet; use x86_64"
                        )))
                    }
                    other => return Err(bad(format!("unknown architecture {other:?}"))),
                };
                self.arch = Some(arch.into());
            }
            "lxc.apparmor.profile" => {
                if v != "unconfined" {
                    self.warnings.push(format!(
                        "{}: lxc.apparmor.profile = {v}: AppArmor is not used by coop; running unconfined",
                        e.origin
                    ));
                }
                self.apparmor_profile = Some(v.to_string());
            }
            "lxc.seccomp.profile" => {
                self.seccomp_profile = if v.is_empty() { None } else { Some(v.into()) }
            }
            "lxc.console.logfile" => self.console_logfile = Some(v.into()),
            "coop.limits.cpu" => {
                let cpus: f64 = v
                    .parse()
                    .map_err(|_| bad(format!("{v:?} is not a number of CPUs (e.g. 0.5)")))?;
                if !(cpus > 0.0 && cpus <= 4096.0) {
                    return Err(bad(format!("{v} CPUs is out of range (0 < cpus ≤ 4096)")));
                }
                self.limits.cpu = Some(cpus);
            }
            "coop.limits.memory" => self.limits.memory = Some(parse_size(v).map_err(bad)?),
            "coop.limits.pids" => {
                let n: u64 = parse_num(v).map_err(bad)?;
                if n == 0 {
                    return Err(bad("a pids limit of 0 would forbid init itself".into()));
                }
                self.limits.pids = Some(n);
            }
            "coop.limits.cpuset" => {
                validate_cpuset(v).map_err(bad)?;
                self.limits.cpuset = Some(v.to_string());
            }
            "coop.display.spice" => {
                if !v.contains(':') {
                    return Err(bad(format!("{v:?} is not ADDRESS:PORT")));
                }
                self.display_spice = Some(v.to_string());
            }
            "coop.display.spice.password-file" => {
                // Empty clears it, as for other single-value keys read in order.
                self.display_spice_password_file = if v.is_empty() {
                    None
                } else if Path::new(v).is_absolute() {
                    Some(v.into())
                } else {
                    return Err(bad(format!(
                        "{v:?} is not an absolute path (the file is read when the container starts)"
                    )));
                };
            }
            "coop.kind" => match v {
                "container" | "colinux" => self.kind = Some(v.to_string()),
                _ => return Err(bad(format!("{v:?}: kind must be container or colinux"))),
            },
            _ => {
                if let Some(rest) = key.strip_prefix("lxc.cgroup2.") {
                    check_cgroup_key(rest).map_err(bad)?;
                    push_cgroup_key(&mut self.cgroup_v2, rest, v).map_err(bad)?;
                } else if let Some(rest) = key.strip_prefix("lxc.cgroup.") {
                    if rest == "dir" || rest.starts_with("dir.") || rest == "relative" {
                        self.warnings
                            .push(format!("{}: {key} is ignored by coop", e.origin));
                    } else {
                        check_cgroup_key(rest).map_err(bad)?;
                        push_cgroup_key(&mut self.cgroup_v1, rest, v).map_err(bad)?;
                    }
                } else if let Some(rest) = key.strip_prefix("lxc.net.") {
                    check_net_key(rest).map_err(bad)?;
                    self.net.push((rest.to_string(), v.to_string()));
                } else if let Some(rest) = key.strip_prefix("coop.net.") {
                    check_net_key(rest).map_err(bad)?;
                    self.net.push((rest.to_string(), v.to_string()));
                } else if let Some(rest) = key.strip_prefix("coop.colinux.") {
                    if rest.is_empty() {
                        return Err(bad("missing the coop.colinux sub-key".into()));
                    }
                    self.colinux.push((rest.to_string(), v.to_string()));
                } else if is_known_lxc_key(key) {
                    self.warnings.push(format!(
                        "{}: {key} is an LXC key coop accepts but does not act on",
                        e.origin
                    ));
                } else {
                    return Err(bad(format!(
                        "unknown key{}",
                        suggestion(key)
                            .map(|s| format!(" (did you mean {s}?)"))
                            .unwrap_or_default()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Keys that we act on, for suggestions.
const HANDLED: &[&str] = &[
    "lxc.uts.name",
    "lxc.rootfs.path",
    "lxc.mount.entry",
    "lxc.mount.auto",
    "lxc.autodev",
    "lxc.cap.drop",
    "lxc.cap.keep",
    "lxc.idmap",
    "lxc.tty.max",
    "lxc.pty.max",
    "lxc.signal.halt",
    "lxc.signal.reboot",
    "lxc.signal.stop",
    "lxc.init.cmd",
    "lxc.init.cwd",
    "lxc.environment",
    "lxc.start.auto",
    "lxc.arch",
    "lxc.apparmor.profile",
    "lxc.seccomp.profile",
    "lxc.console.logfile",
    "lxc.include",
    "coop.limits.cpu",
    "coop.limits.memory",
    "coop.limits.pids",
    "coop.limits.cpuset",
    "coop.display.spice",
    "coop.display.spice.password-file",
    "coop.kind",
];

/// LXC keys (from lxc.container.conf(5)) that are valid but not acted on by coop.
const LXC_ACCEPTED: &[&str] = &[
    "lxc.tty.dir",
    "lxc.pty.max",
    "lxc.console.path",
    "lxc.console.buffer.size",
    "lxc.console.size",
    "lxc.console.rotate",
    "lxc.apparmor.allow_nesting",
    "lxc.apparmor.allow_incomplete",
    "lxc.apparmor.raw",
    "lxc.selinux.context",
    "lxc.selinux.context.keyring",
    "lxc.seccomp.allow_nesting",
    "lxc.seccomp.notify.proxy",
    "lxc.seccomp.notify.cookie",
    "lxc.start.delay",
    "lxc.start.order",
    "lxc.group",
    "lxc.monitor.unshare",
    "lxc.monitor.signal.pdeath",
    "lxc.ephemeral",
    "lxc.log.level",
    "lxc.log.file",
    "lxc.log.syslog",
    "lxc.no_new_privs",
    "lxc.rootfs.mount",
    "lxc.rootfs.options",
    "lxc.rootfs.managed",
    "lxc.uts.domain",
    "lxc.init.uid",
    "lxc.init.gid",
    "lxc.init.groups",
    "lxc.keyring.session",
    "lxc.namespace.clone",
    "lxc.namespace.keep",
    "lxc.namespace.share.net",
    "lxc.namespace.share.ipc",
    "lxc.namespace.share.uts",
    "lxc.namespace.share.pid",
    "lxc.namespace.share.user",
    "lxc.namespace.share.mnt",
    "lxc.namespace.share.cgroup",
    "lxc.namespace.share.time",
    "lxc.hook.version",
    "lxc.hook.pre-start",
    "lxc.hook.pre-mount",
    "lxc.hook.mount",
    "lxc.hook.autodev",
    "lxc.hook.start-host",
    "lxc.hook.start",
    "lxc.hook.stop",
    "lxc.hook.post-stop",
    "lxc.hook.clone",
    "lxc.hook.destroy",
    "lxc.signal.halt",
    "lxc.sysctl",
    "lxc.proc",
    "lxc.prlimit",
    "lxc.time.offset.boot",
    "lxc.time.offset.monotonic",
    "lxc.autodev.tmpfs.size",
    "lxc.cgroup.pattern",
];

fn is_known_lxc_key(key: &str) -> bool {
    LXC_ACCEPTED.contains(&key)
        || ["lxc.sysctl.", "lxc.proc.", "lxc.prlimit.", "lxc.hook."]
            .iter()
            .any(|p| key.starts_with(p))
}

/// The closest handled key by edit distance, for "did you mean".
fn suggestion(key: &str) -> Option<&'static str> {
    HANDLED
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn read_into(path: &Path, depth: usize, out: &mut Vec<Entry>) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_text(&path.display().to_string(), &text, depth, out)
}

fn parse_text(
    name: &str,
    text: &str,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), ConfigError> {
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(ConfigError::Syntax {
                file: name.to_string(),
                line: i + 1,
                text: raw.to_string(),
            });
        };
        let key = k.trim().to_string();
        let value = unquote(v.trim()).to_string();
        let origin = Origin {
            file: name.to_string(),
            line: i + 1,
        };
        if key == "lxc.include" {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(ConfigError::Invalid {
                    file: origin.file,
                    line: origin.line,
                    key,
                    reason: format!("includes nest deeper than {MAX_INCLUDE_DEPTH} (a loop?)"),
                });
            }
            include(Path::new(&value), &origin, depth + 1, out)?;
            continue;
        }
        out.push(Entry { key, value, origin });
    }
    Ok(())
}

/// `lxc.include` takes a file, or a directory whose `*.conf` files are read in name order.
fn include(
    path: &Path,
    origin: &Origin,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::Invalid {
        file: origin.file.clone(),
        line: origin.line,
        key: "lxc.include".into(),
        reason,
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| bad(format!("cannot list {}: {e}", path.display())))?
            .filter_map(|d| d.ok().map(|d| d.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        files.sort();
        for f in files {
            read_into(&f, depth, out)?;
        }
        Ok(())
    } else if path.exists() {
        read_into(path, depth, out)
    } else {
        Err(bad(format!("{} does not exist", path.display())))
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (use 0 or 1)")),
    }
}

fn parse_num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not a non-negative whole number"))
}

fn set_list(list: &mut Option<Vec<String>>, v: &str, key: &str) -> Result<(), String> {
    if v.is_empty() {
        *list = Some(Vec::new());
        return Ok(());
    }
    let l = list.get_or_insert_with(Vec::new);
    for cap in v.split_whitespace() {
        let cap = cap.to_ascii_lowercase();
        let cap = cap.strip_prefix("cap_").unwrap_or(&cap).to_string();
        if cap != "none" && !CAPABILITIES.contains(&cap.as_str()) {
            return Err(format!("{key}: unknown capability {cap:?}"));
        }
        l.push(cap);
    }
    Ok(())
}

/// Capability names as LXC writes them (without `cap_`), in kernel number order.
pub const CAPABILITIES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

fn parse_idmap(v: &str) -> Result<IdMap, String> {
    let f: Vec<&str> = v.split_whitespace().collect();
    if f.len() != 4 {
        return Err(format!("{v:?} is not `u|g CONTAINER_ID HOST_ID COUNT`"));
    }
    let kind = match f[0] {
        "u" => 'u',
        "g" => 'g',
        other => return Err(format!("{other:?} must be u or g")),
    };
    Ok(IdMap {
        kind,
        container_id: parse_num(f[1])?,
        host_id: parse_num(f[2])?,
        count: parse_num(f[3])?,
    })
}

fn parse_mount_entry(v: &str) -> Result<MountEntry, String> {
    let f: Vec<&str> = v.split_whitespace().collect();
    if f.len() < 3 {
        return Err(format!(
            "{v:?} is not `SOURCE TARGET FSTYPE [OPTIONS [DUMP [PASS]]]`"
        ));
    }
    let target = f[1].trim_start_matches('/').to_string();
    if target.split('/').any(|c| c == "..") {
        return Err(format!("target {:?} leaves the container's root", f[1]));
    }
    Ok(MountEntry {
        source: f[0].to_string(),
        target,
        fstype: f[2].to_string(),
        options: f
            .get(3)
            .map(|o| o.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

fn parse_mount_auto(v: &str) -> Result<MountAuto, String> {
    let mut m = MountAuto {
        proc: None,
        sys: None,
        cgroup: CgroupMode::None,
    };
    for tok in v.split_whitespace() {
        match tok {
            "proc" | "proc:mixed" => m.proc = Some(ProcMode::Mixed),
            "proc:rw" => m.proc = Some(ProcMode::Rw),
            "sys" | "sys:mixed" => m.sys = Some(SysMode::Mixed),
            "sys:ro" => m.sys = Some(SysMode::Ro),
            "sys:rw" => m.sys = Some(SysMode::Rw),
            "cgroup" | "cgroup:mixed" | "cgroup-full:mixed" | "cgroup:mixed:force" => {
                m.cgroup = CgroupMode::Mixed
            }
            "cgroup:ro" | "cgroup-full:ro" | "cgroup-full" => m.cgroup = CgroupMode::Ro,
            "cgroup:rw" | "cgroup-full:rw" | "cgroup:rw:force" => m.cgroup = CgroupMode::Rw,
            "shmounts" => {}
            other if other.starts_with("shmounts:") => {}
            other => {
                return Err(format!(
                    "unknown lxc.mount.auto item {other:?} (expected proc[:mixed|:rw], sys[:ro|:mixed|:rw], cgroup[:mixed|:ro|:rw])"
                ))
            }
        }
    }
    Ok(m)
}

fn check_cgroup_key(rest: &str) -> Result<(), String> {
    let valid = rest.contains('.')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{rest:?} is not a cgroup file name like memory.limit_in_bytes"
        ))
    }
}

/// Record `lxc.cgroup[2].<rest> = v`. As in LXC, an empty value clears the earlier
/// entries of that key. Device rules are parsed here so that a bad one is reported with its
/// file and line (coop applies them at start: LXC's default list, then these in order).
fn push_cgroup_key(list: &mut Vec<(String, String)>, rest: &str, v: &str) -> Result<(), String> {
    if v.is_empty() {
        list.retain(|(k, _)| k != rest);
        return Ok(());
    }
    if rest.starts_with("devices.") {
        if coop_cgroups::DeviceOp::from_key(rest).is_none() {
            return Err(format!(
                "{rest:?}: only devices.allow and devices.deny can be set"
            ));
        }
        coop_cgroups::DeviceRule::parse(v).map_err(|e| e.to_string())?;
    }
    list.push((rest.to_string(), v.to_string()));
    Ok(())
}

fn check_net_key(rest: &str) -> Result<(), String> {
    let (idx, sub) = rest
        .split_once('.')
        .ok_or_else(|| format!("{rest:?} is not N.SUBKEY (e.g. 0.type)"))?;
    idx.parse::<u32>()
        .map_err(|_| format!("interface index {idx:?} is not a number"))?;
    if sub.is_empty() {
        return Err("missing sub-key after the interface index".into());
    }
    Ok(())
}

fn validate_hostname(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a valid host name (letters, digits, '-', '.', at most 64)"
        ))
    }
}

fn validate_cpuset(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.split(',').all(|part| {
            let mut it = part.splitn(2, '-');
            let a = it.next().and_then(|a| a.parse::<u32>().ok());
            match (a, it.next()) {
                (Some(_), None) => true,
                (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
                _ => false,
            }
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{v:?} is not a CPU list like 0-1,3"))
    }
}

/// Split a command line the way a shell would for simple quoting ('…', "…", \x).
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => {
                            cur.push(chars.next().ok_or("trailing backslash")?)
                        }
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next().ok_or("trailing backslash")?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Group `lxc.net.*` keys by interface index, for display and for the networking crate.
pub fn net_by_index(net: &[(String, String)]) -> BTreeMap<u32, Vec<(String, String)>> {
    let mut m: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for (k, v) in net {
        if let Some((i, sub)) = k.split_once('.') {
            if let Ok(i) = i.parse() {
                m.entry(i)
                    .or_default()
                    .push((sub.to_string(), v.to_string()));
            }
        }
    }
    m
}

/// Render config lines as a file body.
pub fn render(lines: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in lines {
        s.push_str(k);
        s.push_str(" = ");
        s.push_str(v);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests;

/// Set `key = value` in the config file at `path`: the first line setting `key` is
/// replaced and later ones removed, or the line is appended. Other lines, comments
/// included, are kept as they are. The new file is validated before it replaces the old.
pub fn set_key(path: &Path, key: &str, value: &str) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        let is_key = line
            .split_once('=')
            .is_some_and(|(k, _)| k.trim() == key && !line.trim_start().starts_with('#'));
        if is_key {
            if !done {
                out += &format!("{key} = {value}\n");
                done = true;
            }
        } else {
            out += line;
            out.push('\n');
        }
    }
    if !done {
        out += &format!("{key} = {value}\n");
    }
    Config::parse_str(&path.display().to_string(), &out)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &out)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| ConfigError::Write {
            path: path.display().to_string(),
            source,
        })
}
