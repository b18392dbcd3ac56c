//! SPICE LZ: a FastLZ-level-2 style coder working on pixels rather than bytes.
//!
//! A stream is a 28-byte header of big-endian words (magic `"  ZL"` read as a
//! big-endian u32, version 1.1, image type, width, height, stride, top_down)
//! followed by tokens. A control byte below 32 announces `ctrl + 1` literal
//! pixels; otherwise its top 3 bits hold a (biased) match length and its low 5
//! bits the high part of a (biased) distance, both counted in pixels. For RGBA
//! the colour stream is followed by a second stream coding only the alpha
//! bytes; palette images are coded as bytes of packed indices.

use crate::{check_dims, flip_rows, Bitmap, CodecError, ImageRef, PixelFormat, Reader};

const CODEC: &str = "lz";

/// `"LZ  "` stored as a big-endian word: the bytes on the wire are `"  ZL"`.
pub const MAGIC: u32 = 0x2020_5a4c;
/// Version 1.1.
pub const VERSION: u32 = 0x0001_0001;
/// Size of the header preceding the token stream.
pub const HEADER_LEN: usize = 28;

/// Longest distance that fits the two-byte form; larger ones use the far form.
const MAX_NEAR_DIST: usize = 8191;
/// Longest distance the far form can express (biased offset 8191 + 65535).
const MAX_FAR_DIST: usize = 8191 + 65535 + 1;
const MAX_COPY: usize = 32;

/// Image types of the LZ and GLZ headers (values are the wire values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum LzImageType {
    Plt1Le = 1,
    Plt1Be = 2,
    Plt4Le = 3,
    Plt4Be = 4,
    Plt8 = 5,
    Rgb16 = 6,
    Rgb24 = 7,
    Rgb32 = 8,
    Rgba = 9,
    Xxxa = 10,
    A8 = 11,
}

impl LzImageType {
    pub fn from_u32(v: u32) -> Option<Self> {
        use LzImageType::*;
        Some(match v {
            1 => Plt1Le,
            2 => Plt1Be,
            3 => Plt4Le,
            4 => Plt4Be,
            5 => Plt8,
            6 => Rgb16,
            7 => Rgb24,
            8 => Rgb32,
            9 => Rgba,
            10 => Xxxa,
            11 => A8,
            _ => return None,
        })
    }

    pub fn is_palette(self) -> bool {
        (self as u32) <= 5
    }

    /// Pixels per byte for palette types (1 for all other types).
    pub fn pixels_per_byte(self) -> u32 {
        match self {
            LzImageType::Plt1Le | LzImageType::Plt1Be => 8,
            LzImageType::Plt4Le | LzImageType::Plt4Be => 2,
            _ => 1,
        }
    }

    /// Bytes per pixel in the uncompressed source (palette types: 1, as bytes).
    pub fn bytes_per_pixel(self) -> u32 {
        match self {
            LzImageType::Rgb16 => 2,
            LzImageType::Rgb24 => 3,
            LzImageType::Rgb32 | LzImageType::Rgba | LzImageType::Xxxa => 4,
            _ => 1,
        }
    }

    pub fn pixel_format(self) -> PixelFormat {
        use LzImageType::*;
        match self {
            Plt1Le => PixelFormat::Plt1Le,
            Plt1Be => PixelFormat::Plt1Be,
            Plt4Le => PixelFormat::Plt4Le,
            Plt4Be => PixelFormat::Plt4Be,
            Plt8 => PixelFormat::Plt8,
            Rgb16 => PixelFormat::Rgb16,
            Rgb24 => PixelFormat::Rgb24,
            Rgb32 => PixelFormat::Rgb32,
            Rgba => PixelFormat::Rgba,
            Xxxa => PixelFormat::Xxxa,
            A8 => PixelFormat::A8,
        }
    }

    /// Length bias of match tokens: the shortest match the format can express.
    pub(crate) fn lz_bias(self) -> usize {
        match self {
            LzImageType::Rgb32 | LzImageType::Rgb24 => 1,
            LzImageType::Rgb16 => 2,
            _ => 3,
        }
    }
}

