//! GLZ ("global LZ"): LZ whose matches may point into earlier images.
//!
//! Every image carries a 64-bit id; a match token names either an offset in
//! the current image or (image distance, absolute pixel offset) in an image
//! sent before, possibly on another display channel of the same client. Hence
//! one [`Window`] per client, shared by all display channels, keeps the
//! recently decoded images by id. Each header also says how far back the
//! encoder may still reach (`win_head_dist`), which lets the window forget
//! older images.
//!
//! Header (big-endian): magic, version, one byte `type | top_down << 4`,
//! width, height, stride, id (u64), win_head_dist (u32) — 29 bytes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::lz::{check_plausible, check_stride, rgb16_to_32, LzImageType, MAGIC, VERSION};
use crate::{check_dims, flip_rows, Bitmap, CodecError, ImageRef, Reader};

const CODEC: &str = "glz";
/// Size of the GLZ header.
pub const HEADER_LEN: usize = 29;
/// Default bound of a [`Window`] and of an [`Encoder`]'s dictionary, in pixels.
pub const DEFAULT_WINDOW_PIXELS: u64 = 1 << 24;

/// Parsed GLZ header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlzHeader {
    pub ty: LzImageType,
    pub top_down: bool,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub id: u64,
    pub win_head_dist: u32,
}

impl GlzHeader {
    /// Pixels the decoder produces: palette rows are `stride × pixels_per_byte` wide.
    pub fn gross_pixels(&self) -> u64 {
        if self.ty.is_palette() {
            u64::from(self.stride) * u64::from(self.ty.pixels_per_byte()) * u64::from(self.height)
        } else {
            u64::from(self.width) * u64::from(self.height)
        }
    }

    /// Oldest image id the sender may still reference after this image.
    pub fn oldest_needed(&self) -> u64 {
        self.id.saturating_sub(u64::from(self.win_head_dist))
    }
}

fn read_header(rd: &mut Reader<'_>) -> Result<GlzHeader, CodecError> {
    let magic = rd.be32()?;
    if magic != MAGIC {
        return Err(CodecError::BadMagic {
            codec: CODEC,
            found: magic,
        });
    }
    let version = rd.be32()?;
    if version != VERSION {
        return Err(CodecError::BadVersion {
            codec: CODEC,
            found: version,
        });
    }
    let tb = rd.u8()?;
    let tv = u32::from(tb & 0x0f);
    let ty = match LzImageType::from_u32(tv) {
        Some(t) if !matches!(t, LzImageType::Xxxa | LzImageType::A8) => t,
        _ => {
            return Err(CodecError::BadType {
                codec: CODEC,
                value: tv,
            })
        }
    };
    let width = rd.be32()?;
    let height = rd.be32()?;
    let stride = rd.be32()?;
    let id = rd.be64()?;
    let win_head_dist = rd.be32()?;
    check_dims(CODEC, width, height)?;
    if ty.is_palette() {
        check_stride(CODEC, ty, width, stride)?;
    }
    Ok(GlzHeader {
        ty,
        top_down: tb >> 4 != 0,
        width,
        height,
        stride,
        id,
        win_head_dist,
    })
}

/// Reads the header only (e.g. to learn the id before decoding).
pub fn parse_header(data: &[u8]) -> Result<GlzHeader, CodecError> {
    read_header(&mut Reader::new(CODEC, data))
}

struct WinImage {
    /// Decoded pixels in stream order, `gross_pixels` long.
    pixels: Arc<Vec<u32>>,
    /// Oldest id the sender could still reference after this image.
    oldest_needed: u64,
}

/// The client's GLZ dictionary: decoded images by id, bounded in pixels.
pub struct Window {
    images: BTreeMap<u64, WinImage>,
    /// Lowest id not yet received, counted from the first image seen.
    tail_gap: Option<u64>,
    pixels: u64,
    max_pixels: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window::new(DEFAULT_WINDOW_PIXELS)
    }
}

impl Window {
    /// A window holding at most `max_pixels` pixels (oldest images go first).
    pub fn new(max_pixels: u64) -> Self {
        Window {
            images: BTreeMap::new(),
            tail_gap: None,
            pixels: 0,
            max_pixels,
        }
    }

    pub fn contains(&self, id: u64) -> bool {
        self.images.contains_key(&id)
    }

    /// Number of images held.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Pixels currently held.
    pub fn pixels(&self) -> u64 {
        self.pixels
    }

    /// Forgets everything (the server reset its dictionary).
    pub fn clear(&mut self) {
        self.images.clear();
        self.tail_gap = None;
        self.pixels = 0;
    }

