//! `coop view`: the SPICE client (`spicec -h HOST -p PORT` of the article).
//! It opens a window on the remote screen; with `--screenshot FILE` it runs
//! headless instead: connect, wait until the picture is complete, write it, exit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use spice_client::{capture, CaptureOptions, ClientConfig, ClientError, SecureChannels};

/// `--wait-ms` when not given.
const DEFAULT_WAIT_MS: u64 = 300;

/// Exit status when the server refuses the password.
const EXIT_AUTH: u8 = 2;

#[derive(clap::Args, Debug)]
// `-h` is the host, as in spicec; help stays reachable as --help.
#[command(disable_help_flag = true)]
pub struct Args {
    /// spice://HOST:PORT, spice://HOST?port=PORT&tls-port=TLSPORT, or
    /// spice+tls://HOST:TLSPORT.
    #[arg(value_name = "URI")]
    uri: Option<String>,
    /// Server host (instead of a URI).
    #[arg(short = 'h', long = "host", value_name = "HOST")]
    host: Option<String>,
    /// Server port (instead of a URI).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    port: Option<u16>,
    /// Server TLS port (instead of or besides a plain port). Every channel then
    /// makes its own TLS connection there.
    #[arg(short = 's', long = "tls-port", value_name = "PORT")]
    tls_port: Option<u16>,
    /// PEM file of the CA certificates to trust for TLS
    /// [default: /etc/ssl/certs/ca-certificates.crt].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Check that the server certificate's subject is this ("C=XX,O=Org,CN=name")
    /// instead of checking the host name.
    #[arg(long, value_name = "SUBJECT")]
    host_subject: Option<String>,
    /// Channels to link over TLS even when a plain port is given: "all" or a list
    /// such as "main,inputs". Without it, channels go plain unless the server
    /// demands TLS for them.
    #[arg(long, value_name = "CHANNELS")]
    secure_channels: Option<String>,
    /// Read the password (SPICE ticket) from FILE; a trailing newline is ignored.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Headless: write the screen to FILE (.png, or .ppm) once it is complete, then exit.
    #[arg(long, value_name = "FILE")]
    screenshot: Option<PathBuf>,
    /// Quiet period (ms) after the server's MARK with no display update before
    /// the picture counts as complete [default: 300, or 700 once JPEG was drawn, to
    /// catch the server's lossless re-send].
    #[arg(long, value_name = "N")]
    wait_ms: Option<u64>,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// Preferred image compression to ask the server for:
    /// auto_glz, auto_lz, quic, glz, lz, lz4 or off.
    #[arg(long, value_name = "NAME")]
    compression: Option<String>,
    /// Print bytes per channel at exit.
    #[arg(long)]
    stats: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Where a URI points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: Option<u16>,
    tls_port: Option<u16>,
}

fn parse_uri(uri: &str) -> anyhow::Result<Target> {
    let (rest, tls) = if let Some(r) = uri.strip_prefix("spice://") {
        (r, false)
    } else if let Some(r) = uri.strip_prefix("spice+tls://") {
        (r, true)
    } else {
        bail!("{uri:?} is not a spice:// or spice+tls:// URI");
    };
    let num = |v: &str| -> anyhow::Result<u16> {
        v.parse()
            .with_context(|| format!("bad port {v:?} in {uri:?}"))
    };
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h.trim_end_matches('/'), Some(q)),
        None => (rest.trim_end_matches('/'), None),
    };
    let (mut port, mut tls_port) = (None, None);
    if let Some(q) = query {
        for kv in q.split('&') {
            if let Some(v) = kv.strip_prefix("port=") {
                port = Some(num(v)?);
            } else if let Some(v) = kv.strip_prefix("tls-port=") {
                tls_port = Some(num(v)?);
            }
        }
    }
    let (host, p) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, tail) = h
            .split_once(']')
            .with_context(|| format!("unclosed [ in {uri:?}"))?;
        (h.to_string(), tail.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if let Some(p) = p {
        // spice+tls://HOST:PORT names the TLS port, as in remote-viewer.
        if tls {
            tls_port = Some(num(p)?);
        } else {
            port = Some(num(p)?);
        }
    }
    if host.is_empty() {
        bail!("no host in {uri:?}");
    }
    Ok(Target {
        host,
        port,
        tls_port,
    })
}

