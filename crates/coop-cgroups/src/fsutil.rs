//! File helpers for cgroupfs: bounded reads, single-write updates, errors naming the file.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::CgroupError;

/// cgroup interface files are small; cgroup.procs of a huge cgroup is the largest we read.
const MAX_READ: u64 = 16 << 20;

pub(crate) fn read_small(path: &Path) -> Result<String, CgroupError> {
    let err = |source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut s = String::new();
    f.take(MAX_READ).read_to_string(&mut s).map_err(err)?;
    Ok(s)
}

/// Read a file that may legitimately be absent (older kernel, controller not enabled).
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match read_small(path) {
        Ok(s) => Ok(Some(s)),
        Err(CgroupError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One `write(2)` of the whole value: the kernel parses each write as one command. Never
/// creates the file — on cgroupfs the kernel provides it, and in test trees the test does.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    tracing::debug!(path = %path.display(), value, "cgroup write");
    let err = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

pub(crate) fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Mkdir {
            path: path.to_path_buf(),
            source,
        }),
    }
}
