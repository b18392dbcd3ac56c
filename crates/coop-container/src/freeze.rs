//! `coop freeze` / `coop unfreeze`: suspend every process of a container in its cgroup.

use coop_cgroups::{Cgroup, Hierarchy};

use crate::state::RunState;
use crate::{Error, Result, Store};

fn cgroup_of(store: &Store, name: &str) -> Result<Cgroup> {
    store.require(name)?;
    let st = RunState::load(store, name)?.ok_or_else(|| Error::NotRunning(name.into()))?;
    Ok(Cgroup::new(&Hierarchy::detect()?, &st.cgroup))
}

pub fn freeze(store: &Store, name: &str) -> Result<()> {
    Ok(cgroup_of(store, name)?.freeze()?)
}

pub fn unfreeze(store: &Store, name: &str) -> Result<()> {
    Ok(cgroup_of(store, name)?.thaw()?)
}
