//! `coop destroy`: remove a container's directory (and stop it first with `-f`).

use std::time::Duration;

use crate::state::RunState;
use crate::stop::{stop, StopOptions};
use crate::{Error, Result, Store};

pub fn destroy(store: &Store, name: &str, force: bool) -> Result<()> {
    store.require(name)?;
    if RunState::load(store, name)?.is_some() {
        if !force {
            return Err(Error::Msg(format!(
                "container {name} is running: stop it first (`coop stop -n {name}`) or use `coop destroy -f -n {name}`"
            )));
        }
        stop(
            store,
            name,
            &StopOptions {
                timeout: Duration::ZERO,
                kill: true,
            },
        )?;
    }
    let _lock = store.lock(name)?;
    let dir = store.dir(name);
    // Move the directory aside first: a destroy cut short never leaves a half-container
    // that `ls` would list.
    let trash = store
        .lib
        .join(format!(".{name}.destroying-{}", std::process::id()));
    std::fs::rename(&dir, &trash).map_err(Error::io(format!("cannot remove {}", dir.display())))?;
    std::fs::remove_dir_all(&trash)
        .map_err(Error::io(format!("cannot remove {}", trash.display())))?;
    let _ = std::fs::remove_file(store.run.join(format!(".{name}.lock")));
    if store.net_dir().exists() {
        store.net()?.release_leases(name)?;
    }
    Ok(())
}
