//! One SPICE channel connection over TCP or TLS: the link stage, framing, and the
//! base protocol every channel shares (SET_ACK/ACK, PING/PONG, NOTIFY,
//! DISCONNECTING), with byte counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spice_proto::common::Message;
use spice_proto::consts::{channel as chan, LinkErr};
use spice_proto::framing::write_message;
use spice_proto::link::LinkInfo;
use spice_proto::{
    BaseClientMsg, BaseServerMsg, Framer, HeaderKind, LinkClient, LinkClientConfig, LinkStatus,
    RawMessage,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::error::ClientError;
use crate::tls::TlsConnector;

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Largest message body we accept (spice-server's largest images stay well below).
pub const MAX_MESSAGE: u32 = 64 << 20;

/// Human name of a channel type.
pub fn channel_name(t: u8) -> &'static str {
    match t {
        chan::MAIN => "main",
        chan::DISPLAY => "display",
        chan::INPUTS => "inputs",
        chan::CURSOR => "cursor",
        chan::PLAYBACK => "playback",
        chan::RECORD => "record",
        _ => "other",
    }
}

/// Bytes moved on one channel.
#[derive(Debug, Default)]
pub struct ByteCounter {
    pub channel_type: u8,
    pub channel_id: u8,
    /// Over TLS.
    pub secure: std::sync::atomic::AtomicBool,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub messages: AtomicU64,
}

/// Writing half of a channel, shareable between tasks.
#[derive(Clone)]
pub struct ChannelSender {
    inner: Arc<Mutex<Writer>>,
    serial: Arc<AtomicU64>,
    kind: HeaderKind,
    name: &'static str,
    counter: Arc<ByteCounter>,
}

impl ChannelSender {
    /// Sends one message (header + body).
    pub async fn send<M: Message>(&self, msg: &M) -> Result<(), ClientError> {
        let body = msg.to_body();
        self.send_raw(msg.msg_type(), &body).await
    }

    pub async fn send_raw(&self, msg_type: u16, body: &[u8]) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(body.len() + 18);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        write_message(self.kind, serial, msg_type, body, &mut out);
        let mut w = self.inner.lock().await;
        let io = |e: std::io::Error| ClientError::Io {
            channel: self.name,
            reason: e.to_string(),
        };
        w.write_all(&out).await.map_err(io)?;
        // TLS may hold the record back until flushed; TCP's flush does nothing.
        w.flush().await.map_err(io)?;
        self.counter
            .sent
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A channel through the link stage, before its stream is split.
struct Linked {
    name: &'static str,
    info: LinkInfo,
    remaining: Vec<u8>,
    counter: Arc<ByteCounter>,
}

/// Reading half of a linked channel.
pub struct Channel {
    pub name: &'static str,
    pub info: LinkInfo,
    rd: Reader,
    framer: Framer,
    pub tx: ChannelSender,
    ack_window: u32,
    ack_left: u32,
    pub counter: Arc<ByteCounter>,
    buf: Vec<u8>,
}

async fn with_timeout<T>(
    channel: &'static str,
    what: &'static str,
    t: Duration,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            channel,
            what,
            ms: t.as_millis(),
        }),
    }
}

