//! The one display source a server shows, shared by every client.
//!
//! The source runs on its own thread ([`coop_display::driver`]); its events are fanned
//! out to the channel tasks through a bounded broadcast (a client that lags behind gets
//! a full refresh instead of an unbounded backlog), and the latest cursor, size and
//! clipboard are kept here so a channel that connects later starts from the current state.

use std::sync::{Arc, Mutex};

use coop_display::driver::{self, DisplayHandle};
use coop_display::{Cursor, DisplayError, DisplaySource, Frame, Rect, SourceEvent};
use tokio::sync::broadcast;

/// Events kept for a lagging subscriber before it must resynchronise.
const EVENT_BACKLOG: usize = 256;

/// What the source last reported, for channels that connect later.
#[derive(Default)]
pub(crate) struct SourceState {
    pub size: (u32, u32),
    pub cursor: Option<Cursor>,
    pub cursor_visible: bool,
    pub cursor_pos: (i32, i32),
    /// Text the source's clipboard holds (UTF-8), if any.
    pub clipboard: Option<Vec<u8>>,
    /// Set when the source thread stopped on an error.
    pub failed: Option<String>,
}

/// A shareable handle to the running source.
pub(crate) struct SourceHub {
    handle: Mutex<Option<Arc<DisplayHandle>>>,
    events: broadcast::Sender<SourceEvent>,
    pub state: Arc<Mutex<SourceState>>,
}

impl SourceHub {
    pub fn start(source: Box<dyn DisplaySource>) -> Arc<SourceHub> {
        let size = source.size();
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let state = Arc::new(Mutex::new(SourceState {
            size,
            cursor_visible: true,
            ..Default::default()
        }));
        let tx = events.clone();
        let st = state.clone();
        let handle = driver::spawn(source, move |batch| match batch {
            Ok(evs) => {
                if let Ok(mut s) = st.lock() {
                    for e in &evs {
                        apply(&mut s, e);
                    }
                }
                for e in evs {
                    // No subscriber is fine: nobody is connected.
                    let _ = tx.send(e);
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "display source stopped");
                if let Ok(mut s) = st.lock() {
                    s.failed = Some(e.to_string());
                }
                false
            }
        });
        Arc::new(SourceHub {
            handle: Mutex::new(Some(Arc::new(handle))),
            events,
            state,
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SourceEvent> {
        self.events.subscribe()
    }

    fn handle(&self) -> Result<Arc<DisplayHandle>, DisplayError> {
        self.handle
            .lock()
            .ok()
            .and_then(|h| h.clone())
            .ok_or(DisplayError::Stopped)
    }

    pub fn size(&self) -> (u32, u32) {
        self.state.lock().map(|s| s.size).unwrap_or((0, 0))
    }

    /// Runs a blocking driver call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DisplayHandle) -> Result<T, DisplayError> + Send + 'static,
    ) -> Result<T, DisplayError> {
        let h = self.handle()?;
        tokio::task::spawn_blocking(move || f(&h))
            .await
            .map_err(|_| DisplayError::Stopped)?
    }

    pub async fn capture_full(&self) -> Result<Frame, DisplayError> {
        self.blocking(|h| h.capture_full()).await
    }

    pub async fn capture(&self, area: Rect) -> Result<Vec<u8>, DisplayError> {
        self.blocking(move |h| h.capture(area)).await
    }

    pub async fn resize(&self, w: u32, h: u32) -> Result<(), DisplayError> {
        self.blocking(move |d| d.resize(w, h)).await
    }

    pub async fn set_clipboard(&self, mime: String, data: Vec<u8>) -> Result<(), DisplayError> {
        self.blocking(move |d| d.set_clipboard(&mime, &data)).await
    }

    pub fn key(&self, code: u32, down: bool) {
        log_input(self.handle().and_then(|h| h.key(code, down)));
    }
    pub fn pointer_abs(&self, x: u32, y: u32, buttons: u32) {
        log_input(self.handle().and_then(|h| h.pointer_abs(x, y, buttons)));
    }
    pub fn pointer_rel(&self, dx: i32, dy: i32, buttons: u32) {
        log_input(self.handle().and_then(|h| h.pointer_rel(dx, dy, buttons)));
    }
    pub fn button(&self, b: u8, down: bool) {
        log_input(self.handle().and_then(|h| h.button(b, down)));
    }

    /// Stops the source thread (joined off the async threads).
    pub async fn shutdown(&self) {
        let h = self.handle.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = h {
            let _ = tokio::task::spawn_blocking(move || drop(h)).await;
        }
    }
}

fn log_input(r: Result<(), DisplayError>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "input not delivered to the display source");
    }
}

fn apply(s: &mut SourceState, e: &SourceEvent) {
    match e {
        SourceEvent::Resized { width, height } => s.size = (*width, *height),
        SourceEvent::CursorShape(c) => {
            s.cursor = Some(c.clone());
            s.cursor_visible = true;
        }
        SourceEvent::CursorHidden => s.cursor_visible = false,
        SourceEvent::CursorMoved { x, y } => s.cursor_pos = (*x, *y),
        SourceEvent::ClipboardChanged { mime, data } if mime.starts_with("text/") => {
            s.clipboard = Some(data.clone())
        }
        _ => {}
    }
}
