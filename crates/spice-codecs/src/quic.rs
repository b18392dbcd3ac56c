//! QUIC: SPICE's lossless predictive coder for photographic content.
//!
//! Each colour component is predicted from its left and upper neighbours
//! (the mean of both, or the left one on the first row); the residual is
//! folded to a non-negative "L" value and written with an adaptive
//! Golomb-Rice code. The code parameter comes from a bucket chosen by the
//! previous residual of the same component; each bucket keeps the running
//! cost of every code and picks the cheapest. Model updates happen on a
//! pseudo-random schedule that grows sparser as the image proceeds, and runs
//! of identical pixels are coded with an adaptive run-length (MELCODE) coder
//! when the row above suggests one. Encoder and decoder must replay the very
//! same schedule, so this module keeps a single implementation of the row
//! walk, parameterised by a [`SymbolIo`] that either writes or reads symbols.
//!
//! Stream: 32-bit little-endian words whose bits are consumed from the most
//! significant end. Header words: magic `"QUIC"`, version 0, type, width,
//! height. The encoder pads the last word and appends one zero word.

use std::sync::OnceLock;

use crate::{check_dims, Bitmap, CodecError, ImageRef, PixelFormat};

const CODEC: &str = "quic";
/// `"QUIC"` as a little-endian word.
pub const MAGIC: u32 = 0x4349_5551;
pub const VERSION: u32 = 0;

/// Image types of the QUIC header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum QuicImageType {
    Gray = 1,
    Rgb16 = 2,
    Rgb24 = 3,
    Rgb32 = 4,
    Rgba = 5,
}

impl QuicImageType {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => QuicImageType::Gray,
            2 => QuicImageType::Rgb16,
            3 => QuicImageType::Rgb24,
            4 => QuicImageType::Rgb32,
            5 => QuicImageType::Rgba,
            _ => return None,
        })
    }

    pub fn pixel_format(self) -> PixelFormat {
        match self {
            QuicImageType::Gray => PixelFormat::Gray,
            QuicImageType::Rgb16 => PixelFormat::Rgb16,
            QuicImageType::Rgb24 => PixelFormat::Rgb24,
            QuicImageType::Rgb32 => PixelFormat::Rgb32,
            QuicImageType::Rgba => PixelFormat::Rgba,
        }
    }
}

/// Longest codeword the Golomb family may produce.
const MAX_CODEWORD_LEN: u32 = 26;
/// Model-update wait mask index ceiling and the symbols spent at each index.
const WMI_MAX: u32 = 6;
const WMI_NEXT: u32 = 2048;
/// Counter-halving thresholds per wait mask index (model evolution 3).
const WM_TRIGGER: [u32; 7] = [110, 550, 900, 800, 550, 400, 350];
/// MELCODE run-length state → log2 of the expected run.
const MELC_LEN: [u32; 32] = [
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13,
    14, 15,
];
/// The pseudo-random model-update delays shared with spice. Only the low six
/// bits of spice's table ever matter (the wait mask never exceeds 63), so
/// that is all we keep.
const WAIT_DELAYS: [u8; 256] = [
    2, 23, 19, 21, 7, 18, 40, 14, 12, 32, 47, 44, 36, 6, 18, 11, 4, 19, 42, 29, 16, 63, 57, 51, 16,
    3, 5, 14, 15, 30, 20, 9, 36, 45, 3, 57, 61, 0, 8, 5, 41, 14, 43, 27, 43, 59, 31, 35, 39, 60,
    42, 38, 13, 54, 62, 1, 26, 3, 11, 61, 52, 34, 7, 48, 4, 59, 22, 12, 22, 8, 50, 4, 10, 6, 44, 8,
    11, 46, 31, 51, 53, 17, 1, 43, 46, 60, 36, 54, 10, 27, 39, 44, 22, 41, 23, 2, 44, 0, 40, 53,
    40, 48, 16, 43, 32, 28, 33, 12, 20, 2, 56, 62, 55, 58, 18, 20, 13, 55, 38, 29, 57, 19, 49, 33,
    47, 63, 59, 0, 35, 61, 19, 25, 46, 38, 60, 4, 35, 1, 26, 40, 28, 10, 5, 14, 25, 18, 48, 49, 20,
    59, 62, 34, 46, 7, 33, 52, 34, 58, 9, 29, 8, 55, 62, 60, 37, 36, 37, 50, 6, 3, 10, 28, 48, 24,
    26, 61, 57, 30, 11, 54, 2, 6, 50, 47, 7, 17, 35, 53, 32, 12, 23, 17, 5, 21, 49, 55, 51, 45, 52,
    27, 39, 25, 39, 63, 22, 24, 42, 52, 56, 38, 41, 41, 56, 32, 13, 24, 26, 51, 27, 56, 58, 37, 24,
    42, 15, 28, 17, 30, 31, 15, 16, 23, 25, 54, 33, 34, 1, 29, 31, 50, 53, 21, 49, 15, 47, 9, 0,
    58, 37, 45, 30, 13, 9, 45, 63, 21,
];

