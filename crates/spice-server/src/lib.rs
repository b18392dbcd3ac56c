//! coop's SPICE server: shows one [`DisplaySource`] (an X server today) to SPICE clients
//! such as spice-gtk's `spicy`/`remote-viewer`, wire-compatible with spice-server 0.15.
//!
//! It serves the main, display, inputs and cursor channels on a plain TCP port and/or a
//! TLS port (rustls), with SPICE ticket (password) authentication. Every channel
//! connection is its own tokio task with bounded queues, so a slow or hostile client
//! only affects itself. Images are encoded per client as spice-server does
//! ([`ImageCompression`]: QUIC for photos, GLZ/LZ otherwise, LZ4 on request), repeats
//! come from the client's pixmap cache, and areas redrawn at video pace are sent as
//! MJPEG streams ([`StreamingVideo`]) whose quality and frame rate follow the client's
//! STREAM_REPORTs and the link's bandwidth. A built-in VD agent on the main channel
//! handles monitor configuration (resize) and the clipboard in both directions.
//!
//! Link quality: right after the main channel links, the server times PINGs (an empty
//! one for the round trip, a 256 KiB one for the transfer) as spice-server does; below
//! [`WAN_BITS_PER_SEC`] the client is on a WAN link, which turns on JPEG for
//! photographic images and ZLIB_GLZ ([`WanCompression`]) and widens the display
//! channel's ACK window from 20 to 40 messages.
//!
//! ```no_run
//! # async fn f() -> Result<(), spice_server::ServerError> {
//! let source = coop_display::X11Source::connect(":1").expect("X display");
//! let config = spice_server::Config {
//!     ticketing: spice_server::Ticketing::Disabled,
//!     ..Default::default()
//! };
//! spice_server::serve(config, Box::new(source)).await
//! # }
//! ```

mod conn;
pub mod control;
mod cursor_ch;
mod display_ch;
mod imaging;
mod inputs_ch;
mod lossy;
mod main_ch;
mod source;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use coop_display::DisplaySource;
use spice_proto::consts::{caps, channel};
use spice_proto::link::{caps_from_bits, LinkInfo};
use spice_proto::LinkServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

pub use coop_display;

use conn::Counters;
use source::SourceHub;

/// How clients authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ticketing {
    /// Clients must send this password (at most 60 bytes, SPICE's limit).
    Password(String),
    /// Any client may connect.
    Disabled,
}

/// How images are sent to clients, with spice-server's `image-compression` meanings.
/// A client's PREFERRED_COMPRESSION message overrides it for that client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageCompression {
    /// Per image: tiny images raw, photographic ones QUIC, the rest GLZ (global LZ
    /// against the client's dictionary; LZ before the client sent its dictionary size).
    #[default]
    AutoGlz,
    /// Per image: tiny images raw, photographic ones QUIC, the rest LZ.
    AutoLz,
    /// QUIC for every image that is not tiny.
    Quic,
    /// GLZ for every image that is not tiny.
    Glz,
    /// SPICE LZ (RGB32) for every image that is not tiny.
    Lz,
    /// LZ4 when the client announced LZ4 support, else LZ.
    Lz4,
    /// Raw 32-bit bitmaps.
    Off,
}

impl ImageCompression {
    /// The setting a SPICE `image_compression` wire value names (`None` for INVALID
    /// and unknown values).
    pub fn from_wire(v: u8) -> Option<ImageCompression> {
        use spice_proto::consts::image_compression as ic;
        Some(match v {
            ic::OFF => ImageCompression::Off,
            ic::AUTO_GLZ => ImageCompression::AutoGlz,
            ic::AUTO_LZ => ImageCompression::AutoLz,
            ic::QUIC => ImageCompression::Quic,
            ic::GLZ => ImageCompression::Glz,
            ic::LZ => ImageCompression::Lz,
            ic::LZ4 => ImageCompression::Lz4,
            _ => return None,
        })
    }
}

/// When a lossy or extra-compressed encoding is used on a client's link, with
/// spice-server's `jpeg-wan-compression` / `zlib-glz-wan-compression` meanings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WanCompression {
    /// Only when the main channel's bandwidth test found a slow (WAN) link.
    #[default]
    Auto,
    Never,
    Always,
}