fn compression(name: &str) -> anyhow::Result<u8> {
    spice_client::parse_image_compression(name).map_err(anyhow::Error::msg)
}

fn print_stats(stats: &[spice_client::ChannelStats]) {
    for s in stats {
        println!("{s}");
    }
}

/// The window runs in `coop-viewer` (beside this binary, else on PATH): see its crate
/// doc for why. Replaces this process; returns only when it cannot be started.
fn exec_viewer(a: &Args, host: &str, port: u16, tls_port: u16) -> anyhow::Result<u8> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("coop-viewer"))
        .filter(|p| p.is_file());
    let exe = beside.unwrap_or_else(|| PathBuf::from("coop-viewer"));
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg(host).arg(port.to_string());
    if tls_port != 0 {
        cmd.arg("--tls-port").arg(tls_port.to_string());
    }
    if let Some(f) = &a.ca_file {
        cmd.arg("--ca-file").arg(f);
    }
    if let Some(s) = &a.host_subject {
        cmd.arg("--host-subject").arg(s);
    }
    if let Some(s) = &a.secure_channels {
        cmd.arg("--secure-channels").arg(s);
    }
    if let Some(f) = &a.password_file {
        cmd.arg("--password-file").arg(f);
    }
    if let Some(c) = &a.compression {
        compression(c)?;
        cmd.arg("--compression").arg(c);
    }
    if a.stats {
        cmd.arg("--stats");
    }
    let e = cmd.exec();
    bail!(
        "cannot start the viewer window {}: {e}; install coop-viewer beside coop \
         (scripts/setup.sh does), or use --screenshot for headless use",
        exe.display()
    )
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    let (mut host, mut port, mut tls_port) = match &a.uri {
        Some(u) => {
            let t = parse_uri(u)?;
            (Some(t.host), t.port, t.tls_port)
        }
        None => (None, None, None),
    };
    if a.host.is_some() {
        host = a.host.clone();
    }
    if a.port.is_some() {
        port = a.port;
    }
    if a.tls_port.is_some() {
        tls_port = a.tls_port;
    }
    let host = host.context("no server given: use spice://HOST:PORT or -h HOST -p PORT")?;
    let (port, tls_port) = (port.unwrap_or(0), tls_port.unwrap_or(0));
    if port == 0 && tls_port == 0 {
        bail!("no port given: use spice://HOST:PORT, -p PORT or --tls-port PORT");
    }
    let secure = match &a.secure_channels {
        Some(s) => SecureChannels::parse(s).map_err(anyhow::Error::msg)?,
        None => SecureChannels::Auto,
    };
    if secure != SecureChannels::Auto && tls_port == 0 {
        bail!("--secure-channels needs a TLS port (--tls-port or tls-port= in the URI)");
    }
    let Some(out) = &a.screenshot else {
        return exec_viewer(&a, &host, port, tls_port);
    };
    let mut cfg = ClientConfig::new(host, port);
    cfg.tls_port = tls_port;
    cfg.ca_file = a.ca_file.clone();
    cfg.host_subject = a.host_subject.clone();
    cfg.secure_channels = secure;
    if let Some(f) = &a.password_file {
        cfg.read_password_file(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
    }
    if let Some(c) = &a.compression {
        cfg.preferred_compression = Some(compression(c)?);
    }
    cfg.all_channels = false;
    let wait_ms = a.wait_ms.unwrap_or(DEFAULT_WAIT_MS);
    let opts = CaptureOptions {
        quiet: Duration::from_millis(wait_ms),
        // A screen that never stops changing (a blinking cursor) is taken
        // after a few quiet periods' worth of time.
        settle: Duration::from_millis(wait_ms.saturating_mul(5).max(1000)),
        timeout: Duration::from_secs(a.timeout),
        // An explicit --wait-ms is taken as meant; by default a picture with JPEG in it
        // waits for the server's lossless re-send.
        lossy_quiet: a
            .wait_ms
            .is_none()
            .then_some(spice_client::headless::LOSSY_QUIET),
    };
    let t0 = Instant::now();
    let shot = match capture(cfg, &opts) {
        Ok(s) => s,
        Err(e @ ClientError::AuthFailed(_)) => {
            eprintln!("coop view: {e}");
            return Ok(EXIT_AUTH);
        }
        Err(e) => return Err(e.into()),
    };
    spice_client::output::write_image(&shot.screen, out)?;
    if a.stats {
        print_stats(&shot.stats);
        let images: Vec<String> = shot
            .image_counts
            .iter()
            .map(|(t, n)| format!("{}={n}", spice_client::image::image_type_name(*t)))
            .collect();
        println!("images: {}", images.join(" "));
        let msgs: Vec<String> = shot
            .display_messages
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect();
        println!("display messages by type: {}", msgs.join(" "));
        println!(
            "first frame after {} ms, complete after {} ms (total {} ms)",
            shot.first_frame.as_millis(),
            shot.complete.as_millis(),
            t0.elapsed().as_millis()
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let t = |host: &str, port, tls_port| Target {
            host: host.into(),
            port,
            tls_port,
        };
        assert_eq!(
            parse_uri("spice://127.0.0.1:5930").unwrap(),
            t("127.0.0.1", Some(5930), None)
        );
        assert_eq!(
            parse_uri("spice://h?port=7").unwrap(),
            t("h", Some(7), None)
        );
        assert_eq!(
            parse_uri("spice://[::1]:9/").unwrap(),
            t("::1", Some(9), None)
        );
        assert_eq!(
            parse_uri("spice://h?tls-port=5901").unwrap(),
            t("h", None, Some(5901))
        );
        assert_eq!(
            parse_uri("spice://h?port=5900&tls-port=5901").unwrap(),
            t("h", Some(5900), Some(5901))
        );
        assert_eq!(
            parse_uri("spice+tls://h:5901").unwrap(),
            t("h", None, Some(5901))
        );
        assert!(parse_uri("http://x:1").is_err());
        assert!(parse_uri("spice://:1").is_err());
        assert!(parse_uri("spice://h?tls-port=x").is_err());
    }

    /// A server whose link stage refuses every ticket but "right".
    fn refusing_server() -> u16 {
        use spice_client::spice_proto::{ticket, LinkServer, LinkServerConfig, LinkStatus};
        use std::io::{Read, Write};
        use std::sync::Arc;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cfg = Arc::new(LinkServerConfig::new(
            ticket::generate_key().unwrap(),
            Some("right".into()),
        ));
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut ls = LinkServer::new(cfg);
            let mut buf = [0u8; 4096];
            loop {
                let Ok(n) = s.read(&mut buf) else { return };
                if n == 0 {
                    return;
                }
                let mut out = Vec::new();
                let st = ls.feed(&buf[..n], &mut out);
                let _ = s.write_all(&out);
                if st != LinkStatus::InProgress {
                    return;
                }
            }
        });
        port
    }

    fn args(argv: &[&str]) -> Args {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn wrong_password_exits_with_status_2() {
        let port = refusing_server();
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "wrong\n").unwrap();
        let out = dir.path().join("x.png");
        let a = args(&[
            "view",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--password-file",
            pw.to_str().unwrap(),
            "--screenshot",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run(a).unwrap(), EXIT_AUTH);
        assert!(!out.exists());
    }

    #[test]
    fn refused_connection_is_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let a = args(&[
            "view",
            &format!("spice://127.0.0.1:{port}"),
            "--screenshot",
            "/nonexistent/x.png",
        ]);
        let e = run(a).unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }
}
