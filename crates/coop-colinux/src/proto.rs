//! The framed protocol spoken between the host and `coop-guest-agent` over a UML serial
//! line (`ssl0=fd:3` on the host, `/dev/ttyS0` in the guest).
//!
//! A serial line is a byte pipe with no message boundaries that may hold stale bytes from
//! an earlier, aborted session, so every frame starts with a two-byte magic the reader
//! resynchronises on, and carries a session id so that late output of an abandoned
//! session is never taken for the current one.
//!
//! Frame: `C0 0B` · type `u8` · session `u32 LE` · length `u32 LE` · payload.

use std::io::{self, Read, Write};

/// The two bytes every frame starts with.
pub const MAGIC: [u8; 2] = [0xC0, 0x0B];
/// Largest payload accepted; bigger lengths are treated as corruption.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Size of output data frames the agent writes.
pub const CHUNK: usize = 16 * 1024;
/// Size of the stdin frames the host writes.
pub const STDIN_CHUNK: usize = 1024;
/// Most stdin bytes the host sends before the agent acknowledges them. UML's serial line
/// stops taking input for good once the guest tty throttles it (its 4 KiB buffer fills),
/// so the host must never have more in flight than the buffer holds.
pub const STDIN_WINDOW: usize = 2048;
/// Most argv/env entries a request may carry.
pub const MAX_STRINGS: usize = 4096;

/// Frame types. Host→guest below 0x80, guest→host from 0x80.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Start a command: payload is a [`Request`].
    Request = 0x01,
    /// Bytes for the command's stdin.
    Stdin = 0x02,
    /// The host's stdin ended.
    StdinEof = 0x03,
    /// New pty size: rows `u16 LE`, cols `u16 LE`.
    Resize = 0x04,
    /// Send a signal (`i32 LE`) to the command.
    Signal = 0x05,
    /// Liveness probe; the agent answers [`Kind::Pong`] with the same session id.
    Ping = 0x06,
    /// Bytes the command wrote to stdout (or to the pty).
    Stdout = 0x81,
    /// Bytes the command wrote to stderr.
    Stderr = 0x82,
    /// The command ended: exit code `i32 LE` (128+signal when killed).
    Exit = 0x83,
    /// The agent could not run the command: UTF-8 message; an `Exit` follows.
    Error = 0x84,
    /// The agent started (session 0); payload is its version string.
    Hello = 0x85,
    /// Answer to [`Kind::Ping`]; payload is the agent's version string.
    Pong = 0x86,
    /// The agent passed this many (`u32 LE`) stdin bytes to the command.
    StdinAck = 0x87,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0x01 => Kind::Request,
            0x02 => Kind::Stdin,
            0x03 => Kind::StdinEof,
            0x04 => Kind::Resize,
            0x05 => Kind::Signal,
            0x06 => Kind::Ping,
            0x81 => Kind::Stdout,
            0x82 => Kind::Stderr,
            0x83 => Kind::Exit,
            0x84 => Kind::Error,
            0x85 => Kind::Hello,
            0x86 => Kind::Pong,
            0x87 => Kind::StdinAck,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub session: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: Kind, session: u32, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            kind,
            session,
            payload: payload.into(),
        }
    }

    /// The frame as bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(11 + self.payload.len());
        v.extend_from_slice(&MAGIC);
        v.push(self.kind as u8);
        v.extend_from_slice(&self.session.to_le_bytes());
        v.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.payload);
        v
    }

    /// Writes the frame in one `write_all` so that frames of concurrent writers sharing a
    /// lock never interleave.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&self.encode())?;
        w.flush()
    }

    /// The payload as an `i32` (exit code, signal).
    pub fn payload_i32(&self) -> Option<i32> {
        let b: [u8; 4] = self.payload.get(..4)?.try_into().ok()?;
        Some(i32::from_le_bytes(b))
    }
}

/// Reads the next frame, skipping bytes until a magic with a known type is found.
/// Returns `Ok(None)` at end of stream.
pub fn read_frame(r: &mut dyn Read) -> io::Result<Option<Frame>> {
    let mut b = [0u8; 1];
    let mut prev: Option<u8> = None;
    loop {
        if r.read(&mut b)? == 0 {
            return Ok(None);
        }
        if prev == Some(MAGIC[0]) && b[0] == MAGIC[1] {
            break;
        }
        prev = Some(b[0]);
    }
    let mut hdr = [0u8; 9];
    if !read_full(r, &mut hdr)? {
        return Ok(None);
    }
    let kind = Kind::from_u8(hdr[0]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown frame type {:#04x}", hdr[0]),
        )
    })?;
    let session = u32::from_le_bytes(hdr[1..5].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(hdr[5..9].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame payload of {len} bytes exceeds {MAX_PAYLOAD}"),
        ));
    }
    let mut payload = vec![0u8; len];
    if !read_full(r, &mut payload)? {
        return Ok(None);
    }
    Ok(Some(Frame {
        kind,
        session,
        payload,
    }))
}