/// Golomb-Rice code family for one bit depth (5 or 8 bits per component).
struct Family {
    bpc: u32,
    mask: u32,
    /// Per code `l`: how many values get a plain Golomb-Rice codeword.
    n_gr: [u32; 8],
    /// Per code `l`: length of the escape ("not GR") codeword and of its suffix.
    not_gr_len: [u32; 8],
    not_gr_suffix: [u32; 8],
    /// Per code `l`: a 32-bit window at or below this is an escape codeword.
    not_gr_limit: [u32; 8],
    code: [[u32; 8]; 256],
    code_len: [[u32; 8]; 256],
    /// Residual (mod 2^bpc) → folded value, and back.
    fold: [u8; 256],
    unfold: [u8; 256],
    /// Folded value → model bucket index.
    bucket: [u8; 256],
    n_buckets: usize,
}

fn low_mask(n: u32) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

fn ceil_log2(v: u32) -> u32 {
    if v <= 1 {
        0
    } else {
        32 - (v - 1).leading_zeros()
    }
}

impl Family {
    fn new(bpc: u32) -> Family {
        let mut f = Family {
            bpc,
            mask: low_mask(bpc),
            n_gr: [0; 8],
            not_gr_len: [0; 8],
            not_gr_suffix: [0; 8],
            not_gr_limit: [0; 8],
            code: [[0; 8]; 256],
            code_len: [[0; 8]; 256],
            fold: [0; 256],
            unfold: [0; 256],
            bucket: [0; 256],
            n_buckets: 0,
        };
        for l in 0..bpc as usize {
            // Escape prefix: as many zeros as keep the longest codeword within
            // the limit, but no more than the Golomb part could need.
            let prefix = (MAX_CODEWORD_LEN - bpc).min(low_mask(bpc - l as u32));
            let escapes = (1u32 << bpc) - (prefix << l);
            f.n_gr[l] = prefix << l;
            f.not_gr_suffix[l] = ceil_log2(escapes);
            f.not_gr_len[l] = prefix + f.not_gr_suffix[l];
            f.not_gr_limit[l] = low_mask(32 - prefix);
            for n in 0..256u32 {
                let (c, len) = if n < f.n_gr[l] {
                    ((1 << l) | (n & low_mask(l as u32)), (n >> l) + l as u32 + 1)
                } else {
                    (n - f.n_gr[l], f.not_gr_len[l])
                };
                f.code[n as usize][l] = c;
                f.code_len[n as usize][l] = len;
            }
        }
        let m = f.mask;
        for s in 0..=m {
            f.fold[s as usize] = if s <= m >> 1 {
                (s << 1) as u8
            } else {
                (((m - s) << 1) + 1) as u8
            };
            f.unfold[s as usize] = if s & 1 == 1 {
                (m - (s >> 1)) as u8
            } else {
                (s >> 1) as u8
            };
        }
        // Buckets hold 1, 2, 4, … consecutive values; a final bucket that
        // would be followed by a bigger one absorbs the rest.
        let levels = 1u32 << bpc;
        let (mut start, mut size, mut idx) = (0u32, 1u32, 0usize);
        loop {
            let mut end = start + size - 1;
            if end + size >= levels || end >= levels - 1 {
                end = levels - 1;
            }
            for v in start..=end {
                f.bucket[v as usize] = idx as u8;
            }
            idx += 1;
            if end >= levels - 1 {
                break;
            }
            start = end + 1;
            size *= 2;
        }
        f.n_buckets = idx;
        f
    }
}

