//! The interactive viewer: a winit window painted with softbuffer from the
//! primary surface of the first display channel, with the guest cursor drawn
//! locally, keyboard input as PC scancodes and the mouse in client mode
//! (absolute positions) or server mode (relative motion while grabbed;
//! Ctrl+Alt releases the grab). With a guest agent, resizing the window asks
//! for that resolution (MONITORS_CONFIG) and text is shared both ways
//! between the host clipboard and the guest's.

use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spice_proto::consts::{mouse_button, mouse_button_mask, mouse_mode};
use spice_proto::InputsClientMsg;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{
    DeviceEvent, DeviceId, ElementState, MouseButton, MouseScrollDelta, WindowEvent,
};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::{KeyCode, PhysicalKey};
use winit::window::{CursorGrabMode, Window, WindowId};

use crate::error::ClientError;
use crate::keymap;
use crate::session::{ChannelStats, ClientConfig, Session};

/// How the viewer runs.
#[derive(Debug, Clone, Default)]
pub struct ViewerOptions {
    /// Window title; the server address when empty.
    pub title: String,
    /// Allow the event loop off the main thread (tests).
    pub any_thread: bool,
    /// Close the window when this becomes true.
    pub quit: Option<Arc<AtomicBool>>,
}

/// Connects and shows the session in a window until it is closed or the
/// session fails. Returns the traffic per channel.
pub fn run_window(
    cfg: ClientConfig,
    opts: ViewerOptions,
) -> Result<Vec<ChannelStats>, ClientError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ClientError::Io {
            channel: "runtime",
            reason: e.to_string(),
        })?;
    let title = if opts.title.is_empty() {
        format!(
            "coop view {}:{}",
            cfg.host,
            if cfg.port != 0 {
                cfg.port
            } else {
                cfg.tls_port
            }
        )
    } else {
        opts.title.clone()
    };
    let session = Arc::new(rt.block_on(Session::connect(cfg))?);
    // Inputs go through one task so that they reach the server in order.
    let (tx, mut rx) = unbounded_channel::<InputsClientMsg>();
    let s2 = session.clone();
    rt.spawn(async move {
        while let Some(m) = rx.recv().await {
            if let Err(e) = s2.send_input(m).await {
                tracing::debug!(error = %e, "input event dropped");
            }
        }
    });
    let mut builder = EventLoop::builder();
    if opts.any_thread {
        use winit::platform::x11::EventLoopBuilderExtX11;
        builder.with_any_thread(true);
    }
    let el = builder.build().map_err(|e| ClientError::Io {
        channel: "window",
        reason: e.to_string(),
    })?;
    let mut app = App {
        rt: rt.handle().clone(),
        session,
        tx,
        title,
        quit: opts.quit,
        window: None,
        surface: None,
        seen_update: None,
        seen_cursor: (0, 0, false),
        screen_size: (0, 0),
        buttons: 0,
        grabbed: false,
        ctrl: false,
        alt: false,
        mouse: (0, 0),
        error: None,
        clipboard: None,
        clip_host: None,
        clip_guest: None,
        clip_poll: Instant::now(),
        held: Vec::new(),
    };
    el.run_app(&mut app).map_err(|e| ClientError::Io {
        channel: "window",
        reason: e.to_string(),
    })?;
    drop(app.tx);
    match app.error {
        Some(e) => Err(e),
        None => Ok(app.session.stats()),
    }
}

type SoftSurface = softbuffer::Surface<Rc<Window>, Rc<Window>>;

struct App {
    rt: tokio::runtime::Handle,
    session: Arc<Session>,
    tx: UnboundedSender<InputsClientMsg>,
    title: String,
    quit: Option<Arc<AtomicBool>>,
    window: Option<Rc<Window>>,
    surface: Option<SoftSurface>,
    seen_update: Option<u64>,
    seen_cursor: (i32, i32, bool),
    screen_size: (u32, u32),
    buttons: u16,
    grabbed: bool,
    ctrl: bool,
    alt: bool,
    mouse: (i32, i32),
    error: Option<ClientError>,
    /// The host clipboard, opened once an agent is there to share it with.
    clipboard: Option<arboard::Clipboard>,
    /// Text last seen on (or put on) the host clipboard.
    clip_host: Option<String>,
    /// Guest clipboard text last copied to the host.
    clip_guest: Option<String>,
    clip_poll: Instant,
    /// Keys held down in the guest, released when we lose the focus.
    held: Vec<keymap::Scancode>,
}