impl WanCompression {
    /// Whether the encoding is on for a link measured as `wan`.
    pub fn enabled(self, wan: bool) -> bool {
        match self {
            WanCompression::Auto => wan,
            WanCompression::Never => false,
            WanCompression::Always => true,
        }
    }
}

/// Which areas become video streams (spice-server's `streaming-video`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamingVideo {
    /// Never: every update is an image.
    Off,
    /// Areas redrawn at video pace whose content looks photographic.
    #[default]
    Filter,
    /// Any area redrawn at video pace.
    All,
}

/// What the main channel's bandwidth test measured for one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetTest {
    /// Round trip of an empty PING.
    pub latency: std::time::Duration,
    /// Bits per second the large PING travelled at (`u64::MAX` when the link was too
    /// fast to time, as on loopback).
    pub bits_per_sec: u64,
    /// Below [`WAN_BITS_PER_SEC`]: the client is treated as remote (WAN).
    pub wan: bool,
}

/// Links measured slower than this are WAN links (spice-server's threshold, 10 Mibit/s).
pub const WAN_BITS_PER_SEC: u64 = 10 * 1024 * 1024;

/// The TLS port and its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// 0 picks a free port (see [`Server::tls_addr`]).
    pub port: u16,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: IpAddr,
    /// Plain TCP port; `None` serves TLS only; `Some(0)` picks a free port.
    pub port: Option<u16>,
    pub tls: Option<TlsConfig>,
    pub ticketing: Ticketing,
    pub image_compression: ImageCompression,
    /// Display updates per second, at most.
    pub max_fps: u32,
    /// JPEG for photographic images (auto modes only), instead of QUIC.
    pub jpeg_wan_compression: WanCompression,
    /// GLZ images wrapped in zlib (ZLIB_GLZ) when that is smaller.
    pub zlib_glz_wan_compression: WanCompression,
    /// JPEG quality (1–100) of lossy images and the top quality of video streams.
    pub jpeg_quality: u8,
    pub streaming_video: StreamingVideo,
    /// Sent to clients as the VM name.
    pub name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: Some(5930),
            tls: None,
            ticketing: Ticketing::Password(String::new()),
            image_compression: ImageCompression::AutoGlz,
            max_fps: 30,
            jpeg_wan_compression: WanCompression::Auto,
            zlib_glz_wan_compression: WanCompression::Auto,
            jpeg_quality: 85,
            streaming_video: StreamingVideo::Filter,
            name: "coop".into(),
        }
    }
}

/// Another SPICE server that clients are handed over to (SPICE's "switch host"
/// migration: each client drops this server and links to the target by itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverTarget {
    /// Host name or IP address, as the client will resolve it.
    pub host: String,
    /// Plain port (0: none).
    pub port: u16,
    /// TLS port (0: none).
    pub tls_port: u16,
    /// The target certificate's subject, for clients that verify it (TLS only).
    pub cert_subject: Option<String>,
}

