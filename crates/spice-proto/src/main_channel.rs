//! Main channel messages (spice.proto `MainChannel`).

use crate::common::{channel_message, BaseClientMsg, BaseServerMsg};
use crate::consts::{msg::main as sm, msgc::main as cm, LinkErr};
use crate::error::{ProtoError, Result};
use crate::wire::{BodyBuilder, Reader};

/// `ChannelId`: one entry of CHANNELS_LIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelId {
    pub channel_type: u8,
    pub id: u8,
}

/// SPICE_MSG_MAIN_INIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MainInit {
    /// The connection id other channels link with.
    pub session_id: u32,
    pub display_channels_hint: u32,
    /// `mouse_mode` bits, as a u32 here.
    pub supported_mouse_modes: u32,
    pub current_mouse_mode: u32,
    pub agent_connected: u32,
    pub agent_tokens: u32,
    pub multi_media_time: u32,
    pub ram_hint: u32,
}

/// `DstInfo` / MIGRATE_SWITCH_HOST body: where a client should reconnect.
/// Byte strings are kept as sent, NUL included; empty means a null pointer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationDstInfo {
    pub port: u16,
    pub sport: u16,
    pub host: Vec<u8>,
    pub cert_subject: Vec<u8>,
}

fn read_ptr_bytes(r: &mut Reader<'_>, size: u32, what: &'static str) -> Result<Vec<u8>> {
    match r.ptr(what)? {
        None if size == 0 => Ok(Vec::new()),
        None => Err(ProtoError::NullPointer { what }),
        Some(mut pr) => {
            let n = pr.check_count(size.into(), 1, what)?;
            pr.bytes(n, what)
        }
    }
}

fn write_ptr_bytes<'a>(b: &mut BodyBuilder<'a>, d: &'a [u8]) {
    if d.is_empty() {
        b.u32(0);
    } else {
        b.ptr(move |b| b.bytes(d));
    }
}

impl MigrationDstInfo {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let port = r.u16("dst_info port")?;
        let sport = r.u16("dst_info sport")?;
        let hs = r.u32("dst_info host_size")?;
        let host = read_ptr_bytes(r, hs, "dst_info host_data")?;
        let cs = r.u32("dst_info cert_subject_size")?;
        let cert_subject = read_ptr_bytes(r, cs, "dst_info cert_subject_data")?;
        Ok(MigrationDstInfo {
            port,
            sport,
            host,
            cert_subject,
        })
    }
    fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        b.u16(self.port);
        b.u16(self.sport);
        b.u32(self.host.len() as u32);
        write_ptr_bytes(b, &self.host);
        b.u32(self.cert_subject.len() as u32);
        write_ptr_bytes(b, &self.cert_subject);
    }
}

/// Server→client main channel messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainServerMsg {
    Base(BaseServerMsg),
    MigrateBegin(MigrationDstInfo),
    MigrateCancel,
    Init(MainInit),
    ChannelsList(Vec<ChannelId>),
    MouseMode {
        /// `mouse_mode` bits (u16 on the wire).
        supported: u16,
        current: u16,
    },
    MultiMediaTime(u32),
    AgentConnected,
    AgentDisconnected(LinkErr),
    /// A slice of the agent byte stream (VDAgentMessage headers and data).
    AgentData(Vec<u8>),
    AgentToken(u32),
    MigrateSwitchHost(MigrationDstInfo),
    MigrateEnd,
    /// As sent: spice-server includes the terminating NUL.
    Name(Vec<u8>),
    Uuid([u8; 16]),
    AgentConnectedTokens(u32),
    MigrateBeginSeamless {
        dst_info: MigrationDstInfo,
        src_mig_version: u32,
    },
    MigrateDstSeamlessAck,
    MigrateDstSeamlessNack,
}

