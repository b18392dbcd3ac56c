use std::path::PathBuf;

use coop_container::Store;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    lib: PathBuf,
    #[arg(long)]
    run: PathBuf,
    name: String,
    /// Serve a display for the container over SPICE at HOST:PORT.
    #[arg(long)]
    spice: Option<String>,
    /// Clients of that SPICE server must send this file's first line as password.
    #[arg(long, value_name = "FILE")]
    spice_password_file: Option<PathBuf>,
    /// Run by coop-monitor once init has ended (how, in words): tear the container down.
    #[arg(long, value_name = "EXIT")]
    teardown: Option<String>,
    /// With --teardown: an inherited socket waiting for the stop's answer (repeatable).
    #[arg(long = "waiter", value_name = "FD", requires = "teardown")]
    waiters: Vec<i32>,
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    let store = Store {
        lib: a.lib,
        run: a.run,
        cache: PathBuf::new(),
    };
    let code = match &a.teardown {
        Some(exit) => coop_container::monitor::teardown(&store, &a.name, exit, &a.waiters),
        None => coop_container::monitor::main(&store, &a.name, a.spice, a.spice_password_file),
    };
    Ok(code as u8)
}