    fn add(&mut self, hdr: &GlzHeader, pixels: Vec<u32>) {
        let id = hdr.id;
        let n = pixels.len() as u64;
        if let Some(old) = self.images.insert(
            id,
            WinImage {
                pixels: Arc::new(pixels),
                oldest_needed: hdr.oldest_needed(),
            },
        ) {
            self.pixels -= old.pixels.len() as u64;
        }
        self.pixels += n;
        let mut gap = self.tail_gap.unwrap_or(id);
        while self.images.contains_key(&gap) {
            gap += 1;
        }
        self.tail_gap = Some(gap);
        // Release what the sender can no longer reference: judged from the
        // newest image of the contiguous prefix, as spice-gtk does.
        let oldest = match gap.checked_sub(1).and_then(|g| self.images.get(&g)) {
            Some(img) => img.oldest_needed,
            None => 0,
        };
        if oldest > 0 {
            let keep = self.images.split_off(&oldest);
            for img in self.images.values() {
                self.pixels -= img.pixels.len() as u64;
            }
            self.images = keep;
        }
        while self.pixels > self.max_pixels && self.images.len() > 1 {
            if let Some((_, img)) = self.images.pop_first() {
                self.pixels -= img.pixels.len() as u64;
            }
        }
    }
}

/// How a token stream pass writes into the output.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Whole pixels are copied; literals come from `lit`.
    Color,
    /// Only the alpha byte is written (second pass of RGBA).
    Alpha,
}

struct Lit<'p> {
    ty: LzImageType,
    palette: &'p [u32],
}

impl Lit<'_> {
    /// Units (pixels) produced by one literal byte group.
    fn scale(&self) -> usize {
        match self.ty {
            LzImageType::Plt1Le | LzImageType::Plt1Be => 8,
            LzImageType::Plt4Le | LzImageType::Plt4Be => 2,
            _ => 1,
        }
    }

    fn read(&self, rd: &mut Reader<'_>, out: &mut [u32]) -> Result<(), CodecError> {
        let pal = |i: usize| self.palette[i % self.palette.len()] & 0x00ff_ffff;
        match self.ty {
            LzImageType::Rgb32 | LzImageType::Rgb24 | LzImageType::Rgba => {
                let b = rd.take(3)?;
                out[0] = u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2]) << 16);
            }
            LzImageType::Rgb16 => {
                let b = rd.take(2)?;
                out[0] = rgb16_to_32(b[0], b[1]);
            }
            LzImageType::Plt8 => out[0] = pal(rd.u8()? as usize),
            LzImageType::Plt4Be => {
                let b = rd.u8()?;
                out[0] = pal((b >> 4) as usize);
                out[1] = pal((b & 15) as usize);
            }
            LzImageType::Plt4Le => {
                let b = rd.u8()?;
                out[0] = pal((b & 15) as usize);
                out[1] = pal((b >> 4) as usize);
            }
            LzImageType::Plt1Be | LzImageType::Plt1Le => {
                let b = rd.u8()?;
                for (k, o) in out.iter_mut().enumerate().take(8) {
                    let bit = if self.ty == LzImageType::Plt1Be {
                        7 - k
                    } else {
                        k
                    };
                    *o = pal(((b >> bit) & 1) as usize);
                }
            }
            LzImageType::Xxxa | LzImageType::A8 => return Err(rd.corrupt("type not valid in GLZ")),
        }
        Ok(())
    }
}

