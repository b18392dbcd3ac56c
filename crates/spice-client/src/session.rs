//! A SPICE session: the main channel and the channels it announces
//! (display, inputs, cursor), each driven by its own tokio task, sharing the
//! display and cursor state with whoever shows them. Every display channel
//! (head) is linked; the lowest-numbered one is "the screen", the others are
//! reachable through [`Session::extra_screen`]. They share one GLZ window, so
//! an image on one may wait for an image another has yet to decode.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use spice_codecs::glz::SharedWindow;
use spice_proto::common::Message;
use spice_proto::consts::{caps, channel as chan, mouse_mode, LinkErr};
use spice_proto::link::{has_cap, set_cap};
use spice_proto::main_channel::ChannelId;
use spice_proto::{
    CursorServerMsg, DisplayClientMsg, DisplayServerMsg, InputsClientMsg, InputsServerMsg,
    LinkClientConfig, MainClientMsg, MainServerMsg,
};
use tokio::task::JoinHandle;

use crate::agent::AgentState;
use crate::canvas::Pixmap;
use crate::channel::{ByteCounter, Channel, ChannelSender};
use crate::cursor::CursorState;
use crate::display::DisplayState;
use crate::error::ClientError;
use crate::image::ImageCaches;
use crate::tls::TlsConnector;

/// Which channels go over TLS when the server has both a plain and a TLS port
/// (spice-gtk's `secure-channels`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SecureChannels {
    /// Plain, except the channels the server refuses in plain (NEED_SECURED):
    /// those are linked again over TLS.
    #[default]
    Auto,
    /// Every channel over TLS.
    All,
    /// These channel types over TLS, the others as in `Auto`.
    Only(Vec<u8>),
}

impl SecureChannels {
    /// Channel names as spice-gtk spells them, for [`SecureChannels::parse`].
    pub const NAMES: &'static str =
        "all, main, display, inputs, cursor, playback, record, smartcard, usbredir, port, webdav";

    /// Parses `all` or a comma-separated list of channel names.
    pub fn parse(s: &str) -> Result<SecureChannels, String> {
        let mut v = Vec::new();
        for n in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            v.push(match n {
                "all" => return Ok(SecureChannels::All),
                "main" => chan::MAIN,
                "display" => chan::DISPLAY,
                "inputs" => chan::INPUTS,
                "cursor" => chan::CURSOR,
                "playback" => chan::PLAYBACK,
                "record" => chan::RECORD,
                "smartcard" => chan::SMARTCARD,
                "usbredir" => chan::USBREDIR,
                "port" => chan::PORT,
                "webdav" => chan::WEBDAV,
                _ => {
                    return Err(format!(
                        "unknown channel {n:?} in secure channels {s:?} ({})",
                        Self::NAMES
                    ))
                }
            });
        }
        if v.is_empty() {
            return Err(format!("no channel named in secure channels {s:?}"));
        }
        Ok(SecureChannels::Only(v))
    }

    fn wants(&self, channel_type: u8) -> bool {
        match self {
            SecureChannels::Auto => false,
            SecureChannels::All => true,
            SecureChannels::Only(v) => v.contains(&channel_type),
        }
    }
}

/// How to reach and talk to a SPICE server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub host: String,
    /// Plain TCP port; 0 when the server is reached over TLS only.
    pub port: u16,
    /// TLS port; 0 for none. With both ports, see [`ClientConfig::secure_channels`].
    pub tls_port: u16,
    /// PEM file of the CAs trusted for TLS; `None`: [`crate::tls::SYSTEM_CA_FILE`].
    pub ca_file: Option<std::path::PathBuf>,
    /// Check the server certificate's subject (`C=..,O=..,CN=..`) instead of its
    /// host name. A hand-over that names the target's subject replaces it.
    pub host_subject: Option<String>,
    pub secure_channels: SecureChannels,
    /// The ticket; empty when the server disables ticketing.
    pub password: String,
    /// `image_compression` value to ask for (PREFERRED_COMPRESSION), if any.
    pub preferred_compression: Option<u8>,
    /// Bound on connecting, linking and each handshake step.
    pub timeout: Duration,
    /// Pixmap cache size announced in DISPLAY INIT, in pixels.
    pub pixmap_cache_pixels: i64,
    /// GLZ dictionary window announced in DISPLAY INIT, in pixels.
    pub glz_window_pixels: i32,
    /// Link the cursor and inputs channels too (a viewer wants them; a screenshot does not need them).
    pub all_channels: bool,
}

