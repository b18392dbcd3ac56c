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
    /// SPICE clients must send this file's first line as password; allows a
    /// non-loopback address (overrides coop.display.spice.password-file).
    #[arg(long, value_name = "FILE")]
    spice_password_file: Option<std::path::PathBuf>,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let name = a.name.get()?;
    // Only GUI containers and coLinux instances run `exe` as their monitor, for life.
    let exe = super::full_build::long_running_exe()?;
    // The monitor runs elsewhere (its own cwd): give it an absolute path.
    let pw = match &a.spice_password_file {
        Some(f) => Some(
            std::path::absolute(f)
                .map_err(|e| anyhow::anyhow!("--spice-password-file {}: {e}", f.display()))?,
        ),
        None => None,
    };
    let init = coop_container::start::start(store, name, &exe, a.spice.as_deref(), pw.as_deref())?;
    if a.foreground && console(store, name, Some(0), false)? == Ended::Detached {
        eprintln!("detached; {name} keeps running (pid {init})");
    }
    Ok(0)
}
