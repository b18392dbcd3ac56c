//! The vdagent protocol carried inside main-channel AGENT_DATA messages
//! (spice-protocol `spice/vd_agent.h`).
//!
//! Client and server exchange a byte stream of `VDAgentMessage` (20-byte
//! header + data) split into AGENT_DATA messages of at most
//! [`MAX_DATA_SIZE`] bytes. Between server and guest agent the same messages
//! travel in `VDIChunkHeader` chunks. Clipboard bodies gain a 4-byte selection
//! prefix when both ends announced `CLIPBOARD_SELECTION`, and GRAB gains a
//! serial with `CLIPBOARD_GRAB_SERIAL`; decoders therefore take [`AgentCaps`].

use crate::error::{ProtoError, Result};
use crate::wire::{decode_body, BodyBuilder, Reader};

pub const PROTOCOL: u32 = 1;
/// Largest AGENT_DATA payload a peer sends in one main-channel message.
pub const MAX_DATA_SIZE: usize = 2048;
pub const HEADER_SIZE: usize = 20;
pub const CHUNK_HEADER_SIZE: usize = 8;

/// `VDIChunkHeader` ports.
pub mod port {
    pub const CLIENT: u32 = 1;
    pub const SERVER: u32 = 2;
}

/// Agent message types.
pub mod msg {
    pub const MOUSE_STATE: u32 = 1;
    pub const MONITORS_CONFIG: u32 = 2;
    pub const REPLY: u32 = 3;
    pub const CLIPBOARD: u32 = 4;
    pub const DISPLAY_CONFIG: u32 = 5;
    pub const ANNOUNCE_CAPABILITIES: u32 = 6;
    pub const CLIPBOARD_GRAB: u32 = 7;
    pub const CLIPBOARD_REQUEST: u32 = 8;
    pub const CLIPBOARD_RELEASE: u32 = 9;
    pub const FILE_XFER_START: u32 = 10;
    pub const FILE_XFER_STATUS: u32 = 11;
    pub const FILE_XFER_DATA: u32 = 12;
    pub const CLIENT_DISCONNECTED: u32 = 13;
    pub const MAX_CLIPBOARD: u32 = 14;
    pub const AUDIO_VOLUME_SYNC: u32 = 15;
    pub const GRAPHICS_DEVICE_INFO: u32 = 16;
}

/// Agent capability bit numbers.
pub mod cap {
    pub const MOUSE_STATE: u32 = 0;
    pub const MONITORS_CONFIG: u32 = 1;
    pub const REPLY: u32 = 2;
    pub const CLIPBOARD: u32 = 3;
    pub const DISPLAY_CONFIG: u32 = 4;
    pub const CLIPBOARD_BY_DEMAND: u32 = 5;
    pub const CLIPBOARD_SELECTION: u32 = 6;
    pub const SPARSE_MONITORS_CONFIG: u32 = 7;
    pub const GUEST_LINEEND_LF: u32 = 8;
    pub const GUEST_LINEEND_CRLF: u32 = 9;
    pub const MAX_CLIPBOARD: u32 = 10;
    pub const AUDIO_VOLUME_SYNC: u32 = 11;
    pub const MONITORS_CONFIG_POSITION: u32 = 12;
    pub const FILE_XFER_DISABLED: u32 = 13;
    pub const FILE_XFER_DETAILED_ERRORS: u32 = 14;
    pub const GRAPHICS_DEVICE_INFO: u32 = 15;
    pub const CLIPBOARD_NO_RELEASE_ON_REGRAB: u32 = 16;
    pub const CLIPBOARD_GRAB_SERIAL: u32 = 17;
}

/// Clipboard data types.
pub mod clipboard_type {
    pub const NONE: u32 = 0;
    pub const UTF8_TEXT: u32 = 1;
    pub const IMAGE_PNG: u32 = 2;
    pub const IMAGE_BMP: u32 = 3;
    pub const IMAGE_TIFF: u32 = 4;
    pub const IMAGE_JPG: u32 = 5;
    pub const FILE_LIST: u32 = 6;
}

pub mod selection {
    pub const CLIPBOARD: u8 = 0;
    pub const PRIMARY: u8 = 1;
    pub const SECONDARY: u8 = 2;
}

pub const SUCCESS: u32 = 1;
pub const ERROR: u32 = 2;
pub const MONITORS_FLAG_USE_POS: u32 = 1 << 0;
pub const MONITORS_FLAG_PHYSICAL_SIZE: u32 = 1 << 1;

/// `VDIChunkHeader`: framing between server and guest agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub port: u32,
    pub size: u32,
}

impl ChunkHeader {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.port.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
    }
    pub fn decode(b: &[u8]) -> Result<Self> {
        decode_body(b, |r| {
            Ok(ChunkHeader {
                port: r.u32("chunk port")?,
                size: r.u32("chunk size")?,
            })
        })
    }
}

/// `VDAgentMessage` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentHeader {
    pub protocol: u32,
    pub msg_type: u32,
    pub opaque: u64,
    /// Size of the data that follows.
    pub size: u32,
}

