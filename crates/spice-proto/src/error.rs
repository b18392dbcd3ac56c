//! The one error type every decoder and state machine of this crate returns.

use thiserror::Error;

/// Why a piece of SPICE wire data could not be understood or produced.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtoError {
    /// The input ended before a field could be read.
    #[error("{what}: need {need} bytes at offset {offset}, only {have} available")]
    Short {
        what: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    /// A pointer (u32 offset from the message body start) points outside the body.
    #[error("{what}: offset {offset} is outside the {len}-byte message body")]
    BadOffset {
        what: &'static str,
        offset: u32,
        len: usize,
    },
    /// A pointer that the protocol marks as non-null was zero.
    #[error("{what}: required pointer is null")]
    NullPointer { what: &'static str },
    /// A count or size field does not fit in the remaining bytes.
    #[error("{what}: count {count} does not fit in the remaining {remaining} bytes")]
    BadCount {
        what: &'static str,
        count: u64,
        remaining: usize,
    },
    /// An enumerated field holds a value the protocol does not define.
    #[error("{what}: unknown value {value}")]
    BadValue { what: &'static str, value: u64 },
    /// The message type is not known for this channel and direction.
    #[error("unknown message type {msg_type} for {channel}")]
    UnknownMessage {
        channel: &'static str,
        msg_type: u16,
    },
    /// A message announced a size above the configured maximum.
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: u64, max: u64 },
    /// Pointers in the body reference more data than the body could legitimately hold.
    #[error("decoding budget exceeded: pointers reference more than the body holds")]
    Budget,
    /// The link stage magic is not "REDQ".
    #[error("bad link magic {0:#010x} (expected \"REDQ\")")]
    BadMagic(u32),
    /// The peer speaks an unsupported protocol major version.
    #[error("unsupported protocol version {major}.{minor}")]
    Version { major: u32, minor: u32 },
    /// RSA ticket encryption or decryption failed.
    #[error("ticket: {0}")]
    Ticket(String),
    /// A password longer than the protocol's 60-byte ticket limit.
    #[error("password is {0} bytes, SPICE allows at most 60")]
    PasswordTooLong(usize),
    /// The server offers only authentication mechanisms we do not implement (SASL).
    #[error(
        "server offers no supported authentication mechanism (only SPICE tickets are implemented)"
    )]
    NoCommonAuth,
}

pub type Result<T> = std::result::Result<T, ProtoError>;
