//! coop-monitor: the long-lived half of a container's monitor.
//!
//! `coop __monitor` (the full coop binary) builds the container — cgroup, ptys, network,
//! init — and then execs this small program in its own place, handing over the
//! descriptors it needs. The pid does not change, so it stays init's parent and the pid
//! in the state file stays true. From then on it relays the console ptys and logs tty 0,
//! answers the CLI's socket (console, stop), and reaps init. When init is gone it execs
//! the full coop binary once more (`coop __monitor --teardown`), which removes the
//! cgroup, the network and the runtime files and answers the pending stops.
//!
//! Why a separate program: a monitor lives as long as its container. The full binary
//! maps ~11 MB and its relocated data alone is ~0.5 MiB of private memory; this one links
//! std and libc only and hands back its startup pages whenever it goes idle, so it stays
//! well under 1 MiB resident. For the same reason it logs with `eprintln!` to its stderr
//! (the run directory's monitor.log) instead of carrying a tracing subscriber.

mod args;
mod proto;
mod shed;
mod sys;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use args::Args;
use proto::Request;

/// How long a console client may block the relay before it is dropped.
const CLIENT_IO_TIMEOUT: Duration = Duration::from_millis(200);
/// Quiet time after which the monitor hands its touched pages back (see [`shed`]):
/// short, since a shed costs well under a millisecond and an idle monitor may sit for
/// days; a burst of console traffic pays a few page faults on the next one.
const IDLE_SHED_MS: i32 = 250;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("coop-monitor: {0}")]
    Usage(String),
    #[error("coop-monitor: {what}: {err}")]
    Sys {
        what: &'static str,
        err: std::io::Error,
    },
}

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let sigfd = match sys::signal_fd() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let mut mon = Monitor::new(args, sigfd);
    // Init may have ended while the full monitor handed over.
    mon.reap();
    mon.run();
    mon.teardown()
}

struct Client {
    stream: UnixStream,
    tty: usize,
}

struct Monitor {
    args: Args,
    listener: Option<UnixListener>,
    masters: Vec<OwnedFd>,
    /// Kept open so reading a master never fails with EIO between two gettys.
    slaves: Vec<OwnedFd>,
    log: Option<File>,
    sigfd: OwnedFd,
    clients: Vec<Client>,
    stop_waiters: Vec<UnixStream>,
    stop_deadline: Option<Instant>,
    exit: Option<String>,
    /// Something ran since the last shed; shed again once quiet.
    busy: bool,
}

impl Monitor {
    fn new(mut args: Args, sigfd: OwnedFd) -> Monitor {
        let (masters, slaves) = std::mem::take(&mut args.ttys).into_iter().unzip();
        Monitor {
            listener: args.listen.take().map(UnixListener::from),
            log: args.log.take(),
            args,
            masters,
            slaves,
            sigfd,
            clients: Vec::new(),
            stop_waiters: Vec::new(),
            stop_deadline: None,
            exit: None,
            busy: true,
        }
    }