fn window_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Io {
        channel: "window",
        reason: e.to_string(),
    }
}

impl App {
    fn client_mode(&self) -> bool {
        self.session.mouse_mode() == mouse_mode::CLIENT
    }

    fn send(&self, m: InputsClientMsg) {
        let _ = self.tx.send(m);
    }

    fn set_grab(&mut self, on: bool) {
        let Some(w) = &self.window else { return };
        if on {
            let ok = w
                .set_cursor_grab(CursorGrabMode::Locked)
                .or_else(|_| w.set_cursor_grab(CursorGrabMode::Confined))
                .is_ok();
            if !ok {
                return;
            }
            w.set_title(&format!("{} (Ctrl+Alt releases the mouse)", self.title));
        } else {
            let _ = w.set_cursor_grab(CursorGrabMode::None);
            w.set_title(&self.title);
        }
        self.grabbed = on;
    }

    fn redraw(&mut self) -> Result<(), ClientError> {
        let client = self.client_mode();
        let mouse = self.mouse;
        let (Some(w), Some(surface)) = (&self.window, &mut self.surface) else {
            return Ok(());
        };
        let size = w.inner_size();
        let (Some(ww), Some(wh)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height))
        else {
            return Ok(());
        };
        surface.resize(ww, wh).map_err(window_err)?;
        let mut buf = surface.buffer_mut().map_err(window_err)?;
        let (bw, bh) = (size.width as usize, size.height as usize);
        let screen = self.session.with_display(|d| {
            let p = d.and_then(|d| d.surfaces.primary())?;
            let px = &p.pixels;
            let (sw, sh) = (px.width as usize, px.height as usize);
            for y in 0..bh {
                let row = &mut buf[y * bw..(y + 1) * bw];
                if y < sh {
                    let n = sw.min(bw);
                    for (d, s) in row[..n].iter_mut().zip(&px.data[y * sw..y * sw + n]) {
                        *d = s & 0x00ff_ffff;
                    }
                    row[n..].fill(0);
                } else {
                    row.fill(0);
                }
            }
            Some((px.width, px.height))
        });
        if screen.is_none() {
            buf.fill(0);
        }
        // The guest's cursor, drawn here: at our pointer in client mode, at
        // the server's position otherwise.
        let has_shape = self.session.with_cursor(|c| {
            let Some(shape) = c.shape.as_ref() else {
                return false;
            };
            if !c.visible {
                return true;
            }
            let (cx, cy) = if client { mouse } else { (c.x, c.y) };
            let x0 = cx - shape.hot_x as i32;
            let y0 = cy - shape.hot_y as i32;
            for sy in 0..shape.height as i32 {
                for sx in 0..shape.width as i32 {
                    let (x, y) = (x0 + sx, y0 + sy);
                    if x < 0 || y < 0 || x as usize >= bw || y as usize >= bh {
                        continue;
                    }
                    let s = shape.argb[(sy as u32 * shape.width + sx as u32) as usize];
                    let a = s >> 24;
                    if a == 0 {
                        continue;
                    }
                    let d = &mut buf[y as usize * bw + x as usize];
                    let mix = |sh: u32| {
                        let sc = (s >> sh) & 0xff;
                        let dc = (*d >> sh) & 0xff;
                        ((sc * a + dc * (255 - a)) / 255) << sh
                    };
                    *d = mix(0) | mix(8) | mix(16);
                }
            }
            true
        });
        buf.present().map_err(window_err)?;
        if let Some(w) = &self.window {
            w.set_cursor_visible(!has_shape);
            if let Some(sz) = screen {
                if sz != self.screen_size {
                    self.screen_size = sz;
                    let _ = w.request_inner_size(PhysicalSize::new(sz.0, sz.1));
                }
            }
        }
        Ok(())
    }

    /// Shares text both ways between the host clipboard and the guest agent.
    /// The host side is polled: winit reports no clipboard changes.
    fn sync_clipboard(&mut self) {
        if !self.session.agent_connected() || self.clip_poll.elapsed() < Duration::from_millis(250)
        {
            return;
        }
        self.clip_poll = Instant::now();
        if self.clipboard.is_none() {
            match arboard::Clipboard::new() {
                Ok(c) => self.clipboard = Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, "no host clipboard");
                    return;
                }
            }
        }
        let Some(cb) = self.clipboard.as_mut() else {
            return;
        };
        let guest = self.session.guest_clipboard();
        if guest.is_some() && guest != self.clip_guest {
            self.clip_guest = guest.clone();
            if let Some(t) = guest {
                if cb.set_text(t.clone()).is_ok() {
                    self.clip_host = Some(t);
                }
            }
            return;
        }
        if let Ok(t) = cb.get_text() {
            if self.clip_host.as_ref() != Some(&t) {
                self.clip_host = Some(t.clone());
                let s = self.session.clone();
                self.rt.spawn(async move {
                    if let Err(e) = s.set_clipboard_text(t).await {
                        tracing::debug!(error = %e, "clipboard not shared");
                    }
                });
            }
        }
    }

    fn button(&mut self, b: MouseButton, pressed: bool) {
        let (btn, mask) = match b {
            MouseButton::Left => (mouse_button::LEFT, mouse_button_mask::LEFT),
            MouseButton::Middle => (mouse_button::MIDDLE, mouse_button_mask::MIDDLE),
            MouseButton::Right => (mouse_button::RIGHT, mouse_button_mask::RIGHT),
            MouseButton::Back => (mouse_button::SIDE, mouse_button_mask::SIDE),
            MouseButton::Forward => (mouse_button::EXTRA, mouse_button_mask::EXTRA),
            MouseButton::Other(_) => return,
        };
        if pressed {
            self.buttons |= mask;
            self.send(InputsClientMsg::MousePress {
                button: btn,
                buttons_state: self.buttons,
            });
        } else {
            self.buttons &= !mask;
            self.send(InputsClientMsg::MouseRelease {
                button: btn,
                buttons_state: self.buttons,
            });
        }
    }

    fn wheel(&mut self, up: bool) {
        let (btn, mask) = if up {
            (mouse_button::UP, mouse_button_mask::UP)
        } else {
            (mouse_button::DOWN, mouse_button_mask::DOWN)
        };
        self.send(InputsClientMsg::MousePress {
            button: btn,
            buttons_state: self.buttons | mask,
        });
        self.send(InputsClientMsg::MouseRelease {
            button: btn,
            buttons_state: self.buttons,
        });
    }
}

