use coop_container::{info, Store};

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let i = info::info(store, a.name.get()?)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&i)?);
    } else {
        print!("{}", info::render(&i));
    }
    Ok(0)
}
