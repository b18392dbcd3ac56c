use std::io;

/// Everything the engine can report; each message names the container, file or key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0:?} does not exist (see `coop ls`)")]
    NotFound(String),
    #[error("container {0:?} already exists (choose another name or `coop destroy -n {0}` first)")]
    Exists(String),
    #[error("invalid container name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("container {0:?} is already running")]
    Running(String),
    #[error("container {0:?} is not running")]
    NotRunning(String),
    #[error(transparent)]
    Config(#[from] coop_config::ConfigError),
    #[error(transparent)]
    Cgroup(#[from] coop_cgroups::CgroupError),
    #[error(transparent)]
    Colinux(#[from] coop_colinux::ColinuxError),
    #[error(transparent)]
    Net(#[from] coop_net::NetError),
    #[error(transparent)]
    Template(#[from] coop_templates::TemplateError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::Error },
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub fn sys(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let context = context.into();
        move |source| Error::Sys { context, source }
    }
}
