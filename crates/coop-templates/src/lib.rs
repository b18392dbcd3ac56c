//! Container templates for coop's LXC-style engine.
//!
//! A template fills a staging root filesystem directory given by the engine and returns the
//! LXC configuration lines that fit what it built (hostname, init, halt signal, ttys, auto
//! mounts). Three templates exist:
//!
//! * `busybox`: a minimal root made from the host's static busybox (Debian `busybox-static`),
//!   with busybox init, getty on the console and ttys, and DHCP on `eth0` in the background.
//! * `debian`: a `debootstrap` tree kept in a cache and copied (`cp -a --reflink=auto`) for
//!   each container, configured for systemd in a container (networkd DHCP on `eth0`).
//! * `tar`: an archive (`.tar`, `.tar.gz`/`.tgz`, `.tar.xz`, `.tar.zst`) unpacked safely, with
//!   the init detected from the tree.
//!
//! On error the engine deletes the staging rootfs; everything else this crate creates (cache
//! entries, temporary files, mounts) is removed or completed atomically here.

mod busybox;
mod debian;
mod fsutil;
mod host;
mod password;
mod tarball;

use std::path::{Path, PathBuf};

pub use debian::cache_key as debian_cache_key;
pub use password::{generate_password, hash_password, hash_password_with_salt, verify_password};
pub use tarball::{detect_init, unpack, Compression, InitKind};

/// Which template to run, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateKind {
    Busybox,
    Debian(DebianOpts),
    Tar(TarOpts),
}

/// Options of the `debian` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianOpts {
    /// Debian suite or codename, e.g. `bookworm`.
    pub release: String,
    /// Mirror URL; `None` means the host's configured Debian mirror, else deb.debian.org.
    pub mirror: Option<String>,
    /// debootstrap variant, e.g. `minbase`.
    pub variant: String,
}

impl Default for DebianOpts {
    fn default() -> Self {
        DebianOpts {
            release: "bookworm".to_string(),
            mirror: None,
            variant: "minbase".to_string(),
        }
    }
}

/// Options of the `tar` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarOpts {
    /// The archive: `.tar`, `.tar.gz`/`.tgz`, `.tar.xz`/`.txz`, `.tar.zst`/`.tzst`.
    pub file: PathBuf,
}

/// What the engine asks a template to build.
#[derive(Clone)]
pub struct Request<'a> {
    /// Container name, also used as hostname.
    pub name: &'a str,
    /// Staging root filesystem directory (exists, normally empty).
    pub rootfs: &'a Path,
    /// Root password; `None` generates one.
    pub root_password: Option<String>,
    /// Directory where templates may keep downloads between runs.
    pub cache_dir: &'a Path,
    /// Number of ttys the container gets (`lxc.tty.max`), 4 by default.
    pub tty_max: u32,
}

impl<'a> Request<'a> {
    /// A request with the defaults (generated password, 4 ttys).
    pub fn new(name: &'a str, rootfs: &'a Path, cache_dir: &'a Path) -> Self {
        Request {
            name,
            rootfs,
            root_password: None,
            cache_dir,
            tty_max: DEFAULT_TTY_MAX,
        }
    }
}

// Hand-written so that logging a request never prints the password.
impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("name", &self.name)
            .field("rootfs", &self.rootfs)
            .field(
                "root_password",
                &self.root_password.as_ref().map(|_| "(hidden)"),
            )
            .field("cache_dir", &self.cache_dir)
            .field("tty_max", &self.tty_max)
            .finish()
    }
}

/// Default number of container ttys.
pub const DEFAULT_TTY_MAX: u32 = 4;

/// Most ttys a template will set up; getty lines beyond that make no sense in a container.
pub const MAX_TTY_MAX: u32 = 64;

/// What a template built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// LXC config lines, key then value (no `lxc.rootfs.path`, no `lxc.net.*`).
    pub config: Vec<(String, String)>,
    /// The root password set in the container (empty if the tree has no `/etc/shadow`).
    pub root_password: String,
    /// True when `root_password` was generated here and must be shown to the user.
    pub password_generated: bool,
}