impl AgentHeader {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.protocol.to_le_bytes());
        out.extend_from_slice(&self.msg_type.to_le_bytes());
        out.extend_from_slice(&self.opaque.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
    }
    pub fn decode(b: &[u8]) -> Result<Self> {
        decode_body(b, |r| {
            Ok(AgentHeader {
                protocol: r.u32("agent protocol")?,
                msg_type: r.u32("agent type")?,
                opaque: r.u64("agent opaque")?,
                size: r.u32("agent size")?,
            })
        })
    }
}

/// Which optional clipboard fields the peers negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentCaps {
    pub clipboard_selection: bool,
    pub grab_serial: bool,
}

impl AgentCaps {
    /// What applies when both sides announced `ours` and `theirs`.
    pub fn negotiate(ours: &[u32], theirs: &[u32]) -> Self {
        let both = |c| crate::link::has_cap(ours, c) && crate::link::has_cap(theirs, c);
        AgentCaps {
            clipboard_selection: both(cap::CLIPBOARD_SELECTION),
            grab_serial: both(cap::CLIPBOARD_GRAB_SERIAL),
        }
    }
}

/// `VDAgentMonConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MonConfig {
    pub height: u32,
    pub width: u32,
    pub depth: u32,
    pub x: i32,
    pub y: i32,
}

/// Typed agent messages (the ones the SPICE server/client handle themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMessage {
    AnnounceCapabilities {
        request: bool,
        caps: Vec<u32>,
    },
    MonitorsConfig {
        /// Flags other than `PHYSICAL_SIZE`, which follows `physical_sizes`.
        flags: u32,
        monitors: Vec<MonConfig>,
        /// Per monitor (height, width) in mm; must match `monitors` in length.
        physical_sizes: Option<Vec<(u16, u16)>>,
    },
    Reply {
        msg_type: u32,
        error: u32,
    },
    ClipboardGrab {
        selection: Option<u8>,
        serial: Option<u32>,
        types: Vec<u32>,
    },
    ClipboardRequest {
        selection: Option<u8>,
        clip_type: u32,
    },
    Clipboard {
        selection: Option<u8>,
        clip_type: u32,
        data: Vec<u8>,
    },
    ClipboardRelease {
        selection: Option<u8>,
    },
    /// Any other type, data kept as bytes.
    Other {
        msg_type: u32,
        data: Vec<u8>,
    },
}

fn read_selection(r: &mut Reader<'_>, caps: AgentCaps) -> Result<Option<u8>> {
    if !caps.clipboard_selection {
        return Ok(None);
    }
    let s = r.u8("clipboard selection")?;
    r.take(3, "clipboard selection reserved")?;
    Ok(Some(s))
}

fn write_selection(b: &mut BodyBuilder<'_>, s: Option<u8>) {
    if let Some(s) = s {
        b.u8(s);
        b.bytes(&[0, 0, 0]);
    }
}

impl AgentMessage {
    pub fn msg_type(&self) -> u32 {
        match self {
            Self::AnnounceCapabilities { .. } => msg::ANNOUNCE_CAPABILITIES,
            Self::MonitorsConfig { .. } => msg::MONITORS_CONFIG,
            Self::Reply { .. } => msg::REPLY,
            Self::ClipboardGrab { .. } => msg::CLIPBOARD_GRAB,
            Self::ClipboardRequest { .. } => msg::CLIPBOARD_REQUEST,
            Self::Clipboard { .. } => msg::CLIPBOARD,
            Self::ClipboardRelease { .. } => msg::CLIPBOARD_RELEASE,
            Self::Other { msg_type, .. } => *msg_type,
        }
    }

