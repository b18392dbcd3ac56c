//! Host side of `coop attach` for coLinux instances: runs a command through the guest
//! agent over the serial-line stream (see [`crate::proto`]).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::proto::{read_frame, Frame, Kind, Request, STDIN_CHUNK, STDIN_WINDOW};
use crate::ColinuxError;

static NEXT_SESSION: AtomicU32 = AtomicU32::new(1);

/// How often [`wait_agent`] pings an agent that has not answered.
pub const PING_INTERVAL: Duration = Duration::from_millis(200);

/// A fresh, non-zero session id (0 is the agent's hello); the pid in the high bits keeps
/// two host processes sharing one agent channel (after a monitor restart) apart.
fn new_session() -> u32 {
    let n = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    match (std::process::id() << 16).wrapping_add(n & 0xffff) {
        0 => 1,
        s => s,
    }
}

/// Runs `req` in the guest. `stdin` is copied to the command on a helper thread (pass
/// `io::empty()` for none); output goes to `stdout`/`stderr`. Returns the exit code.
pub fn attach<R, W>(
    mut reader: R,
    writer: W,
    req: &Request,
    stdin: Box<dyn Read + Send>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<i32, ColinuxError>
where
    R: Read,
    W: Write + Send + 'static,
{
    let session = new_session();
    let mut writer = writer;
    Frame::new(Kind::Request, session, req.encode())
        .write_to(&mut writer)
        .map_err(ColinuxError::Agent)?;
    // The stdin thread may stay blocked in a read after the command exits (a terminal);
    // it is detached and ends with the process or at the next write error.
    let credit = Arc::new(Credit::default());
    let c2 = credit.clone();
    std::thread::spawn(move || copy_stdin(stdin, writer, session, &c2));
    let _finish = Finish(&credit);
    loop {
        let f = read_frame(&mut reader)
            .map_err(ColinuxError::Agent)?
            .ok_or_else(|| {
                ColinuxError::Agent(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "agent channel closed before the command's exit code",
                ))
            })?;
        if f.kind == Kind::Hello {
            // A new agent greets: the one running our command died with it, and no exit
            // code will come. (The caller's wait for the agent saw any earlier hello.)
            return Err(ColinuxError::Agent(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the guest agent restarted while the command ran; its outcome is unknown",
            )));
        }
        if f.session != session {
            tracing::debug!(session = f.session, kind = ?f.kind, "frame of another session");
            continue;
        }
        match f.kind {
            Kind::Stdout => {
                stdout.write_all(&f.payload).map_err(ColinuxError::Agent)?;
                stdout.flush().map_err(ColinuxError::Agent)?;
            }
            Kind::Stderr => {
                stderr.write_all(&f.payload).map_err(ColinuxError::Agent)?;
                stderr.flush().map_err(ColinuxError::Agent)?;
            }
            Kind::StdinAck => {
                if let Some(n) = f.payload_i32() {
                    credit.ack(n as u32 as u64);
                }
            }
            Kind::Error => {
                let msg = String::from_utf8_lossy(&f.payload);
                let _ = writeln!(stderr, "coop-guest-agent: {msg}");
            }
            Kind::Exit => {
                return f.payload_i32().ok_or_else(|| {
                    ColinuxError::Agent(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "exit frame without a code",
                    ))
                })
            }
            _ => {}
        }
    }
}

/// Stdin flow control: bytes sent and acknowledged, shared by the stdin thread and the
/// frame reader.
#[derive(Default)]
struct Credit {
    state: Mutex<(u64, u64, bool)>, // sent, acked, session over
    cv: Condvar,
}

impl Credit {
    fn ack(&self, n: u64) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.1 = g.1.saturating_add(n);
        self.cv.notify_all();
    }

    /// Waits until `n` more bytes fit in the window; false once the session is over.
    fn reserve(&self, n: u64) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !g.2 && g.0.saturating_sub(g.1) + n > STDIN_WINDOW as u64 {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.0 += n;
        !g.2
    }
}

/// Releases a stdin thread waiting for credit when `attach` returns.
struct Finish<'a>(&'a Credit);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let mut g = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        g.2 = true;
        self.0.cv.notify_all();
    }
}

fn copy_stdin(mut stdin: Box<dyn Read + Send>, mut w: impl Write, session: u32, credit: &Credit) {
    let mut buf = vec![0u8; STDIN_CHUNK];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !credit.reserve(n as u64)
                    || Frame::new(Kind::Stdin, session, &buf[..n])
                        .write_to(&mut w)
                        .is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = Frame::new(Kind::StdinEof, session, Vec::new()).write_to(&mut w);
}

/// How long [`attach_over`] waits for a guest agent that does not answer yet (a guest
/// still booting: a Debian guest under UML takes tens of seconds to start it).
pub const AGENT_WAIT: Duration = Duration::from_secs(120);