/// Decodes one GLZ token stream pass into `out` (stream order pixels).
fn decode_pass(
    rd: &mut Reader<'_>,
    out: &mut [u32],
    pass: Pass,
    lit: &Lit<'_>,
    id: u64,
    win: &Window,
) -> Result<(), CodecError> {
    let n = out.len();
    let scale = if pass == Pass::Alpha { 1 } else { lit.scale() };
    let bias = match (pass, lit.ty) {
        (Pass::Alpha, _) => 2,
        (_, LzImageType::Rgb32 | LzImageType::Rgb24 | LzImageType::Rgba) => 0,
        (_, LzImageType::Rgb16) => 1,
        _ => 2,
    };
    let mut op = 0usize;
    while op < n {
        let ctrl = rd.u8()? as usize;
        if ctrl >= 32 {
            let mut len = ctrl >> 5;
            let pixel_flag = (ctrl >> 4) & 1 != 0;
            let mut pofs = ctrl & 0x0f;
            if len == 7 {
                loop {
                    let c = rd.u8()?;
                    len += c as usize;
                    if c != 255 {
                        break;
                    }
                }
            }
            pofs += (rd.u8()? as usize) << 4;
            let code = rd.u8()?;
            let image_flag = (code >> 6) as usize;
            let mut image_dist: u64;
            if !pixel_flag {
                image_dist = u64::from(code & 0x3f);
                for i in 0..image_flag {
                    image_dist += u64::from(rd.u8()?) << (6 + 8 * i);
                }
            } else {
                let long = (code >> 5) & 1 != 0;
                pofs += ((code & 0x1f) as usize) << 12;
                image_dist = 0;
                for i in 0..image_flag {
                    image_dist += u64::from(rd.u8()?) << (8 * i);
                }
                if long {
                    pofs += (rd.u8()? as usize) << 17;
                }
            }
            len += bias;
            if image_dist == 0 {
                pofs += 1;
            }
            let len = len * scale;
            let pofs = pofs * scale;
            if len > n - op {
                return Err(rd.corrupt("match runs past the image end"));
            }
            if image_dist == 0 {
                if pofs > op {
                    return Err(rd.corrupt("match reaches before the image start"));
                }
                let start = op - pofs;
                match pass {
                    Pass::Color => {
                        if pofs >= len {
                            out.copy_within(start..start + len, op);
                        } else {
                            for k in 0..len {
                                out[op + k] = out[start + k];
                            }
                        }
                    }
                    Pass::Alpha => {
                        for k in 0..len {
                            out[op + k] =
                                (out[op + k] & 0x00ff_ffff) | (out[start + k] & 0xff00_0000);
                        }
                    }
                }
            } else {
                let rid = id
                    .checked_sub(image_dist)
                    .ok_or_else(|| rd.corrupt("reference to an image id below zero"))?;
                let src = &win
                    .images
                    .get(&rid)
                    .ok_or(CodecError::MissingImage { id: rid })?
                    .pixels;
                if pofs > src.len() || len > src.len() - pofs {
                    return Err(rd.corrupt("match runs past the referenced image"));
                }
                let src = &src[pofs..pofs + len];
                match pass {
                    Pass::Color => out[op..op + len].copy_from_slice(src),
                    Pass::Alpha => {
                        for (o, s) in out[op..op + len].iter_mut().zip(src) {
                            *o = (*o & 0x00ff_ffff) | (s & 0xff00_0000);
                        }
                    }
                }
            }
            op += len;
        } else {
            let cnt = (ctrl + 1) * scale;
            if cnt > n - op {
                return Err(rd.corrupt("literal run past the image end"));
            }
            match pass {
                Pass::Color => {
                    for k in 0..ctrl + 1 {
                        let at = op + k * scale;
                        lit.read(rd, &mut out[at..at + scale])?;
                    }
                }
                Pass::Alpha => {
                    for o in &mut out[op..op + cnt] {
                        *o = (*o & 0x00ff_ffff) | (u32::from(rd.u8()?) << 24);
                    }
                }
            }
            op += cnt;
        }
    }
    Ok(())
}

/// Decodes one GLZ image, adding it to `win`. Returns the image and its id.
///
/// If the image refers to an image the window does not hold (yet), this
/// returns [`CodecError::MissingImage`] and leaves the window unchanged:
/// retry once the other display channel delivered it (see [`SharedWindow`]).
pub fn decode(
    win: &mut Window,
    data: &[u8],
    palette: Option<&[u32]>,
) -> Result<(Bitmap, u64), CodecError> {
    let mut rd = Reader::new(CODEC, data);
    let h = read_header(&mut rd)?;
    let gross = h.gross_pixels();
    if gross > crate::MAX_PIXELS * 8 {
        return Err(CodecError::TooLarge {
            codec: CODEC,
            width: h.width.into(),
            height: h.height.into(),
        });
    }
    // A palette byte group expands to up to 8 pixels.
    check_plausible(&rd, gross / u64::from(h.ty.pixels_per_byte()))?;
    let pal_store;
    let pal: &[u32] = if h.ty.is_palette() {
        match palette {
            Some(p) if !p.is_empty() => p,
            _ => {
                return Err(CodecError::MissingPalette {
                    codec: CODEC,
                    value: h.ty as u32,
                })
            }
        }
    } else {
        pal_store = [0u32];
        &pal_store
    };
    let lit = Lit {
        ty: h.ty,
        palette: pal,
    };
    let mut px = vec![0u32; gross as usize];
    decode_pass(&mut rd, &mut px, Pass::Color, &lit, h.id, win)?;
    if h.ty == LzImageType::Rgba {
        decode_pass(&mut rd, &mut px, Pass::Alpha, &lit, h.id, win)?;
    }
    let (w, hh) = (h.width as usize, h.height as usize);
    let row_units = if h.ty.is_palette() {
        h.stride as usize * h.ty.pixels_per_byte() as usize
    } else {
        w
    };
    let mut data = Vec::with_capacity(w * hh * 4);
    for r in 0..hh {
        for p in &px[r * row_units..r * row_units + w] {
            data.extend_from_slice(&p.to_le_bytes());
        }
    }
    if !h.top_down {
        flip_rows(&mut data, w * 4);
    }
    win.add(&h, px);
    Ok((
        Bitmap {
            width: h.width,
            height: h.height,
            format: h.ty.pixel_format(),
            stride: w * 4,
            top_down: h.top_down,
            data,
        },
        h.id,
    ))
}

