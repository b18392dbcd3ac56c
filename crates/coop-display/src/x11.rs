//! The X11 display source: captures the root window of a running X server (MIT-SHM, or
//! plain GetImage), watches it with DAMAGE and XFIXES, injects input with XTEST, resizes
//! with RANDR and bridges the CLIPBOARD selection.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tracing::{debug, warn};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::{ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::xproto::{
    self, Atom, AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, ImageFormat, ImageOrder,
    PropMode, SelectionNotifyEvent, Window, WindowClass,
};
use x11rb::protocol::{damage, randr, shm, xfixes, xtest, Event};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{CURRENT_TIME, NONE};

use crate::moves::{self, Shadow};
use crate::{
    keymap, merge_rects, Cursor, DisplayError, DisplaySource, Frame, Interrupter, Rect,
    SourceEvent, CURSOR_POLL_INTERVAL,
};

/// The most damage rectangles reported in one event.
const MAX_DAMAGE_RECTS: usize = 32;
/// The largest clipboard payload accepted from X clients (INCR transfers are not done).
const MAX_CLIPBOARD_BYTES: u32 = 16 << 20;
const TEXT_MIME: &str = "text/plain;charset=utf-8";
/// Set to `0` to never report moved areas (for comparisons and as an escape hatch).
const COPYRECT_ENV: &str = "COOP_X11_COPYRECT";
/// Damage rectangles smaller than this are not searched for scrolls.
const MIN_SCROLL_AREA: u64 = 64 * 32;
/// The most areas checked for a move in one damage fetch (each costs a capture).
const MAX_MOVE_TRIES: usize = 12;
/// The most window moves remembered between two damage fetches.
const MAX_MOVE_HINTS: usize = 16;

/// A top-level window moved by (dx, dy) to (x, y, w, h).
type MoveHint = (Window, i32, i32, (i32, i32, u32, u32));

/// A MIT-SHM segment backed by a memfd, mapped read-only in this process.
struct ShmSeg {
    seg: shm::Seg,
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is owned exclusively by this value and only read through `&self`
// while the owning X11Source is borrowed; moving it to another thread is harmless.
unsafe impl Send for ShmSeg {}

impl Drop for ShmSeg {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the mapping now.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

struct Atoms {
    clipboard: Atom,
    targets: Atom,
    utf8_string: Atom,
    text: Atom,
    text_plain: Atom,
    text_plain_utf8: Atom,
    incr: Atom,
    property: Atom,
}

/// What this source currently offers on CLIPBOARD.
struct Offer {
    targets: Vec<Atom>,
    data: Vec<u8>,
}

/// Watches and drives one X screen (the default screen of `display`).
pub struct X11Source {
    conn: RustConnection,
    display: String,
    root: Window,
    width: u32,
    height: u32,
    damage: damage::Damage,
    region: xfixes::Region,
    shm: Option<ShmSeg>,
    shm_usable: bool,
    randr: bool,
    clip_win: Window,
    atoms: Atoms,
    offer: Option<Offer>,
    /// Target of the conversion we asked for, while waiting for its SelectionNotify.
    requested: Option<Atom>,
    pending: Vec<SourceEvent>,
    damaged: bool,
    last_pointer: Option<(i32, i32)>,
    next_pointer_poll: Instant,
    cursor_hidden: bool,
    /// Cursor reads left to retry after a failure.
    cursor_retry: u8,
    last_cursor_serial: Option<u32>,
    buttons: u32,
    wake_rx: UnixStream,
    wake_tx: Interrupter,
    /// What clients are believed to show; `None` until the first full capture.
    shadow: Option<Shadow>,
    /// Whether moved areas are looked for (see [`COPYRECT_ENV`]).
    find_moves: bool,
    /// Outer geometry (x, y, w, h; borders included) of the root's children, to tell
    /// where a moved window was.
    windows: std::collections::HashMap<Window, (i32, i32, u32, u32)>,
    /// Windows moved since the last damage fetch: (window, dx, dy, new geometry).
    move_hints: Vec<MoveHint>,
    /// Screen areas of top-level windows moved or resized since the last damage fetch.
    /// The X server blits a moved window's pixels to its new place itself (CopyWindow),
    /// and DAMAGE on the root does not report that copy (only the uncovered old place and
    /// whatever the application redraws): a window moved before its application redraws
    /// it (ImageMagick's `display` right after mapping, or any quick `xdotool
    /// windowmove`) would otherwise never reach clients at its new place.
    configured: Vec<Rect>,
}

fn map_conn(display: &str, request: &'static str) -> impl Fn(ConnectionError) -> DisplayError {
    let display = display.to_string();
    move |e| DisplayError::X11 {
        display: display.clone(),
        request,
        detail: e.to_string(),
    }
}

fn map_reply(display: &str, request: &'static str) -> impl Fn(ReplyError) -> DisplayError {
    let display = display.to_string();
    move |e| DisplayError::X11 {
        display: display.clone(),
        request,
        detail: e.to_string(),
    }
}

fn map_id(display: &str, request: &'static str) -> impl Fn(ReplyOrIdError) -> DisplayError {
    let display = display.to_string();
    move |e| DisplayError::X11 {
        display: display.clone(),
        request,
        detail: e.to_string(),
    }
}

impl X11Source {
    /// Connects to `display` (e.g. `":1"`; empty means `$DISPLAY`) and sets up capture,
    /// damage, cursor and clipboard tracking. Needs DAMAGE, XFIXES ≥ 2 and XTEST; MIT-SHM
    /// ≥ 1.2 and RANDR are used when present. The root visual must be 24/32-bit TrueColor
    /// stored as 32 bpp little-endian (what Xvfb/Xorg use at depth 24).
    pub fn connect(display: &str) -> Result<Self, DisplayError> {
        let (conn, screen_num) = RustConnection::connect((!display.is_empty()).then_some(display))
            .map_err(|e| DisplayError::Connect {
                display: display.to_string(),
                detail: e.to_string(),
            })?;
        let d = display;
        let setup = conn.setup();
        let screen = setup
            .roots
            .get(screen_num)
            .ok_or_else(|| DisplayError::Connect {
                display: d.to_string(),
                detail: format!("screen {screen_num} does not exist"),
            })?;
        let root = screen.root;
        let (width, height) = (
            u32::from(screen.width_in_pixels),
            u32::from(screen.height_in_pixels),
        );
        let bpp = setup
            .pixmap_formats
            .iter()
            .find(|f| f.depth == screen.root_depth)
            .map(|f| f.bits_per_pixel);
        let visual = screen
            .allowed_depths
            .iter()
            .flat_map(|dp| dp.visuals.iter())
            .find(|v| v.visual_id == screen.root_visual);
        let masks_ok = visual.is_some_and(|v| {
            v.red_mask == 0xff0000 && v.green_mask == 0xff00 && v.blue_mask == 0xff
        });
        if bpp != Some(32) || setup.image_byte_order != ImageOrder::LSB_FIRST || !masks_ok {
            return Err(DisplayError::Unsupported(format!(
                "X display {d:?}: root depth {} with {bpp:?} bits per pixel, byte order {:?}; \
                 only 32 bpp little-endian x8r8g8b8 is supported",
                screen.root_depth, setup.image_byte_order
            )));
        }

        let need = |name: &'static str| -> Result<(), DisplayError> {
            match conn.extension_information(name) {
                Ok(Some(_)) => Ok(()),
                _ => Err(DisplayError::MissingExtension {
                    display: d.to_string(),
                    extension: name,
                }),
            }
        };
        need(xfixes::X11_EXTENSION_NAME)?;
        need(damage::X11_EXTENSION_NAME)?;
        need(xtest::X11_EXTENSION_NAME)?;
        xfixes::query_version(&conn, 5, 0)
            .map_err(map_conn(d, "XFixesQueryVersion"))?
            .reply()
            .map_err(map_reply(d, "XFixesQueryVersion"))?;
        damage::query_version(&conn, 1, 1)
            .map_err(map_conn(d, "DamageQueryVersion"))?
            .reply()
            .map_err(map_reply(d, "DamageQueryVersion"))?;
        xtest::get_version(&conn, 2, 2)
            .map_err(map_conn(d, "XTestGetVersion"))?
            .reply()
            .map_err(map_reply(d, "XTestGetVersion"))?;

