use coop_container::{freeze, Store};

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
}

pub fn run(store: &Store, a: Args, frozen: bool) -> anyhow::Result<u8> {
    let name = a.name.get()?;
    if frozen {
        freeze::freeze(store, name)?;
    } else {
        freeze::unfreeze(store, name)?;
    }
    Ok(0)
}
