use coop_container::console::console;
use coop_container::Store;

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// tty number: 0 is /dev/console, 1.. are /dev/tty1.. (default: 1, or 0 when the
    /// container has no ttys, as a coLinux instance)
    #[arg(short = 't', long)]
    tty: Option<u32>,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    console(store, a.name.get()?, a.tty, true)?;
    Ok(0)
}
