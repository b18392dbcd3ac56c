//! One client connection: the link stage, then framed messages in both directions.
//!
//! After the link a connection is three parts: a reader task (frames client bytes,
//! answers the base messages every channel shares: ACK_SYNC, ACK, PONG, DISCONNECTING),
//! a writer task (frames server messages from a bounded queue and stops sending while
//! the client is more than two ACK windows behind, as spice-server does), and the channel
//! logic in between. A slow client therefore only blocks its own queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spice_proto::framing::write_message;
use spice_proto::link::LinkInfo;
use spice_proto::{
    BaseClientMsg, BaseServerMsg, Framer, HeaderKind, LinkServer, LinkServerConfig, LinkStatus,
    Message, RawMessage,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::ServerError;

/// A client must finish the link within this time.
pub(crate) const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued towards one client before the producer waits.
const SEND_QUEUE: usize = 64;
/// Client messages queued towards the channel logic before the reader waits.
const RECV_QUEUE: usize = 64;
/// Messages between client ACKs (spice-server's default client window).
pub(crate) const ACK_WINDOW: u32 = 20;
/// The window on a slow (WAN) link, as spice-server widens it: more messages in flight
/// so round trips do not throttle a link whose bytes are few but whose latency is long.
pub(crate) const WAN_ACK_WINDOW: u32 = 40;
/// PONGs queued towards the channel logic; later ones are dropped while it is full.
const PONG_QUEUE: usize = 8;
/// Bytes written before a flush when several queued messages are ready.
const WRITE_BATCH: usize = 256 * 1024;

/// Runs the link stage. `Ok(None)` when the client was refused (the refusal was sent).
pub(crate) async fn link<S>(
    s: &mut S,
    cfg: Arc<LinkServerConfig>,
    check: spice_proto::link::ConnectionCheck,
) -> Result<Option<(LinkInfo, Vec<u8>)>, ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ls = LinkServer::new(cfg).with_connection_check(check);
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    let fut = async {
        loop {
            let n = s
                .read(&mut buf)
                .await
                .map_err(ServerError::io("link read"))?;
            if n == 0 {
                return Err(ServerError::Protocol(
                    "client closed during the link".into(),
                ));
            }
            let st = ls.feed(&buf[..n], &mut out);
            if !out.is_empty() {
                s.write_all(&out)
                    .await
                    .map_err(ServerError::io("link write"))?;
                s.flush().await.map_err(ServerError::io("link flush"))?;
                out.clear();
            }
            match st {
                LinkStatus::InProgress => {}
                LinkStatus::Failed(e) => {
                    tracing::info!(error = %e, "client link refused");
                    return Ok(None);
                }
                LinkStatus::Linked(info) => return Ok(Some((info, ls.take_remaining()))),
            }
        }
    };
    tokio::time::timeout(LINK_TIMEOUT, fut)
        .await
        .map_err(|_| ServerError::Protocol("link not finished in time".into()))?
}

/// A message ready to be framed.
pub(crate) struct Out {
    pub msg_type: u16,
    pub body: Vec<u8>,
}

impl Out {
    pub fn of<M: Message>(m: &M) -> Out {
        Out {
            msg_type: m.msg_type(),
            body: m.to_body(),
        }
    }
}

#[derive(Default)]
struct AckInner {
    generation: u32,
    client_generation: u32,
    window: u32,
    /// Messages sent since the last counted ACK.
    unacked: u32,
}

/// ACK window bookkeeping shared by the reader (client ACKs) and the writer.
#[derive(Default)]
pub(crate) struct AckState {
    inner: Mutex<AckInner>,
    notify: Notify,
}

impl AckState {
    fn blocked(&self) -> bool {
        self.inner
            .lock()
            .map(|a| a.window > 0 && a.unacked > a.window * 2)
            .unwrap_or(false)
    }
    fn sent(&self, set_ack: Option<(u32, u32)>) {
        if let Ok(mut a) = self.inner.lock() {
            if let Some((g, w)) = set_ack {
                a.generation = g;
                a.window = w;
                a.unacked = 0;
            } else {
                a.unacked = a.unacked.saturating_add(1);
            }
        }
    }
    fn on_client(&self, m: &BaseClientMsg) {
        if let Ok(mut a) = self.inner.lock() {
            match m {
                BaseClientMsg::AckSync { generation } => a.client_generation = *generation,
                BaseClientMsg::Ack if a.client_generation == a.generation => {
                    a.unacked = a.unacked.saturating_sub(a.window);
                }
                _ => return,
            }
        }
        self.notify.notify_waiters();
    }
}

