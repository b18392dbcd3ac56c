//! The main channel: session setup, channel list, mouse mode, and a built-in VD agent.
//!
//! There is no guest agent process: the server itself answers the client's agent
//! messages. Monitor configuration resizes the source; the clipboard flows both ways
//! (client grab → we request the text → source clipboard; source change → we grab →
//! client requests → we send the text). Agent traffic obeys SPICE's token flow control
//! in both directions, with a bounded backlog.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use spice_proto::agent::{self, AgentCaps, AgentMessage, AgentReassembler};
use spice_proto::consts::{caps, channel};
use spice_proto::link::{caps_from_bits, has_cap, LinkInfo};
use spice_proto::main_channel::{ChannelId, MainInit};
use spice_proto::{BaseServerMsg, MainClientMsg, MainServerMsg, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};

use crate::conn::Channel;
use crate::{ServerError, Session, Shared};

/// Agent messages the client may send before we return tokens.
const AGENT_TOKENS: u32 = 10;
/// Largest agent message (e.g. clipboard text) we accept from a client.
const MAX_AGENT_MSG: u32 = 4 << 20;
/// AGENT_DATA chunks we hold while the client has no tokens for us.
const MAX_AGENT_BACKLOG: usize = 4096;
/// Largest main-channel message from a client.
const MAX_MAIN_MSG: u32 = 64 * 1024;
/// `mouse_mode` bits.
pub(crate) const MOUSE_SERVER: u16 = 1;
pub(crate) const MOUSE_CLIENT: u16 = 2;
const UTF8_MIME: &str = "text/plain;charset=utf-8";

fn our_agent_caps() -> Vec<u32> {
    caps_from_bits(&[
        agent::cap::MOUSE_STATE,
        agent::cap::MONITORS_CONFIG,
        agent::cap::REPLY,
        agent::cap::CLIPBOARD_BY_DEMAND,
    ])
}

struct Agent {
    /// Tokens the client granted us (AGENT_START / AGENT_TOKEN).
    tokens: u32,
    started: bool,
    backlog: VecDeque<Vec<u8>>,
    reasm: AgentReassembler,
    caps: AgentCaps,
    /// The text we last took from the client, so the source echoing it is not re-grabbed.
    from_client: Option<Vec<u8>>,
}

impl Agent {
    fn queue(&mut self, m: &AgentMessage) {
        let mut stream = Vec::new();
        m.encode_with_header(&mut stream);
        for chunk in agent::split_for_agent_data(&stream) {
            if self.backlog.len() >= MAX_AGENT_BACKLOG {
                tracing::warn!("agent backlog full; dropping agent data to the client");
                return;
            }
            self.backlog.push_back(chunk.to_vec());
        }
    }

    async fn flush(&mut self, ch: &Channel) -> Result<(), ServerError> {
        while self.started && self.tokens > 0 {
            let Some(c) = self.backlog.pop_front() else {
                break;
            };
            self.tokens -= 1;
            ch.send_msg(&MainServerMsg::AgentData(c)).await?;
        }
        Ok(())
    }
}

pub(crate) async fn run<S>(
    shared: Arc<Shared>,
    s: S,
    info: LinkInfo,
    early: Vec<u8>,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    if info.connection_id != 0 {
        tracing::debug!(
            id = info.connection_id,
            "main channel asked for an existing session; starting a new one"
        );
    }
    let counters = Arc::new(vec![shared.total.clone()]);
    let mut ch = Channel::start(s, &info, early, MAX_MAIN_MSG, counters, "main");
    let (closed_tx, closed_rx) = watch::channel(false);
    let session = {
        let mut map = shared
            .sessions
            .lock()
            .map_err(|_| ServerError::Protocol("session table poisoned".into()))?;
        let mut id;
        loop {
            id = rand::random::<u32>();
            if id != 0 && !map.contains_key(&id) {
                break;
            }
        }
        let s = Arc::new(Session {
            id,
            closed: closed_rx,
            mouse_mode: Mutex::new(MOUSE_CLIENT),
            display_links: Default::default(),
        });
        map.insert(id, s.clone());
        s
    };
    let r = serve_main(&shared, &session, &mut ch, &info).await;
    let _ = closed_tx.send(true);
    if let Ok(mut m) = shared.sessions.lock() {
        m.remove(&session.id);
    }
    ch.close().await;
    r
}

