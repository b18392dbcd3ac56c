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
//! second, with photographic content (any content under `StreamingVideo::All`, never
//! under `Off`), becomes an MJPEG video stream (STREAM_CREATE, then one STREAM_DATA
//! per update); a second without frames, or drawing across its edge, ends it
//! (STREAM_DESTROY) and the area is redrawn losslessly. A client with the STREAM_REPORT
//! capability is asked for reports (STREAM_ACTIVATE_REPORT); late or dropped frames
//! lower the stream's JPEG quality and frame rate a step ([`RateControl`]), a run of
//! timely reports raises them again.
//!
//! The session's bandwidth test (main channel) sets LAN or WAN mode: on WAN the
//! ACK window widens, photographic images go JPEG and GLZ ones are zlib-wrapped, as
//! `jpeg_wan_compression` / `zlib_glz_wan_compression` allow. The first frame waits
//! for the test so that it is already encoded for the link.
//!
//! What the client holds lossy (JPEG images, stream frames) is tracked per client
//! ([`crate::lossy::LossyRegion`]); an area unchanged for [`REFINE_SETTLE`] is sent again
//! with the client's lossless codec, a bounded slice per pass, so a still screen
//! becomes exact. COPY_BITS carries lossiness along with the pixels it copies.

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

use crate::conn::{Channel, Out, ACK_WINDOW, WAN_ACK_WINDOW};
use crate::imaging::{is_photographic, ClientImaging, WanPolicy};
use crate::lossy::LossyRegion;
use crate::{ImageCompression, LinkState, ServerError, Session, Shared, StreamingVideo, Tally};

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
/// An area the source redraws at a video's pace may become a stream when it is next sent
/// within this time of its last redraw (on a slow link, sending the previous update can
/// take this long).
const STREAM_HOT_FOR: Duration = Duration::from_millis(500);
/// Smaller areas are never streamed.
const STREAM_MIN_PIXELS: u64 = 96 * 64;
/// A stream without frames for this long ends (and its area is redrawn losslessly).
const STREAM_IDLE: Duration = Duration::from_secs(1);
/// Frames are stamped this far ahead of the multimedia clock so spice-gtk, which
/// schedules frames by stamp, never sees them as late.
const STREAM_LATENCY_MS: u32 = 100;
/// STREAM_ACTIVATE_REPORT's terms (spice-server's): a report every 5 frames, or
/// every second when fewer arrive.
const REPORT_WINDOW: u32 = 5;
const REPORT_TIMEOUT_MS: u32 = 1000;
/// Share of a slow link's measured bandwidth a stream starts with. spice-gtk reads
/// while data is pending before it writes, so a saturated link would also silence
/// its reports and ACKs; leaving room keeps them flowing.
const STREAM_BUDGET_SHARE: f64 = 0.6;
/// Bounds of the budget as reports move it, bytes per second.
const STREAM_BUDGET_MIN: f64 = 8_000.0;
const STREAM_BUDGET_MAX: f64 = 100e6;
/// Updates wait while more than this many bytes wait for the link.
const UPDATE_BACKLOG_MAX: u64 = 128 * 1024;
/// A due stream frame is skipped while more than this many bytes wait for the link.
const STREAM_BACKLOG_MAX: u64 = 32 * 1024;
/// Longest wait of the first frame for the session's bandwidth test. The main channel
/// gives up sooner on a client that does not answer PINGs.
const NET_TEST_WAIT: Duration = Duration::from_secs(5);
/// A lossy area unchanged for this long is sent again losslessly: long enough that a
/// photo being scrolled or an animation under the streaming threshold is not refined
/// frame by frame, short enough that a still screen soon becomes exact.
const REFINE_SETTLE: Duration = Duration::from_millis(400);
/// Least time between refine passes, and pixels per pass at most: about 130 kB of QUIC
/// for a noisy photo, a quarter second of a 4 Mbit/s link, so an update that follows
/// waits little; and no pass starts while updates wait for the link.
const REFINE_INTERVAL: Duration = Duration::from_millis(100);
const REFINE_MAX_PIXELS: u64 = 64 * 1024;

