use coop_container::console::{console, Ended};
use coop_container::Store;

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// Stay in the foreground with the container's console on this terminal.
    #[arg(short = 'F', long)]
    foreground: bool,
    /// Start detached (the default; accepted for LXC compatibility).
    #[arg(short = 'd', long, conflicts_with = "foreground")]
    daemon: bool,
    /// Give the container an X display and serve it over SPICE at HOST:PORT
    /// (overrides coop.display.spice).
    #[arg(long, value_name = "HOST:PORT")]
    spice: Option<String>,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let name = a.name.get()?;
    let exe = std::env::current_exe()?;
    let st = coop_container::start::start(store, name, &exe, a.spice.as_deref())?;
    if a.foreground && console(store, name, Some(0), false)? == Ended::Detached {
        eprintln!("detached; {name} keeps running (pid {})", st.init_pid);
    }
    Ok(0)
}
