//! Turning the `SpiceImage` descriptors of draw commands into pixels: raw
//! bitmaps with palettes, every compressed payload (through `spice-codecs`),
//! and the pixmap and palette caches the server manages on our behalf.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spice_codecs::{glz, jpeg, lz, lz4, quic, zlib_glz, CodecError, MAX_PIXELS};
use spice_proto::consts::{bitmap_flags, bitmap_fmt, image_flags, image_type};
use spice_proto::types::{Bitmap, Image, ImageData, PaletteSource, QMask};

use crate::canvas::{snapshot, IRect, Mask, Pixmap, SurfaceStore};
use crate::error::ClientError;

/// How long a GLZ image may wait for an image that another display channel
/// of the session still has to decode (the GLZ window is shared).
pub const GLZ_WAIT: Duration = Duration::from_secs(5);
/// Most palettes kept in the palette cache.
const MAX_PALETTES: usize = 4096;

/// Counters of decoded images per `image_type`, for statistics and tests.
#[derive(Debug, Default, Clone)]
pub struct ImageCounts {
    pub by_type: HashMap<u8, u64>,
}

/// Name of an `image_type` value for messages.
pub fn image_type_name(t: u8) -> &'static str {
    match t {
        image_type::BITMAP => "BITMAP",
        image_type::QUIC => "QUIC",
        image_type::LZ_PLT => "LZ_PLT",
        image_type::LZ_RGB => "LZ_RGB",
        image_type::GLZ_RGB => "GLZ_RGB",
        image_type::FROM_CACHE => "FROM_CACHE",
        image_type::SURFACE => "SURFACE",
        image_type::JPEG => "JPEG",
        image_type::FROM_CACHE_LOSSLESS => "FROM_CACHE_LOSSLESS",
        image_type::ZLIB_GLZ_RGB => "ZLIB_GLZ_RGB",
        image_type::JPEG_ALPHA => "JPEG_ALPHA",
        image_type::LZ4 => "LZ4",
        _ => "unknown",
    }
}

/// Image state of one display channel (the GLZ window is session-wide).
pub struct ImageCaches {
    pixmaps: HashMap<u64, Arc<Pixmap>>,
    pixmap_pixels: u64,
    /// The pixmap cache size announced in DISPLAY INIT, in pixels.
    pixmap_limit: u64,
    palettes: HashMap<u64, Arc<Vec<u32>>>,
    pub glz: glz::SharedWindow,
    /// How long to wait for a GLZ reference: zero with a single display
    /// channel, where a missing image can never arrive.
    pub glz_wait: Duration,
    pub counts: ImageCounts,
}

impl ImageCaches {
    pub fn new(pixmap_limit: u64, glz: glz::SharedWindow) -> Self {
        ImageCaches {
            pixmaps: HashMap::new(),
            pixmap_pixels: 0,
            pixmap_limit,
            palettes: HashMap::new(),
            glz,
            glz_wait: Duration::ZERO,
            counts: ImageCounts::default(),
        }
    }

    pub fn inval_pixmap(&mut self, id: u64) {
        if let Some(p) = self.pixmaps.remove(&id) {
            self.pixmap_pixels -= u64::from(p.width) * u64::from(p.height);
        }
    }

    pub fn inval_all_pixmaps(&mut self) {
        self.pixmaps.clear();
        self.pixmap_pixels = 0;
    }

    pub fn inval_palette(&mut self, id: u64) {
        self.palettes.remove(&id);
    }

    pub fn inval_all_palettes(&mut self) {
        self.palettes.clear();
    }

    pub fn pixmap_count(&self) -> usize {
        self.pixmaps.len()
    }

    fn cache_pixmap(&mut self, id: u64, p: Arc<Pixmap>) -> Result<(), ClientError> {
        self.inval_pixmap(id);
        let px = u64::from(p.width) * u64::from(p.height);
        // The server accounts the cache itself; twice its budget means it is
        // not doing so, and we stop rather than grow without bound.
        if self.pixmap_pixels + px > self.pixmap_limit.saturating_mul(2) {
            return Err(ClientError::Server(format!(
                "pixmap cache overflow: caching image {id:#x} would hold {} pixels, the announced size is {}",
                self.pixmap_pixels + px,
                self.pixmap_limit
            )));
        }
        self.pixmap_pixels += px;
        self.pixmaps.insert(id, p);
        Ok(())
    }

