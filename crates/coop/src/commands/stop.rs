use std::time::Duration;

use coop_container::stop::{stop, StopOptions};
use coop_container::Store;

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// Seconds to wait for a clean halt before killing.
    #[arg(short = 't', long, default_value_t = 60)]
    timeout: u64,
    /// Kill at once instead of asking init to halt.
    #[arg(short = 'k', long)]
    kill: bool,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let name = a.name.get()?;
    let how = stop(
        store,
        name,
        &StopOptions {
            timeout: Duration::from_secs(a.timeout),
            kill: a.kill,
        },
    )?;
    tracing::info!("{name}: init {how}");
    Ok(0)
}