    /// Appends the message data (without the agent header).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = BodyBuilder::new(out);
        match self {
            Self::AnnounceCapabilities { request, caps } => {
                b.u32(u32::from(*request));
                for &c in caps {
                    b.u32(c);
                }
            }
            Self::MonitorsConfig {
                flags,
                monitors,
                physical_sizes,
            } => {
                b.u32(monitors.len() as u32);
                let f = flags & !MONITORS_FLAG_PHYSICAL_SIZE;
                b.u32(if physical_sizes.is_some() {
                    f | MONITORS_FLAG_PHYSICAL_SIZE
                } else {
                    f
                });
                for m in monitors {
                    b.u32(m.height);
                    b.u32(m.width);
                    b.u32(m.depth);
                    b.i32(m.x);
                    b.i32(m.y);
                }
                if let Some(ps) = physical_sizes {
                    for &(h, w) in ps {
                        b.u16(h);
                        b.u16(w);
                    }
                }
            }
            Self::Reply { msg_type, error } => {
                b.u32(*msg_type);
                b.u32(*error);
            }
            Self::ClipboardGrab {
                selection,
                serial,
                types,
            } => {
                write_selection(&mut b, *selection);
                if let Some(s) = serial {
                    b.u32(*s);
                }
                for &t in types {
                    b.u32(t);
                }
            }
            Self::ClipboardRequest {
                selection,
                clip_type,
            } => {
                write_selection(&mut b, *selection);
                b.u32(*clip_type);
            }
            Self::Clipboard {
                selection,
                clip_type,
                data,
            } => {
                write_selection(&mut b, *selection);
                b.u32(*clip_type);
                b.bytes(data);
            }
            Self::ClipboardRelease { selection } => write_selection(&mut b, *selection),
            Self::Other { data, .. } => b.bytes(data),
        }
        b.finish();
    }

    /// Appends the agent header and the data.
    pub fn encode_with_header(&self, out: &mut Vec<u8>) {
        let mut data = Vec::new();
        self.encode(&mut data);
        AgentHeader {
            protocol: PROTOCOL,
            msg_type: self.msg_type(),
            opaque: 0,
            size: data.len() as u32,
        }
        .encode(out);
        out.extend_from_slice(&data);
    }

    /// Parses message data of type `msg_type`.
    pub fn decode(msg_type: u32, data: &[u8], caps: AgentCaps) -> Result<Self> {
        decode_body(data, |r| {
            Ok(match msg_type {
                msg::ANNOUNCE_CAPABILITIES => {
                    let request = r.u32("announce_capabilities request")? != 0;
                    let n = r.remaining() / 4;
                    Self::AnnounceCapabilities {
                        request,
                        caps: r.array(n as u64, 4, "announce_capabilities caps", |r| {
                            r.u32("cap word")
                        })?,
                    }
                }
                msg::MONITORS_CONFIG => {
                    let n = r.u32("monitors_config num_of_monitors")?;
                    let flags = r.u32("monitors_config flags")?;
                    let monitors = r.array(n.into(), 20, "monitors_config monitors", |r| {
                        Ok(MonConfig {
                            height: r.u32("mon height")?,
                            width: r.u32("mon width")?,
                            depth: r.u32("mon depth")?,
                            x: r.i32("mon x")?,
                            y: r.i32("mon y")?,
                        })
                    })?;
                    let physical_sizes = if flags & MONITORS_FLAG_PHYSICAL_SIZE != 0 {
                        Some(r.array(n.into(), 4, "monitors_config physical sizes", |r| {
                            Ok((r.u16("mm height")?, r.u16("mm width")?))
                        })?)
                    } else {
                        None
                    };
                    Self::MonitorsConfig {
                        flags: flags & !MONITORS_FLAG_PHYSICAL_SIZE,
                        monitors,
                        physical_sizes,
                    }
                }
                msg::REPLY => Self::Reply {
                    msg_type: r.u32("reply type")?,
                    error: r.u32("reply error")?,
                },
                msg::CLIPBOARD_GRAB => {
                    let selection = read_selection(r, caps)?;
                    let serial = if caps.grab_serial {
                        Some(r.u32("clipboard_grab serial")?)
                    } else {
                        None
                    };
                    let n = r.remaining() / 4;
                    Self::ClipboardGrab {
                        selection,
                        serial,
                        types: r.array(n as u64, 4, "clipboard_grab types", |r| {
                            r.u32("clipboard type")
                        })?,
                    }
                }
                msg::CLIPBOARD_REQUEST => Self::ClipboardRequest {
                    selection: read_selection(r, caps)?,
                    clip_type: r.u32("clipboard_request type")?,
                },
                msg::CLIPBOARD => Self::Clipboard {
                    selection: read_selection(r, caps)?,
                    clip_type: r.u32("clipboard type")?,
                    data: r.rest("clipboard data")?,
                },
                msg::CLIPBOARD_RELEASE => Self::ClipboardRelease {
                    selection: read_selection(r, caps)?,
                },
                t => Self::Other {
                    msg_type: t,
                    data: r.rest("agent data")?,
                },
            })
        })
    }
}

/// Reassembles `VDAgentMessage`s from the AGENT_DATA byte stream.
///
/// Messages larger than `max_size` are an error before their data is buffered.
pub struct AgentReassembler {
    max_size: u32,
    buf: Vec<u8>,
}

impl AgentReassembler {
    pub fn new(max_size: u32) -> Self {
        AgentReassembler {
            max_size,
            buf: Vec::new(),
        }
    }

    /// Adds one AGENT_DATA payload.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message header and data, if any.
    pub fn next_message(&mut self) -> Result<Option<(AgentHeader, Vec<u8>)>> {
        if self.buf.len() < HEADER_SIZE {
            return Ok(None);
        }
        let h = AgentHeader::decode(&self.buf[..HEADER_SIZE])?;
        if h.size > self.max_size {
            return Err(ProtoError::TooLarge {
                size: h.size.into(),
                max: self.max_size.into(),
            });
        }
        let total = HEADER_SIZE + h.size as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let data = self.buf[HEADER_SIZE..total].to_vec();
        self.buf.drain(..total);
        Ok(Some((h, data)))
    }
}

/// Splits an encoded agent stream into AGENT_DATA payloads of at most [`MAX_DATA_SIZE`].
pub fn split_for_agent_data(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    stream.chunks(MAX_DATA_SIZE)
}