/// `coop attach` over a stream: runs `argv` with this process's stdin/stdout/stderr. With
/// `pty`, the command gets a terminal of the size of ours (the caller puts our terminal in
/// raw mode, as for a container console).
///
/// It first waits (up to [`AGENT_WAIT`]) until the agent answers a ping: a request sent
/// to a guest whose agent has not opened its line yet would reach it through the tty's
/// cooked mode, mangled, or not at all. Right after `coop start` this is the wait for the
/// guest's boot, ended by the agent's hello rather than a polling interval.
pub fn attach_over(stream: &UnixStream, argv: &[String], pty: bool) -> Result<i32, ColinuxError> {
    wait_agent(stream, AGENT_WAIT)?;
    let mut env = Vec::new();
    if let Ok(t) = std::env::var("TERM") {
        env.push(format!("TERM={t}"));
    }
    let (rows, cols) = if pty { terminal_size() } else { (0, 0) };
    let req = Request {
        argv: argv.to_vec(),
        env,
        pty,
        rows,
        cols,
    };
    let w = stream.try_clone().map_err(ColinuxError::Agent)?;
    attach(
        stream,
        w,
        &req,
        Box::new(io::stdin()),
        &mut io::stdout(),
        &mut io::stderr(),
    )
}

/// Rows and columns of the terminal on stdout, or (0, 0).
fn terminal_size() -> (u16, u16) {
    // SAFETY: winsize is plain data; TIOCGWINSZ only writes into it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 {
            (ws.ws_row, ws.ws_col)
        } else {
            (0, 0)
        }
    }
}

/// Asks the guest to shut down cleanly (`poweroff` through the agent): its init stops the
/// services, unmounts the filesystems and powers off, and the kernel process exits. Returns
/// once the request is sent; the caller waits for the process. The agent dies with the
/// guest, so no exit code comes back.
pub fn poweroff(stream: &UnixStream) -> Result<(), ColinuxError> {
    let req = Request {
        argv: vec!["poweroff".into()],
        env: Vec::new(),
        pty: false,
        rows: 0,
        cols: 0,
    };
    let mut w = stream;
    Frame::new(Kind::Request, new_session(), req.encode())
        .write_to(&mut w)
        .map_err(ColinuxError::Agent)
}

/// Output of [`run_captured`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `argv` with the given stdin bytes and collects the output.
pub fn run_captured(
    stream: &UnixStream,
    argv: &[&str],
    stdin: &[u8],
    pty: bool,
) -> Result<Captured, ColinuxError> {
    let req = Request {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        pty,
        rows: 0,
        cols: 0,
    };
    let w = stream.try_clone().map_err(ColinuxError::Agent)?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = attach(
        stream,
        w,
        &req,
        Box::new(io::Cursor::new(stdin.to_vec())),
        &mut out,
        &mut err,
    )?;
    Ok(Captured {
        code,
        stdout: out,
        stderr: err,
    })
}

/// Pings the agent until it answers or `timeout` passes; returns the agent's version.
/// The stream's read timeout is changed while waiting and cleared afterwards.
///
/// A ping sent before the agent made its line raw is dropped by the agent; the hello it
/// sends once ready makes this ping again at once, so the wait ends within a round trip
/// of the agent starting. Pings also repeat every [`PING_INTERVAL`] in case the hello
/// passed before this caller was connected.
pub fn wait_agent(stream: &UnixStream, timeout: Duration) -> Result<String, ColinuxError> {
    let session = new_session();
    let deadline = Instant::now() + timeout;
    let mut w = stream.try_clone().map_err(ColinuxError::Agent)?;
    let mut r = stream;
    let res = loop {
        let now = Instant::now();
        if now >= deadline {
            break Err(ColinuxError::AgentTimeout(timeout));
        }
        Frame::new(Kind::Ping, session, Vec::new())
            .write_to(&mut w)
            .map_err(ColinuxError::Agent)?;
        let wait = (deadline - now).min(PING_INTERVAL);
        stream
            .set_read_timeout(Some(wait))
            .map_err(ColinuxError::Agent)?;
        let until = Instant::now() + wait;
        let mut got = None;
        while Instant::now() < until {
            match read_frame(&mut r) {
                Ok(Some(f)) if f.kind == Kind::Pong && f.session == session => {
                    got = Some(String::from_utf8_lossy(&f.payload).into_owned());
                    break;
                }
                // The agent (re)started: earlier pings were dropped, ask again now.
                Ok(Some(f)) if f.kind == Kind::Hello => break,
                Ok(Some(_)) => {}
                Ok(None) => {
                    let _ = stream.set_read_timeout(None);
                    return Err(ColinuxError::Agent(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "agent channel closed",
                    )));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                // Garbage on the line before the agent runs (e.g. a half frame): go on.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
                Err(e) => {
                    let _ = stream.set_read_timeout(None);
                    return Err(ColinuxError::Agent(e));
                }
            }
        }
        if let Some(v) = got {
            break Ok(v);
        }
    };
    stream.set_read_timeout(None).map_err(ColinuxError::Agent)?;
    res
}