impl MainServerMsg {
    fn type_of(&self) -> u16 {
        match self {
            Self::Base(m) => m.msg_type(),
            Self::MigrateBegin(_) => sm::MIGRATE_BEGIN,
            Self::MigrateCancel => sm::MIGRATE_CANCEL,
            Self::Init(_) => sm::INIT,
            Self::ChannelsList(_) => sm::CHANNELS_LIST,
            Self::MouseMode { .. } => sm::MOUSE_MODE,
            Self::MultiMediaTime(_) => sm::MULTI_MEDIA_TIME,
            Self::AgentConnected => sm::AGENT_CONNECTED,
            Self::AgentDisconnected(_) => sm::AGENT_DISCONNECTED,
            Self::AgentData(_) => sm::AGENT_DATA,
            Self::AgentToken(_) => sm::AGENT_TOKEN,
            Self::MigrateSwitchHost(_) => sm::MIGRATE_SWITCH_HOST,
            Self::MigrateEnd => sm::MIGRATE_END,
            Self::Name(_) => sm::NAME,
            Self::Uuid(_) => sm::UUID,
            Self::AgentConnectedTokens(_) => sm::AGENT_CONNECTED_TOKENS,
            Self::MigrateBeginSeamless { .. } => sm::MIGRATE_BEGIN_SEAMLESS,
            Self::MigrateDstSeamlessAck => sm::MIGRATE_DST_SEAMLESS_ACK,
            Self::MigrateDstSeamlessNack => sm::MIGRATE_DST_SEAMLESS_NACK,
        }
    }

    fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        match self {
            Self::Base(m) => m.write(b),
            Self::MigrateBegin(d) | Self::MigrateSwitchHost(d) => d.write(b),
            Self::MigrateCancel
            | Self::AgentConnected
            | Self::MigrateEnd
            | Self::MigrateDstSeamlessAck
            | Self::MigrateDstSeamlessNack => {}
            Self::Init(i) => {
                for v in [
                    i.session_id,
                    i.display_channels_hint,
                    i.supported_mouse_modes,
                    i.current_mouse_mode,
                    i.agent_connected,
                    i.agent_tokens,
                    i.multi_media_time,
                    i.ram_hint,
                ] {
                    b.u32(v);
                }
            }
            Self::ChannelsList(l) => {
                b.u32(l.len() as u32);
                for c in l {
                    b.u8(c.channel_type);
                    b.u8(c.id);
                }
            }
            Self::MouseMode { supported, current } => {
                b.u16(*supported);
                b.u16(*current);
            }
            Self::MultiMediaTime(v) | Self::AgentToken(v) | Self::AgentConnectedTokens(v) => {
                b.u32(*v)
            }
            Self::AgentDisconnected(e) => b.u32(e.0),
            Self::AgentData(d) => b.bytes(d),
            Self::Name(n) => {
                b.u32(n.len() as u32);
                b.bytes(n);
            }
            Self::Uuid(u) => b.bytes(u),
            Self::MigrateBeginSeamless {
                dst_info,
                src_mig_version,
            } => {
                dst_info.write(b);
                b.u32(*src_mig_version);
            }
        }
    }

    fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(Some(match t {
            sm::MIGRATE_BEGIN => Self::MigrateBegin(MigrationDstInfo::read(r)?),
            sm::MIGRATE_CANCEL => Self::MigrateCancel,
            sm::INIT => Self::Init(MainInit {
                session_id: r.u32("init session_id")?,
                display_channels_hint: r.u32("init display_channels_hint")?,
                supported_mouse_modes: r.u32("init supported_mouse_modes")?,
                current_mouse_mode: r.u32("init current_mouse_mode")?,
                agent_connected: r.u32("init agent_connected")?,
                agent_tokens: r.u32("init agent_tokens")?,
                multi_media_time: r.u32("init multi_media_time")?,
                ram_hint: r.u32("init ram_hint")?,
            }),
            sm::CHANNELS_LIST => {
                let n = r.u32("channels_list num_of_channels")?;
                Self::ChannelsList(r.array(n.into(), 2, "channels_list", |r| {
                    Ok(ChannelId {
                        channel_type: r.u8("channel type")?,
                        id: r.u8("channel id")?,
                    })
                })?)
            }
            sm::MOUSE_MODE => Self::MouseMode {
                supported: r.u16("mouse_mode supported_modes")?,
                current: r.u16("mouse_mode current_mode")?,
            },
            sm::MULTI_MEDIA_TIME => Self::MultiMediaTime(r.u32("multi_media_time")?),
            sm::AGENT_CONNECTED => Self::AgentConnected,
            sm::AGENT_DISCONNECTED => {
                Self::AgentDisconnected(LinkErr(r.u32("agent_disconnected error_code")?))
            }
            sm::AGENT_DATA => Self::AgentData(r.rest("agent_data")?),
            sm::AGENT_TOKEN => Self::AgentToken(r.u32("agent_token num_tokens")?),
            sm::MIGRATE_SWITCH_HOST => Self::MigrateSwitchHost(MigrationDstInfo::read(r)?),
            sm::MIGRATE_END => Self::MigrateEnd,
            sm::NAME => {
                let n = r.u32("name name_len")?;
                let n = r.check_count(n.into(), 1, "name")?;
                Self::Name(r.bytes(n, "name")?)
            }
            sm::UUID => {
                let mut u = [0u8; 16];
                u.copy_from_slice(r.take(16, "uuid")?);
                Self::Uuid(u)
            }
            sm::AGENT_CONNECTED_TOKENS => {
                Self::AgentConnectedTokens(r.u32("agent_connected_tokens num_tokens")?)
            }
            sm::MIGRATE_BEGIN_SEAMLESS => Self::MigrateBeginSeamless {
                dst_info: MigrationDstInfo::read(r)?,
                src_mig_version: r.u32("migrate_begin_seamless src_mig_version")?,
            },
            sm::MIGRATE_DST_SEAMLESS_ACK => Self::MigrateDstSeamlessAck,
            sm::MIGRATE_DST_SEAMLESS_NACK => Self::MigrateDstSeamlessNack,
            _ => return Ok(None),
        }))
    }
}