        let shm_usable = matches!(
            conn.extension_information(shm::X11_EXTENSION_NAME),
            Ok(Some(_))
        ) && shm::query_version(&conn)
            .ok()
            .and_then(|c| c.reply().ok())
            .is_some_and(|v| (v.major_version, v.minor_version) >= (1, 2));
        let randr = matches!(
            conn.extension_information(randr::X11_EXTENSION_NAME),
            Ok(Some(_))
        ) && randr::query_version(&conn, 1, 3)
            .ok()
            .and_then(|c| c.reply().ok())
            .is_some_and(|v| (v.major_version, v.minor_version) >= (1, 2));

        let intern = |name: &str| -> Result<Atom, DisplayError> {
            Ok(conn
                .intern_atom(false, name.as_bytes())
                .map_err(map_conn(d, "InternAtom"))?
                .reply()
                .map_err(map_reply(d, "InternAtom"))?
                .atom)
        };
        let atoms = Atoms {
            clipboard: intern("CLIPBOARD")?,
            targets: intern("TARGETS")?,
            utf8_string: intern("UTF8_STRING")?,
            text: intern("TEXT")?,
            text_plain: intern("text/plain")?,
            text_plain_utf8: intern(TEXT_MIME)?,
            incr: intern("INCR")?,
            property: intern("COOP_DISPLAY_SELECTION")?,
        };

        let damage = conn.generate_id().map_err(map_id(d, "DamageCreate"))?;
        damage::create(&conn, damage, root, damage::ReportLevel::NON_EMPTY)
            .map_err(map_conn(d, "DamageCreate"))?
            .check()
            .map_err(map_reply(d, "DamageCreate"))?;
        let region = conn
            .generate_id()
            .map_err(map_id(d, "XFixesCreateRegion"))?;
        xfixes::create_region(&conn, region, &[])
            .map_err(map_conn(d, "XFixesCreateRegion"))?
            .check()
            .map_err(map_reply(d, "XFixesCreateRegion"))?;
        xfixes::select_cursor_input(&conn, root, xfixes::CursorNotifyMask::DISPLAY_CURSOR)
            .map_err(map_conn(d, "XFixesSelectCursorInput"))?
            .check()
            .map_err(map_reply(d, "XFixesSelectCursorInput"))?;
        if randr {
            randr::select_input(&conn, root, randr::NotifyMask::SCREEN_CHANGE)
                .map_err(map_conn(d, "RRSelectInput"))?
                .check()
                .map_err(map_reply(d, "RRSelectInput"))?;
        }

        let clip_win = conn.generate_id().map_err(map_id(d, "CreateWindow"))?;
        conn.create_window(
            0,
            clip_win,
            root,
            -10,
            -10,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )
        .map_err(map_conn(d, "CreateWindow"))?
        .check()
        .map_err(map_reply(d, "CreateWindow"))?;
        xfixes::select_selection_input(
            &conn,
            clip_win,
            atoms.clipboard,
            xfixes::SelectionEventMask::SET_SELECTION_OWNER,
        )
        .map_err(map_conn(d, "XFixesSelectSelectionInput"))?
        .check()
        .map_err(map_reply(d, "XFixesSelectSelectionInput"))?;

        let (wake_tx, wake_rx) = Interrupter::pair().map_err(|source| DisplayError::Io {
            op: "creating the wake-up socket pair",
            source,
        })?;

        let mut src = X11Source {
            conn,
            display: display.to_string(),
            root,
            width,
            height,
            damage,
            region,
            shm: None,
            shm_usable,
            randr,
            clip_win,
            atoms,
            offer: None,
            requested: None,
            pending: Vec::new(),
            damaged: false,
            last_pointer: None,
            next_pointer_poll: Instant::now(),
            cursor_hidden: false,
            cursor_retry: 0,
            last_cursor_serial: None,
            buttons: 0,
            wake_rx,
            wake_tx,
            shadow: None,
            find_moves: std::env::var(COPYRECT_ENV).map_or(true, |v| v != "0"),
            windows: std::collections::HashMap::new(),
            move_hints: Vec::new(),
            configured: Vec::new(),
        };
        // Tracked even when moves are not looked for: a moved window's new place is only
        // learnt from its ConfigureNotify (see `configured`).
        if let Err(e) = src.track_windows() {
            warn!(display = %src.display, error = %e,
                "cannot track top-level windows: moved windows may not reach clients");
        }
        if src.shm_usable {
            if let Err(e) = src.setup_shm() {
                warn!(display = %src.display, error = %e, "MIT-SHM unusable, falling back to GetImage");
                src.shm_usable = false;
            }
        }
        // Everything before this point is already on screen: start from a clean slate and
        // let the first next_events report the current cursor.
        damage::subtract(&src.conn, damage, NONE, NONE).map_err(map_conn(d, "DamageSubtract"))?;
        src.try_refresh_cursor();
        Ok(src)
    }