    fn run(&mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        while self.exit.is_none() {
            let mut timeout = if self.busy { IDLE_SHED_MS } else { -1 };
            if let Some(d) = self.stop_deadline {
                let left = d.saturating_duration_since(Instant::now()).as_millis();
                let left = left.min(60_000) as i32;
                timeout = if timeout < 0 { left } else { timeout.min(left) };
            }
            let Some(listener) = &self.listener else {
                return;
            };
            let mut fds = Vec::with_capacity(2 + self.masters.len() + self.clients.len());
            fds.push(sys::pollfd(self.sigfd.as_raw_fd()));
            fds.push(sys::pollfd(listener.as_raw_fd()));
            fds.extend(self.masters.iter().map(|m| sys::pollfd(m.as_raw_fd())));
            fds.extend(
                self.clients
                    .iter()
                    .map(|c| sys::pollfd(c.stream.as_raw_fd())),
            );
            let n = match sys::poll(&mut fds, timeout) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("coop-monitor: poll: {e}");
                    self.kill_now();
                    break;
                }
            };
            if n == 0 && self.busy {
                shed::shed();
                self.busy = false;
            } else if n > 0 {
                self.busy = true;
            }
            let ready = |i: usize| fds[i].revents != 0;
            let nm = self.masters.len();
            let master_ready: Vec<usize> = (0..nm).filter(|&i| ready(2 + i)).collect();
            let client_ready: Vec<usize> = (0..self.clients.len())
                .filter(|&i| ready(2 + nm + i))
                .collect();
            if ready(0) {
                self.on_signal();
            }
            if ready(1) {
                self.on_accept();
            }
            // Clients before masters: relaying master output may drop clients. Highest
            // index first so removals do not shift the ones still to visit.
            for i in client_ready.into_iter().rev() {
                self.on_client(i, &mut buf);
            }
            for i in master_ready {
                self.on_master(i, &mut buf);
            }
            if let Some(d) = self.stop_deadline {
                if Instant::now() >= d {
                    eprintln!("coop-monitor: halt timed out; killing the container");
                    self.stop_deadline = None;
                    self.kill_now();
                }
            }
        }
    }

    /// SIGKILL init; the kernel then kills everything else in its PID namespace. A frozen
    /// container acts on it only once thawed.
    fn kill_now(&self) {
        if let Some((path, value)) = &self.args.thaw {
            let _ = std::fs::write(path, value);
        }
        sys::kill(self.args.init, libc::SIGKILL);
    }

    fn on_signal(&mut self) {
        let mut terminate = false;
        for sig in sys::read_signals(&self.sigfd) {
            if sig != libc::SIGCHLD {
                terminate = true;
            }
        }
        self.reap();
        if terminate && self.exit.is_none() {
            eprintln!("coop-monitor: asked to end: killing the container");
            self.kill_now();
        }
    }

    fn reap(&mut self) {
        while let Some((pid, status)) = sys::wait_any() {
            if pid == self.args.init {
                let d = sys::describe(status);
                eprintln!("coop-monitor: init {d}");
                self.exit = Some(d);
            }
        }
    }

    fn on_accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let _ = sys::set_cloexec(stream.as_raw_fd());
        // A client gets a second to say what it wants; a silent one is dropped.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let Some(req) = proto::read_line(&stream).and_then(|l| proto::parse_request(&l)) else {
            return;
        };
        let _ = stream.set_read_timeout(None);
        match req {
            Request::Console { tty, rows, cols } => {
                let i = tty as usize;
                if i >= self.masters.len() {
                    let msg = format!(
                        "container {} has no tty {tty} (ttys 0..={}; lxc.tty.max)",
                        self.args.name,
                        self.masters.len().saturating_sub(1)
                    );
                    proto::reply(&stream, false, Some(&msg));
                    return;
                }
                if rows > 0 && cols > 0 {
                    sys::set_winsize(self.masters[i].as_raw_fd(), rows, cols);
                }
                proto::reply(&stream, true, None);
                let _ = stream.set_write_timeout(Some(CLIENT_IO_TIMEOUT));
                self.clients.push(Client { stream, tty: i });
            }
            Request::Agent => {
                let msg = format!("{} is not a coLinux instance", self.args.name);
                proto::reply(&stream, false, Some(&msg));
            }
            Request::Stop {
                signal,
                timeout_ms,
                kill,
            } => {
                if kill {
                    self.kill_now();
                } else {
                    if signal != 0 {
                        sys::kill(self.args.init, signal);
                    }
                    let d = Instant::now() + Duration::from_millis(timeout_ms);
                    self.stop_deadline = Some(self.stop_deadline.map_or(d, |o| o.min(d)));
                }
                self.stop_waiters.push(stream);
            }
        }
    }

    fn on_master(&mut self, i: usize, buf: &mut [u8]) {
        let n = match sys::read(self.masters[i].as_raw_fd(), buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let data = &buf[..n];
        if i == 0 {
            if let Some(log) = &mut self.log {
                let _ = log.write_all(data);
            }
        }
        self.clients.retain_mut(|c| {
            if c.tty != i {
                return true;
            }
            // A client that cannot keep up is dropped rather than stalling the container.
            c.stream.write_all(data).is_ok()
        });
    }

    fn on_client(&mut self, i: usize, buf: &mut [u8]) {
        let c = &mut self.clients[i];
        match c.stream.read(buf) {
            Ok(n) if n > 0 => sys::write_all(self.masters[c.tty].as_raw_fd(), &buf[..n]),
            _ => {
                self.clients.remove(i);
            }
        }
    }

    /// Init is gone: exec the full coop binary to remove what start built; it answers the
    /// pending stops. Returns only when that exec failed.
    fn teardown(mut self) -> ExitCode {
        let exit = self.exit.take().unwrap_or_else(|| "monitor stopped".into());
        // Nothing but the stop waiters may reach the teardown process.
        self.listener = None;
        self.masters.clear();
        self.slaves.clear();
        self.clients.clear();
        self.log = None;
        let a = &self.args;
        let mut cmd = std::process::Command::new(&a.coop);
        cmd.args(["__monitor", "--lib"])
            .arg(&a.lib)
            .arg("--run")
            .arg(&a.run)
            .arg("--teardown")
            .arg(&exit);
        for w in &self.stop_waiters {
            if sys::clear_cloexec(w.as_raw_fd()).is_ok() {
                cmd.arg("--waiter").arg(w.as_raw_fd().to_string());
            }
        }
        cmd.arg(&a.name);
        // std's exec resets the signal mask, so the teardown does not inherit our blocked
        // signals.
        let err = cmd.exec();
        eprintln!(
            "coop-monitor: cannot run {} for the teardown: {err}; the cgroup and network of {} stay",
            a.coop.display(),
            a.name
        );
        let run_dir = a.run.join(&a.name);
        let _ = std::fs::remove_file(run_dir.join("monitor.sock"));
        let _ = std::fs::remove_file(run_dir.join("state.json"));
        let line = proto::final_reply(&exit);
        for mut w in self.stop_waiters.drain(..) {
            let _ = w.write_all(line.as_bytes());
        }
        ExitCode::FAILURE
    }
}
