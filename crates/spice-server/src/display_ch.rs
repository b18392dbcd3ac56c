//! The display channel: the primary surface, then damage as DRAW_COPY updates.
//!
//! A client first gets SURFACE_CREATE and one full-screen DRAW_COPY (spicy-screenshot
//! saves on the first draw, so the first frame must be a single message), then MARK.
//! Afterwards damaged rectangles are merged, captured and sent at most `max_fps` times
//! a second; moved areas become COPY_BITS when the client's copy of both areas is
//! current. A client that falls behind the event stream gets a full refresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coop_display::{merge_rects, Rect, SourceEvent};
use spice_codecs::lz::{self, LzImageType};
use spice_codecs::ImageRef;
use spice_proto::consts::{
    bitmap_flags, bitmap_fmt, image_compression, image_scale_mode, ropd, surface_flags, surface_fmt,
};
use spice_proto::display::CopyData;
use spice_proto::link::LinkInfo;
use spice_proto::types::{Bitmap, Clip, DisplayBase, Image, ImageData, Point, QMask};
use spice_proto::{DisplayClientMsg, DisplayServerMsg, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::conn::{Channel, Out};
use crate::{ImageCompression, ServerError, Shared};

/// Largest display-channel message from a client.
const MAX_DISPLAY_MSG: u32 = 64 * 1024;
/// Images with fewer pixels go raw: LZ's header costs more than it saves.
const RAW_BELOW_PIXELS: u64 = 256;
/// Rectangles per update after merging.
const MAX_RECTS: usize = 16;

static IMAGE_ID: AtomicU64 = AtomicU64::new(1);

/// Builds a DRAW_COPY of `w`×`h` BGRX pixels at (`x`, `y`) on the primary surface.
pub(crate) fn draw_copy(x: u32, y: u32, w: u32, h: u32, data: &[u8], lz_on: bool) -> Out {
    let raw_len = w as usize * h as usize * 4;
    let mut img = None;
    if lz_on && u64::from(w) * u64::from(h) >= RAW_BELOW_PIXELS {
        let r = ImageRef {
            width: w,
            height: h,
            stride: w as usize * 4,
            data,
        };
        match lz::encode(&r, LzImageType::Rgb32) {
            Ok(enc) if enc.len() < raw_len => img = Some(ImageData::LzRgb(enc)),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "LZ encoding failed; sending raw"),
        }
    }
    let data = img.unwrap_or_else(|| {
        ImageData::Bitmap(Bitmap {
            format: bitmap_fmt::BIT32,
            flags: bitmap_flags::TOP_DOWN,
            width: w,
            height: h,
            stride: w * 4,
            palette: None,
            data: data[..raw_len.min(data.len())].to_vec(),
        })
    });
    let image = Image {
        id: IMAGE_ID.fetch_add(1, Ordering::Relaxed),
        flags: 0,
        width: w,
        height: h,
        data,
    };
    Out::of(&DisplayServerMsg::DrawCopy {
        base: base(x, y, w, h),
        copy: CopyData {
            src_bitmap: Some(Box::new(image)),
            src_area: spice_proto::types::Rect::new(0, 0, w as i32, h as i32),
            rop_descriptor: ropd::OP_PUT,
            scale_mode: image_scale_mode::NEAREST,
            mask: QMask::default(),
        },
    })
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
    lz_config: bool,
    client_wants_raw: bool,
    width: u32,
    height: u32,
}

impl Display {
    fn lz(&self) -> bool {
        self.lz_config && !self.client_wants_raw
    }

    /// (Re)creates the primary surface and sends the whole screen.
    async fn full(
        &mut self,
        shared: &Shared,
        ch: &Channel,
        recreate: bool,
    ) -> Result<(), ServerError> {
        let frame = shared.source.capture_full().await?;
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
        let lz_on = self.lz();
        let out = tokio::task::spawn_blocking(move || {
            let mut data = frame.data;
            if frame.stride != frame.width as usize * 4 {
                data = pack(&data, frame.stride, frame.width, frame.height);
            }
            draw_copy(0, 0, frame.width, frame.height, &data, lz_on)
        })
        .await
        .map_err(|_| ServerError::Protocol("image encoder task failed".into()))?;
        ch.send(out).await
    }

