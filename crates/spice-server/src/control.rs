//! The control socket: a unix socket through which another process (`coop spice
//! handover`) tells a running server to hand its clients over, or asks for its status.
//!
//! One request per connection, one text line each way (`error MESSAGE` on failure):
//! - `handover HOST PORT TLS_PORT [CERT_SUBJECT]` → `ok N`: N sessions told to
//!   switch host;
//! - `migrate HOST PORT TLS_PORT [CERT_SUBJECT]` → `ok migrated=N switched=M lost=K`:
//!   semi-seamless migration where the client supports it (the target must expect the
//!   session ids first), switch host otherwise;
//! - `sessions` → `ok ID …`: ids (hex) of the sessions that can migrate semi-seamlessly;
//! - `expect ID …` → `ok N`: on a target, accept those session ids for a while;
//! - `status` → `ok sessions=N connections=M`.
//!
//! The socket is created mode 0600: whoever may connect may move every client elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::{ControlHandle, HandoverTarget, ServerError};

/// Longest request line accepted.
const MAX_LINE: u64 = 4096;
/// A client has this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound control socket; the file is removed when this is dropped.
pub struct ControlSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlSocket {
    /// Binds `path`, replacing a stale socket file but refusing one a live server
    /// still answers on, and any other kind of file.
    pub async fn bind(path: &Path) -> Result<ControlSocket, ServerError> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let io = |op: String| move |source| ServerError::Io { op, source };
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(ServerError::Config(format!(
                    "control socket {}: exists and is not a socket",
                    path.display()
                )));
            }
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServerError::Config(format!(
                    "control socket {}: another server is listening there",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(io(format!(
                "removing the stale control socket {}",
                path.display()
            )))?;
        }
        let listener =
            UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))?;
        let sock = ControlSocket {
            path: path.to_path_buf(),
            listener,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io(format!("restricting {} to its owner", path.display())))?;
        Ok(sock)
    }

    /// Answers requests for `server` until the future is dropped.
    pub async fn run(self, server: ControlHandle) {
        loop {
            match self.listener.accept().await {
                Ok((s, _)) => {
                    let server = server.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(s, &server).await {
                            tracing::info!(error = %e, "control request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn answer(s: UnixStream, server: &ControlHandle) -> std::io::Result<()> {
    let (r, mut w) = s.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        BufReader::new(r).take(MAX_LINE).read_line(&mut line),
    )
    .await;
    let reply = match read {
        Err(_) => "error no request within 5 s".to_string(),
        Ok(Err(e)) => format!("error reading the request: {e}"),
        Ok(Ok(_)) if !line.ends_with('\n') => {
            format!("error request longer than {MAX_LINE} bytes or not ended by a newline")
        }
        Ok(Ok(_)) => match execute(line.trim_end_matches(['\r', '\n']), server).await {
            Ok(s) => format!("ok {s}"),
            Err(e) => format!("error {e}"),
        },
    };
    w.write_all(format!("{reply}\n").as_bytes()).await?;
    w.shutdown().await
}

async fn execute(req: &str, server: &ControlHandle) -> Result<String, String> {
    let (verb, rest) = req.split_once(' ').unwrap_or((req, ""));
    match verb {
        "status" => {
            let st = server.stats();
            Ok(format!(
                "sessions={} connections={}",
                st.sessions, st.connections
            ))
        }
        "handover" => {
            let t = parse_handover(rest)?;
            server
                .handover(t)
                .map(|n| n.to_string())
                .map_err(|e| e.to_string())
        }
        "migrate" => {
            let t = parse_handover(rest)?;
            let r = server.migrate(t).await.map_err(|e| e.to_string())?;
            Ok(format!(
                "migrated={} switched={} lost={}",
                r.migrated, r.switched, r.lost
            ))
        }
        "sessions" => Ok(server
            .migratable_sessions()
            .iter()
            .map(|id| format!("{id:08x}"))
            .collect::<Vec<_>>()
            .join(" ")),
        "expect" => {
            let ids = parse_ids(rest)?;
            server
                .expect_migration(&ids)
                .map(|n| n.to_string())
                .map_err(|e| e.to_string())
        }
        v => Err(format!("unknown request {v:?} (want handover or status)")),
    }
}

/// `HOST PORT TLS_PORT [CERT_SUBJECT]`; the subject is the rest of the line.
fn parse_handover(s: &str) -> Result<HandoverTarget, String> {
    let mut parts = s.splitn(4, ' ');
    let host = parts.next().unwrap_or("");
    let port = |what: &str, v: Option<&str>| -> Result<u16, String> {
        let v = v.ok_or_else(|| format!("handover needs HOST PORT TLS_PORT, {what} missing"))?;
        v.parse()
            .map_err(|_| format!("handover {what} {v:?} is not a port number"))
    };
    let p = port("PORT", parts.next())?;
    let tls = port("TLS_PORT", parts.next())?;
    let t = HandoverTarget {
        host: host.to_string(),
        port: p,
        tls_port: tls,
        cert_subject: parts.next().filter(|c| !c.is_empty()).map(str::to_string),
    };
    t.validate().map_err(|e| e.to_string())?;
    Ok(t)
}

/// Session ids in hex, separated by spaces.
pub fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    s.split_whitespace()
        .map(|w| u32::from_str_radix(w, 16).map_err(|_| format!("session id {w:?} is not hex")))
        .collect()
}

/// Sends one request line to the control socket at `path` and returns the answer after
/// `ok `, or the server's `error` text as an error.
pub async fn request(path: &Path, req: &str) -> Result<String, ServerError> {
    if req.contains('\n') {
        return Err(ServerError::Config("a control request is one line".into()));
    }
    let op = |what: &str| format!("{what} the control socket {}", path.display());
    let mut s = UnixStream::connect(path)
        .await
        .map_err(|source| ServerError::Io {
            op: op("connecting to"),
            source,
        })?;
    let work = async {
        s.write_all(format!("{req}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(&mut s)
            .take(MAX_LINE)
            .read_line(&mut line)
            .await?;
        Ok::<_, std::io::Error>(line)
    };
    // A migration waits up to MIGRATION_ANSWER for the clients.
    let wait = crate::MIGRATION_ANSWER + Duration::from_secs(10);
    let line = tokio::time::timeout(wait, work)
        .await
        .map_err(|_| {
            ServerError::Protocol(format!(
                "{}: no answer in {} s",
                op("waiting on"),
                wait.as_secs()
            ))
        })?
        .map_err(|source| ServerError::Io {
            op: op("talking to"),
            source,
        })?;
    let line = line.trim_end();
    match line.split_once(' ').unwrap_or((line, "")) {
        ("ok", rest) => Ok(rest.to_string()),
        ("error", msg) => Err(ServerError::Protocol(msg.to_string())),
        _ => Err(ServerError::Protocol(format!(
            "{}: unexpected answer {line:?}",
            op("reading")
        ))),
    }
}

/// [`request`] for callers without a tokio runtime.
pub fn request_blocking(path: &Path, req: &str) -> Result<String, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::io("starting the tokio runtime"))?
        .block_on(request(path, req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handover_requests_parse_and_bad_ones_say_why() {
        let t = parse_handover("10.0.0.2 5930 0").unwrap();
        assert_eq!(
            t,
            HandoverTarget {
                host: "10.0.0.2".into(),
                port: 5930,
                tls_port: 0,
                cert_subject: None
            }
        );
        let t = parse_handover("h 0 5931 C=XX, O=coop test").unwrap();
        assert_eq!(t.tls_port, 5931);
        assert_eq!(t.cert_subject.as_deref(), Some("C=XX, O=coop test"));
        let e = parse_handover("h 5930").unwrap_err();
        assert!(e.contains("TLS_PORT missing"), "{e}");
        let e = parse_handover("h 70000 0").unwrap_err();
        assert!(e.contains("\"70000\""), "{e}");
        let e = parse_handover("h 0 0").unwrap_err();
        assert!(e.contains("needs a plain or a TLS port"), "{e}");
        let e = parse_handover("").unwrap_err();
        assert!(e.contains("PORT missing"), "{e}");
        assert_eq!(parse_ids(" 0000002a ff ").unwrap(), vec![42, 255]);
        assert!(parse_ids("xyz").unwrap_err().contains("\"xyz\""));
        assert!(parse_ids("100000000").is_err());
    }

    #[tokio::test]
    async fn bind_replaces_stale_sockets_only() {
        let dir = std::env::temp_dir().join(format!("so-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ctl");
        // A regular file is not ours to remove.
        std::fs::write(&p, "x").unwrap();
        let e = ControlSocket::bind(&p).await.err().expect("file refused");
        assert!(e.to_string().contains("not a socket"), "{e}");
        std::fs::remove_file(&p).unwrap();
        // A stale socket (nobody listening) is replaced…
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        let live = ControlSocket::bind(&p)
            .await
            .expect("stale socket replaced");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // …a live one is not.
        let e = ControlSocket::bind(&p)
            .await
            .err()
            .expect("live socket kept");
        assert!(e.to_string().contains("another server"), "{e}");
        drop(live);
        assert!(!p.exists(), "socket file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
