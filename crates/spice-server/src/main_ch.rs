//! The main channel: session setup, channel list, mouse mode, and a built-in VD agent.
//!
//! There is no guest agent process: the server itself answers the client's agent
//! messages. Monitor configuration resizes the source; the clipboard flows both ways
//! (client grab → we request the text → source clipboard; source change → we grab →
//! client requests → we send the text). Agent traffic obeys SPICE's token flow control
//! in both directions, with a bounded backlog.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spice_proto::agent::{self, AgentCaps, AgentMessage, AgentReassembler};
use spice_proto::consts::{caps, channel};
use spice_proto::link::{caps_from_bits, has_cap, LinkInfo};
use spice_proto::main_channel::{ChannelId, MainInit};
use spice_proto::{BaseServerMsg, MainClientMsg, MainServerMsg, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};

use crate::conn::Channel;
use crate::{LinkState, Moved, NetTest, Order, ServerError, Session, Shared, WAN_BITS_PER_SEC};

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
/// Payload of the bandwidth test's large PING (spice-server sends about as much).
const NET_TEST_BYTES: usize = 256 * 1024;
/// PING ids of the bandwidth test: a warm-up, an empty one timing the round trip, and
/// the large one timing the transfer.
const PING_WARMUP: u32 = 1;
const PING_LATENCY: u32 = 2;
const PING_RATE: u32 = 3;
/// A client that has not answered the warm-up PING by then is not measured (LAN).
const NET_TEST_FIRST_PONG: Duration = Duration::from_secs(1);
/// Nor is one whose test takes longer than this (about 200 kbit/s).
const NET_TEST_TIMEOUT: Duration = Duration::from_secs(10);

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
    // A non-zero id passed the link check: a client migrating to us from another
    // server, keeping its session id (its other channels link with it).
    let target = info.connection_id != 0;
    if target && !shared.claim_expected(info.connection_id) {
        return Err(ServerError::Protocol(format!(
            "migrating session {:#x} linked its main channel twice or too late",
            info.connection_id
        )));
    }
    let counters = Arc::new(vec![shared.total.clone()]);
    let mut ch = Channel::start(s, &info, early, MAX_MAIN_MSG, counters, "main");
    let (closed_tx, closed_rx) = watch::channel(false);
    let (link_tx, link_rx) = watch::channel(LinkState::Testing);
    let session = {
        let mut map = shared
            .sessions
            .lock()
            .map_err(|_| ServerError::Protocol("session table poisoned".into()))?;
        let mut id = info.connection_id;
        if target && map.contains_key(&id) {
            return Err(ServerError::Protocol(format!(
                "migrating session {id:#x} is already in use"
            )));
        }
        while id == 0 || (!target && map.contains_key(&id)) {
            id = rand::random::<u32>();
        }
        let s = Arc::new(Session {
            id,
            closed: closed_rx,
            mouse_mode: Mutex::new(MOUSE_CLIENT),
            display_links: Default::default(),
            link: link_rx,
            semi_seamless: has_cap(&info.peer_channel_caps, caps::main::SEMI_SEAMLESS_MIGRATE),
        });
        map.insert(id, s.clone());
        s
    };
    let r = async {
        if target {
            wait_migrate_end(&mut ch).await?;
        }
        serve_main(&shared, &session, &mut ch, &info, &link_tx).await
    }
    .await;
    if *link_tx.borrow() == LinkState::Testing {
        let _ = link_tx.send(LinkState::Unknown);
    }
    let _ = closed_tx.send(true);
    if let Ok(mut m) = shared.sessions.lock() {
        m.remove(&session.id);
    }
    ch.close().await;
    r
}

/// A migrating client links all its channels to us while still using the source
/// server; it sends MIGRATE_END on this main channel once the source let it go. Only
/// then does the session start (MAIN INIT), as spice-server does on a target.
async fn wait_migrate_end(ch: &mut Channel) -> Result<(), ServerError> {
    let deadline = Instant::now() + crate::MIGRATION_WINDOW;
    loop {
        let m = tokio::time::timeout_at(deadline.into(), ch.rx.recv())
            .await
            .map_err(|_| ServerError::Protocol("migrating client never sent MIGRATE_END".into()))?;
        let Some(m) = m else {
            return Err(ServerError::Protocol(
                "migrating client left before MIGRATE_END".into(),
            ));
        };
        match MainClientMsg::decode(m.msg_type, &m.body) {
            Ok(MainClientMsg::MigrateEnd) => {
                tracing::info!("migrated client arrived");
                return Ok(());
            }
            other => tracing::debug!(?other, "main message before MIGRATE_END ignored"),
        }
    }
}