fn family(bpc: u32) -> &'static Family {
    static F8: OnceLock<Family> = OnceLock::new();
    static F5: OnceLock<Family> = OnceLock::new();
    if bpc == 5 {
        F5.get_or_init(|| Family::new(5))
    } else {
        F8.get_or_init(|| Family::new(8))
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    counters: [u32; 8],
    best: u32,
}

/// Per component model: buckets plus the previous row of folded residuals.
struct Chan {
    buckets: Vec<Bucket>,
    /// `corr[0]` is the "pixel -1" slot; pixel `i` lives at `corr[i + 1]`.
    corr: Vec<u8>,
}

impl Chan {
    fn new(fam: &Family, width: usize) -> Chan {
        Chan {
            buckets: vec![
                Bucket {
                    counters: [0; 8],
                    best: fam.bpc - 1,
                };
                fam.n_buckets
            ],
            corr: vec![0; width + 1],
        }
    }

    #[inline]
    fn bucket_for(&mut self, fam: &Family, v: u8) -> &mut Bucket {
        &mut self.buckets[fam.bucket[(u32::from(v) & fam.mask) as usize] as usize]
    }
}

/// Adaptation state shared by the components coded together.
struct State {
    waitcnt: u32,
    seed: u32,
    wm_trigger: u32,
    wmidx: u32,
    wmileft: u32,
    melc_state: usize,
    melc_len: u32,
    melc_order: u32,
}

impl State {
    fn new() -> State {
        State {
            waitcnt: 0,
            seed: 0xff,
            wm_trigger: WM_TRIGGER[0],
            wmidx: 0,
            wmileft: WMI_NEXT,
            melc_state: 0,
            melc_len: MELC_LEN[0],
            melc_order: 1 << MELC_LEN[0],
        }
    }

    #[inline]
    fn next_delay(&mut self, waitmask: u32) -> u32 {
        self.seed = self.seed.wrapping_add(1);
        u32::from(WAIT_DELAYS[(self.seed & 0xff) as usize]) & waitmask
    }

    fn set_trigger(&mut self) {
        self.wm_trigger = WM_TRIGGER[self.wmidx.min(6) as usize];
    }

    fn melc_up(&mut self) {
        if self.melc_state < MELC_LEN.len() - 1 {
            self.melc_state += 1;
            self.melc_len = MELC_LEN[self.melc_state];
            self.melc_order = 1 << self.melc_len;
        }
    }

    fn melc_down(&mut self) {
        if self.melc_state > 0 {
            self.melc_state -= 1;
            self.melc_len = MELC_LEN[self.melc_state];
            self.melc_order = 1 << self.melc_len;
        }
    }
}

fn update_model(fam: &Family, st: &State, b: &mut Bucket, v: u8) {
    let bpc = fam.bpc as usize;
    let lens = &fam.code_len[v as usize];
    let mut best = bpc - 1;
    b.counters[best] += lens[best];
    let mut best_len = b.counters[best];
    for i in (0..bpc - 1).rev() {
        b.counters[i] += lens[i];
        if b.counters[i] < best_len {
            best = i;
            best_len = b.counters[i];
        }
    }
    b.best = best as u32;
    if best_len > st.wm_trigger {
        for c in &mut b.counters[..bpc] {
            *c >>= 1;
        }
    }
}

/// Writes (encoder) or reads (decoder) the coded symbols.
trait SymbolIo {
    const ENCODE: bool;
    /// Codes folded value `v` with Golomb code `l`; returns the value coded.
    fn symbol(&mut self, fam: &Family, l: u32, v: u8) -> Result<u8, CodecError>;
    /// Codes a run of `run` pixels (encoder) or reads one no longer than `limit`.
    fn run(&mut self, st: &mut State, run: usize, limit: usize) -> Result<usize, CodecError>;
}

