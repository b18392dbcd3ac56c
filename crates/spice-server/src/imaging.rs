//! Per-client image encoding: codec choice (spice-server's `image-compression` modes),
//! the client's GLZ dictionary and a mirror of the client's pixmap cache.
//!
//! spice-gtk keeps every image the server flags CACHE_ME until the server invalidates
//! it, so the server owns the eviction policy: [`PixmapCache`] is an LRU bounded by the
//! pixel count the client gave in its display INIT, and each entry it drops is sent as
//! INVAL_LIST before the image that needed the room.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};

use spice_codecs::lz::LzImageType;
use spice_codecs::quic::QuicImageType;
use spice_codecs::{glz, jpeg, lz, lz4, quic, zlib_glz, ImageRef};
use spice_proto::consts::{bitmap_flags, bitmap_fmt, image_flags, resource_type};
use spice_proto::display::ResourceId;
use spice_proto::types::{Bitmap, Image, ImageData};
use spice_proto::DisplayServerMsg;

use crate::conn::Out;
use crate::ImageCompression;

/// Images with fewer pixels go raw: a codec header costs more than it saves. Text
/// updates (a glyph cell is 6x13 = 78 px in xterm's default font) are above it: raw they
/// cost 4 bytes a pixel, LZ/GLZ a fraction (spice-server compresses from 54 px).
pub(crate) const RAW_BELOW_PIXELS: u64 = 72;
/// Images with fewer pixels are not cached: small updates (text, cursor trails) rarely
/// repeat exactly, and each entry costs the client memory and us an invalidation.
pub(crate) const CACHE_MIN_PIXELS: u64 = 64 * 64;
/// Bounds on the client-given GLZ window, in pixels. The encoder keeps 4 bytes a pixel
/// of history per client, so the top bounds a hostile client's cost to 16 MiB.
const GLZ_WINDOW_MIN: u64 = 1 << 16;
const GLZ_WINDOW_MAX: u64 = 1 << 22;
/// Resource ids per INVAL_LIST message.
const INVAL_BATCH: usize = 1024;

/// The codec one image is sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Raw,
    Quic,
    Lz,
    Glz,
    Lz4,
    Jpeg,
}

/// GLZ output smaller than this is not worth a zlib wrapper (spice-server's bound).
const ZLIB_GLZ_MIN_BYTES: usize = 100;
/// zlib level of the ZLIB_GLZ wrapper: spice-server's default, cheap enough per image.
const ZLIB_GLZ_LEVEL: u32 = 3;

/// The lossy and extra-compression encodings a client's link allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WanPolicy {
    /// JPEG for photographic images in the auto modes.
    pub jpeg: bool,
    /// GLZ wrapped in zlib when smaller.
    pub zlib_glz: bool,
    pub jpeg_quality: u8,
}

impl Default for WanPolicy {
    fn default() -> Self {
        WanPolicy {
            jpeg: false,
            zlib_glz: false,
            jpeg_quality: 85,
        }
    }
}
/// How "photographic" an image is, estimated from neighbouring pixels on sampled rows.
///
/// Synthetic content (UI, text, flat colours) has runs of equal pixels and sharp edges;
/// photos and gradients have mostly small non-zero steps between neighbours, where LZ
/// finds few repeats and QUIC's predictive coder wins. This mirrors the purpose of
/// spice-server's "graduality" level, with our own sampling and thresholds.
pub(crate) fn is_photographic(img: &ImageRef<'_>) -> bool {
    const ROWS: u32 = 32;
    const PER_ROW: u32 = 256;
    /// Largest per-channel step still counted as a smooth gradient.
    const SMOOTH: u8 = 40;
    if img.width < 2 || img.height == 0 {
        return false;
    }
    let (mut same, mut smooth, mut sharp) = (0u32, 0u32, 0u32);
    let rows = img.height.min(ROWS);
    let step_x = ((img.width - 1) / PER_ROW).max(1);
    for i in 0..rows {
        let y = (u64::from(i) * u64::from(img.height) / u64::from(rows)) as u32;
        let o = y as usize * img.stride;
        let Some(row) = img.data.get(o..o + img.width as usize * 4) else {
            return false;
        };
        let mut x = 0;
        while x + 1 < img.width {
            let a = &row[x as usize * 4..x as usize * 4 + 3];
            let b = &row[x as usize * 4 + 4..x as usize * 4 + 7];
            let d = a
                .iter()
                .zip(b)
                .map(|(p, q)| p.abs_diff(*q))
                .max()
                .unwrap_or(0);
            match d {
                0 => same += 1,
                d if d <= SMOOTH => smooth += 1,
                _ => sharp += 1,
            }
            x += step_x;
        }
    }
    let total = same + smooth + sharp;
    // Photographic when smooth steps dominate: at least half of all samples.
    total > 0 && smooth * 2 >= total
}