impl Channel {
    /// Connects to `addr`, over TLS when `tls` is given, and links a channel;
    /// `timeout` bounds connect + handshake + link.
    pub async fn connect(
        addr: &str,
        tls: Option<&TlsConnector>,
        cfg: LinkClientConfig,
        timeout: Duration,
    ) -> Result<Channel, ClientError> {
        let name = channel_name(cfg.channel_type);
        let deadline = Instant::now() + timeout;
        let stream = with_timeout(name, "connecting", timeout, async {
            TcpStream::connect(addr)
                .await
                .map_err(|e| ClientError::Connect {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
        })
        .await?;
        let _ = stream.set_nodelay(true);
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(tls) = tls else {
            return with_timeout(name, "linking", left, async move {
                let mut stream = stream;
                let linked = Self::link(&mut stream, cfg).await?;
                let (rd, wr) = stream.into_split();
                Ok(Self::finish(linked, Box::new(rd), Box::new(wr)))
            })
            .await;
        };
        with_timeout(name, "linking over TLS", left, async move {
            let mut stream = tls.handshake(stream).await?;
            let linked = Self::link(&mut stream, cfg).await?;
            linked.counter.secure.store(true, Ordering::Relaxed);
            let (rd, wr) = tokio::io::split(stream);
            Ok(Self::finish(linked, Box::new(rd), Box::new(wr)))
        })
        .await
    }

    async fn link<S: AsyncRead + AsyncWrite + Unpin>(
        stream: &mut S,
        cfg: LinkClientConfig,
    ) -> Result<Linked, ClientError> {
        let name = channel_name(cfg.channel_type);
        let (ct, cid) = (cfg.channel_type, cfg.channel_id);
        let proto = |source| ClientError::Proto {
            channel: name,
            source,
        };
        let io = |e: std::io::Error| ClientError::Io {
            channel: name,
            reason: e.to_string(),
        };
        let counter = Arc::new(ByteCounter {
            channel_type: ct,
            channel_id: cid,
            ..Default::default()
        });
        let mut link = LinkClient::new(cfg).map_err(proto)?;
        let mut out = Vec::new();
        link.start(&mut out);
        stream.write_all(&out).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        counter.sent.fetch_add(out.len() as u64, Ordering::Relaxed);
        let mut buf = vec![0u8; 4096];
        let info = loop {
            let n = stream.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                return Err(ClientError::Disconnected {
                    channel: name,
                    detail: " during the link".into(),
                });
            }
            counter.received.fetch_add(n as u64, Ordering::Relaxed);
            out.clear();
            let st = link.feed(&buf[..n], &mut out).map_err(proto)?;
            if !out.is_empty() {
                stream.write_all(&out).await.map_err(io)?;
                stream.flush().await.map_err(io)?;
                counter.sent.fetch_add(out.len() as u64, Ordering::Relaxed);
            }
            match st {
                LinkStatus::InProgress => {}
                LinkStatus::Linked(info) => break info,
                LinkStatus::Failed(e) if e == LinkErr::PERMISSION_DENIED => {
                    return Err(ClientError::AuthFailed(e))
                }
                LinkStatus::Failed(err) => {
                    return Err(ClientError::LinkRefused { channel: name, err })
                }
            }
        };
        Ok(Linked {
            name,
            info,
            remaining: link.take_remaining(),
            counter,
        })
    }

    fn finish(l: Linked, rd: Reader, wr: Writer) -> Channel {
        let Linked {
            name,
            info,
            remaining,
            counter,
        } = l;
        let kind = HeaderKind::from_mini(info.mini_header);
        let mut framer = Framer::new(kind, MAX_MESSAGE);
        framer.push(&remaining);
        let tx = ChannelSender {
            inner: Arc::new(Mutex::new(wr)),
            serial: Arc::new(AtomicU64::new(0)),
            kind,
            name,
            counter: counter.clone(),
        };
        tracing::debug!(channel = name, mini = info.mini_header, "linked");
        Channel {
            name,
            info,
            rd,
            framer,
            tx,
            ack_window: 0,
            ack_left: 0,
            counter,
            buf: vec![0u8; 256 * 1024],
        }
    }

    /// The next channel-specific message; base messages are answered here.
    pub async fn recv(&mut self) -> Result<RawMessage, ClientError> {
        loop {
            let m = self.next_raw().await?;
            self.counter.messages.fetch_add(1, Ordering::Relaxed);
            // Every message counts towards the ack window, base ones included.
            if self.ack_window > 0 {
                self.ack_left = self.ack_left.saturating_sub(1);
                if self.ack_left == 0 {
                    self.ack_left = self.ack_window;
                    self.tx.send(&BaseClientMsg::Ack).await?;
                }
            }
            if m.msg_type >= spice_proto::consts::msg::base::BASE_LAST {
                return Ok(m);
            }
            let base = BaseServerMsg::decode(m.msg_type, &m.body).map_err(|source| {
                ClientError::Proto {
                    channel: self.name,
                    source,
                }
            })?;
            match base {
                BaseServerMsg::SetAck { generation, window } => {
                    self.ack_window = window;
                    self.ack_left = window;
                    self.tx.send(&BaseClientMsg::AckSync { generation }).await?;
                }
                BaseServerMsg::Ping { id, timestamp, .. } => {
                    self.tx.send(&BaseClientMsg::Pong { id, timestamp }).await?;
                }
                BaseServerMsg::Notify {
                    severity, message, ..
                } => {
                    let text = String::from_utf8_lossy(&message);
                    let text = text.trim_end_matches('\0');
                    tracing::info!(channel = self.name, severity, "server notice: {text}");
                }
                BaseServerMsg::Disconnecting { reason, .. } => {
                    return Err(ClientError::Disconnected {
                        channel: self.name,
                        detail: format!(" (DISCONNECTING: {reason})"),
                    })
                }
                BaseServerMsg::WaitForChannels(_) => {
                    // One display channel per session here, so the messages
                    // waited for were already processed in order.
                }
                BaseServerMsg::Migrate { .. } | BaseServerMsg::MigrateData(_) => {
                    return Err(ClientError::Unsupported("migration"));
                }
            }
        }
    }

    async fn next_raw(&mut self) -> Result<RawMessage, ClientError> {
        loop {
            match self.framer.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::Proto {
                        channel: self.name,
                        source,
                    })
                }
            }
            let n = self
                .rd
                .read(&mut self.buf)
                .await
                .map_err(|e| ClientError::Io {
                    channel: self.name,
                    reason: e.to_string(),
                })?;
            if n == 0 {
                let pending = self.framer.buffered();
                return Err(ClientError::Disconnected {
                    channel: self.name,
                    detail: if pending > 0 {
                        format!(" in the middle of a message ({pending} bytes pending)")
                    } else {
                        String::new()
                    },
                });
            }
            self.counter.received.fetch_add(n as u64, Ordering::Relaxed);
            self.framer.push(&self.buf[..n]);
        }
    }

    /// `recv` bounded by `t`.
    pub async fn recv_timeout(
        &mut self,
        t: Duration,
        what: &'static str,
    ) -> Result<RawMessage, ClientError> {
        let name = self.name;
        with_timeout(name, what, t, self.recv()).await
    }
}