/// Checks stride against width as spice's `lz_set_sizes` does, and that the
/// decoded rows cover the width (so cropping never reads past a row).
pub(crate) fn check_stride(
    codec: &'static str,
    ty: LzImageType,
    width: u32,
    stride: u32,
) -> Result<(), CodecError> {
    let bad = CodecError::BadStride {
        codec,
        stride,
        width,
    };
    if ty.is_palette() {
        let ppb = ty.pixels_per_byte();
        let min = width.div_ceil(ppb);
        if stride != min {
            return Err(bad);
        }
    } else if u64::from(stride) != u64::from(width) * u64::from(ty.bytes_per_pixel()) {
        return Err(bad);
    }
    Ok(())
}

/// Parsed LZ header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LzHeader {
    pub ty: LzImageType,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub top_down: bool,
}

fn read_header(rd: &mut Reader<'_>) -> Result<LzHeader, CodecError> {
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
    let tv = rd.be32()?;
    let ty = LzImageType::from_u32(tv).ok_or(CodecError::BadType {
        codec: CODEC,
        value: tv,
    })?;
    let width = rd.be32()?;
    let height = rd.be32()?;
    let stride = rd.be32()?;
    let top_down = rd.be32()? != 0;
    check_dims(CODEC, width, height)?;
    check_stride(CODEC, ty, width, stride)?;
    Ok(LzHeader {
        ty,
        width,
        height,
        stride,
        top_down,
    })
}

/// Reads only the header, e.g. to learn the size before decoding.
pub fn parse_header(data: &[u8]) -> Result<LzHeader, CodecError> {
    read_header(&mut Reader::new(CODEC, data))
}

/// Rejects unit counts that no stream of `remaining` bytes could produce, so a
/// tiny hostile header cannot make us allocate a huge output buffer.
pub(crate) fn check_plausible(rd: &Reader<'_>, units: u64) -> Result<(), CodecError> {
    // A token byte expands to at most 255 units (length extension bytes).
    if units > (rd.remaining() as u64 + 1) * 256 {
        return Err(rd.corrupt("stream too short for the announced image size"));
    }
    Ok(())
}