    /// Sends the dirty areas; `Ok(false)` when the screen changed size meanwhile.
    async fn update(
        &self,
        shared: &Shared,
        ch: &Channel,
        dirty: &[Rect],
    ) -> Result<bool, ServerError> {
        let bounds = Rect::new(0, 0, self.width, self.height);
        for r in merge_rects(dirty, bounds, MAX_RECTS) {
            let data = match shared.source.capture(r).await {
                Ok(d) => d,
                Err(coop_display::DisplayError::OutOfBounds { .. }) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            if data.len() < r.w as usize * r.h as usize * 4 {
                return Ok(false);
            }
            let lz_on = self.lz();
            let out =
                tokio::task::spawn_blocking(move || draw_copy(r.x, r.y, r.w, r.h, &data, lz_on))
                    .await
                    .map_err(|_| ServerError::Protocol("image encoder task failed".into()))?;
            ch.send(out).await?;
        }
        Ok(true)
    }
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
    s: S,
    info: &LinkInfo,
    early: Vec<u8>,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let counters = Arc::new(vec![shared.total.clone(), shared.display.clone()]);
    let mut ch = Channel::start(s, info, early, MAX_DISPLAY_MSG, counters, "display");
    let r = serve_display(shared, &mut ch).await;
    ch.close().await;
    r
}

async fn serve_display(shared: &Arc<Shared>, ch: &mut Channel) -> Result<(), ServerError> {
    // Subscribe before the first capture so no damage after it is missed.
    let mut events = shared.source.subscribe();
    ch.set_ack().await?;
    let mut d = Display {
        lz_config: shared.config.image_compression == ImageCompression::Lz,
        client_wants_raw: false,
        width: 0,
        height: 0,
    };
    d.full(shared, ch, false).await?;
    ch.send_msg(&DisplayServerMsg::Mark).await?;

    let interval = Duration::from_secs(1) / shared.config.max_fps.max(1);
    let mut last = Instant::now();
    let mut dirty: Vec<Rect> = Vec::new();
    let mut full = false;
    loop {
        let pending = full || !dirty.is_empty();
        let due = last + interval;
        tokio::select! {
            m = ch.rx.recv() => {
                let Some(m) = m else { return Ok(()) };
                match DisplayClientMsg::decode(m.msg_type, &m.body) {
                    Ok(DisplayClientMsg::PreferredCompression(c)) => {
                        d.client_wants_raw = c == image_compression::OFF;
                    }
                    Ok(DisplayClientMsg::Init { .. }) | Ok(_) => {}
                    Err(e) => {
                        return Err(ServerError::Protocol(format!(
                            "display message type {}: {e}",
                            m.msg_type
                        )))
                    }
                }
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
                    let clean = !full
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
    fn lz_draw_copy_round_trips() {
        let (w, h) = (64, 40);
        let px = pixels(w, h);
        let (base, img) = decode_copy(&draw_copy(10, 20, w, h, &px, true));
        assert_eq!(base.bbox, spice_proto::types::Rect::new(10, 20, 74, 60));
        let ImageData::LzRgb(lz) = img.data else {
            panic!("expected LZ, got type {}", img.data.image_type())
        };
        let bm = lz::decode(&lz, None).expect("LZ decodes");
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
    fn tiny_or_uncompressed_images_go_raw() {
        let px = pixels(8, 8);
        for lz_on in [true, false] {
            let (_, img) = decode_copy(&draw_copy(0, 0, 8, 8, &px, lz_on));
            let ImageData::Bitmap(b) = img.data else {
                panic!("expected a raw bitmap")
            };
            assert_eq!(b.format, bitmap_fmt::BIT32);
            assert_ne!(b.flags & bitmap_flags::TOP_DOWN, 0);
            assert_eq!((b.width, b.height, b.stride), (8, 8, 32));
            assert_eq!(b.data, px);
        }
        let big = pixels(100, 100);
        let (_, img) = decode_copy(&draw_copy(0, 0, 100, 100, &big, false));
        assert!(matches!(img.data, ImageData::Bitmap(_)));
    }

    #[test]
    fn pack_drops_row_padding() {
        let data: Vec<u8> = (0..24).collect();
        // 2 rows of 2 pixels with a 12-byte stride.
        assert_eq!(pack(&data, 12, 2, 2), [&data[0..8], &data[12..20]].concat());
    }
}