/// Picks the codec for a `w`×`h` image under `mode`, as spice-server does: tiny images
/// raw, forced codecs as given (LZ4 only with the client's cap, GLZ only once the client
/// sent its dictionary size), auto modes by content, photographic content as JPEG when
/// `jpeg` (a slow link) allows it.
pub(crate) fn choose(
    mode: ImageCompression,
    img: &ImageRef<'_>,
    lz4_cap: bool,
    glz_ready: bool,
    jpeg: bool,
) -> Codec {
    let pixels = u64::from(img.width) * u64::from(img.height);
    if pixels < RAW_BELOW_PIXELS {
        return Codec::Raw;
    }
    let glz_or_lz = if glz_ready { Codec::Glz } else { Codec::Lz };
    match mode {
        ImageCompression::Off => Codec::Raw,
        ImageCompression::Quic => Codec::Quic,
        ImageCompression::Lz => Codec::Lz,
        ImageCompression::Glz => glz_or_lz,
        ImageCompression::Lz4 if lz4_cap => Codec::Lz4,
        ImageCompression::Lz4 => Codec::Lz,
        ImageCompression::AutoGlz | ImageCompression::AutoLz => {
            if is_photographic(img) {
                if jpeg {
                    Codec::Jpeg
                } else {
                    Codec::Quic
                }
            } else if mode == ImageCompression::AutoGlz {
                glz_or_lz
            } else {
                Codec::Lz
            }
        }
    }
}

/// The server's copy of which images the client's pixmap cache holds.
pub(crate) struct PixmapCache {
    capacity: u64,
    used: u64,
    /// id → (pixels, last use).
    entries: HashMap<u64, (u64, u64)>,
    /// last use → id, oldest first.
    lru: BTreeMap<u64, u64>,
    clock: u64,
}

