//! The syscall edge: thin wrappers over libc, each unsafe block at one call.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::Error;

/// Signals the monitor acts on; they arrive through a signalfd, so they stay blocked.
/// `coop __monitor` blocks them before exec'ing us, so none is lost in between.
const SIGNALS: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t we own; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

pub fn signal_fd() -> Result<OwnedFd, Error> {
    let set = sigset();
    // SAFETY: blocks signals of this single-threaded process; `set` is initialised.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } < 0 {
        return Err(sys_err("sigprocmask"));
    }
    // SAFETY: creates a new descriptor from an initialised set; -1 asks for a new one.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(sys_err("signalfd"));
    }
    // SAFETY: signalfd just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Drain the signalfd; the signal numbers read.
pub fn read_signals(fd: &OwnedFd) -> Vec<i32> {
    let mut out = Vec::new();
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        // SAFETY: reads at most `size` bytes into `info`, which is that large.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n != size as isize {
            return out;
        }
        out.push(info.ssi_signo as i32);
    }
}

fn sys_err(what: &'static str) -> Error {
    Error::Sys {
        what,
        err: io::Error::last_os_error(),
    }
}

pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of its stated length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: writes at most buf.len() bytes into `buf`.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: reads at most data.len() bytes from `data`.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
        } else if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            return;
        }
    }
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a plain positive pid and a signal number.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// One reaped child: its pid and wait status; `None` when none is waiting.
pub fn wait_any() -> Option<(i32, i32)> {
    let mut status = 0;
    // SAFETY: waitpid writes the status into our local.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// How init ended, in the words the full monitor uses ("exited with status 0",
/// "killed by SIGKILL").
pub fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        match signal_name(sig) {
            Some(n) => format!("killed by {n}"),
            None => format!("killed by signal {sig}"),
        }
    } else {
        format!("ended with wait status {status:#x}")
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(sig - 1)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
}

pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which outlives the call.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
    }
}

pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

fn set_fd_flags(fd: RawFd, cloexec: bool) -> io::Result<()> {
    let flags = if cloexec { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD only changes the descriptor's close-on-exec flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    set_fd_flags(fd, true)
}

pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    set_fd_flags(fd, false)
}

pub fn dontneed(addr: usize, len: usize) {
    // SAFETY: only called on clean pages of private read-only file mappings (see shed.rs):
    // dropping them leaves the mapping's contents unchanged, they fault back in from the
    // page cache.
    unsafe {
        libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_like_the_full_monitor() {
        assert_eq!(describe(3 << 8), "exited with status 3");
        assert_eq!(describe(libc::SIGKILL), "killed by SIGKILL");
        assert_eq!(describe(libc::SIGUSR1), "killed by SIGUSR1");
        assert_eq!(describe(40), "killed by signal 40");
    }
}