/// A [`Window`] shared by several display channels, with waiting for images
/// that another channel has not delivered yet.
#[derive(Clone, Default)]
pub struct SharedWindow {
    inner: Arc<(Mutex<Window>, Condvar)>,
}

impl SharedWindow {
    pub fn new(max_pixels: u64) -> Self {
        SharedWindow {
            inner: Arc::new((Mutex::new(Window::new(max_pixels)), Condvar::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // A panic elsewhere while holding the lock leaves a consistent map.
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until image `id` is in the window; false on timeout.
    pub fn wait_for(&self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        while !g.contains(id) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = match self.inner.1.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// Decodes, waiting up to `timeout` for referenced images from other channels.
    pub fn decode(
        &self,
        data: &[u8],
        palette: Option<&[u32]>,
        timeout: Duration,
    ) -> Result<(Bitmap, u64), CodecError> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = decode(&mut self.lock(), data, palette);
            match r {
                Err(CodecError::MissingImage { id }) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.wait_for(id, left) {
                        return Err(CodecError::MissingImage { id });
                    }
                }
                Ok(v) => {
                    self.inner.1.notify_all();
                    return Ok(v);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Forgets all images (dictionary reset).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Runs `f` with the window locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut Window) -> R) -> R {
        f(&mut self.lock())
    }
}

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

const HASH_BITS: u32 = 16;
const RING_BITS: u32 = 22;
const RING: u64 = 1 << RING_BITS;
const MAX_CHAIN: usize = 16;
const NONE: u32 = u32::MAX;
/// Largest pixel offset a token can carry (25 bits).
const MAX_PIXEL_OFS: usize = (1 << 25) - 1;
/// Largest image distance the long-offset token form can carry (3 bytes).
const MAX_IMAGE_DIST: u64 = (1 << 24) - 1;
/// How many recent same-size images are tried at the same pixel position.
const SAME_SIZE_CANDIDATES: usize = 8;
/// While no match turns up, the costly search runs every
/// `1 + min(literal run >> SKIP_SHIFT, MAX_SKIP)` pixels.
const SKIP_SHIFT: u32 = 4;
const MAX_SKIP: usize = 32;
/// From this many literal pixels on, the hash chain is walked only
/// `SHALLOW_CHAIN` deep: its entries are likely misses far in the history.
const DEEP_RUN: usize = 16;
const SHALLOW_CHAIN: usize = 4;

struct HistImage {
    id: u64,
    width: u32,
    /// Global position of the first pixel.
    base: u64,
    /// Colour keys (`0x00RRGGBB`) and, for RGBA images, alpha keys.
    color: Vec<u32>,
    alpha: Option<Vec<u32>>,
}

impl HistImage {
    fn keys(&self, pass: Pass) -> Option<&[u32]> {
        match pass {
            Pass::Color => Some(&self.color),
            Pass::Alpha => self.alpha.as_deref(),
        }
    }
}

/// Hash chains over the global pixel positions of one key kind.
struct Chains {
    head: Vec<u32>,
    /// Previous position with the same hash, by position modulo `RING`
    /// (low 32 bits of the global position).
    ring: Vec<u32>,
}

impl Chains {
    fn new() -> Self {
        Chains {
            head: vec![NONE; 1 << HASH_BITS],
            ring: vec![NONE; RING as usize],
        }
    }

    #[inline]
    fn insert(&mut self, keys: &[u32], p: usize, g: u64) {
        if p + 2 < keys.len() {
            let h = hash3(keys, p);
            self.ring[(g & (RING - 1)) as usize] = self.head[h];
            self.head[h] = g as u32;
        }
    }
}

/// A GLZ encoder with its own dictionary of previous images.
///
/// Ids start at 0 and increase by one per image, as spice-gtk's window
/// expects. One encoder serves one client: share it (behind a lock) between
/// the client's display channels so ids stay unique.
pub struct Encoder {
    next_id: u64,
    history: VecDeque<HistImage>,
    hist_pixels: u64,
    window_pixels: u64,
    next_base: u64,
    color: Chains,
    /// Allocated on the first RGBA image.
    alpha: Option<Chains>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new(DEFAULT_WINDOW_PIXELS)
    }
}

#[inline]
fn hash3(k: &[u32], i: usize) -> usize {
    let h = k[i].wrapping_mul(0x9E37_79B1)
        ^ k[i + 1].wrapping_mul(0x85EB_CA77).rotate_left(11)
        ^ k[i + 2].wrapping_mul(0xC2B2_AE3D).rotate_left(22);
    (h >> (32 - HASH_BITS)) as usize
}

#[inline]
fn common_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The longest match found so far at one position.
#[derive(Default)]
struct Best {
    len: usize,
    r: Option<Ref>,
}

impl Best {
    /// Considers the source `src` for the pixels `cur`.
    #[inline]
    fn offer(&mut self, src: &[u32], cur: &[u32], r: Ref) {
        let l = self.len;
        // Only a longer match matters, and it must agree at `l`: one
        // compare rejects most candidates.
        if l > 0 && (l >= src.len() || l >= cur.len() || src[l] != cur[l]) {
            return;
        }
        let m = common_len(src, cur);
        if m > l {
            *self = Best { len: m, r: Some(r) };
        }
    }
}

/// Where a match points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ref {
    /// Distance back in the current image.
    Same(usize),
    /// (image distance, absolute pixel offset) in an earlier image.
    Other(u64, usize),
}

fn put_glz_match(out: &mut Vec<u8>, v: usize, r: Ref) {
    let (pixel_flag, pofs, dist) = match r {
        Ref::Same(d) => {
            let s = d - 1;
            (s >= 1 << 12, s, 0u64)
        }
        Ref::Other(dist, ofs) => (ofs >= 1 << 12 || dist >= 1 << 30, ofs, dist),
    };
    let head = ((v.min(7) as u8) << 5) | (u8::from(pixel_flag) << 4) | (pofs & 0x0f) as u8;
    out.push(head);
    if v >= 7 {
        let mut r = v - 7;
        while r >= 255 {
            out.push(255);
            r -= 255;
        }
        out.push(r as u8);
    }
    out.push((pofs >> 4) as u8);
    if !pixel_flag {
        let flag = if dist < 1 << 6 {
            0
        } else if dist < 1 << 14 {
            1
        } else if dist < 1 << 22 {
            2
        } else {
            3
        };
        out.push(((flag as u8) << 6) | (dist & 0x3f) as u8);
        for i in 0..flag {
            out.push((dist >> (6 + 8 * i)) as u8);
        }
    } else {
        let flag = if dist == 0 {
            0
        } else if dist < 1 << 8 {
            1
        } else if dist < 1 << 16 {
            2
        } else {
            3
        };
        let long = pofs >= 1 << 17;
        out.push(((flag as u8) << 6) | (u8::from(long) << 5) | ((pofs >> 12) & 0x1f) as u8);
        for i in 0..flag {
            out.push((dist >> (8 * i)) as u8);
        }
        if long {
            out.push((pofs >> 17) as u8);
        }
    }
}

/// Bytes a match token takes (length extension aside).
fn token_cost(r: Ref) -> usize {
    match r {
        Ref::Same(d) if d <= 1 << 17 => 3,
        Ref::Same(_) => 4,
        Ref::Other(dist, ofs) if ofs < 1 << 12 && dist < 1 << 6 => 3,
        Ref::Other(_, ofs) if ofs < 1 << 12 => 4,
        Ref::Other(_, ofs) if ofs < 1 << 17 => 5,
        Ref::Other(_, _) => 6,
    }
}

impl Encoder {
    /// An encoder whose dictionary holds about `window_pixels` pixels.
    pub fn new(window_pixels: u64) -> Self {
        Encoder {
            next_id: 0,
            history: VecDeque::new(),
            hist_pixels: 0,
            window_pixels,
            next_base: 0,
            color: Chains::new(),
            alpha: None,
        }
    }

    /// Starts a fresh dictionary (the client's window must be reset too).
    pub fn reset(&mut self) {
        let w = self.window_pixels;
        *self = Encoder::new(w);
    }

    /// Id the next encoded image will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn locate(history: &VecDeque<HistImage>, g: u64) -> Option<&HistImage> {
        let idx = history.partition_point(|h| h.base <= g);
        let h = history.get(idx.checked_sub(1)?)?;
        (g < h.base + h.color.len() as u64).then_some(h)
    }

    /// Encodes `img` as GLZ type `ty` (`Rgb32` or `Rgba`), top-down.
    /// Returns the stream and the image id it carries.
    pub fn encode(
        &mut self,
        img: &ImageRef<'_>,
        ty: LzImageType,
    ) -> Result<(Vec<u8>, u64), CodecError> {
        img.validate(CODEC)?;
        if !matches!(ty, LzImageType::Rgb32 | LzImageType::Rgba) {
            return Err(CodecError::InvalidInput {
                codec: CODEC,
                reason: format!("GLZ encoding supports Rgb32 and Rgba, not {ty:?}"),
            });
        }
        let px = img.pixels_u32();
        let color: Vec<u32> = px.iter().map(|p| p & 0x00ff_ffff).collect();
        let alpha: Option<Vec<u32>> =
            (ty == LzImageType::Rgba).then(|| px.iter().map(|p| p >> 24).collect());
        let n = color.len();
        // Make room: the dictionary keeps whole images up to the pixel budget.
        while let Some(front) = self.history.front() {
            if self.hist_pixels + n as u64 <= self.window_pixels {
                break;
            }
            self.hist_pixels -= front.color.len() as u64;
            self.history.pop_front();
        }
        let id = self.next_id;
        let whd = self.history.front().map_or(0, |h| id - h.id);
        let whd = u32::try_from(whd).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(HEADER_LEN + n / 4 + 64);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.push((ty as u8) | (1 << 4));
        out.extend_from_slice(&img.width.to_be_bytes());
        out.extend_from_slice(&img.height.to_be_bytes());
        out.extend_from_slice(&(img.width * 4).to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&whd.to_be_bytes());
        let base = self.next_base;
        self.encode_pass(Pass::Color, &color, base, id, img.width, &mut out);
        if let Some(a) = &alpha {
            self.encode_pass(Pass::Alpha, a, base, id, img.width, &mut out);
        }
        self.hist_pixels += n as u64;
        self.next_base += n as u64;
        self.history.push_back(HistImage {
            id,
            width: img.width,
            base,
            color,
            alpha,
        });
        self.next_id += 1;
        Ok((out, id))
    }

    /// Keys of pass `pass` of the image `dist` images before `id`, if held.
    fn hist_keys(history: &VecDeque<HistImage>, id: u64, dist: u64, pass: Pass) -> Option<&[u32]> {
        let front = history.front()?.id;
        let k = id.checked_sub(dist)?.checked_sub(front)?;
        history.get(usize::try_from(k).ok()?)?.keys(pass)
    }

    /// Codes one pass: colour (bias 0, 3-byte literals) or alpha (bias 2,
    /// 1-byte literals), searching the current image and the dictionary.
    ///
    /// Cost control: the cheap candidates (previous pixel, row above, the
    /// last match's source) are tried at every pixel; the costly ones (same
    /// position in recent same-size images, the hash chain, whose entries are
    /// scattered over megapixels of history) only every `step` pixels, with
    /// `step` growing while no match turns up (noise, photos). A match found
    /// after a skip is extended backwards over the pixels skipped.
    fn encode_pass(
        &mut self,
        pass: Pass,
        keys: &[u32],
        base: u64,
        id: u64,
        width: u32,
        out: &mut Vec<u8>,
    ) {
        let n = keys.len();
        let (bias, min_short, min_long) = match pass {
            Pass::Color => (0usize, 2usize, 3usize),
            Pass::Alpha => (2, 4, 6),
        };
        let history = &self.history;
        let chains = match pass {
            Pass::Color => &mut self.color,
            Pass::Alpha => self.alpha.get_or_insert_with(Chains::new),
        };
        // "The same pixel in a recent image of this size": the commonest
        // redundancy between screen updates (including toggling states).
        let same_size: Vec<(u64, &[u32])> = history
            .iter()
            .rev()
            .filter(|h| h.width == width && h.color.len() == n && id - h.id <= MAX_IMAGE_DIST)
            .filter_map(|h| Some((id - h.id, h.keys(pass)?)))
            .take(SAME_SIZE_CANDIDATES)
            .collect();
        let flush = |out: &mut Vec<u8>, from: usize, to: usize| {
            let mut s = from;
            while s < to {
                let c = (to - s).min(32);
                out.push((c - 1) as u8);
                for &k in &keys[s..s + c] {
                    match pass {
                        Pass::Color => {
                            out.extend_from_slice(&[k as u8, (k >> 8) as u8, (k >> 16) as u8])
                        }
                        Pass::Alpha => out.push(k as u8),
                    }
                }
                s += c;
            }
        };
        let mut lit_start = 0usize;
        let mut i = 0usize;
        // First position where the costly search runs again.
        let mut next_search = 0usize;
        // The last match, as (reference, position it started at): after a
        // few differing pixels the same source often continues.
        let mut last: Option<(Ref, usize)> = None;
        while i < n {
            let cur = &keys[i..];
            let max = cur.len();
            let mut best = Best::default();
            let try_same = |d: usize, best: &mut Best| {
                if d == 0 || d > i || d - 1 > MAX_PIXEL_OFS {
                    return;
                }
                best.offer(&keys[i - d..i - d + max], cur, Ref::Same(d));
            };
            try_same(1, &mut best);
            if best.len < max {
                try_same(width as usize, &mut best);
            }
            match last {
                Some((Ref::Same(d), _)) if best.len < max => try_same(d, &mut best),
                Some((Ref::Other(dist, off), start)) if best.len < max => {
                    let off = off + (i - start);
                    if let Some(hk) = Self::hist_keys(history, id, dist, pass) {
                        if off < hk.len() && off <= MAX_PIXEL_OFS {
                            best.offer(&hk[off..], cur, Ref::Other(dist, off));
                        }
                    }
                }
                _ => {}
            }
            // A pixel already matched by a cheap candidate hints at structure
            // (the edge of a photo, text): search fully there.
            let full = i >= next_search || best.len > 0;
            if full {
                for &(dist, hk) in &same_size {
                    if best.len >= max {
                        break;
                    }
                    if i <= MAX_PIXEL_OFS {
                        best.offer(&hk[i..], cur, Ref::Other(dist, i));
                    }
                }
            }
            if full && best.len < max && i + 2 < n {
                let run = i - lit_start;
                let depth = if run >= DEEP_RUN {
                    SHALLOW_CHAIN
                } else {
                    MAX_CHAIN
                };
                let cur_g = base + i as u64;
                let mut g32 = chains.head[hash3(keys, i)];
                let mut steps = 0;
                let mut last_dist = 0u64;
                while g32 != NONE && steps < depth {
                    let dist = u64::from((cur_g as u32).wrapping_sub(g32));
                    if dist == 0 || dist >= RING || dist <= last_dist || dist > cur_g {
                        break;
                    }
                    last_dist = dist;
                    let g = cur_g - dist;
                    if g >= base {
                        try_same((cur_g - g) as usize, &mut best);
                    } else if let Some(h) = Self::locate(history, g) {
                        let off = (g - h.base) as usize;
                        let idist = id - h.id;
                        if off <= MAX_PIXEL_OFS && idist <= MAX_IMAGE_DIST {
                            if let Some(hk) = h.keys(pass) {
                                best.offer(&hk[off..], cur, Ref::Other(idist, off));
                            }
                        }
                    }
                    if best.len >= max {
                        break;
                    }
                    g32 = chains.ring[(g & (RING - 1)) as usize];
                    steps += 1;
                }
            }
            let accepted = best.r.filter(|&r| {
                best.len
                    >= if token_cost(r) <= 3 {
                        min_short
                    } else {
                        min_long
                    }
            });
            let Some(r) = accepted else {
                chains.insert(keys, i, base + i as u64);
                if full {
                    let run = i + 1 - lit_start;
                    next_search = i + 1 + (run >> SKIP_SHIFT).min(MAX_SKIP);
                }
                i += 1;
                continue;
            };
            // Pixels skipped before may belong to this match too.
            let (mut start, mut r, mut len) = (i, r, best.len);
            loop {
                if start == lit_start {
                    break;
                }
                let prev = match r {
                    Ref::Same(d) if start > d => keys[start - 1 - d],
                    Ref::Other(dist, off) if off > 0 => {
                        match Self::hist_keys(history, id, dist, pass) {
                            Some(hk) => hk[off - 1],
                            None => break,
                        }
                    }
                    _ => break,
                };
                if prev != keys[start - 1] {
                    break;
                }
                start -= 1;
                len += 1;
                if let Ref::Other(dist, off) = r {
                    r = Ref::Other(dist, off - 1);
                }
            }
            flush(out, lit_start, start);
            put_glz_match(out, len - bias, r);
            last = Some((r, start));
            let end = start + len;
            // Index every position of short matches; long ones (runs) only
            // at their ends, which keeps flat areas cheap. Positions before
            // `i` were indexed as literals already.
            if end - i <= 64 {
                for p in i..end {
                    chains.insert(keys, p, base + p as u64);
                }
            } else {
                for p in (i..i + 32).chain(end - 32..end) {
                    chains.insert(keys, p, base + p as u64);
                }
            }
            i = end;
            lit_start = i;
            next_search = i;
        }
        flush(out, lit_start, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| f(x, y).to_le_bytes())
            .collect()
    }

    fn noise_image(w: u32, h: u32, seed: u32, mask: u32) -> Vec<u8> {
        let mut st = seed | 1;
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        for _ in 0..w * h {
            st ^= st << 13;
            st ^= st >> 17;
            st ^= st << 5;
            v.extend_from_slice(&(st & mask).to_le_bytes());
        }
        v
    }

    /// Noise makes the encoder search only every few pixels; a copy of an
    /// earlier image that starts inside such a stretch must still be found
    /// from its first pixel on (backward extension) and decode exactly.
    #[test]
    fn copy_inside_noise_is_found_from_its_start() {
        let (w, h) = (256u32, 64u32);
        let a = noise_image(w, h, 7, 0x00ff_ffff);
        let mut b = noise_image(w, h, 99, 0x00ff_ffff);
        // Six bands of 1024 pixels of `a` taken from unrelated positions,
        // each starting mid-row after over a thousand pixels of noise.
        let len = 1024usize;
        for j in 0..6 {
            let to = (4 + 10 * j) * w as usize + 37 * j + 5;
            let from = (2 + 9 * j) * w as usize + 11 * j + 3;
            b[to * 4..(to + len) * 4].copy_from_slice(&a[from * 4..(from + len) * 4]);
        }
        let mut enc = Encoder::default();
        let mut win = Window::default();
        let mut sizes = Vec::new();
        for data in [&a, &b] {
            let img = ImageRef {
                width: w,
                height: h,
                stride: w as usize * 4,
                data,
            };
            let (s, _) = enc.encode(&img, LzImageType::Rgb32).unwrap();
            let (dec, _) = decode(&mut win, &s, None).unwrap();
            let want: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, &v)| if i % 4 == 3 { 0 } else { v })
                .collect();
            assert_eq!(dec.data, want);
            sizes.push(s.len());
        }
        // Literal pixels cost 3 bytes plus one control byte per 32.
        let literal = |px: usize| px * 3 + px.div_ceil(32);
        let noise_px = (w * h) as usize - 6 * len;
        // Per band: a match token of at most 6 bytes + 4 length bytes, and
        // one more literal control byte. Starting a band k pixels late
        // costs 3k bytes more.
        assert!(
            sizes[1] <= HEADER_LEN + literal(noise_px) + 6 * 11,
            "copy not matched from its start: {} bytes, noise alone {}",
            sizes[1],
            HEADER_LEN + literal(noise_px)
        );
    }

    /// The search gives up on noise: a noisy image after a long history of
    /// noisy images costs about what its literals cost, quickly.
    #[test]
    fn noise_stays_literal_and_round_trips() {
        let (w, h) = (320u32, 240u32);
        let mut enc = Encoder::new(1 << 22);
        let mut win = Window::new(1 << 22);
        for k in 0..6 {
            let d = noise_image(w, h, 1000 + k, u32::MAX);
            let img = ImageRef {
                width: w,
                height: h,
                stride: w as usize * 4,
                data: &d,
            };
            let (s, _) = enc.encode(&img, LzImageType::Rgba).unwrap();
            let (dec, _) = decode(&mut win, &s, None).unwrap();
            assert_eq!(dec.data, d);
            let px = (w * h) as usize;
            assert!(s.len() <= HEADER_LEN + px * 4 + px.div_ceil(32) * 2 + 64);
        }
    }

    #[test]
    fn cross_image_reference_needs_the_window() {
        let mut enc = Encoder::default();
        let noise = |x: u32, y: u32| {
            (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40503)).rotate_left(7) & 0xffffff
        };
        let a = image(64, 32, noise);
        let ia = ImageRef {
            width: 64,
            height: 32,
            stride: 256,
            data: &a,
        };
        let (s0, id0) = enc.encode(&ia, LzImageType::Rgb32).unwrap();
        let (s1, id1) = enc.encode(&ia, LzImageType::Rgb32).unwrap();
        assert_eq!((id0, id1), (0, 1));
        assert!(
            s1.len() < s0.len() / 10,
            "second copy {} vs {}",
            s1.len(),
            s0.len()
        );
        let mut win = Window::default();
        // Second image alone: its reference is missing, window unchanged.
        assert_eq!(
            decode(&mut win, &s1, None).unwrap_err(),
            CodecError::MissingImage { id: 0 }
        );
        assert!(win.is_empty());
        let (b0, _) = decode(&mut win, &s0, None).unwrap();
        let (b1, _) = decode(&mut win, &s1, None).unwrap();
        assert_eq!(
            b0.data,
            a.iter()
                .enumerate()
                .map(|(i, &v)| if i % 4 == 3 { 0 } else { v })
                .collect::<Vec<_>>()
        );
        assert_eq!(b1.data, b0.data);
    }
}