/// Byte counters of one connection, shared with the server's statistics.
#[derive(Default)]
pub(crate) struct Counters {
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
}

/// The channel logic's view of a linked connection.
pub(crate) struct Channel {
    pub tx: mpsc::Sender<Out>,
    pub rx: mpsc::Receiver<RawMessage>,
    /// The client's PONGs: (ping id, when the reader got it). Only the main channel
    /// reads them (its bandwidth test); elsewhere they are dropped once this is full.
    pub pongs: mpsc::Receiver<(u32, std::time::Instant)>,
    /// Body bytes queued but not yet handed to the socket (the writer is waiting for
    /// the socket or for the client's ACKs): how far a slow link lags behind us.
    backlog: Arc<AtomicU64>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
    generation: u32,
}

impl Channel {
    /// Splits `stream` into reader and writer tasks. `max_msg` bounds client messages;
    /// `early` are bytes the link stage already read past the link.
    pub fn start<S>(
        stream: S,
        info: &LinkInfo,
        early: Vec<u8>,
        max_msg: u32,
        counters: Arc<Vec<Arc<Counters>>>,
        name: &'static str,
    ) -> Channel
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let kind = HeaderKind::from_mini(info.mini_header);
        let (r, w) = tokio::io::split(stream);
        let ack = Arc::new(AckState::default());
        let (tx, out_rx) = mpsc::channel(SEND_QUEUE);
        let (in_tx, rx) = mpsc::channel(RECV_QUEUE);
        let (pong_tx, pongs) = mpsc::channel(PONG_QUEUE);
        let backlog = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(writer(
            w,
            out_rx,
            kind,
            ack.clone(),
            counters.clone(),
            backlog.clone(),
            name,
        ));
        let reader = tokio::spawn(reader(
            r, early, in_tx, pong_tx, kind, max_msg, ack, counters, name,
        ));
        Channel {
            tx,
            rx,
            pongs,
            backlog,
            reader,
            writer: Some(writer),
            generation: 0,
        }
    }

    /// Sends a message; `Err` when the client is gone.
    pub async fn send(&self, out: Out) -> Result<(), ServerError> {
        self.backlog
            .fetch_add(out.body.len() as u64, Ordering::Relaxed);
        self.tx
            .send(out)
            .await
            .map_err(|_| ServerError::Protocol("client connection closed".into()))
    }

    /// Body bytes queued towards the client and not yet written to its socket.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    pub async fn send_msg<M: Message>(&self, m: &M) -> Result<(), ServerError> {
        self.send(Out::of(m)).await
    }

    /// Starts a new ACK window (SET_ACK), as every spice-server channel does first.
    pub async fn set_ack(&mut self) -> Result<(), ServerError> {
        self.set_ack_window(ACK_WINDOW).await
    }

    /// Starts a new ACK window of `window` messages (e.g. wider once a link is slow).
    pub async fn set_ack_window(&mut self, window: u32) -> Result<(), ServerError> {
        self.generation += 1;
        self.send_msg(&BaseServerMsg::SetAck {
            generation: self.generation,
            window,
        })
        .await
    }

    /// Lets the writer flush what is queued (bounded wait), then stops both tasks.
    pub async fn close(mut self) {
        let (dummy, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, dummy));
        if let Some(w) = self.writer.take() {
            let abort = w.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), w)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(w) = &self.writer {
            w.abort();
        }
    }
}

