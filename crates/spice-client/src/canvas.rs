//! Software canvas: the surfaces a SPICE display channel draws into and the
//! raster operations of its draw commands, on 32-bit `0xAARRGGBB` pixels
//! (B, G, R, X/A in memory, as spice-gtk's canvas keeps them).

use std::collections::HashMap;

use spice_proto::consts::{path_flags, ropd};
use spice_proto::types::{Clip, Path, Rect};

use crate::error::ClientError;

/// Largest width or height of a surface we accept from a server.
pub const MAX_SURFACE_SIDE: u32 = 16384;
/// Upper bound on the pixels of all surfaces together (256 MiB of canvas:
/// four 4K heads plus Xspice's off-screen surfaces fit).
pub const MAX_TOTAL_PIXELS: u64 = 1 << 26;

/// A decoded image or a surface: `width × height` pixels, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixmap {
    pub width: u32,
    pub height: u32,
    /// Whether the top byte of each pixel is meaningful alpha.
    pub has_alpha: bool,
    pub data: Vec<u32>,
}

impl Pixmap {
    pub fn new(width: u32, height: u32, fill: u32) -> Self {
        Pixmap {
            width,
            height,
            has_alpha: false,
            data: vec![fill; width as usize * height as usize],
        }
    }

    #[inline]
    pub fn get(&self, x: u32, y: u32) -> u32 {
        self.data[y as usize * self.width as usize + x as usize]
    }

    /// The pixels as packed R, G, B bytes (for PNG/PPM output).
    pub fn to_rgb8(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.data.len() * 3);
        for &p in &self.data {
            v.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
        }
        v
    }

    /// A copy of the pixels in `r` (already inside the pixmap).
    fn crop(&self, r: IRect) -> Pixmap {
        let mut data = Vec::with_capacity(r.w() as usize * r.h() as usize);
        for y in r.y0..r.y1 {
            let o = y as usize * self.width as usize;
            data.extend_from_slice(&self.data[o + r.x0 as usize..o + r.x1 as usize]);
        }
        Pixmap {
            width: r.w() as u32,
            height: r.h() as u32,
            has_alpha: self.has_alpha,
            data,
        }
    }
}

/// Half-open integer rectangle `[x0, x1) × [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IRect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl IRect {
    pub fn from_spice(r: &Rect) -> Self {
        IRect {
            x0: r.left,
            y0: r.top,
            x1: r.right,
            y1: r.bottom,
        }
    }
    pub fn w(&self) -> i32 {
        self.x1 - self.x0
    }
    pub fn h(&self) -> i32 {
        self.y1 - self.y0
    }
    pub fn is_empty(&self) -> bool {
        self.x1 <= self.x0 || self.y1 <= self.y0
    }
    pub fn intersect(&self, o: &IRect) -> IRect {
        IRect {
            x0: self.x0.max(o.x0),
            y0: self.y0.max(o.y0),
            x1: self.x1.min(o.x1),
            y1: self.y1.min(o.y1),
        }
    }
}

/// A 1-bit mask (QMask) already expanded, positioned relative to the bbox.
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub bits: Vec<bool>,
    pub invert: bool,
    /// Mask pixel for bbox-relative (0, 0).
    pub pos_x: i32,
    pub pos_y: i32,
}

impl Mask {
    fn allows(&self, rx: i32, ry: i32) -> bool {
        let mx = rx + self.pos_x;
        let my = ry + self.pos_y;
        let set = mx >= 0
            && my >= 0
            && (mx as u32) < self.width
            && (my as u32) < self.height
            && self.bits[my as usize * self.width as usize + mx as usize];
        set != self.invert
    }
}

/// A fill source: solid colour or a tiled pattern.
pub enum Paint<'a> {
    Solid(u32),
    Pattern { tile: &'a Pixmap, x: i32, y: i32 },
}

impl Paint<'_> {
    #[inline]
    pub fn at(&self, x: i32, y: i32) -> u32 {
        match self {
            Paint::Solid(c) => *c,
            Paint::Pattern { tile, x: px, y: py } => {
                if tile.width == 0 || tile.height == 0 {
                    return 0;
                }
                let tx = (x - px).rem_euclid(tile.width as i32) as u32;
                let ty = (y - py).rem_euclid(tile.height as i32) as u32;
                tile.get(tx, ty)
            }
        }
    }
}

