//! Image generators shared by the integration tests.
#![allow(dead_code)]

/// Deterministic xorshift generator (tests must be reproducible).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 32-bit BGRA pixels, rows top-down, stride = width * 4.
pub fn build(w: u32, h: u32, mut f: impl FnMut(u32, u32) -> u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            v.extend_from_slice(&f(x, y).to_le_bytes());
        }
    }
    v
}

pub fn flat(w: u32, h: u32, c: u32) -> Vec<u8> {
    build(w, h, |_, _| c)
}

pub fn gradient(w: u32, h: u32) -> Vec<u8> {
    build(w, h, |x, y| {
        let r = (x * 255 / w.max(1)) & 0xff;
        let g = (y * 255 / h.max(1)) & 0xff;
        let b = ((x + y) / 3) & 0xff;
        (r << 16) | (g << 8) | b
    })
}

pub fn noise(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    build(w, h, |_, _| r.next() as u32)
}

/// A desktop-like scene: background, window frames, text-like glyph rows,
/// an icon with a gradient and a patch of noise ("photo").
pub fn screen(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let glyphs: Vec<u16> = (0..64).map(|_| r.next() as u16).collect();
    let mut photo = Rng(seed.wrapping_mul(7) | 1);
    build(w, h, |x, y| {
        let in_win = x > w / 8 && x < w * 7 / 8 && y > h / 8 && y < h * 7 / 8;
        if !in_win {
            return 0x002a_4d6e; // desktop blue
        }
        if y < h / 8 + 20 {
            return 0x00d0_d0d0; // title bar
        }
        if x > w / 2 && y > h / 2 && x < w / 2 + 96 && y < h / 2 + 64 {
            let v = photo.next() as u32 & 0x3f3f3f;
            return 0x0040_6080u32.wrapping_add(v) | ((x * 3) & 0xff);
        }
        let line = (y - h / 8) / 14;
        let in_text = (y - h / 8) % 14 < 10 && line % 2 == 0;
        if in_text {
            let g = glyphs[((x / 8 + line * 13) % 64) as usize];
            let bit = ((x % 8) + ((y % 14) % 2) * 8) as u16;
            if (g >> bit) & 1 == 1 {
                return 0x0010_1010;
            }
        }
        0x00ff_ffff
    })
}

/// Sets the alpha byte from a pattern (for RGBA tests).
pub fn with_alpha(mut v: Vec<u8>, w: u32) -> Vec<u8> {
    for (i, px) in v.chunks_exact_mut(4).enumerate() {
        let x = i as u32 % w;
        let y = i as u32 / w;
        px[3] = if (x / 7 + y / 5) % 3 == 0 {
            0xff
        } else {
            ((x * 5 + y) & 0xff) as u8
        };
    }
    v
}
