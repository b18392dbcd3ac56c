//! The command line `coop __monitor` execs us with:
//!
//! `coop-monitor __monitor --init PID --coop EXE --lib DIR --run DIR --listen FD
//!  [--log FD] [--tty MASTER,SLAVE]... [--thaw FILE=VALUE] NAME`
//!
//! The descriptors are inherited (close-on-exec cleared by the sender); from here on this
//! process owns them. `__monitor` comes first so that process listings match the full
//! monitor's (`pgrep -f '__monitor.*NAME'`).

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::Error;

pub struct Args {
    pub init: i32,
    pub coop: PathBuf,
    pub lib: PathBuf,
    pub run: PathBuf,
    pub name: String,
    pub listen: Option<OwnedFd>,
    pub log: Option<File>,
    pub ttys: Vec<(OwnedFd, OwnedFd)>,
    /// The freezer file and the value that thaws the container's cgroup.
    pub thaw: Option<(PathBuf, String)>,
}

pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, Error> {
    let usage = |m: String| Error::Usage(m);
    if it.next().as_deref() != Some("__monitor") {
        return Err(usage(
            "started by `coop start` only (first argument __monitor)".into(),
        ));
    }
    let mut init = None;
    let mut coop = None;
    let mut lib = None;
    let mut run = None;
    let mut listen = None;
    let mut log = None;
    let mut ttys = Vec::new();
    let mut thaw = None;
    let mut name = None;
    while let Some(a) = it.next() {
        let mut value = |key: &str| {
            it.next()
                .ok_or_else(|| usage(format!("{key} needs a value")))
        };
        match a.as_str() {
            "--init" => init = Some(number(&value("--init")?, "--init")?),
            "--coop" => coop = Some(PathBuf::from(value("--coop")?)),
            "--lib" => lib = Some(PathBuf::from(value("--lib")?)),
            "--run" => run = Some(PathBuf::from(value("--run")?)),
            "--listen" => listen = Some(take_fd(&value("--listen")?, "--listen")?),
            "--log" => log = Some(File::from(take_fd(&value("--log")?, "--log")?)),
            "--tty" => {
                let v = value("--tty")?;
                let (m, s) = v
                    .split_once(',')
                    .ok_or_else(|| usage(format!("--tty {v:?}: expected MASTER,SLAVE")))?;
                ttys.push((take_fd(m, "--tty")?, take_fd(s, "--tty")?));
            }
            "--thaw" => {
                let v = value("--thaw")?;
                let (f, val) = v
                    .split_once('=')
                    .ok_or_else(|| usage(format!("--thaw {v:?}: expected FILE=VALUE")))?;
                thaw = Some((PathBuf::from(f), val.to_string()));
            }
            s if s.starts_with("--") => return Err(usage(format!("unknown option {s}"))),
            _ if name.is_none() => name = Some(a),
            _ => return Err(usage(format!("unexpected argument {a:?}"))),
        }
    }
    let need = |what: &str| usage(format!("{what} is required"));
    let init = init.ok_or_else(|| need("--init"))?;
    if init <= 0 {
        return Err(usage(format!("--init {init}: not a process id")));
    }
    if ttys.is_empty() {
        return Err(need("--tty"));
    }
    Ok(Args {
        init,
        coop: coop.ok_or_else(|| need("--coop"))?,
        lib: lib.ok_or_else(|| need("--lib"))?,
        run: run.ok_or_else(|| need("--run"))?,
        name: name.ok_or_else(|| need("NAME"))?,
        listen: Some(listen.ok_or_else(|| need("--listen"))?),
        log,
        ttys,
        thaw,
    })
}

fn number(s: &str, key: &str) -> Result<i32, Error> {
    s.parse()
        .map_err(|_| Error::Usage(format!("{key} {s:?}: not a number")))
}

/// Adopt an inherited descriptor, refusing one that is not open or is a standard stream.
fn take_fd(s: &str, key: &str) -> Result<OwnedFd, Error> {
    let fd: RawFd = number(s, key)?;
    if fd <= 2 || !crate::sys::fd_is_open(fd) {
        return Err(Error::Usage(format!(
            "{key} {fd}: not an inherited descriptor"
        )));
    }
    // SAFETY: the descriptor is open (checked above), was handed to us by the process
    // that exec'd us, and nothing else in this process owns it; each number is adopted
    // once because the sender passes distinct descriptors.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> impl Iterator<Item = String> + '_ {
        s.split_whitespace().map(str::to_string)
    }

    #[test]
    fn refuses_missing_and_bad_values() {
        let bad = [
            "",
            "--init 5",
            "__monitor --init x --coop c --lib l --run r --listen 0 --tty 0,1 n",
            "__monitor --init 0 --coop c --lib l --run r n",
            "__monitor --init 5 --coop c --lib l --run r --listen 1 --tty 1,2 n",
            "__monitor --init 5 --bogus",
            "__monitor --init",
        ];
        for b in bad {
            assert!(parse(argv(b)).is_err(), "accepted {b:?}");
        }
    }

    #[test]
    fn adopts_open_descriptors() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (c, d) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::IntoRawFd;
        let (a, b, c, d) = (
            a.into_raw_fd(),
            b.into_raw_fd(),
            c.into_raw_fd(),
            d.into_raw_fd(),
        );
        let line = format!(
            "__monitor --init 7 --coop /x/coop --lib /l --run /r --listen {a} --tty {b},{c} --log {d} --thaw /f=THAWED box"
        );
        let p = parse(argv(&line)).unwrap();
        assert_eq!(p.init, 7);
        assert_eq!(p.name, "box");
        assert_eq!(p.ttys.len(), 1);
        assert_eq!(p.thaw, Some((PathBuf::from("/f"), "THAWED".to_string())));
        assert!(p.log.is_some());
    }
}
