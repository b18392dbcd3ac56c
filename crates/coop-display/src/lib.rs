//! Display sources for coop's SPICE server.
//!
//! A [`DisplaySource`] is whatever the SPICE server shows and drives: it hands out
//! frames (full or per damaged area), reports damage, cursor shape/position and clipboard
//! changes as [`SourceEvent`]s, takes keyboard/pointer input, resizes on request and
//! shares the clipboard. Today there is one implementation, [`X11Source`], which watches a
//! real X server (Xvfb, Xorg, …) through the `x11rb` pure-Rust protocol crate; the UML and
//! VM framebuffer sources are meant to implement the same trait.
//!
//! # Threading model
//! A source is a plain synchronous object (`Send`, not `Sync`). The intended use is one
//! dedicated thread that loops on [`DisplaySource::next_events`] and, between calls,
//! applies input / resize / clipboard requests coming from the async side. To avoid
//! waiting a whole timeout before a queued input request is applied, the source offers
//! an [`Interrupter`]: calling [`Interrupter::wake`] from any thread makes a blocked
//! `next_events` return early (possibly with no events). [`driver::spawn`] packages
//! exactly that loop over std channels.
//!
//! # Pixel format
//! Every pixel buffer is 32 bits per pixel, bytes in memory `B, G, R, X` (a little-endian
//! `0xXXRRGGBB` word), the layout of SPICE's `SPICE_BITMAP_FMT_32BIT`. The X byte is
//! unspecified (whatever the X server left there); consumers must ignore it.
//!
//! # Running an X server for the X11 source (measured on Xvfb / Xorg 21.1.7)
//! - Start it with `-noreset`: otherwise the server resets (root background and all)
//!   each time its last client leaves.
//! - If you use `-displayfd N`, do not make N the server's stdout/stderr: the server
//!   closes N after writing the number, the next client connection reuses that fd
//!   number, and anything the server or a driver prints (the spiceqxl driver does)
//!   corrupts that client's protocol stream: its requests then hang.
//! - Cursor shapes: with the SECURITY extension (on by default), Xorg refuses
//!   `XFixesGetCursorImage` (BadAccess) while the current cursor belongs to a client
//!   that has exited (e.g. after `xsetroot -cursor_name watch`); the source then keeps
//!   the previous shape. `-extension SECURITY` avoids that.
//! - Resize: Xvfb's RANDR can switch to any size up to its `-screen` size (the source
//!   creates the mode), not beyond it; Xorg with the spiceqxl driver (Xspice) can also
//!   grow, up to 8192×8192.
//! - Expected: 24-bit TrueColor, 32 bpp, little-endian (`-screen 0 WxHx24`), DAMAGE,
//!   XFIXES ≥ 2, XTEST; MIT-SHM ≥ 1.2 (fd passing) is used when present, else GetImage.

mod keymap;
mod moves;
mod rects;
mod x11;

pub mod driver;

use std::time::Duration;

pub use keymap::{scancode_to_evdev, ScancodeParser};
pub use rects::merge_rects;
pub use x11::X11Source;

/// A full frame of the source: `height` rows of `stride` bytes, BGRX 32 bpp.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Bytes per row; always `width * 4` for frames produced by this crate.
    pub stride: usize,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl Frame {
    /// The pixel at (x, y) as `0x00RRGGBB`, or `None` outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let off = y as usize * self.stride + x as usize * 4;
        let p = self.data.get(off..off + 4)?;
        Some(u32::from_le_bytes([p[0], p[1], p[2], 0]))
    }
}

/// A rectangle in screen pixels (origin top-left).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Rect { x, y, w, h }
    }
    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }
    pub fn area(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }
    /// Exclusive right edge (saturating, so huge rects cannot overflow).
    pub fn right(&self) -> u32 {
        self.x.saturating_add(self.w)
    }
    /// Exclusive bottom edge.
    pub fn bottom(&self) -> u32 {
        self.y.saturating_add(self.h)
    }
    /// The smallest rectangle containing both.
    pub fn union(&self, o: &Rect) -> Rect {
        let x = self.x.min(o.x);
        let y = self.y.min(o.y);
        Rect::new(
            x,
            y,
            self.right().max(o.right()) - x,
            self.bottom().max(o.bottom()) - y,
        )
    }
    /// The overlap of both, or `None` when they do not overlap.
    pub fn intersect(&self, o: &Rect) -> Option<Rect> {
        let x = self.x.max(o.x);
        let y = self.y.max(o.y);
        let r = self.right().min(o.right());
        let b = self.bottom().min(o.bottom());
        (r > x && b > y).then(|| Rect::new(x, y, r - x, b - y))
    }
    /// True when `o` lies entirely inside `self`.
    pub fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x && o.y >= self.y && o.right() <= self.right() && o.bottom() <= self.bottom()
    }
}

