//! Structures shared by display and cursor messages (spice.proto `Rect`,
//! `Clip`, `Image`, `Brush`, `QMask`, `Path`, `String`, …).
//!
//! Pointed-to parts (images, palettes, paths, glyphs) are u32 offsets from the
//! message body start; decoders take a [`Reader`] over the whole body and
//! encoders a [`BodyBuilder`] so those offsets are resolved in one place.

use crate::consts::{bitmap_flags, brush_type, clip_type, image_type, line_flags, string_flags};
use crate::error::{ProtoError, Result};
use crate::wire::{BodyBuilder, Reader};

/// `Point`: two i32 (also used for fixed 28.4 `PointFix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

impl Point {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Point {
            x: r.i32("point x")?,
            y: r.i32("point y")?,
        })
    }
    pub(crate) fn write(&self, b: &mut BodyBuilder<'_>) {
        b.i32(self.x);
        b.i32(self.y);
    }
}

/// `Point16`: two i16, used by the cursor channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Point16 {
    pub x: i16,
    pub y: i16,
}

impl Point16 {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Point16 {
            x: r.i16("point16 x")?,
            y: r.i16("point16 y")?,
        })
    }
    pub(crate) fn write(&self, b: &mut BodyBuilder<'_>) {
        b.i16(self.x);
        b.i16(self.y);
    }
}

/// `Rect`; note the wire order top, left, bottom, right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub top: i32,
    pub left: i32,
    pub bottom: i32,
    pub right: i32,
}

impl Rect {
    pub const WIRE_SIZE: usize = 16;
    pub fn new(left: i32, top: i32, right: i32, bottom: i32) -> Self {
        Rect {
            top,
            left,
            bottom,
            right,
        }
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Rect {
            top: r.i32("rect top")?,
            left: r.i32("rect left")?,
            bottom: r.i32("rect bottom")?,
            right: r.i32("rect right")?,
        })
    }
    pub(crate) fn write(&self, b: &mut BodyBuilder<'_>) {
        b.i32(self.top);
        b.i32(self.left);
        b.i32(self.bottom);
        b.i32(self.right);
    }
}

/// `Clip`: nothing, or a rectangle list stored inline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Clip {
    #[default]
    None,
    Rects(Vec<Rect>),
}

impl Clip {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        match r.u8("clip type")? {
            clip_type::NONE => Ok(Clip::None),
            clip_type::RECTS => {
                let n = r.u32("clip num_rects")?;
                Ok(Clip::Rects(r.array(
                    n.into(),
                    Rect::WIRE_SIZE,
                    "clip rects",
                    Rect::read,
                )?))
            }
            v => Err(ProtoError::BadValue {
                what: "clip type",
                value: v.into(),
            }),
        }
    }
    pub(crate) fn write(&self, b: &mut BodyBuilder<'_>) {
        match self {
            Clip::None => b.u8(clip_type::NONE),
            Clip::Rects(rs) => {
                b.u8(clip_type::RECTS);
                b.u32(rs.len() as u32);
                for r in rs {
                    r.write(b);
                }
            }
        }
    }
}

/// `DisplayBase`: the target surface, bounding box and clip of a draw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisplayBase {
    pub surface_id: u32,
    pub bbox: Rect,
    pub clip: Clip,
}

impl DisplayBase {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(DisplayBase {
            surface_id: r.u32("display base surface_id")?,
            bbox: Rect::read(r)?,
            clip: Clip::read(r)?,
        })
    }
    pub(crate) fn write(&self, b: &mut BodyBuilder<'_>) {
        b.u32(self.surface_id);
        self.bbox.write(b);
        self.clip.write(b);
    }
}

/// `Palette`; at most 65535 entries (the count is a u16).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Palette {
    pub unique: u64,
    pub ents: Vec<u32>,
}

impl Palette {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let unique = r.u64("palette unique")?;
        let n = r.u16("palette num_ents")?;
        let ents = r.array(n.into(), 4, "palette ents", |r| r.u32("palette ent"))?;
        Ok(Palette { unique, ents })
    }
    fn write(&self, b: &mut BodyBuilder<'_>) {
        b.u64(self.unique);
        let n = self.ents.len().min(u16::MAX as usize);
        b.u16(n as u16);
        for &e in &self.ents[..n] {
            b.u32(e);
        }
    }
}

