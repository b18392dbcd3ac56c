//! The display channel: the primary surface, then damage as DRAW_COPY updates, with
//! per-client image encoding (see [`crate::imaging`]) and video streams.
//!
//! A client first gets SURFACE_CREATE and one full-screen DRAW_COPY (spicy-screenshot
//! saves on the first draw, so the first frame must be a single message), then MARK.
//! Like spice-server, the first frame waits (briefly) for the client's INIT, which
//! enables GLZ and the pixmap cache, and its PREFERRED_COMPRESSION. Afterwards damaged
//! rectangles are merged, captured and sent at most `max_fps` times a second; moved
//! areas become COPY_BITS when the client's copy of both areas is current. A client
//! that falls behind the event stream gets a full refresh.
//!
//! An area redrawn as a whole at least 20 times in a row at more than 10 frames a
//! second, with photographic content, becomes an MJPEG video stream (STREAM_CREATE,
//! then one STREAM_DATA per update); a second without frames, or drawing across its
//! edge, ends it (STREAM_DESTROY) and the area is redrawn losslessly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coop_display::{merge_rects, Rect, SourceEvent};
use spice_codecs::ImageRef;
use spice_proto::consts::{
    caps, image_scale_mode, ropd, stream_flags, surface_flags, surface_fmt, video_codec,
};
use spice_proto::display::{CopyData, StreamCreate};
use spice_proto::link::{has_cap, LinkInfo};
use spice_proto::types::{Clip, DisplayBase, Point, QMask};
use spice_proto::{DisplayClientMsg, DisplayServerMsg, Message, RawMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::conn::{Channel, Out};
use crate::imaging::{is_photographic, ClientImaging};
use crate::{ImageCompression, ServerError, Session, Shared};

/// Largest display-channel message from a client.
const MAX_DISPLAY_MSG: u32 = 64 * 1024;
/// Rectangles per update after merging.
const MAX_RECTS: usize = 16;
/// How long the first frame waits for the client's display INIT (spice-gtk sends it as
/// soon as the channel is up; it sizes the GLZ dictionary and the pixmap cache).
const INIT_WAIT: Duration = Duration::from_millis(500);
/// How long after INIT further client messages (its compression preference) are awaited.
/// spice-gtk writes PREFERRED_COMPRESSION right behind INIT (26 µs apart on loopback in
/// a capture), and a client without a preference sends nothing, so every such client's
/// first frame waits the whole grace: keep it short.
const PREFERENCE_GRACE: Duration = Duration::from_millis(5);
/// An area becomes a video stream after this many whole redraws in a row, each at
/// most [`STREAM_MAX_GAP`] after the previous one (more than 10 frames a second).
const STREAM_MIN_FRAMES: u32 = 20;
const STREAM_MAX_GAP: Duration = Duration::from_millis(100);
/// Smaller areas are never streamed.
const STREAM_MIN_PIXELS: u64 = 96 * 64;
/// A stream without frames for this long ends (and its area is redrawn losslessly).
const STREAM_IDLE: Duration = Duration::from_secs(1);
const STREAM_JPEG_QUALITY: u8 = 85;
/// Frames are stamped this far ahead of the multimedia clock so spice-gtk, which
/// schedules frames by stamp, never sees them as late.
const STREAM_LATENCY_MS: u32 = 100;

/// Builds a DRAW_COPY of `w`×`h` tightly packed BGRX pixels at (`x`, `y`) on the
/// primary surface, preceded by any cache invalidations the image needs.
pub(crate) fn draw_copy(
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    data: &[u8],
    imaging: &mut ClientImaging,
) -> Vec<Out> {
    let r = ImageRef {
        width: w,
        height: h,
        stride: w as usize * 4,
        data,
    };
    let (image, mut out) = imaging.image(&r);
    out.push(Out::of(&DisplayServerMsg::DrawCopy {
        base: base(x, y, w, h),
        copy: CopyData {
            src_bitmap: Some(Box::new(image)),
            src_area: spice_proto::types::Rect::new(0, 0, w as i32, h as i32),
            rop_descriptor: ropd::OP_PUT,
            scale_mode: image_scale_mode::NEAREST,
            mask: QMask::default(),
        },
    }));
    out
}

fn base(x: u32, y: u32, w: u32, h: u32) -> DisplayBase {
    DisplayBase {
        surface_id: 0,
        bbox: spice_proto::types::Rect::new(
            x as i32,
            y as i32,
            x.saturating_add(w) as i32,
            y.saturating_add(h) as i32,
        ),
        clip: Clip::None,
    }
}

struct Display {
    /// Locked only by the encoder task of the update being sent.
    imaging: Arc<Mutex<ClientImaging>>,
    width: u32,
    height: u32,
    detector: StreamDetector,
    stream: Option<VideoStream>,
    next_stream_id: u32,
    /// An earlier display channel of this session existed.
    relinked: bool,
}

impl Display {
    /// Encodes off the async threads and queues the messages in order.
    async fn send_image(&self, ch: &Channel, r: Rect, data: Vec<u8>) -> Result<(), ServerError> {
        let imaging = self.imaging.clone();
        let outs = tokio::task::spawn_blocking(move || {
            let mut im = imaging.lock().unwrap_or_else(|p| p.into_inner());
            draw_copy(r.x, r.y, r.w, r.h, &data, &mut im)
        })
        .await
        .map_err(|_| ServerError::Protocol("image encoder task failed".into()))?;
        for o in outs {
            ch.send(o).await?;
        }
        Ok(())
    }

    fn imaging(&self) -> std::sync::MutexGuard<'_, ClientImaging> {
        self.imaging.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles one client message.
    fn on_client(&self, m: DisplayClientMsg) {
        match m {
            DisplayClientMsg::Init {
                pixmap_cache_size,
                glz_dictionary_window_size,
                ..
            } => {
                tracing::debug!(
                    pixmap_cache_size,
                    glz_dictionary_window_size,
                    "display init"
                );
                // spice-gtk empties its GLZ window only when a session connects, so a
                // display channel relinked within a session cannot restart image ids
                // at 0: it goes without GLZ (LZ instead).
                let glz = if self.relinked {
                    0
                } else {
                    glz_dictionary_window_size
                };
                self.imaging().init(pixmap_cache_size, glz);
            }
            DisplayClientMsg::PreferredCompression(c) => match ImageCompression::from_wire(c) {
                Some(m) => self.imaging().preferred = Some(m),
                None => tracing::info!(value = c, "ignoring unknown preferred compression"),
            },
            _ => {}
        }
    }

    /// (Re)creates the primary surface and sends the whole screen.
    async fn full(
        &mut self,
        shared: &Shared,
        ch: &Channel,
        recreate: bool,
    ) -> Result<(), ServerError> {
        let frame = shared.source.capture_full().await?;
        if let Some(st) = self.stream.take() {
            ch.send_msg(&DisplayServerMsg::StreamDestroy { id: st.id })
                .await?;
        }
        if recreate {
            ch.send_msg(&DisplayServerMsg::SurfaceDestroy { surface_id: 0 })
                .await?;
        }
        self.width = frame.width;
        self.height = frame.height;
        ch.send_msg(&DisplayServerMsg::SurfaceCreate {
            surface_id: 0,
            width: frame.width,
            height: frame.height,
            format: surface_fmt::FMT_32_XRGB,
            flags: surface_flags::PRIMARY,
        })
        .await?;
        let mut data = frame.data;
        if frame.stride != frame.width as usize * 4 {
            data = pack(&data, frame.stride, frame.width, frame.height);
        }
        if data.len() < frame.width as usize * frame.height as usize * 4 {
            return Err(ServerError::Protocol(format!(
                "display source returned {} bytes for a {}x{} frame",
                data.len(),
                frame.width,
                frame.height
            )));
        }
        self.send_image(ch, Rect::new(0, 0, frame.width, frame.height), data)
            .await
    }

    /// Sends the dirty areas; `Ok(false)` when the screen changed size meanwhile.
    async fn update(
        &mut self,
        shared: &Shared,
        ch: &Channel,
        dirty: &[Rect],
    ) -> Result<bool, ServerError> {
        let bounds = Rect::new(0, 0, self.width, self.height);
        let mut frame_due = false;
        for r in merge_rects(dirty, bounds, MAX_RECTS) {
            if let Some(st) = &self.stream {
                if st.rect.contains(&r) {
                    frame_due = true;
                    continue;
                }
                if st.rect.intersect(&r).is_some() {
                    // Drawing across the video's edge: back to plain updates.
                    if !self.end_stream(shared, ch).await? {
                        return Ok(false);
                    }
                }
            }
            let Some(photo) = self.capture_and_send(shared, ch, r).await? else {
                return Ok(false);
            };
            // Like spice-server's "filter" streaming mode, only photographic content
            // (video, not a scrolling terminal) is sent lossy.
            if self.stream.is_none() && self.detector.redrawn(r, std::time::Instant::now()) && photo
            {
                self.start_stream(ch, r).await?;
                shared
                    .video_streams
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if frame_due {
            return self.stream_frame(shared, ch).await;
        }
        Ok(true)
    }

    /// Captures `r` and sends it losslessly; `Ok(None)` when `r` is off the screen,
    /// else whether the content looked photographic.
    async fn capture_and_send(
        &self,
        shared: &Shared,
        ch: &Channel,
        r: Rect,
    ) -> Result<Option<bool>, ServerError> {
        let data = match shared.source.capture(r).await {
            Ok(d) => d,
            Err(coop_display::DisplayError::OutOfBounds { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if data.len() < r.w as usize * r.h as usize * 4 {
            return Ok(None);
        }
        let photo = is_photographic(&ImageRef {
            width: r.w,
            height: r.h,
            stride: r.w as usize * 4,
            data: &data,
        });
        self.send_image(ch, r, data).await?;
        Ok(Some(photo))
    }

    async fn start_stream(&mut self, ch: &Channel, rect: Rect) -> Result<(), ServerError> {
        self.next_stream_id = self.next_stream_id.wrapping_add(1);
        let id = self.next_stream_id;
        tracing::debug!(id, ?rect, "starting a video stream");
        ch.send_msg(&DisplayServerMsg::StreamCreate(StreamCreate {
            surface_id: 0,
            id,
            flags: stream_flags::TOP_DOWN,
            codec_type: video_codec::MJPEG,
            stamp: 0,
            stream_width: rect.w,
            stream_height: rect.h,
            src_width: rect.w,
            src_height: rect.h,
            dest: spice_proto::types::Rect::new(
                rect.x as i32,
                rect.y as i32,
                (rect.x + rect.w) as i32,
                (rect.y + rect.h) as i32,
            ),
            clip: Clip::None,
        }))
        .await?;
        self.stream = Some(VideoStream {
            id,
            rect,
            last: Instant::now(),
            frames: 0,
        });
        Ok(())
    }

    /// Sends the stream's area as one JPEG frame.
    async fn stream_frame(&mut self, shared: &Shared, ch: &Channel) -> Result<bool, ServerError> {
        let Some(st) = &mut self.stream else {
            return Ok(true);
        };
        let r = st.rect;
        let data = match shared.source.capture(r).await {
            Ok(d) => d,
            Err(coop_display::DisplayError::OutOfBounds { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let jpeg = tokio::task::spawn_blocking(move || {
            spice_codecs::jpeg::encode(
                &ImageRef {
                    width: r.w,
                    height: r.h,
                    stride: r.w as usize * 4,
                    data: &data,
                },
                STREAM_JPEG_QUALITY,
            )
        })
        .await
        .map_err(|_| ServerError::Protocol("video encoder task failed".into()))?;
        let jpeg = match jpeg {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "JPEG encoding failed; ending the stream");
                return self.end_stream(shared, ch).await;
            }
        };
        st.last = Instant::now();
        st.frames += 1;
        shared
            .video_frames
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ch.send_msg(&DisplayServerMsg::StreamData {
            id: st.id,
            multi_media_time: crate::mm_time().wrapping_add(STREAM_LATENCY_MS),
            data: jpeg,
        })
        .await?;
        Ok(true)
    }

    /// Destroys the stream and redraws its area losslessly (the client holds a lossy
    /// frame there). `Ok(false)` when the area is no longer on the screen.
    async fn end_stream(&mut self, shared: &Shared, ch: &Channel) -> Result<bool, ServerError> {
        let Some(st) = self.stream.take() else {
            return Ok(true);
        };
        tracing::debug!(id = st.id, frames = st.frames, "ending a video stream");
        ch.send_msg(&DisplayServerMsg::StreamDestroy { id: st.id })
            .await?;
        Ok(self.capture_and_send(shared, ch, st.rect).await?.is_some())
    }
}

/// A video stream the client is showing.
struct VideoStream {
    id: u32,
    rect: Rect,
    /// When the last frame was sent.
    last: Instant,
    frames: u64,
}

/// Finds areas redrawn as a whole, again and again, at a video's pace.
#[derive(Default)]
pub(crate) struct StreamDetector {
    /// Rectangle → (consecutive quick redraws, last redraw).
    seen: HashMap<Rect, (u32, std::time::Instant)>,
}

impl StreamDetector {
    /// Notes that `r` was redrawn at `now`; true when it should become a stream.
    pub(crate) fn redrawn(&mut self, r: Rect, now: std::time::Instant) -> bool {
        if u64::from(r.w) * u64::from(r.h) < STREAM_MIN_PIXELS {
            return false;
        }
        if self.seen.len() > 64 {
            self.seen
                .retain(|_, (_, t)| now.duration_since(*t) <= STREAM_MAX_GAP);
        }
        let e = self.seen.entry(r).or_insert((0, now));
        e.0 = if e.0 > 0 && now.duration_since(e.1) <= STREAM_MAX_GAP {
            e.0 + 1
        } else {
            1
        };
        e.1 = now;
        if e.0 >= STREAM_MIN_FRAMES {
            self.seen.remove(&r);
            return true;
        }
        false
    }
}

fn decode_client(m: &RawMessage) -> Result<DisplayClientMsg, ServerError> {
    DisplayClientMsg::decode(m.msg_type, &m.body)
        .map_err(|e| ServerError::Protocol(format!("display message type {}: {e}", m.msg_type)))
}

/// Repacks rows of `stride` bytes to tightly packed rows.
fn pack(data: &[u8], stride: usize, w: u32, h: u32) -> Vec<u8> {
    let row = w as usize * 4;
    let mut out = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        if let Some(r) = data.get(y * stride..y * stride + row) {
            out.extend_from_slice(r);
        }
    }
    out
}

pub(crate) async fn run<S>(
    shared: &Arc<Shared>,
    session: &Session,
    s: S,
    info: &LinkInfo,
    early: Vec<u8>,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let counters = Arc::new(vec![shared.total.clone(), shared.display.clone()]);
    let mut ch = Channel::start(s, info, early, MAX_DISPLAY_MSG, counters, "display");
    let lz4_cap = has_cap(&info.peer_channel_caps, caps::display::LZ4_COMPRESSION);
    let relinked = session
        .display_links
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        > 0;
    let r = serve_display(shared, &mut ch, lz4_cap, relinked).await;
    ch.close().await;
    r
}

async fn serve_display(
    shared: &Arc<Shared>,
    ch: &mut Channel,
    lz4_cap: bool,
    relinked: bool,
) -> Result<(), ServerError> {
    // Subscribe before the first capture so no damage after it is missed.
    let mut events = shared.source.subscribe();
    ch.set_ack().await?;
    let d = Display {
        imaging: Arc::new(Mutex::new(ClientImaging::new(
            shared.config.image_compression,
            lz4_cap,
        ))),
        width: 0,
        height: 0,
        detector: StreamDetector::default(),
        stream: None,
        next_stream_id: 0,
        relinked,
    };
    let mut d = d;
    // Like spice-server, wait for the client's INIT before drawing: it decides whether
    // GLZ and the pixmap cache may be used. Its PREFERRED_COMPRESSION follows at once.
    let init_deadline = Instant::now() + INIT_WAIT;
    let mut got_init = false;
    while !got_init {
        let m = tokio::select! {
            m = ch.rx.recv() => m,
            _ = tokio::time::sleep_until(init_deadline) => break,
        };
        let Some(m) = m else { return Ok(()) };
        let m = decode_client(&m)?;
        got_init = matches!(m, DisplayClientMsg::Init { .. });
        d.on_client(m);
    }
    // spice-gtk sends PREFERRED_COMPRESSION right behind INIT; give it a moment.
    let grace_end = Instant::now() + PREFERENCE_GRACE;
    if got_init {
        loop {
            match tokio::time::timeout_at(grace_end, ch.rx.recv()).await {
                Ok(Some(m)) => d.on_client(decode_client(&m)?),
                Ok(None) => return Ok(()),
                Err(_) => break,
            }
        }
    }
    if relinked && d.imaging().cache.is_some() {
        // The session's client cache may hold what an earlier display channel of this
        // session put there; our mirror starts empty, so empty it too.
        ch.send_msg(&DisplayServerMsg::InvalAllPixmaps(Vec::new()))
            .await?;
    }
    d.full(shared, ch, false).await?;
    ch.send_msg(&DisplayServerMsg::Mark).await?;

    let interval = Duration::from_secs(1) / shared.config.max_fps.max(1);
    let mut last = Instant::now();
    let mut dirty: Vec<Rect> = Vec::new();
    let mut full = false;
    loop {
        let pending = full || !dirty.is_empty();
        let due = last + interval;
        let stream_idle = d.stream.as_ref().map(|s| s.last + STREAM_IDLE);
        tokio::select! {
            m = ch.rx.recv() => {
                let Some(m) = m else { return Ok(()) };
                d.on_client(decode_client(&m)?);
            }
            e = events.recv() => match e {
                Ok(SourceEvent::Damage(rs)) => {
                    dirty.extend(rs);
                    if dirty.len() > 1024 {
                        dirty = merge_rects(&dirty, Rect::new(0, 0, d.width, d.height), MAX_RECTS);
                    }
                }
                Ok(SourceEvent::CopyRect { src, dst_x, dst_y }) => {
                    let dst = Rect::new(dst_x, dst_y, src.w, src.h);
                    let screen = Rect::new(0, 0, d.width, d.height);
                    let in_stream = d.stream.as_ref().is_some_and(|s| {
                        s.rect.intersect(&src).is_some() || s.rect.intersect(&dst).is_some()
                    });
                    let clean = !full
                        && !in_stream
                        && screen.contains(&src)
                        && screen.contains(&dst)
                        && !dirty.iter().any(|r| r.intersect(&src).is_some() || r.intersect(&dst).is_some());
                    if clean {
                        ch.send_msg(&DisplayServerMsg::CopyBits {
                            base: base(dst.x, dst.y, dst.w, dst.h),
                            src_pos: Point { x: src.x as i32, y: src.y as i32 },
                        })
                        .await?;
                    } else {
                        dirty.push(dst);
                    }
                }
                Ok(SourceEvent::Resized { .. }) => full = true,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "display client lagged; full refresh");
                    full = true;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(ServerError::Protocol("display source stopped".into()));
                }
            },
            _ = tokio::time::sleep_until(stream_idle.unwrap_or(due)), if stream_idle.is_some() => {
                if !d.end_stream(shared, ch).await? {
                    full = true;
                }
            }
            _ = tokio::time::sleep_until(due), if pending => {
                last = Instant::now();
                let (w, h) = shared.source.size();
                if full || (w, h) != (d.width, d.height) {
                    let recreate = (w, h) != (d.width, d.height);
                    dirty.clear();
                    full = false;
                    d.full(shared, ch, recreate).await?;
                } else {
                    let list = std::mem::take(&mut dirty);
                    if !d.update(shared, ch, &list).await? {
                        full = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spice_proto::types::{Image, ImageData};

    fn decode_copy(out: &Out) -> (DisplayBase, Image) {
        match DisplayServerMsg::decode(out.msg_type, &out.body).expect("decodable") {
            DisplayServerMsg::DrawCopy { base, copy } => (base, *copy.src_bitmap.expect("image")),
            m => panic!("not a DRAW_COPY: {m:?}"),
        }
    }

    fn pixels(w: u32, h: u32) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| [(i * 7) as u8, (i / 3) as u8, (i % 5 * 40) as u8, 0xff])
            .collect()
    }

    #[test]
    fn draw_copy_places_the_image_and_decodes_back() {
        let (w, h) = (64, 40);
        let px = pixels(w, h);
        let mut im = ClientImaging::new(ImageCompression::Lz, false);
        let outs = draw_copy(10, 20, w, h, &px, &mut im);
        assert_eq!(outs.len(), 1);
        let (base, img) = decode_copy(&outs[0]);
        assert_eq!(base.bbox, spice_proto::types::Rect::new(10, 20, 74, 60));
        let ImageData::LzRgb(lz) = img.data else {
            panic!("expected LZ, got type {}", img.data.image_type())
        };
        let bm = spice_codecs::lz::decode(&lz, None).expect("LZ decodes");
        assert_eq!((bm.width, bm.height), (w, h));
        for y in 0..h {
            for x in 0..w {
                let o = ((y * w + x) * 4) as usize;
                let want = u32::from_le_bytes([px[o], px[o + 1], px[o + 2], 0]);
                assert_eq!(bm.pixel(x, y) & 0xff_ffff, want, "pixel {x},{y}");
            }
        }
    }

    #[test]
    fn detector_wants_twenty_quick_whole_redraws_of_a_large_area() {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let big = Rect::new(10, 10, 200, 150);
        let mut d = StreamDetector::default();
        // 19 redraws at 25 fps are not enough; the 20th is.
        for i in 0..19 {
            assert!(!d.redrawn(big, at(i * 40)), "redraw {i}");
        }
        assert!(d.redrawn(big, at(19 * 40)));
        // A pause longer than 100 ms (under 10 fps) starts the count again.
        let mut d = StreamDetector::default();
        for i in 0..10 {
            assert!(!d.redrawn(big, at(i * 40)));
        }
        let mut t = 10 * 40 + 150;
        for _ in 0..19 {
            assert!(!d.redrawn(big, at(t)));
            t += 40;
        }
        assert!(d.redrawn(big, at(t)));
        // Small areas never stream.
        let small = Rect::new(0, 0, 40, 40);
        let mut d = StreamDetector::default();
        assert!((0..100).all(|i| !d.redrawn(small, at(i * 10))));
    }

    #[test]
    fn pack_drops_row_padding() {
        let data: Vec<u8> = (0..24).collect();
        // 2 rows of 2 pixels with a 12-byte stride.
        assert_eq!(pack(&data, 12, 2, 2), [&data[0..8], &data[12..20]].concat());
    }
}
