//! The display channel's state machine: applies decoded display messages to
//! the surfaces (draw commands, caches, M-JPEG streams).

use std::collections::HashMap;

use spice_codecs::jpeg;
use spice_proto::common::Message;
use spice_proto::consts::{
    alpha_flags, ropd, stream_flags, string_flags, surface_flags, video_codec,
};
use spice_proto::display::{Head, StreamCreate};
use spice_proto::types::{Brush, DisplayBase, Image, QMask, Rect};
use spice_proto::DisplayServerMsg;

use crate::canvas::{
    apply_rop3, apply_ropd, blend_over, clip_rects, for_each_pixel, snapshot, stroke_path, IRect,
    Mask, Paint, Pixmap, SrcMap, SurfaceStore,
};
use crate::error::ClientError;
use crate::image::{decode_mask, ImageCaches};

/// A draw's destination: pixels, the rectangles it may touch, the bbox origin.
type Target<'a> = (&'a mut Pixmap, Vec<IRect>, (i32, i32));

/// Most streams a server may have open (spice's limit).
const MAX_STREAMS: usize = spice_proto::consts::MAX_NUM_STREAMS as usize;

/// Everything a display channel draws into.
pub struct DisplayState {
    pub surfaces: SurfaceStore,
    pub images: ImageCaches,
    streams: HashMap<u32, StreamCreate>,
    pub monitors: Vec<Head>,
    /// Whether MARK arrived (the server finished the initial screen set-up).
    pub mark: bool,
    /// When MARK arrived.
    pub mark_at: Option<std::time::Instant>,
    /// Draw commands applied so far.
    pub draws: u64,
    /// When the first draw command was applied (the first picture).
    pub first_draw_at: Option<std::time::Instant>,
    /// Stream frames drawn so far.
    pub stream_frames: u64,
    /// Messages applied, by message type.
    pub msg_counts: HashMap<u16, u64>,
}

impl DisplayState {
    pub fn new(images: ImageCaches) -> Self {
        DisplayState {
            surfaces: SurfaceStore::default(),
            images,
            streams: HashMap::new(),
            monitors: Vec::new(),
            mark: false,
            mark_at: None,
            draws: 0,
            first_draw_at: None,
            stream_frames: 0,
            msg_counts: HashMap::new(),
        }
    }

    /// A copy of the primary surface.
    pub fn primary(&self) -> Option<Pixmap> {
        self.surfaces.primary().map(|s| {
            let mut p = s.pixels.clone();
            p.has_alpha = false;
            p
        })
    }