/// MSB-first bit writer emitting little-endian 32-bit words.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    fn new() -> Self {
        BitWriter {
            out: Vec::new(),
            acc: 0,
            nbits: 0,
        }
    }

    #[inline]
    fn put(&mut self, value: u32, len: u32) {
        debug_assert!(len <= 32);
        if len == 0 {
            return;
        }
        self.acc = (self.acc << len) | u64::from(value & low_mask(len));
        self.nbits += len;
        if self.nbits >= 32 {
            self.nbits -= 32;
            let w = (self.acc >> self.nbits) as u32;
            self.out.extend_from_slice(&w.to_le_bytes());
            self.acc &= (1u64 << self.nbits) - 1;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.nbits > 0 {
            let pad = 32 - self.nbits;
            self.put(0, pad);
        }
        // spice appends one all-zero word so the decoder's look-ahead stays in bounds.
        self.out.extend_from_slice(&[0; 4]);
        self.out
    }
}

impl SymbolIo for BitWriter {
    const ENCODE: bool = true;

    #[inline]
    fn symbol(&mut self, fam: &Family, l: u32, v: u8) -> Result<u8, CodecError> {
        let (c, len) = (
            fam.code[v as usize][l as usize],
            fam.code_len[v as usize][l as usize],
        );
        self.put(c, len);
        Ok(v)
    }

    fn run(&mut self, st: &mut State, mut run: usize, _limit: usize) -> Result<usize, CodecError> {
        let total = run;
        let mut hits = 0u32;
        while run >= st.melc_order as usize {
            hits += 1;
            run -= st.melc_order as usize;
            st.melc_up();
        }
        while hits >= 32 {
            self.put(u32::MAX, 32);
            hits -= 32;
        }
        self.put(low_mask(hits), hits);
        // A zero separator, then the remainder in melc_len bits.
        self.put(run as u32, st.melc_len + 1);
        st.melc_down();
        Ok(total)
    }
}

/// MSB-first reader over the words of a QUIC stream.
struct BitReader {
    /// Stream bytes reordered so bits read in order (each word big-endian),
    /// plus zero padding for look-ahead.
    bytes: Vec<u8>,
    pos: u64,
    limit: u64,
}

impl BitReader {
    fn new(data: &[u8]) -> Self {
        let words = data.len() / 4;
        let mut bytes = Vec::with_capacity(words * 4 + 8);
        for w in data.chunks_exact(4) {
            bytes.extend_from_slice(&[w[3], w[2], w[1], w[0]]);
        }
        bytes.extend_from_slice(&[0; 8]);
        BitReader {
            bytes,
            pos: 0,
            limit: words as u64 * 32,
        }
    }

    /// The next 32 bits (zeros past the end).
    #[inline]
    fn peek(&self) -> u32 {
        let byte = (self.pos >> 3) as usize;
        let b: [u8; 8] = self.bytes[byte..byte + 8].try_into().unwrap_or([0; 8]);
        ((u64::from_be_bytes(b) << (self.pos & 7)) >> 32) as u32
    }

    #[inline]
    fn eat(&mut self, n: u32) -> Result<(), CodecError> {
        self.pos += u64::from(n);
        if self.pos > self.limit {
            return Err(CodecError::Truncated {
                codec: CODEC,
                offset: (self.limit / 8) as usize,
            });
        }
        Ok(())
    }

    fn read32(&mut self) -> Result<u32, CodecError> {
        let v = self.peek();
        self.eat(32)?;
        Ok(v)
    }
}

impl SymbolIo for BitReader {
    const ENCODE: bool = false;

    #[inline]
    fn symbol(&mut self, fam: &Family, l: u32, _v: u8) -> Result<u8, CodecError> {
        let bits = self.peek();
        let l = l as usize;
        let (v, len) = if bits > fam.not_gr_limit[l] {
            let zeros = bits.leading_zeros();
            let len = zeros + 1 + l as u32;
            (
                (zeros << l) | ((bits >> (32 - len)) & low_mask(l as u32)),
                len,
            )
        } else {
            let len = fam.not_gr_len[l];
            (
                fam.n_gr[l] + ((bits >> (32 - len)) & low_mask(fam.not_gr_suffix[l])),
                len,
            )
        };
        self.eat(len)?;
        // spice keeps the value in a byte; hostile streams may overflow it.
        Ok(v as u8)
    }

