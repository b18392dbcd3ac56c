//! `coop-full`: the same program as `coop`, linked against glibc, for long-running work.
//!
//! The `coop` that `scripts/build-static.sh` builds is linked against musl: glibc's
//! start-up probes the CPU with `cpuid`, which traps to the hypervisor on a virtual
//! machine and costs ~0.5 ms of every `coop start` and `coop attach`. musl's allocator
//! and string functions are slower, though, and a SPICE server or viewer runs for hours
//! encoding and decoding images (server CPU ~1.5× Xspice's with musl against ~1.2× with
//! glibc in `bench/spice-scenes.sh`). So the musl `coop` hands `spice` and `view`, and
//! the monitors of GUI containers and coLinux instances, to `coop-full` beside it when
//! it is there; one extra exec is nothing for a process that lives that long. Every
//! other build (`cargo build`, the glibc fallback) does all the work itself.

use std::path::PathBuf;

/// Name of the glibc build installed beside the musl `coop`.
const FULL: &str = "coop-full";

/// The glibc build beside this one, when this one is the musl build.
fn full_build() -> Option<PathBuf> {
    if !cfg!(target_env = "musl") {
        return None;
    }
    let full = std::env::current_exe().ok()?.with_file_name(FULL);
    full.is_file().then_some(full)
}

/// The binary that should run a monitor meant to live as long as its container.
pub fn long_running_exe() -> std::io::Result<PathBuf> {
    match full_build() {
        Some(full) => Ok(full),
        None => std::env::current_exe(),
    }
}

/// Replaces this process with `coop-full` when the command is `spice` or `view` (see the
/// module doc); returns when it is not, or when that exec fails (then this build runs
/// the command itself, only slower).
pub fn take_over_long_work() {
    use std::os::unix::process::CommandExt;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if !matches!(first_command(&args), Some("spice" | "view")) {
        return;
    }
    if let Some(full) = full_build() {
        let e = std::process::Command::new(&full)
            .arg0("coop")
            .args(&args)
            .exec();
        eprintln!(
            "coop: cannot run {}: {e}; going on without it",
            full.display()
        );
    }
}

/// The subcommand: the first argument that is neither an option nor `--root`'s value.
fn first_command(args: &[std::ffi::OsString]) -> Option<&str> {
    let mut it = args.iter().map(|a| a.to_str().unwrap_or(""));
    while let Some(a) = it.next() {
        if a == "--root" {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::first_command;

    fn first(args: &[&str]) -> Option<String> {
        let v: Vec<std::ffi::OsString> = args.iter().map(|a| a.into()).collect();
        first_command(&v).map(str::to_string)
    }

    #[test]
    fn finds_the_subcommand_past_global_options() {
        assert_eq!(first(&["spice", "serve"]).as_deref(), Some("spice"));
        assert_eq!(
            first(&["--root", "/tmp/x", "view", "h"]).as_deref(),
            Some("view")
        );
        assert_eq!(
            first(&["--root=/tmp/x", "start", "-n", "a"]).as_deref(),
            Some("start")
        );
        assert_eq!(first(&["--version"]), None);
    }
}
