//! `coop-viewer`: the SPICE viewer window that `coop view` starts for interactive use.
//!
//! It lives in its own executable because the window stack (winit, softbuffer and the
//! Xlib they load when the program starts) would otherwise be loaded by every `coop`
//! command, `coop start` and `coop attach` included. `coop view` resolves the server
//! and the password file and passes them here in a fixed form; run it through `coop view`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use spice_client::{ClientConfig, ClientError};

/// Exit status when the server refuses the password (as `coop view`).
const EXIT_AUTH: u8 = 2;

#[derive(clap::Parser, Debug)]
#[command(
    name = "coop-viewer",
    about = "SPICE viewer window (started by `coop view`)"
)]
struct Args {
    /// Server host.
    host: String,
    /// Server port (0: TLS only).
    port: u16,
    /// Server TLS port.
    #[arg(long, value_name = "PORT")]
    tls_port: Option<u16>,
    /// PEM file of the CAs to trust for TLS.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Expected certificate subject, checked instead of the host name.
    #[arg(long, value_name = "SUBJECT")]
    host_subject: Option<String>,
    /// Channels to link over TLS: "all" or a list of channel names.
    #[arg(long, value_name = "CHANNELS")]
    secure_channels: Option<String>,
    /// Read the password (SPICE ticket) from FILE; a trailing newline is ignored.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Preferred image compression to ask the server for.
    #[arg(long, value_name = "NAME")]
    compression: Option<String>,
    /// Print bytes per channel at exit.
    #[arg(long)]
    stats: bool,
}

fn run(a: Args) -> anyhow::Result<u8> {
    let mut cfg = ClientConfig::new(a.host, a.port);
    cfg.tls_port = a.tls_port.unwrap_or(0);
    cfg.ca_file = a.ca_file;
    cfg.host_subject = a.host_subject;
    if let Some(s) = &a.secure_channels {
        cfg.secure_channels = spice_client::SecureChannels::parse(s).map_err(anyhow::Error::msg)?;
    }
    if let Some(f) = &a.password_file {
        cfg.read_password_file(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
    }
    if let Some(c) = &a.compression {
        cfg.preferred_compression =
            Some(spice_client::parse_image_compression(c).map_err(anyhow::Error::msg)?);
    }
    match spice_client::viewer::run_window(cfg, Default::default()) {
        Ok(stats) => {
            if a.stats {
                for s in &stats {
                    println!("{s}");
                }
            }
            Ok(0)
        }
        Err(e @ ClientError::AuthFailed(_)) => {
            eprintln!("coop view: {e}");
            Ok(EXIT_AUTH)
        }
        Err(e) => Err(e.into()),
    }
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("coop view: {e:#}");
            ExitCode::FAILURE
        }
    }
}
