//! Runs a [`DisplaySource`] on its own thread so async code never blocks on it.
//!
//! The thread loops on `next_events` and hands every non-empty batch to a caller-supplied
//! sink (a closure: e.g. one that does `tokio::sync::mpsc::UnboundedSender::send`, which
//! works from a plain thread). Input, resize, clipboard and capture requests go through a
//! [`DisplayHandle`]; they wake the thread via the source's [`crate::Interrupter`], so
//! they are applied within microseconds rather than after the poll timeout.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::warn;

use crate::{DisplayError, DisplaySource, Frame, Interrupter, Rect, SourceEvent};

/// How long the thread blocks in `next_events` when the source cannot be woken early.
const POLL_WITHOUT_WAKER: Duration = Duration::from_millis(10);
const POLL_WITH_WAKER: Duration = Duration::from_millis(500);

type Reply<T> = mpsc::Sender<Result<T, DisplayError>>;

enum Command {
    Key(u32, bool),
    PointerAbs(u32, u32, u32),
    PointerRel(i32, i32, u32),
    Button(u8, bool),
    Resize(u32, u32, Reply<()>),
    SetClipboard(String, Vec<u8>, Reply<()>),
    Capture(Rect, Reply<Vec<u8>>),
    CaptureFull(Reply<Frame>),
    Size(mpsc::Sender<(u32, u32)>),
}

/// Controls a source running on its own thread. Dropping it stops and joins the thread.
pub struct DisplayHandle {
    tx: Option<mpsc::Sender<Command>>,
    wake: Option<Interrupter>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread. `sink` receives each batch of events, or the error that stopped
/// the source; returning `false` from it stops the thread.
pub fn spawn<F>(mut source: Box<dyn DisplaySource>, mut sink: F) -> DisplayHandle
where
    F: FnMut(Result<Vec<SourceEvent>, DisplayError>) -> bool + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Command>();
    let wake = source.interrupter();
    let timeout = if wake.is_some() {
        POLL_WITH_WAKER
    } else {
        POLL_WITHOUT_WAKER
    };
    let thread = std::thread::Builder::new()
        .name("coop-display".into())
        .spawn(move || loop {
            loop {
                match rx.try_recv() {
                    Ok(cmd) => run(&mut *source, cmd),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            match source.next_events(timeout) {
                Ok(ev) if ev.is_empty() => {}
                Ok(ev) => {
                    if !sink(Ok(ev)) {
                        return;
                    }
                }
                Err(e) => {
                    sink(Err(e));
                    return;
                }
            }
        })
        .ok();
    DisplayHandle {
        tx: Some(tx),
        wake,
        thread,
    }
}

fn run(source: &mut dyn DisplaySource, cmd: Command) {
    let input = match cmd {
        Command::Key(code, down) => source.key(code, down),
        Command::PointerAbs(x, y, b) => source.pointer_abs(x, y, b),
        Command::PointerRel(dx, dy, b) => source.pointer_rel(dx, dy, b),
        Command::Button(b, down) => source.button(b, down),
        Command::Resize(w, h, reply) => {
            let _ = reply.send(source.resize(w, h));
            Ok(())
        }
        Command::SetClipboard(mime, data, reply) => {
            let _ = reply.send(source.set_clipboard(&mime, &data));
            Ok(())
        }
        Command::Capture(area, reply) => {
            let mut out = Vec::new();
            let _ = reply.send(source.capture(area, &mut out).map(|_| out));
            Ok(())
        }
        Command::CaptureFull(reply) => {
            let _ = reply.send(source.capture_full());
            Ok(())
        }
        Command::Size(reply) => {
            let _ = reply.send(source.size());
            Ok(())
        }
    };
    if let Err(e) = input {
        // Input is fire-and-forget (a client may send nonsense); keep serving.
        warn!(error = %e, "display input rejected");
    }
}

impl DisplayHandle {
    fn send(&self, cmd: Command) -> Result<(), DisplayError> {
        self.tx
            .as_ref()
            .ok_or(DisplayError::Stopped)?
            .send(cmd)
            .map_err(|_| DisplayError::Stopped)?;
        if let Some(w) = &self.wake {
            w.wake();
        }
        Ok(())
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DisplayError> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx))?;
        rx.recv().map_err(|_| DisplayError::Stopped)?
    }

    /// Queues a key event (see [`DisplaySource::key`]).
    pub fn key(&self, pc_scancode: u32, down: bool) -> Result<(), DisplayError> {
        self.send(Command::Key(pc_scancode, down))
    }
    pub fn pointer_abs(&self, x: u32, y: u32, buttons: u32) -> Result<(), DisplayError> {
        self.send(Command::PointerAbs(x, y, buttons))
    }
    pub fn pointer_rel(&self, dx: i32, dy: i32, buttons: u32) -> Result<(), DisplayError> {
        self.send(Command::PointerRel(dx, dy, buttons))
    }
    pub fn button(&self, button: u8, down: bool) -> Result<(), DisplayError> {
        self.send(Command::Button(button, down))
    }
    /// Blocks until the source has tried (call from a blocking context).
    pub fn resize(&self, width: u32, height: u32) -> Result<(), DisplayError> {
        self.call(|r| Command::Resize(width, height, r))
    }
    /// Blocks until the source owns the clipboard.
    pub fn set_clipboard(&self, mime: &str, data: &[u8]) -> Result<(), DisplayError> {
        self.call(|r| Command::SetClipboard(mime.to_string(), data.to_vec(), r))
    }
    /// Blocks until the area is captured.
    pub fn capture(&self, area: Rect) -> Result<Vec<u8>, DisplayError> {
        self.call(|r| Command::Capture(area, r))
    }
    /// Blocks until the screen is captured.
    pub fn capture_full(&self) -> Result<Frame, DisplayError> {
        self.call(Command::CaptureFull)
    }
    pub fn size(&self) -> Result<(u32, u32), DisplayError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Size(tx))?;
        rx.recv().map_err(|_| DisplayError::Stopped)
    }
}

impl Drop for DisplayHandle {
    fn drop(&mut self) {
        // Closing the channel ends the loop at its next round; the wake makes that now.
        self.tx.take();
        if let Some(w) = &self.wake {
            w.wake();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