/// Where an indexed image's palette comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaletteSource {
    /// A palette the client cached earlier (`PAL_FROM_CACHE`).
    Cached(u64),
    /// A palette carried in the message.
    Inline(Palette),
}

/// `BitmapData`: an uncompressed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    /// A `bitmap_fmt` value.
    pub format: u8,
    /// `bitmap_flags` other than `PAL_FROM_CACHE`, which follows `palette`.
    pub flags: u8,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub palette: Option<PaletteSource>,
    /// `stride * height` bytes.
    pub data: Vec<u8>,
}

/// Type-specific part of an [`Image`]; compressed payloads stay opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageData {
    Bitmap(Bitmap),
    Quic(Vec<u8>),
    LzRgb(Vec<u8>),
    GlzRgb(Vec<u8>),
    Jpeg(Vec<u8>),
    Lz4(Vec<u8>),
    LzPlt {
        /// `bitmap_flags` other than `PAL_FROM_CACHE`.
        flags: u8,
        palette: PaletteSource,
        data: Vec<u8>,
    },
    ZlibGlzRgb {
        /// Size of the GLZ stream once inflated.
        glz_data_size: u32,
        data: Vec<u8>,
    },
    JpegAlpha {
        flags: u8,
        /// The JPEG part is `data[..jpeg_size]`, the LZ alpha plane the rest.
        jpeg_size: u32,
        data: Vec<u8>,
    },
    FromCache,
    FromCacheLossless,
    Surface {
        surface_id: u32,
    },
}

impl ImageData {
    /// The `image_type` value this variant is sent as.
    pub fn image_type(&self) -> u8 {
        match self {
            ImageData::Bitmap(_) => image_type::BITMAP,
            ImageData::Quic(_) => image_type::QUIC,
            ImageData::LzRgb(_) => image_type::LZ_RGB,
            ImageData::GlzRgb(_) => image_type::GLZ_RGB,
            ImageData::Jpeg(_) => image_type::JPEG,
            ImageData::Lz4(_) => image_type::LZ4,
            ImageData::LzPlt { .. } => image_type::LZ_PLT,
            ImageData::ZlibGlzRgb { .. } => image_type::ZLIB_GLZ_RGB,
            ImageData::JpegAlpha { .. } => image_type::JPEG_ALPHA,
            ImageData::FromCache => image_type::FROM_CACHE,
            ImageData::FromCacheLossless => image_type::FROM_CACHE_LOSSLESS,
            ImageData::Surface { .. } => image_type::SURFACE,
        }
    }
}

/// `Image`: the descriptor (id, type, flags, size) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Cache id (`CACHE_ME`/`FROM_CACHE` refer to it).
    pub id: u64,
    /// `image_flags`.
    pub flags: u8,
    pub width: u32,
    pub height: u32,
    pub data: ImageData,
}

fn read_sized(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<u8>> {
    let n = r.u32(what)?;
    r.check_count(n.into(), 1, what)?;
    r.bytes(n as usize, what)
}

fn read_pal_source(
    r: &mut Reader<'_>,
    flags: u8,
    nonnull: bool,
    what: &'static str,
) -> Result<Option<PaletteSource>> {
    if flags & bitmap_flags::PAL_FROM_CACHE != 0 {
        return Ok(Some(PaletteSource::Cached(r.u64(what)?)));
    }
    let p = if nonnull {
        Some(r.ptr_nonnull(what)?)
    } else {
        r.ptr(what)?
    };
    match p {
        Some(mut pr) => Ok(Some(PaletteSource::Inline(Palette::read(&mut pr)?))),
        None => Ok(None),
    }
}

fn write_pal_source<'a>(b: &mut BodyBuilder<'a>, p: Option<&'a PaletteSource>) {
    match p {
        Some(PaletteSource::Cached(id)) => b.u64(*id),
        Some(PaletteSource::Inline(pal)) => b.ptr(move |b| pal.write(b)),
        None => b.u32(0),
    }
}