impl HandoverTarget {
    /// Checks what spice-gtk needs: a host, a port, and no NUL inside the strings
    /// (they travel NUL-terminated).
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.host.is_empty() || self.host.len() > 255 || self.host.contains('\0') {
            return bad(format!(
                "hand-over host {:?} must be 1-255 bytes without NUL",
                self.host
            ));
        }
        if self.port == 0 && self.tls_port == 0 {
            return bad(format!(
                "hand-over to {} needs a plain or a TLS port",
                self.host
            ));
        }
        if let Some(c) = &self.cert_subject {
            if c.len() > 1024 || c.contains('\0') {
                return bad(format!(
                    "hand-over certificate subject {c:?} must be at most 1024 bytes without NUL"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn dst_info(&self) -> spice_proto::main_channel::MigrationDstInfo {
        let nul = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            v.push(0);
            v
        };
        spice_proto::main_channel::MigrationDstInfo {
            port: self.port,
            sport: self.tls_port,
            host: nul(&self.host),
            cert_subject: self.cert_subject.as_deref().map(nul).unwrap_or_default(),
        }
    }
}

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("TLS setup with {path}: {detail}")]
    Tls { path: PathBuf, detail: String },
    #[error("SPICE protocol: {0}")]
    Protocol(String),
    #[error("display source: {0}")]
    Display(#[from] coop_display::DisplayError),
}

impl ServerError {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> ServerError {
        move |source| ServerError::Io {
            op: op.to_string(),
            source,
        }
    }
}

/// Figures a caller can watch (tests, monitoring).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connection tasks alive (linking or linked).
    pub connections: usize,
    /// Main-channel sessions alive.
    pub sessions: usize,
    /// Bytes sent on display channels since start.
    pub display_bytes_out: u64,
    /// Bytes sent on all channels since start.
    pub bytes_out: u64,
    /// Video streams started (areas redrawn at video pace, sent as MJPEG).
    pub video_streams: u64,
    /// MJPEG frames sent on video streams.
    pub video_frames: u64,
    /// Bytes of MJPEG frames (STREAM_DATA payloads) sent.
    pub video_bytes: u64,
    /// STREAM_REPORTs received from clients.
    pub stream_reports: u64,
    /// JPEG quality and frame rate of the stream that sent the latest frame.
    pub stream_quality: u8,
    pub stream_fps: u32,
    /// Lowest stream JPEG quality used so far (0 before any stream frame).
    pub stream_min_quality: u8,
    /// Rate-control steps: down on late/dropped frames in a client's report, down on
    /// frames skipped for the link's budget or backlog, and up on timely reports.
    pub stream_steps_down_report: u64,
    pub stream_steps_down_link: u64,
    pub stream_steps_up: u64,
    /// Images sent as JPEG, as ZLIB_GLZ, and losslessly by any other codec.
    pub jpeg_images: u64,
    pub zlib_glz_images: u64,
    pub lossless_images: u64,
    /// Lossless re-sends of areas the client held lossy (still JPEG areas, ended video
    /// streams), and their bytes (DRAW_COPY bodies with any cache invalidations).
    pub refine_images: u64,
    pub refine_bytes: u64,
    /// The latest completed bandwidth test of any client.
    pub net_test: Option<NetTest>,
}

/// Counters shared by every connection's encoder.
#[derive(Default)]
pub(crate) struct Tally {
    pub video_streams: AtomicU64,
    pub video_frames: AtomicU64,
    pub video_bytes: AtomicU64,
    pub stream_reports: AtomicU64,
    pub stream_quality: AtomicU64,
    pub stream_fps: AtomicU64,
    pub stream_min_quality: AtomicU64,
    pub stream_steps_down_report: AtomicU64,
    pub stream_steps_down_link: AtomicU64,
    pub stream_steps_up: AtomicU64,
    pub jpeg_images: AtomicU64,
    pub zlib_glz_images: AtomicU64,
    pub lossless_images: AtomicU64,
    pub refine_images: AtomicU64,
    pub refine_bytes: AtomicU64,
    pub net_test: Mutex<Option<NetTest>>,
}

/// The bandwidth test of a session, as the display channel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// PINGs sent, PONGs awaited.
    Testing,
    Measured(NetTest),
    /// The client did not answer in time, or the timing was unusable: treated as LAN.
    Unknown,
}

impl LinkState {
    pub fn wan(self) -> bool {
        matches!(self, LinkState::Measured(t) if t.wan)
    }
}

/// One client session: the main channel and the channels that joined it.
pub(crate) struct Session {
    pub id: u32,
    /// Flips to true when the main channel ends; the session's other channels close.
    pub closed: watch::Receiver<bool>,
    /// Current mouse mode (`mouse_mode` bits: 1 server, 2 client).
    pub mouse_mode: Mutex<u16>,
    /// Display channels linked so far; a relinked one must clear the client's pixmap
    /// cache, which spice-gtk keeps per session.
    pub display_links: AtomicUsize,
    /// The main channel's bandwidth test.
    pub link: watch::Receiver<LinkState>,
    /// The client announced SEMI_SEAMLESS_MIGRATE: it can link to a target server
    /// before leaving this one (MIGRATE_BEGIN … MIGRATE_END).
    pub semi_seamless: bool,
}

/// What a main channel is told to do about a hand-over.
#[derive(Clone, Debug)]
pub(crate) enum Order {
    /// MIGRATE_SWITCH_HOST, whatever the client supports.
    Switch(HandoverTarget),
    /// Semi-seamless migration where the client supports it, else a switch; each
    /// session reports how it went.
    Migrate(HandoverTarget, tokio::sync::mpsc::Sender<Moved>),
}

/// How one session was handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Moved {
    /// Linked to the target while still here, then told MIGRATE_END.
    Migrated,
    /// Told to switch host (no semi-seamless support, or the target refused its link).
    Switched,
}

