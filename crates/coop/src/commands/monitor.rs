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
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    let store = Store {
        lib: a.lib,
        run: a.run,
        cache: PathBuf::new(),
    };
    Ok(coop_container::monitor::main(&store, &a.name, a.spice) as u8)
}
