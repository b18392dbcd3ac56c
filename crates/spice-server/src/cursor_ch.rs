//! The cursor channel: the pointer shape (ALPHA, premultiplied ARGB as X gives it),
//! cached on the client by unique id, and its position in server mouse mode.

use std::collections::HashSet;
use std::sync::Arc;

use coop_display::SourceEvent;
use spice_proto::consts::{cursor_flags, cursor_type};
use spice_proto::cursor::{Cursor, CursorHeader};
use spice_proto::link::LinkInfo;
use spice_proto::types::Point16;
use spice_proto::CursorServerMsg;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;

use crate::conn::Channel;
use crate::main_ch::MOUSE_SERVER;
use crate::{ServerError, Session, Shared};

/// Shapes the client keeps before we invalidate its cache and start over.
const CURSOR_CACHE: usize = 32;
/// Larger cursors are not sent (spice-gtk and X both stay far below this).
const MAX_CURSOR_SIDE: u32 = 512;

struct Cache(HashSet<u64>);

impl Cache {
    /// The SPICE cursor for `c`, marked CACHE_ME the first time and FROM_CACHE after.
    /// The bool says the client cache must be reset first.
    fn cursor(&mut self, c: &coop_display::Cursor) -> (Cursor, bool) {
        if c.width > MAX_CURSOR_SIDE || c.height > MAX_CURSOR_SIDE {
            return (Cursor::default_none(), false);
        }
        let unique = c.serial.wrapping_add(1);
        let header = Some(CursorHeader {
            unique,
            cursor_type: cursor_type::ALPHA,
            width: c.width as u16,
            height: c.height as u16,
            hot_spot_x: c.hot_x.min(u32::from(u16::MAX)) as u16,
            hot_spot_y: c.hot_y.min(u32::from(u16::MAX)) as u16,
        });
        if self.0.contains(&unique) {
            return (
                Cursor {
                    flags: cursor_flags::FROM_CACHE,
                    header,
                    data: Vec::new(),
                },
                false,
            );
        }
        let reset = self.0.len() >= CURSOR_CACHE;
        if reset {
            self.0.clear();
        }
        self.0.insert(unique);
        (
            Cursor {
                flags: cursor_flags::CACHE_ME,
                header,
                data: c.bgra_bytes(),
            },
            reset,
        )
    }
}

trait NoneCursor {
    fn default_none() -> Self;
}

impl NoneCursor for Cursor {
    fn default_none() -> Self {
        Cursor {
            flags: 0,
            header: None,
            data: Vec::new(),
        }
    }
}

fn pos16(x: i32, y: i32) -> Point16 {
    Point16 {
        x: x.clamp(i16::MIN.into(), i16::MAX.into()) as i16,
        y: y.clamp(i16::MIN.into(), i16::MAX.into()) as i16,
    }
}

pub(crate) async fn run<S>(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    s: S,
    info: &LinkInfo,
    early: Vec<u8>,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let counters = Arc::new(vec![shared.total.clone()]);
    let mut ch = Channel::start(s, info, early, 4096, counters, "cursor");
    let r = serve_cursor(shared, session, &mut ch).await;
    ch.close().await;
    r
}

async fn send_current(
    ch: &Channel,
    shared: &Shared,
    cache: &mut Cache,
    init: bool,
) -> Result<(), ServerError> {
    let (cur, visible, pos) = match shared.source.state.lock() {
        Ok(s) => (s.cursor.clone(), s.cursor_visible, s.cursor_pos),
        Err(_) => (None, true, (0, 0)),
    };
    let (cursor, reset) = match &cur {
        Some(c) => cache.cursor(c),
        None => (Cursor::default_none(), false),
    };
    if reset {
        ch.send_msg(&CursorServerMsg::InvalAll).await?;
    }
    let position = pos16(pos.0, pos.1);
    let visible = u8::from(visible && cur.is_some());
    let m = if init {
        CursorServerMsg::Init {
            position,
            trail_length: 0,
            trail_frequency: 0,
            visible,
            cursor,
        }
    } else {
        CursorServerMsg::Set {
            position,
            visible,
            cursor,
        }
    };
    ch.send_msg(&m).await
}

async fn serve_cursor(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    ch: &mut Channel,
) -> Result<(), ServerError> {
    let mut events = shared.source.subscribe();
    ch.set_ack().await?;
    let mut cache = Cache(HashSet::new());
    send_current(ch, shared, &mut cache, true).await?;
    loop {
        tokio::select! {
            m = ch.rx.recv() => {
                // Only base messages exist client→server; the reader handled them.
                let Some(m) = m else { return Ok(()) };
                tracing::debug!(msg_type = m.msg_type, "unexpected cursor message ignored");
            }
            e = events.recv() => match e {
                Ok(SourceEvent::CursorShape(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    send_current(ch, shared, &mut cache, false).await?;
                }
                Ok(SourceEvent::CursorHidden) => ch.send_msg(&CursorServerMsg::Hide).await?,
                Ok(SourceEvent::CursorMoved { x, y }) => {
                    let mode = session.mouse_mode.lock().map(|m| *m).unwrap_or(0);
                    if mode == MOUSE_SERVER {
                        ch.send_msg(&CursorServerMsg::Move { position: pos16(x, y) }).await?;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(ServerError::Protocol("display source stopped".into()));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(serial: u64) -> coop_display::Cursor {
        coop_display::Cursor {
            serial,
            width: 2,
            height: 3,
            hot_x: 1,
            hot_y: 2,
            argb: vec![0xff00_ff00; 6],
        }
    }

    #[test]
    fn shapes_are_cached_then_referenced_and_the_cache_resets() {
        let mut c = Cache(HashSet::new());
        let (first, reset) = c.cursor(&shape(5));
        assert!(!reset);
        assert_eq!(first.flags, cursor_flags::CACHE_ME);
        let h = first.header.unwrap();
        assert_eq!(
            (h.width, h.height, h.hot_spot_x, h.hot_spot_y),
            (2, 3, 1, 2)
        );
        assert_eq!(h.cursor_type, cursor_type::ALPHA);
        assert_eq!(first.data.len(), 24);
        let (again, _) = c.cursor(&shape(5));
        assert_eq!(again.flags, cursor_flags::FROM_CACHE);
        assert_eq!(again.header.unwrap().unique, h.unique);
        assert!(again.data.is_empty());
        for s in 100..100 + CURSOR_CACHE as u64 - 1 {
            assert!(!c.cursor(&shape(s)).1);
        }
        let (_, reset) = c.cursor(&shape(999));
        assert!(reset, "a full cache is invalidated before adding more");
        assert_eq!(c.cursor(&shape(5)).0.flags, cursor_flags::CACHE_ME);
    }

    #[test]
    fn oversized_cursors_are_not_sent() {
        let mut c = Cache(HashSet::new());
        let mut big = shape(1);
        big.width = 4096;
        big.argb = vec![0; 4096 * 3];
        assert!(c.cursor(&big).0.header.is_none());
    }
}