/// Decodes the LZ token stream into `out`; `lit` reads one literal unit.
#[inline]
pub(crate) fn decode_tokens<T: Copy>(
    rd: &mut Reader<'_>,
    out: &mut [T],
    bias: usize,
    mut lit: impl FnMut(&mut Reader<'_>) -> Result<T, CodecError>,
) -> Result<(), CodecError> {
    let n = out.len();
    let mut op = 0usize;
    while op < n {
        let ctrl = rd.u8()? as usize;
        if ctrl >= MAX_COPY {
            let mut len = (ctrl >> 5) - 1;
            let hi = ctrl & 31;
            if len == 6 {
                loop {
                    let c = rd.u8()?;
                    len += c as usize;
                    if c != 255 {
                        break;
                    }
                }
            }
            let lo = rd.u8()? as usize;
            let mut ofs = (hi << 8) + lo;
            if lo == 255 && hi == 31 {
                let a = rd.u8()? as usize;
                let b = rd.u8()? as usize;
                ofs = ((a << 8) | b) + MAX_NEAR_DIST;
            }
            let len = len + bias;
            let ofs = ofs + 1;
            if ofs > op {
                return Err(rd.corrupt("match reaches before the image start"));
            }
            if len > n - op {
                return Err(rd.corrupt("match runs past the image end"));
            }
            let start = op - ofs;
            if ofs >= len {
                out.copy_within(start..start + len, op);
            } else {
                // Overlapping copy: forward pixel by pixel, which repeats the pattern.
                for k in 0..len {
                    out[op + k] = out[start + k];
                }
            }
            op += len;
        } else {
            let cnt = ctrl + 1;
            if cnt > n - op {
                return Err(rd.corrupt("literal run past the image end"));
            }
            for slot in &mut out[op..op + cnt] {
                *slot = lit(rd)?;
            }
            op += cnt;
        }
    }
    Ok(())
}

/// Spice's 15-bit → 32-bit colour expansion (replicating the top bits).
#[inline]
pub(crate) fn rgb16_to_32(hi: u8, lo: u8) -> u32 {
    let r = (hi << 1) & !7 | ((hi >> 4) & 7);
    let g0 = ((hi << 6) | (lo >> 2)) & !7;
    let g = g0 | (g0 >> 5);
    let b = (lo << 3) | ((lo >> 2) & 7);
    u32::from(b) | (u32::from(g) << 8) | (u32::from(r) << 16)
}

/// 32-bit colour → x1r5g5b5 by truncation.
#[inline]
pub(crate) fn rgb32_to_16(p: u32) -> u16 {
    let b = (p & 0xff) >> 3;
    let g = ((p >> 8) & 0xff) >> 3;
    let r = ((p >> 16) & 0xff) >> 3;
    ((r << 10) | (g << 5) | b) as u16
}

/// Expands packed palette indices (stream order rows of `stride` bytes) into
/// `width` 32-bit pixels per row, as spice's canvas does (X byte zero).
pub(crate) fn expand_palette(
    codec: &'static str,
    ty: LzImageType,
    bytes: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    palette: Option<&[u32]>,
) -> Result<Vec<u32>, CodecError> {
    let pal = match palette {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(CodecError::MissingPalette {
                codec,
                value: ty as u32,
            })
        }
    };
    // Indices beyond the palette wrap, as spice does for 4-bit palettes; it
    // reads out of bounds for the other types, which we must not.
    let ent = |i: usize| pal[i % pal.len()] & 0x00ff_ffff;
    if width == 0 || height == 0 || stride == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(width * height);
    for row in bytes.chunks_exact(stride).take(height) {
        for x in 0..width {
            let idx = match ty {
                LzImageType::Plt8 => row[x] as usize,
                LzImageType::Plt4Be => {
                    (row[x / 2] >> (if x % 2 == 0 { 4 } else { 0 }) & 0xf) as usize
                }
                LzImageType::Plt4Le => {
                    (row[x / 2] >> (if x % 2 == 0 { 0 } else { 4 }) & 0xf) as usize
                }
                LzImageType::Plt1Be => ((row[x / 8] >> (7 - x % 8)) & 1) as usize,
                LzImageType::Plt1Le => ((row[x / 8] >> (x % 8)) & 1) as usize,
                _ => unreachable!("expand_palette called for a non-palette type"),
            };
            out.push(ent(idx));
        }
    }
    Ok(out)
}

fn u32s_to_bytes(px: &[u32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(px.len() * 4);
    for p in px {
        v.extend_from_slice(&p.to_le_bytes());
    }
    v
}

/// Decodes a complete LZ image. `palette` (entries `0x00RRGGBB`) is needed
/// for the palette types only.
pub fn decode(data: &[u8], palette: Option<&[u32]>) -> Result<Bitmap, CodecError> {
    decode_inner(data, palette).map(|(b, _)| b)
}

/// Like [`decode`], also returning how many input bytes the image used.
pub fn decode_with_len(
    data: &[u8],
    palette: Option<&[u32]>,
) -> Result<(Bitmap, usize), CodecError> {
    decode_inner(data, palette)
}

fn decode_inner(data: &[u8], palette: Option<&[u32]>) -> Result<(Bitmap, usize), CodecError> {
    let mut rd = Reader::new(CODEC, data);
    let h = read_header(&mut rd)?;
    let (w, hgt) = (h.width as usize, h.height as usize);
    let n = w * hgt;
    let pixels: Vec<u32> = match h.ty {
        LzImageType::Rgb32 | LzImageType::Rgb24 | LzImageType::Rgba => {
            check_plausible(&rd, n as u64)?;
            let mut px = vec![0u32; n];
            decode_tokens(&mut rd, &mut px, 1, |r| {
                let b = r.take(3)?;
                Ok(u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2]) << 16))
            })?;
            if h.ty == LzImageType::Rgba {
                let mut a = vec![0u8; n];
                decode_tokens(&mut rd, &mut a, 3, |r| r.u8())?;
                for (p, a) in px.iter_mut().zip(a) {
                    *p |= u32::from(a) << 24;
                }
            }
            px
        }
        LzImageType::Rgb16 => {
            check_plausible(&rd, n as u64)?;
            let mut px = vec![0u32; n];
            decode_tokens(&mut rd, &mut px, 2, |r| {
                let b = r.take(2)?;
                Ok(rgb16_to_32(b[0], b[1]))
            })?;
            px
        }
        LzImageType::Xxxa | LzImageType::A8 => {
            check_plausible(&rd, n as u64)?;
            let mut a = vec![0u8; n];
            decode_tokens(&mut rd, &mut a, 3, |r| r.u8())?;
            a.into_iter().map(|a| u32::from(a) << 24).collect()
        }
        _ => {
            if palette.map_or(true, |p| p.is_empty()) {
                return Err(CodecError::MissingPalette {
                    codec: CODEC,
                    value: h.ty as u32,
                });
            }
            let nbytes = h.stride as usize * hgt;
            check_plausible(&rd, nbytes as u64)?;
            let mut bytes = vec![0u8; nbytes];
            decode_tokens(&mut rd, &mut bytes, 3, |r| r.u8())?;
            expand_palette(CODEC, h.ty, &bytes, h.stride as usize, w, hgt, palette)?
        }
    };
    let mut out = u32s_to_bytes(&pixels);
    if !h.top_down {
        flip_rows(&mut out, w * 4);
    }
    Ok((
        Bitmap {
            width: h.width,
            height: h.height,
            format: h.ty.pixel_format(),
            stride: w * 4,
            top_down: h.top_down,
            data: out,
        },
        rd.pos,
    ))
}

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