impl ClientConfig {
    /// Takes the password (SPICE ticket) from `path`, a trailing newline ignored, as
    /// `remote-viewer` and `coop view --password-file` read it.
    pub fn read_password_file(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let pw = std::fs::read_to_string(path)?;
        self.password = pw.trim_end_matches(['\n', '\r']).to_string();
        Ok(())
    }

    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ClientConfig {
            host: host.into(),
            port,
            tls_port: 0,
            ca_file: None,
            host_subject: None,
            secure_channels: SecureChannels::Auto,
            password: String::new(),
            preferred_compression: None,
            timeout: Duration::from_secs(10),
            // spice-gtk's defaults: 80 MiB of 32-bit pixels and a 16 MiB GLZ window.
            pixmap_cache_pixels: 20 << 20,
            glz_window_pixels: 4 << 20,
            all_channels: true,
        }
    }

    /// A server reached over TLS only, on `tls_port`.
    pub fn tls(host: impl Into<String>, tls_port: u16) -> Self {
        let mut c = ClientConfig::new(host, 0);
        c.tls_port = tls_port;
        c
    }

    fn addr(&self, port: u16) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, port)
        } else {
            format!("{}:{}", self.host, port)
        }
    }

    /// Takes the target of a hand-over (MIGRATE_SWITCH_HOST or MIGRATE_BEGIN) as
    /// spice-gtk does: its host and ports, and its certificate subject when given.
    fn move_to(
        &mut self,
        d: &spice_proto::main_channel::MigrationDstInfo,
    ) -> Result<(), ClientError> {
        let text =
            |b: &[u8]| String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(b)).into_owned();
        let host = text(&d.host);
        if host.is_empty() {
            return Err(ClientError::Server(
                "hand-over target without a host".into(),
            ));
        }
        if d.port == 0 && d.sport == 0 {
            return Err(ClientError::Server(format!(
                "hand-over target {host} without a port"
            )));
        }
        self.host = host;
        self.port = d.port;
        self.tls_port = d.sport;
        let subject = text(&d.cert_subject);
        if !subject.is_empty() {
            self.host_subject = Some(subject);
        }
        Ok(())
    }
}

/// The TLS client for one server, built when a channel first needs it (a server
/// reached in plain never reads the CA file).
type TlsCell = OnceLock<Result<TlsConnector, ClientError>>;

/// Links one channel: in plain unless the options or the server (NEED_SECURED)
/// want TLS, as spice-gtk.
async fn link_channel(
    cfg: &ClientConfig,
    tls: &TlsCell,
    link: LinkClientConfig,
) -> Result<Channel, ClientError> {
    let ct = link.channel_type;
    let name = crate::channel::channel_name(ct);
    if cfg.port != 0 && !cfg.secure_channels.wants(ct) {
        match Channel::connect(&cfg.addr(cfg.port), None, link.clone(), cfg.timeout).await {
            Err(ClientError::LinkRefused { err, .. })
                if err == LinkErr::NEED_SECURED && cfg.tls_port != 0 =>
            {
                tracing::info!(
                    channel = name,
                    "the server wants this channel secured; linking it over TLS"
                );
            }
            r => return r,
        }
    }
    if cfg.tls_port == 0 {
        return Err(ClientError::Config(if cfg.port == 0 {
            format!("no port to reach {} with", cfg.host)
        } else {
            format!(
                "the {name} channel must go over TLS but no TLS port is known for {}",
                cfg.host
            )
        }));
    }
    let tls = tls
        .get_or_init(|| {
            TlsConnector::new(
                &cfg.host,
                cfg.ca_file.as_deref(),
                cfg.host_subject.as_deref(),
            )
        })
        .clone()?;
    Channel::connect(&cfg.addr(cfg.tls_port), Some(&tls), link, cfg.timeout).await
}

/// Traffic of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    pub name: &'static str,
    pub channel_id: u8,
    /// Over TLS.
    pub secure: bool,
    pub received: u64,
    pub sent: u64,
    pub messages: u64,
}

impl std::fmt::Display for ChannelStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}{} received {} bytes, sent {} bytes, {} messages",
            self.name,
            self.channel_id,
            if self.secure { " (TLS)" } else { "" },
            self.received,
            self.sent,
            self.messages
        )
    }
}