    fn palette(
        &mut self,
        src: &PaletteSource,
        cache_me: bool,
    ) -> Result<Arc<Vec<u32>>, ClientError> {
        match src {
            PaletteSource::Cached(id) => self.palettes.get(id).cloned().ok_or_else(|| {
                ClientError::Server(format!(
                    "palette {id:#x} requested from the cache but not in it"
                ))
            }),
            PaletteSource::Inline(p) => {
                let ents = Arc::new(p.ents.clone());
                if cache_me {
                    if self.palettes.len() >= MAX_PALETTES && !self.palettes.contains_key(&p.unique)
                    {
                        return Err(ClientError::Server(format!(
                            "palette cache overflow: more than {MAX_PALETTES} palettes"
                        )));
                    }
                    self.palettes.insert(p.unique, ents.clone());
                }
                Ok(ents)
            }
        }
    }

    /// Decodes `img` into pixels, handling the caches (CACHE_ME, FROM_CACHE).
    pub fn decode(
        &mut self,
        img: &Image,
        surfaces: &SurfaceStore,
    ) -> Result<Arc<Pixmap>, ClientError> {
        let ty = img.data.image_type();
        *self.counts.by_type.entry(ty).or_insert(0) += 1;
        let codec_err = |source: CodecError| ClientError::Image {
            id: img.id,
            kind: image_type_name(ty),
            source,
        };
        let pm: Arc<Pixmap> = match &img.data {
            ImageData::FromCache | ImageData::FromCacheLossless => {
                return self.pixmaps.get(&img.id).cloned().ok_or_else(|| {
                    ClientError::Server(format!(
                        "image {:#x} requested from the pixmap cache but not in it",
                        img.id
                    ))
                })
            }
            ImageData::Surface { surface_id } => {
                let s = surfaces.get(*surface_id).ok_or_else(|| {
                    ClientError::Server(format!("image refers to unknown surface {surface_id}"))
                })?;
                let full = IRect {
                    x0: 0,
                    y0: 0,
                    x1: s.pixels.width as i32,
                    y1: s.pixels.height as i32,
                };
                Arc::new(snapshot(&s.pixels, full))
            }
            ImageData::Bitmap(bm) => {
                let pal = match &bm.palette {
                    Some(p) => Some(self.palette(p, bm.flags & bitmap_flags::PAL_CACHE_ME != 0)?),
                    None => None,
                };
                Arc::new(decode_bitmap(bm, pal.as_deref().map(|v| v.as_slice()))?)
            }
            ImageData::Quic(d) => Arc::new(from_codec(quic::decode(d).map_err(codec_err)?)),
            ImageData::LzRgb(d) => Arc::new(from_codec(lz::decode(d, None).map_err(codec_err)?)),
            ImageData::LzPlt {
                flags,
                palette,
                data,
            } => {
                let pal = self.palette(palette, flags & bitmap_flags::PAL_CACHE_ME != 0)?;
                Arc::new(from_codec(lz::decode(data, Some(&pal)).map_err(codec_err)?))
            }
            ImageData::GlzRgb(d) => {
                let (b, _) = self.glz.decode(d, None, self.glz_wait).map_err(codec_err)?;
                Arc::new(from_codec(b))
            }
            ImageData::ZlibGlzRgb {
                glz_data_size,
                data,
            } => {
                let inner = zlib_glz::inflate(data, *glz_data_size).map_err(codec_err)?;
                let (b, _) = self
                    .glz
                    .decode(&inner, None, self.glz_wait)
                    .map_err(codec_err)?;
                Arc::new(from_codec(b))
            }
            ImageData::Jpeg(d) => Arc::new(from_codec(jpeg::decode(d).map_err(codec_err)?)),
            ImageData::JpegAlpha {
                jpeg_size, data, ..
            } => {
                let mut p =
                    from_codec(jpeg::decode_alpha(data, *jpeg_size as usize).map_err(codec_err)?);
                p.has_alpha = true;
                Arc::new(p)
            }
            ImageData::Lz4(d) => Arc::new(from_codec(
                lz4::decode(d, img.width, img.height).map_err(codec_err)?,
            )),
        };
        if img.flags & (image_flags::CACHE_ME | image_flags::CACHE_REPLACE_ME) != 0 {
            self.cache_pixmap(img.id, pm.clone())?;
        }
        Ok(pm)
    }
}

fn from_codec(b: spice_codecs::Bitmap) -> Pixmap {
    let mut data = Vec::with_capacity(b.width as usize * b.height as usize);
    for y in 0..b.height as usize {
        let row = &b.data[y * b.stride..y * b.stride + b.width as usize * 4];
        data.extend(
            row.chunks_exact(4)
                .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]])),
        );
    }
    Pixmap {
        width: b.width,
        height: b.height,
        has_alpha: b.format.has_alpha(),
        data,
    }
}

/// spice's 15-bit → 32-bit expansion (top bits replicated into the low ones).
fn rgb555(v: u16) -> u32 {
    let ex = |c: u16| -> u32 {
        let c = u32::from(c & 0x1f);
        (c << 3) | (c >> 2)
    };
    (ex(v >> 10) << 16) | (ex(v >> 5) << 8) | ex(v)
}

