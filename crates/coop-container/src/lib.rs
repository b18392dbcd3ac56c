//! coop's container engine: LXC-style system containers on an unpatched kernel.
//!
//! A container is a directory (`<lib>/NAME/config` + `rootfs`) and, while it runs, one
//! small monitor process that owns its console ptys, its cgroup and its init. The CLI
//! talks to that monitor over a unix socket; no daemon outlives its container. The
//! modules follow the commands: [`create`], [`start`], [`stop`], [`attach`], [`console`],
//! [`info`], [`destroy`], [`freeze`], plus [`checkconfig`] for the kernel.

pub mod attach;
pub mod autostart;
pub mod checkconfig;
pub mod console;
pub mod copy;
pub mod create;
pub mod destroy;
mod display;
mod error;
pub mod freeze;
pub mod idmap;
pub mod info;
mod init;
pub mod monitor;
mod proto;
mod seccomp;
pub mod start;
pub mod state;
pub mod stop;
pub mod store;
mod xrelay;

pub use display::control_socket as display_control_socket;
pub use error::Error;
pub use store::Store;

pub type Result<T, E = Error> = std::result::Result<T, E>;
