//! Messages every channel understands (types below 101), spice.proto `BaseChannel`.

use crate::consts::{msg, msgc, LinkErr};
use crate::error::{ProtoError, Result};
use crate::wire::{decode_body, BodyBuilder, Reader};

/// A typed SPICE message of one channel and direction.
pub trait Message: Sized {
    /// The message type number sent in the data header.
    fn msg_type(&self) -> u16;
    /// Appends the body (offsets inside it count from where it starts).
    fn encode(&self, out: &mut Vec<u8>);
    /// Parses a body received with type `msg_type`.
    fn decode(msg_type: u16, body: &[u8]) -> Result<Self>;

    /// The body alone, in a fresh buffer.
    fn to_body(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// `ChannelWait` / `WaitForChannel`: wait until that channel has processed `message_serial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitForChannel {
    pub channel_type: u8,
    pub channel_id: u8,
    pub message_serial: u64,
}

impl WaitForChannel {
    pub(crate) fn read_list(r: &mut Reader<'_>) -> Result<Vec<Self>> {
        let n = r.u8("wait_count")?;
        r.array(n.into(), 10, "wait_list", |r| {
            Ok(WaitForChannel {
                channel_type: r.u8("wait channel_type")?,
                channel_id: r.u8("wait channel_id")?,
                message_serial: r.u64("wait message_serial")?,
            })
        })
    }
    pub(crate) fn write_list(list: &[Self], b: &mut BodyBuilder<'_>) {
        let n = list.len().min(255);
        b.u8(n as u8);
        for w in &list[..n] {
            b.u8(w.channel_type);
            b.u8(w.channel_id);
            b.u64(w.message_serial);
        }
    }
}

/// Server→client messages shared by all channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseServerMsg {
    Migrate {
        /// `migrate_flags`.
        flags: u32,
    },
    MigrateData(Vec<u8>),
    SetAck {
        generation: u32,
        window: u32,
    },
    Ping {
        id: u32,
        timestamp: u64,
        /// Padding used by spice-server's bandwidth test.
        data: Vec<u8>,
    },
    /// At most 255 entries.
    WaitForChannels(Vec<WaitForChannel>),
    Disconnecting {
        time_stamp: u64,
        reason: LinkErr,
    },
    Notify {
        time_stamp: u64,
        /// `notify_severity`.
        severity: u32,
        /// `notify_visibility`.
        visibility: u32,
        what: u32,
        /// As sent (spice-server includes the terminating NUL).
        message: Vec<u8>,
    },
}

impl BaseServerMsg {
    pub fn msg_type(&self) -> u16 {
        use msg::base::*;
        match self {
            BaseServerMsg::Migrate { .. } => MIGRATE,
            BaseServerMsg::MigrateData(_) => MIGRATE_DATA,
            BaseServerMsg::SetAck { .. } => SET_ACK,
            BaseServerMsg::Ping { .. } => PING,
            BaseServerMsg::WaitForChannels(_) => WAIT_FOR_CHANNELS,
            BaseServerMsg::Disconnecting { .. } => DISCONNECTING,
            BaseServerMsg::Notify { .. } => NOTIFY,
        }
    }

    pub(crate) fn write(&self, b: &mut BodyBuilder<'_>) {
        match self {
            BaseServerMsg::Migrate { flags } => b.u32(*flags),
            BaseServerMsg::MigrateData(d) => b.bytes(d),
            BaseServerMsg::SetAck { generation, window } => {
                b.u32(*generation);
                b.u32(*window);
            }
            BaseServerMsg::Ping {
                id,
                timestamp,
                data,
            } => {
                b.u32(*id);
                b.u64(*timestamp);
                b.bytes(data);
            }
            BaseServerMsg::WaitForChannels(l) => WaitForChannel::write_list(l, b),
            BaseServerMsg::Disconnecting { time_stamp, reason } => {
                b.u64(*time_stamp);
                b.u32(reason.0);
            }
            BaseServerMsg::Notify {
                time_stamp,
                severity,
                visibility,
                what,
                message,
            } => {
                b.u64(*time_stamp);
                b.u32(*severity);
                b.u32(*visibility);
                b.u32(*what);
                b.u32(message.len() as u32);
                b.bytes(message);
            }
        }
    }

    /// `None` when `t` is not a base message type.
    pub(crate) fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        use msg::base::*;
        Ok(Some(match t {
            MIGRATE => BaseServerMsg::Migrate {
                flags: r.u32("migrate flags")?,
            },
            MIGRATE_DATA => BaseServerMsg::MigrateData(r.rest("migrate data")?),
            SET_ACK => BaseServerMsg::SetAck {
                generation: r.u32("set_ack generation")?,
                window: r.u32("set_ack window")?,
            },
            PING => BaseServerMsg::Ping {
                id: r.u32("ping id")?,
                timestamp: r.u64("ping timestamp")?,
                data: r.rest("ping data")?,
            },
            WAIT_FOR_CHANNELS => BaseServerMsg::WaitForChannels(WaitForChannel::read_list(r)?),
            DISCONNECTING => BaseServerMsg::Disconnecting {
                time_stamp: r.u64("disconnecting time_stamp")?,
                reason: LinkErr(r.u32("disconnecting reason")?),
            },
            NOTIFY => {
                let time_stamp = r.u64("notify time_stamp")?;
                let severity = r.u32("notify severity")?;
                let visibility = r.u32("notify visibility")?;
                let what = r.u32("notify what")?;
                let n = r.u32("notify message_len")?;
                let n = r.check_count(n.into(), 1, "notify message")?;
                BaseServerMsg::Notify {
                    time_stamp,
                    severity,
                    visibility,
                    what,
                    message: r.bytes(n, "notify message")?,
                }
            }
            _ => return Ok(None),
        }))
    }
}