struct Shared {
    cfg: ClientConfig,
    tls: TlsCell,
    session_id: u32,
    /// The first display channel's state: the screen shown and captured.
    display: Arc<Mutex<Option<DisplayState>>>,
    /// Further display channels (more heads), by channel id.
    extra_displays: Mutex<std::collections::BTreeMap<u8, Arc<Mutex<Option<DisplayState>>>>>,
    /// Display channels the server announced (GLZ waits only make sense with several).
    announced_displays: AtomicU32,
    /// The display channel shown as the screen: the lowest id announced.
    main_display_id: AtomicU32,
    cursor: Mutex<CursorState>,
    last_update: Mutex<Instant>,
    error: Mutex<Option<ClientError>>,
    counters: Mutex<Vec<Arc<ByteCounter>>>,
    inputs: Mutex<Option<ChannelSender>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    glz: SharedWindow,
    mouse_mode: AtomicU16,
    /// Bumped on every display message, for viewers polling for changes.
    generation: AtomicU64,
    /// The server's multimedia clock, from MAIN INIT (stream frame stamps).
    mm_clock: crate::report::MmClock,
    /// STREAM_REPORTs sent on display channels.
    stream_reports: AtomicU64,
    agent: Mutex<AgentState>,
    /// Set when the server told us to switch to another server: this session's channels
    /// closing is then expected, not an error.
    switching: std::sync::atomic::AtomicBool,
    /// Where the main task reports that the server moves us.
    switch_tx: tokio::sync::mpsc::UnboundedSender<Move>,
}

/// How the server moves us to another server.
enum Move {
    /// MIGRATE_SWITCH_HOST: link afresh there (the config names the target).
    Switch(Box<ClientConfig>),
    /// Semi-seamless migration: our main channel is linked to the target with our
    /// session id and has sent it MIGRATE_END; MAIN INIT comes next on it.
    Migrated {
        cfg: Box<ClientConfig>,
        tls: TlsCell,
        main: Box<Channel>,
    },
}

/// The live connection behind a [`Session`], replaced when the server hands us over.
struct Current {
    shared: Arc<Shared>,
    main_tx: ChannelSender,
}

struct Slot {
    cur: Mutex<Current>,
    switches: AtomicU64,
    migrations: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking task cannot leave these in a state worse than stale.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn fail(&self, e: ClientError) {
        if self.switching.load(Ordering::SeqCst) {
            tracing::debug!(error = %e, "channel ended while switching servers");
            return;
        }
        let mut g = lock(&self.error);
        if g.is_none() {
            tracing::warn!(error = %e, "session failed");
            *g = Some(e);
        }
    }

    fn touch(&self) {
        *lock(&self.last_update) = Instant::now();
    }

