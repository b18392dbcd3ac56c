//! Where containers live on disk, and the per-container lock that serializes commands.
//!
//! The layout mirrors LXC's so an LXC user finds things where they expect them:
//! `<lib>/NAME/config`, `<lib>/NAME/rootfs`, runtime files under `<run>/NAME/`.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct Store {
    pub lib: PathBuf,
    pub run: PathBuf,
    pub cache: PathBuf,
}

impl Store {
    /// `root` = `--root DIR`/`COOP_ROOT`: moves both the container directories and the
    /// runtime state, so tests can run in a temporary directory. The template cache stays
    /// shared (`COOP_CACHE` moves it) so that tests do not download a distribution each.
    pub fn new(root: Option<&Path>) -> Store {
        let cache = std::env::var_os("COOP_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/coop"));
        match root {
            Some(r) => Store {
                lib: r.to_path_buf(),
                run: r.join(".run"),
                cache,
            },
            None => Store {
                lib: PathBuf::from("/var/lib/coop"),
                run: PathBuf::from("/run/coop"),
                cache,
            },
        }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.lib.join(name)
    }

    pub fn config_path(&self, name: &str) -> PathBuf {
        self.dir(name).join("config")
    }

    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.run.join(name)
    }

    pub fn socket_path(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("monitor.sock")
    }

    pub fn state_path(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("state.json")
    }

    pub fn console_log(&self, name: &str) -> PathBuf {
        self.dir(name).join("console.log")
    }

    /// The cgroup path of a container. A store moved with `--root` gets its own prefix
    /// so that two stores (say, parallel tests) never share a cgroup.
    pub fn cgroup_name(&self, name: &str) -> String {
        if self.lib == Path::new("/var/lib/coop") {
            format!("coop/{name}")
        } else {
            let mut h: u32 = 2166136261;
            for b in self.lib.as_os_str().as_encoded_bytes() {
                h = (h ^ u32::from(*b)).wrapping_mul(16777619);
            }
            format!("coop/{name}-{h:08x}")
        }
    }

    pub fn net_dir(&self) -> PathBuf {
        self.lib.join(".net")
    }

    /// The networking state of this store. A store moved with `--root` owns its own
    /// nftables table, so it never rewrites the rules of the system store.
    pub fn net(&self) -> Result<coop_net::NetStore> {
        let table = if self.lib == Path::new("/var/lib/coop") {
            "coop".to_string()
        } else {
            format!("coop_{}", &self.cgroup_name("x")[7..])
        };
        Ok(coop_net::NetStore::open_with_table(
            &self.net_dir(),
            &table,
        )?)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.config_path(name).is_file()
    }

    /// Fails with [`Error::NotFound`] unless NAME is a container.
    pub fn require(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        if self.exists(name) {
            Ok(())
        } else {
            Err(Error::NotFound(name.to_string()))
        }
    }

    /// All container names, sorted. Directories being created (`.NAME.creating-*`) and
    /// coop's own dot-directories are not containers.
    pub fn list(&self) -> Result<Vec<String>> {
        let rd = match fs::read_dir(&self.lib) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("cannot list {}", self.lib.display()))(e)),
        };
        let mut names: Vec<String> = rd
            .filter_map(|d| d.ok())
            .filter_map(|d| d.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && self.exists(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Take the per-container lock: two commands on one container run one after the other.
    pub fn lock(&self, name: &str) -> Result<Flock<File>> {
        fs::create_dir_all(&self.run)
            .map_err(Error::io(format!("cannot create {}", self.run.display())))?;
        let path = self.run.join(format!(".{name}.lock"));
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(format!("cannot open lock {}", path.display())))?;
        let _ = f.as_fd();
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::sys(format!("cannot lock {}", path.display()))(e))
    }
}

/// Names become directory names, host names and cgroup names: keep them boring.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return bad("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return bad("use only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("demo").is_ok());
        assert!(validate_name("web-1.test_x").is_ok());
        for bad in ["", "-x", ".hidden", "a/b", "a b", "x;rm", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn list_skips_partial_and_hidden() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(Some(d.path()));
        fs::create_dir_all(d.path().join("a")).unwrap();
        fs::write(d.path().join("a/config"), "").unwrap();
        fs::create_dir_all(d.path().join(".b.creating-1")).unwrap();
        fs::write(d.path().join(".b.creating-1/config"), "").unwrap();
        fs::create_dir_all(d.path().join("nocfg")).unwrap();
        assert_eq!(s.list().unwrap(), vec!["a"]);
    }
}