async fn serve_main(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    ch: &mut Channel,
    info: &LinkInfo,
) -> Result<(), ServerError> {
    ch.set_ack().await?;
    ch.send_msg(&MainServerMsg::Init(MainInit {
        session_id: session.id,
        display_channels_hint: 1,
        supported_mouse_modes: u32::from(MOUSE_SERVER | MOUSE_CLIENT),
        current_mouse_mode: u32::from(MOUSE_CLIENT),
        agent_connected: 1,
        agent_tokens: AGENT_TOKENS,
        multi_media_time: crate::mm_time(),
        ram_hint: 0,
    }))
    .await?;
    if has_cap(&info.peer_channel_caps, caps::main::NAME_AND_UUID) {
        let mut name = shared.config.name.as_bytes().to_vec();
        name.push(0);
        ch.send_msg(&MainServerMsg::Name(name)).await?;
        ch.send_msg(&MainServerMsg::Uuid(session_uuid(session.id)))
            .await?;
    }
    // One latency probe; spice-gtk answers every PING with a PONG.
    ch.send_msg(&MainServerMsg::Base(BaseServerMsg::Ping {
        id: 1,
        timestamp: u64::from(crate::mm_time()),
        data: Vec::new(),
    }))
    .await?;

    let mut agent = Agent {
        tokens: 0,
        started: false,
        backlog: VecDeque::new(),
        reasm: AgentReassembler::new(MAX_AGENT_MSG),
        caps: AgentCaps::default(),
        from_client: None,
    };
    let mut events = shared.source.subscribe();
    loop {
        tokio::select! {
            m = ch.rx.recv() => {
                let Some(m) = m else { return Ok(()) };
                let msg = MainClientMsg::decode(m.msg_type, &m.body).map_err(|e| {
                    ServerError::Protocol(format!("main message type {}: {e}", m.msg_type))
                })?;
                handle(shared, session, ch, &mut agent, msg).await?;
            }
            e = events.recv() => match e {
                Ok(coop_display::SourceEvent::ClipboardChanged { mime, data }) => {
                    if mime.starts_with("text/") && agent.from_client.as_deref() != Some(&data[..]) {
                        agent.queue(&AgentMessage::ClipboardGrab {
                            selection: None,
                            serial: None,
                            types: vec![agent::clipboard_type::UTF8_TEXT],
                        });
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(ServerError::Protocol("display source stopped".into()));
                }
            },
        }
        agent.flush(ch).await?;
    }
}

/// A stable UUID per session (random-looking, version 4 layout).
fn session_uuid(id: u32) -> [u8; 16] {
    let mut u: [u8; 16] = rand::random();
    u[..4].copy_from_slice(&id.to_be_bytes());
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

async fn handle(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    ch: &Channel,
    agent: &mut Agent,
    msg: MainClientMsg,
) -> Result<(), ServerError> {
    match msg {
        MainClientMsg::AttachChannels => {
            let list = [channel::DISPLAY, channel::INPUTS, channel::CURSOR]
                .map(|t| ChannelId {
                    channel_type: t,
                    id: 0,
                })
                .to_vec();
            ch.send_msg(&MainServerMsg::ChannelsList(list)).await?;
        }
        MainClientMsg::MouseModeRequest(mode) => {
            if mode == MOUSE_SERVER || mode == MOUSE_CLIENT {
                if let Ok(mut m) = session.mouse_mode.lock() {
                    *m = mode;
                }
            } else {
                tracing::debug!(mode, "unknown mouse mode requested");
            }
            let current = session
                .mouse_mode
                .lock()
                .map(|m| *m)
                .unwrap_or(MOUSE_CLIENT);
            ch.send_msg(&MainServerMsg::MouseMode {
                supported: MOUSE_SERVER | MOUSE_CLIENT,
                current,
            })
            .await?;
        }
        MainClientMsg::AgentStart(tokens) => {
            agent.tokens = tokens;
            agent.started = true;
            agent.queue(&AgentMessage::AnnounceCapabilities {
                request: true,
                caps: our_agent_caps(),
            });
        }
        MainClientMsg::AgentToken(n) => {
            agent.tokens = agent.tokens.saturating_add(n);
        }
        MainClientMsg::AgentData(d) => {
            agent.reasm.push(&d);
            loop {
                let next = agent.reasm.next_message().map_err(|e| {
                    ServerError::Protocol(format!("agent stream from the client: {e}"))
                })?;
                let Some((h, data)) = next else { break };
                match AgentMessage::decode(h.msg_type, &data, agent.caps) {
                    Ok(m) => agent_message(shared, agent, m).await,
                    Err(e) => {
                        tracing::warn!(msg_type = h.msg_type, error = %e, "bad agent message ignored")
                    }
                }
            }
            // The client spent one of our tokens on this chunk; give it back.
            ch.send_msg(&MainServerMsg::AgentToken(1)).await?;
        }
        MainClientMsg::ClientInfo { .. }
        | MainClientMsg::MigrateConnected
        | MainClientMsg::MigrateConnectError
        | MainClientMsg::MigrateEnd
        | MainClientMsg::MigrateDstDoSeamless { .. }
        | MainClientMsg::MigrateConnectedSeamless => {}
        MainClientMsg::Base(b) => {
            tracing::trace!(msg_type = b.msg_type(), "base message on main");
        }
    }
    Ok(())
}

async fn agent_message(shared: &Arc<Shared>, agent: &mut Agent, m: AgentMessage) {
    match m {
        AgentMessage::AnnounceCapabilities { request, caps } => {
            agent.caps = AgentCaps::negotiate(&our_agent_caps(), &caps);
            if request {
                agent.queue(&AgentMessage::AnnounceCapabilities {
                    request: false,
                    caps: our_agent_caps(),
                });
            }
        }
        AgentMessage::MonitorsConfig { monitors, .. } => {
            let mut result = agent::ERROR;
            if let Some(mon) = monitors.iter().find(|m| m.width > 0 && m.height > 0) {
                match shared.source.resize(mon.width, mon.height).await {
                    Ok(()) => result = agent::SUCCESS,
                    Err(e) => {
                        tracing::info!(w = mon.width, h = mon.height, error = %e, "resize refused")
                    }
                }
            }
            agent.queue(&AgentMessage::Reply {
                msg_type: agent::msg::MONITORS_CONFIG,
                error: result,
            });
        }
        AgentMessage::ClipboardGrab { types, .. } => {
            if types.contains(&agent::clipboard_type::UTF8_TEXT) {
                agent.queue(&AgentMessage::ClipboardRequest {
                    selection: None,
                    clip_type: agent::clipboard_type::UTF8_TEXT,
                });
            }
        }
        AgentMessage::Clipboard {
            clip_type, data, ..
        } => {
            if clip_type == agent::clipboard_type::UTF8_TEXT {
                agent.from_client = Some(data.clone());
                if let Err(e) = shared.source.set_clipboard(UTF8_MIME.into(), data).await {
                    tracing::info!(error = %e, "clipboard from the client not applied");
                }
            }
        }
        AgentMessage::ClipboardRequest { clip_type, .. } => {
            let text = shared
                .source
                .state
                .lock()
                .ok()
                .and_then(|s| s.clipboard.clone());
            let (clip_type, data) = match text {
                Some(t) if clip_type == agent::clipboard_type::UTF8_TEXT => (clip_type, t),
                _ => (agent::clipboard_type::NONE, Vec::new()),
            };
            agent.queue(&AgentMessage::Clipboard {
                selection: None,
                clip_type,
                data,
            });
        }
        AgentMessage::ClipboardRelease { .. } | AgentMessage::Reply { .. } => {}
        AgentMessage::Other { msg_type, .. } => {
            tracing::debug!(msg_type, "agent message not handled by the built-in agent");
        }
    }
}