/// How a [`ControlHandle::migrate`] went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Sessions that linked to the target before leaving (semi-seamless).
    pub migrated: usize,
    /// Sessions told to switch host instead.
    pub switched: usize,
    /// Sessions that ended or did not answer in time.
    pub lost: usize,
}

pub(crate) struct Shared {
    pub config: Config,
    pub link: Arc<LinkServerConfig>,
    pub source: Arc<SourceHub>,
    pub sessions: Mutex<HashMap<u32, Arc<Session>>>,
    pub connections: AtomicUsize,
    pub total: Arc<Counters>,
    pub display: Arc<Counters>,
    pub tally: Arc<Tally>,
    /// Set when the server stops; every connection task ends.
    pub stop: watch::Sender<bool>,
    /// Hand-over orders; every main channel listens.
    pub handover: broadcast::Sender<Order>,
    /// Sessions another server is migrating to us: their id and until when a client
    /// may link its main channel with it.
    pub expected: Mutex<HashMap<u32, std::time::Instant>>,
}

impl Shared {
    /// The link-stage check: a main channel asking for an existing session (a
    /// migration target's link) must carry an id we were told to expect.
    fn check_link(&self, m: &spice_proto::link::LinkMess) -> spice_proto::LinkErr {
        if m.channel_type != channel::MAIN {
            // As spice-server: a secondary channel must name a live session, or it is
            // told so at the link stage (a client then knows its session is gone).
            let known = self
                .sessions
                .lock()
                .map(|s| s.contains_key(&m.connection_id))
                .unwrap_or(false);
            if known {
                return spice_proto::LinkErr::OK;
            }
            tracing::info!(
                id = m.connection_id,
                channel = m.channel_type,
                "channel links to an unknown session"
            );
            return spice_proto::LinkErr::BAD_CONNECTION_ID;
        }
        if m.connection_id == 0 {
            return spice_proto::LinkErr::OK;
        }
        let now = std::time::Instant::now();
        let expected = self
            .expected
            .lock()
            .map(|e| e.get(&m.connection_id).is_some_and(|d| *d > now))
            .unwrap_or(false);
        if expected {
            spice_proto::LinkErr::OK
        } else {
            tracing::info!(
                id = m.connection_id,
                "main channel links to a session we were not told to expect"
            );
            spice_proto::LinkErr::BAD_CONNECTION_ID
        }
    }

    /// Takes an expected migration id (a main channel linked with it).
    pub(crate) fn claim_expected(&self, id: u32) -> bool {
        let now = std::time::Instant::now();
        self.expected
            .lock()
            .map(|mut e| e.remove(&id).is_some_and(|d| d > now))
            .unwrap_or(false)
    }
}

/// Stops every connection when [`Server::run`] ends or its future is dropped.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let _ = self.0.stop.send(true);
    }
}

/// A bound server; [`Server::run`] serves until the future is dropped.
pub struct Server {
    shared: Arc<Shared>,
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
}

/// Binds the listeners and serves `source`; returns only on a setup error (drop the
/// future to stop serving).
pub async fn serve(config: Config, source: Box<dyn DisplaySource>) -> Result<(), ServerError> {
    Server::bind(config, source).await?.run().await
}

/// [`serve`] on a new multi-threaded tokio runtime, for callers without one.
pub fn serve_blocking(config: Config, source: Box<dyn DisplaySource>) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::io("starting the tokio runtime"))?;
    rt.block_on(serve(config, source))
}

/// [`serve_blocking`], also answering on a control socket at `control` (see
/// [`control`]) when one is given.
pub fn serve_blocking_with_control(
    config: Config,
    source: Box<dyn DisplaySource>,
    control: Option<&std::path::Path>,
) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::io("starting the tokio runtime"))?;
    rt.block_on(async {
        let server = Server::bind(config, source).await?;
        let ctl = match control {
            Some(p) => Some(control::ControlSocket::bind(p).await?),
            None => None,
        };
        let handle = server.control_handle();
        let answer = async move {
            match ctl {
                Some(c) => c.run(handle).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = server.run() => r,
            () = answer => Ok(()),
        }
    })
}