impl PixmapCache {
    pub fn new(capacity_pixels: u64) -> PixmapCache {
        PixmapCache {
            capacity: capacity_pixels,
            used: 0,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Whether the client holds `id`; a hit becomes the most recently used entry.
    pub fn hit(&mut self, id: u64) -> bool {
        let now = self.tick();
        match self.entries.get_mut(&id) {
            Some((_, last)) => {
                self.lru.remove(last);
                *last = now;
                self.lru.insert(now, id);
                true
            }
            None => false,
        }
    }

    /// Records that the client will cache `id`; returns the ids dropped to make room
    /// (the client must be told before it receives the new image), or `None` when the
    /// image cannot fit at all (then it must not be flagged CACHE_ME).
    pub fn insert(&mut self, id: u64, pixels: u64) -> Option<Vec<u64>> {
        if pixels > self.capacity || self.entries.contains_key(&id) {
            return None;
        }
        let mut dropped = Vec::new();
        while self.used + pixels > self.capacity {
            let (_, old) = self.lru.pop_first()?;
            if let Some((px, _)) = self.entries.remove(&old) {
                self.used -= px;
            }
            dropped.push(old);
        }
        let now = self.tick();
        self.entries.insert(id, (pixels, now));
        self.lru.insert(now, id);
        self.used += pixels;
        Some(dropped)
    }

    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Everything one display client's images depend on.
pub(crate) struct ClientImaging {
    /// The server's setting.
    pub config: ImageCompression,
    /// The client's PREFERRED_COMPRESSION, which overrides `config`.
    pub preferred: Option<ImageCompression>,
    /// The client announced SPICE_DISPLAY_CAP_LZ4_COMPRESSION.
    pub lz4_cap: bool,
    /// Created by the client's display INIT (sized from its window).
    pub glz: Option<glz::Encoder>,
    /// Created by the client's display INIT when it gave a pixmap cache size.
    pub cache: Option<PixmapCache>,
    /// What the client's link allows (LAN: nothing lossy).
    pub wan: WanPolicy,
    /// Where sent images are counted, when someone watches.
    pub tally: Option<std::sync::Arc<crate::Tally>>,
    hasher: std::collections::hash_map::RandomState,
    /// Ids for images that are not cached (never reused within a connection).
    next_id: u64,
}

impl ClientImaging {
    pub fn new(config: ImageCompression, lz4_cap: bool) -> ClientImaging {
        ClientImaging {
            config,
            preferred: None,
            lz4_cap,
            glz: None,
            cache: None,
            wan: WanPolicy::default(),
            tally: None,
            hasher: Default::default(),
            next_id: 1,
        }
    }

    pub fn mode(&self) -> ImageCompression {
        self.preferred.unwrap_or(self.config)
    }

    /// Applies the client's display INIT.
    pub fn init(&mut self, pixmap_cache_size: i64, glz_window: i32) {
        self.glz = (glz_window > 0)
            .then(|| glz::Encoder::new((glz_window as u64).clamp(GLZ_WINDOW_MIN, GLZ_WINDOW_MAX)));
        self.cache = (pixmap_cache_size > 0).then(|| PixmapCache::new(pixmap_cache_size as u64));
    }

    fn content_id(&self, img: &ImageRef<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u32(img.width);
        h.write_u32(img.height);
        for y in 0..img.height as usize {
            let o = y * img.stride;
            h.write(&img.data[o..o + img.width as usize * 4]);
        }
        h.finish()
    }

    /// [`ClientImaging::image_for`] allowing lossy codecs (tests).
    #[cfg(test)]
    pub fn image(&mut self, img: &ImageRef<'_>) -> (Image, Vec<Out>) {
        let (image, pre, _) = self.image_for(img, false);
        (image, pre)
    }

    /// The image to draw `img` (tightly packed BGRX rows) with, the messages that must
    /// reach the client before it (cache invalidations), and whether the image is lossy
    /// (JPEG). With `lossless_only` (refining an area the client holds lossy) only a
    /// lossless codec is used.
    ///
    /// Only lossless images enter the pixmap cache: spice-gtk would answer FROM_CACHE
    /// with whatever it stored, so a cached JPEG would bring lossy pixels back into an
    /// area that was refined meanwhile. Keeping JPEGs out of the cache keeps every hit
    /// exact (no FROM_CACHE_LOSSLESS or CACHE_REPLACE_ME bookkeeping needed) at the
    /// cost of re-sending a photo that reappears on a slow link.
    pub fn image_for(
        &mut self,
        img: &ImageRef<'_>,
        lossless_only: bool,
    ) -> (Image, Vec<Out>, bool) {
        let (w, h) = (img.width, img.height);
        let pixels = u64::from(w) * u64::from(h);
        let mut pre = Vec::new();
        let cid =
            (pixels >= CACHE_MIN_PIXELS && self.cache.is_some()).then(|| self.content_id(img));
        if let (Some(cid), Some(cache)) = (cid, self.cache.as_mut()) {
            if cache.hit(cid) {
                let image = Image {
                    id: cid,
                    flags: 0,
                    width: w,
                    height: h,
                    data: ImageData::FromCache,
                };
                return (image, pre, false);
            }
        }
        let data = self.encode(img, lossless_only);
        let lossy = matches!(data, ImageData::Jpeg(_));
        let mut id = 0;
        let mut flags = 0;
        if let (Some(cid), Some(cache), false) = (cid, self.cache.as_mut(), lossy) {
            if let Some(dropped) = cache.insert(cid, pixels) {
                id = cid;
                flags = image_flags::CACHE_ME;
                for chunk in dropped.chunks(INVAL_BATCH) {
                    pre.push(Out::of(&DisplayServerMsg::InvalList(
                        chunk
                            .iter()
                            .map(|&id| ResourceId {
                                resource_type: resource_type::PIXMAP,
                                id,
                            })
                            .collect(),
                    )));
                }
            }
        }
        if flags == 0 {
            id = self.next_id;
            self.next_id += 1;
        }
        let image = Image {
            id,
            flags,
            width: w,
            height: h,
            data,
        };
        (image, pre, lossy)
    }

    fn encode(&mut self, img: &ImageRef<'_>, lossless_only: bool) -> ImageData {
        let d = self.encode_uncounted(img, lossless_only);
        if let Some(t) = &self.tally {
            use std::sync::atomic::Ordering::Relaxed;
            match d {
                ImageData::Jpeg(_) => t.jpeg_images.fetch_add(1, Relaxed),
                ImageData::ZlibGlzRgb { .. } => t.zlib_glz_images.fetch_add(1, Relaxed),
                _ => t.lossless_images.fetch_add(1, Relaxed),
            };
        }
        d
    }

    fn encode_uncounted(&mut self, img: &ImageRef<'_>, lossless_only: bool) -> ImageData {
        let raw_len = img.width as usize * img.height as usize * 4;
        let codec = choose(
            self.mode(),
            img,
            self.lz4_cap,
            self.glz.is_some(),
            self.wan.jpeg && !lossless_only,
        );
        let zlib = self.wan.zlib_glz;
        let r = match codec {
            Codec::Raw => Ok(None),
            // A GLZ image enters the dictionary when encoded, and later images may refer
            // to it, so it is always sent whatever its size.
            Codec::Glz => match self.glz.as_mut() {
                Some(enc) => enc
                    .encode(img, LzImageType::Rgb32)
                    .map(|(d, _)| Some(wrap_glz(d, zlib))),
                None => Ok(None),
            },
            Codec::Jpeg => jpeg::encode(img, self.wan.jpeg_quality)
                .map(|d| (d.len() < raw_len).then_some(ImageData::Jpeg(d))),
            Codec::Lz => lz::encode(img, LzImageType::Rgb32)
                .map(|d| (d.len() < raw_len).then_some(ImageData::LzRgb(d))),
            Codec::Quic => quic::encode(img, QuicImageType::Rgb32)
                .map(|d| (d.len() < raw_len).then_some(ImageData::Quic(d))),
            Codec::Lz4 => lz4::encode(img, false).and_then(|d| {
                if d.len() < raw_len {
                    Ok(Some(ImageData::Lz4(d)))
                } else {
                    lz4_fallback(img, raw_len)
                }
            }),
        };
        match r {
            Ok(Some(d)) => d,
            Ok(None) => raw(img),
            Err(e) => {
                tracing::warn!(?codec, error = %e, "image encoding failed; sending raw");
                raw(img)
            }
        }
    }
}

/// What an image LZ4 cannot shrink goes as: LZ4 finds no byte repeats in photos and
/// noise, while QUIC (photographic content) or LZ (anything else, e.g. noise, where
/// dropping the padding byte alone saves a quarter) still beat raw. Every client
/// decodes both.
fn lz4_fallback(
    img: &ImageRef<'_>,
    raw_len: usize,
) -> Result<Option<ImageData>, spice_codecs::CodecError> {
    if is_photographic(img) {
        quic::encode(img, QuicImageType::Rgb32)
            .map(|d| (d.len() < raw_len).then_some(ImageData::Quic(d)))
    } else {
        lz::encode(img, LzImageType::Rgb32)
            .map(|d| (d.len() < raw_len).then_some(ImageData::LzRgb(d)))
    }
}

/// A GLZ stream as sent: wrapped in zlib when allowed and worth it.
fn wrap_glz(glz: Vec<u8>, zlib: bool) -> ImageData {
    if zlib && glz.len() >= ZLIB_GLZ_MIN_BYTES {
        let z = zlib_glz::encode(&glz, ZLIB_GLZ_LEVEL);
        if z.len() < glz.len() {
            if let Ok(glz_data_size) = u32::try_from(glz.len()) {
                return ImageData::ZlibGlzRgb {
                    glz_data_size,
                    data: z,
                };
            }
        }
    }
    ImageData::GlzRgb(glz)
}

fn raw(img: &ImageRef<'_>) -> ImageData {
    let row = img.width as usize * 4;
    let mut data = Vec::with_capacity(row * img.height as usize);
    for y in 0..img.height as usize {
        data.extend_from_slice(&img.data[y * img.stride..y * img.stride + row]);
    }
    ImageData::Bitmap(Bitmap {
        format: bitmap_fmt::BIT32,
        flags: bitmap_flags::TOP_DOWN,
        width: img.width,
        height: img.height,
        stride: img.width * 4,
        palette: None,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spice_codecs::Bitmap as Decoded;
    use spice_proto::Message;

    /// A flat background with a few hard-edged boxes, like a desktop.
    fn synthetic(w: u32, h: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h {
            for x in 0..w {
                let c = if (x / 40 + y / 30) % 3 == 0 {
                    [0x20, 0x40, 0xc0, 0]
                } else {
                    [0xee, 0xee, 0xee, 0]
                };
                v.extend_from_slice(&c);
            }
        }
        v
    }

    /// Smooth colour gradients with a little noise, like a photo.
    fn photo(w: u32, h: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        let mut s = 12345u32;
        for y in 0..h {
            for x in 0..w {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let n = (s >> 16) as u8 % 7;
                v.extend_from_slice(&[
                    (x * 255 / w) as u8 ^ n,
                    (y * 255 / h) as u8 ^ n,
                    ((x + y) * 127 / (w + h)) as u8 + n,
                    0,
                ]);
            }
        }
        v
    }

    fn img(w: u32, h: u32, d: &[u8]) -> ImageRef<'_> {
        ImageRef {
            width: w,
            height: h,
            stride: w as usize * 4,
            data: d,
        }
    }

    fn decode(data: &ImageData, w: u32, h: u32, win: &mut glz::Window) -> Vec<u8> {
        let bm: Decoded = match data {
            ImageData::Bitmap(b) => return b.data.clone(),
            ImageData::LzRgb(d) => lz::decode(d, None).unwrap(),
            ImageData::Quic(d) => quic::decode(d).unwrap(),
            ImageData::Lz4(d) => lz4::decode(d, w, h).unwrap(),
            ImageData::GlzRgb(d) => glz::decode(win, d, None).unwrap().0,
            ImageData::ZlibGlzRgb {
                glz_data_size,
                data,
            } => zlib_glz::decode(win, data, *glz_data_size, None).unwrap().0,
            ImageData::Jpeg(d) => jpeg::decode(d).unwrap(),
            other => panic!("unexpected image type {}", other.image_type()),
        };
        bm.data
    }

    fn same_rgb(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.chunks(4).zip(b.chunks(4)).all(|(p, q)| p[..3] == q[..3])
    }

    #[test]
    fn content_classifier_separates_photos_from_ui() {
        let s = synthetic(320, 200);
        let p = photo(320, 200);
        assert!(!is_photographic(&img(320, 200, &s)));
        assert!(is_photographic(&img(320, 200, &p)));
        let flat = vec![0x55u8; 100 * 100 * 4];
        assert!(!is_photographic(&img(100, 100, &flat)));
    }

    #[test]
    fn modes_pick_codecs_as_spice_server_does() {
        use ImageCompression as M;
        let s = synthetic(64, 64);
        let p = photo(64, 64);
        let (si, pi) = (img(64, 64, &s), img(64, 64, &p));
        let tiny = img(8, 8, &s);
        assert_eq!(choose(M::AutoGlz, &tiny, true, true, false), Codec::Raw);
        assert_eq!(choose(M::Quic, &tiny, true, true, false), Codec::Raw);
        assert_eq!(choose(M::AutoGlz, &si, false, true, false), Codec::Glz);
        assert_eq!(choose(M::AutoGlz, &si, false, false, false), Codec::Lz);
        assert_eq!(choose(M::AutoGlz, &pi, false, true, false), Codec::Quic);
        assert_eq!(choose(M::AutoLz, &si, false, true, false), Codec::Lz);
        assert_eq!(choose(M::AutoLz, &pi, false, true, false), Codec::Quic);
        assert_eq!(choose(M::Quic, &si, false, true, false), Codec::Quic);
        assert_eq!(choose(M::Glz, &pi, false, true, false), Codec::Glz);
        assert_eq!(choose(M::Lz, &pi, false, true, false), Codec::Lz);
        assert_eq!(choose(M::Lz4, &si, true, true, false), Codec::Lz4);
        assert_eq!(choose(M::Lz4, &si, false, true, false), Codec::Lz);
        assert_eq!(choose(M::Off, &pi, true, true, false), Codec::Raw);
    }

    #[test]
    fn wan_policy_turns_photos_into_jpeg_and_wraps_glz_in_zlib() {
        use ImageCompression as M;
        let (w, h) = (160, 120);
        let s = synthetic(w, h);
        let p = photo(w, h);
        assert_eq!(
            choose(M::AutoGlz, &img(w, h, &p), false, true, true),
            Codec::Jpeg
        );
        assert_eq!(
            choose(M::AutoLz, &img(w, h, &p), false, true, true),
            Codec::Jpeg
        );
        // Forced codecs stay lossless, as in spice-server.
        assert_eq!(
            choose(M::Quic, &img(w, h, &p), false, true, true),
            Codec::Quic
        );
        assert_eq!(
            choose(M::AutoGlz, &img(w, h, &s), false, true, true),
            Codec::Glz
        );

        let mut ci = ClientImaging::new(M::AutoGlz, false);
        ci.init(0, 1 << 20);
        ci.wan = WanPolicy {
            jpeg: true,
            zlib_glz: true,
            jpeg_quality: 80,
        };
        let tally = std::sync::Arc::new(crate::Tally::default());
        ci.tally = Some(tally.clone());
        let mut win = glz::Window::new(1 << 22);
        let (synth, _) = ci.image(&img(w, h, &s));
        assert!(
            matches!(synth.data, ImageData::ZlibGlzRgb { .. }),
            "synthetic on WAN: type {}",
            synth.data.image_type()
        );
        assert!(same_rgb(&decode(&synth.data, w, h, &mut win), &s));
        let (ph, _) = ci.image(&img(w, h, &p));
        let ImageData::Jpeg(_) = &ph.data else {
            panic!("photo on WAN: type {}", ph.data.image_type())
        };
        let got = decode(&ph.data, w, h, &mut win);
        let err: f64 = got
            .chunks(4)
            .zip(p.chunks(4))
            .flat_map(|(a, b)| (0..3).map(move |i| (f64::from(a[i]) - f64::from(b[i])).powi(2)))
            .sum::<f64>()
            / f64::from(w * h * 3);
        let psnr = 10.0 * (255.0f64 * 255.0 / err.max(1e-9)).log10();
        assert!(psnr > 28.0, "JPEG PSNR {psnr:.1} dB");
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(tally.jpeg_images.load(Relaxed), 1);
        assert_eq!(tally.zlib_glz_images.load(Relaxed), 1);
        // Tiny GLZ output is not wrapped.
        let flat = vec![0x33u8; 32 * 32 * 4];
        let (f, _) = ci.image(&img(32, 32, &flat));
        assert!(
            matches!(f.data, ImageData::GlzRgb(_)),
            "type {}",
            f.data.image_type()
        );
    }

    /// On WAN a photo goes JPEG but never into the pixmap cache; its lossless refine
    /// (QUIC under auto_glz) is cached, and a later draw of the same pixels is an exact
    /// FROM_CACHE hit, never the JPEG.
    #[test]
    fn lossy_images_stay_out_of_the_cache_and_refines_are_exact() {
        let (w, h) = (160, 120);
        let p = photo(w, h);
        let mut ci = ClientImaging::new(ImageCompression::AutoGlz, false);
        ci.init(1 << 20, 1 << 20);
        ci.wan = WanPolicy {
            jpeg: true,
            zlib_glz: true,
            jpeg_quality: 80,
        };
        let mut win = glz::Window::new(1 << 22);
        let (j, _, lossy) = ci.image_for(&img(w, h, &p), false);
        assert!(lossy && matches!(j.data, ImageData::Jpeg(_)));
        assert_eq!(j.flags & image_flags::CACHE_ME, 0, "JPEG flagged CACHE_ME");
        assert_eq!(ci.cache.as_ref().unwrap().len(), 0);
        // Drawn again while the link is still WAN: JPEG again, not a cache hit.
        let (j2, _, lossy) = ci.image_for(&img(w, h, &p), false);
        assert!(lossy && matches!(j2.data, ImageData::Jpeg(_)));
        // The refine: lossless, exact, cached.
        let (q, _, lossy) = ci.image_for(&img(w, h, &p), true);
        assert!(!lossy, "refine was lossy: type {}", q.data.image_type());
        assert!(
            matches!(q.data, ImageData::Quic(_)),
            "type {}",
            q.data.image_type()
        );
        assert_ne!(q.flags & image_flags::CACHE_ME, 0);
        assert!(same_rgb(&decode(&q.data, w, h, &mut win), &p));
        // Now the same pixels are an exact cache hit, lossy allowed or not.
        for lossless_only in [false, true] {
            let (c, _, lossy) = ci.image_for(&img(w, h, &p), lossless_only);
            assert_eq!((c.data, c.id, lossy), (ImageData::FromCache, q.id, false));
        }
    }

    #[test]
    fn every_mode_round_trips_and_preference_overrides() {
        use ImageCompression as M;
        let (w, h) = (120, 90);
        let s = synthetic(w, h);
        let p = photo(w, h);
        for mode in [
            M::AutoGlz,
            M::AutoLz,
            M::Quic,
            M::Glz,
            M::Lz,
            M::Lz4,
            M::Off,
        ] {
            let mut ci = ClientImaging::new(M::Off, true);
            ci.preferred = Some(mode);
            ci.init(0, 1 << 20);
            let mut win = glz::Window::new(1 << 22);
            for px in [&s, &p, &s] {
                let (image, pre) = ci.image(&img(w, h, px));
                assert!(pre.is_empty());
                assert_eq!((image.width, image.height), (w, h));
                let got = decode(&image.data, w, h, &mut win);
                assert!(same_rgb(&got, px), "{mode:?}: pixels differ");
            }
        }
    }

    #[test]
    fn lz4_mode_sends_what_lz4_cannot_shrink_as_quic_or_lz() {
        let (w, h) = (160, 120);
        let raw_len = (w * h * 4) as usize;
        let s = synthetic(w, h);
        let p = photo(w, h);
        let mut st = 0x2545_f491u32;
        let noise: Vec<u8> = (0..w * h * 4)
            .map(|i| {
                st ^= st << 13;
                st ^= st >> 17;
                st ^= st << 5;
                if i % 4 == 3 {
                    0
                } else {
                    st as u8
                }
            })
            .collect();
        // The premise: LZ4 does not shrink the photo or the noise.
        for d in [&p, &noise] {
            assert!(lz4::encode(&img(w, h, d), false).unwrap().len() >= raw_len);
        }
        assert!(!is_photographic(&img(w, h, &noise)));
        let mut ci = ClientImaging::new(ImageCompression::Lz4, true);
        ci.init(0, 1 << 20);
        let mut win = glz::Window::new(1 << 22);
        use spice_proto::consts::image_type as t;
        for (name, px, want) in [
            ("synthetic", &s, t::LZ4),
            ("photo", &p, t::QUIC),
            ("noise", &noise, t::LZ_RGB),
        ] {
            let (image, _) = ci.image(&img(w, h, px));
            assert_eq!(image.data.image_type(), want, "{name}");
            let got = decode(&image.data, w, h, &mut win);
            assert!(same_rgb(&got, px), "{name}: pixels differ");
        }
    }

    #[test]
    fn cache_sends_repeats_from_cache_and_invalidates_before_reuse() {
        let (w, h) = (100, 100);
        let a = synthetic(w, h);
        let b = photo(w, h);
        let mut c = a.clone();
        c[0] ^= 0xff;
        let mut ci = ClientImaging::new(ImageCompression::Lz, false);
        // Room for two 100x100 images.
        ci.init(25_000, 0);
        let (ia, pre) = ci.image(&img(w, h, &a));
        assert!(pre.is_empty());
        assert_eq!(ia.flags & image_flags::CACHE_ME, image_flags::CACHE_ME);
        let (again, _) = ci.image(&img(w, h, &a));
        assert_eq!(again.data, ImageData::FromCache);
        assert_eq!(again.id, ia.id);
        let (ib, pre) = ci.image(&img(w, h, &b));
        assert!(pre.is_empty());
        assert_ne!(ib.id, ia.id);
        // `b` is newer than `a`'s last use, so a third image evicts `a`, and the
        // client hears about it before the image that takes its room.
        let (ic, pre) = ci.image(&img(w, h, &c));
        assert_eq!(pre.len(), 1);
        match DisplayServerMsg::decode(pre[0].msg_type, &pre[0].body).unwrap() {
            DisplayServerMsg::InvalList(l) => {
                assert_eq!(l.len(), 1);
                assert_eq!(l[0].id, ia.id);
                assert_eq!(l[0].resource_type, resource_type::PIXMAP);
            }
            m => panic!("expected INVAL_LIST, got {m:?}"),
        }
        assert_ne!(ic.data, ImageData::FromCache);
        let cache = ci.cache.as_ref().unwrap();
        assert_eq!((cache.len(), cache.used()), (2, 20_000));
        // `b` is still cached; `a` must be sent in full again.
        assert_eq!(ci.image(&img(w, h, &b)).0.data, ImageData::FromCache);
        assert_ne!(ci.image(&img(w, h, &a)).0.data, ImageData::FromCache);
    }

    #[test]
    fn small_or_oversized_images_are_not_cached() {
        let mut ci = ClientImaging::new(ImageCompression::Lz, false);
        ci.init(5_000, 0);
        let small = synthetic(32, 32);
        let big = synthetic(100, 100);
        for (w, h, d) in [(32, 32, &small), (100, 100, &big)] {
            let (i1, _) = ci.image(&img(w, h, d));
            let (i2, _) = ci.image(&img(w, h, d));
            assert_eq!(i1.flags, 0);
            assert_ne!(i2.data, ImageData::FromCache);
            assert_ne!(i1.id, i2.id);
        }
        // Without INIT there is no cache at all.
        let mut none = ClientImaging::new(ImageCompression::Lz, false);
        let (i, _) = none.image(&img(100, 100, &big));
        assert_eq!(i.flags, 0);
    }
}
