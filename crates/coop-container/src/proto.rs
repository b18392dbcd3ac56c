//! The line protocol between the CLI and a container's monitor.
//!
//! One JSON request line per connection; the monitor answers with one JSON line. A
//! console request then turns the connection into a raw byte pipe to the tty.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Attach to tty N (0 = /dev/console); `rows`/`cols` size the pty.
    Console { tty: u32, rows: u16, cols: u16 },
    /// Connect to a coLinux guest's agent channel (one client at a time).
    Agent,
    /// Ask init to halt with `signal` (0: send nothing, only wait), SIGKILL after `timeout_ms`; `kill` skips the ask.
    Stop {
        signal: i32,
        timeout_ms: u64,
        kill: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// For stop: how init ended ("exited 0", "killed by SIGKILL").
    #[serde(default)]
    pub exit: Option<String>,
}

/// Send one request and read the first reply line; the stream stays usable afterwards.
pub fn call(socket: &Path, req: &Request) -> Result<(Reply, UnixStream)> {
    let mut s = UnixStream::connect(socket).map_err(Error::io(format!(
        "cannot reach the container monitor at {}",
        socket.display()
    )))?;
    let mut line = serde_json::to_string(req).expect("request serializes");
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(Error::io("cannot talk to the container monitor"))?;
    let reply = read_line(&s)?;
    let reply: Reply = serde_json::from_str(&reply)
        .map_err(|e| Error::Msg(format!("bad reply from the container monitor: {e}")))?;
    Ok((reply, s))
}

/// Read one `\n`-terminated line byte by byte, so nothing after it is swallowed by a buffer.
pub fn read_line(s: &UnixStream) -> Result<String> {
    let mut r = BufReader::with_capacity(1, s);
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(Error::io("cannot read from the container monitor"))?;
    if line.is_empty() {
        return Err(Error::Msg(
            "the container monitor closed the connection".into(),
        ));
    }
    Ok(line)
}