    /// True when captures go through MIT-SHM.
    pub fn uses_shm(&self) -> bool {
        self.shm.is_some()
    }

    /// Switches the search for moved areas ([`SourceEvent::CopyRect`]) off or on; on by
    /// default unless `COOP_X11_COPYRECT=0`. Takes effect at the next full capture.
    pub fn set_find_moves(&mut self, on: bool) {
        self.find_moves = on;
        if !on {
            self.shadow = None;
        }
    }

    /// Switches MIT-SHM capture off (or back on, when the server supports it). For
    /// benchmarks and for X servers whose SHM misbehaves.
    pub fn set_shm(&mut self, on: bool) -> Result<(), DisplayError> {
        if !on {
            self.drop_shm();
            return Ok(());
        }
        if !self.shm_usable {
            return Err(DisplayError::MissingExtension {
                display: self.display.clone(),
                extension: "MIT-SHM 1.2",
            });
        }
        if self.shm.is_none() {
            self.setup_shm()?;
        }
        Ok(())
    }

    /// True when the X server has RANDR ≥ 1.2.
    pub fn has_randr(&self) -> bool {
        self.randr
    }

    /// The root window (for tests and diagnostics).
    pub fn root_window(&self) -> u32 {
        self.root
    }

    fn x_err(&self, request: &'static str, detail: impl std::fmt::Display) -> DisplayError {
        DisplayError::X11 {
            display: self.display.clone(),
            request,
            detail: detail.to_string(),
        }
    }

    fn drop_shm(&mut self) {
        if let Some(s) = self.shm.take() {
            let _ = shm::detach(&self.conn, s.seg);
            let _ = self.conn.flush();
        }
    }