/// Decodes an uncompressed `SpiceBitmap`.
pub fn decode_bitmap(bm: &Bitmap, palette: Option<&[u32]>) -> Result<Pixmap, ClientError> {
    let (w, h) = (bm.width, bm.height);
    if u64::from(w) * u64::from(h) > MAX_PIXELS || w > 16384 || h > 16384 {
        return Err(ClientError::Server(format!("bitmap {w}x{h} is too large")));
    }
    let bits: u64 = match bm.format {
        bitmap_fmt::BIT1_LE | bitmap_fmt::BIT1_BE => 1,
        bitmap_fmt::BIT4_LE | bitmap_fmt::BIT4_BE => 4,
        bitmap_fmt::BIT8 | bitmap_fmt::BIT8_A => 8,
        bitmap_fmt::BIT16 => 16,
        bitmap_fmt::BIT24 => 24,
        bitmap_fmt::BIT32 | bitmap_fmt::RGBA => 32,
        f => {
            return Err(ClientError::Server(format!(
                "bitmap with unknown format {f}"
            )))
        }
    };
    let row_bytes = (u64::from(w) * bits).div_ceil(8);
    if row_bytes > u64::from(bm.stride)
        || (bm.data.len() as u64) < u64::from(bm.stride) * u64::from(h)
    {
        return Err(ClientError::Server(format!(
            "bitmap {w}x{h} format {} does not fit stride {} / {} data bytes",
            bm.format,
            bm.stride,
            bm.data.len()
        )));
    }
    let needs_pal = bits <= 8 && bm.format != bitmap_fmt::BIT8_A;
    let pal = if needs_pal {
        Some(palette.ok_or_else(|| {
            ClientError::Server(format!(
                "palette bitmap (format {}) without a palette",
                bm.format
            ))
        })?)
    } else {
        None
    };
    let lookup = |i: usize| -> u32 { pal.and_then(|p| p.get(i).copied()).unwrap_or(0) };
    let top_down = bm.flags & bitmap_flags::TOP_DOWN != 0;
    let mut data = Vec::with_capacity(w as usize * h as usize);
    for y in 0..h as usize {
        let sy = if top_down { y } else { h as usize - 1 - y };
        let row = &bm.data[sy * bm.stride as usize..][..row_bytes as usize];
        for x in 0..w as usize {
            let px = match bm.format {
                bitmap_fmt::BIT1_LE => lookup(usize::from((row[x / 8] >> (x % 8)) & 1)),
                bitmap_fmt::BIT1_BE => lookup(usize::from((row[x / 8] >> (7 - x % 8)) & 1)),
                bitmap_fmt::BIT4_LE => lookup(usize::from((row[x / 2] >> ((x % 2) * 4)) & 0xf)),
                bitmap_fmt::BIT4_BE => lookup(usize::from((row[x / 2] >> ((1 - x % 2) * 4)) & 0xf)),
                bitmap_fmt::BIT8 => lookup(usize::from(row[x])),
                bitmap_fmt::BIT8_A => u32::from(row[x]) << 24,
                bitmap_fmt::BIT16 => rgb555(u16::from_le_bytes([row[2 * x], row[2 * x + 1]])),
                bitmap_fmt::BIT24 => {
                    u32::from_le_bytes([row[3 * x], row[3 * x + 1], row[3 * x + 2], 0])
                }
                _ => {
                    u32::from_le_bytes([row[4 * x], row[4 * x + 1], row[4 * x + 2], row[4 * x + 3]])
                }
            };
            data.push(px);
        }
    }
    Ok(Pixmap {
        width: w,
        height: h,
        has_alpha: matches!(bm.format, bitmap_fmt::RGBA | bitmap_fmt::BIT8_A),
        data,
    })
}

