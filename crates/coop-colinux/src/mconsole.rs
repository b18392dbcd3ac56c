//! Client of the UML management console: a unix datagram socket the kernel opens at
//! `UML_DIR/UMID/mconsole`. A request is `magic u32 · version u32 · len u32 · data[512]`,
//! a reply `err u32 · more u32 · len u32 · data[512]`, both in host byte order; a reply
//! with `more != 0` is followed by further replies to the same request.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::ColinuxError;

const MAGIC: u32 = 0xcafe_babe;
const VERSION: u32 = 2;
/// Size of the data field of requests and replies.
pub const MAX_DATA: usize = 512;
const HDR: usize = 12;
/// Most reply datagrams gathered for one request (bounds memory on a misbehaving peer).
const MAX_REPLIES: usize = 4096;

static NEXT_CLIENT: AtomicU32 = AtomicU32::new(0);

/// The socket path of instance `umid` under `uml_dir`.
pub fn socket_path(uml_dir: &Path, umid: &str) -> PathBuf {
    uml_dir.join(umid).join("mconsole")
}

/// A connected management console.
#[derive(Debug)]
pub struct Mconsole {
    sock: UnixDatagram,
    path: PathBuf,
}

/// Encodes one request datagram.
pub fn encode_request(cmd: &str) -> Result<Vec<u8>, ColinuxError> {
    // The kernel writes a NUL after `len` bytes inside data[512], so 511 is the limit.
    if cmd.len() >= MAX_DATA {
        return Err(ColinuxError::Mconsole {
            socket: PathBuf::new(),
            detail: format!(
                "command of {} bytes is longer than {}",
                cmd.len(),
                MAX_DATA - 1
            ),
        });
    }
    let mut v = Vec::with_capacity(HDR + MAX_DATA);
    v.extend_from_slice(&MAGIC.to_ne_bytes());
    v.extend_from_slice(&VERSION.to_ne_bytes());
    v.extend_from_slice(&(cmd.len() as u32).to_ne_bytes());
    v.extend_from_slice(cmd.as_bytes());
    v.resize(HDR + MAX_DATA, 0);
    Ok(v)
}

/// Decodes one reply datagram into (err, more, text).
pub fn decode_reply(b: &[u8]) -> Option<(u32, bool, String)> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(
            b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    let (err, more, len) = (word(0)?, word(1)?, word(2)? as usize);
    let data = b.get(HDR..)?;
    let data = &data[..len.min(data.len()).min(MAX_DATA)];
    let text = String::from_utf8_lossy(data)
        .trim_end_matches('\0')
        .to_string();
    Some((err, more != 0, text))
}

