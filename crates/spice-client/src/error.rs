//! The error type of the client.

use spice_proto::LinkErr;
use thiserror::Error;

/// Why a SPICE session failed. Cloneable so that the first fatal error of any
/// channel task can be kept and reported by every waiter.
#[derive(Debug, Clone, Error)]
pub enum ClientError {
    /// The server refused the ticket (wrong or missing password).
    #[error("authentication failed: the server refused the password ({0})")]
    AuthFailed(LinkErr),
    /// The server refused the link for another reason.
    #[error("{channel} channel link refused by the server: {err}")]
    LinkRefused { channel: &'static str, err: LinkErr },
    /// TLS could not be set up or the server's certificate was refused.
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    /// The options cannot work (a channel required secure with no TLS port, ...).
    #[error("bad client configuration: {0}")]
    Config(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{channel} channel: I/O error: {reason}")]
    Io {
        channel: &'static str,
        reason: String,
    },
    #[error("{channel} channel: the server closed the connection{detail}")]
    Disconnected {
        channel: &'static str,
        detail: String,
    },
    #[error("{channel} channel: no answer from the server within {ms} ms while {what}")]
    Timeout {
        channel: &'static str,
        what: &'static str,
        ms: u128,
    },
    /// Malformed SPICE data (framing, link or message body).
    #[error("{channel} channel: malformed data from the server: {source}")]
    Proto {
        channel: &'static str,
        #[source]
        source: spice_proto::ProtoError,
    },
    /// An image payload that does not decode.
    #[error("display channel: cannot decode image {id:#x} ({kind}): {source}")]
    Image {
        id: u64,
        kind: &'static str,
        #[source]
        source: spice_codecs::CodecError,
    },
    /// A message that is well-formed but makes no sense in the current state.
    #[error("server sent inconsistent data: {0}")]
    Server(String),
    /// The server used a feature this client does not implement.
    #[error("unsupported by this client: {0}")]
    Unsupported(&'static str),
    #[error("cannot write {path}: {reason}")]
    Output { path: String, reason: String },
}

impl ClientError {
    /// Whether this error means the password was refused.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, ClientError::AuthFailed(_))
    }
}
