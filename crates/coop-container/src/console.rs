//! `coop console`: attach the terminal to one of a container's ttys through its monitor.
//!
//! `Ctrl-a q` detaches, `Ctrl-a Ctrl-a` sends a literal Ctrl-a, as with lxc-console.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use crate::proto::{call, Request};
use crate::state::RunState;
use crate::{Error, Result, Store};

const CTRL_A: u8 = 0x01;

/// Why the console session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Detached,
    ContainerStopped,
}

/// Restores the terminal however the session ends.
pub struct RawMode {
    fd: std::os::fd::RawFd,
    saved: Termios,
}

impl RawMode {
    /// Put the terminal on `fd` in raw mode, or `None` when it is not a terminal.
    pub fn enter(fd: &impl AsFd) -> Option<RawMode> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.as_fd().as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the fd is the terminal we changed; it stays open for the process's life.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let _ = tcsetattr(fd, SetArg::TCSANOW, &self.saved);
    }
}

/// The terminal size of `fd`, if it is a terminal.
pub fn window_size(fd: &impl AsRawFd) -> Option<(u16, u16)> {
    let mut ws = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize into the pointer we own.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

pub fn console(store: &Store, name: &str, tty: Option<u32>, banner: bool) -> Result<Ended> {
    store.require(name)?;
    let st = RunState::load(store, name)?.ok_or_else(|| Error::NotRunning(name.into()))?;
    let tty = tty.unwrap_or(if st.ttys.len() > 1 { 1 } else { 0 });
    let stdin = std::io::stdin();
    let (rows, cols) = window_size(&stdin).unwrap_or((0, 0));
    let (reply, mut sock) = call(
        &store.socket_path(name),
        &Request::Console { tty, rows, cols },
    )?;
    if !reply.ok {
        return Err(Error::Msg(
            reply.error.unwrap_or_else(|| "console refused".into()),
        ));
    }
    let mut stdout = std::io::stdout();
    if banner {
        let what = if tty == 0 {
            "console".to_string()
        } else {
            format!("tty{tty}")
        };
        let _ = write!(
            stdout,
            "\r\nConnected to {what} of {name}\r\nType <Ctrl a q> to exit the console, <Ctrl a Ctrl a> to enter Ctrl a itself\r\n\r\n"
        );
        let _ = stdout.flush();
    }
    let _raw = RawMode::enter(&stdin);
    let mut buf = [0u8; 8192];
    let mut pending_escape = false;
    let mut stdin_open = true;
    loop {
        let (in_ready, sock_ready) = {
            let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("poll")(e)),
            }
            let r = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (stdin_open && r(&fds[1]), r(&fds[0]))
        };
        if sock_ready {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => return Ok(Ended::ContainerStopped),
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]);
                    let _ = stdout.flush();
                }
            }
        }
        if in_ready {
            let n = match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => {
                    // Input ended (a script's pipe): keep showing output until the
                    // container ends or the other side closes.
                    stdin_open = false;
                    continue;
                }
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if pending_escape {
                    pending_escape = false;
                    match b {
                        b'q' => {
                            let _ = sock.write_all(&out);
                            return Ok(Ended::Detached);
                        }
                        CTRL_A => out.push(CTRL_A),
                        other => {
                            out.push(CTRL_A);
                            out.push(other);
                        }
                    }
                } else if b == CTRL_A {
                    pending_escape = true;
                } else {
                    out.push(b);
                }
            }
            if sock.write_all(&out).is_err() {
                return Ok(Ended::ContainerStopped);
            }
        }
    }
}