const HASH_BITS: u32 = 15;
const WINDOW: usize = 1 << 17;
const MAX_CHAIN: usize = 16;
const NONE: u32 = u32::MAX;

/// Match-finder parameters for one unit kind.
pub(crate) struct UnitSpec {
    /// Shortest match the token can carry.
    pub bias: usize,
    /// Shortest match worth a two-byte token.
    pub min_near: usize,
    /// Shortest match worth a four-byte (far) token.
    pub min_far: usize,
}

impl UnitSpec {
    pub(crate) fn for_type(ty: LzImageType) -> UnitSpec {
        match ty.lz_bias() {
            1 => UnitSpec {
                bias: 1,
                min_near: 2,
                min_far: 2,
            },
            2 => UnitSpec {
                bias: 2,
                min_near: 2,
                min_far: 3,
            },
            _ => UnitSpec {
                bias: 3,
                min_near: 3,
                min_far: 5,
            },
        }
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
fn match_len(k: &[u32], a: usize, b: usize, max: usize) -> usize {
    let mut l = 0;
    while l < max && k[a + l] == k[b + l] {
        l += 1;
    }
    l
}

/// Hash-chain match finder over a sliding window of positions.
struct Chains {
    head: Vec<u32>,
    prev: Vec<u32>,
}

impl Chains {
    fn new() -> Self {
        Chains {
            head: vec![NONE; 1 << HASH_BITS],
            prev: vec![NONE; WINDOW],
        }
    }

    #[inline]
    fn insert(&mut self, k: &[u32], i: usize) {
        if i + 2 < k.len() {
            let h = hash3(k, i);
            self.prev[i & (WINDOW - 1)] = self.head[h];
            self.head[h] = i as u32;
        }
    }

    /// Best (length, distance) at `i`, trying the run, the row above and the chain.
    fn find(&self, k: &[u32], i: usize, row: usize, rep: usize, spec: &UnitSpec) -> (usize, usize) {
        let max = k.len() - i;
        let mut best = (0usize, 0usize);
        let consider = |d: usize, best: &mut (usize, usize)| {
            if d == 0 || d > i || d >= MAX_FAR_DIST {
                return;
            }
            let j = i - d;
            if best.0 > 0 && (best.0 >= max || k[j + best.0] != k[i + best.0]) {
                return;
            }
            let l = match_len(k, j, i, max);
            if l > best.0 || (l == best.0 && d < best.1) {
                *best = (l, d);
            }
        };
        consider(1, &mut best);
        if best.0 < max {
            consider(row, &mut best);
        }
        if best.0 < max && rep != row {
            consider(rep, &mut best);
        }
        if best.0 < max && i + 2 < k.len() {
            let mut j = self.head[hash3(k, i)];
            let mut steps = 0;
            while j != NONE && steps < MAX_CHAIN {
                let ju = j as usize;
                if ju >= i || i - ju >= MAX_FAR_DIST {
                    break;
                }
                consider(i - ju, &mut best);
                if best.0 >= max {
                    break;
                }
                let nj = self.prev[ju & (WINDOW - 1)];
                if nj != NONE && nj >= j {
                    break;
                }
                j = nj;
                steps += 1;
            }
        }
        let min = if best.1 <= MAX_NEAR_DIST {
            spec.min_near
        } else {
            spec.min_far
        };
        if best.0 < min.max(spec.bias) {
            (0, 0)
        } else {
            best
        }
    }
}

/// Emits one LZ match token (length `len` ≥ bias pixels, distance `d` ≥ 1).
#[inline]
pub(crate) fn put_match(out: &mut Vec<u8>, len: usize, bias: usize, d: usize) {
    let v = len - bias + 1;
    let s = d - 1;
    let (hi, far) = if s < MAX_NEAR_DIST {
        ((s >> 8) as u8, false)
    } else {
        (31u8, true)
    };
    if v < 7 {
        out.push(((v as u8) << 5) | hi);
    } else {
        out.push((7 << 5) | hi);
        let mut r = v - 7;
        while r >= 255 {
            out.push(255);
            r -= 255;
        }
        out.push(r as u8);
    }
    if far {
        let f = s - MAX_NEAR_DIST;
        out.push(255);
        out.push((f >> 8) as u8);
        out.push(f as u8);
    } else {
        out.push(s as u8);
    }
}

/// Encodes `keys` (one comparable value per unit) as LZ tokens; `lit` writes
/// the literal bytes of one unit.
pub(crate) fn encode_tokens(
    keys: &[u32],
    row: usize,
    spec: &UnitSpec,
    out: &mut Vec<u8>,
    lit: impl Fn(&mut Vec<u8>, u32),
) {
    let n = keys.len();
    let mut ch = Chains::new();
    let flush = |out: &mut Vec<u8>, from: usize, to: usize| {
        let mut s = from;
        while s < to {
            let c = (to - s).min(MAX_COPY);
            out.push((c - 1) as u8);
            for &k in &keys[s..s + c] {
                lit(out, k);
            }
            s += c;
        }
    };
    let mut lit_start = 0usize;
    let mut i = 0usize;
    // Distance of the previous match: repeated structures reuse it.
    let mut rep = 0usize;
    while i < n {
        let (len, d) = ch.find(keys, i, row, rep, spec);
        if len == 0 {
            ch.insert(keys, i);
            i += 1;
            continue;
        }
        flush(out, lit_start, i);
        put_match(out, len, spec.bias, d);
        rep = d;
        // Index every position of short matches; long ones (runs) only at their
        // ends, which keeps flat areas cheap without losing useful entries.
        if len <= 64 {
            for p in i..i + len {
                ch.insert(keys, p);
            }
        } else {
            for p in (i..i + 32).chain(i + len - 32..i + len) {
                ch.insert(keys, p);
            }
        }
        i += len;
        lit_start = i;
    }
    flush(out, lit_start, n);
}

fn put_header(
    out: &mut Vec<u8>,
    ty: LzImageType,
    width: u32,
    height: u32,
    stride: u32,
    top_down: bool,
) {
    for w in [
        MAGIC,
        VERSION,
        ty as u32,
        width,
        height,
        stride,
        u32::from(top_down),
    ] {
        out.extend_from_slice(&w.to_be_bytes());
    }
}

fn encode_rgb_keys(keys: &[u32], row: usize, out: &mut Vec<u8>) {
    encode_tokens(
        keys,
        row,
        &UnitSpec::for_type(LzImageType::Rgb32),
        out,
        |o, k| o.extend_from_slice(&[k as u8, (k >> 8) as u8, (k >> 16) as u8]),
    );
}

fn encode_byte_keys(keys: &[u32], row: usize, out: &mut Vec<u8>) {
    encode_tokens(
        keys,
        row,
        &UnitSpec::for_type(LzImageType::A8),
        out,
        |o, k| o.push(k as u8),
    );
}

/// Encodes a 32-bit image as LZ of type `ty`, rows top-down.
///
/// Supported: `Rgb32`, `Rgb24` (the X byte is dropped), `Rgba`, `Xxxa`, `A8`
/// (alpha only) and `Rgb16` (colours truncated to 5 bits). Palette types need
/// index data: use [`encode_raw`].
pub fn encode(img: &ImageRef<'_>, ty: LzImageType) -> Result<Vec<u8>, CodecError> {
    img.validate(CODEC)?;
    let px = img.pixels_u32();
    let (w, h) = (img.width, img.height);
    let row = w as usize;
    let mut out = Vec::with_capacity(HEADER_LEN + px.len() / 4 + 64);
    match ty {
        LzImageType::Rgb32 | LzImageType::Rgb24 | LzImageType::Rgba => {
            put_header(&mut out, ty, w, h, w * ty.bytes_per_pixel(), true);
            let keys: Vec<u32> = px.iter().map(|p| p & 0x00ff_ffff).collect();
            encode_rgb_keys(&keys, row, &mut out);
            if ty == LzImageType::Rgba {
                let a: Vec<u32> = px.iter().map(|p| p >> 24).collect();
                encode_byte_keys(&a, row, &mut out);
            }
        }
        LzImageType::Xxxa | LzImageType::A8 => {
            put_header(&mut out, ty, w, h, w * ty.bytes_per_pixel(), true);
            let a: Vec<u32> = px.iter().map(|p| p >> 24).collect();
            encode_byte_keys(&a, row, &mut out);
        }
        LzImageType::Rgb16 => {
            put_header(&mut out, ty, w, h, w * 2, true);
            let keys: Vec<u32> = px.iter().map(|&p| u32::from(rgb32_to_16(p))).collect();
            encode_tokens(&keys, row, &UnitSpec::for_type(ty), &mut out, |o, k| {
                o.extend_from_slice(&[(k >> 8) as u8, k as u8])
            });
        }
        _ => {
            return Err(CodecError::InvalidInput {
                codec: CODEC,
                reason: format!("palette type {ty:?} needs index data; use lz::encode_raw"),
            })
        }
    }
    Ok(out)
}

/// Encodes pixels already in the type's own layout (as a QXL bitmap holds
/// them): rows of `stride` bytes, in the order given (`top_down` says which).
/// For palette types the data are packed indices and `stride` must be
/// `ceil(width / pixels_per_byte)`; for the others `stride` must be
/// `width * bytes_per_pixel` (RGB16 as little-endian u16 words).
pub fn encode_raw(
    ty: LzImageType,
    width: u32,
    height: u32,
    stride: u32,
    top_down: bool,
    data: &[u8],
) -> Result<Vec<u8>, CodecError> {
    check_dims(CODEC, width, height)?;
    check_stride(CODEC, ty, width, stride)?;
    let total = stride as usize * height as usize;
    if data.len() < total {
        return Err(CodecError::InvalidInput {
            codec: CODEC,
            reason: format!("buffer of {} bytes is shorter than {total}", data.len()),
        });
    }
    let data = &data[..total];
    let row = width as usize;
    let mut out = Vec::with_capacity(HEADER_LEN + total / 4 + 64);
    put_header(&mut out, ty, width, height, stride, top_down);
    let quad = |c: &[u8]| u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    match ty {
        LzImageType::Rgb32 | LzImageType::Rgba => {
            let keys: Vec<u32> = data
                .chunks_exact(4)
                .map(|c| quad(c) & 0x00ff_ffff)
                .collect();
            encode_rgb_keys(&keys, row, &mut out);
            if ty == LzImageType::Rgba {
                let a: Vec<u32> = data.chunks_exact(4).map(|c| u32::from(c[3])).collect();
                encode_byte_keys(&a, row, &mut out);
            }
        }
        LzImageType::Xxxa => {
            let a: Vec<u32> = data.chunks_exact(4).map(|c| u32::from(c[3])).collect();
            encode_byte_keys(&a, row, &mut out);
        }
        LzImageType::Rgb24 => {
            let keys: Vec<u32> = data
                .chunks_exact(3)
                .map(|c| u32::from(c[0]) | (u32::from(c[1]) << 8) | (u32::from(c[2]) << 16))
                .collect();
            encode_rgb_keys(&keys, row, &mut out);
        }
        LzImageType::Rgb16 => {
            let keys: Vec<u32> = data
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]) & 0x7fff))
                .collect();
            encode_tokens(&keys, row, &UnitSpec::for_type(ty), &mut out, |o, k| {
                o.extend_from_slice(&[(k >> 8) as u8, k as u8])
            });
        }
        _ => {
            let keys: Vec<u32> = data.iter().map(|&b| u32::from(b)).collect();
            encode_byte_keys(&keys, stride as usize, &mut out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32, f: impl Fn(u32, u32) -> u32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&f(x, y).to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn rgb16_expansion_matches_spice_bit_replication() {
        // pure white, pure red, and a mid value
        assert_eq!(rgb16_to_32(0x7f, 0xff), 0x00ff_ffff);
        assert_eq!(rgb16_to_32(0x7c, 0x00), 0x00ff_0000);
        assert_eq!(rgb16_to_32(0x03, 0xe0), 0x0000_ff00);
        assert_eq!(rgb16_to_32(0x00, 0x1f), 0x0000_00ff);
        assert_eq!(rgb16_to_32(0, 0), 0);
    }

    #[test]
    fn hand_made_stream_decodes() {
        // 4x1 RGB32: literal of 2 pixels, then a run match of 2 pixels (dist 1).
        let mut s = Vec::new();
        put_header(&mut s, LzImageType::Rgb32, 4, 1, 16, true);
        s.extend_from_slice(&[1, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60]);
        // len 2 with bias 1 → v = 2 → ctrl (2<<5) | 0, distance byte 0 (d = 1)
        s.extend_from_slice(&[0x40, 0x00]);
        let b = decode(&s, None).unwrap();
        assert_eq!(b.pixel(0, 0), 0x0030_2010);
        assert_eq!(b.pixel(1, 0), 0x0060_5040);
        assert_eq!(b.pixel(2, 0), 0x0060_5040);
        assert_eq!(b.pixel(3, 0), 0x0060_5040);
    }

    #[test]
    fn far_and_long_tokens_round_trip() {
        // A 100000-pixel pseudo-random strip repeated at distance 70000 forces
        // far tokens and long length extensions.
        let (w, h) = (1000u32, 150u32);
        let mut state = 12345u32;
        let base: Vec<u32> = (0..70_000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                state >> 8
            })
            .collect();
        let data = img(w, h, |x, y| base[(y * w + x) as usize % 70_000]);
        let image = ImageRef {
            width: w,
            height: h,
            stride: w as usize * 4,
            data: &data,
        };
        let enc = encode(&image, LzImageType::Rgb32).unwrap();
        assert!(
            enc.len() < 70_000 * 3 + 70_000 / 32 + 2000,
            "len {}",
            enc.len()
        );
        let dec = decode(&enc, None).unwrap();
        for i in 0..w * h {
            let want = base[i as usize % 70_000] & 0xffffff;
            assert_eq!(dec.pixel(i % w, i / w), want, "pixel {i}");
        }
    }

    #[test]
    fn empty_palette_image_decodes_to_nothing() {
        // Found by fuzzing: width 0 gives stride 0, which must not panic.
        let mut s = Vec::new();
        put_header(&mut s, LzImageType::Plt4Be, 0, 0, 0, false);
        let b = decode(&s, Some(&[1, 2])).unwrap();
        assert!(b.data.is_empty());
        let mut s = Vec::new();
        put_header(&mut s, LzImageType::Plt1Le, 0, 5, 0, true);
        assert!(decode(&s, Some(&[1, 2])).unwrap().data.is_empty());
    }

    #[test]
    fn bottom_up_stream_is_flipped() {
        let data: Vec<u8> = vec![1, 2, 3, 0, 4, 5, 6, 0];
        let enc = encode_raw(LzImageType::Rgb32, 1, 2, 4, false, &data).unwrap();
        let dec = decode(&enc, None).unwrap();
        assert!(!dec.top_down);
        assert_eq!(dec.pixel(0, 0), 0x0006_0504);
        assert_eq!(dec.pixel(0, 1), 0x0003_0201);
    }
}
