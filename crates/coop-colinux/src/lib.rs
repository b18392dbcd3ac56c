//! coop's Cooperative Linux engine: a real Linux kernel (Debian's User-Mode Linux,
//! `/usr/bin/linux.uml`) running as a cooperating host process.
//!
//! An instance runs the UML kernel *as the init of an ordinary coop container*: the
//! container gives confinement, memory/CPU caps and the console pty (its `/dev/console`
//! is the kernel's `con0=fd:0,fd:1`). This crate therefore supervises nothing; it provides
//! the building blocks the container engine uses:
//!
//! - [`parse_keys`]: the `coop.colinux.*` configuration keys;
//! - [`kernel_cmdline`]: the `linux.uml` argv for an [`InstanceSpec`];
//! - [`build_image`]: an ext4 disk image from a root directory, with the guest agent;
//! - [`snapshot`]: copy-on-write disks for `coop copy --snapshot`;
//! - [`Mconsole`]: the kernel's management console (version, halt, sysrq, …);
//! - [`attach_over`] and [`proto`]: `coop attach` through `coop-guest-agent`, which runs in
//!   the guest on the serial line `ttyS0`, wired on the host to fd [`AGENT_FD`] of the
//!   kernel process (`ssl0=fd:3`); [`poweroff`] for a clean stop from inside.
//!
//! What the container around the kernel must provide (learned running it here):
//!
//! - fd 0/1: the console pty; fd 3: one end of a `UnixStream::pair()` whose other end the
//!   monitor keeps for the agent (several `coop attach` run one after the other on it;
//!   a new request ends a still-running previous command).
//! - `ptrace` (UML runs every guest address space as a host child process it traces):
//!   no seccomp filter that blocks it; and the pids limit must leave room for one host
//!   process per guest process plus about ten kernel helpers.
//! - A writable temporary directory with room for `mem=` (UML looks for a tmpfs on
//!   `/dev/shm`, then `TMPDIR`, then `/tmp`): it maps guest RAM from a file there; on a tmpfs that memory counts against the container's memory cgroup, so
//!   the cap must exceed `mem=` (by some tens of MiB for the kernel process itself).
//! - `/dev/net/tun` for `transport=tap`; a raw-socket capable netns for `transport=raw`.
//! - `uml_dir` reachable by the monitor: the socket is `UML_DIR/NAME/mconsole` (a
//!   `sun_path` of at most 107 bytes), so bind-mount a host directory there or connect
//!   through a short path.
//! - The disk images and hostfs share directories at the same paths inside the container:
//!   the kernel opens them itself, and hostfs gives the guest's root access to them.
//!
//! - A PID namespace (the container gives one): when the console is a tty, UML starts a
//!   SIGWINCH helper that calls `setsid()` and is not killed when the kernel exits, even
//!   after a clean halt; as the kernel is the namespace's init, its exit kills the helper.
//!   Run outside a container, that helper must be killed by hand (the tests find it by its
//!   unique `umid=` argument).
//!
//! Boot time (to a usable `coop attach`, about 0.3 s here instead of 3.5 s): the kernel
//! skips its RAID-6 benchmark, legacy ptys and delay-loop calibration
//! ([`FAST_BOOT_ARGS`], `coop.colinux.fastboot`); the guest's boot hook starts the agent
//! before the guest's own boot scripts; and [`attach_over`] sends its request as soon as
//! the agent's hello says the line is ready.
//!
//! Stopping: [`poweroff`] (guest init unmounts, then the kernel exits) is the clean way;
//! [`Mconsole::stop_clean`] (SysRq sync + remount read-only + halt) works without guest
//! cooperation and leaves ext4 clean; a bare [`Mconsole::halt`] is a power cut.

pub mod attach;
mod config;
mod image;
pub mod mconsole;
pub mod proto;

use std::path::PathBuf;
use std::time::Duration;

pub use attach::{
    attach, attach_over, poweroff, run_captured, wait_agent, Captured, AGENT_WAIT, PING_INTERVAL,
};
pub use config::{
    host_lpj, kernel_cmdline, parse_keys, parse_size, snapshot, ColinuxConfig, Disk, InstanceSpec,
    NetSpec, Share, Transport, AGENT_FD, AGENT_TTY, DEFAULT_KERNEL, DEFAULT_MEMORY, FAST_BOOT_ARGS,
};
pub use image::{
    build_image, build_image_with, find_guest_agent, install_guest, is_static_elf, kernel_release,
    ImageOptions, UML_MODULES,
};
pub use mconsole::Mconsole;

/// Errors of the coLinux engine.
#[derive(Debug, thiserror::Error)]
pub enum ColinuxError {
    #[error("coop.colinux.{key}: bad value {value:?}: {reason}")]
    Key {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{cmd} failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("mconsole {}: {detail}", socket.display())]
    Mconsole { socket: PathBuf, detail: String },
    #[error("guest agent channel: {0}")]
    Agent(std::io::Error),
    #[error("guest agent did not answer within {0:?}")]
    AgentTimeout(Duration),
}

impl ColinuxError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ColinuxError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