fn pal_flag(flags: u8, p: Option<&PaletteSource>) -> u8 {
    let f = flags & !bitmap_flags::PAL_FROM_CACHE;
    match p {
        Some(PaletteSource::Cached(_)) => f | bitmap_flags::PAL_FROM_CACHE,
        _ => f,
    }
}

impl Image {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let id = r.u64("image id")?;
        let ty = r.u8("image type")?;
        let flags = r.u8("image flags")?;
        let width = r.u32("image width")?;
        let height = r.u32("image height")?;
        let data = match ty {
            image_type::BITMAP => {
                let format = r.u8("bitmap format")?;
                let bflags = r.u8("bitmap flags")?;
                let bw = r.u32("bitmap x")?;
                let bh = r.u32("bitmap y")?;
                let stride = r.u32("bitmap stride")?;
                let palette = read_pal_source(r, bflags, false, "bitmap palette")?;
                let n = u64::from(stride) * u64::from(bh);
                let n = r.check_count(n, 1, "bitmap data")?;
                ImageData::Bitmap(Bitmap {
                    format,
                    flags: bflags & !bitmap_flags::PAL_FROM_CACHE,
                    width: bw,
                    height: bh,
                    stride,
                    palette,
                    data: r.bytes(n, "bitmap data")?,
                })
            }
            image_type::QUIC => ImageData::Quic(read_sized(r, "quic data")?),
            image_type::LZ_RGB => ImageData::LzRgb(read_sized(r, "lz_rgb data")?),
            image_type::GLZ_RGB => ImageData::GlzRgb(read_sized(r, "glz_rgb data")?),
            image_type::JPEG => ImageData::Jpeg(read_sized(r, "jpeg data")?),
            image_type::LZ4 => ImageData::Lz4(read_sized(r, "lz4 data")?),
            image_type::LZ_PLT => {
                let lflags = r.u8("lz_plt flags")?;
                let size = r.u32("lz_plt data_size")?;
                let palette = read_pal_source(r, lflags, true, "lz_plt palette")?.ok_or(
                    ProtoError::NullPointer {
                        what: "lz_plt palette",
                    },
                )?;
                let n = r.check_count(size.into(), 1, "lz_plt data")?;
                ImageData::LzPlt {
                    flags: lflags & !bitmap_flags::PAL_FROM_CACHE,
                    palette,
                    data: r.bytes(n, "lz_plt data")?,
                }
            }
            image_type::ZLIB_GLZ_RGB => {
                let glz_data_size = r.u32("zlib_glz glz_data_size")?;
                ImageData::ZlibGlzRgb {
                    glz_data_size,
                    data: read_sized(r, "zlib_glz data")?,
                }
            }
            image_type::JPEG_ALPHA => {
                let jflags = r.u8("jpeg_alpha flags")?;
                let jpeg_size = r.u32("jpeg_alpha jpeg_size")?;
                let data = read_sized(r, "jpeg_alpha data")?;
                if jpeg_size as usize > data.len() {
                    return Err(ProtoError::BadCount {
                        what: "jpeg_alpha jpeg_size",
                        count: jpeg_size.into(),
                        remaining: data.len(),
                    });
                }
                ImageData::JpegAlpha {
                    flags: jflags,
                    jpeg_size,
                    data,
                }
            }
            image_type::FROM_CACHE => ImageData::FromCache,
            image_type::FROM_CACHE_LOSSLESS => ImageData::FromCacheLossless,
            image_type::SURFACE => ImageData::Surface {
                surface_id: r.u32("image surface_id")?,
            },
            v => {
                return Err(ProtoError::BadValue {
                    what: "image type",
                    value: v.into(),
                })
            }
        };
        Ok(Image {
            id,
            flags,
            width,
            height,
            data,
        })
    }

    pub(crate) fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        b.u64(self.id);
        b.u8(self.data.image_type());
        b.u8(self.flags);
        b.u32(self.width);
        b.u32(self.height);
        let sized = |b: &mut BodyBuilder<'a>, d: &'a [u8]| {
            b.u32(d.len() as u32);
            b.bytes(d);
        };
        match &self.data {
            ImageData::Bitmap(bm) => {
                b.u8(bm.format);
                b.u8(pal_flag(bm.flags, bm.palette.as_ref()));
                b.u32(bm.width);
                b.u32(bm.height);
                b.u32(bm.stride);
                write_pal_source(b, bm.palette.as_ref());
                b.bytes(&bm.data);
            }
            ImageData::Quic(d)
            | ImageData::LzRgb(d)
            | ImageData::GlzRgb(d)
            | ImageData::Jpeg(d)
            | ImageData::Lz4(d) => sized(b, d),
            ImageData::LzPlt {
                flags,
                palette,
                data,
            } => {
                b.u8(pal_flag(*flags, Some(palette)));
                b.u32(data.len() as u32);
                write_pal_source(b, Some(palette));
                b.bytes(data);
            }
            ImageData::ZlibGlzRgb {
                glz_data_size,
                data,
            } => {
                b.u32(*glz_data_size);
                sized(b, data);
            }
            ImageData::JpegAlpha {
                flags,
                jpeg_size,
                data,
            } => {
                b.u8(*flags);
                b.u32(*jpeg_size);
                sized(b, data);
            }
            ImageData::FromCache | ImageData::FromCacheLossless => {}
            ImageData::Surface { surface_id } => b.u32(*surface_id),
        }
    }
}

