//! `coop create`: build a container from a template, all or nothing.
//!
//! Everything is built in a staging directory (`<lib>/.NAME.creating-PID`) and renamed
//! into place only when the template succeeded and the resulting config parses, so a
//! failure, a full disk or Ctrl-C never leaves a half-made container behind.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use coop_config::Config;
use coop_templates::{Progress, Request, TemplateKind};

use crate::state::pid_alive;
use crate::store::validate_name;
use crate::{Error, Result, Store};

pub struct CreateOptions {
    pub template: String,
    /// Template options without dashes: ("release", "bookworm").
    pub template_args: Vec<(String, String)>,
    /// `-f FILE`: config lines appended to the template's.
    pub config_file: Option<PathBuf>,
    pub root_password: Option<String>,
    /// Lines the caller adds (e.g. a default network), appended before the user's file.
    pub extra_config: Vec<(String, String)>,
    /// Make a coLinux instance (a UML kernel on a disk image) instead of a container.
    pub colinux: Option<ColinuxOptions>,
}

pub struct ColinuxOptions {
    /// Guest memory, bytes.
    pub memory: u64,
    /// Size of the ext4 disk image, bytes.
    pub disk_size: u64,
}

pub struct Created {
    pub root_password: String,
    pub password_generated: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn create(
    store: &Store,
    name: &str,
    opts: &CreateOptions,
    progress: &dyn Fn(Progress),
) -> Result<Created> {
    validate_name(name)?;
    // Read the user's config first: a typo there must not cost a download.
    let user_config = match &opts.config_file {
        Some(p) => {
            let c = Config::load(p)?;
            coop_net::parse_interfaces(&c.net)?;
            Some(
                std::fs::read_to_string(p)
                    .map_err(Error::io(format!("cannot read {}", p.display())))?,
            )
        }
        None => None,
    };
    let kind: TemplateKind = coop_templates::parse_template(&opts.template, &opts.template_args)?;
    std::fs::create_dir_all(&store.lib)
        .map_err(Error::io(format!("cannot create {}", store.lib.display())))?;
    let _lock = store.lock(name)?;
    if store.dir(name).exists() {
        return Err(Error::Exists(name.to_string()));
    }
    remove_stale_staging(store, name);

    let staging = store
        .lib
        .join(format!(".{name}.creating-{}", std::process::id()));
    let guard = Staging(staging.clone());
    let rootfs = staging.join("rootfs");
    std::fs::create_dir_all(&rootfs)
        .map_err(Error::io(format!("cannot create {}", rootfs.display())))?;
    std::fs::set_permissions(
        &staging,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(Error::io(format!("cannot protect {}", staging.display())))?;

    // Ctrl-C reaches the template's children too; we only note it and clean up after.
    INTERRUPTED.store(false, Ordering::SeqCst);
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_interrupt),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let old = unsafe {
        [
            nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &action).ok(),
            nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGTERM, &action).ok(),
        ]
    };
    // A coLinux guest's tree goes into a disk image; the container root is only the
    // jail the kernel process runs in.
    let guest_tree = staging.join("guest");
    let template_root = if opts.colinux.is_some() {
        std::fs::create_dir_all(&guest_tree)
            .map_err(Error::io(format!("cannot create {}", guest_tree.display())))?;
        guest_tree.clone()
    } else {
        rootfs.clone()
    };
    let mut req = Request::new(name, &template_root, &store.cache);
    req.root_password = opts.root_password.clone();
    let result = coop_templates::create(&kind, &req, progress);
    // SAFETY: restoring the dispositions we saved above.
    unsafe {
        if let Some(o) = old[0] {
            let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &o);
        }
        if let Some(o) = old[1] {
            let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGTERM, &o);
        }
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(Error::Msg(format!(
            "creation of {name} interrupted; nothing was kept"
        )));
    }
    let outcome = result?;
    if let Some(co) = &opts.colinux {
        coop_colinux::build_image(&guest_tree, &rootfs.join("disk.img"), co.disk_size, &|m| {
            progress(Progress::Step(m))
        })?;
        std::fs::remove_dir_all(&guest_tree)
            .map_err(Error::io(format!("cannot remove {}", guest_tree.display())))?;
        for d in ["usr", "dev", "proc", "sys", "tmp", "run"] {
            std::fs::create_dir_all(rootfs.join(d))
                .map_err(Error::io(format!("cannot create {}/{d}", rootfs.display())))?;
        }
        for (l, t) in [
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
        ] {
            std::os::unix::fs::symlink(t, rootfs.join(l))
                .map_err(Error::io(format!("cannot link {}/{l}", rootfs.display())))?;
        }
    }

    let final_dir = store.dir(name);
    let mut body = format!("# coop container {name}, template {}\n", opts.template);
    match &opts.colinux {
        None => body += &coop_config::render(&outcome.config),
        Some(co) => {
            // The template's lines describe the guest's init, not this jail's.
            body += &format!(
                "coop.kind = colinux\ncoop.colinux.memory = {}M\ncoop.colinux.disk = /disk.img\n\
                 coop.limits.memory = {}M\nlxc.tty.max = 0\n\
                 lxc.mount.entry = /usr usr none ro,bind 0 0\n",
                co.memory >> 20,
                (co.memory >> 20) + 128
            );
        }
    }
    body += &format!(
        "lxc.rootfs.path = dir:{}\n",
        final_dir.join("rootfs").display()
    );
    body += &coop_config::render(&opts.extra_config);
    if let Some(u) = user_config {
        body += &format!(
            "\n# from {}\n",
            opts.config_file.as_ref().expect("file").display()
        );
        body += &u;
        if !body.ends_with('\n') {
            body.push('\n');
        }
    }
    let parsed = Config::parse_str(&format!("{name}/config"), &body)?;
    if parsed.net.is_empty() && opts.colinux.is_some() {
        // conet (the guest on a coop network) is not wired yet: loopback only.
        body += "lxc.net.0.type = empty\n";
    } else if parsed.net.is_empty() {
        // As lxc-create with lxc-net: one veth on the default bridge, with a fixed MAC
        // so DHCP and leases recognise the container across restarts.
        body += &format!(
            "lxc.net.0.type = veth\nlxc.net.0.link = {}\nlxc.net.0.flags = up\nlxc.net.0.hwaddr = {}\n",
            coop_net::DEFAULT_NETWORK,
            random_mac()
        );
    } else {
        // Fill `xx` placeholders once, here, so the MAC stays the same on every start.
        let specs = coop_net::parse_interfaces(&parsed.net)?;
        for sp in specs.iter().filter(|s| s.hwaddr_generated) {
            if let Some(mac) = &sp.hwaddr {
                body += &format!("lxc.net.{}.hwaddr = {mac}\n", sp.index);
            }
        }
    }
    let final_cfg = Config::parse_str(&format!("{name}/config"), &body)?;
    if !final_cfg.idmap.is_empty() && opts.colinux.is_none() {
        // A user-namespaced container sees its files through lxc.idmap: own the tree
        // by the mapped host ids, and let its (unprivileged) root reach the rootfs.
        let n = crate::idmap::shift_tree(&rootfs, &final_cfg.idmap)?;
        tracing::debug!(entries = n, "rootfs shifted into the lxc.idmap range");
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o711)).map_err(
            Error::io(format!("cannot open {} for search", staging.display())),
        )?;
    }
    let cfg = staging.join("config");
    std::fs::write(&cfg, body).map_err(Error::io(format!("cannot write {}", cfg.display())))?;
    std::fs::rename(&staging, &final_dir).map_err(Error::io(format!(
        "cannot move the container into {}",
        final_dir.display()
    )))?;
    std::mem::forget(guard);
    Ok(Created {
        root_password: outcome.root_password,
        password_generated: outcome.password_generated,
    })
}

/// A locally administered unicast MAC in LXC's 00:16:3e prefix style.
fn random_mac() -> String {
    let mut b = [0u8; 3];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Removes the staging directory unless disarmed with `mem::forget`.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A create killed with SIGKILL leaves its staging directory; the next create of the
/// same name sweeps it if its owner is gone.
fn remove_stale_staging(store: &Store, name: &str) {
    let prefix = format!(".{name}.creating-");
    let Ok(rd) = std::fs::read_dir(&store.lib) else {
        return;
    };
    for d in rd.flatten() {
        let f = d.file_name().to_string_lossy().to_string();
        if let Some(pid) = f.strip_prefix(&prefix).and_then(|p| p.parse::<i32>().ok()) {
            if !pid_alive(pid) {
                let _ = std::fs::remove_dir_all(d.path());
            }
        }
    }
}
