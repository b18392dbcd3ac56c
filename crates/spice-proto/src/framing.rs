//! Data-message headers and a streaming framer.
//!
//! After the link, each message is a header then `size` body bytes. The full
//! `SpiceDataHeader` (18 bytes: serial u64, type u16, size u32, sub_list u32)
//! is used unless both sides announced `MINI_HEADER`, in which case the
//! 6-byte `SpiceMiniDataHeader` (type u16, size u32) is used and serials are
//! implicit.

use crate::error::{ProtoError, Result};
use crate::wire::decode_body;

pub const DATA_HEADER_SIZE: usize = 18;
pub const MINI_HEADER_SIZE: usize = 6;

/// `SpiceDataHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub serial: u64,
    pub msg_type: u16,
    pub size: u32,
    /// Offset of a `SpiceSubMessageList` in the body, 0 when there is none.
    pub sub_list: u32,
}

impl DataHeader {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.msg_type.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.sub_list.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        decode_body(b, |r| {
            Ok(DataHeader {
                serial: r.u64("data header serial")?,
                msg_type: r.u16("data header type")?,
                size: r.u32("data header size")?,
                sub_list: r.u32("data header sub_list")?,
            })
        })
    }
}

/// `SpiceMiniDataHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiniHeader {
    pub msg_type: u16,
    pub size: u32,
}

impl MiniHeader {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.msg_type.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        decode_body(b, |r| {
            Ok(MiniHeader {
                msg_type: r.u16("mini header type")?,
                size: r.u32("mini header size")?,
            })
        })
    }
}

/// Which header a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Full,
    Mini,
}

impl HeaderKind {
    pub fn from_mini(mini: bool) -> Self {
        if mini {
            HeaderKind::Mini
        } else {
            HeaderKind::Full
        }
    }

    pub fn size(self) -> usize {
        match self {
            HeaderKind::Full => DATA_HEADER_SIZE,
            HeaderKind::Mini => MINI_HEADER_SIZE,
        }
    }
}

/// One complete message as framed off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// From the full header; counted locally (1, 2, …) with the mini header.
    pub serial: u64,
    pub msg_type: u16,
    pub sub_list: u32,
    pub body: Vec<u8>,
}

/// Appends a header and `body` for one outgoing message.
pub fn write_message(kind: HeaderKind, serial: u64, msg_type: u16, body: &[u8], out: &mut Vec<u8>) {
    match kind {
        HeaderKind::Full => DataHeader {
            serial,
            msg_type,
            size: body.len() as u32,
            sub_list: 0,
        }
        .encode(out),
        HeaderKind::Mini => MiniHeader {
            msg_type,
            size: body.len() as u32,
        }
        .encode(out),
    }
    out.extend_from_slice(body);
}

/// Splits a byte stream into messages.
///
/// Bytes are pushed as they arrive; [`Framer::next_message`] returns each
/// complete message. A header announcing more than `max_size` body bytes is an
/// error before anything is reserved for it, and the framer stays failed since
/// the stream can no longer be trusted.
pub struct Framer {
    kind: HeaderKind,
    max_size: u32,
    buf: Vec<u8>,
    start: usize,
    serial: u64,
    failed: Option<ProtoError>,
}

impl Framer {
    pub fn new(kind: HeaderKind, max_size: u32) -> Self {
        Framer {
            kind,
            max_size,
            buf: Vec::new(),
            start: 0,
            serial: 0,
            failed: None,
        }
    }

    pub fn kind(&self) -> HeaderKind {
        self.kind
    }

    /// Bytes held but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.start..];
        let hs = self.kind.size();
        if avail.len() < hs {
            return Ok(None);
        }
        let (serial, msg_type, size, sub_list) = match self.kind {
            HeaderKind::Full => {
                let h = DataHeader::decode(&avail[..hs])?;
                (h.serial, h.msg_type, h.size, h.sub_list)
            }
            HeaderKind::Mini => {
                let h = MiniHeader::decode(&avail[..hs])?;
                (self.serial + 1, h.msg_type, h.size, 0)
            }
        };
        if size > self.max_size {
            let e = ProtoError::TooLarge {
                size: size.into(),
                max: self.max_size.into(),
            };
            self.failed = Some(e.clone());
            return Err(e);
        }
        let total = hs + size as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let body = avail[hs..total].to_vec();
        self.start += total;
        self.serial = serial;
        Ok(Some(RawMessage {
            serial,
            msg_type,
            sub_list,
            body,
        }))
    }
}
