use std::io::IsTerminal;

use coop_container::attach::{attach, AttachOptions};
use coop_container::Store;

use super::NameArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    name: NameArg,
    /// Set VAR=VALUE in the command's environment (repeatable).
    #[arg(long = "set-var", short = 'v', value_name = "VAR=VALUE")]
    env: Vec<String>,
    /// Never allocate a pty, even when stdin is a terminal.
    #[arg(long)]
    no_pty: bool,
    /// The command and its arguments (after --); the root shell when empty.
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let env = a
        .env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--set-var {kv:?}: expected VAR=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let code = attach(
        store,
        a.name.get()?,
        &AttachOptions {
            command: a.command,
            env,
            pty: !a.no_pty && std::io::stdin().is_terminal(),
        },
    )?;
    Ok(code.clamp(0, 255) as u8)
}