pub(crate) fn read_image_ptr(r: &mut Reader<'_>, what: &'static str) -> Result<Option<Box<Image>>> {
    match r.ptr(what)? {
        Some(mut ir) => Ok(Some(Box::new(Image::read(&mut ir)?))),
        None => Ok(None),
    }
}

pub(crate) fn write_image_ptr<'a>(b: &mut BodyBuilder<'a>, img: &'a Option<Box<Image>>) {
    b.opt_ptr(img.as_deref(), |b, i| i.write(b));
}

/// `Brush`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Brush {
    #[default]
    None,
    Solid(u32),
    Pattern {
        image: Box<Image>,
        pos: Point,
    },
}

impl Brush {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        match r.u8("brush type")? {
            brush_type::NONE => Ok(Brush::None),
            brush_type::SOLID => Ok(Brush::Solid(r.u32("brush color")?)),
            brush_type::PATTERN => {
                let mut ir = r.ptr_nonnull("brush pattern image")?;
                let image = Box::new(Image::read(&mut ir)?);
                Ok(Brush::Pattern {
                    image,
                    pos: Point::read(r)?,
                })
            }
            v => Err(ProtoError::BadValue {
                what: "brush type",
                value: v.into(),
            }),
        }
    }
    pub(crate) fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        match self {
            Brush::None => b.u8(brush_type::NONE),
            Brush::Solid(c) => {
                b.u8(brush_type::SOLID);
                b.u32(*c);
            }
            Brush::Pattern { image, pos } => {
                b.u8(brush_type::PATTERN);
                b.ptr(move |b| image.write(b));
                pos.write(b);
            }
        }
    }
}

/// `QMask`: an optional 1-bit mask image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QMask {
    /// `mask_flags`.
    pub flags: u8,
    pub pos: Point,
    pub bitmap: Option<Box<Image>>,
}

impl QMask {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(QMask {
            flags: r.u8("qmask flags")?,
            pos: Point::read(r)?,
            bitmap: read_image_ptr(r, "qmask bitmap")?,
        })
    }
    pub(crate) fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        b.u8(self.flags);
        self.pos.write(b);
        write_image_ptr(b, &self.bitmap);
    }
}

/// `LineAttr`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LineAttr {
    /// `line_flags` other than `STYLED`, which follows `style`.
    pub flags: u8,
    /// Dash pattern in 28.4 fixed point; `Some` sets `STYLED`. At most 255 entries.
    pub style: Option<Vec<i32>>,
}

