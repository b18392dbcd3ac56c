use coop_container::console::console;
use coop_container::Store;

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// tty number: 0 is /dev/console, 1.. are /dev/tty1..
    #[arg(short = 't', long, default_value_t = 1)]
    tty: u32,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    console(store, a.name.get()?, a.tty, true)?;
    Ok(0)
}