    /// Applies one server message. Base messages are handled by the channel.
    pub fn apply(&mut self, msg: DisplayServerMsg) -> Result<(), ClientError> {
        use DisplayServerMsg as M;
        *self.msg_counts.entry(msg.msg_type()).or_insert(0) += 1;
        match msg {
            M::Base(_) | M::Mode { .. } | M::StreamActivateReport { .. } | M::GlDraw { .. } => {}
            M::Mark => {
                self.mark = true;
                self.mark_at.get_or_insert_with(std::time::Instant::now);
            }
            M::Reset => {
                self.images.inval_all_palettes();
                self.streams.clear();
            }
            M::SurfaceCreate {
                surface_id,
                width,
                height,
                format,
                flags,
            } => self.surfaces.create(
                surface_id,
                width,
                height,
                format,
                flags & surface_flags::PRIMARY != 0,
            )?,
            M::SurfaceDestroy { surface_id } => self.surfaces.destroy(surface_id),
            M::MonitorsConfig { heads, .. } => self.monitors = heads,
            M::InvalList(l) => {
                for r in l {
                    self.images.inval_pixmap(r.id);
                }
            }
            M::InvalAllPixmaps(_) => self.images.inval_all_pixmaps(),
            M::InvalPalette { id } => self.images.inval_palette(id),
            M::InvalAllPalettes => self.images.inval_all_palettes(),
            M::StreamCreate(s) => {
                if s.codec_type != video_codec::MJPEG {
                    return Err(ClientError::Unsupported("video streams other than M-JPEG"));
                }
                if self.streams.len() >= MAX_STREAMS && !self.streams.contains_key(&s.id) {
                    return Err(ClientError::Server(format!(
                        "more than {MAX_STREAMS} streams open"
                    )));
                }
                self.streams.insert(s.id, s);
            }
            M::StreamClip { id, clip } => {
                let s = self.stream(id)?;
                s.clip = clip;
            }
            M::StreamDestroy { id } => {
                self.streams.remove(&id);
            }
            M::StreamDestroyAll => self.streams.clear(),
            M::StreamData { id, data, .. } => {
                let s = self.stream(id)?.clone();
                self.stream_frame(&s, s.dest, &data)?;
            }
            M::StreamDataSized { id, dest, data, .. } => {
                let s = self.stream(id)?.clone();
                self.stream_frame(&s, dest, &data)?;
            }
            M::CopyBits { base, src_pos } => {
                self.draws += 1;
                let surf = self.surfaces.get_mut(base.surface_id)?;
                let rects = clip_rects(
                    &base.bbox,
                    &base.clip,
                    surf.pixels.width,
                    surf.pixels.height,
                );
                let b = IRect::from_spice(&base.bbox);
                let src_area = IRect {
                    x0: src_pos.x,
                    y0: src_pos.y,
                    x1: src_pos.x + b.w(),
                    y1: src_pos.y + b.h(),
                };
                let bounds = IRect {
                    x0: 0,
                    y0: 0,
                    x1: surf.pixels.width as i32,
                    y1: surf.pixels.height as i32,
                };
                let sr = src_area.intersect(&bounds);
                let src = snapshot(&surf.pixels, src_area);
                for_each_pixel(&mut surf.pixels, &rects, None, (0, 0), |x, y, d| {
                    let sx = src_pos.x + (x - b.x0);
                    let sy = src_pos.y + (y - b.y0);
                    if sx >= sr.x0 && sx < sr.x1 && sy >= sr.y0 && sy < sr.y1 {
                        src.get((sx - sr.x0) as u32, (sy - sr.y0) as u32)
                    } else {
                        d
                    }
                });
            }
            M::DrawFill {
                base,
                brush,
                rop_descriptor,
                mask,
            } => {
                self.draws += 1;
                let mask = decode_mask(&mut self.images, &self.surfaces, &mask)?;
                let tile = self.brush_tile(&brush)?;
                let paint = paint_of(&brush, tile.as_ref());
                let (surf, rects, origin) = self.target(&base)?;
                for_each_pixel(
                    surf,
                    &rects,
                    mask.as_ref(),
                    origin,
                    |x, y, d| match &paint {
                        Some(p) => apply_ropd(
                            rop_descriptor,
                            p.at(x, y),
                            d,
                            ropd::INVERS_BRUSH,
                            ropd::INVERS_DEST,
                        ),
                        None => {
                            apply_ropd(rop_descriptor, 0, d, ropd::INVERS_BRUSH, ropd::INVERS_DEST)
                        }
                    },
                );
            }
            M::DrawCopy { base, copy } | M::DrawBlend { base, copy } => {
                self.draws += 1;
                let img = self.source(&copy.src_bitmap)?;
                let mask = decode_mask(&mut self.images, &self.surfaces, &copy.mask)?;
                let map = SrcMap::new(
                    IRect::from_spice(&base.bbox),
                    IRect::from_spice(&copy.src_area),
                );
                let desc = copy.rop_descriptor;
                let (surf, rects, origin) = self.target(&base)?;
                for_each_pixel(surf, &rects, mask.as_ref(), origin, |x, y, d| {
                    match map.get(&img, x, y) {
                        Some(s) if desc == ropd::OP_PUT => s,
                        Some(s) => apply_ropd(desc, s, d, ropd::INVERS_SRC, ropd::INVERS_DEST),
                        None => d,
                    }
                });
            }
            M::DrawOpaque {
                base,
                src_bitmap,
                src_area,
                brush,
                rop_descriptor,
                mask,
                ..
            } => {
                self.draws += 1;
                let img = self.source(&src_bitmap)?;
                let mask = decode_mask(&mut self.images, &self.surfaces, &mask)?;
                let tile = self.brush_tile(&brush)?;
                let paint = paint_of(&brush, tile.as_ref());
                let map = SrcMap::new(IRect::from_spice(&base.bbox), IRect::from_spice(&src_area));
                let (surf, rects, origin) = self.target(&base)?;
                // spice's canvas: the image is put, then the brush is combined
                // with it using the rop, the brush taking the source role.
                for_each_pixel(surf, &rects, mask.as_ref(), origin, |x, y, d| {
                    let s = map.get(&img, x, y).unwrap_or(d);
                    match &paint {
                        Some(p) => apply_ropd(
                            rop_descriptor,
                            p.at(x, y),
                            s,
                            ropd::INVERS_BRUSH,
                            ropd::INVERS_SRC,
                        ),
                        None => s,
                    }
                });
            }
            M::DrawBlackness { base, mask } => self.fill_const(&base, &mask, Some(0))?,
            M::DrawWhiteness { base, mask } => self.fill_const(&base, &mask, Some(0x00ff_ffff))?,
            M::DrawInvers { base, mask } => self.fill_const(&base, &mask, None)?,
            M::DrawRop3 {
                base,
                src_bitmap,
                src_area,
                brush,
                rop3,
                mask,
                ..
            } => {
                self.draws += 1;
                let img = self.source(&src_bitmap)?;
                let mask = decode_mask(&mut self.images, &self.surfaces, &mask)?;
                let tile = self.brush_tile(&brush)?;
                let paint = paint_of(&brush, tile.as_ref());
                let map = SrcMap::new(IRect::from_spice(&base.bbox), IRect::from_spice(&src_area));
                let (surf, rects, origin) = self.target(&base)?;
                for_each_pixel(surf, &rects, mask.as_ref(), origin, |x, y, d| {
                    let s = map.get(&img, x, y).unwrap_or(0);
                    let p = paint.as_ref().map_or(0, |p| p.at(x, y));
                    apply_rop3(rop3, p, s, d)
                });
            }
            M::DrawTransparent {
                base,
                src_bitmap,
                src_area,
                src_color,
                ..
            } => {
                self.draws += 1;
                let img = self.source(&src_bitmap)?;
                let map = SrcMap::new(IRect::from_spice(&base.bbox), IRect::from_spice(&src_area));
                let key = src_color & 0x00ff_ffff;
                let (surf, rects, origin) = self.target(&base)?;
                for_each_pixel(surf, &rects, None, origin, |x, y, d| {
                    match map.get(&img, x, y) {
                        Some(s) if s & 0x00ff_ffff != key => s,
                        _ => d,
                    }
                });
            }
            M::DrawAlphaBlend {
                base,
                alpha_flags: flags,
                alpha,
                src_bitmap,
                src_area,
            } => {
                self.draws += 1;
                let img = self.source(&src_bitmap)?;
                let map = SrcMap::new(IRect::from_spice(&base.bbox), IRect::from_spice(&src_area));
                let src_alpha = flags & alpha_flags::SRC_SURFACE_HAS_ALPHA != 0;
                let (surf, rects, origin) = self.target(&base)?;
                for_each_pixel(surf, &rects, None, origin, |x, y, d| {
                    match map.get(&img, x, y) {
                        Some(s) => blend_over(s, d, alpha, src_alpha),
                        None => d,
                    }
                });
            }
            M::DrawStroke {
                base,
                path,
                brush,
                fore_mode,
                ..
            } => {
                self.draws += 1;
                let color = match brush {
                    Brush::Solid(c) => c,
                    Brush::None => return Ok(()),
                    Brush::Pattern { .. } => {
                        return Err(ClientError::Unsupported("DRAW_STROKE with a pattern brush"))
                    }
                };
                let (surf, rects, _) = self.target(&base)?;
                stroke_path(surf, &rects, &path, color, fore_mode)?;
            }
            M::DrawText {
                base,
                text,
                back_area,
                fore_brush,
                back_brush,
                fore_mode,
                back_mode,
            } => {
                self.draws += 1;
                if text.flags & string_flags::RASTER_A1 == 0 && !text.glyphs.is_empty() {
                    return Err(ClientError::Unsupported(
                        "DRAW_TEXT with anti-aliased glyphs",
                    ));
                }
                let back_tile = self.brush_tile(&back_brush)?;
                let back = paint_of(&back_brush, back_tile.as_ref());
                let fore_tile = self.brush_tile(&fore_brush)?;
                let fore = paint_of(&fore_brush, fore_tile.as_ref());
                let (surf, rects, _) = self.target(&base)?;
                if let (Some(bp), true) = (&back, back_mode != 0) {
                    let brects: Vec<IRect> = rects
                        .iter()
                        .map(|r| r.intersect(&IRect::from_spice(&back_area)))
                        .filter(|r| !r.is_empty())
                        .collect();
                    for_each_pixel(surf, &brects, None, (0, 0), |x, y, d| {
                        apply_ropd(
                            back_mode,
                            bp.at(x, y),
                            d,
                            ropd::INVERS_BRUSH,
                            ropd::INVERS_DEST,
                        )
                    });
                }
                if let Some(fp) = &fore {
                    let w = surf.width as usize;
                    for g in &text.glyphs {
                        let gx = g.render_pos.x + g.glyph_origin.x;
                        let gy = g.render_pos.y + g.glyph_origin.y;
                        let stride = usize::from(g.width).div_ceil(8);
                        for row in 0..i32::from(g.height) {
                            for col in 0..i32::from(g.width) {
                                let byte = g.data[row as usize * stride + col as usize / 8];
                                if byte & (0x80 >> (col % 8)) == 0 {
                                    continue;
                                }
                                let (x, y) = (gx + col, gy + row);
                                if rects
                                    .iter()
                                    .any(|r| x >= r.x0 && x < r.x1 && y >= r.y0 && y < r.y1)
                                {
                                    let p = &mut surf.data[y as usize * w + x as usize];
                                    *p = apply_ropd(
                                        fore_mode,
                                        fp.at(x, y),
                                        *p,
                                        ropd::INVERS_BRUSH,
                                        ropd::INVERS_DEST,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The rectangle a draw command touches, for telling repeated small
    /// updates (a blinking cursor) from real changes.
    pub fn draw_bbox(msg: &DisplayServerMsg) -> Option<Rect> {
        use DisplayServerMsg as M;
        match msg {
            M::CopyBits { base, .. }
            | M::DrawFill { base, .. }
            | M::DrawOpaque { base, .. }
            | M::DrawCopy { base, .. }
            | M::DrawBlend { base, .. }
            | M::DrawBlackness { base, .. }
            | M::DrawWhiteness { base, .. }
            | M::DrawInvers { base, .. }
            | M::DrawRop3 { base, .. }
            | M::DrawStroke { base, .. }
            | M::DrawText { base, .. }
            | M::DrawTransparent { base, .. }
            | M::DrawAlphaBlend { base, .. } => Some(base.bbox),
            _ => None,
        }
    }

    fn stream(&mut self, id: u32) -> Result<&mut StreamCreate, ClientError> {
        self.streams
            .get_mut(&id)
            .ok_or_else(|| ClientError::Server(format!("data for unknown stream {id}")))
    }

    fn stream_frame(
        &mut self,
        s: &StreamCreate,
        dest: Rect,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let b = jpeg::decode_mjpeg(data).map_err(|source| ClientError::Image {
            id: u64::from(s.id),
            kind: "M-JPEG frame",
            source,
        })?;
        let mut frame = Pixmap {
            width: b.width,
            height: b.height,
            has_alpha: false,
            data: b
                .data
                .chunks_exact(4)
                .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
                .collect(),
        };
        if s.flags & stream_flags::TOP_DOWN == 0 {
            let w = frame.width as usize;
            let rows: Vec<Vec<u32>> = frame
                .data
                .chunks(w.max(1))
                .rev()
                .map(<[u32]>::to_vec)
                .collect();
            frame.data = rows.concat();
        }
        self.stream_frames += 1;
        let surf = self.surfaces.get_mut(s.surface_id)?;
        let rects = clip_rects(&dest, &s.clip, surf.pixels.width, surf.pixels.height);
        let map = SrcMap::new(
            IRect::from_spice(&dest),
            IRect {
                x0: 0,
                y0: 0,
                x1: frame.width as i32,
                y1: frame.height as i32,
            },
        );
        for_each_pixel(&mut surf.pixels, &rects, None, (0, 0), |x, y, d| {
            map.get(&frame, x, y).unwrap_or(d)
        });
        Ok(())
    }

    fn source(&mut self, img: &Option<Box<Image>>) -> Result<std::sync::Arc<Pixmap>, ClientError> {
        let img = img
            .as_ref()
            .ok_or_else(|| ClientError::Server("draw command without a source image".into()))?;
        self.images.decode(img, &self.surfaces)
    }

    fn brush_tile(&mut self, b: &Brush) -> Result<Option<std::sync::Arc<Pixmap>>, ClientError> {
        match b {
            Brush::Pattern { image, .. } => Ok(Some(self.images.decode(image, &self.surfaces)?)),
            _ => Ok(None),
        }
    }

    fn target(&mut self, base: &DisplayBase) -> Result<Target<'_>, ClientError> {
        let surf = self.surfaces.get_mut(base.surface_id)?;
        let rects = clip_rects(
            &base.bbox,
            &base.clip,
            surf.pixels.width,
            surf.pixels.height,
        );
        Ok((&mut surf.pixels, rects, (base.bbox.left, base.bbox.top)))
    }

    fn fill_const(
        &mut self,
        base: &DisplayBase,
        mask: &QMask,
        v: Option<u32>,
    ) -> Result<(), ClientError> {
        self.draws += 1;
        let mask: Option<Mask> = decode_mask(&mut self.images, &self.surfaces, mask)?;
        let (surf, rects, origin) = self.target(base)?;
        for_each_pixel(surf, &rects, mask.as_ref(), origin, |_, _, d| match v {
            Some(c) => c | (d & 0xff00_0000),
            None => (!d & 0x00ff_ffff) | (d & 0xff00_0000),
        });
        Ok(())
    }
}

fn paint_of<'a>(b: &Brush, tile: Option<&'a std::sync::Arc<Pixmap>>) -> Option<Paint<'a>> {
    match (b, tile) {
        (Brush::Solid(c), _) => Some(Paint::Solid(*c)),
        (Brush::Pattern { pos, .. }, Some(t)) => Some(Paint::Pattern {
            tile: t,
            x: pos.x,
            y: pos.y,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spice_codecs::glz::SharedWindow;
    use spice_proto::consts::{bitmap_flags, bitmap_fmt, surface_fmt};
    use spice_proto::display::CopyData;
    use spice_proto::types::{Bitmap, Clip, ImageData, Point};

    fn state() -> DisplayState {
        let mut s = DisplayState::new(ImageCaches::new(1 << 20, SharedWindow::new(1 << 20)));
        s.apply(DisplayServerMsg::SurfaceCreate {
            surface_id: 0,
            width: 8,
            height: 8,
            format: surface_fmt::FMT_32_XRGB,
            flags: surface_flags::PRIMARY,
        })
        .unwrap();
        s
    }

    fn base(l: i32, t: i32, r: i32, b: i32) -> DisplayBase {
        DisplayBase {
            surface_id: 0,
            bbox: Rect::new(l, t, r, b),
            clip: Clip::None,
        }
    }

    fn img32(w: u32, h: u32, px: &[u32]) -> Box<Image> {
        Box::new(Image {
            id: 1,
            flags: 0,
            width: w,
            height: h,
            data: ImageData::Bitmap(Bitmap {
                format: bitmap_fmt::BIT32,
                flags: bitmap_flags::TOP_DOWN,
                width: w,
                height: h,
                stride: w * 4,
                palette: None,
                data: px.iter().flat_map(|p| p.to_le_bytes()).collect(),
            }),
        })
    }

    #[test]
    fn fill_copy_and_copy_bits() {
        let mut s = state();
        s.apply(DisplayServerMsg::DrawFill {
            base: base(0, 0, 4, 4),
            brush: Brush::Solid(0x112233),
            rop_descriptor: ropd::OP_PUT,
            mask: QMask::default(),
        })
        .unwrap();
        let p = s.primary().unwrap();
        assert_eq!(p.get(3, 3), 0x112233);
        assert_eq!(p.get(4, 4), 0);
        s.apply(DisplayServerMsg::DrawCopy {
            base: base(6, 6, 8, 8),
            copy: CopyData {
                src_bitmap: Some(img32(2, 2, &[1, 2, 3, 4])),
                src_area: Rect::new(0, 0, 2, 2),
                rop_descriptor: ropd::OP_PUT,
                scale_mode: 1,
                mask: QMask::default(),
            },
        })
        .unwrap();
        let p = s.primary().unwrap();
        assert_eq!(
            [p.get(6, 6), p.get(7, 6), p.get(6, 7), p.get(7, 7)],
            [1, 2, 3, 4]
        );
        s.apply(DisplayServerMsg::CopyBits {
            base: base(0, 6, 2, 8),
            src_pos: Point { x: 6, y: 6 },
        })
        .unwrap();
        let p = s.primary().unwrap();
        assert_eq!(
            [p.get(0, 6), p.get(1, 6), p.get(0, 7), p.get(1, 7)],
            [1, 2, 3, 4]
        );
        // Overlapping copy within the same surface reads the old pixels.
        s.apply(DisplayServerMsg::CopyBits {
            base: base(1, 0, 5, 1),
            src_pos: Point { x: 0, y: 0 },
        })
        .unwrap();
        let p = s.primary().unwrap();
        assert_eq!(p.get(4, 0), 0x112233);
    }

    #[test]
    fn transparent_alpha_rop3_opaque_whiteness() {
        let mut s = state();
        let key = 0x00ff00;
        s.apply(DisplayServerMsg::DrawTransparent {
            base: base(0, 0, 2, 1),
            src_bitmap: Some(img32(2, 1, &[key, 0x123456])),
            src_area: Rect::new(0, 0, 2, 1),
            src_color: key,
            true_color: key,
        })
        .unwrap();
        let p = s.primary().unwrap();
        assert_eq!((p.get(0, 0), p.get(1, 0)), (0, 0x123456));
        // Half-transparent white over black.
        s.apply(DisplayServerMsg::DrawAlphaBlend {
            base: base(0, 1, 1, 2),
            alpha_flags: 0,
            alpha: 128,
            src_bitmap: Some(img32(1, 1, &[0xffffff])),
            src_area: Rect::new(0, 0, 1, 1),
        })
        .unwrap();
        assert_eq!(s.primary().unwrap().get(0, 1) & 0xffffff, 0x808080);
        // ROP3 0x5A (pattern XOR destination) with a solid brush.
        s.apply(DisplayServerMsg::DrawRop3 {
            base: base(1, 0, 2, 1),
            src_bitmap: Some(img32(1, 1, &[0])),
            src_area: Rect::new(0, 0, 1, 1),
            brush: Brush::Solid(0x0000ff),
            rop3: 0x5a,
            scale_mode: 1,
            mask: QMask::default(),
        })
        .unwrap();
        assert_eq!(
            s.primary().unwrap().get(1, 0) & 0xffffff,
            0x0000ff ^ 0x123456
        );
        // OPAQUE: the image, then the brush ORed onto it.
        s.apply(DisplayServerMsg::DrawOpaque {
            base: base(2, 0, 3, 1),
            src_bitmap: Some(img32(1, 1, &[0x100000])),
            src_area: Rect::new(0, 0, 1, 1),
            brush: Brush::Solid(0x000001),
            rop_descriptor: ropd::OP_OR,
            scale_mode: 1,
            mask: QMask::default(),
        })
        .unwrap();
        assert_eq!(s.primary().unwrap().get(2, 0) & 0xffffff, 0x100001);
        s.apply(DisplayServerMsg::DrawWhiteness {
            base: base(7, 7, 8, 8),
            mask: QMask::default(),
        })
        .unwrap();
        assert_eq!(s.primary().unwrap().get(7, 7) & 0xffffff, 0xffffff);
    }

    #[test]
    fn stroke_and_text() {
        use spice_proto::consts::path_flags;
        use spice_proto::types::{GlyphString, LineAttr, Path, PathSegment, RasterGlyph};
        let mut s = state();
        s.apply(DisplayServerMsg::DrawStroke {
            base: base(0, 0, 8, 8),
            path: Path {
                segments: vec![PathSegment {
                    flags: path_flags::BEGIN | path_flags::END,
                    points: vec![
                        Point { x: 0, y: 2 << 4 },
                        Point {
                            x: 6 << 4,
                            y: 2 << 4,
                        },
                    ],
                }],
            },
            attr: LineAttr::default(),
            brush: Brush::Solid(0xff0000),
            fore_mode: ropd::OP_PUT,
            back_mode: 0,
        })
        .unwrap();
        let p = s.primary().unwrap();
        assert!((0..6).all(|x| p.get(x, 2) == 0xff0000));
        assert_eq!(p.get(6, 2), 0, "the last point is not drawn");
        // A 2x2 one-bit glyph: top-left and bottom-right pixels set.
        s.apply(DisplayServerMsg::DrawText {
            base: base(0, 0, 8, 8),
            text: GlyphString {
                flags: spice_proto::consts::string_flags::RASTER_A1,
                glyphs: vec![RasterGlyph {
                    render_pos: Point { x: 4, y: 5 },
                    glyph_origin: Point { x: 0, y: -1 },
                    width: 2,
                    height: 2,
                    data: vec![0x80, 0x40],
                }],
            },
            back_area: Rect::new(0, 0, 0, 0),
            fore_brush: Brush::Solid(0x00ff00),
            back_brush: Brush::None,
            fore_mode: ropd::OP_PUT,
            back_mode: 0,
        })
        .unwrap();
        let p = s.primary().unwrap();
        assert_eq!(
            [p.get(4, 4), p.get(5, 4), p.get(4, 5), p.get(5, 5)],
            [0x00ff00, 0, 0, 0x00ff00]
        );
    }

    #[test]
    fn clipped_invers_and_unknown_surface() {
        let mut s = state();
        s.apply(DisplayServerMsg::DrawInvers {
            base: DisplayBase {
                surface_id: 0,
                bbox: Rect::new(0, 0, 8, 8),
                clip: Clip::Rects(vec![Rect::new(1, 1, 2, 2)]),
            },
            mask: QMask::default(),
        })
        .unwrap();
        let p = s.primary().unwrap();
        assert_eq!(p.get(1, 1), 0xffffff);
        assert_eq!(p.get(0, 0), 0);
        let e = s
            .apply(DisplayServerMsg::DrawBlackness {
                base: DisplayBase {
                    surface_id: 9,
                    ..base(0, 0, 1, 1)
                },
                mask: QMask::default(),
            })
            .unwrap_err();
        assert!(e.to_string().contains("unknown surface 9"), "{e}");
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use spice_codecs::glz::SharedWindow;
    use spice_proto::common::Message;
    use spice_proto::consts::{surface_flags, surface_fmt};

    /// Random bodies for every display message type: decoding and applying
    /// them must end in `Ok` or `Err`, never a panic or a huge allocation.
    #[test]
    fn random_messages_never_panic() {
        let mut st = DisplayState::new(ImageCaches::new(1 << 16, SharedWindow::new(1 << 16)));
        st.apply(DisplayServerMsg::SurfaceCreate {
            surface_id: 0,
            width: 64,
            height: 64,
            format: surface_fmt::FMT_32_XRGB,
            flags: surface_flags::PRIMARY,
        })
        .unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let types: Vec<u16> = (101..=126).chain(302..=322).collect();
        let mut decoded = 0;
        for i in 0..40_000 {
            let t = types[i % types.len()];
            let len = (next() % 160) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Small values make valid-looking counts, offsets and surface ids.
            for b in body.iter_mut() {
                if next() % 3 != 0 {
                    *b &= 0x07;
                }
            }
            if let Ok(m) = DisplayServerMsg::decode(t, &body) {
                decoded += 1;
                let _ = st.apply(m);
            }
        }
        assert!(decoded > 100, "only {decoded} random messages decoded");
    }
}