/// The channel capabilities we announce.
fn link_config(config: &Config) -> Result<LinkServerConfig, ServerError> {
    let key = spice_proto::ticket::generate_key()
        .map_err(|e| ServerError::Config(format!("ticket key: {e}")))?;
    let password = match &config.ticketing {
        Ticketing::Password(p) => {
            if p.is_empty() {
                return Err(ServerError::Config(
                    "an empty password would refuse every client; give one or disable ticketing"
                        .into(),
                ));
            }
            if p.len() > spice_proto::consts::MAX_PASSWORD_LENGTH {
                return Err(ServerError::Config(format!(
                    "password is {} bytes, SPICE allows at most {}",
                    p.len(),
                    spice_proto::consts::MAX_PASSWORD_LENGTH
                )));
            }
            Some(p.clone())
        }
        Ticketing::Disabled => None,
    };
    let mut lc = LinkServerConfig::new(key, password);
    lc.available_channels = Some(vec![
        channel::MAIN,
        channel::DISPLAY,
        channel::INPUTS,
        channel::CURSOR,
    ]);
    lc.channel_caps.insert(
        channel::MAIN,
        caps_from_bits(&[
            caps::main::SEMI_SEAMLESS_MIGRATE,
            caps::main::NAME_AND_UUID,
            caps::main::AGENT_CONNECTED_TOKENS,
        ]),
    );
    lc.channel_caps.insert(
        channel::DISPLAY,
        caps_from_bits(&[
            caps::display::PREF_COMPRESSION,
            caps::display::STREAM_REPORT,
        ]),
    );
    lc.channel_caps.insert(
        channel::INPUTS,
        caps_from_bits(&[caps::inputs::KEY_SCANCODE]),
    );
    Ok(lc)
}

impl Server {
    /// Checks the configuration, binds the ports and starts the source thread.
    pub async fn bind(
        config: Config,
        source: Box<dyn DisplaySource>,
    ) -> Result<Server, ServerError> {
        if config.port.is_none() && config.tls.is_none() {
            return Err(ServerError::Config(
                "neither a plain port nor a TLS port is configured".into(),
            ));
        }
        if config.max_fps == 0 {
            return Err(ServerError::Config("max_fps must be at least 1".into()));
        }
        if !(1..=100).contains(&config.jpeg_quality) {
            return Err(ServerError::Config(format!(
                "jpeg_quality {} is outside 1-100",
                config.jpeg_quality
            )));
        }
        let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let link = Arc::new(link_config(&config)?);
        let plain = match config.port {
            Some(p) => Some(bind(config.addr, p).await?),
            None => None,
        };
        let tls = match (&config.tls, acceptor) {
            (Some(t), Some(a)) => Some((bind(config.addr, t.port).await?, a)),
            _ => None,
        };
        let source = SourceHub::start(source);
        Ok(Server {
            shared: Arc::new(Shared {
                config,
                link,
                source,
                sessions: Mutex::new(HashMap::new()),
                connections: AtomicUsize::new(0),
                total: Arc::default(),
                display: Arc::default(),
                tally: Arc::default(),
                stop: watch::channel(false).0,
                handover: broadcast::channel(4).0,
                expected: Mutex::new(HashMap::new()),
            }),
            plain,
            tls,
        })
    }

    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// A handle for statistics that stays valid while [`Server::run`] runs.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.shared.clone())
    }

    /// A handle to hand clients over to another server while [`Server::run`] runs.
    pub fn control_handle(&self) -> ControlHandle {
        ControlHandle(self.shared.clone())
    }

    /// Accepts clients on every bound port; runs until dropped.
    pub async fn run(self) -> Result<(), ServerError> {
        let shared = self.shared.clone();
        let _stop = StopGuard(shared.clone());
        let plain = self.plain;
        let tls = self.tls;
        let s1 = shared.clone();
        let plain_loop = async move {
            let Some(l) = plain else {
                return std::future::pending::<Result<(), ServerError>>().await;
            };
            loop {
                let Some((sock, peer)) = accept(&l, &s1).await else {
                    continue;
                };
                spawn_conn(s1.clone(), peer, false, async move { Ok(sock) });
            }
        };
        let s2 = shared.clone();
        let tls_loop = async move {
            let Some((l, acc)) = tls else {
                return std::future::pending::<Result<(), ServerError>>().await;
            };
            loop {
                let Some((sock, peer)) = accept(&l, &s2).await else {
                    continue;
                };
                let acc = acc.clone();
                spawn_conn(s2.clone(), peer, true, async move {
                    acc.accept(sock)
                        .await
                        .map_err(ServerError::io("TLS handshake"))
                });
            }
        };
        let r = tokio::select! {
            r = plain_loop => r,
            r = tls_loop => r,
        };
        shared.source.shutdown().await;
        r
    }
}