/// Applies a SPICE rop descriptor (`SpiceRopd`) to source `s` and destination `d`.
/// `inv_s`/`inv_d` select which descriptor bits invert which input, since
/// DRAW_OPAQUE feeds the brush in as the source.
#[inline]
pub fn apply_ropd(desc: u16, s: u32, d: u32, inv_s: u16, inv_d: u16) -> u32 {
    let s = if desc & inv_s != 0 { !s } else { s };
    let d0 = d;
    let d = if desc & inv_d != 0 { !d } else { d };
    let r = if desc & ropd::OP_PUT != 0 {
        s
    } else if desc & ropd::OP_OR != 0 {
        s | d
    } else if desc & ropd::OP_AND != 0 {
        s & d
    } else if desc & ropd::OP_XOR != 0 {
        s ^ d
    } else if desc & ropd::OP_BLACKNESS != 0 {
        0
    } else if desc & ropd::OP_WHITENESS != 0 {
        0x00ff_ffff
    } else if desc & ropd::OP_INVERS != 0 {
        !d0
    } else {
        // No operation bit: spice-gtk treats the descriptor as a no-op.
        return d0;
    };
    let r = if desc & ropd::INVERS_RES != 0 { !r } else { r };
    // Keep the destination's top byte: rops act on colour only.
    (r & 0x00ff_ffff) | (d0 & 0xff00_0000)
}

/// Evaluates a ternary raster operation (Windows ROP3 numbering: bit
/// `P<<2 | S<<1 | D` of `rop3` gives the result) on whole pixel words.
#[inline]
pub fn apply_rop3(rop3: u8, p: u32, s: u32, d: u32) -> u32 {
    let mut r = 0u32;
    for i in 0..8u8 {
        if rop3 & (1 << i) != 0 {
            let pp = if i & 4 != 0 { p } else { !p };
            let ss = if i & 2 != 0 { s } else { !s };
            let dd = if i & 1 != 0 { d } else { !d };
            r |= pp & ss & dd;
        }
    }
    (r & 0x00ff_ffff) | (d & 0xff00_0000)
}

#[inline]
fn mul_un8(a: u32, b: u32) -> u32 {
    let t = a * b + 0x80;
    ((t >> 8) + t) >> 8
}

/// pixman's OVER of a (premultiplied) source pixel with a constant alpha.
#[inline]
pub fn blend_over(s: u32, d: u32, alpha: u8, src_has_alpha: bool) -> u32 {
    let m = u32::from(alpha);
    let sa = if src_has_alpha { s >> 24 } else { 0xff };
    let sa_m = mul_un8(sa, m);
    let mut out = 0u32;
    for shift in [0u32, 8, 16] {
        let sc = mul_un8((s >> shift) & 0xff, m);
        let dc = (d >> shift) & 0xff;
        let v = (sc + mul_un8(dc, 255 - sa_m)).min(255);
        out |= v << shift;
    }
    let da = d >> 24;
    let a = (sa_m + mul_un8(da, 255 - sa_m)).min(255);
    out | (a << 24)
}

/// One surface of the display channel.
#[derive(Debug, Clone)]
pub struct Surface {
    /// `surface_fmt` the server created it with.
    pub format: u32,
    pub primary: bool,
    pub pixels: Pixmap,
}

/// All surfaces of one display channel.
#[derive(Default)]
pub struct SurfaceStore {
    surfaces: HashMap<u32, Surface>,
    total_pixels: u64,
}

impl SurfaceStore {
    pub fn create(
        &mut self,
        id: u32,
        width: u32,
        height: u32,
        format: u32,
        primary: bool,
    ) -> Result<(), ClientError> {
        if width == 0 || height == 0 || width > MAX_SURFACE_SIDE || height > MAX_SURFACE_SIDE {
            return Err(ClientError::Server(format!(
                "SURFACE_CREATE {id}: size {width}x{height} is outside 1..={MAX_SURFACE_SIDE}"
            )));
        }
        self.destroy(id);
        let px = u64::from(width) * u64::from(height);
        if self.total_pixels + px > MAX_TOTAL_PIXELS {
            return Err(ClientError::Server(format!(
                "SURFACE_CREATE {id}: {width}x{height} would exceed the {MAX_TOTAL_PIXELS}-pixel canvas budget"
            )));
        }
        self.total_pixels += px;
        let mut pixels = Pixmap::new(width, height, 0);
        pixels.has_alpha = format == spice_proto::consts::surface_fmt::FMT_32_ARGB
            || format == spice_proto::consts::surface_fmt::FMT_8_A;
        self.surfaces.insert(
            id,
            Surface {
                format,
                primary,
                pixels,
            },
        );
        Ok(())
    }