/// Builds a DRAW_COPY of `w`×`h` tightly packed BGRX pixels at (`x`, `y`) on the
/// primary surface, preceded by any cache invalidations the image needs; with a
/// lossless codec only when `lossless_only`. The flag: the image is lossy.
pub(crate) fn draw_copy(
    (x, y, w, h): (u32, u32, u32, u32),
    data: &[u8],
    imaging: &mut ClientImaging,
    lossless_only: bool,
) -> (Vec<Out>, bool) {
    let r = ImageRef {
        width: w,
        height: h,
        stride: w as usize * 4,
        data,
    };
    let (image, mut out, lossy) = imaging.image_for(&r, lossless_only);
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
    (out, lossy)
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
    /// The same test on the source's own damage, as it arrives: on a slow link the
    /// updates we send are spaced by the link (a 1 Mbit/s link takes ~200 ms per JPEG
    /// frame of a small video), so the per-update test above never sees a video there.
    source_pace: StreamDetector,
    stream: Option<VideoStream>,
    next_stream_id: u32,
    /// A stream frame is due but waits for the stream's (reduced) frame interval.
    stream_owed: bool,
    /// The client sends STREAM_REPORTs when asked.
    report_cap: bool,
    /// An earlier display channel of this session existed.
    relinked: bool,
    /// The session's link was measured as slow.
    wan: bool,
    /// Its measured bandwidth then, bits per second.
    link_bps: Option<u64>,
    tally: Arc<Tally>,
    /// What the client shows lossy.
    lossy: LossyRegion,
    /// No refine pass before this (paces them, and waits out a busy link).
    refine_after: Instant,
}

impl Display {
    /// Encodes off the async threads and queues the messages in order; notes whether
    /// the client's pixels at `r` are now lossy. Returns the bytes queued.
    async fn send_image(
        &mut self,
        ch: &Channel,
        r: Rect,
        data: Vec<u8>,
        lossless_only: bool,
    ) -> Result<usize, ServerError> {
        let imaging = self.imaging.clone();
        let (outs, lossy) = tokio::task::spawn_blocking(move || {
            let mut im = imaging.lock().unwrap_or_else(|p| p.into_inner());
            draw_copy((r.x, r.y, r.w, r.h), &data, &mut im, lossless_only)
        })
        .await
        .map_err(|_| ServerError::Protocol("image encoder task failed".into()))?;
        if lossy {
            self.lossy.mark_lossy(r, std::time::Instant::now());
        } else {
            self.lossy.mark_lossless(r);
        }
        let mut bytes = 0;
        for o in outs {
            bytes += o.body.len();
            ch.send(o).await?;
        }
        Ok(bytes)
    }

    /// Sends again, losslessly, lossy areas that stopped changing: at most
    /// [`REFINE_MAX_PIXELS`] a pass, one pass per [`REFINE_INTERVAL`], none while the
    /// link is backed up. Returns the areas captured (for the move-race check), or
    /// `None` when the screen changed size meanwhile.
    async fn refine(
        &mut self,
        shared: &Shared,
        ch: &Channel,
    ) -> Result<Option<Vec<Rect>>, ServerError> {
        let now = Instant::now();
        self.refine_after = now + REFINE_INTERVAL;
        if ch.backlog() > UPDATE_BACKLOG_MAX {
            return Ok(Some(Vec::new()));
        }
        let exclude = self.stream.as_ref().map(|s| s.rect);
        let due = self
            .lossy
            .take_due(now.into_std(), REFINE_SETTLE, REFINE_MAX_PIXELS, exclude);
        for r in &due {
            let Some(c) = self.capture_and_send(shared, ch, *r, true).await? else {
                return Ok(None);
            };
            self.count_refine(c.bytes);
        }
        if !due.is_empty() {
            tracing::debug!(
                rects = due.len(),
                left = self.lossy.pixels(),
                "refined lossy areas"
            );
        }
        Ok(Some(due))
    }