async fn writer<W: AsyncWrite>(
    mut w: tokio::io::WriteHalf<W>,
    mut rx: mpsc::Receiver<Out>,
    kind: HeaderKind,
    ack: Arc<AckState>,
    counters: Arc<Vec<Arc<Counters>>>,
    backlog: Arc<AtomicU64>,
    name: &'static str,
) {
    let mut serial = 0u64;
    let mut buf = Vec::new();
    let mut pending = 0usize;
    'outer: while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            loop {
                let notified = ack.notify.notified();
                if !ack.blocked() {
                    break;
                }
                // Flush what we have before waiting so the client can catch up and ACK.
                if pending > 0 && flush(&mut w, &mut pending, &counters, name).await.is_err() {
                    break 'outer;
                }
                notified.await;
            }
            serial += 1;
            let set_ack = (m.msg_type == spice_proto::consts::msg::base::SET_ACK)
                .then(|| {
                    let b = &m.body;
                    (b.len() >= 8).then(|| {
                        (
                            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                        )
                    })
                })
                .flatten();
            buf.clear();
            write_message(kind, serial, m.msg_type, &m.body, &mut buf);
            // One write per message: over TLS each write becomes its own records, and
            // spice-gtk stalls when a record holds the end of one message and the start
            // of the next (it waits on the socket while OpenSSL holds the rest).
            if let Err(e) = w.write_all(&buf).await {
                tracing::debug!(channel = name, error = %e, "client write failed");
                break 'outer;
            }
            pending += buf.len();
            backlog.fetch_sub(m.body.len() as u64, Ordering::Relaxed);
            ack.sent(set_ack);
            if pending < WRITE_BATCH {
                if let Ok(m) = rx.try_recv() {
                    next = Some(m);
                }
            }
        }
        if flush(&mut w, &mut pending, &counters, name).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

async fn flush<W: AsyncWrite>(
    w: &mut tokio::io::WriteHalf<W>,
    pending: &mut usize,
    counters: &[Arc<Counters>],
    name: &'static str,
) -> std::io::Result<()> {
    let r = w.flush().await;
    if let Err(e) = &r {
        tracing::debug!(channel = name, error = %e, "client flush failed");
    } else {
        for c in counters {
            c.bytes_out.fetch_add(*pending as u64, Ordering::Relaxed);
        }
    }
    *pending = 0;
    r
}

#[allow(clippy::too_many_arguments)]
async fn reader<R: AsyncRead>(
    mut r: tokio::io::ReadHalf<R>,
    early: Vec<u8>,
    tx: mpsc::Sender<RawMessage>,
    pongs: mpsc::Sender<(u32, std::time::Instant)>,
    kind: HeaderKind,
    max_msg: u32,
    ack: Arc<AckState>,
    counters: Arc<Vec<Arc<Counters>>>,
    name: &'static str,
) {
    let mut framer = Framer::new(kind, max_msg);
    framer.push(&early);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        loop {
            let m = match framer.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(channel = name, error = %e, "dropping client: bad message framing");
                    return;
                }
            };
            if m.msg_type < spice_proto::consts::msg::base::BASE_LAST {
                match BaseClientMsg::decode(m.msg_type, &m.body) {
                    Ok(BaseClientMsg::Disconnecting { reason, .. }) => {
                        tracing::debug!(channel = name, %reason, "client disconnecting");
                        return;
                    }
                    Ok(BaseClientMsg::Pong { id, .. }) => {
                        tracing::trace!(channel = name, id, "pong");
                        let _ = pongs.try_send((id, std::time::Instant::now()));
                    }
                    Ok(b) => ack.on_client(&b),
                    Err(e) => {
                        tracing::warn!(channel = name, msg_type = m.msg_type, error = %e, "dropping client: malformed message");
                        return;
                    }
                }
                continue;
            }
            if tx.send(m).await.is_err() {
                return;
            }
        }
        match r.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                for c in counters.iter() {
                    c.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                }
                framer.push(&buf[..n]);
            }
            Err(e) => {
                tracing::debug!(channel = name, error = %e, "client read failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_window_blocks_after_two_windows_and_acks_release() {
        let a = AckState::default();
        assert!(!a.blocked(), "no window before SET_ACK");
        a.sent(Some((1, 20)));
        for _ in 0..40 {
            a.sent(None);
        }
        assert!(!a.blocked(), "exactly two windows outstanding is allowed");
        a.sent(None);
        assert!(a.blocked());
        // An ACK of an older generation does not count.
        a.on_client(&BaseClientMsg::AckSync { generation: 0 });
        a.on_client(&BaseClientMsg::Ack);
        assert!(a.blocked());
        a.on_client(&BaseClientMsg::AckSync { generation: 1 });
        a.on_client(&BaseClientMsg::Ack);
        assert!(!a.blocked());
        // A new SET_ACK starts counting afresh.
        for _ in 0..100 {
            a.sent(None);
        }
        a.sent(Some((2, 20)));
        assert!(!a.blocked());
    }
}