/// Client→server messages shared by all channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseClientMsg {
    AckSync { generation: u32 },
    Ack,
    Pong { id: u32, timestamp: u64 },
    MigrateFlushMark,
    MigrateData(Vec<u8>),
    Disconnecting { time_stamp: u64, reason: LinkErr },
}

impl BaseClientMsg {
    pub fn msg_type(&self) -> u16 {
        use msgc::base::*;
        match self {
            BaseClientMsg::AckSync { .. } => ACK_SYNC,
            BaseClientMsg::Ack => ACK,
            BaseClientMsg::Pong { .. } => PONG,
            BaseClientMsg::MigrateFlushMark => MIGRATE_FLUSH_MARK,
            BaseClientMsg::MigrateData(_) => MIGRATE_DATA,
            BaseClientMsg::Disconnecting { .. } => DISCONNECTING,
        }
    }

    pub(crate) fn write(&self, b: &mut BodyBuilder<'_>) {
        match self {
            BaseClientMsg::AckSync { generation } => b.u32(*generation),
            BaseClientMsg::Ack | BaseClientMsg::MigrateFlushMark => {}
            BaseClientMsg::Pong { id, timestamp } => {
                b.u32(*id);
                b.u64(*timestamp);
            }
            BaseClientMsg::MigrateData(d) => b.bytes(d),
            BaseClientMsg::Disconnecting { time_stamp, reason } => {
                b.u64(*time_stamp);
                b.u32(reason.0);
            }
        }
    }

    pub(crate) fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        use msgc::base::*;
        Ok(Some(match t {
            ACK_SYNC => BaseClientMsg::AckSync {
                generation: r.u32("ack_sync generation")?,
            },
            ACK => BaseClientMsg::Ack,
            PONG => BaseClientMsg::Pong {
                id: r.u32("pong id")?,
                timestamp: r.u64("pong timestamp")?,
            },
            MIGRATE_FLUSH_MARK => BaseClientMsg::MigrateFlushMark,
            MIGRATE_DATA => BaseClientMsg::MigrateData(r.rest("migrate data")?),
            DISCONNECTING => BaseClientMsg::Disconnecting {
                time_stamp: r.u64("disconnecting time_stamp")?,
                reason: LinkErr(r.u32("disconnecting reason")?),
            },
            _ => return Ok(None),
        }))
    }
}

impl Message for BaseServerMsg {
    fn msg_type(&self) -> u16 {
        BaseServerMsg::msg_type(self)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        let mut b = BodyBuilder::new(out);
        self.write(&mut b);
        b.finish();
    }
    fn decode(t: u16, body: &[u8]) -> Result<Self> {
        decode_body(body, |r| Self::read(t, r))?.ok_or(ProtoError::UnknownMessage {
            channel: "base (server)",
            msg_type: t,
        })
    }
}

impl Message for BaseClientMsg {
    fn msg_type(&self) -> u16 {
        BaseClientMsg::msg_type(self)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        let mut b = BodyBuilder::new(out);
        self.write(&mut b);
        b.finish();
    }
    fn decode(t: u16, body: &[u8]) -> Result<Self> {
        decode_body(body, |r| Self::read(t, r))?.ok_or(ProtoError::UnknownMessage {
            channel: "base (client)",
            msg_type: t,
        })
    }
}

/// Implements [`Message`] for a channel enum with a `Base` variant, given its
/// `type_of`, `write` (all variants) and `read` (channel-specific types) methods.
macro_rules! channel_message {
    ($ty:ty, $base:ident, $name:literal) => {
        impl $crate::common::Message for $ty {
            fn msg_type(&self) -> u16 {
                self.type_of()
            }
            fn encode(&self, out: &mut Vec<u8>) {
                let mut b = $crate::wire::BodyBuilder::new(out);
                self.write(&mut b);
                b.finish();
            }
            fn decode(t: u16, body: &[u8]) -> $crate::error::Result<Self> {
                $crate::wire::decode_body(body, |r| {
                    if t < $crate::consts::msg::base::BASE_LAST {
                        if let Some(m) = $crate::common::$base::read(t, r)? {
                            return Ok(Self::Base(m));
                        }
                    } else if let Some(m) = Self::read(t, r)? {
                        return Ok(m);
                    }
                    Err($crate::error::ProtoError::UnknownMessage {
                        channel: $name,
                        msg_type: t,
                    })
                })
            }
        }
    };
}
pub(crate) use channel_message;