channel_message!(MainServerMsg, BaseServerMsg, "main (server)");

/// Client→server main channel messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainClientMsg {
    Base(BaseClientMsg),
    ClientInfo {
        cache_size: u64,
    },
    MigrateConnected,
    MigrateConnectError,
    AttachChannels,
    /// `mouse_mode` bit requested (u16 on the wire).
    MouseModeRequest(u16),
    AgentStart(u32),
    AgentData(Vec<u8>),
    AgentToken(u32),
    MigrateEnd,
    MigrateDstDoSeamless {
        src_version: u32,
    },
    MigrateConnectedSeamless,
}

impl MainClientMsg {
    fn type_of(&self) -> u16 {
        match self {
            Self::Base(m) => m.msg_type(),
            Self::ClientInfo { .. } => cm::CLIENT_INFO,
            Self::MigrateConnected => cm::MIGRATE_CONNECTED,
            Self::MigrateConnectError => cm::MIGRATE_CONNECT_ERROR,
            Self::AttachChannels => cm::ATTACH_CHANNELS,
            Self::MouseModeRequest(_) => cm::MOUSE_MODE_REQUEST,
            Self::AgentStart(_) => cm::AGENT_START,
            Self::AgentData(_) => cm::AGENT_DATA,
            Self::AgentToken(_) => cm::AGENT_TOKEN,
            Self::MigrateEnd => cm::MIGRATE_END,
            Self::MigrateDstDoSeamless { .. } => cm::MIGRATE_DST_DO_SEAMLESS,
            Self::MigrateConnectedSeamless => cm::MIGRATE_CONNECTED_SEAMLESS,
        }
    }

    fn write(&self, b: &mut BodyBuilder<'_>) {
        match self {
            Self::Base(m) => m.write(b),
            Self::ClientInfo { cache_size } => b.u64(*cache_size),
            Self::MigrateConnected
            | Self::MigrateConnectError
            | Self::AttachChannels
            | Self::MigrateEnd
            | Self::MigrateConnectedSeamless => {}
            Self::MouseModeRequest(m) => b.u16(*m),
            Self::AgentStart(v) | Self::AgentToken(v) => b.u32(*v),
            Self::AgentData(d) => b.bytes(d),
            Self::MigrateDstDoSeamless { src_version } => b.u32(*src_version),
        }
    }

    fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(Some(match t {
            cm::CLIENT_INFO => Self::ClientInfo {
                cache_size: r.u64("client_info cache_size")?,
            },
            cm::MIGRATE_CONNECTED => Self::MigrateConnected,
            cm::MIGRATE_CONNECT_ERROR => Self::MigrateConnectError,
            cm::ATTACH_CHANNELS => Self::AttachChannels,
            cm::MOUSE_MODE_REQUEST => Self::MouseModeRequest(r.u16("mouse_mode_request mode")?),
            cm::AGENT_START => Self::AgentStart(r.u32("agent_start num_tokens")?),
            cm::AGENT_DATA => Self::AgentData(r.rest("agent_data")?),
            cm::AGENT_TOKEN => Self::AgentToken(r.u32("agent_token num_tokens")?),
            cm::MIGRATE_END => Self::MigrateEnd,
            cm::MIGRATE_DST_DO_SEAMLESS => Self::MigrateDstDoSeamless {
                src_version: r.u32("migrate_dst_do_seamless src_version")?,
            },
            cm::MIGRATE_CONNECTED_SEAMLESS => Self::MigrateConnectedSeamless,
            _ => return Ok(None),
        }))
    }
}

channel_message!(MainClientMsg, BaseClientMsg, "main (client)");