/// Progress reports while a template runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A new phase or an item within one.
    Step(String),
    /// Part of a countable phase is done.
    Fraction { done: u64, total: u64, what: String },
}

/// Errors of the templates.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template `{name}`; valid templates: {valid}")]
    UnknownTemplate { name: String, valid: String },
    #[error("unknown option `--{option}` for template `{template}`; valid options: {valid}")]
    UnknownOption {
        template: String,
        option: String,
        valid: String,
    },
    #[error("template `{template}` needs option `--{option}`")]
    MissingOption { template: String, option: String },
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("command `{cmd}` failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("cannot install Debian package `{package}` (needed for {why}): {detail}")]
    PackageInstall {
        package: String,
        why: String,
        detail: String,
    },
    #[error("archive `{file}`: unsafe entry `{entry}`: {reason}")]
    UnsafeEntry {
        file: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("archive `{file}`: {reason}")]
    Archive { file: PathBuf, reason: String },
    #[error("path `{path}` escapes the container root: {reason}")]
    Escape { path: PathBuf, reason: String },
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl TemplateError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TemplateError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Names of the templates, as `parse_template` accepts them.
pub const TEMPLATES: &[&str] = &["busybox", "debian", "tar"];

fn valid_options(template: &str) -> &'static [&'static str] {
    match template {
        "debian" => &["release", "mirror", "variant"],
        "tar" => &["file"],
        _ => &[],
    }
}