    fn run(&mut self, st: &mut State, _run: usize, limit: usize) -> Result<usize, CodecError> {
        let mut run = 0usize;
        loop {
            let bit = self.peek() >> 31;
            self.eat(1)?;
            if bit == 0 {
                break;
            }
            run += st.melc_order as usize;
            st.melc_up();
            if run > limit {
                return Err(CodecError::Corrupt {
                    codec: CODEC,
                    offset: (self.pos / 8) as usize,
                    reason: "pixel run past the row end",
                });
            }
        }
        if st.melc_len > 0 {
            run += (self.peek() >> (32 - st.melc_len)) as usize;
            self.eat(st.melc_len)?;
        }
        st.melc_down();
        if run > limit {
            return Err(CodecError::Corrupt {
                codec: CODEC,
                offset: (self.pos / 8) as usize,
                reason: "pixel run past the row end",
            });
        }
        Ok(run)
    }
}

/// Components coded together (3 for RGB, 1 for gray or alpha) with their
/// shared adaptation state.
struct Group<const N: usize> {
    fam: &'static Family,
    chans: [Chan; N],
    st: State,
}

impl<const N: usize> Group<N> {
    fn new(bpc: u32, width: usize) -> Self {
        let fam = family(bpc);
        Group {
            fam,
            chans: std::array::from_fn(|_| Chan::new(fam, width)),
            st: State::new(),
        }
    }

    fn update_all(&mut self, idx: usize) {
        let fam = self.fam;
        for ch in &mut self.chans {
            let prev = ch.corr[idx];
            let cur = ch.corr[idx + 1];
            let st = &self.st;
            update_model(fam, st, ch.bucket_for(fam, prev), cur);
        }
    }

    /// Codes component values of pixel `i` given per-component predictions.
    #[inline]
    fn code_pixel<I: SymbolIo>(
        &mut self,
        io: &mut I,
        cur: &mut [[u8; N]],
        i: usize,
        pred: [u32; N],
    ) -> Result<(), CodecError> {
        let fam = self.fam;
        for (c, ch) in self.chans.iter_mut().enumerate() {
            let l = ch.bucket_for(fam, ch.corr[i]).best;
            let v = if I::ENCODE {
                fam.fold[((u32::from(cur[i][c]).wrapping_sub(pred[c])) & fam.mask) as usize]
            } else {
                0
            };
            let v = io.symbol(fam, l, v)?;
            ch.corr[i + 1] = v;
            if !I::ENCODE {
                cur[i][c] = ((u32::from(fam.unfold[v as usize]) + pred[c]) & fam.mask) as u8;
            }
        }
        Ok(())
    }

    fn pred_row0(cur: &[[u8; N]], i: usize) -> [u32; N] {
        if i == 0 {
            [0; N]
        } else {
            std::array::from_fn(|c| u32::from(cur[i - 1][c]))
        }
    }

    fn pred_row(prev: &[[u8; N]], cur: &[[u8; N]], i: usize) -> [u32; N] {
        if i == 0 {
            std::array::from_fn(|c| u32::from(prev[0][c]))
        } else {
            std::array::from_fn(|c| (u32::from(cur[i - 1][c]) + u32::from(prev[i][c])) >> 1)
        }
    }