/// A cursor image.
#[derive(Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Changes whenever the shape changes (XFixes cursor serial for X11). Lets the server
    /// cache shapes (SPICE cursor `unique` id).
    pub serial: u64,
    pub width: u32,
    pub height: u32,
    pub hot_x: u32,
    pub hot_y: u32,
    /// `width * height` pixels, row-major, `0xAARRGGBB` with **premultiplied** alpha (the
    /// XFixes / Xcursor convention). Use [`Cursor::straight_alpha`] for straight alpha.
    pub argb: Vec<u32>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("serial", &self.serial)
            .field("size", &(self.width, self.height))
            .field("hot", &(self.hot_x, self.hot_y))
            .finish()
    }
}

impl Cursor {
    /// The pixels with straight (non-premultiplied) alpha, `0xAARRGGBB`.
    pub fn straight_alpha(&self) -> Vec<u32> {
        self.argb
            .iter()
            .map(|&p| {
                let a = p >> 24;
                if a == 0 || a == 255 {
                    return p;
                }
                let un = |c: u32| ((c * 255 + a / 2) / a).min(255);
                (a << 24) | (un((p >> 16) & 0xff) << 16) | (un((p >> 8) & 0xff) << 8) | un(p & 0xff)
            })
            .collect()
    }
    /// The pixels as little-endian bytes `B, G, R, A` (premultiplied), the byte layout of
    /// a SPICE `SPICE_CURSOR_TYPE_ALPHA` cursor.
    pub fn bgra_bytes(&self) -> Vec<u8> {
        self.argb.iter().flat_map(|p| p.to_le_bytes()).collect()
    }
}

/// What changed in the source since the previous [`DisplaySource::next_events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    /// Dirty regions: clipped to the screen, overlapping ones merged, at most a few dozen.
    Damage(Vec<Rect>),
    /// A moved area: the pixels of `src` now also sit at (`dst_x`, `dst_y`). Applies to the
    /// picture after the events before it; damage after it (even overlapping `src`) comes
    /// on top. It holds for what was captured before it was emitted: a consumer that
    /// captured `src` or the destination after that must redraw the destination instead. The X11 source finds these by comparing damaged pixels with what it last
    /// handed out (scrolls, moved top-level windows); set `COOP_X11_COPYRECT=0` to stop it.
    CopyRect { src: Rect, dst_x: u32, dst_y: u32 },
    /// The screen has a new size; the previous frame is void, capture a full one.
    Resized { width: u32, height: u32 },
    /// The cursor image changed (also sent once at start and after [`SourceEvent::CursorHidden`]).
    CursorShape(Cursor),
    /// The pointer position (screen coordinates), sent when it changed.
    CursorMoved { x: i32, y: i32 },
    /// The cursor became invisible (a fully transparent cursor image).
    CursorHidden,
    /// Another program took the clipboard; `mime` is `text/plain;charset=utf-8` for text.
    ClipboardChanged { mime: String, data: Vec<u8> },
}

/// Errors of a display source.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("cannot connect to X display {display:?}: {detail}")]
    Connect { display: String, detail: String },
    #[error("X display {display:?} lacks the {extension} extension")]
    MissingExtension {
        display: String,
        extension: &'static str,
    },
    #[error("X request {request} on display {display:?} failed: {detail}")]
    X11 {
        display: String,
        request: &'static str,
        detail: String,
    },
    #[error("area {x},{y} {w}x{h} is not inside the {width}x{height} screen", x = area.x, y = area.y, w = area.w, h = area.h)]
    OutOfBounds { area: Rect, width: u32, height: u32 },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("display source thread has stopped")]
    Stopped,
}

/// Wakes a [`DisplaySource::next_events`] blocked in another thread.
#[derive(Clone, Debug)]
pub struct Interrupter {
    tx: std::sync::Arc<std::os::unix::net::UnixStream>,
}

impl Interrupter {
    /// Creates a pair: the interrupter and the read end the source polls.
    pub fn pair() -> std::io::Result<(Interrupter, std::os::unix::net::UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((
            Interrupter {
                tx: std::sync::Arc::new(a),
            },
            b,
        ))
    }
    /// Makes the current or next `next_events` return promptly.
    pub fn wake(&self) {
        use std::io::Write;
        // A full socket buffer already guarantees a wake-up, so WouldBlock is fine.
        let _ = (&*self.tx).write(&[1]);
    }
}