impl ApplicationHandler for App {
    fn resumed(&mut self, el: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        let attrs = Window::default_attributes()
            .with_title(self.title.clone())
            .with_inner_size(PhysicalSize::new(1024u32, 768u32));
        let made = el.create_window(attrs).map_err(window_err).and_then(|w| {
            let w = Rc::new(w);
            let ctx = softbuffer::Context::new(w.clone()).map_err(window_err)?;
            let s = softbuffer::Surface::new(&ctx, w.clone()).map_err(window_err)?;
            Ok((w, s))
        });
        match made {
            Ok((w, s)) => {
                self.window = Some(w);
                self.surface = Some(s);
            }
            Err(e) => {
                self.error = Some(e);
                el.exit();
            }
        }
    }

    fn window_event(&mut self, el: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => el.exit(),
            WindowEvent::RedrawRequested => {
                if let Err(e) = self.redraw() {
                    self.error = Some(e);
                    el.exit();
                }
            }
            WindowEvent::Resized(size) => {
                // A size the user chose (not the one we asked for to fit the
                // guest screen) becomes a monitor-config request to the agent.
                let wanted = (size.width, size.height);
                if self.screen_size != (0, 0)
                    && wanted != self.screen_size
                    && self.session.agent_connected()
                {
                    let s = self.session.clone();
                    self.rt.spawn(async move {
                        if let Err(e) = s.set_guest_resolution(wanted.0, wanted.1).await {
                            tracing::debug!(error = %e, "resolution change not sent");
                        }
                    });
                }
                if let Some(w) = &self.window {
                    w.request_redraw();
                }
            }
            WindowEvent::Focused(false) => {
                // Keys released while another window has the focus would
                // otherwise stay down in the guest.
                for sc in std::mem::take(&mut self.held) {
                    self.send(InputsClientMsg::KeyUp(sc.up()));
                }
                if self.grabbed {
                    self.set_grab(false);
                }
            }
            WindowEvent::KeyboardInput { event, .. } => {
                let PhysicalKey::Code(code) = event.physical_key else {
                    return;
                };
                let pressed = event.state == ElementState::Pressed;
                match code {
                    KeyCode::ControlLeft | KeyCode::ControlRight => self.ctrl = pressed,
                    KeyCode::AltLeft | KeyCode::AltRight => self.alt = pressed,
                    _ => {}
                }
                if self.grabbed && self.ctrl && self.alt && pressed {
                    self.set_grab(false);
                }
                let name = format!("{code:?}");
                if let Some(sc) = keymap::scancode(&name) {
                    if pressed {
                        if !self.held.contains(&sc) {
                            self.held.push(sc);
                        }
                    } else {
                        self.held.retain(|h| *h != sc);
                    }
                    self.send(if pressed {
                        InputsClientMsg::KeyDown(sc.down())
                    } else {
                        InputsClientMsg::KeyUp(sc.up())
                    });
                }
            }
            WindowEvent::CursorMoved { position, .. } => {
                self.mouse = (position.x as i32, position.y as i32);
                if self.client_mode() {
                    let (w, h) = self.screen_size;
                    self.send(InputsClientMsg::MousePosition {
                        x: (position.x.max(0.0) as u32).min(w.saturating_sub(1)),
                        y: (position.y.max(0.0) as u32).min(h.saturating_sub(1)),
                        buttons_state: self.buttons,
                        display_id: 0,
                    });
                    if let Some(w) = &self.window {
                        w.request_redraw();
                    }
                }
            }
            WindowEvent::MouseInput { state, button, .. } => {
                let pressed = state == ElementState::Pressed;
                if pressed && !self.client_mode() && !self.grabbed {
                    // The first click only takes the mouse.
                    self.set_grab(true);
                    return;
                }
                self.button(button, pressed);
            }
            WindowEvent::MouseWheel { delta, .. } => {
                let dy = match delta {
                    MouseScrollDelta::LineDelta(_, y) => y as f64,
                    MouseScrollDelta::PixelDelta(p) => p.y,
                };
                if dy != 0.0 {
                    self.wheel(dy > 0.0);
                }
            }
            _ => {}
        }
    }

    fn device_event(&mut self, _el: &ActiveEventLoop, _id: DeviceId, event: DeviceEvent) {
        if let DeviceEvent::MouseMotion { delta } = event {
            if self.grabbed && !self.client_mode() {
                self.send(InputsClientMsg::MouseMotion {
                    dx: delta.0 as i32,
                    dy: delta.1 as i32,
                    buttons_state: self.buttons,
                });
            }
        }
    }

    fn about_to_wait(&mut self, el: &ActiveEventLoop) {
        if let Some(e) = self.session.error() {
            self.error = Some(e);
            el.exit();
            return;
        }
        if self
            .quit
            .as_ref()
            .is_some_and(|q| q.load(Ordering::Relaxed))
        {
            el.exit();
            return;
        }
        self.sync_clipboard();
        let upd = self.session.generation();
        let cur = self.session.with_cursor(|c| (c.x, c.y, c.visible));
        if self.seen_update != Some(upd) || self.seen_cursor != cur {
            self.seen_update = Some(upd);
            self.seen_cursor = cur;
            if let Some(w) = &self.window {
                w.request_redraw();
            }
        }
        // Poll the session at about 60 Hz; its tasks run on tokio threads.
        el.set_control_flow(ControlFlow::WaitUntil(
            Instant::now() + Duration::from_millis(16),
        ));
    }
}