    /// One segment (constant wait mask) of a row; `prev` is None on row 0.
    fn segment<I: SymbolIo>(
        &mut self,
        io: &mut I,
        prev: Option<&[[u8; N]]>,
        cur: &mut [[u8; N]],
        mut i: usize,
        end: usize,
        waitmask: u32,
    ) -> Result<(), CodecError> {
        let pred = |cur: &[[u8; N]], i: usize| match prev {
            None => Self::pred_row0(cur, i),
            Some(p) => Self::pred_row(p, cur, i),
        };
        let mut stopidx;
        if i == 0 {
            let p = pred(cur, 0);
            self.code_pixel(io, cur, 0, p)?;
            if self.st.waitcnt > 0 {
                self.st.waitcnt -= 1;
            } else {
                self.st.waitcnt = self.st.next_delay(waitmask);
                self.update_all(0);
            }
            i = 1;
        }
        stopidx = i + self.st.waitcnt as usize;
        let mut run_index = 0usize;
        // Runs are predicted when the row above repeats and so did this row.
        let run_here = |cur: &[[u8; N]], i: usize, run_index: usize| match prev {
            Some(p) => p[i - 1] == p[i] && run_index != i && i > 2 && cur[i - 1] == cur[i - 2],
            None => false,
        };
        loop {
            let mut run_at = None;
            'scan: {
                while stopidx < end {
                    while i <= stopidx {
                        if run_here(cur, i, run_index) {
                            run_at = Some(i);
                            break 'scan;
                        }
                        let p = pred(cur, i);
                        self.code_pixel(io, cur, i, p)?;
                        i += 1;
                    }
                    self.update_all(stopidx);
                    stopidx = i + self.st.next_delay(waitmask) as usize;
                }
                while i < end {
                    if run_here(cur, i, run_index) {
                        run_at = Some(i);
                        break 'scan;
                    }
                    let p = pred(cur, i);
                    self.code_pixel(io, cur, i, p)?;
                    i += 1;
                }
            }
            if run_at.is_none() {
                self.st.waitcnt = (stopidx - end) as u32;
                return Ok(());
            }
            run_index = i;
            self.st.waitcnt = (stopidx - i) as u32;
            let want = if I::ENCODE {
                let mut k = 0;
                while i + k < end && cur[i + k] == cur[i + k - 1] {
                    k += 1;
                }
                k
            } else {
                0
            };
            let run = io.run(&mut self.st, want, end - i)?;
            if !I::ENCODE {
                for k in i..i + run {
                    cur[k] = cur[k - 1];
                }
            }
            i += run;
            if i == end {
                return Ok(());
            }
            stopidx = i + self.st.waitcnt as usize;
        }
    }

    /// Codes one row, split where the wait mask index advances.
    fn row<I: SymbolIo>(
        &mut self,
        io: &mut I,
        prev: Option<&[[u8; N]]>,
        cur: &mut [[u8; N]],
    ) -> Result<(), CodecError> {
        for ch in &mut self.chans {
            ch.corr[0] = if prev.is_none() { 0 } else { ch.corr[1] };
        }
        let mut width = cur.len() as u32;
        let mut pos = 0usize;
        while self.st.wmidx < WMI_MAX && self.st.wmileft <= width {
            if self.st.wmileft > 0 {
                let n = self.st.wmileft as usize;
                self.segment(io, prev, cur, pos, pos + n, low_mask(self.st.wmidx))?;
                width -= self.st.wmileft;
                pos += n;
            }
            self.st.wmidx += 1;
            self.st.set_trigger();
            self.st.wmileft = WMI_NEXT;
        }
        if width > 0 {
            self.segment(
                io,
                prev,
                cur,
                pos,
                pos + width as usize,
                low_mask(self.st.wmidx),
            )?;
            if self.st.wmidx < WMI_MAX {
                self.st.wmileft -= width;
            }
        }
        Ok(())
    }
}

/// Parsed QUIC header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicHeader {
    pub ty: QuicImageType,
    pub width: u32,
    pub height: u32,
}

fn read_header(rd: &mut BitReader) -> Result<QuicHeader, CodecError> {
    let magic = rd.read32()?;
    if magic != MAGIC {
        return Err(CodecError::BadMagic {
            codec: CODEC,
            found: magic,
        });
    }
    let version = rd.read32()?;
    if version != VERSION {
        return Err(CodecError::BadVersion {
            codec: CODEC,
            found: version,
        });
    }
    let tv = rd.read32()?;
    let ty = QuicImageType::from_u32(tv).ok_or(CodecError::BadType {
        codec: CODEC,
        value: tv,
    })?;
    let width = rd.read32()?;
    let height = rd.read32()?;
    if width == 0 || height == 0 {
        return Err(CodecError::InvalidInput {
            codec: CODEC,
            reason: format!("empty image {width}x{height}"),
        });
    }
    check_dims(CODEC, width, height)?;
    Ok(QuicHeader { ty, width, height })
}