    fn abort_tasks(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

/// A connected SPICE session. Dropping it stops every channel task.
///
/// When the server hands the client over to another server (MIGRATE_SWITCH_HOST),
/// the session drops its channels and links to the new server with the same password,
/// as spice-gtk does; the accessors then show the new server's screen.
pub struct Session {
    slot: Arc<Slot>,
    follower: JoinHandle<()>,
    /// When `connect` was called.
    pub started: Instant,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.follower.abort();
        self.sh().abort_tasks();
    }
}

impl Session {
    /// Connects the main channel, authenticates, waits for MAIN INIT and asks
    /// the server for its channels; the other channels link in the background.
    pub async fn connect(cfg: ClientConfig) -> Result<Session, ClientError> {
        let started = Instant::now();
        let (switch_tx, mut switch_rx) = tokio::sync::mpsc::unbounded_channel();
        let (shared, main_tx) = open(cfg, switch_tx.clone()).await?;
        let slot = Arc::new(Slot {
            cur: Mutex::new(Current { shared, main_tx }),
            switches: AtomicU64::new(0),
            migrations: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&slot);
        let follower = tokio::spawn(async move {
            while let Some(mv) = switch_rx.recv().await {
                let Some(slot) = weak.upgrade() else { return };
                let old = lock(&slot.cur).shared.clone();
                old.abort_tasks();
                drop(slot);
                let seamless = matches!(mv, Move::Migrated { .. });
                let opened = match mv {
                    Move::Switch(cfg) => {
                        tracing::info!(host = %cfg.host, port = cfg.port, tls_port = cfg.tls_port, "server handed us over; reconnecting");
                        open(*cfg, switch_tx.clone()).await
                    }
                    Move::Migrated { cfg, tls, main } => {
                        tracing::info!(host = %cfg.host, port = cfg.port, tls_port = cfg.tls_port, "migrated to another server");
                        start(*cfg, tls, *main, switch_tx.clone()).await
                    }
                };
                match opened {
                    Ok((shared, main_tx)) => {
                        let Some(slot) = weak.upgrade() else {
                            shared.abort_tasks();
                            return;
                        };
                        *lock(&slot.cur) = Current { shared, main_tx };
                        slot.switches.fetch_add(1, Ordering::SeqCst);
                        if seamless {
                            slot.migrations.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(e) => {
                        old.switching.store(false, Ordering::SeqCst);
                        old.fail(e);
                    }
                }
            }
        });
        Ok(Session {
            slot,
            follower,
            started,
        })
    }

    fn sh(&self) -> Arc<Shared> {
        lock(&self.slot.cur).shared.clone()
    }

    fn main_tx(&self) -> ChannelSender {
        lock(&self.slot.cur).main_tx.clone()
    }

    /// How many times a server handed this session over to another one.
    pub fn switches(&self) -> u64 {
        self.slot.switches.load(Ordering::SeqCst)
    }

    /// How many of those hand-overs were semi-seamless migrations (linked to the
    /// target before leaving), the others being switch-host reconnections.
    pub fn migrations(&self) -> u64 {
        self.slot.migrations.load(Ordering::SeqCst)
    }

    /// The server this session is linked to now, as (host, port).
    pub fn server(&self) -> (String, u16) {
        let sh = self.sh();
        (sh.cfg.host.clone(), sh.cfg.port)
    }

    /// The settings of the server linked now: after a hand-over, the target's
    /// host, ports and certificate subject.
    pub fn current_config(&self) -> ClientConfig {
        self.sh().cfg.clone()
    }
}

/// Links the main channel of one server and starts its channel tasks.
async fn open(
    cfg: ClientConfig,
    switch_tx: tokio::sync::mpsc::UnboundedSender<Move>,
) -> Result<(Arc<Shared>, ChannelSender), ClientError> {
    let tls = TlsCell::new();
    let main = link_main(&cfg, &tls, 0).await?;
    start(cfg, tls, main, switch_tx).await
}

/// Links a main channel: `connection_id` 0 for a new session, else the session a
/// migration target was told to expect.
async fn link_main(
    cfg: &ClientConfig,
    tls: &TlsCell,
    connection_id: u32,
) -> Result<Channel, ClientError> {
    let mut link = LinkClientConfig::new(connection_id, chan::MAIN, 0, &cfg.password);
    set_cap(&mut link.channel_caps, caps::main::SEMI_SEAMLESS_MIGRATE);
    set_cap(&mut link.channel_caps, caps::main::NAME_AND_UUID);
    set_cap(&mut link.channel_caps, caps::main::AGENT_CONNECTED_TOKENS);
    link_channel(cfg, tls, link).await
}

/// Waits for MAIN INIT on a linked main channel and starts the session's tasks.
async fn start(
    cfg: ClientConfig,
    tls: TlsCell,
    mut main: Channel,
    switch_tx: tokio::sync::mpsc::UnboundedSender<Move>,
) -> Result<(Arc<Shared>, ChannelSender), ClientError> {
    // One deadline for the whole wait, so that a server sending other
    // messages (pings) forever cannot keep us here.
    let init_deadline = Instant::now() + cfg.timeout;
    let init = loop {
        let left = init_deadline.saturating_duration_since(Instant::now());
        let m = main.recv_timeout(left, "waiting for MAIN INIT").await?;
        match decode_main(&m)? {
            MainServerMsg::Init(i) => break i,
            other => tracing::debug!(?other, "main message before INIT ignored"),
        }
    };
    tracing::debug!(session = init.session_id, "main channel up");
    let shared = Arc::new(Shared {
        session_id: init.session_id,
        display: Arc::new(Mutex::new(None)),
        extra_displays: Mutex::new(std::collections::BTreeMap::new()),
        announced_displays: AtomicU32::new(0),
        main_display_id: AtomicU32::new(0),
        cursor: Mutex::new(CursorState::default()),
        last_update: Mutex::new(Instant::now()),
        error: Mutex::new(None),
        counters: Mutex::new(vec![main.counter.clone()]),
        inputs: Mutex::new(None),
        tasks: Mutex::new(Vec::new()),
        glz: SharedWindow::new(cfg.glz_window_pixels.max(1) as u64),
        mouse_mode: AtomicU16::new(init.current_mouse_mode as u16),
        generation: AtomicU64::new(0),
        mm_clock: crate::report::MmClock::new(init.multi_media_time, Instant::now()),
        stream_reports: AtomicU64::new(0),
        agent: Mutex::new(AgentState::default()),
        switching: Default::default(),
        switch_tx,
        cfg,
        tls,
    });
    let main_tx = main.tx.clone();
    let supported = init.supported_mouse_modes as u16;
    if supported & mouse_mode::CLIENT != 0 && init.current_mouse_mode as u16 != mouse_mode::CLIENT {
        main_tx
            .send(&MainClientMsg::MouseModeRequest(mouse_mode::CLIENT))
            .await?;
    }
    if init.agent_connected != 0 {
        start_agent(&shared, &main_tx, init.agent_tokens).await?;
    }
    main_tx.send(&MainClientMsg::AttachChannels).await?;
    let sh = shared.clone();
    let t = tokio::spawn(async move {
        if let Err(e) = main_loop(&sh, &mut main).await {
            sh.fail(e);
        }
    });
    lock(&shared.tasks).push(t);
    Ok((shared, main_tx))
}

impl Session {
    /// The first fatal error of any channel, if one happened.
    pub fn error(&self) -> Option<ClientError> {
        lock(&self.sh().error).clone()
    }

    pub fn session_id(&self) -> u32 {
        self.sh().session_id
    }

    /// Waits until the display is complete: MARK seen, a primary surface
    /// exists, and nothing was drawn for `quiet` — or `settle` passed since
    /// MARK, for screens that never stop changing (a blinking text cursor).
    /// Fails on a channel error or after `timeout`.
    pub async fn wait_display_complete(
        &self,
        quiet: Duration,
        settle: Duration,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.error() {
                return Err(e);
            }
            let mark_at = {
                let sh = self.sh();
                let d = lock(&sh.display);
                d.as_ref()
                    .filter(|d| d.surfaces.primary().is_some())
                    .and_then(|d| d.mark_at)
            };
            let quiet_now = lock(&self.sh().last_update).elapsed() >= quiet;
            if mark_at.is_some_and(|m| quiet_now || m.elapsed() >= settle) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    channel: "display",
                    what: "waiting for a complete picture",
                    ms: timeout.as_millis(),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A copy of the primary surface (the screen).
    pub fn screen(&self) -> Option<Pixmap> {
        lock(&self.sh().display)
            .as_ref()
            .and_then(DisplayState::primary)
    }

    /// Ids of the further display channels (heads beyond the first) linked so far.
    pub fn extra_display_ids(&self) -> Vec<u8> {
        lock(&self.sh().extra_displays).keys().copied().collect()
    }

    /// A copy of the primary surface of the further display channel `id`.
    pub fn extra_screen(&self, id: u8) -> Option<Pixmap> {
        let st = lock(&self.sh().extra_displays).get(&id).cloned()?;
        let g = lock(&st);
        g.as_ref().and_then(DisplayState::primary)
    }

    /// Runs `f` on the display state (for viewers that copy only what changed).
    pub fn with_display<R>(&self, f: impl FnOnce(Option<&DisplayState>) -> R) -> R {
        f(lock(&self.sh().display).as_ref())
    }

    /// Runs `f` on the cursor state.
    pub fn with_cursor<R>(&self, f: impl FnOnce(&CursorState) -> R) -> R {
        f(&lock(&self.sh().cursor))
    }

    /// When the first draw command was applied, if one was.
    pub fn first_draw(&self) -> Option<Instant> {
        lock(&self.sh().display)
            .as_ref()
            .and_then(|d| d.first_draw_at)
    }

    /// A counter that changes whenever the display channel delivered something.
    pub fn generation(&self) -> u64 {
        self.sh().generation.load(Ordering::Relaxed)
    }

    /// When the display last changed (repeated small redraws such as a
    /// blinking cursor excepted).
    pub fn last_update(&self) -> Instant {
        *lock(&self.sh().last_update)
    }

    /// The current `mouse_mode` (SERVER or CLIENT).
    pub fn mouse_mode(&self) -> u16 {
        self.sh().mouse_mode.load(Ordering::Relaxed)
    }

    /// STREAM_REPORTs sent to the server so far (it asks for them per video stream).
    pub fn stream_reports(&self) -> u64 {
        self.sh().stream_reports.load(Ordering::Relaxed)
    }

    /// Counts of decoded images by `image_type` on the display channel.
    pub fn image_counts(&self) -> Vec<(u8, u64)> {
        let sh = self.sh();
        let d = lock(&sh.display);
        let mut v: Vec<(u8, u64)> = d
            .as_ref()
            .map(|d| {
                d.images
                    .counts
                    .by_type
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Display messages applied so far, by message type (sorted).
    pub fn display_message_counts(&self) -> Vec<(u16, u64)> {
        let sh = self.sh();
        let d = lock(&sh.display);
        let mut v: Vec<(u16, u64)> = d
            .as_ref()
            .map(|d| d.msg_counts.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Bytes per channel so far.
    pub fn stats(&self) -> Vec<ChannelStats> {
        lock(&self.sh().counters)
            .iter()
            .map(|c| ChannelStats {
                name: crate::channel::channel_name(c.channel_type),
                channel_id: c.channel_id,
                secure: c.secure.load(Ordering::Relaxed),
                received: c.received.load(Ordering::Relaxed),
                sent: c.sent.load(Ordering::Relaxed),
                messages: c.messages.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Sends an input event; `NotConnected` when the inputs channel is not up.
    pub async fn send_input(&self, m: InputsClientMsg) -> Result<(), ClientError> {
        let tx = lock(&self.sh().inputs).clone();
        match tx {
            Some(tx) => tx.send(&m).await,
            None => Err(ClientError::Server(
                "inputs channel is not connected".into(),
            )),
        }
    }

    /// Whether a guest agent is connected.
    pub fn agent_connected(&self) -> bool {
        lock(&self.sh().agent).connected
    }

    /// Asks the guest agent to switch the screen to `width × height`
    /// (MONITORS_CONFIG); an error when no agent is connected.
    pub async fn set_guest_resolution(&self, width: u32, height: u32) -> Result<(), ClientError> {
        let sh = self.sh();
        lock(&sh.agent).monitors_config(width, height)?;
        flush_agent(&sh, &self.main_tx()).await
    }

    /// Offers `text` to the guest as the clipboard content.
    pub async fn set_clipboard_text(&self, text: String) -> Result<(), ClientError> {
        let sh = self.sh();
        lock(&sh.agent).grab_clipboard(text)?;
        flush_agent(&sh, &self.main_tx()).await
    }

    /// The guest's clipboard text, as last announced by its agent.
    pub fn guest_clipboard(&self) -> Option<String> {
        lock(&self.sh().agent).guest_clipboard.clone()
    }

    /// Asks the server for a mouse mode (`mouse_mode::CLIENT` or `SERVER`).
    pub async fn request_mouse_mode(&self, mode: u16) -> Result<(), ClientError> {
        self.main_tx()
            .send(&MainClientMsg::MouseModeRequest(mode))
            .await
    }
}

fn decode_main(m: &spice_proto::RawMessage) -> Result<MainServerMsg, ClientError> {
    MainServerMsg::decode(m.msg_type, &m.body).map_err(|source| ClientError::Proto {
        channel: "main",
        source,
    })
}

/// Opens the agent link: we take whatever the server sends (unlimited
/// tokens, as spice-gtk), and announce our capabilities.
async fn start_agent(sh: &Shared, tx: &ChannelSender, tokens: u32) -> Result<(), ClientError> {
    lock(&sh.agent).start(tokens);
    tx.send(&MainClientMsg::AgentStart(u32::MAX)).await?;
    flush_agent(sh, tx).await
}

async fn flush_agent(sh: &Shared, tx: &ChannelSender) -> Result<(), ClientError> {
    let chunks = lock(&sh.agent).take_sendable();
    for c in chunks {
        tx.send(&MainClientMsg::AgentData(c)).await?;
    }
    Ok(())
}

async fn main_loop(sh: &Arc<Shared>, main: &mut Channel) -> Result<(), ClientError> {
    let tx = main.tx.clone();
    // A semi-seamless migration under way: the target and our main channel linked there.
    let mut pending: Option<(ClientConfig, TlsCell, Channel)> = None;
    loop {
        let m = main.recv().await?;
        match decode_main(&m)? {
            // Without the tokens cap the server grants spice's default window.
            MainServerMsg::AgentConnected => start_agent(sh, &tx, 10).await?,
            MainServerMsg::AgentConnectedTokens(n) => start_agent(sh, &tx, n).await?,
            MainServerMsg::AgentDisconnected(_) => lock(&sh.agent).stop(),
            MainServerMsg::AgentToken(n) => {
                lock(&sh.agent).add_tokens(n);
                flush_agent(sh, &tx).await?;
            }
            MainServerMsg::AgentData(d) => {
                lock(&sh.agent).feed(&d)?;
                flush_agent(sh, &tx).await?;
            }
            MainServerMsg::ChannelsList(list) => {
                let n = list
                    .iter()
                    .filter(|c| c.channel_type == chan::DISPLAY)
                    .count();
                sh.announced_displays.store(n as u32, Ordering::Relaxed);
                for c in list {
                    spawn_channel(sh, c);
                }
            }
            MainServerMsg::MouseMode { current, .. } => {
                sh.mouse_mode.store(current, Ordering::Relaxed)
            }
            MainServerMsg::MigrateBegin(d) => {
                let mut cfg = sh.cfg.clone();
                let tls = TlsCell::new();
                let linked = match cfg.move_to(&d) {
                    Ok(()) => link_main(&cfg, &tls, sh.session_id).await,
                    Err(e) => Err(e),
                };
                match linked {
                    Ok(ch) => {
                        pending = Some((cfg, tls, ch));
                        tx.send(&MainClientMsg::MigrateConnected).await?;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, host = %cfg.host, port = cfg.port, tls_port = cfg.tls_port, "cannot link to the migration target");
                        tx.send(&MainClientMsg::MigrateConnectError).await?;
                    }
                }
            }
            MainServerMsg::MigrateCancel => pending = None,
            MainServerMsg::MigrateEnd => {
                let Some((cfg, tls, dst)) = pending.take() else {
                    return Err(ClientError::Server(
                        "MIGRATE_END without a migration under way".into(),
                    ));
                };
                // The source lets us go: the target starts our session on MIGRATE_END.
                dst.tx.send(&MainClientMsg::MigrateEnd).await?;
                sh.switching.store(true, Ordering::SeqCst);
                return sh
                    .switch_tx
                    .send(Move::Migrated {
                        cfg: Box::new(cfg),
                        tls,
                        main: Box::new(dst),
                    })
                    .map_err(|_| ClientError::Server("session dropped while migrating".into()));
            }
            MainServerMsg::MigrateSwitchHost(d) => {
                let mut cfg = sh.cfg.clone();
                cfg.move_to(&d)?;
                sh.switching.store(true, Ordering::SeqCst);
                // Returning drops this main channel: the server sees us leave.
                return sh.switch_tx.send(Move::Switch(Box::new(cfg))).map_err(|_| {
                    ClientError::Server("session dropped while switching servers".into())
                });
            }
            other => tracing::trace!(?other, "main message"),
        }
    }
}

fn spawn_channel(sh: &Arc<Shared>, c: ChannelId) {
    let wanted = match c.channel_type {
        chan::DISPLAY => true,
        chan::INPUTS | chan::CURSOR => sh.cfg.all_channels,
        _ => false,
    };
    if !wanted {
        return;
    }
    let s = sh.clone();
    let t = tokio::spawn(async move {
        let r = run_channel(&s, c).await;
        if let Err(e) = r {
            s.fail(e);
        }
    });
    lock(&sh.tasks).push(t);
}

async fn run_channel(sh: &Arc<Shared>, c: ChannelId) -> Result<(), ClientError> {
    let cfg = &sh.cfg;
    let mut link = LinkClientConfig::new(sh.session_id, c.channel_type, c.id, &cfg.password);
    if c.channel_type == chan::DISPLAY {
        for cap in [
            caps::display::SIZED_STREAM,
            caps::display::MONITORS_CONFIG,
            caps::display::LZ4_COMPRESSION,
            caps::display::PREF_COMPRESSION,
            caps::display::MULTI_CODEC,
            caps::display::CODEC_MJPEG,
            caps::display::STREAM_REPORT,
        ] {
            set_cap(&mut link.channel_caps, cap);
        }
    }
    let mut ch = link_channel(cfg, &sh.tls, link).await?;
    lock(&sh.counters).push(ch.counter.clone());
    match c.channel_type {
        chan::DISPLAY => {
            // The first display channel is the screen; others (more heads)
            // are kept apart but share the GLZ window with it.
            let state = if u32::from(c.id) == sh.main_display_id.load(Ordering::Relaxed) {
                sh.display.clone()
            } else {
                let st = Arc::new(Mutex::new(None));
                lock(&sh.extra_displays).insert(c.id, st.clone());
                st
            };
            display_loop(sh, &mut ch, state).await
        }
        chan::CURSOR => loop {
            let m = ch.recv().await?;
            let msg = CursorServerMsg::decode(m.msg_type, &m.body).map_err(|source| {
                ClientError::Proto {
                    channel: "cursor",
                    source,
                }
            })?;
            lock(&sh.cursor).apply(msg)?;
        },
        _ => {
            *lock(&sh.inputs) = Some(ch.tx.clone());
            loop {
                let m = ch.recv().await?;
                InputsServerMsg::decode(m.msg_type, &m.body).map_err(|source| {
                    ClientError::Proto {
                        channel: "inputs",
                        source,
                    }
                })?;
            }
        }
    }
}

async fn display_loop(
    sh: &Arc<Shared>,
    ch: &mut Channel,
    state: Arc<Mutex<Option<DisplayState>>>,
) -> Result<(), ClientError> {
    let cfg = &sh.cfg;
    // The preference goes first so that the initial screen is already
    // encoded with it (the server starts sending once INIT arrives).
    if let Some(pc) = cfg.preferred_compression {
        if has_cap(&ch.info.peer_channel_caps, caps::display::PREF_COMPRESSION) {
            ch.tx
                .send(&DisplayClientMsg::PreferredCompression(pc))
                .await?;
        } else {
            tracing::warn!("server does not take a preferred compression; using its default");
        }
    }
    ch.tx
        .send(&DisplayClientMsg::Init {
            pixmap_cache_id: 1,
            pixmap_cache_size: cfg.pixmap_cache_pixels,
            glz_dictionary_id: 1,
            glz_dictionary_window_size: cfg.glz_window_pixels,
        })
        .await?;
    let mut images = ImageCaches::new(cfg.pixmap_cache_pixels.max(0) as u64, sh.glz.clone());
    // Waiting for another channel's GLZ image blocks this thread, which only
    // a multi-thread runtime can afford (block_in_place below).
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    if sh.announced_displays.load(Ordering::Relaxed) > 1 && multi_thread {
        images.glz_wait = crate::image::GLZ_WAIT;
    }
    let may_block = !images.glz_wait.is_zero();
    *lock(&state) = Some(DisplayState::new(images));
    let mut blinker = RepeatFilter::default();
    let mut reporter = crate::report::Reporter::default();
    loop {
        let m = ch.recv().await?;
        let msg =
            DisplayServerMsg::decode(m.msg_type, &m.body).map_err(|source| ClientError::Proto {
                channel: "display",
                source,
            })?;
        if let Some(r) = reporter.on_message(&msg, &sh.mm_clock, Instant::now()) {
            ch.tx.send(&r).await?;
            sh.stream_reports.fetch_add(1, Ordering::Relaxed);
        }
        let bbox = DisplayState::draw_bbox(&msg);
        let repeat = {
            let mut d = lock(&state);
            if let Some(d) = d.as_mut() {
                if may_block {
                    tokio::task::block_in_place(|| d.apply(msg))?;
                } else {
                    d.apply(msg)?;
                }
                if d.draws > 0 && d.first_draw_at.is_none() {
                    d.first_draw_at = Some(Instant::now());
                }
            }
            let screen = d
                .as_ref()
                .and_then(|d| d.surfaces.primary())
                .map(|p| u64::from(p.pixels.width) * u64::from(p.pixels.height));
            bbox.is_some_and(|b| blinker.is_repeat(b, screen.unwrap_or(0)))
        };
        sh.generation.fetch_add(1, Ordering::Relaxed);
        if !repeat {
            sh.touch();
        }
    }
}

/// Recognises a small rectangle redrawn again and again (QEMU's blinking
/// text cursor), which must not keep the picture from counting as complete.
#[derive(Default)]
struct RepeatFilter {
    recent: std::collections::HashMap<(i32, i32, i32, i32), Instant>,
}

impl RepeatFilter {
    const WINDOW: Duration = Duration::from_secs(2);

    fn is_repeat(&mut self, r: spice_proto::types::Rect, screen_pixels: u64) -> bool {
        let area =
            i64::from(r.right - r.left).max(0) as u64 * i64::from(r.bottom - r.top).max(0) as u64;
        if area * 256 > screen_pixels {
            return false;
        }
        let now = Instant::now();
        if self.recent.len() > 1024 {
            self.recent
                .retain(|_, t| now.duration_since(*t) < Self::WINDOW);
        }
        let key = (r.left, r.top, r.right, r.bottom);
        self.recent
            .insert(key, now)
            .is_some_and(|t| now.duration_since(t) < Self::WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spice_proto::types::Rect;

    #[test]
    fn repeated_small_rect_is_a_blink_but_big_or_new_ones_are_not() {
        let mut f = RepeatFilter::default();
        let screen = 720 * 400;
        let cursor = Rect::new(0, 112, 9, 128);
        assert!(!f.is_repeat(cursor, screen));
        assert!(f.is_repeat(cursor, screen));
        assert!(!f.is_repeat(Rect::new(9, 112, 18, 128), screen));
        let big = Rect::new(0, 0, 720, 400);
        assert!(!f.is_repeat(big, screen));
        assert!(!f.is_repeat(big, screen));
    }
}
