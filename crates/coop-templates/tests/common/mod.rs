//! Boots a template's output under LXC (Debian's `lxc` package), the reference engine, to
//! check that its config lines and init setup really work. Skipped where LXC is missing.

use coop_templates::Outcome;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A container defined in a private lxcpath; stopped hard on drop, also when a test fails.
pub struct LxcGuard {
    pub lxcpath: PathBuf,
    pub name: String,
}

pub fn lxc_available() -> bool {
    nix::unistd::geteuid().is_root()
        && Command::new("lxc-start")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

impl LxcGuard {
    /// Writes the config (template lines plus rootfs, no network) and starts the container.
    /// `lxc.pty.max` stands for what coop's engine does itself: a private devpts instance with
    /// /dev/ptmx (systemd's PrivateDevices= units, e.g. resolved, fail without one).
    pub fn start(
        lxcpath: &Path,
        name: &str,
        rootfs: &Path,
        lines: &[(String, String)],
    ) -> LxcGuard {
        let dir = lxcpath.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = format!(
            "lxc.rootfs.path = dir:{}\nlxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n\
             lxc.environment = container=lxc\nlxc.pty.max = 16\n",
            rootfs.display()
        );
        for (k, v) in lines {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        std::fs::write(dir.join("config"), conf).unwrap();
        let g = LxcGuard {
            lxcpath: lxcpath.to_path_buf(),
            name: name.to_string(),
        };
        let out = g.lxc(
            "lxc-start",
            &["-d", "-o", dir.join("log").to_str().unwrap(), "-l", "INFO"],
        );
        assert!(
            out.status.success(),
            "lxc-start: {out:?}\n{}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        g
    }

    pub fn lxc(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(tool)
            .args(["-P", self.lxcpath.to_str().unwrap(), "-n", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command in the container and returns its stdout.
    pub fn attach(&self, cmd: &[&str]) -> String {
        let mut args = vec!["--"];
        args.extend_from_slice(cmd);
        let out = self.lxc("lxc-attach", &args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls until `check` passes on the output of `cmd`, up to `limit`.
    pub fn wait_for(&self, cmd: &[&str], limit: Duration, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let out = self.attach(cmd);
            if check(&out) || start.elapsed() > limit {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Clean stop through the halt signal; returns how long it took.
    pub fn stop(&self) -> Duration {
        let start = Instant::now();
        let out = self.lxc("lxc-stop", &["-t", "20"]);
        assert!(out.status.success(), "lxc-stop: {out:?}");
        start.elapsed()
    }
}

impl Drop for LxcGuard {
    fn drop(&mut self) {
        let _ = self.lxc("lxc-stop", &["-k"]);
    }
}

/// The value of config line `key` in a template's outcome.
pub fn cfg<'a>(out: &'a Outcome, key: &str) -> Option<&'a str> {
    out.config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