/// Reads the server's statistics.
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl StatsHandle {
    pub fn stats(&self) -> ServerStats {
        let s = &self.0;
        let t = &s.tally;
        ServerStats {
            connections: s.connections.load(Ordering::SeqCst),
            sessions: s.sessions.lock().map(|m| m.len()).unwrap_or(0),
            display_bytes_out: s.display.bytes_out.load(Ordering::Relaxed),
            bytes_out: s.total.bytes_out.load(Ordering::Relaxed),
            video_streams: t.video_streams.load(Ordering::Relaxed),
            video_frames: t.video_frames.load(Ordering::Relaxed),
            video_bytes: t.video_bytes.load(Ordering::Relaxed),
            stream_reports: t.stream_reports.load(Ordering::Relaxed),
            stream_quality: t.stream_quality.load(Ordering::Relaxed) as u8,
            stream_fps: t.stream_fps.load(Ordering::Relaxed) as u32,
            stream_min_quality: t.stream_min_quality.load(Ordering::Relaxed) as u8,
            stream_steps_down_report: t.stream_steps_down_report.load(Ordering::Relaxed),
            stream_steps_down_link: t.stream_steps_down_link.load(Ordering::Relaxed),
            stream_steps_up: t.stream_steps_up.load(Ordering::Relaxed),
            jpeg_images: t.jpeg_images.load(Ordering::Relaxed),
            zlib_glz_images: t.zlib_glz_images.load(Ordering::Relaxed),
            lossless_images: t.lossless_images.load(Ordering::Relaxed),
            refine_images: t.refine_images.load(Ordering::Relaxed),
            refine_bytes: t.refine_bytes.load(Ordering::Relaxed),
            net_test: t.net_test.lock().ok().and_then(|n| *n),
        }
    }
}

/// Controls a running server.
#[derive(Clone)]
pub struct ControlHandle(Arc<Shared>);

impl ControlHandle {
    /// Tells every connected client to drop this server and link to `target`
    /// (MIGRATE_SWITCH_HOST). Returns how many sessions were told; each ends when its
    /// client leaves, or after [`HANDOVER_GRACE`] at the latest.
    pub fn handover(&self, target: HandoverTarget) -> Result<usize, ServerError> {
        target.validate()?;
        tracing::info!(host = %target.host, port = target.port, tls_port = target.tls_port, "handing clients over");
        Ok(self.0.handover.send(Order::Switch(target)).unwrap_or(0))
    }

    /// Ids of the sessions whose clients can migrate semi-seamlessly; the target must
    /// be told to expect them ([`ControlHandle::expect_migration`]) before
    /// [`ControlHandle::migrate`].
    pub fn migratable_sessions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .0
            .sessions
            .lock()
            .map(|m| {
                m.values()
                    .filter(|s| s.semi_seamless)
                    .map(|s| s.id)
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// On a migration target: accept, for [`MIGRATION_WINDOW`], main channels that
    /// link with one of these session ids (any other non-zero id gets
    /// BAD_CONNECTION_ID). Returns how many ids were added; an id already in use here
    /// is an error.
    pub fn expect_migration(&self, ids: &[u32]) -> Result<usize, ServerError> {
        if ids.len() > MAX_CONNECTIONS {
            return Err(ServerError::Config(format!(
                "{} sessions to expect, at most {MAX_CONNECTIONS}",
                ids.len()
            )));
        }
        let live = self
            .0
            .sessions
            .lock()
            .map_err(|_| ServerError::Protocol("session table poisoned".into()))?;
        if let Some(id) = ids.iter().find(|id| **id == 0 || live.contains_key(id)) {
            return Err(ServerError::Config(format!(
                "session id {id:#x} cannot be expected: it is 0 or in use here"
            )));
        }
        drop(live);
        let now = std::time::Instant::now();
        let mut e = self
            .0
            .expected
            .lock()
            .map_err(|_| ServerError::Protocol("expected-session table poisoned".into()))?;
        e.retain(|_, d| *d > now);
        if e.len() + ids.len() > MAX_CONNECTIONS {
            return Err(ServerError::Config(
                "too many migrations expected at once".into(),
            ));
        }
        for id in ids {
            e.insert(*id, now + MIGRATION_WINDOW);
        }
        Ok(ids.len())
    }

    /// Hands every client over to `target`: semi-seamlessly where the client supports
    /// it (MIGRATE_BEGIN; the client links to the target and answers MIGRATE_CONNECTED;
    /// then MIGRATE_END), else, or when the client could not link there, with
    /// MIGRATE_SWITCH_HOST. Waits for every session's outcome.
    pub async fn migrate(&self, target: HandoverTarget) -> Result<MigrationReport, ServerError> {
        target.validate()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(MAX_CONNECTIONS);
        let n = self
            .0
            .handover
            .send(Order::Migrate(target, tx))
            .unwrap_or(0);
        let mut r = MigrationReport::default();
        let deadline =
            tokio::time::Instant::now() + MIGRATION_ANSWER + std::time::Duration::from_secs(2);
        while r.migrated + r.switched < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Moved::Migrated)) => r.migrated += 1,
                Ok(Some(Moved::Switched)) => r.switched += 1,
                Ok(None) | Err(_) => break,
            }
        }
        r.lost = n - r.migrated - r.switched;
        tracing::info!(?r, "migration done");
        Ok(r)
    }

    pub fn stats(&self) -> ServerStats {
        StatsHandle(self.0.clone()).stats()
    }
}