    fn setup_shm(&mut self) -> Result<(), DisplayError> {
        self.drop_shm();
        let len = (self.width as usize * self.height as usize * 4).max(4096);
        // SAFETY: memfd_create with a valid NUL-terminated name; the result is checked.
        let raw = unsafe { libc::memfd_create(c"coop-display-shm".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(DisplayError::Io {
                op: "memfd_create for the MIT-SHM segment",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: fd is a valid memfd; the length fits off_t on 64-bit Linux.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(DisplayError::Io {
                op: "ftruncate of the MIT-SHM memfd",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: mapping a valid fd of exactly `len` bytes, read-only shared; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DisplayError::Io {
                op: "mmap of the MIT-SHM memfd",
                source: std::io::Error::last_os_error(),
            });
        }
        let mut seg = ShmSeg { seg: 0, ptr, len };
        seg.seg = self
            .conn
            .generate_id()
            .map_err(|e| self.x_err("ShmAttachFd", e))?;
        shm::attach_fd(&self.conn, seg.seg, fd, false)
            .map_err(|e| self.x_err("ShmAttachFd", e))?
            .check()
            .map_err(|e| self.x_err("ShmAttachFd", e))?;
        debug!(display = %self.display, len, "MIT-SHM segment attached");
        self.shm = Some(seg);
        Ok(())
    }

    fn check_area(&self, area: Rect) -> Result<(), DisplayError> {
        let screen = Rect::new(0, 0, self.width, self.height);
        if area.is_empty() || !screen.contains(&area) {
            return Err(DisplayError::OutOfBounds {
                area,
                width: self.width,
                height: self.height,
            });
        }
        Ok(())
    }

    fn grab(&mut self, area: Rect, out: &mut Vec<u8>) -> Result<(), DisplayError> {
        self.check_area(area)?;
        let need = area.w as usize * area.h as usize * 4;
        out.clear();
        // Coordinates fit: the area is inside a screen whose size came from u16 fields.
        let (x, y, w, h) = (area.x as i16, area.y as i16, area.w as u16, area.h as u16);
        if let Some(seg) = self.shm.as_ref().filter(|s| s.len >= need) {
            let r = shm::get_image(
                &self.conn,
                self.root,
                x,
                y,
                w,
                h,
                !0,
                u8::from(ImageFormat::Z_PIXMAP),
                seg.seg,
                0,
            )
            .map_err(|e| self.x_err("ShmGetImage", e))?
            .reply()
            .map_err(|e| self.x_err("ShmGetImage", e))?;
            if r.size < need as u32 {
                return Err(self.x_err(
                    "ShmGetImage",
                    format!("server wrote {} bytes for a {}x{} area", r.size, w, h),
                ));
            }
            // SAFETY: the reply has arrived, so the server finished writing the first
            // `need` bytes (≤ len) of the mapping; nothing else writes to it meanwhile.
            let src = unsafe { std::slice::from_raw_parts(seg.ptr as *const u8, need) };
            out.extend_from_slice(src);
        } else {
            let r = self
                .conn
                .get_image(ImageFormat::Z_PIXMAP, self.root, x, y, w, h, !0)
                .map_err(|e| self.x_err("GetImage", e))?
                .reply()
                .map_err(|e| self.x_err("GetImage", e))?;
            if r.data.len() < need {
                return Err(self.x_err(
                    "GetImage",
                    format!("got {} bytes for a {}x{} area", r.data.len(), w, h),
                ));
            }
            *out = r.data;
            out.truncate(need);
        }
        Ok(())
    }

    /// Like `refresh_cursor`, but a failure only logs and schedules a few retries at the
    /// next pointer polls: a missing cursor image must not stop the display.
    fn try_refresh_cursor(&mut self) {
        match self.refresh_cursor() {
            Ok(()) => self.cursor_retry = 0,
            Err(e) => {
                debug!(display = %self.display, error = %e, "cursor image not readable");
                self.cursor_retry = self.cursor_retry.saturating_sub(1);
            }
        }
    }

    /// Reads the current cursor image and queues CursorShape/CursorHidden if it changed.
    fn refresh_cursor(&mut self) -> Result<(), DisplayError> {
        let r = match xfixes::get_cursor_image(&self.conn)
            .map_err(|e| self.x_err("XFixesGetCursorImage", e))?
            .reply()
        {
            Ok(r) => r,
            // Xorg's SECURITY hook answers BadAccess when the client that created the
            // current cursor has disconnected (e.g. `xsetroot -cursor_name watch`): the
            // shape cannot be read, so the previous one stays.
            Err(e) => return Err(self.x_err("XFixesGetCursorImage", e)),
        };
        let invisible =
            r.width == 0 || r.height == 0 || r.cursor_image.iter().all(|p| p >> 24 == 0);
        if invisible {
            if !self.cursor_hidden {
                self.cursor_hidden = true;
                self.pending.push(SourceEvent::CursorHidden);
            }
            return Ok(());
        }
        let npx = usize::from(r.width) * usize::from(r.height);
        if r.cursor_image.len() < npx {
            return Err(self.x_err("XFixesGetCursorImage", "short cursor image"));
        }
        if !self.cursor_hidden && self.last_cursor_serial == Some(r.cursor_serial) {
            return Ok(());
        }
        self.cursor_hidden = false;
        self.last_cursor_serial = Some(r.cursor_serial);
        let mut argb = r.cursor_image;
        argb.truncate(npx);
        self.pending.push(SourceEvent::CursorShape(Cursor {
            serial: u64::from(r.cursor_serial),
            width: u32::from(r.width),
            height: u32::from(r.height),
            hot_x: u32::from(r.xhot),
            hot_y: u32::from(r.yhot),
            argb,
        }));
        Ok(())
    }

    fn poll_pointer(&mut self) -> Result<(), DisplayError> {
        let r = self
            .conn
            .query_pointer(self.root)
            .map_err(|e| self.x_err("QueryPointer", e))?
            .reply()
            .map_err(|e| self.x_err("QueryPointer", e))?;
        let pos = (i32::from(r.root_x), i32::from(r.root_y));
        if self.last_pointer != Some(pos) {
            self.last_pointer = Some(pos);
            self.pending
                .push(SourceEvent::CursorMoved { x: pos.0, y: pos.1 });
        }
        Ok(())
    }

    fn fetch_damage(&mut self) -> Result<(), DisplayError> {
        self.damaged = false;
        damage::subtract(&self.conn, self.damage, NONE, self.region)
            .map_err(|e| self.x_err("DamageSubtract", e))?;
        let r = xfixes::fetch_region(&self.conn, self.region)
            .map_err(|e| self.x_err("XFixesFetchRegion", e))?
            .reply()
            .map_err(|e| self.x_err("XFixesFetchRegion", e))?;
        let rects: Vec<Rect> = r
            .rectangles
            .iter()
            .filter_map(|r| {
                // Negative origins happen for windows partly off screen: clip them.
                let x0 = i32::from(r.x).max(0);
                let y0 = i32::from(r.y).max(0);
                let x1 = i32::from(r.x) + i32::from(r.width);
                let y1 = i32::from(r.y) + i32::from(r.height);
                (x1 > x0 && y1 > y0)
                    .then(|| Rect::new(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32))
            })
            .chain(std::mem::take(&mut self.configured))
            .collect();
        let merged = merge_rects(
            &rects,
            Rect::new(0, 0, self.width, self.height),
            MAX_DAMAGE_RECTS,
        );
        let hints = std::mem::take(&mut self.move_hints);
        let merged = if merged.is_empty() {
            self.move_hints = hints;
            merged
        } else {
            self.report_moves(merged, &hints)?
        };
        if !merged.is_empty() {
            // Coalesce with damage queued earlier in this same batch, unless a move came
            // since: a client applies the move before that damage is redrawn.
            if let Some(SourceEvent::Damage(prev)) = self.pending.last_mut() {
                prev.extend(merged);
                let all = std::mem::take(prev);
                *prev = merge_rects(
                    &all,
                    Rect::new(0, 0, self.width, self.height),
                    MAX_DAMAGE_RECTS,
                );
            } else {
                self.pending.push(SourceEvent::Damage(merged));
            }
        }
        Ok(())
    }

    /// Selects SubstructureNotify on the root and records where its children are.
    fn track_windows(&mut self) -> Result<(), DisplayError> {
        self.conn
            .change_window_attributes(
                self.root,
                &xproto::ChangeWindowAttributesAux::new()
                    .event_mask(EventMask::SUBSTRUCTURE_NOTIFY),
            )
            .map_err(|e| self.x_err("ChangeWindowAttributes", e))?
            .check()
            .map_err(|e| self.x_err("ChangeWindowAttributes", e))?;
        let tree = self
            .conn
            .query_tree(self.root)
            .map_err(|e| self.x_err("QueryTree", e))?
            .reply()
            .map_err(|e| self.x_err("QueryTree", e))?;
        for w in tree.children {
            // A window gone meanwhile is simply not tracked.
            if let Ok(Ok(g)) = self.conn.get_geometry(w).map(|c| c.reply()) {
                let bw = 2 * u32::from(g.border_width);
                let geom = (
                    i32::from(g.x),
                    i32::from(g.y),
                    u32::from(g.width) + bw,
                    u32::from(g.height) + bw,
                );
                self.windows.insert(w, geom);
            }
        }
        Ok(())
    }

    /// Looks for moved content in the damaged `rects` (scrolls inside a rectangle, and the
    /// window moves in `hints`), queues a [`SourceEvent::CopyRect`] for each move found
    /// and returns the damage that remains.
    fn report_moves(
        &mut self,
        rects: Vec<Rect>,
        hints: &[MoveHint],
    ) -> Result<Vec<Rect>, DisplayError> {
        let Some(sh) = self.shadow.as_ref() else {
            return Ok(rects);
        };
        if sh.size() != (self.width, self.height) {
            self.shadow = None;
            return Ok(rects);
        }
        let screen = Rect::new(0, 0, self.width, self.height);
        // Each candidate: the area whose new pixels are checked, and the shift to try
        // (None: find one from row hashes).
        let mut candidates: Vec<(Rect, Option<(i32, i32)>)> = Vec::new();
        for &(win, dx, dy, (x, y, w, h)) in hints {
            // The window's new place, clipped so both it and where it came from are on
            // the screen.
            let x0 = i64::from(x).max(0).max(i64::from(dx));
            let y0 = i64::from(y).max(0).max(i64::from(dy));
            let x1 = (i64::from(x) + i64::from(w))
                .min(i64::from(self.width))
                .min(i64::from(self.width) + i64::from(dx));
            let y1 = (i64::from(y) + i64::from(h))
                .min(i64::from(self.height))
                .min(i64::from(self.height) + i64::from(dy));
            if x1 > x0 && y1 > y0 {
                let dst = Rect::new(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32);
                if rects.iter().any(|r| r.intersect(&dst).is_some()) {
                    candidates.push((dst, Some((dx, dy))));
                } else if self.move_hints.len() < MAX_MOVE_HINTS {
                    // Its damage has not come yet: keep the hint for the next fetch.
                    self.move_hints.push((win, dx, dy, (x, y, w, h)));
                }
            }
        }
        for r in &rects {
            if r.area() >= MIN_SCROLL_AREA {
                candidates.push((*r, None));
            }
        }
        let mut found: Vec<moves::Move> = Vec::new();
        let mut px = Vec::new();
        let mut queue: std::collections::VecDeque<_> = candidates.into();
        let mut budget = MAX_MOVE_TRIES;
        while let Some((area, shift)) = queue.pop_front() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            if found.iter().any(|m| m.dst.intersect(&area).is_some()) {
                continue;
            }
            self.grab(area, &mut px)?;
            let Some(sh) = self.shadow.as_ref() else {
                break;
            };
            let Some((dx, dy)) =
                shift.or_else(|| moves::vertical_candidate(sh, area, &px).map(|dy| (0, dy)))
            else {
                continue;
            };
            let Some(m) = moves::verify(sh, area, &px, dx, dy) else {
                continue;
            };
            // A scroll that keeps only a sliver of the area saves little and splits the
            // redraw into pieces that compress worse than the whole (measured with GLZ).
            if shift.is_none() && m.dst.area() * 2 < area.area() {
                continue;
            }
            // A client applies the copies in order: one may not read what an earlier one
            // already overwrote.
            if found.iter().any(|f| f.dst.intersect(&m.src).is_some()) || !screen.contains(&m.src) {
                continue;
            }
            found.push(m);
            if shift.is_none() {
                // What a client holds mixes times (copied rows from one fetch, captured
                // rows from a later moment), so the rest of a scroll area may have moved by
                // another amount: search it on its own.
                queue.extend(
                    moves::subtract(area, m.dst)
                        .into_iter()
                        .filter(|r| r.area() >= MIN_SCROLL_AREA)
                        .map(|r| (r, None)),
                );
            }
        }
        if found.is_empty() {
            return Ok(rects);
        }
        let mut rest = rects;
        for m in &found {
            if let Some(sh) = self.shadow.as_mut() {
                sh.copy(m.src, m.dst.x, m.dst.y);
            }
            self.pending.push(SourceEvent::CopyRect {
                src: m.src,
                dst_x: m.dst.x,
                dst_y: m.dst.y,
            });
            rest = rest
                .iter()
                .flat_map(|r| moves::subtract(*r, m.dst))
                .collect();
        }
        debug!(display = %self.display, moves = ?found, "moved areas");
        Ok(merge_rects(&rest, screen, MAX_DAMAGE_RECTS))
    }

    fn screen_resized(&mut self, width: u32, height: u32) -> Result<(), DisplayError> {
        if (width, height) == (self.width, self.height) || width == 0 || height == 0 {
            return Ok(());
        }
        debug!(display = %self.display, width, height, "screen resized");
        self.width = width;
        self.height = height;
        self.pending
            .retain(|e| !matches!(e, SourceEvent::Damage(_) | SourceEvent::CopyRect { .. }));
        self.shadow = None;
        self.move_hints.clear();
        self.configured.clear();
        self.pending.push(SourceEvent::Resized { width, height });
        if self.shm.is_some() {
            self.setup_shm()?;
        }
        Ok(())
    }

    fn handle_event(&mut self, ev: Event) -> Result<(), DisplayError> {
        match ev {
            Event::DamageNotify(_) => self.damaged = true,
            Event::CreateNotify(e) if e.parent == self.root => {
                let bw = 2 * u32::from(e.border_width);
                let g = (
                    i32::from(e.x),
                    i32::from(e.y),
                    u32::from(e.width) + bw,
                    u32::from(e.height) + bw,
                );
                self.windows.insert(e.window, g);
            }
            Event::DestroyNotify(e) if e.event == self.root => {
                self.windows.remove(&e.window);
            }
            Event::ReparentNotify(e) if e.event == self.root && e.parent != self.root => {
                self.windows.remove(&e.window);
            }
            Event::ConfigureNotify(e) if e.event == self.root && e.window != self.root => {
                let bw = 2 * u32::from(e.border_width);
                let g = (
                    i32::from(e.x),
                    i32::from(e.y),
                    u32::from(e.width) + bw,
                    u32::from(e.height) + bw,
                );
                let old = self.windows.insert(e.window, g);
                if old != Some(g) {
                    // See `configured`: the new place is damage DAMAGE does not report.
                    // (A resize with a bit gravity other than Forget copies pixels
                    // the same way.) An unmapped window costs one needless capture.
                    let (x0, y0) = (g.0.max(0), g.1.max(0));
                    let x1 = (i64::from(g.0) + i64::from(g.2)).min(i64::from(self.width));
                    let y1 = (i64::from(g.1) + i64::from(g.3)).min(i64::from(self.height));
                    if x1 > i64::from(x0) && y1 > i64::from(y0) {
                        let r = Rect::new(
                            x0 as u32,
                            y0 as u32,
                            (x1 - i64::from(x0)) as u32,
                            (y1 - i64::from(y0)) as u32,
                        );
                        if self.configured.len() >= MAX_DAMAGE_RECTS {
                            // Bounded: many windows reconfigured at once redraw it all.
                            self.configured = vec![Rect::new(0, 0, self.width, self.height)];
                        } else {
                            self.configured.push(r);
                        }
                        self.damaged = true;
                    }
                }
                if let Some(old) = old {
                    let (dx, dy) = (g.0 - old.0, g.1 - old.1);
                    if (dx, dy) != (0, 0) && (g.2, g.3) == (old.2, old.3) && self.shadow.is_some() {
                        // Several steps between two fetches add up: keep the latest place
                        // and the whole shift from the place clients saw.
                        if let Some(h) = self.move_hints.iter_mut().find(|h| h.0 == e.window) {
                            *h = (e.window, h.1 + dx, h.2 + dy, g);
                        } else if self.move_hints.len() < MAX_MOVE_HINTS {
                            self.move_hints.push((e.window, dx, dy, g));
                        }
                    }
                }
            }
            Event::XfixesCursorNotify(_) => {
                self.cursor_retry = 3;
                self.try_refresh_cursor();
            }
            Event::RandrScreenChangeNotify(_) => {
                // A resize done in steps (grow screen, set CRTC, shrink screen) sends one
                // notify per step, the early ones with stale sizes: ask for the current
                // size instead of trusting the event.
                let g = self
                    .conn
                    .get_geometry(self.root)
                    .map_err(|e| self.x_err("GetGeometry", e))?
                    .reply()
                    .map_err(|e| self.x_err("GetGeometry", e))?;
                self.screen_resized(u32::from(g.width), u32::from(g.height))?;
            }
            Event::XfixesSelectionNotify(e)
                if e.selection == self.atoms.clipboard
                    && e.owner != self.clip_win
                    && e.owner != NONE =>
            {
                self.request_clipboard(self.atoms.utf8_string, e.timestamp)?;
            }
            Event::SelectionNotify(e) => self.clipboard_arrived(e)?,
            Event::SelectionRequest(e) => self.serve_selection(e)?,
            Event::SelectionClear(e) if e.selection == self.atoms.clipboard => self.offer = None,
            Event::Error(e) => {
                warn!(display = %self.display, error = ?e, "X11 error (asynchronous request)")
            }
            _ => {}
        }
        Ok(())
    }

    fn request_clipboard(&mut self, target: Atom, time: u32) -> Result<(), DisplayError> {
        self.requested = Some(target);
        self.conn
            .convert_selection(
                self.clip_win,
                self.atoms.clipboard,
                target,
                self.atoms.property,
                time,
            )
            .map_err(|e| self.x_err("ConvertSelection", e))?;
        Ok(())
    }

    fn clipboard_arrived(&mut self, e: SelectionNotifyEvent) -> Result<(), DisplayError> {
        if e.requestor != self.clip_win || e.selection != self.atoms.clipboard {
            return Ok(());
        }
        let Some(target) = self.requested.take() else {
            return Ok(());
        };
        if e.property == NONE {
            if target == self.atoms.utf8_string {
                // Old clients only speak STRING (Latin-1).
                return self.request_clipboard(AtomEnum::STRING.into(), e.time);
            }
            debug!(display = %self.display, "clipboard owner refused text conversion");
            return Ok(());
        }
        let r = self
            .conn
            .get_property(
                true,
                self.clip_win,
                e.property,
                AtomEnum::ANY,
                0,
                MAX_CLIPBOARD_BYTES / 4,
            )
            .map_err(|e| self.x_err("GetProperty", e))?
            .reply()
            .map_err(|e| self.x_err("GetProperty", e))?;
        if r.type_ == self.atoms.incr {
            warn!(display = %self.display, "clipboard content uses INCR (large transfer); ignored");
            return Ok(());
        }
        if r.bytes_after > 0 {
            warn!(display = %self.display, limit = MAX_CLIPBOARD_BYTES, "clipboard content too large; ignored");
            return Ok(());
        }
        let data = if r.type_ == u32::from(AtomEnum::STRING) {
            r.value
                .iter()
                .map(|&b| char::from(b))
                .collect::<String>()
                .into_bytes()
        } else {
            r.value
        };
        self.pending.push(SourceEvent::ClipboardChanged {
            mime: TEXT_MIME.to_string(),
            data,
        });
        Ok(())
    }

    fn serve_selection(&mut self, e: xproto::SelectionRequestEvent) -> Result<(), DisplayError> {
        // ICCCM: a None property means "use the target name" (obsolete clients).
        let property = if e.property == NONE {
            e.target
        } else {
            e.property
        };
        let mut reply_prop = NONE;
        if let Some(offer) = self
            .offer
            .as_ref()
            .filter(|_| e.selection == self.atoms.clipboard)
        {
            if e.target == self.atoms.targets {
                let mut list = offer.targets.clone();
                list.push(self.atoms.targets);
                self.conn
                    .change_property32(
                        PropMode::REPLACE,
                        e.requestor,
                        property,
                        AtomEnum::ATOM,
                        &list,
                    )
                    .map_err(|e| self.x_err("ChangeProperty", e))?;
                reply_prop = property;
            } else if offer.targets.contains(&e.target) {
                let limit = self.conn.maximum_request_bytes().saturating_sub(64);
                if offer.data.len() <= limit {
                    let ty = if e.target == self.atoms.text {
                        self.atoms.utf8_string
                    } else {
                        e.target
                    };
                    self.conn
                        .change_property8(PropMode::REPLACE, e.requestor, property, ty, &offer.data)
                        .map_err(|e| self.x_err("ChangeProperty", e))?;
                    reply_prop = property;
                } else {
                    warn!(display = %self.display, len = offer.data.len(), limit, "clipboard too large for one request; INCR not implemented");
                }
            }
        }
        let ev = SelectionNotifyEvent {
            response_type: xproto::SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: e.time,
            requestor: e.requestor,
            selection: e.selection,
            target: e.target,
            property: reply_prop,
        };
        self.conn
            .send_event(false, e.requestor, EventMask::NO_EVENT, ev)
            .map_err(|e| self.x_err("SendEvent", e))?;
        Ok(())
    }

    fn drain_events(&mut self) -> Result<(), DisplayError> {
        while let Some(ev) = self
            .conn
            .poll_for_event()
            .map_err(|e| self.x_err("reading events", e))?
        {
            self.handle_event(ev)?;
        }
        Ok(())
    }

    fn fake(&mut self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), DisplayError> {
        xtest::fake_input(&self.conn, kind, detail, CURRENT_TIME, self.root, x, y, 0)
            .map_err(|e| self.x_err("XTestFakeInput", e))?;
        self.conn
            .flush()
            .map_err(|e| self.x_err("XTestFakeInput", e))?;
        Ok(())
    }

    fn apply_buttons(&mut self, mask: u32) -> Result<(), DisplayError> {
        // SPICE mask bits 0,1,2 = left, middle, right; 5, 6 = side, extra. Wheel bits are
        // transient and come as button press/release pairs instead.
        for (bit, button) in [(0u32, 1u8), (1, 2), (2, 3), (5, 6), (6, 7)] {
            let want = mask & (1 << bit) != 0;
            let have = self.buttons & (1 << bit) != 0;
            if want != have {
                self.button(button, want)?;
            }
        }
        Ok(())
    }

    fn mode_for(&self, width: u32, height: u32) -> Result<randr::Mode, DisplayError> {
        let res = randr::get_screen_resources_current(&self.conn, self.root)
            .map_err(|e| self.x_err("RRGetScreenResourcesCurrent", e))?
            .reply()
            .map_err(|e| self.x_err("RRGetScreenResourcesCurrent", e))?;
        if let Some(m) = res
            .modes
            .iter()
            .find(|m| u32::from(m.width) == width && u32::from(m.height) == height)
        {
            return Ok(m.id);
        }
        // Plain CVT-like blanking at 60 Hz; virtual X servers ignore the timings.
        let (w, h) = (width as u16, height as u16);
        let htotal = w.saturating_add(160);
        let vtotal = h.saturating_add(30);
        let name = format!("{width}x{height}_coop");
        let info = randr::ModeInfo {
            id: 0,
            width: w,
            height: h,
            dot_clock: u32::from(htotal) * u32::from(vtotal) * 60,
            hsync_start: w.saturating_add(48),
            hsync_end: w.saturating_add(80),
            htotal,
            hskew: 0,
            vsync_start: h.saturating_add(3),
            vsync_end: h.saturating_add(10),
            vtotal,
            name_len: name.len() as u16,
            mode_flags: randr::ModeFlag::HSYNC_NEGATIVE | randr::ModeFlag::VSYNC_POSITIVE,
        };
        Ok(
            randr::create_mode(&self.conn, self.root, info, name.as_bytes())
                .map_err(|e| self.x_err("RRCreateMode", e))?
                .reply()
                .map_err(|e| self.x_err("RRCreateMode", e))?
                .mode,
        )
    }
}

impl Drop for X11Source {
    fn drop(&mut self) {
        self.drop_shm();
        let _ = damage::destroy(&self.conn, self.damage);
        let _ = xfixes::destroy_region(&self.conn, self.region);
        let _ = self.conn.destroy_window(self.clip_win);
        let _ = self.conn.flush();
    }
}

impl DisplaySource for X11Source {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn capture(&mut self, area: Rect, out: &mut Vec<u8>) -> Result<(), DisplayError> {
        self.grab(area, out)?;
        // The caller sends these pixels to a client: that is what it shows there now.
        if let Some(sh) = self.shadow.as_mut() {
            sh.put(area, out);
        }
        Ok(())
    }

    fn capture_full(&mut self) -> Result<Frame, DisplayError> {
        let mut data = Vec::new();
        let (width, height) = (self.width, self.height);
        self.grab(Rect::new(0, 0, width, height), &mut data)?;
        if self.find_moves {
            self.shadow = Shadow::from_frame(width, height, &data);
        }
        Ok(Frame {
            width,
            height,
            stride: width as usize * 4,
            data,
        })
    }

    fn next_events(&mut self, timeout: Duration) -> Result<Vec<SourceEvent>, DisplayError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain_events()?;
            if self.damaged {
                self.fetch_damage()?;
                // The DamageSubtract may race with new drawing: events for that arrive
                // on the next round.
            }
            let now = Instant::now();
            if now >= self.next_pointer_poll {
                if self.cursor_retry > 0 {
                    self.try_refresh_cursor();
                }
                self.poll_pointer()?;
                self.next_pointer_poll = now + CURSOR_POLL_INTERVAL;
            }
            if !self.pending.is_empty() {
                return Ok(std::mem::take(&mut self.pending));
            }
            if now >= deadline {
                return Ok(Vec::new());
            }
            self.conn.flush().map_err(|e| self.x_err("flush", e))?;
            let wait = deadline.min(self.next_pointer_poll) - now;
            let mut fds = [
                libc::pollfd {
                    fd: self.conn.stream().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake_rx.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: fds is a valid array of two pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(DisplayError::Io {
                        op: "poll on the X connection",
                        source: err,
                    });
                }
            }
            if fds[1].revents != 0 {
                use std::io::Read;
                let mut buf = [0u8; 64];
                while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
                self.drain_events()?;
                if self.damaged {
                    self.fetch_damage()?;
                }
                return Ok(std::mem::take(&mut self.pending));
            }
        }
    }

    fn interrupter(&self) -> Option<Interrupter> {
        Some(self.wake_tx.clone())
    }

    fn key(&mut self, pc_scancode: u32, down: bool) -> Result<(), DisplayError> {
        let evdev = keymap::scancode_to_evdev(pc_scancode).ok_or_else(|| {
            DisplayError::InvalidArgument(format!("unknown PC scancode {pc_scancode:#x}"))
        })?;
        let keycode = u8::try_from(evdev + 8).map_err(|_| {
            DisplayError::InvalidArgument(format!(
                "scancode {pc_scancode:#x} maps to evdev {evdev}, beyond X keycode 255"
            ))
        })?;
        let kind = if down {
            xproto::KEY_PRESS_EVENT
        } else {
            xproto::KEY_RELEASE_EVENT
        };
        self.fake(kind, keycode, 0, 0)
    }

    fn pointer_abs(&mut self, x: u32, y: u32, buttons: u32) -> Result<(), DisplayError> {
        let x = x.min(self.width.saturating_sub(1)) as i16;
        let y = y.min(self.height.saturating_sub(1)) as i16;
        self.fake(xproto::MOTION_NOTIFY_EVENT, 0, x, y)?;
        self.apply_buttons(buttons)
    }

    fn pointer_rel(&mut self, dx: i32, dy: i32, buttons: u32) -> Result<(), DisplayError> {
        let dx = dx.clamp(i16::MIN.into(), i16::MAX.into()) as i16;
        let dy = dy.clamp(i16::MIN.into(), i16::MAX.into()) as i16;
        if dx != 0 || dy != 0 {
            // detail = 1: relative motion.
            self.fake(xproto::MOTION_NOTIFY_EVENT, 1, dx, dy)?;
        }
        self.apply_buttons(buttons)
    }

    fn button(&mut self, button: u8, down: bool) -> Result<(), DisplayError> {
        let (xbutton, mask_bit) = match button {
            1 => (1, Some(0)),
            2 => (2, Some(1)),
            3 => (3, Some(2)),
            4 => (4, None),
            5 => (5, None),
            6 => (8, Some(5)),
            7 => (9, Some(6)),
            _ => {
                return Err(DisplayError::InvalidArgument(format!(
                    "SPICE mouse button {button} does not exist (1..=7)"
                )))
            }
        };
        if let Some(bit) = mask_bit {
            if down {
                self.buttons |= 1 << bit;
            } else {
                self.buttons &= !(1 << bit);
            }
        }
        let kind = if down {
            xproto::BUTTON_PRESS_EVENT
        } else {
            xproto::BUTTON_RELEASE_EVENT
        };
        self.fake(kind, xbutton, 0, 0)
    }

    fn resize(&mut self, width: u32, height: u32) -> Result<(), DisplayError> {
        if (width, height) == (self.width, self.height) {
            return Ok(());
        }
        if !self.randr {
            return Err(DisplayError::Unsupported(format!(
                "X display {:?} has no RANDR 1.2: cannot resize to {width}x{height}",
                self.display
            )));
        }
        let range = randr::get_screen_size_range(&self.conn, self.root)
            .map_err(|e| self.x_err("RRGetScreenSizeRange", e))?
            .reply()
            .map_err(|e| self.x_err("RRGetScreenSizeRange", e))?;
        if width < u32::from(range.min_width)
            || height < u32::from(range.min_height)
            || width > u32::from(range.max_width)
            || height > u32::from(range.max_height)
        {
            return Err(DisplayError::Unsupported(format!(
                "X display {:?} accepts screen sizes {}x{} to {}x{}, not {width}x{height}",
                self.display, range.min_width, range.min_height, range.max_width, range.max_height
            )));
        }
        let res = randr::get_screen_resources_current(&self.conn, self.root)
            .map_err(|e| self.x_err("RRGetScreenResourcesCurrent", e))?
            .reply()
            .map_err(|e| self.x_err("RRGetScreenResourcesCurrent", e))?;
        // The first CRTC driving an output is "the" monitor of a virtual X server.
        let mut target = None;
        for &crtc in &res.crtcs {
            let info = randr::get_crtc_info(&self.conn, crtc, res.config_timestamp)
                .map_err(|e| self.x_err("RRGetCrtcInfo", e))?
                .reply()
                .map_err(|e| self.x_err("RRGetCrtcInfo", e))?;
            if !info.outputs.is_empty() {
                target = Some((crtc, info));
                break;
            }
        }
        let Some((crtc, info)) = target else {
            return Err(DisplayError::Unsupported(format!(
                "X display {:?} has no active RANDR CRTC",
                self.display
            )));
        };
        let mode = self.mode_for(width, height)?;
        for &output in &info.outputs {
            let oi = randr::get_output_info(&self.conn, output, res.config_timestamp)
                .map_err(|e| self.x_err("RRGetOutputInfo", e))?
                .reply()
                .map_err(|e| self.x_err("RRGetOutputInfo", e))?;
            if !oi.modes.contains(&mode) {
                randr::add_output_mode(&self.conn, output, mode)
                    .map_err(|e| self.x_err("RRAddOutputMode", e))?
                    .check()
                    .map_err(|e| self.x_err("RRAddOutputMode", e))?;
            }
        }
        let mm = |px: u32| px * 254 / 960; // keep 96 dpi
        let (w16, h16) = (width as u16, height as u16);
        // The screen must hold the CRTC at all times: grow it first, shrink it last.
        let grow_w = width.max(self.width) as u16;
        let grow_h = height.max(self.height) as u16;
        if (u32::from(grow_w), u32::from(grow_h)) != (self.width, self.height) {
            randr::set_screen_size(
                &self.conn,
                self.root,
                grow_w,
                grow_h,
                mm(u32::from(grow_w)),
                mm(u32::from(grow_h)),
            )
            .map_err(|e| self.x_err("RRSetScreenSize", e))?
            .check()
            .map_err(|e| self.x_err("RRSetScreenSize", e))?;
        }
        let r = randr::set_crtc_config(
            &self.conn,
            crtc,
            CURRENT_TIME,
            res.config_timestamp,
            0,
            0,
            mode,
            randr::Rotation::ROTATE0,
            &info.outputs,
        )
        .map_err(|e| self.x_err("RRSetCrtcConfig", e))?
        .reply()
        .map_err(|e| self.x_err("RRSetCrtcConfig", e))?;
        if r.status != randr::SetConfig::SUCCESS {
            return Err(self.x_err("RRSetCrtcConfig", format!("status {:?}", r.status)));
        }
        if (grow_w, grow_h) != (w16, h16) {
            randr::set_screen_size(&self.conn, self.root, w16, h16, mm(width), mm(height))
                .map_err(|e| self.x_err("RRSetScreenSize", e))?
                .check()
                .map_err(|e| self.x_err("RRSetScreenSize", e))?;
        }
        let g = self
            .conn
            .get_geometry(self.root)
            .map_err(|e| self.x_err("GetGeometry", e))?
            .reply()
            .map_err(|e| self.x_err("GetGeometry", e))?;
        self.screen_resized(u32::from(g.width), u32::from(g.height))
    }

    fn set_clipboard(&mut self, mime: &str, data: &[u8]) -> Result<(), DisplayError> {
        let a = &self.atoms;
        let targets = match mime {
            "text/plain;charset=utf-8"
            | "text/plain;charset=UTF-8"
            | "UTF8_STRING"
            | "text/plain"
            | "STRING"
            | "TEXT" => {
                std::str::from_utf8(data).map_err(|e| {
                    DisplayError::InvalidArgument(format!(
                        "clipboard text ({mime}) is not UTF-8: {e}"
                    ))
                })?;
                vec![
                    a.utf8_string,
                    a.text_plain_utf8,
                    a.text_plain,
                    a.text,
                    AtomEnum::STRING.into(),
                ]
            }
            other if other.is_empty() || other.len() > 255 => {
                return Err(DisplayError::InvalidArgument(format!(
                    "clipboard MIME type {other:?} is empty or too long"
                )))
            }
            other => vec![
                self.conn
                    .intern_atom(false, other.as_bytes())
                    .map_err(|e| self.x_err("InternAtom", e))?
                    .reply()
                    .map_err(|e| self.x_err("InternAtom", e))?
                    .atom,
            ],
        };
        self.offer = Some(Offer {
            targets,
            data: data.to_vec(),
        });
        self.conn
            .set_selection_owner(self.clip_win, self.atoms.clipboard, CURRENT_TIME)
            .map_err(|e| self.x_err("SetSelectionOwner", e))?;
        let owner = self
            .conn
            .get_selection_owner(self.atoms.clipboard)
            .map_err(|e| self.x_err("GetSelectionOwner", e))?
            .reply()
            .map_err(|e| self.x_err("GetSelectionOwner", e))?
            .owner;
        if owner != self.clip_win {
            self.offer = None;
            return Err(self.x_err("SetSelectionOwner", "another client kept CLIPBOARD"));
        }
        Ok(())
    }
}