fn list(items: &[&str], prefix: &str) -> String {
    if items.is_empty() {
        return "(none)".to_string();
    }
    items
        .iter()
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a template name and its `--key value` options (keys given without dashes).
pub fn parse_template(
    name: &str,
    args: &[(String, String)],
) -> Result<TemplateKind, TemplateError> {
    if !TEMPLATES.contains(&name) {
        return Err(TemplateError::UnknownTemplate {
            name: name.to_string(),
            valid: list(TEMPLATES, ""),
        });
    }
    let valid = valid_options(name);
    for (key, _) in args {
        let key = key.trim_start_matches('-');
        if !valid.contains(&key) {
            return Err(TemplateError::UnknownOption {
                template: name.to_string(),
                option: key.to_string(),
                valid: list(valid, "--"),
            });
        }
    }
    let get = |want: &str| {
        args.iter()
            .rev()
            .find(|(k, _)| k.trim_start_matches('-') == want)
            .map(|(_, v)| v.clone())
    };
    match name {
        "busybox" => Ok(TemplateKind::Busybox),
        "debian" => {
            let mut opts = DebianOpts::default();
            if let Some(r) = get("release") {
                debian::check_name("release", &r)?;
                opts.release = r;
            }
            if let Some(v) = get("variant") {
                debian::check_name("variant", &v)?;
                opts.variant = v;
            }
            if let Some(m) = get("mirror") {
                debian::check_mirror(&m)?;
                opts.mirror = Some(m);
            }
            Ok(TemplateKind::Debian(opts))
        }
        _ => {
            let file = get("file").ok_or_else(|| TemplateError::MissingOption {
                template: name.to_string(),
                option: "file".to_string(),
            })?;
            if file.is_empty() {
                return Err(TemplateError::InvalidValue {
                    key: "--file".into(),
                    value: file,
                    reason: "empty path".into(),
                });
            }
            Ok(TemplateKind::Tar(TarOpts {
                file: PathBuf::from(file),
            }))
        }
    }
}

/// Builds the container root filesystem in `req.rootfs` and returns its config lines.
pub fn create(
    kind: &TemplateKind,
    req: &Request,
    progress: &dyn Fn(Progress),
) -> Result<Outcome, TemplateError> {
    check_hostname(req.name)?;
    if req.tty_max > MAX_TTY_MAX {
        return Err(TemplateError::InvalidValue {
            key: "tty_max".into(),
            value: req.tty_max.to_string(),
            reason: format!("at most {MAX_TTY_MAX}"),
        });
    }
    if let Some(p) = &req.root_password {
        password::check_password(p)?;
    }
    let meta = std::fs::symlink_metadata(req.rootfs)
        .map_err(|e| TemplateError::io("cannot open rootfs", req.rootfs, e))?;
    if !meta.is_dir() {
        return Err(TemplateError::io(
            "rootfs is not a directory",
            req.rootfs,
            std::io::Error::from(std::io::ErrorKind::NotADirectory),
        ));
    }
    tracing::info!(template = ?kind, name = req.name, rootfs = %req.rootfs.display(), "creating container rootfs");
    match kind {
        TemplateKind::Busybox => busybox::create(req, progress),
        TemplateKind::Debian(opts) => debian::create(opts, req, progress),
        TemplateKind::Tar(opts) => tarball::create(opts, req, progress),
    }
}

/// Container names become hostnames and lines in /etc/hosts: keep them to RFC 1123 labels.
fn check_hostname(name: &str) -> Result<(), TemplateError> {
    let bad = |reason: &str| TemplateError::InvalidValue {
        key: "name".into(),
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 63 {
        return Err(bad("must be 1 to 63 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
    }
    if name.starts_with('-') || name.starts_with('.') {
        return Err(bad("must not start with '-' or '.'"));
    }
    Ok(())
}

/// The config lines every template emits.
fn common_config(req: &Request, halt_signal: &str) -> Vec<(String, String)> {
    vec![
        ("lxc.uts.name".into(), req.name.to_string()),
        ("lxc.init.cmd".into(), "/sbin/init".into()),
        ("lxc.signal.halt".into(), halt_signal.to_string()),
        ("lxc.tty.max".into(), req.tty_max.to_string()),
        (
            "lxc.mount.auto".into(),
            "proc:mixed sys:ro cgroup:mixed".into(),
        ),
    ]
}

/// The password to set: the requested one, or a generated one.
fn choose_password(req: &Request) -> (String, bool) {
    match &req.root_password {
        Some(p) => (p.clone(), false),
        None => (generate_password(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn parse_defaults_and_options() {
        assert_eq!(
            parse_template("busybox", &[]).unwrap(),
            TemplateKind::Busybox
        );
        assert_eq!(
            parse_template("debian", &[]).unwrap(),
            TemplateKind::Debian(DebianOpts::default())
        );
        let k = parse_template(
            "debian",
            &[
                kv("release", "trixie"),
                kv("--mirror", "http://ftp.de.debian.org/debian"),
                kv("variant", "buildd"),
            ],
        )
        .unwrap();
        assert_eq!(
            k,
            TemplateKind::Debian(DebianOpts {
                release: "trixie".into(),
                mirror: Some("http://ftp.de.debian.org/debian".into()),
                variant: "buildd".into()
            })
        );
        assert_eq!(
            parse_template("tar", &[kv("file", "/x/y.tar.gz")]).unwrap(),
            TemplateKind::Tar(TarOpts {
                file: "/x/y.tar.gz".into()
            })
        );
    }

    #[test]
    fn parse_errors_name_the_culprit() {
        let e = parse_template("alpine", &[]).unwrap_err().to_string();
        assert!(
            e.contains("alpine") && e.contains("busybox, debian, tar"),
            "{e}"
        );
        let e = parse_template("debian", &[kv("relase", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--relase") && e.contains("--release, --mirror, --variant"),
            "{e}"
        );
        let e = parse_template("busybox", &[kv("file", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--file") && e.contains("(none)"), "{e}");
        let e = parse_template("tar", &[]).unwrap_err().to_string();
        assert!(e.contains("--file"), "{e}");
        let e = parse_template("debian", &[kv("release", "../../etc")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("../../etc"), "{e}");
        let e = parse_template("debian", &[kv("mirror", "ftp://x y")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ftp://x y"), "{e}");
    }

    #[test]
    fn request_debug_hides_the_password() {
        let mut r = Request::new("n", Path::new("/r"), Path::new("/c"));
        r.root_password = Some("topsecret".into());
        let d = format!("{r:?}");
        assert!(!d.contains("topsecret") && d.contains("(hidden)"), "{d}");
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(check_hostname("web-1.example").is_ok());
        for bad in ["", "-x", ".x", "a b", "a\nb", "a/b", &"x".repeat(64)] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