/// Like `read_exact`, but an end of stream is reported as `false` rather than an error:
/// a serial line may simply close mid-frame.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        match r.read(&mut buf[off..]) {
            Ok(0) => return Ok(false),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What the host asks the agent to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Program and arguments; the program is looked up in `PATH`.
    pub argv: Vec<String>,
    /// `NAME=value` entries added to the agent's default environment.
    pub env: Vec<String>,
    /// Run on a new pty (stdout and stderr merged, as on a terminal).
    pub pty: bool,
    /// Initial pty size (0 = leave the default).
    pub rows: u16,
    pub cols: u16,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.push(u8::from(self.pty));
        v.extend_from_slice(&self.rows.to_le_bytes());
        v.extend_from_slice(&self.cols.to_le_bytes());
        for list in [&self.argv, &self.env] {
            v.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for s in list {
                v.extend_from_slice(&(s.len() as u32).to_le_bytes());
                v.extend_from_slice(s.as_bytes());
            }
        }
        v
    }

    pub fn decode(p: &[u8]) -> Result<Request, String> {
        let mut cur = Cursor { p, off: 0 };
        let flags = cur.take(1)?[0];
        let rows = u16::from_le_bytes(cur.take(2)?.try_into().expect("2 bytes"));
        let cols = u16::from_le_bytes(cur.take(2)?.try_into().expect("2 bytes"));
        let argv = cur.strings()?;
        let env = cur.strings()?;
        if argv.is_empty() {
            return Err("empty argv".into());
        }
        Ok(Request {
            argv,
            env,
            pty: flags & 1 != 0,
            rows,
            cols,
        })
    }
}

struct Cursor<'a> {
    p: &'a [u8],
    off: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .off
            .checked_add(n)
            .filter(|e| *e <= self.p.len())
            .ok_or_else(|| format!("request truncated at byte {}", self.off))?;
        let s = &self.p[self.off..end];
        self.off = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    fn strings(&mut self) -> Result<Vec<String>, String> {
        let n = self.u32()?;
        if n > MAX_STRINGS {
            return Err(format!("request has {n} strings, more than {MAX_STRINGS}"));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.u32()?;
            let b = self.take(len)?;
            let s = std::str::from_utf8(b).map_err(|_| "request string is not UTF-8")?;
            if s.contains('\0') {
                return Err("request string contains NUL".into());
            }
            v.push(s.to_string());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_with_garbage_before() {
        let f = Frame::new(Kind::Stdout, 7, b"hello".to_vec());
        let mut wire = vec![0xC0, 0x00, 0x41, 0xC0];
        wire.extend(f.encode());
        wire.extend(Frame::new(Kind::Exit, 7, 3i32.to_le_bytes().to_vec()).encode());
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), f);
        let e = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((e.kind, e.payload_i32()), (Kind::Exit, Some(3)));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_and_unknown_frames_are_errors() {
        let mut wire = vec![0xC0, 0x0B, 0x81, 0, 0, 0, 0];
        wire.extend(((MAX_PAYLOAD + 1) as u32).to_le_bytes());
        assert!(read_frame(&mut &wire[..]).is_err());
        let wire = [0xC0, 0x0B, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(read_frame(&mut &wire[..]).is_err());
        // Truncated payload: end of stream, not a panic.
        let wire = [0xC0, 0x0B, 0x81, 0, 0, 0, 0, 9, 0, 0, 0, 1];
        assert!(read_frame(&mut &wire[..]).unwrap().is_none());
    }

    #[test]
    fn request_roundtrip_and_bad_requests() {
        let r = Request {
            argv: vec!["uname".into(), "-r".into()],
            env: vec!["TERM=vt100".into()],
            pty: true,
            rows: 24,
            cols: 80,
        };
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        let enc = r.encode();
        for cut in 0..enc.len() {
            assert!(Request::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = vec![0u8, 0, 0, 0, 0];
        huge.extend(u32::MAX.to_le_bytes());
        assert!(Request::decode(&huge).is_err());
        let empty = Request::default().encode();
        assert!(Request::decode(&empty).is_err());
    }
}