    fn count_refine(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.tally.refine_images.fetch_add(1, Relaxed);
        self.tally.refine_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// When the next refine pass is due, if any.
    fn refine_due(&self) -> Option<Instant> {
        let exclude = self.stream.as_ref().map(|s| s.rect);
        let due = self.lossy.next_due(REFINE_SETTLE, exclude)?;
        Some(Instant::from_std(due).max(self.refine_after))
    }

    fn imaging(&self) -> std::sync::MutexGuard<'_, ClientImaging> {
        self.imaging.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the session's bandwidth test: lossy images and the ACK window.
    async fn apply_link(
        &mut self,
        shared: &Shared,
        ch: &mut Channel,
        st: LinkState,
    ) -> Result<(), ServerError> {
        let wan = st.wan();
        self.link_bps = match st {
            LinkState::Measured(t) if t.wan => Some(t.bits_per_sec),
            _ => None,
        };
        let c = &shared.config;
        self.imaging().wan = WanPolicy {
            jpeg: c.jpeg_wan_compression.enabled(wan),
            zlib_glz: c.zlib_glz_wan_compression.enabled(wan),
            jpeg_quality: c.jpeg_quality,
        };
        if wan != self.wan {
            self.wan = wan;
            tracing::debug!(wan, "display link mode");
            ch.set_ack_window(if wan { WAN_ACK_WINDOW } else { ACK_WINDOW })
                .await?;
        }
        Ok(())
    }

    /// Handles one client message.
    fn on_client(&mut self, m: DisplayClientMsg) {
        match m {
            DisplayClientMsg::StreamReport(r) => {
                tracing::trace!(?r, "stream report");
                self.tally
                    .stream_reports
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(st) = &mut self.stream {
                    if r.stream_id == st.id && r.unique_id == st.report_id {
                        let now = crate::mm_time();
                        let before = st.rate.level;
                        if st.rate.report(&r, now) {
                            let c = if st.rate.level > before {
                                &self.tally.stream_steps_down_report
                            } else {
                                &self.tally.stream_steps_up
                            };
                            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::debug!(
                                id = st.id,
                                level = st.rate.level,
                                drops = r.num_drops,
                                frames = r.num_frames,
                                delay = r.last_frame_delay,
                                "stream rate changed"
                            );
                        }
                    }
                }
            }
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
        self.stream_owed = false;
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
        self.lossy.clear();
        self.send_image(ch, Rect::new(0, 0, frame.width, frame.height), data, false)
            .await?;
        Ok(())
    }

    /// Sends the dirty areas; `Ok(false)` when the screen changed size meanwhile.
    async fn update(
        &mut self,
        shared: &Shared,
        ch: &Channel,
        dirty: &[Rect],
    ) -> Result<bool, ServerError> {
        let bounds = Rect::new(0, 0, self.width, self.height);
        let mut frame_due = std::mem::take(&mut self.stream_owed);
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
            let Some(Captured { photo, .. }) = self.capture_and_send(shared, ch, r, false).await?
            else {
                return Ok(false);
            };
            // In spice-server's "filter" mode only photographic content (video, not a
            // scrolling terminal) is sent lossy.
            let mode = shared.config.streaming_video;
            if self.stream.is_none()
                && mode != StreamingVideo::Off
                && (self.detector.redrawn(r, std::time::Instant::now())
                    || self.source_pace.is_hot(r, std::time::Instant::now()))
                && (photo || mode == StreamingVideo::All)
            {
                self.start_stream(shared, ch, r).await?;
                self.tally
                    .video_streams
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if frame_due {
            let Some(st) = &mut self.stream else {
                return Ok(true);
            };
            st.drawn = Instant::now();
            let early = st.last.elapsed() < st.interval;
            let backed_up =
                ch.backlog() > STREAM_BACKLOG_MAX || !st.rate.may_send(std::time::Instant::now());
            if backed_up && !early && st.rate.backlogged(crate::mm_time()) {
                tracing::debug!(
                    id = st.id,
                    level = st.rate.level,
                    "stream over budget; rate lowered"
                );
                self.tally
                    .stream_steps_down_link
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if early || backed_up {
                // The rate control lowered the frame rate, or the link (its measured
                // bandwidth, or our queue towards it) has no room for another frame
                // yet (spice-server drops frames then too): send the latest picture
                // later.
                self.stream_owed = true;
                return Ok(true);
            }
            return self.stream_frame(shared, ch).await;
        }
        Ok(true)
    }

    /// Captures `r` and sends it (losslessly when `lossless_only`); `Ok(None)` when
    /// `r` is off the screen.
    async fn capture_and_send(
        &mut self,
        shared: &Shared,
        ch: &Channel,
        r: Rect,
        lossless_only: bool,
    ) -> Result<Option<Captured>, ServerError> {
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
        let bytes = self.send_image(ch, r, data, lossless_only).await?;
        Ok(Some(Captured { photo, bytes }))
    }

    async fn start_stream(
        &mut self,
        shared: &Shared,
        ch: &Channel,
        rect: Rect,
    ) -> Result<(), ServerError> {
        self.next_stream_id = self.next_stream_id.wrapping_add(1);
        let id = self.next_stream_id;
        tracing::debug!(
            id,
            ?rect,
            report = self.report_cap,
            "starting a video stream"
        );
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
        let report_id = id;
        if self.report_cap {
            ch.send_msg(&DisplayServerMsg::StreamActivateReport {
                stream_id: id,
                unique_id: report_id,
                max_window_size: REPORT_WINDOW,
                timeout_ms: REPORT_TIMEOUT_MS,
            })
            .await?;
        }
        let mut rate = RateControl::default();
        if let Some(bps) = self.link_bps {
            rate.set_budget(
                bps as f64 / 8.0 * STREAM_BUDGET_SHARE,
                std::time::Instant::now(),
            );
        }
        // Its frames are JPEG: the area is lossy until the end redraws it.
        self.lossy.mark_lossy(rect, std::time::Instant::now());
        self.stream = Some(VideoStream {
            id,
            rect,
            last: Instant::now(),
            drawn: Instant::now(),
            frames: 0,
            report_id,
            interval: rate.interval(shared.config.max_fps),
            rate,
        });
        Ok(())
    }

    /// Sends the stream's area as one JPEG frame.
    async fn stream_frame(&mut self, shared: &Shared, ch: &Channel) -> Result<bool, ServerError> {
        let Some(st) = &mut self.stream else {
            return Ok(true);
        };
        let r = st.rect;
        let quality = st.rate.quality(shared.config.jpeg_quality);
        let fps = st.rate.fps(shared.config.max_fps);
        st.interval = st.rate.interval(shared.config.max_fps);
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
                quality,
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
        self.lossy.mark_lossy(r, std::time::Instant::now());
        st.rate.sent(jpeg.len());
        {
            use std::sync::atomic::Ordering::Relaxed;
            let t = &self.tally;
            t.video_frames.fetch_add(1, Relaxed);
            t.video_bytes.fetch_add(jpeg.len() as u64, Relaxed);
            t.stream_quality.store(u64::from(quality), Relaxed);
            t.stream_fps.store(u64::from(fps), Relaxed);
            let _ = t.stream_min_quality.fetch_update(Relaxed, Relaxed, |m| {
                (m == 0 || u64::from(quality) < m).then_some(u64::from(quality))
            });
        }
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
        self.stream_owed = false;
        tracing::debug!(id = st.id, frames = st.frames, "ending a video stream");
        ch.send_msg(&DisplayServerMsg::StreamDestroy { id: st.id })
            .await?;
        let Some(c) = self.capture_and_send(shared, ch, st.rect, true).await? else {
            return Ok(false);
        };
        self.count_refine(c.bytes);
        Ok(true)
    }
}

/// What [`Display::capture_and_send`] sent.
struct Captured {
    /// The content looked photographic.
    photo: bool,
    /// Bytes queued for it.
    bytes: usize,
}

/// A video stream the client is showing.
struct VideoStream {
    id: u32,
    rect: Rect,
    /// When the last frame was sent.
    last: Instant,
    /// When its area was last redrawn (frames may lag behind on a slow link).
    drawn: Instant,
    frames: u64,
    /// The `unique_id` its reports must carry.
    report_id: u32,
    /// Least time between frames, from the rate control.
    interval: Duration,
    rate: RateControl,
}

/// Steps of a stream's rate control, best first: (JPEG quality, frame rate), each in
/// percent of the configured top quality and `max_fps`.
const RATE_LEVELS: [(u32, u32); 6] = [
    (100, 100),
    (85, 100),
    (70, 75),
    (55, 50),
    (45, 35),
    (35, 25),
];
/// Timely reports in a row before the stream steps back up.
const RATE_UP_AFTER: u32 = 5;
/// A report is timely when its last frame arrived at least this long before its
/// playback time (frames are stamped [`STREAM_LATENCY_MS`] ahead).
const RATE_GOOD_DELAY_MS: i32 = (STREAM_LATENCY_MS / 2) as i32;

/// A video stream's quality and frame rate, driven by the client's STREAM_REPORTs.
///
/// A report with frames arriving late (negative delay: the client's queue or the
/// link cannot keep up) or more than a tenth dropped steps down; [`RATE_UP_AFTER`]
/// timely reports in a row step up. Reports covering frames sent before the last step
/// describe the old setting and are ignored, so one congestion episode costs one step
/// per round trip rather than a collapse to the bottom.
#[derive(Debug, Default)]
pub(crate) struct RateControl {
    level: usize,
    good: u32,
    /// Frames stamped before this multimedia time predate the last step.
    hold_until: u32,
    /// Due frames skipped because the link lagged, since the last step.
    backlog_skips: u32,
    /// No backlog step before this multimedia time (the queue drains slowly).
    backlog_hold_until: u32,
    /// Bytes per second the stream may send (slow links only), as a token bucket.
    budget: Option<f64>,
    tokens: f64,
    refilled: Option<std::time::Instant>,
}

/// Skipped frames (polls at the update rate) with the link backed up before a step down.
const BACKLOG_STEP_SKIPS: u32 = 10;
/// Least time between two steps down for backlog, in ms.
const BACKLOG_STEP_HOLD_MS: u32 = 1000;

impl RateControl {
    pub fn quality(&self, top: u8) -> u8 {
        let pct = RATE_LEVELS[self.level].0;
        (u32::from(top) * pct / 100).clamp(1, 100) as u8
    }

    pub fn fps(&self, max_fps: u32) -> u32 {
        (max_fps * RATE_LEVELS[self.level].1 / 100).max(1)
    }

    pub fn interval(&self, max_fps: u32) -> Duration {
        // A little slack so frames paced by the update timer are not skipped.
        Duration::from_secs(1) / self.fps(max_fps) * 9 / 10
    }

    /// Limits the stream to `bytes_per_sec` (moved by later reports).
    pub fn set_budget(&mut self, bytes_per_sec: f64, now: std::time::Instant) {
        self.budget = Some(bytes_per_sec.clamp(STREAM_BUDGET_MIN, STREAM_BUDGET_MAX));
        self.tokens = 0.0;
        self.refilled = Some(now);
    }

    /// Whether the budget has room for a frame at `now`.
    pub fn may_send(&mut self, now: std::time::Instant) -> bool {
        let Some(b) = self.budget else { return true };
        let last = self.refilled.replace(now).unwrap_or(now);
        let dt = now.saturating_duration_since(last).as_secs_f64();
        // At most a quarter second of savings, so a pause does not allow a burst.
        self.tokens = (self.tokens + dt * b).min(b / 4.0);
        self.tokens >= 0.0
    }

    /// Charges a sent frame to the budget.
    pub fn sent(&mut self, bytes: usize) {
        if self.budget.is_some() {
            self.tokens -= bytes as f64;
        }
    }

    fn scale_budget(&mut self, f: f64) {
        if let Some(b) = &mut self.budget {
            *b = (*b * f).clamp(STREAM_BUDGET_MIN, STREAM_BUDGET_MAX);
        }
    }

    /// Notes a due frame skipped because the link has not taken the previous ones;
    /// true when that lowered the level (a persistent backlog means the stream's
    /// bitrate exceeds the link, the server-side view of what reports say late).
    pub fn backlogged(&mut self, now: u32) -> bool {
        self.good = 0;
        self.backlog_skips += 1;
        if self.backlog_skips < BACKLOG_STEP_SKIPS
            || (now.wrapping_sub(self.backlog_hold_until) as i32) < 0
            || self.level + 1 >= RATE_LEVELS.len()
        {
            return false;
        }
        self.step(now, 1);
        true
    }

    fn step(&mut self, now: u32, down: i32) {
        self.level = (self.level as i32 + down).clamp(0, RATE_LEVELS.len() as i32 - 1) as usize;
        self.good = 0;
        self.backlog_skips = 0;
        self.hold_until = now.wrapping_add(STREAM_LATENCY_MS);
        self.backlog_hold_until = now.wrapping_add(BACKLOG_STEP_HOLD_MS);
    }

    /// Takes a report at multimedia time `now`; true when the level changed.
    pub fn report(&mut self, r: &spice_proto::display::StreamReport, now: u32) -> bool {
        if (r.end_frame_mm_time.wrapping_sub(self.hold_until) as i32) < 0 {
            return false;
        }
        let late = r.last_frame_delay < 0;
        let dropped = u64::from(r.num_drops) * 10 > u64::from(r.num_frames);
        if late || dropped {
            self.good = 0;
            self.scale_budget(0.7);
            if self.level + 1 < RATE_LEVELS.len() {
                self.step(now, 1);
                return true;
            }
        } else if r.num_drops == 0 && r.last_frame_delay >= RATE_GOOD_DELAY_MS {
            self.good += 1;
            self.scale_budget(1.1);
            if self.good >= RATE_UP_AFTER && self.level > 0 {
                self.step(now, -1);
                return true;
            }
        } else {
            self.good = 0;
        }
        false
    }
}

/// Finds areas redrawn as a whole, again and again, at a video's pace.
#[derive(Default)]
pub(crate) struct StreamDetector {
    /// Rectangle → (consecutive quick redraws, last redraw).
    seen: HashMap<Rect, (u32, std::time::Instant)>,
    /// Areas found redrawn at a video's pace by the source (see
    /// [`StreamDetector::note_source_redraw`]), with their last redraw.
    hot: HashMap<Rect, std::time::Instant>,
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

    /// Notes a redraw the source reported at `now`, whether or not an update follows
    /// it: an area found redrawn at a video's pace stays a candidate ("hot") while its
    /// redraws go on.
    pub(crate) fn note_source_redraw(&mut self, r: Rect, now: std::time::Instant) {
        if self.hot.contains_key(&r) {
            self.hot.insert(r, now);
        } else if self.redrawn(r, now) {
            if self.hot.len() >= 16 {
                self.hot
                    .retain(|_, t| now.duration_since(*t) <= STREAM_MAX_GAP);
            }
            self.hot.insert(r, now);
        }
    }

    /// Whether `r`, about to be sent, is an area the source redraws at a video's pace
    /// (recently enough that the video still runs).
    pub(crate) fn is_hot(&self, r: Rect, now: std::time::Instant) -> bool {
        self.hot
            .get(&r)
            .is_some_and(|t| now.duration_since(*t) <= STREAM_HOT_FOR)
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
    let report_cap = has_cap(&info.peer_channel_caps, caps::display::STREAM_REPORT);
    let relinked = session
        .display_links
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        > 0;
    let caps = ClientCaps {
        lz4: lz4_cap,
        report: report_cap,
    };
    let r = serve_display(shared, &mut ch, caps, relinked, session.link.clone()).await;
    ch.close().await;
    r
}

/// Display capabilities the client announced that change what we send.
struct ClientCaps {
    lz4: bool,
    report: bool,
}

async fn serve_display(
    shared: &Arc<Shared>,
    ch: &mut Channel,
    caps: ClientCaps,
    relinked: bool,
    mut link: tokio::sync::watch::Receiver<LinkState>,
) -> Result<(), ServerError> {
    // Subscribe before the first capture so no damage after it is missed.
    let mut events = shared.source.subscribe();
    ch.set_ack().await?;
    let mut imaging = ClientImaging::new(shared.config.image_compression, caps.lz4);
    imaging.tally = Some(shared.tally.clone());
    let mut d = Display {
        imaging: Arc::new(Mutex::new(imaging)),
        width: 0,
        height: 0,
        detector: StreamDetector::default(),
        source_pace: StreamDetector::default(),
        stream: None,
        next_stream_id: 0,
        stream_owed: false,
        report_cap: caps.report,
        relinked,
        wan: false,
        link_bps: None,
        tally: shared.tally.clone(),
        lossy: LossyRegion::default(),
        refine_after: Instant::now(),
    };
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
    // The first frame is encoded for the link the bandwidth test finds.
    let st = match tokio::time::timeout(NET_TEST_WAIT, link.wait_for(|s| *s != LinkState::Testing))
        .await
    {
        Ok(Ok(s)) => *s,
        _ => LinkState::Unknown,
    };
    d.apply_link(shared, ch, st).await?;
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
    let mut link_open = true;
    // Everything emitted before the first frame was captured is older than it.
    let mut fresh: Vec<Rect> = vec![Rect::new(0, 0, d.width, d.height)];
    loop {
        // Moves the source reported before a capture we just sent were checked against
        // the pixels before it: handle the ones already queued knowing that.
        while !fresh.is_empty() {
            let e = match events.try_recv() {
                Ok(e) => Ok(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(broadcast::error::RecvError::Lagged(n))
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    Err(broadcast::error::RecvError::Closed)
                }
                Err(broadcast::error::TryRecvError::Empty) => break,
            };
            on_source_event(&mut d, ch, e, &mut dirty, &mut full, &fresh).await?;
        }
        fresh.clear();
        let pending = full || !dirty.is_empty() || d.stream_owed;
        let due = last + interval;
        let stream_idle = d.stream.as_ref().map(|s| s.drawn + STREAM_IDLE);
        // Refining waits while updates are pending: they go first, and may make the
        // area lossy again anyway.
        let refine_at = if pending { None } else { d.refine_due() };
        tokio::select! {
            m = ch.rx.recv() => {
                let Some(m) = m else { return Ok(()) };
                d.on_client(decode_client(&m)?);
            }
            r = link.changed(), if link_open => {
                if r.is_ok() {
                    let st = *link.borrow_and_update();
                    d.apply_link(shared, ch, st).await?;
                } else {
                    // The main channel ended; the session closes this channel too.
                    link_open = false;
                }
            }
            e = events.recv() => on_source_event(&mut d, ch, e, &mut dirty, &mut full, &[]).await?,
            _ = tokio::time::sleep_until(stream_idle.unwrap_or(due)), if stream_idle.is_some() => {
                let area = d.stream.as_ref().map(|s| s.rect);
                if !d.end_stream(shared, ch).await? {
                    full = true;
                }
                fresh.extend(area);
            }
            _ = tokio::time::sleep_until(refine_at.unwrap_or(due)), if refine_at.is_some() => {
                match d.refine(shared, ch).await? {
                    Some(done) => fresh.extend(done),
                    None => full = true,
                }
            }
            _ = tokio::time::sleep_until(due), if pending => {
                last = Instant::now();
                let (w, h) = shared.source.size();
                if ch.backlog() > UPDATE_BACKLOG_MAX {
                    // The link has not taken the previous updates yet: let the damage
                    // merge and send the latest pixels once it has, rather than
                    // queueing pictures that are stale on arrival.
                } else if full || (w, h) != (d.width, d.height) {
                    let recreate = (w, h) != (d.width, d.height);
                    dirty.clear();
                    full = false;
                    d.full(shared, ch, recreate).await?;
                    fresh.push(Rect::new(0, 0, d.width, d.height));
                } else {
                    let list = std::mem::take(&mut dirty);
                    // What update captures: the merged rectangles and any video's area.
                    let screen = Rect::new(0, 0, d.width, d.height);
                    fresh.extend(merge_rects(&list, screen, MAX_RECTS));
                    fresh.extend(d.stream.as_ref().map(|s| s.rect));
                    if !d.update(shared, ch, &list).await? {
                        full = true;
                    }
                    fresh.extend(d.stream.as_ref().map(|s| s.rect));
                }
            }
        }
    }
}

/// Takes one source event into the channel's state. `fresh`: areas captured and sent
/// after the event was emitted, so a move touching them would copy newer pixels than the
/// source checked; such a move is redrawn as damage instead.
async fn on_source_event(
    d: &mut Display,
    ch: &Channel,
    e: Result<SourceEvent, broadcast::error::RecvError>,
    dirty: &mut Vec<Rect>,
    full: &mut bool,
    fresh: &[Rect],
) -> Result<(), ServerError> {
    match e {
        Ok(SourceEvent::Damage(rs)) => {
            let now = std::time::Instant::now();
            for r in &rs {
                d.lossy.touch(*r, now);
                d.source_pace.note_source_redraw(*r, now);
            }
            dirty.extend(rs);
            if dirty.len() > 1024 {
                *dirty = merge_rects(dirty, Rect::new(0, 0, d.width, d.height), MAX_RECTS);
            }
        }
        Ok(SourceEvent::CopyRect { src, dst_x, dst_y }) => {
            let dst = Rect::new(dst_x, dst_y, src.w, src.h);
            let screen = Rect::new(0, 0, d.width, d.height);
            let in_stream = d.stream.as_ref().is_some_and(|s| {
                s.rect.intersect(&src).is_some() || s.rect.intersect(&dst).is_some()
            });
            // A move racing a capture we sent copies newer pixels than the source checked.
            let clean = !*full
                && !in_stream
                && screen.contains(&src)
                && screen.contains(&dst)
                && !fresh
                    .iter()
                    .any(|r| r.intersect(&src).is_some() || r.intersect(&dst).is_some());
            if clean {
                ch.send_msg(&DisplayServerMsg::CopyBits {
                    base: base(dst.x, dst.y, dst.w, dst.h),
                    src_pos: Point {
                        x: src.x as i32,
                        y: src.y as i32,
                    },
                })
                .await?;
                // The client copies what it shows, lossy parts included.
                d.lossy.copy(src, dst);
                // Pending damage under the source still holds old pixels on the client,
                // now copied along: it is owed at the destination too. (Damage under the
                // destination stays owed as it is.)
                let moved: Vec<Rect> = dirty
                    .iter()
                    .filter_map(|r| r.intersect(&src))
                    .map(|r| Rect::new(r.x - src.x + dst.x, r.y - src.y + dst.y, r.w, r.h))
                    .collect();
                dirty.extend(moved);
            } else {
                dirty.push(dst);
            }
        }
        Ok(SourceEvent::Resized { .. }) => *full = true,
        Ok(_) => {}
        Err(broadcast::error::RecvError::Lagged(n)) => {
            tracing::debug!(skipped = n, "display client lagged; full refresh");
            *full = true;
        }
        Err(broadcast::error::RecvError::Closed) => {
            return Err(ServerError::Protocol("display source stopped".into()));
        }
    }
    Ok(())
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
        let (outs, lossy) = draw_copy((10, 20, w, h), &px, &mut im, false);
        assert!(!lossy);
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
    fn source_pace_finds_a_video_whose_updates_a_slow_link_spaces_out() {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let big = Rect::new(10, 10, 320, 240);
        let mut d = StreamDetector::default();
        // The source redraws at 25 fps; a 1 Mbit/s link lets an update out every 200 ms.
        for i in 0..30u64 {
            d.note_source_redraw(big, at(i * 40));
            if i % 5 == 4 && i < 19 {
                assert!(!d.is_hot(big, at(i * 40 + 1)), "not yet at frame {i}");
            }
        }
        assert!(d.is_hot(big, at(29 * 40 + 150)));
        // A video that stopped long ago is not a candidate any more.
        assert!(!d.is_hot(big, at(29 * 40 + 600)));
        // While it runs on, it stays one.
        d.note_source_redraw(big, at(40 * 40));
        assert!(d.is_hot(big, at(40 * 40 + 10)));
        // Another area than the hot one is not.
        assert!(!d.is_hot(Rect::new(0, 0, 320, 240), at(40 * 40 + 5)));
        // Slow redraws (5 a second) never make an area hot.
        let mut d = StreamDetector::default();
        for i in 0..60u64 {
            d.note_source_redraw(big, at(i * 200));
        }
        assert!(!d.is_hot(big, at(60 * 200)));
    }

    #[test]
    fn rate_control_steps_down_on_late_frames_and_back_up_when_timely() {
        use spice_proto::display::StreamReport;
        let rep = |end: u32, drops: u32, delay: i32| StreamReport {
            stream_id: 1,
            unique_id: 1,
            start_frame_mm_time: end.saturating_sub(200),
            end_frame_mm_time: end,
            num_frames: 5,
            num_drops: drops,
            last_frame_delay: delay,
            audio_delay: u32::MAX,
        };
        let mut rc = RateControl::default();
        assert_eq!((rc.quality(85), rc.fps(30)), (85, 30));
        // Late frames: one step down.
        assert!(rc.report(&rep(1000, 0, -40), 1000));
        let (q1, f1) = (rc.quality(85), rc.fps(30));
        assert!(q1 < 85 && f1 == 30, "{q1} {f1}");
        // Reports on frames sent before the step are ignored.
        assert!(!rc.report(&rep(1050, 3, -80), 1060));
        // Newer frames still late or dropped: further down, to the bottom and no further.
        let mut t = 1200;
        for _ in 0..10 {
            rc.report(&rep(t, 3, -80), t);
            t += 200;
        }
        let (qmin, fmin) = (rc.quality(85), rc.fps(30));
        assert!(qmin < 40 && fmin < 10, "{qmin} {fmin}");
        // Timely reports: back up a step after every RATE_UP_AFTER of them, to the top.
        let mut ups = 0;
        for _ in 0..(RATE_LEVELS.len() as u32 * RATE_UP_AFTER * 2) {
            t += 200;
            if rc.report(&rep(t, 0, 90), t) {
                ups += 1;
            }
        }
        assert_eq!(ups, RATE_LEVELS.len() - 1);
        assert_eq!((rc.quality(85), rc.fps(30)), (85, 30));
        // On time but with little margin: neither up nor down.
        let mut rc = RateControl::default();
        rc.report(&rep(100, 0, -1), 100);
        for i in 0..20 {
            assert!(!rc.report(&rep(400 + i * 200, 0, 10), 400 + i * 200));
        }
        assert_eq!(rc.level, 1);
        assert!(rc.interval(30) < Duration::from_millis(34));
        // A budget of 20 kB/s: a 5 kB frame, then room again a quarter second later.
        let t0 = std::time::Instant::now();
        let mut rc = RateControl::default();
        rc.set_budget(20_000.0, t0);
        assert!(rc.may_send(t0));
        rc.sent(5_000);
        assert!(!rc.may_send(t0 + Duration::from_millis(200)));
        assert!(rc.may_send(t0 + Duration::from_millis(260)));
        // Late frames shrink it, timely ones grow it back.
        rc.report(&rep(1000, 2, -50), 1000);
        assert_eq!(rc.budget, Some(14_000.0));
        rc.report(&rep(2000, 0, 90), 2000);
        assert!((rc.budget.unwrap() - 15_400.0).abs() < 1e-6);
        // A persistent backlog steps down, at most once a second.
        let mut rc = RateControl::default();
        let steps = (0..30u32)
            .filter(|i| rc.backlogged(10_000 + i * 33))
            .count();
        assert_eq!((steps, rc.level), (1, 1));
        assert!(rc.backlogged(11_100 + 10 * 33) || rc.level == 2);
    }

    #[test]
    fn pack_drops_row_padding() {
        let data: Vec<u8> = (0..24).collect();
        // 2 rows of 2 pixels with a 12-byte stride.
        assert_eq!(pack(&data, 12, 2, 2), [&data[0..8], &data[12..20]].concat());
    }
}