    pub fn destroy(&mut self, id: u32) {
        if let Some(s) = self.surfaces.remove(&id) {
            self.total_pixels -= u64::from(s.pixels.width) * u64::from(s.pixels.height);
        }
    }

    pub fn clear(&mut self) {
        self.surfaces.clear();
        self.total_pixels = 0;
    }

    pub fn get(&self, id: u32) -> Option<&Surface> {
        self.surfaces.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Result<&mut Surface, ClientError> {
        self.surfaces
            .get_mut(&id)
            .ok_or_else(|| ClientError::Server(format!("draw on unknown surface {id}")))
    }

    /// The primary surface (the screen), if one exists.
    pub fn primary(&self) -> Option<&Surface> {
        self.surfaces.values().find(|s| s.primary)
    }

    pub fn primary_id(&self) -> Option<u32> {
        self.surfaces
            .iter()
            .find(|(_, s)| s.primary)
            .map(|(id, _)| *id)
    }
}

/// The rectangles a draw may touch: bbox ∩ clip ∩ surface bounds.
pub fn clip_rects(bbox: &Rect, clip: &Clip, width: u32, height: u32) -> Vec<IRect> {
    let bounds = IRect {
        x0: 0,
        y0: 0,
        x1: width as i32,
        y1: height as i32,
    };
    let b = IRect::from_spice(bbox).intersect(&bounds);
    if b.is_empty() {
        return Vec::new();
    }
    match clip {
        Clip::None => vec![b],
        Clip::Rects(rs) => rs
            .iter()
            .map(|r| IRect::from_spice(r).intersect(&b))
            .filter(|r| !r.is_empty())
            .collect(),
    }
}

/// Calls `f(x, y, old) -> new` for every pixel of `rects` that `mask` lets through.
/// `origin` is the bbox top-left the mask is relative to.
pub fn for_each_pixel(
    dst: &mut Pixmap,
    rects: &[IRect],
    mask: Option<&Mask>,
    origin: (i32, i32),
    mut f: impl FnMut(i32, i32, u32) -> u32,
) {
    let w = dst.width as usize;
    for r in rects {
        for y in r.y0..r.y1 {
            let row = y as usize * w;
            for x in r.x0..r.x1 {
                if let Some(m) = mask {
                    if !m.allows(x - origin.0, y - origin.1) {
                        continue;
                    }
                }
                let p = &mut dst.data[row + x as usize];
                *p = f(x, y, *p);
            }
        }
    }
}

/// Maps destination pixel (x, y) of `dst_rect` to a source pixel of `src_area`
/// in `src`, scaling with nearest neighbour when the sizes differ. `None` when
/// the mapped pixel falls outside the source.
#[derive(Clone, Copy)]
pub struct SrcMap {
    dst: IRect,
    src: IRect,
    scaled: bool,
}

impl SrcMap {
    pub fn new(dst: IRect, src: IRect) -> Self {
        let scaled = dst.w() != src.w() || dst.h() != src.h();
        SrcMap { dst, src, scaled }
    }

