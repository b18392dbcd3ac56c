//! `coop spice handover`: tells a running `coop spice serve` (or a GUI container's
//! server) to hand every client over to another SPICE server, through its control
//! socket. Clients keep their password: the target must accept the same one.
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
    /// The target server, HOST:PORT (PORT 0 with --tls-port: TLS only).
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
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
    let (host, port) =
        a.to.rsplit_once(':')
            .with_context(|| format!("--to {:?} is not HOST:PORT", a.to))?;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    let port: u16 = port
        .parse()
        .with_context(|| format!("--to {:?}: port {port:?} is not a number", a.to))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!(
            "--to {:?}: the host must be a name or address without spaces",
            a.to
        );
    }
    if port == 0 && a.tls_port == 0 {
        bail!("--to {:?}: give a port, or port 0 with --tls-port", a.to);
    }
    let mut req = format!("handover {host} {port} {}", a.tls_port);
    if let Some(c) = &a.cert_subject {
        if c.contains('\n') {
            bail!("--cert-subject must be one line");
        }
        req += &format!(" {c}");
    }
    let told = spice_server::control::request_blocking(&socket, &req)
        .with_context(|| format!("asking the server at {} to hand over", socket.display()))?;
    println!("told {told} client(s) to switch to {host}:{port}");
    Ok(0)
}
