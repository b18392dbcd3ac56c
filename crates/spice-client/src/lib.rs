//! coop's SPICE client: connects to a SPICE server (QEMU, Xspice, coop's own),
//! links the main, display, cursor and inputs channels, decodes every image
//! format and draw command into a software canvas, and offers a headless
//! capture of the screen. Channels go over plain TCP or, per channel as SPICE
//! does, over TLS (rustls; see [`tls`]). The wire format comes from `spice-proto`,
//! the image codecs from `spice-codecs`; this crate adds the I/O (tokio), the
//! canvas and the session logic.
//!
//! ```no_run
//! use spice_client::{capture, CaptureOptions, ClientConfig};
//! let shot = capture(ClientConfig::new("127.0.0.1", 5930), &CaptureOptions::default())?;
//! spice_client::output::write_image(&shot.screen, std::path::Path::new("out.png"))?;
//! # Ok::<(), spice_client::ClientError>(())
//! ```

pub mod agent;
pub mod canvas;
pub mod channel;
pub mod cursor;
pub mod display;
pub mod error;
pub mod headless;
pub mod image;
pub mod keymap;
pub mod output;
pub mod report;
pub mod session;
pub mod tls;
#[cfg(feature = "window")]
pub mod viewer;

pub use canvas::Pixmap;
pub use error::ClientError;
pub use headless::{capture, Capture, CaptureOptions};
pub use session::{ChannelStats, ClientConfig, SecureChannels, Session};

/// The protocol crate, re-exported for constants and test servers.
pub use spice_proto;

/// The image compression a client may ask for, by the names spice-server and
/// `remote-viewer --spice-preferred-compression` use.
pub fn image_compression_by_name(name: &str) -> Option<u8> {
    use spice_proto::consts::image_compression as ic;
    Some(match name {
        "auto_glz" => ic::AUTO_GLZ,
        "auto_lz" => ic::AUTO_LZ,
        "quic" => ic::QUIC,
        "glz" => ic::GLZ,
        "lz" => ic::LZ,
        "lz4" => ic::LZ4,
        "off" => ic::OFF,
        _ => return None,
    })
}

/// The names [`image_compression_by_name`] knows, for error messages.
pub const IMAGE_COMPRESSION_NAMES: &str = "auto_glz, auto_lz, quic, glz, lz, lz4, off";

/// [`image_compression_by_name`], with the message a command line shows for a name it
/// does not know.
pub fn parse_image_compression(name: &str) -> Result<u8, String> {
    image_compression_by_name(name)
        .ok_or_else(|| format!("unknown compression {name:?} ({IMAGE_COMPRESSION_NAMES})"))
}
