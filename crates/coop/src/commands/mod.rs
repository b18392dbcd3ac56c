//! One module per command, as the CLI reads.

pub mod attach;
pub mod autostart;
pub mod checkconfig;
pub mod console;
pub mod copy;
pub mod create;
pub mod destroy;
pub mod freeze;
pub mod full_build;
pub mod info;
pub mod ls;
pub mod monitor;
pub mod net;
pub mod spice;
pub mod spice_handover;
pub mod start;
pub mod stop;
pub mod view;

/// `-n NAME` or a positional NAME, as LXC's tools accept both.
#[derive(clap::Args, Debug)]
pub struct NameArg {
    /// Container name.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub flag: Option<String>,
    /// Container name (instead of -n).
    #[arg(value_name = "NAME", conflicts_with = "flag")]
    pub positional: Option<String>,
}

impl NameArg {
    pub fn get(&self) -> anyhow::Result<&str> {
        self.flag
            .as_deref()
            .or(self.positional.as_deref())
            .ok_or_else(|| anyhow::anyhow!("which container? give -n NAME"))
    }
}
