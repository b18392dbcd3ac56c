use coop_container::Store;

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// Stop the container first if it runs.
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let name = a.name.get()?;
    coop_container::destroy::destroy(store, name, a.force)?;
    println!("Destroyed container {name}");
    Ok(0)
}