/// Reads only the header.
pub fn parse_header(data: &[u8]) -> Result<QuicHeader, CodecError> {
    read_header(&mut BitReader::new(data))
}

/// Decodes a QUIC image (always top-down).
pub fn decode(data: &[u8]) -> Result<Bitmap, CodecError> {
    let mut rd = BitReader::new(data);
    let h = read_header(&mut rd)?;
    let (w, hh) = (h.width as usize, h.height as usize);
    // Every symbol costs at least one bit; row 0 codes every pixel and each
    // later row codes at least its first three before a run may start. So
    // refuse sizes the remaining input cannot carry, before allocating.
    let bits = rd.limit.saturating_sub(rd.pos);
    if w as u64 > bits || (hh as u64 - 1) * (w as u64).min(3) > bits {
        return Err(CodecError::Corrupt {
            codec: CODEC,
            offset: 20,
            reason: "stream too short for the announced image size",
        });
    }
    // Grow the output row by row, so a hostile stream that dies early never
    // costs the full announced size in memory.
    let mut out: Vec<u8> = Vec::with_capacity((w * hh * 4).min(1 << 24));
    match h.ty {
        QuicImageType::Rgb32
        | QuicImageType::Rgb24
        | QuicImageType::Rgb16
        | QuicImageType::Rgba => {
            let bpc = if h.ty == QuicImageType::Rgb16 { 5 } else { 8 };
            let mut g = Group::<3>::new(bpc, w);
            let mut alpha = (h.ty == QuicImageType::Rgba).then(|| Group::<1>::new(8, w));
            let mut prev = vec![[0u8; 3]; w];
            let mut cur = vec![[0u8; 3]; w];
            let mut aprev = vec![[0u8; 1]; w];
            let mut acur = vec![[0u8; 1]; w];
            for y in 0..hh {
                g.row(&mut rd, (y > 0).then_some(&prev[..]), &mut cur)?;
                if let Some(a) = alpha.as_mut() {
                    a.row(&mut rd, (y > 0).then_some(&aprev[..]), &mut acur)?;
                }
                out.resize((y + 1) * w * 4, 0);
                let row = &mut out[y * w * 4..];
                for (x, px) in row.chunks_exact_mut(4).enumerate() {
                    // Components are coded r, g, b.
                    let [r, gg, b] = cur[x];
                    if bpc == 5 {
                        let e = |v: u8| (v << 3) | (v >> 2);
                        px.copy_from_slice(&[e(b), e(gg), e(r), 0]);
                    } else {
                        px.copy_from_slice(&[
                            b,
                            gg,
                            r,
                            if alpha.is_some() { acur[x][0] } else { 0 },
                        ]);
                    }
                }
                std::mem::swap(&mut prev, &mut cur);
                std::mem::swap(&mut aprev, &mut acur);
            }
        }
        QuicImageType::Gray => {
            let mut g = Group::<1>::new(8, w);
            let mut prev = vec![[0u8; 1]; w];
            let mut cur = vec![[0u8; 1]; w];
            for y in 0..hh {
                g.row(&mut rd, (y > 0).then_some(&prev[..]), &mut cur)?;
                out.resize((y + 1) * w * 4, 0);
                let row = &mut out[y * w * 4..];
                for (x, px) in row.chunks_exact_mut(4).enumerate() {
                    let v = cur[x][0];
                    px.copy_from_slice(&[v, v, v, 0]);
                }
                std::mem::swap(&mut prev, &mut cur);
            }
        }
    }
    Ok(Bitmap {
        width: h.width,
        height: h.height,
        format: h.ty.pixel_format(),
        stride: w * 4,
        top_down: true,
        data: out,
    })
}