    #[inline]
    pub fn get(&self, img: &Pixmap, x: i32, y: i32) -> Option<u32> {
        let (sx, sy) = if self.scaled {
            if self.dst.w() <= 0 || self.dst.h() <= 0 {
                return None;
            }
            let fx = i64::from(x - self.dst.x0) * i64::from(self.src.w()) / i64::from(self.dst.w());
            let fy = i64::from(y - self.dst.y0) * i64::from(self.src.h()) / i64::from(self.dst.h());
            (self.src.x0 as i64 + fx, self.src.y0 as i64 + fy)
        } else {
            (
                i64::from(self.src.x0 + (x - self.dst.x0)),
                i64::from(self.src.y0 + (y - self.dst.y0)),
            )
        };
        if sx < 0 || sy < 0 || sx >= i64::from(img.width) || sy >= i64::from(img.height) {
            return None;
        }
        Some(img.get(sx as u32, sy as u32))
    }
}

/// Copies the pixels of `area` of `src` out (for COPY_BITS and SURFACE images,
/// whose source may be the destination).
pub fn snapshot(src: &Pixmap, area: IRect) -> Pixmap {
    let bounds = IRect {
        x0: 0,
        y0: 0,
        x1: src.width as i32,
        y1: src.height as i32,
    };
    let r = area.intersect(&bounds);
    if r.is_empty() {
        return Pixmap::new(0, 0, 0);
    }
    src.crop(r)
}

/// Draws a thin (zero-width) polyline path with `paint` and rop descriptor `rop`.
/// Points are 28.4 fixed point.
pub fn stroke_path(
    dst: &mut Pixmap,
    rects: &[IRect],
    path: &Path,
    color: u32,
    rop: u16,
) -> Result<(), ClientError> {
    let mut pts: Vec<(i32, i32)> = Vec::new();
    let mut start: Option<(i32, i32)> = None;
    let mut lines: Vec<((i32, i32), (i32, i32))> = Vec::new();
    for seg in &path.segments {
        if seg.flags & path_flags::BEZIER != 0 {
            return Err(ClientError::Unsupported("DRAW_STROKE with Bézier segments"));
        }
        if seg.flags & path_flags::BEGIN != 0 {
            pts.clear();
            start = None;
        }
        for p in &seg.points {
            let q = ((p.x + 8) >> 4, (p.y + 8) >> 4);
            if start.is_none() {
                start = Some(q);
            }
            if let Some(&last) = pts.last() {
                lines.push((last, q));
            }
            pts.push(q);
        }
        if seg.flags & path_flags::CLOSE != 0 {
            if let (Some(s), Some(&last)) = (start, pts.last()) {
                lines.push((last, s));
            }
        }
    }
    if lines.len() > 1 << 20 {
        return Err(ClientError::Server("DRAW_STROKE path too long".into()));
    }
    // Only the part of each line over the surface is stepped through, so a
    // hostile path with far-away points costs no more than the surface size.
    let (sw, sh) = (f64::from(dst.width), f64::from(dst.height));
    let lines: Vec<((i32, i32), (i32, i32))> = lines
        .into_iter()
        .filter_map(|(a, b)| clip_line(a, b, sw, sh))
        .collect();
    let inside = |x: i32, y: i32| {
        rects
            .iter()
            .any(|r| x >= r.x0 && x < r.x1 && y >= r.y0 && y < r.y1)
    };
    let w = dst.width as usize;
    for ((x0, y0), (x1, y1)) in lines {
        // Bresenham; the last point is left out like X's zero-width lines.
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let steps = dx.max(-dy);
        for _ in 0..steps.max(1) {
            if inside(x, y) {
                let p = &mut dst.data[y as usize * w + x as usize];
                *p = apply_ropd(rop, color, *p, ropd::INVERS_BRUSH, ropd::INVERS_DEST);
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
    Ok(())
}

/// Liang–Barsky clipping of a segment to `[-1, w] × [-1, h]` (one pixel of
/// margin so that rounding never drops an edge pixel); `None` when outside.
fn clip_line(a: (i32, i32), b: (i32, i32), w: f64, h: f64) -> Option<((i32, i32), (i32, i32))> {
    let (x0, y0) = (f64::from(a.0), f64::from(a.1));
    let (dx, dy) = (f64::from(b.0) - x0, f64::from(b.1) - y0);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, x0 + 1.0), (dx, w - x0), (-dy, y0 + 1.0), (dy, h - y0)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    if t0 == 0.0 && t1 == 1.0 {
        return Some((a, b));
    }
    let pt = |t: f64| ((x0 + t * dx).round() as i32, (y0 + t * dy).round() as i32);
    Some((pt(t0), pt(t1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_away_stroke_is_clipped_not_stepped() {
        use spice_proto::types::{PathSegment, Point};
        let mut p = Pixmap::new(16, 16, 0);
        let path = Path {
            segments: vec![PathSegment {
                flags: path_flags::BEGIN | path_flags::END,
                points: vec![
                    Point {
                        x: -(1 << 30),
                        y: 8 << 4,
                    },
                    Point {
                        x: 1 << 30,
                        y: 8 << 4,
                    },
                ],
            }],
        };
        let rects = [IRect {
            x0: 0,
            y0: 0,
            x1: 16,
            y1: 16,
        }];
        let t = std::time::Instant::now();
        stroke_path(&mut p, &rects, &path, 0xffffff, ropd::OP_PUT).unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!((0..16).all(|x| p.get(x, 8) == 0xffffff));
        assert!(p.get(3, 7) == 0);
    }

    #[test]
    fn rop3_common_codes() {
        let (p, s, d) = (0x00f0_f0f0, 0x00cc_cccc, 0x00aa_aaaa);
        assert_eq!(apply_rop3(0xcc, p, s, d), s);
        assert_eq!(apply_rop3(0xf0, p, s, d), p);
        assert_eq!(apply_rop3(0xaa, p, s, d), d);
        assert_eq!(apply_rop3(0x66, p, s, d), s ^ d);
        assert_eq!(apply_rop3(0x88, p, s, d), s & d);
        assert_eq!(apply_rop3(0xee, p, s, d), s | d);
        assert_eq!(apply_rop3(0x5a, p, s, d), p ^ d);
        assert_eq!(apply_rop3(0x00, p, s, d), 0);
        assert_eq!(apply_rop3(0xff, p, s, d), 0x00ff_ffff);
        assert_eq!(apply_rop3(0x33, p, s, d), !s & 0x00ff_ffff);
    }

    #[test]
    fn ropd_ops() {
        let (s, d) = (0x0012_3456, 0x0065_4321);
        assert_eq!(
            apply_ropd(ropd::OP_PUT, s, d, ropd::INVERS_SRC, ropd::INVERS_DEST),
            s
        );
        assert_eq!(
            apply_ropd(ropd::OP_XOR, s, d, ropd::INVERS_SRC, ropd::INVERS_DEST),
            s ^ d
        );
        assert_eq!(
            apply_ropd(
                ropd::OP_AND | ropd::INVERS_SRC,
                s,
                d,
                ropd::INVERS_SRC,
                ropd::INVERS_DEST
            ),
            !s & d & 0xffffff
        );
        assert_eq!(
            apply_ropd(ropd::OP_INVERS, s, d, ropd::INVERS_SRC, ropd::INVERS_DEST),
            !d & 0xffffff
        );
        assert_eq!(
            apply_ropd(
                ropd::OP_WHITENESS,
                s,
                d,
                ropd::INVERS_SRC,
                ropd::INVERS_DEST
            ),
            0xffffff
        );
    }

    #[test]
    fn blend_over_matches_pixman_rounding() {
        // Opaque source at full alpha replaces the destination.
        assert_eq!(
            blend_over(0xff10_2030, 0xff40_5060, 255, true) & 0xffffff,
            0x10_2030
        );
        // Half alpha: 0x80 * 0xff/255 + 0x00 -> 0x80 per channel of white over black.
        let r = blend_over(0x00ff_ffff, 0xff00_0000, 128, false);
        assert_eq!(r & 0xffffff, 0x80_8080);
    }

    #[test]
    fn clip_rects_intersects_everything() {
        let bbox = Rect::new(-5, -5, 10, 10);
        let clip = Clip::Rects(vec![Rect::new(2, 2, 20, 4), Rect::new(50, 50, 60, 60)]);
        let r = clip_rects(&bbox, &clip, 8, 8);
        assert_eq!(
            r,
            vec![IRect {
                x0: 2,
                y0: 2,
                x1: 8,
                y1: 4
            }]
        );
    }

    #[test]
    fn nearest_scaling_maps_corners() {
        let mut img = Pixmap::new(2, 2, 0);
        img.data = vec![1, 2, 3, 4];
        let m = SrcMap::new(
            IRect {
                x0: 10,
                y0: 10,
                x1: 14,
                y1: 14,
            },
            IRect {
                x0: 0,
                y0: 0,
                x1: 2,
                y1: 2,
            },
        );
        assert_eq!(m.get(&img, 10, 10), Some(1));
        assert_eq!(m.get(&img, 13, 10), Some(2));
        assert_eq!(m.get(&img, 10, 13), Some(3));
        assert_eq!(m.get(&img, 13, 13), Some(4));
    }
}