impl LineAttr {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let flags = r.u8("line attr flags")?;
        let style = if flags & line_flags::STYLED != 0 {
            let n = r.u8("line attr style_nseg")?;
            let mut sr = r.ptr_nonnull("line attr style")?;
            Some(sr.array(n.into(), 4, "line attr style", |r| r.i32("style"))?)
        } else {
            None
        };
        Ok(LineAttr {
            flags: flags & !line_flags::STYLED,
            style,
        })
    }
    pub(crate) fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        match &self.style {
            None => b.u8(self.flags & !line_flags::STYLED),
            Some(st) => {
                b.u8(self.flags | line_flags::STYLED);
                let n = st.len().min(255);
                b.u8(n as u8);
                b.ptr(move |b| {
                    for &v in &st[..n] {
                        b.i32(v);
                    }
                });
            }
        }
    }
}

/// `PathSegment`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathSegment {
    /// `path_flags`.
    pub flags: u8,
    /// Points in 28.4 fixed point.
    pub points: Vec<Point>,
}

/// `Path`: segments reached through an array of pointers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path {
    pub segments: Vec<PathSegment>,
}

impl Path {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let n = r.u32("path num_segments")?;
        let segments = r.array(n.into(), 4, "path segments", |r| {
            let mut sr = r.ptr_nonnull("path segment")?;
            let flags = sr.u8("path segment flags")?;
            let count = sr.u32("path segment count")?;
            let points = sr.array(count.into(), 8, "path segment points", Point::read)?;
            Ok(PathSegment { flags, points })
        })?;
        Ok(Path { segments })
    }
    pub(crate) fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        b.u32(self.segments.len() as u32);
        for s in &self.segments {
            b.ptr(move |b| {
                b.u8(s.flags);
                b.u32(s.points.len() as u32);
                for p in &s.points {
                    p.write(b);
                }
            });
        }
    }
}

/// `RasterGlyph`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RasterGlyph {
    pub render_pos: Point,
    pub glyph_origin: Point,
    pub width: u16,
    pub height: u16,
    /// `((width * bpp + 7) / 8) * height` bytes, bpp from the string flags.
    pub data: Vec<u8>,
}

/// `String`: rasterised glyphs of a DRAW_TEXT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GlyphString {
    /// `string_flags`; exactly one of RASTER_A1/A4/A8 says the glyph depth.
    pub flags: u8,
    pub glyphs: Vec<RasterGlyph>,
}

impl GlyphString {
    fn bpp(flags: u8) -> Option<u64> {
        if flags & string_flags::RASTER_A1 != 0 {
            Some(1)
        } else if flags & string_flags::RASTER_A4 != 0 {
            Some(4)
        } else if flags & string_flags::RASTER_A8 != 0 {
            Some(8)
        } else {
            None
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let len = r.u16("string length")?;
        let flags = r.u8("string flags")?;
        // Without a raster depth bit the glyph array is absent on the wire.
        let Some(bpp) = Self::bpp(flags) else {
            return Ok(GlyphString {
                flags,
                glyphs: Vec::new(),
            });
        };
        let glyphs = r.array(len.into(), 4, "string glyphs", |r| {
            let mut gr = r.ptr_nonnull("string glyph")?;
            let render_pos = Point::read(&mut gr)?;
            let glyph_origin = Point::read(&mut gr)?;
            let width = gr.u16("glyph width")?;
            let height = gr.u16("glyph height")?;
            let n = (u64::from(width) * bpp).div_ceil(8) * u64::from(height);
            let n = gr.check_count(n, 1, "glyph data")?;
            Ok(RasterGlyph {
                render_pos,
                glyph_origin,
                width,
                height,
                data: gr.bytes(n, "glyph data")?,
            })
        })?;
        Ok(GlyphString { flags, glyphs })
    }

    pub(crate) fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        // The count is a u16: longer strings are cut rather than mis-framed.
        let n = self.glyphs.len().min(u16::MAX as usize);
        b.u16(n as u16);
        b.u8(self.flags);
        if Self::bpp(self.flags).is_none() {
            return;
        }
        for g in &self.glyphs[..n] {
            b.ptr(move |b| {
                g.render_pos.write(b);
                g.glyph_origin.write(b);
                b.u16(g.width);
                b.u16(g.height);
                b.bytes(&g.data);
            });
        }
    }
}