impl Mconsole {
    /// Connects to the console socket at `socket`, from an abstract-namespace address of
    /// our own so that the kernel has somewhere to send replies without a file to clean up.
    pub fn connect(socket: &Path) -> Result<Mconsole, ColinuxError> {
        let err = |detail: String| ColinuxError::Mconsole {
            socket: socket.to_path_buf(),
            detail,
        };
        let name = format!(
            "coop-mconsole-{}-{}",
            std::process::id(),
            NEXT_CLIENT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| err(format!("cannot make client address: {e}")))?;
        let sock = UnixDatagram::bind_addr(&addr).map_err(|e| err(format!("cannot bind: {e}")))?;
        sock.connect(socket)
            .map_err(|e| err(format!("cannot connect: {e}")))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| err(e.to_string()))?;
        Ok(Mconsole {
            sock,
            path: socket.to_path_buf(),
        })
    }

    /// Changes how long a command waits for the kernel's reply (5 s by default).
    pub fn set_timeout(&mut self, t: Duration) -> Result<(), ColinuxError> {
        self.sock
            .set_read_timeout(Some(t))
            .map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, detail: String) -> ColinuxError {
        ColinuxError::Mconsole {
            socket: self.path.clone(),
            detail,
        }
    }

    /// Sends `cmd` and gathers the reply text; a reply with `err != 0` is an error.
    pub fn command(&mut self, cmd: &str) -> Result<String, ColinuxError> {
        let req = encode_request(cmd).map_err(|e| match e {
            ColinuxError::Mconsole { detail, .. } => self.error(detail),
            other => other,
        })?;
        self.sock
            .send(&req)
            .map_err(|e| self.error(format!("cannot send {cmd:?}: {e}")))?;
        let mut out = String::new();
        let mut buf = vec![0u8; HDR + MAX_DATA];
        for _ in 0..MAX_REPLIES {
            let n = self
                .sock
                .recv(&mut buf)
                .map_err(|e| self.error(format!("no reply to {cmd:?}: {e}")))?;
            let (err, more, text) = decode_reply(&buf[..n])
                .ok_or_else(|| self.error(format!("short reply of {n} bytes to {cmd:?}")))?;
            out.push_str(&text);
            if err != 0 {
                return Err(self.error(format!("{cmd:?} failed: {}", out.trim())));
            }
            if !more {
                return Ok(out);
            }
        }
        Err(self.error(format!("more than {MAX_REPLIES} replies to {cmd:?}")))
    }

    /// The guest kernel's version line (`Linux … 6.1.x …`).
    pub fn version(&mut self) -> Result<String, ColinuxError> {
        self.command("version")
    }

    /// Stops the kernel at once, without syncing or unmounting (like pulling the power).
    /// The kernel may die before answering, so a missing reply is not an error.
    pub fn halt(&mut self) -> Result<(), ColinuxError> {
        self.fire("halt")
    }

    /// Restarts the kernel at once.
    pub fn reboot(&mut self) -> Result<(), ColinuxError> {
        self.fire("reboot")
    }

    /// Magic SysRq `key` (e.g. `s` sync, `u` remount read-only).
    pub fn sysrq(&mut self, key: char) -> Result<String, ColinuxError> {
        if !key.is_ascii_alphanumeric() {
            return Err(self.error(format!("bad sysrq key {key:?}")));
        }
        self.command(&format!("sysrq {key}"))
    }

    /// Ctrl-Alt-Del: the guest's init decides (busybox: `::ctrlaltdel:` line).
    pub fn cad(&mut self) -> Result<String, ColinuxError> {
        self.command("cad")
    }

    /// Reads a file of the guest's /proc (`path` relative to /proc, e.g. `meminfo`).
    pub fn proc_read(&mut self, path: &str) -> Result<String, ColinuxError> {
        if path.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.error(format!("bad /proc path {path:?}")));
        }
        self.command(&format!("proc {}", path.trim_start_matches('/')))
    }

    /// A clean stop without guest cooperation: SysRq sync, SysRq remount-read-only (which
    /// leaves ext4 clean), then halt. Guest processes get no chance to save state.
    pub fn stop_clean(&mut self) -> Result<(), ColinuxError> {
        self.sysrq('s')?;
        self.sysrq('u')?;
        // Emergency remount runs from a work queue; give it a moment before pulling power.
        std::thread::sleep(Duration::from_millis(300));
        self.halt()
    }

    fn fire(&mut self, cmd: &str) -> Result<(), ColinuxError> {
        let req = encode_request(cmd)?;
        self.sock
            .send(&req)
            .map_err(|e| self.error(format!("cannot send {cmd:?}: {e}")))?;
        let mut buf = vec![0u8; HDR + MAX_DATA];
        let _ = self.sock.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = self.sock.recv(&mut buf);
        let _ = self.sock.set_read_timeout(Some(Duration::from_secs(5)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let r = encode_request("version").unwrap();
        assert_eq!(r.len(), 12 + 512);
        assert_eq!(&r[0..4], &0xcafe_babeu32.to_ne_bytes());
        assert_eq!(&r[4..8], &2u32.to_ne_bytes());
        assert_eq!(&r[8..12], &7u32.to_ne_bytes());
        assert_eq!(&r[12..19], b"version");
        assert!(r[19..].iter().all(|b| *b == 0));
        assert!(encode_request(&"x".repeat(512)).is_err());
        assert!(encode_request(&"x".repeat(511)).is_ok());
    }

    #[test]
    fn reply_decoding() {
        let mut b = Vec::new();
        b.extend(0u32.to_ne_bytes());
        b.extend(1u32.to_ne_bytes());
        b.extend(6u32.to_ne_bytes());
        b.extend(b"Linux\0");
        assert_eq!(decode_reply(&b), Some((0, true, "Linux".into())));
        // A length beyond the datagram is clamped, not trusted.
        b[8..12].copy_from_slice(&9999u32.to_ne_bytes());
        assert_eq!(decode_reply(&b), Some((0, true, "Linux".into())));
        assert_eq!(decode_reply(&b[..8]), None);
    }
}
