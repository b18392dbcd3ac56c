//! `coop spice serve`: shows an X display to SPICE clients (spicy, remote-viewer);
//! `coop spice handover` / `status`: moves a running server's clients to another
//! server / counts them.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

/// spice-server's `--image-compression` values, same spelling.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Compression {
    /// Per image: raw when tiny, QUIC for photos, GLZ otherwise.
    #[value(name = "auto_glz")]
    AutoGlz,
    /// Per image: raw when tiny, QUIC for photos, LZ otherwise.
    #[value(name = "auto_lz")]
    AutoLz,
    Quic,
    Glz,
    Lz,
    /// LZ4 when the client supports it, else LZ.
    Lz4,
    Off,
}

/// spice-server's `--jpeg-wan-compression` / `--zlib-glz-wan-compression` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Wan {
    /// Only on a link the bandwidth test finds slow (under 10 Mbit/s).
    Auto,
    Never,
    Always,
}

impl From<Wan> for spice_server::WanCompression {
    fn from(w: Wan) -> Self {
        match w {
            Wan::Auto => spice_server::WanCompression::Auto,
            Wan::Never => spice_server::WanCompression::Never,
            Wan::Always => spice_server::WanCompression::Always,
        }
    }
}

/// spice-server's `--streaming-video` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Streaming {
    /// Never stream: every update is an image.
    Off,
    /// Stream areas redrawn at video pace whose content looks photographic.
    Filter,
    /// Stream any area redrawn at video pace.
    All,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Serve an X display over SPICE until interrupted.
    Serve {
        /// X display to show and drive, e.g. :1.
        #[arg(long, value_name = "DISPLAY")]
        x11: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        addr: IpAddr,
        /// Plain TCP port.
        #[arg(long, default_value_t = 5930)]
        port: u16,
        /// File holding the client password (first line; at most 60 bytes).
        #[arg(long, value_name = "FILE", conflicts_with = "disable_ticketing")]
        password_file: Option<PathBuf>,
        /// Let any client connect without a password.
        #[arg(long)]
        disable_ticketing: bool,
        /// Also serve every channel over TLS on this port.
        #[arg(long, value_name = "N", requires_all = ["x509_cert", "x509_key"])]
        tls_port: Option<u16>,
        /// PEM certificate chain for the TLS port.
        #[arg(long, value_name = "FILE", requires = "tls_port")]
        x509_cert: Option<PathBuf>,
        /// PEM private key for the TLS port.
        #[arg(long, value_name = "FILE", requires = "tls_port")]
        x509_key: Option<PathBuf>,
        /// Image compression for screen updates (a client's preference overrides it).
        #[arg(long, value_enum, default_value = "auto_glz")]
        image_compression: Compression,
        /// Display updates per second, at most.
        #[arg(long, default_value_t = 30)]
        max_fps: u32,
        /// JPEG instead of QUIC for photographic images (auto_glz/auto_lz modes).
        #[arg(long, value_enum, default_value = "auto")]
        jpeg_wan_compression: Wan,
        /// GLZ images wrapped in zlib when that is smaller.
        #[arg(long, value_enum, default_value = "auto")]
        zlib_glz_wan_compression: Wan,
        /// JPEG quality of lossy images and the top quality of video streams.
        #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
        jpeg_quality: u8,
        /// Which areas redrawn at video pace become MJPEG streams.
        #[arg(long, value_enum, default_value = "filter")]
        streaming_video: Streaming,
        /// Listen on this unix socket (mode 0600) for `coop spice handover`.
        #[arg(long, value_name = "PATH")]
        control_socket: Option<PathBuf>,
    },
    /// Tell a running server's clients to drop it and connect to another server.
    Handover(super::spice_handover::Args),
    /// Print a running server's client sessions and connections.
    Status(super::spice_handover::StatusArgs),
}

pub fn run(store: &coop_container::Store, a: Args) -> anyhow::Result<u8> {
    let serve = match a.cmd {
        Cmd::Handover(h) => return super::spice_handover::run(store, h),
        Cmd::Status(h) => return super::spice_handover::status(store, h),
        s @ Cmd::Serve { .. } => s,
    };
    let Cmd::Serve {
        x11,
        addr,
        port,
        password_file,
        disable_ticketing,
        tls_port,
        x509_cert,
        x509_key,
        image_compression,
        max_fps,
        jpeg_wan_compression,
        zlib_glz_wan_compression,
        jpeg_quality,
        streaming_video,
        control_socket,
    } = serve
    else {
        unreachable!("matched above")
    };
    let ticketing = match (password_file, disable_ticketing) {
        (Some(f), _) => {
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("reading the password file {}", f.display()))?;
            let pw = text.lines().next().unwrap_or("").to_string();
            if pw.is_empty() {
                bail!("the password file {} is empty", f.display());
            }
            spice_server::Ticketing::Password(pw)
        }
        (None, true) => spice_server::Ticketing::Disabled,
        (None, false) => bail!(
            "refusing to serve without authentication: give --password-file FILE, \
             or --disable-ticketing to let anyone who can reach {addr}:{port} control the display"
        ),
    };
    let tls = match (tls_port, x509_cert, x509_key) {
        (Some(port), Some(cert), Some(key)) => Some(spice_server::TlsConfig { port, cert, key }),
        (None, None, None) => None,
        _ => bail!("--tls-port needs both --x509-cert and --x509-key"),
    };
    let config = spice_server::Config {
        addr,
        port: Some(port),
        tls,
        ticketing,
        image_compression: match image_compression {
            Compression::AutoGlz => spice_server::ImageCompression::AutoGlz,
            Compression::AutoLz => spice_server::ImageCompression::AutoLz,
            Compression::Quic => spice_server::ImageCompression::Quic,
            Compression::Glz => spice_server::ImageCompression::Glz,
            Compression::Lz => spice_server::ImageCompression::Lz,
            Compression::Lz4 => spice_server::ImageCompression::Lz4,
            Compression::Off => spice_server::ImageCompression::Off,
        },
        max_fps,
        jpeg_wan_compression: jpeg_wan_compression.into(),
        zlib_glz_wan_compression: zlib_glz_wan_compression.into(),
        jpeg_quality,
        streaming_video: match streaming_video {
            Streaming::Off => spice_server::StreamingVideo::Off,
            Streaming::Filter => spice_server::StreamingVideo::Filter,
            Streaming::All => spice_server::StreamingVideo::All,
        },
        name: format!("coop {x11}"),
    };
    let source = spice_server::coop_display::X11Source::connect(&x11)
        .with_context(|| format!("opening X display {x11}"))?;
    eprintln!(
        "coop: serving X display {x11} over SPICE on {addr}:{port}{}",
        config
            .tls
            .as_ref()
            .map(|t| format!(" and TLS port {}", t.port))
            .unwrap_or_default()
    );
    spice_server::serve_blocking_with_control(config, Box::new(source), control_socket.as_deref())?;
    Ok(0)
}
