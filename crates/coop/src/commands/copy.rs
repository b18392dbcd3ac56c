use coop_container::Store;

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// Name of the new container.
    #[arg(short = 'N', long = "newname")]
    new_name: String,
    /// coLinux: share the disk read-only behind a copy-on-write overlay (instant).
    #[arg(short = 's', long)]
    snapshot: bool,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let src = a.name.get()?;
    coop_container::copy::copy(store, src, &a.new_name, a.snapshot)?;
    println!("Copied {src} to {}", a.new_name);
    Ok(0)
}