/// How long a target accepts a session id it was told to expect.
pub const MIGRATION_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a client may take to link to the target and answer MIGRATE_BEGIN; after
/// that it is told to switch host instead.
pub const MIGRATION_ANSWER: std::time::Duration = std::time::Duration::from_secs(15);

/// How long a handed-over client may stay before its session is closed.
pub const HANDOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Connections served at once; more are closed on accept so fds stay bounded.
const MAX_CONNECTIONS: usize = 256;

/// Accepts one client. Accept errors (e.g. out of fds) are logged and retried after a
/// pause rather than ending the server.
async fn accept(l: &TcpListener, shared: &Shared) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match l.accept().await {
        Ok((sock, peer)) => {
            if shared.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                tracing::warn!(%peer, limit = MAX_CONNECTIONS, "too many connections; closing the new one");
                return None;
            }
            let _ = sock.set_nodelay(true);
            Some((sock, peer))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            None
        }
    }
}

async fn bind(addr: IpAddr, port: u16) -> Result<TcpListener, ServerError> {
    TcpListener::bind((addr, port))
        .await
        .map_err(|source| ServerError::Io {
            op: format!("binding {addr}:{port}"),
            source,
        })
}

/// Counts a live connection task; dropped when the task ends, however it ends.
struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spawn_conn<S, F>(shared: Arc<Shared>, peer: SocketAddr, secure: bool, stream: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = Result<S, ServerError>> + Send + 'static,
{
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let guard = ConnGuard(shared.clone());
    let mut stop = shared.stop.subscribe();
    tokio::spawn(async move {
        let _guard = guard;
        let work = async {
            let mut s = tokio::time::timeout(conn::LINK_TIMEOUT, stream)
                .await
                .map_err(|_| {
                    ServerError::Protocol("TLS handshake not finished in time".into())
                })??;
            let sh = shared.clone();
            let check = Box::new(move |m: &spice_proto::link::LinkMess| sh.check_link(m));
            let Some((info, early)) = conn::link(&mut s, shared.link.clone(), check).await? else {
                return Ok(());
            };
            tracing::debug!(%peer, secure, channel = info.channel_type, id = info.channel_id, "linked");
            dispatch(shared, s, info, early).await
        };
        let r = tokio::select! {
            r = work => r,
            _ = stop.wait_for(|s| *s) => Ok(()),
        };
        if let Err(e) = r {
            tracing::info!(%peer, error = %e, "client connection ended");
        }
    });
}

async fn dispatch<S>(
    shared: Arc<Shared>,
    s: S,
    info: LinkInfo,
    early: Vec<u8>,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if info.channel_type == channel::MAIN {
        return main_ch::run(shared, s, info, early).await;
    }
    let session = shared
        .sessions
        .lock()
        .ok()
        .and_then(|m| m.get(&info.connection_id).cloned());
    let Some(session) = session else {
        // The link check found the session, but it ended since: close.
        return Err(ServerError::Protocol(format!(
            "channel {} links to unknown session {:#x}",
            info.channel_type, info.connection_id
        )));
    };
    if info.channel_id != 0 {
        return Err(ServerError::Protocol(format!(
            "channel {} id {} is not offered",
            info.channel_type, info.channel_id
        )));
    }
    let mut closed = session.closed.clone();
    let work = async {
        match info.channel_type {
            channel::DISPLAY => display_ch::run(&shared, &session, s, &info, early).await,
            channel::INPUTS => inputs_ch::run(&shared, &session, s, &info, early).await,
            channel::CURSOR => cursor_ch::run(&shared, &session, s, &info, early).await,
            t => Err(ServerError::Protocol(format!(
                "channel type {t} is not offered"
            ))),
        }
    };
    tokio::select! {
        r = work => r,
        _ = closed.wait_for(|c| *c) => Ok(()),
    }
}

/// Milliseconds since the server process started, the SPICE multimedia clock.
pub(crate) fn mm_time() -> u32 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticketing_must_be_explicit_and_within_spice_limits() {
        let mut c = Config::default();
        assert!(
            matches!(link_config(&c), Err(ServerError::Config(_))),
            "empty password"
        );
        c.ticketing = Ticketing::Password("x".repeat(61));
        let e = link_config(&c).err().expect("61-byte password refused");
        assert!(e.to_string().contains("61 bytes"), "{e}");
        c.ticketing = Ticketing::Password("ok".into());
        let lc = link_config(&c).expect("valid password");
        assert_eq!(lc.password.as_deref(), Some("ok"));
        c.ticketing = Ticketing::Disabled;
        assert_eq!(link_config(&c).unwrap().password, None);
    }

    #[tokio::test]
    async fn bind_refuses_no_port_and_missing_tls_files() {
        struct Never;
        impl DisplaySource for Never {
            fn size(&self) -> (u32, u32) {
                (1, 1)
            }
            fn capture(
                &mut self,
                _: coop_display::Rect,
                _: &mut Vec<u8>,
            ) -> Result<(), coop_display::DisplayError> {
                Err(coop_display::DisplayError::Stopped)
            }
            fn capture_full(&mut self) -> Result<coop_display::Frame, coop_display::DisplayError> {
                Err(coop_display::DisplayError::Stopped)
            }
            fn next_events(
                &mut self,
                t: std::time::Duration,
            ) -> Result<Vec<coop_display::SourceEvent>, coop_display::DisplayError> {
                std::thread::sleep(t.min(std::time::Duration::from_millis(5)));
                Ok(Vec::new())
            }
            fn key(&mut self, _: u32, _: bool) -> Result<(), coop_display::DisplayError> {
                Ok(())
            }
            fn pointer_abs(
                &mut self,
                _: u32,
                _: u32,
                _: u32,
            ) -> Result<(), coop_display::DisplayError> {
                Ok(())
            }
            fn pointer_rel(
                &mut self,
                _: i32,
                _: i32,
                _: u32,
            ) -> Result<(), coop_display::DisplayError> {
                Ok(())
            }
            fn button(&mut self, _: u8, _: bool) -> Result<(), coop_display::DisplayError> {
                Ok(())
            }
            fn resize(&mut self, _: u32, _: u32) -> Result<(), coop_display::DisplayError> {
                Ok(())
            }
            fn set_clipboard(
                &mut self,
                _: &str,
                _: &[u8],
            ) -> Result<(), coop_display::DisplayError> {
                Ok(())
            }
        }
        let cfg = Config {
            port: None,
            ticketing: Ticketing::Disabled,
            ..Default::default()
        };
        assert!(matches!(
            Server::bind(cfg.clone(), Box::new(Never)).await,
            Err(ServerError::Config(_))
        ));
        let cfg = Config {
            port: Some(0),
            tls: Some(TlsConfig {
                port: 0,
                cert: "/nonexistent/cert.pem".into(),
                key: "/nonexistent/key.pem".into(),
            }),
            ..cfg
        };
        match Server::bind(cfg, Box::new(Never)).await {
            Err(e @ ServerError::Tls { .. }) => {
                assert!(e.to_string().contains("/nonexistent/cert.pem"))
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("missing certificate accepted"),
        }
    }
}
