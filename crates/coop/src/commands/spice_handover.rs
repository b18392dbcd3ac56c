//! `coop spice handover`: tells a running `coop spice serve` (or a GUI container's
//! server) to hand every client over to another SPICE server, through its control
//! socket. Clients keep their password: the target must accept the same one.
//!
//! When the target's control socket is known too (`--to-control-socket`, or the
//! target is a GUI container, `--to-name`), clients that support it migrate
//! semi-seamlessly: the target is told which session ids to expect, then the source
//! sends MIGRATE_BEGIN, and each client links to the target before it leaves. Other
//! clients, and every client without a target socket, are told to switch host.
//! `coop spice status` asks the same socket how many clients are connected.

use std::path::PathBuf;

use anyhow::{bail, Context};
use coop_container::Store;

/// Which server: a control socket, or a GUI container's.
#[derive(clap::Args)]
pub struct Which {
    /// The server's control socket (`coop spice serve --control-socket PATH`).
    #[arg(long, value_name = "PATH", conflicts_with = "name")]
    control_socket: Option<PathBuf>,
    /// A running GUI container (its SPICE server).
    #[arg(short = 'n', long, value_name = "NAME")]
    name: Option<String>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    which: Which,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    which: Which,
    /// The target server, HOST:PORT (PORT 0 with --tls-port: TLS only); with
    /// --to-name, defaults to that container's SPICE address.
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "to_name")]
    to: Option<String>,
    /// The target's control socket: migrate semi-seamlessly where clients can.
    #[arg(long, value_name = "PATH", conflicts_with = "to_name")]
    to_control_socket: Option<PathBuf>,
    /// The target is this running GUI container's SPICE server (semi-seamless).
    #[arg(long, value_name = "NAME")]
    to_name: Option<String>,
    /// The target's TLS port.
    #[arg(long, value_name = "N", default_value_t = 0)]
    tls_port: u16,
    /// The target certificate's subject, for clients that check it.
    #[arg(long, value_name = "SUBJECT")]
    cert_subject: Option<String>,
}

/// Where a GUI container's SPICE server listens for control requests.
pub fn container_socket(store: &Store, name: &str) -> PathBuf {
    coop_container::display_control_socket(store, name)
}

fn socket_of(store: &Store, w: &Which) -> anyhow::Result<PathBuf> {
    Ok(match (&w.control_socket, &w.name) {
        (Some(p), _) => p.clone(),
        (None, Some(n)) => {
            let st = coop_container::state::RunState::load(store, n)?
                .with_context(|| format!("container {n} is not running"))?;
            if st.spice.is_none() {
                bail!("container {n} serves no SPICE display (start it with --spice HOST:PORT)");
            }
            container_socket(store, n)
        }
        (None, None) => bail!("which server? give --control-socket PATH or -n NAME"),
    })
}

pub fn status(store: &Store, a: StatusArgs) -> anyhow::Result<u8> {
    let socket = socket_of(store, &a.which)?;
    let st = spice_server::control::request_blocking(&socket, "status")
        .with_context(|| format!("asking the server at {} for its status", socket.display()))?;
    println!("{st}");
    Ok(0)
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<u8> {
    let socket = socket_of(store, &a.which)?;
    let (to, target_socket) = match &a.to_name {
        Some(n) => {
            let w = Which {
                control_socket: None,
                name: Some(n.clone()),
            };
            let sock = socket_of(store, &w)?;
            let to = match &a.to {
                Some(t) => t.clone(),
                None => container_address(store, n)?,
            };
            (to, Some(sock))
        }
        None => (
            a.to.clone().context("give --to HOST:PORT")?,
            a.to_control_socket.clone(),
        ),
    };
    let (host, port) = to
        .rsplit_once(':')
        .with_context(|| format!("--to {to:?} is not HOST:PORT"))?;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    let port: u16 = port
        .parse()
        .with_context(|| format!("--to {to:?}: port {port:?} is not a number"))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!("--to {to:?}: the host must be a name or address without spaces");
    }
    if port == 0 && a.tls_port == 0 {
        bail!("--to {to:?}: give a port, or port 0 with --tls-port");
    }
    let mut target = format!("{host} {port} {}", a.tls_port);
    if let Some(c) = &a.cert_subject {
        if c.contains('\n') {
            bail!("--cert-subject must be one line");
        }
        target += &format!(" {c}");
    }
    let ask = |sock: &std::path::Path, req: &str| {
        spice_server::control::request_blocking(sock, req)
            .with_context(|| format!("asking the server at {}: {req}", sock.display()))
    };
    let Some(tsock) = target_socket else {
        let told = ask(&socket, &format!("handover {target}"))?;
        println!("told {told} client(s) to switch to {host}:{port}");
        return Ok(0);
    };
    // The target must know the session ids before the clients link there.
    let ids = ask(&socket, "sessions")?;
    if !ids.trim().is_empty() {
        ask(&tsock, &format!("expect {ids}"))?;
    }
    let report = ask(&socket, &format!("migrate {target}"))?;
    println!("handed clients over to {host}:{port}: {report}");
    Ok(0)
}

/// A GUI container's SPICE address, as clients elsewhere can dial it.
fn container_address(store: &Store, name: &str) -> anyhow::Result<String> {
    let st = coop_container::state::RunState::load(store, name)?
        .with_context(|| format!("container {name} is not running"))?;
    let addr = st
        .spice
        .with_context(|| format!("container {name} serves no SPICE display"))?;
    let (host, _) = addr.rsplit_once(':').unwrap_or((&addr, ""));
    let ip: Option<std::net::IpAddr> = host.trim_matches(|c| c == '[' || c == ']').parse().ok();
    if ip.is_some_and(|ip| ip.is_unspecified()) {
        bail!(
            "container {name} listens on {addr} (every address): say which one clients \
             should dial with --to HOST:PORT"
        );
    }
    Ok(addr)
}