/// A screen the SPICE server can show and drive. Object safe: use `Box<dyn DisplaySource>`.
pub trait DisplaySource: Send {
    /// Current screen size in pixels.
    fn size(&self) -> (u32, u32);
    /// Copies `area` into `out` (cleared first) as BGRX rows, tightly packed
    /// (stride `area.w * 4`). `area` must lie inside the screen.
    fn capture(&mut self, area: Rect, out: &mut Vec<u8>) -> Result<(), DisplayError>;
    /// The whole screen.
    fn capture_full(&mut self) -> Result<Frame, DisplayError>;
    /// Waits up to `timeout` for something to happen and returns what did. Returns early
    /// with what it has as soon as there is anything, or when the [`Interrupter`] fires;
    /// an empty vector means nothing happened.
    fn next_events(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Vec<SourceEvent>, DisplayError>;
    /// A handle that wakes a blocked `next_events`, if the source supports it.
    fn interrupter(&self) -> Option<Interrupter> {
        None
    }
    /// A key press or release. `pc_scancode` is a PC AT set-1 make code in any of these
    /// forms (see [`scancode_to_evdev`]): `0x01..=0x7f` plain key; `0x100 | code` or
    /// `0xE000 | code` extended (0xE0-prefixed) key; or exactly the `code` field of
    /// SPICE `INPUTS_KEY_DOWN` / `INPUTS_KEY_UP` as spice-gtk sends it (extended keys as
    /// `0xE0 | code << 8`, releases with bit 0x80 set in the code byte). The release bit
    /// is ignored: `down` decides.
    fn key(&mut self, pc_scancode: u32, down: bool) -> Result<(), DisplayError>;
    /// Absolute pointer motion; `buttons` is the SPICE button mask
    /// (`SPICE_MOUSE_BUTTON_MASK_*`: 1 left, 2 middle, 4 right) and presses/releases
    /// whatever differs from the current state.
    fn pointer_abs(&mut self, x: u32, y: u32, buttons: u32) -> Result<(), DisplayError>;
    /// Relative pointer motion, same `buttons` semantics.
    fn pointer_rel(&mut self, dx: i32, dy: i32, buttons: u32) -> Result<(), DisplayError>;
    /// A button press or release, `SPICE_MOUSE_BUTTON_*`: 1 left, 2 middle, 3 right,
    /// 4 wheel up, 5 wheel down, 6 side, 7 extra.
    fn button(&mut self, button: u8, down: bool) -> Result<(), DisplayError>;
    /// Asks for a new screen size (best effort). On success a [`SourceEvent::Resized`]
    /// follows; an error says why it cannot be done.
    fn resize(&mut self, width: u32, height: u32) -> Result<(), DisplayError>;
    /// Offers `data` as the clipboard content of type `mime` (`text/plain;charset=utf-8`,
    /// `text/plain`, `UTF8_STRING` for text; other MIME types are offered as is).
    fn set_clipboard(&mut self, mime: &str, data: &[u8]) -> Result<(), DisplayError>;
}

/// How long the X11 source waits between pointer position polls.
pub const CURSOR_POLL_INTERVAL: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_alpha_conversions() {
        let c = Cursor {
            serial: 1,
            width: 3,
            height: 1,
            hot_x: 0,
            hot_y: 0,
            // opaque red, half-transparent premultiplied white, fully transparent
            argb: vec![0xffff0000, 0x80808080, 0x00000000],
        };
        assert_eq!(c.straight_alpha(), vec![0xffff0000, 0x80ffffff, 0]);
        assert_eq!(
            c.bgra_bytes(),
            vec![0, 0, 0xff, 0xff, 0x80, 0x80, 0x80, 0x80, 0, 0, 0, 0]
        );
    }

    #[test]
    fn frame_pixel_bounds() {
        let f = Frame {
            width: 2,
            height: 1,
            stride: 8,
            data: vec![1, 2, 3, 0xaa, 4, 5, 6, 0xbb],
        };
        assert_eq!(f.pixel(0, 0), Some(0x030201));
        assert_eq!(f.pixel(1, 0), Some(0x060504));
        assert_eq!(f.pixel(2, 0), None);
        assert_eq!(f.pixel(0, 1), None);
        // A frame whose data is shorter than it claims: None, not a panic.
        let short = Frame {
            data: vec![0; 4],
            ..f
        };
        assert_eq!(short.pixel(1, 0), None);
    }

    #[test]
    fn interrupter_wakes_poll() {
        use std::io::Read;
        let (w, mut r) = Interrupter::pair().unwrap();
        let mut buf = [0u8; 8];
        assert!(r.read(&mut buf).is_err()); // nothing yet (non-blocking)
        w.wake();
        w.clone().wake();
        assert_eq!(r.read(&mut buf).unwrap(), 2);
    }
}