/// Expands a QMask bitmap (1 bit per pixel, used as raw bits) for drawing.
pub fn decode_mask(
    caches: &mut ImageCaches,
    surfaces: &SurfaceStore,
    q: &QMask,
) -> Result<Option<Mask>, ClientError> {
    let Some(img) = &q.bitmap else {
        return Ok(None);
    };
    let invert = q.flags & spice_proto::consts::mask_flags::INVERS != 0;
    let (w, h, bits) = match &img.data {
        ImageData::Bitmap(bm) if matches!(bm.format, bitmap_fmt::BIT1_LE | bitmap_fmt::BIT1_BE) => {
            // Raw bits, not palette colours: decode with an identity palette.
            let p = decode_bitmap(bm, Some(&[0, 1]))?;
            (p.width, p.height, p.data.iter().map(|&v| v != 0).collect())
        }
        _ => {
            // Cached or compressed masks: any non-black pixel counts as set.
            let p = caches.decode(img, surfaces)?;
            (
                p.width,
                p.height,
                p.data.iter().map(|&v| v & 0xffffff != 0).collect(),
            )
        }
    };
    Ok(Some(Mask {
        width: w,
        height: h,
        bits,
        invert,
        pos_x: q.pos.x,
        pos_y: q.pos.y,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spice_proto::types::Palette;

    fn bm(format: u8, flags: u8, w: u32, h: u32, stride: u32, data: Vec<u8>) -> Bitmap {
        Bitmap {
            format,
            flags,
            width: w,
            height: h,
            stride,
            palette: None,
            data,
        }
    }

    #[test]
    fn bitmap_formats_decode() {
        let pal = [0x00_0000, 0xff_0000, 0x00_ff00, 0x00_00ff];
        // 1 bpp, MSB first, bottom-up: the second data row is the top row.
        let b = bm(
            bitmap_fmt::BIT1_BE,
            0,
            3,
            2,
            1,
            vec![0b1010_0000, 0b0100_0000],
        );
        let p = decode_bitmap(&b, Some(&pal)).unwrap();
        assert_eq!(p.data, vec![0, 0xff0000, 0, 0xff0000, 0, 0xff0000]);
        let b = bm(
            bitmap_fmt::BIT1_LE,
            bitmap_flags::TOP_DOWN,
            3,
            1,
            1,
            vec![0b0000_0101],
        );
        assert_eq!(
            decode_bitmap(&b, Some(&pal)).unwrap().data,
            vec![0xff0000, 0, 0xff0000]
        );
        let b = bm(
            bitmap_fmt::BIT4_BE,
            bitmap_flags::TOP_DOWN,
            2,
            1,
            1,
            vec![0x23],
        );
        assert_eq!(
            decode_bitmap(&b, Some(&pal)).unwrap().data,
            vec![0x00ff00, 0x0000ff]
        );
        let b = bm(
            bitmap_fmt::BIT4_LE,
            bitmap_flags::TOP_DOWN,
            2,
            1,
            1,
            vec![0x23],
        );
        assert_eq!(
            decode_bitmap(&b, Some(&pal)).unwrap().data,
            vec![0x0000ff, 0x00ff00]
        );
        let b = bm(
            bitmap_fmt::BIT24,
            bitmap_flags::TOP_DOWN,
            1,
            1,
            3,
            vec![1, 2, 3],
        );
        assert_eq!(decode_bitmap(&b, None).unwrap().data, vec![0x030201]);
        let b = bm(
            bitmap_fmt::BIT16,
            bitmap_flags::TOP_DOWN,
            1,
            1,
            2,
            0x7c00u16.to_le_bytes().to_vec(),
        );
        assert_eq!(decode_bitmap(&b, None).unwrap().data, vec![0xff0000]);
    }

    #[test]
    fn bad_bitmaps_are_errors() {
        let b = bm(bitmap_fmt::BIT32, 0, 4, 1, 8, vec![0; 8]);
        assert!(decode_bitmap(&b, None).is_err());
        let b = bm(bitmap_fmt::BIT8, 0, 1, 1, 1, vec![0]);
        assert!(decode_bitmap(&b, None).is_err());
        let b = bm(42, 0, 1, 1, 4, vec![0; 4]);
        assert!(decode_bitmap(&b, None).is_err());
    }

    #[test]
    fn pixmap_and_palette_caches() {
        let mut c = ImageCaches::new(1000, glz::SharedWindow::new(1 << 20));
        let s = SurfaceStore::default();
        let mut b = bm(
            bitmap_fmt::BIT8,
            bitmap_flags::TOP_DOWN | bitmap_flags::PAL_CACHE_ME,
            1,
            1,
            1,
            vec![1],
        );
        b.palette = Some(PaletteSource::Inline(Palette {
            unique: 77,
            ents: vec![0, 0x123456],
        }));
        let img = Image {
            id: 5,
            flags: image_flags::CACHE_ME,
            width: 1,
            height: 1,
            data: ImageData::Bitmap(b.clone()),
        };
        assert_eq!(c.decode(&img, &s).unwrap().data, vec![0x123456]);
        let from = Image {
            data: ImageData::FromCache,
            flags: 0,
            ..img.clone()
        };
        assert_eq!(c.decode(&from, &s).unwrap().data, vec![0x123456]);
        b.palette = Some(PaletteSource::Cached(77));
        let img2 = Image {
            id: 6,
            flags: 0,
            data: ImageData::Bitmap(b),
            ..img
        };
        assert_eq!(c.decode(&img2, &s).unwrap().data, vec![0x123456]);
        c.inval_all_pixmaps();
        assert!(c.decode(&from, &s).is_err());
    }
}
