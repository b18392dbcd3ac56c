use std::time::Duration;

use coop_container::autostart::{self, BootHook};
use coop_container::Store;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Start NAME at boot (sets lxc.start.auto = 1; installs a systemd unit where systemd runs).
    Enable { name: String },
    /// Do not start NAME at boot.
    Disable { name: String },
    /// Start every marked container that is not running (what the boot hook runs).
    Run,
    /// Stop every running marked container (at shutdown).
    Stop {
        /// Seconds each container gets to halt cleanly.
        #[arg(short = 't', long, default_value_t = 30)]
        timeout: u64,
    },
    /// List marked containers in start order.
    Ls,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let exe = std::env::current_exe()?;
    match a.cmd {
        Cmd::Enable { name } => report(&name, autostart::set(store, &name, true, &exe)?),
        Cmd::Disable { name } => {
            autostart::set(store, &name, false, &exe)?;
            println!("{name} will not start at boot");
        }
        Cmd::Run => return summary(autostart::run(store, &exe)?),
        Cmd::Stop { timeout } => {
            return summary(autostart::stop_all(store, Duration::from_secs(timeout))?)
        }
        Cmd::Ls => {
            for (n, _) in autostart::marked(store)? {
                println!("{n}");
            }
        }
    }
    Ok(0)
}

fn report(name: &str, hook: BootHook) {
    match hook {
        BootHook::SystemdUnit(p) => println!("{name} starts at boot ({} enabled)", p.display()),
        BootHook::Manual(hint) => println!("{name} is marked to start at boot; {hint}"),
    }
}

fn summary(results: Vec<(String, coop_container::Result<()>)>) -> anyhow::Result<u8> {
    let mut failed = 0;
    for (n, r) in results {
        match r {
            Ok(()) => println!("{n}: ok"),
            Err(e) => {
                failed += 1;
                eprintln!("{n}: {e}");
            }
        }
    }
    Ok(u8::from(failed > 0))
}