/// A semi-seamless migration in progress on this session.
struct Migrating {
    target: crate::HandoverTarget,
    reply: tokio::sync::mpsc::Sender<crate::Moved>,
    deadline: Instant,
}

async fn serve_main(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    ch: &mut Channel,
    info: &LinkInfo,
    link: &watch::Sender<LinkState>,
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
    // The bandwidth test (spice-gtk answers every PING with a PONG); its result
    // decides per client whether the display channel works in LAN or WAN mode.
    let mut net = NetTester::new(Instant::now());
    for (id, len) in [
        (PING_WARMUP, 0),
        (PING_LATENCY, 0),
        (PING_RATE, NET_TEST_BYTES),
    ] {
        net.sent(id, Instant::now());
        ch.send_msg(&MainServerMsg::Base(BaseServerMsg::Ping {
            id,
            timestamp: u64::from(crate::mm_time()),
            data: vec![0; len],
        }))
        .await?;
    }

    let mut agent = Agent {
        tokens: 0,
        started: false,
        backlog: VecDeque::new(),
        reasm: AgentReassembler::new(MAX_AGENT_MSG),
        caps: AgentCaps::default(),
        from_client: None,
    };
    let mut events = shared.source.subscribe();
    let mut handover = shared.handover.subscribe();
    // Set once the client was told to switch to another server.
    let mut leave_by: Option<Instant> = None;
    let mut migrating: Option<Migrating> = None;
    loop {
        let testing = *link.borrow() == LinkState::Testing;
        tokio::select! {
            o = handover.recv(), if leave_by.is_none() && migrating.is_none() => match o {
                Ok(Order::Switch(t)) => {
                    switch_host(session, ch, &t).await?;
                    leave_by = Some(Instant::now() + crate::HANDOVER_GRACE);
                }
                Ok(Order::Migrate(t, reply)) if session.semi_seamless => {
                    tracing::info!(session = session.id, host = %t.host, port = t.port, "migrating the client to another server");
                    ch.send_msg(&MainServerMsg::MigrateBegin(t.dst_info())).await?;
                    migrating = Some(Migrating {
                        target: t,
                        reply,
                        deadline: Instant::now() + crate::MIGRATION_ANSWER,
                    });
                }
                Ok(Order::Migrate(t, reply)) => {
                    switch_host(session, ch, &t).await?;
                    let _ = reply.send(Moved::Switched).await;
                    leave_by = Some(Instant::now() + crate::HANDOVER_GRACE);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = sleep_until_opt(migrating.as_ref().map(|m| m.deadline)) => {
                tracing::info!(session = session.id, "client did not answer MIGRATE_BEGIN in time");
                if let Some(m) = migrating.take() {
                    ch.send_msg(&MainServerMsg::MigrateCancel).await?;
                    switch_host(session, ch, &m.target).await?;
                    let _ = m.reply.send(Moved::Switched).await;
                    leave_by = Some(Instant::now() + crate::HANDOVER_GRACE);
                }
            }
            _ = sleep_until_opt(leave_by) => {
                tracing::info!(session = session.id, "handed-over client did not leave; closing its session");
                return Ok(());
            }
            p = ch.pongs.recv(), if testing => {
                let Some((id, at)) = p else { return Ok(()) };
                if let Some(st) = net.pong(id, at) {
                    finish_net_test(shared, link, st);
                }
            }
            _ = tokio::time::sleep_until(net.deadline().into()), if testing => {
                tracing::info!("bandwidth test not answered in time; treating the link as LAN");
                let _ = link.send(LinkState::Unknown);
            }
            m = ch.rx.recv() => {
                let Some(m) = m else { return Ok(()) };
                let msg = MainClientMsg::decode(m.msg_type, &m.body).map_err(|e| {
                    ServerError::Protocol(format!("main message type {}: {e}", m.msg_type))
                })?;
                match (msg, migrating.take()) {
                    (MainClientMsg::MigrateConnected, Some(m)) => {
                        // The client holds links to the target: let it go there.
                        tracing::info!(session = session.id, "client linked to the target; MIGRATE_END");
                        ch.send_msg(&MainServerMsg::MigrateEnd).await?;
                        let _ = m.reply.send(Moved::Migrated).await;
                        leave_by = Some(Instant::now() + crate::HANDOVER_GRACE);
                    }
                    (MainClientMsg::MigrateConnectError, Some(m)) => {
                        tracing::info!(session = session.id, "client could not link to the target; switching it instead");
                        switch_host(session, ch, &m.target).await?;
                        let _ = m.reply.send(Moved::Switched).await;
                        leave_by = Some(Instant::now() + crate::HANDOVER_GRACE);
                    }
                    (msg, m) => {
                        migrating = m;
                        handle(shared, session, ch, &mut agent, msg).await?;
                    }
                }
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

async fn switch_host(
    session: &Session,
    ch: &Channel,
    t: &crate::HandoverTarget,
) -> Result<(), ServerError> {
    tracing::info!(session = session.id, host = %t.host, port = t.port, "switching the client to another server");
    ch.send_msg(&MainServerMsg::MigrateSwitchHost(t.dst_info()))
        .await
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn finish_net_test(shared: &Shared, link: &watch::Sender<LinkState>, st: LinkState) {
    match st {
        LinkState::Measured(t) => {
            tracing::info!(
                latency_ms = t.latency.as_secs_f64() * 1000.0,
                mbit_per_sec = t.bits_per_sec as f64 / 1e6,
                wan = t.wan,
                "bandwidth test"
            );
            if let Ok(mut n) = shared.tally.net_test.lock() {
                *n = Some(t);
            }
        }
        _ => tracing::info!("bandwidth test unusable; treating the link as LAN"),
    }
    let _ = link.send(st);
}

/// Times the bandwidth test's PINGs as spice-server does: the empty PING's round trip
/// is the latency, and the large PING's round trip minus that latency is the time its
/// payload took on the link.
pub(crate) struct NetTester {
    started: Instant,
    sent: [Option<Instant>; 3],
    warm: bool,
    latency: Option<Duration>,
}

impl NetTester {
    pub fn new(now: Instant) -> NetTester {
        NetTester {
            started: now,
            sent: [None; 3],
            warm: false,
            latency: None,
        }
    }

    pub fn sent(&mut self, id: u32, at: Instant) {
        if let Some(s) = self.sent.get_mut(id.wrapping_sub(1) as usize) {
            *s = Some(at);
        }
    }

    /// When to give up waiting.
    pub fn deadline(&self) -> Instant {
        self.started
            + if self.warm {
                NET_TEST_TIMEOUT
            } else {
                NET_TEST_FIRST_PONG
            }
    }

    /// Takes one PONG; the test's result once the last one arrived.
    pub fn pong(&mut self, id: u32, at: Instant) -> Option<LinkState> {
        let sent = (*self.sent.get(id.wrapping_sub(1) as usize)?)?;
        let rtt = at.saturating_duration_since(sent);
        match id {
            PING_WARMUP => {
                self.warm = true;
                None
            }
            PING_LATENCY => {
                self.latency = Some(rtt);
                None
            }
            PING_RATE => {
                let latency = self.latency?;
                let transfer = rtt.saturating_sub(latency);
                let bits = (NET_TEST_BYTES as u128) * 8;
                let bits_per_sec = if transfer.is_zero() {
                    u64::MAX
                } else {
                    u64::try_from(bits * 1_000_000 / transfer.as_micros().max(1))
                        .unwrap_or(u64::MAX)
                };
                Some(LinkState::Measured(NetTest {
                    latency,
                    bits_per_sec,
                    wan: bits_per_sec < WAN_BITS_PER_SEC,
                }))
            }
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn net_test_times_the_large_ping_against_the_empty_one() {
        let t0 = Instant::now();
        let mut n = NetTester::new(t0);
        for id in [PING_WARMUP, PING_LATENCY, PING_RATE] {
            n.sent(id, t0);
        }
        assert_eq!(n.deadline(), t0 + NET_TEST_FIRST_PONG);
        assert_eq!(n.pong(PING_WARMUP, t0 + ms(30)), None);
        assert_eq!(n.deadline(), t0 + NET_TEST_TIMEOUT);
        assert_eq!(n.pong(PING_LATENCY, t0 + ms(40)), None);
        // 256 KiB in 1000 ms after the 40 ms round trip: 2.1 Mbit/s, a WAN link.
        let Some(LinkState::Measured(t)) = n.pong(PING_RATE, t0 + ms(1040)) else {
            panic!("no result")
        };
        assert_eq!(t.latency, ms(40));
        assert_eq!(t.bits_per_sec, (NET_TEST_BYTES as u64) * 8);
        assert!(t.wan);
        // The same payload in 2 ms: a LAN.
        let mut n = NetTester::new(t0);
        for id in [PING_WARMUP, PING_LATENCY, PING_RATE] {
            n.sent(id, t0);
        }
        n.pong(PING_WARMUP, t0 + ms(1));
        n.pong(PING_LATENCY, t0 + ms(1));
        let Some(LinkState::Measured(t)) = n.pong(PING_RATE, t0 + ms(3)) else {
            panic!("no result")
        };
        assert!(!t.wan && t.bits_per_sec > 1_000_000_000, "{t:?}");
        // Unknown ids and PONGs for PINGs never sent are ignored.
        assert_eq!(n.pong(9, t0), None);
        assert_eq!(NetTester::new(t0).pong(PING_RATE, t0), None);
    }
}