/// Encodes a 32-bit image as QUIC `ty`.
///
/// `Rgb32`/`Rgb24` code B, G, R (the stream is the same, only the type word
/// differs), `Rgba` adds the alpha plane, `Rgb16` keeps the top 5 bits of each
/// component and `Gray` codes the green component.
pub fn encode(img: &ImageRef<'_>, ty: QuicImageType) -> Result<Vec<u8>, CodecError> {
    img.validate(CODEC)?;
    if img.width == 0 || img.height == 0 {
        return Err(CodecError::InvalidInput {
            codec: CODEC,
            reason: format!(
                "QUIC cannot code an empty image {}x{}",
                img.width, img.height
            ),
        });
    }
    let (w, hh) = (img.width as usize, img.height as usize);
    let mut wr = BitWriter::new();
    for word in [MAGIC, VERSION, ty as u32, img.width, img.height] {
        wr.put(word, 32);
    }
    match ty {
        QuicImageType::Gray => {
            let mut g = Group::<1>::new(8, w);
            let mut prev = vec![[0u8; 1]; w];
            let mut cur = vec![[0u8; 1]; w];
            for y in 0..hh {
                for (c, p) in cur.iter_mut().zip(img.row(y as u32).chunks_exact(4)) {
                    *c = [p[1]];
                }
                g.row(&mut wr, (y > 0).then_some(&prev[..]), &mut cur)?;
                std::mem::swap(&mut prev, &mut cur);
            }
        }
        _ => {
            let bpc = if ty == QuicImageType::Rgb16 { 5 } else { 8 };
            let shift = 8 - bpc;
            let mut g = Group::<3>::new(bpc, w);
            let mut alpha = (ty == QuicImageType::Rgba).then(|| Group::<1>::new(8, w));
            let mut prev = vec![[0u8; 3]; w];
            let mut cur = vec![[0u8; 3]; w];
            let mut aprev = vec![[0u8; 1]; w];
            let mut acur = vec![[0u8; 1]; w];
            for y in 0..hh {
                for ((c, a), p) in cur
                    .iter_mut()
                    .zip(acur.iter_mut())
                    .zip(img.row(y as u32).chunks_exact(4))
                {
                    *c = [p[2] >> shift, p[1] >> shift, p[0] >> shift];
                    *a = [p[3]];
                }
                g.row(&mut wr, (y > 0).then_some(&prev[..]), &mut cur)?;
                if let Some(a) = alpha.as_mut() {
                    a.row(&mut wr, (y > 0).then_some(&aprev[..]), &mut acur)?;
                }
                std::mem::swap(&mut prev, &mut cur);
                std::mem::swap(&mut aprev, &mut acur);
            }
        }
    }
    Ok(wr.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_tables_have_spice_shape() {
        let f = family(8);
        assert_eq!(f.n_buckets, 8);
        assert_eq!(family(5).n_buckets, 5);
        // code 0: 18-zero escape prefix + 8-bit suffix = 26 bits
        assert_eq!(f.not_gr_len[0], 26);
        assert_eq!(f.n_gr[0], 18);
        // code 7: one-zero prefix, 7-bit suffix
        assert_eq!(f.not_gr_len[7], 8);
        assert_eq!(f.n_gr[7], 128);
        // buckets: 0 | 1-2 | 3-6 | ... | 127-255
        assert_eq!(f.bucket[0], 0);
        assert_eq!(f.bucket[2], 1);
        assert_eq!(f.bucket[3], 2);
        assert_eq!(f.bucket[126], 6);
        assert_eq!(f.bucket[127], 7);
        assert_eq!(f.bucket[255], 7);
        assert_eq!(family(5).bucket[15], 4);
        assert_eq!(family(5).bucket[31], 4);
        for v in 0..=255u32 {
            assert_eq!(u32::from(f.unfold[f.fold[v as usize] as usize]), v);
        }
    }

    #[test]
    fn golomb_codes_decode_back() {
        for bpc in [5, 8] {
            let f = family(bpc);
            for l in 0..bpc {
                for v in 0..(1u32 << bpc) {
                    let mut w = BitWriter::new();
                    w.symbol(f, l, v as u8).unwrap();
                    let bytes = w.finish();
                    let mut r = BitReader::new(&bytes);
                    assert_eq!(u32::from(r.symbol(f, l, 0).unwrap()), v, "bpc {bpc} l {l}");
                    assert_eq!(r.pos, u64::from(f.code_len[v as usize][l as usize]));
                }
            }
        }
    }
}
