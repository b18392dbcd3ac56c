//! SPICE image codecs, pure computation with no I/O.
//!
//! This crate turns the compressed image payloads carried by the SPICE display
//! channel into pixels and back. Every decoder accepts exactly what spice-server
//! 0.15 / QEMU 7.2 emit and every encoder produces streams that spice-gtk's
//! decoders accept:
//!
//! * [`lz`]: the SPICE LZ family (RGB32, RGB24, RGB16, RGBA, XXXA, A8, palette types).
//! * [`glz`]: global LZ, whose images may reference earlier images kept in a
//!   per-client dictionary [`glz::Window`].
//! * [`quic`]: the adaptive Golomb predictive coder used for photos.
//! * [`lz4`], [`zlib_glz`], [`jpeg`]: the remaining image payload formats
//!   (including JPEG with an LZ-coded alpha plane).
//!
//! Decoders normalise their output to a [`Bitmap`] of 32-bit pixels laid out as
//! SPICE's canvas expects (bytes B, G, R, X/A; i.e. a little-endian `0xAARRGGBB`),
//! rows ordered top to bottom. Hostile input gives a [`CodecError`], never a
//! panic, and allocations are bounded by [`MAX_DIMENSION`] and [`MAX_PIXELS`].

pub mod glz;
pub mod jpeg;
pub mod lz;
pub mod lz4;
pub mod quic;
pub mod zlib_glz;

/// Largest width or height any decoder accepts.
pub const MAX_DIMENSION: u32 = 16384;
/// Largest pixel count (width × height) any decoder accepts: 256 MiB of output.
pub const MAX_PIXELS: u64 = 1 << 26;

/// What the pixels were before they were normalised to 32 bits per pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 1 bit per pixel palette index, least significant bit first.
    Plt1Le,
    /// 1 bit per pixel palette index, most significant bit first.
    Plt1Be,
    /// 4 bits per pixel palette index, low nibble first.
    Plt4Le,
    /// 4 bits per pixel palette index, high nibble first.
    Plt4Be,
    /// 8 bit palette index.
    Plt8,
    /// x1r5g5b5.
    Rgb16,
    /// B, G, R bytes.
    Rgb24,
    /// B, G, R, unused bytes.
    Rgb32,
    /// B, G, R, A bytes.
    Rgba,
    /// Only the alpha byte of a 32-bit pixel is coded.
    Xxxa,
    /// 8-bit alpha mask (decoded into the fourth byte, colour bytes zero).
    A8,
    /// 8-bit grey (QUIC GRAY), expanded into B = G = R.
    Gray,
}

impl PixelFormat {
    /// Whether the fourth byte of each decoded pixel carries alpha.
    pub fn has_alpha(self) -> bool {
        matches!(
            self,
            PixelFormat::Rgba | PixelFormat::Xxxa | PixelFormat::A8
        )
    }
}

/// A decoded image: always 4 bytes per pixel (B, G, R, X/A), rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    pub width: u32,
    pub height: u32,
    /// The format the stream carried; the pixels in `data` are 32-bit regardless.
    pub format: PixelFormat,
    /// Bytes between rows of `data` (always `width * 4` for decoder output).
    pub stride: usize,
    /// Row order the stream used. `data` is always top to bottom.
    pub top_down: bool,
    pub data: Vec<u8>,
}

impl Bitmap {
    /// Pixel at (x, y) as a little-endian `u32` (`0xXXRRGGBB`).
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        let o = y as usize * self.stride + x as usize * 4;
        u32::from_le_bytes([
            self.data[o],
            self.data[o + 1],
            self.data[o + 2],
            self.data[o + 3],
        ])
    }

    /// Borrow as encoder input.
    pub fn as_image(&self) -> ImageRef<'_> {
        ImageRef {
            width: self.width,
            height: self.height,
            stride: self.stride,
            data: &self.data,
        }
    }
}

/// Encoder input: 32-bit B, G, R, X/A pixels, rows top to bottom.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    pub width: u32,
    pub height: u32,
    /// Bytes between rows, at least `width * 4`.
    pub stride: usize,
    pub data: &'a [u8],
}

impl<'a> ImageRef<'a> {
    /// Checks the geometry against the buffer and the global limits.
    pub(crate) fn validate(&self, codec: &'static str) -> Result<(), CodecError> {
        check_dims(codec, self.width, self.height)?;
        let row = self.width as usize * 4;
        if self.stride < row {
            return Err(CodecError::InvalidInput {
                codec,
                reason: format!("stride {} is below width {} × 4", self.stride, self.width),
            });
        }
        let need = if self.height == 0 {
            0
        } else {
            self.stride * (self.height as usize - 1) + row
        };
        if self.data.len() < need {
            return Err(CodecError::InvalidInput {
                codec,
                reason: format!(
                    "buffer of {} bytes is shorter than {} needed for {}x{} stride {}",
                    self.data.len(),
                    need,
                    self.width,
                    self.height,
                    self.stride
                ),
            });
        }
        Ok(())
    }

    /// Row `y` (top to bottom) as `width * 4` bytes.
    pub(crate) fn row(&self, y: u32) -> &'a [u8] {
        let o = y as usize * self.stride;
        &self.data[o..o + self.width as usize * 4]
    }

    /// Pixels as `u32` values in row-major order, top row first.
    pub(crate) fn pixels_u32(&self) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.width as usize * self.height as usize);
        for y in 0..self.height {
            for p in self.row(y).chunks_exact(4) {
                v.push(u32::from_le_bytes([p[0], p[1], p[2], p[3]]));
            }
        }
        v
    }
}

/// Why a stream could not be decoded or an image could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{codec}: input truncated at byte {offset}")]
    Truncated { codec: &'static str, offset: usize },
    #[error("{codec}: bad magic {found:#010x}")]
    BadMagic { codec: &'static str, found: u32 },
    #[error("{codec}: unsupported version {found:#x}")]
    BadVersion { codec: &'static str, found: u32 },
    #[error("{codec}: unsupported image type {value}")]
    BadType { codec: &'static str, value: u32 },
    #[error("{codec}: image {width}x{height} exceeds the limits ({MAX_DIMENSION} per side, {MAX_PIXELS} pixels)")]
    TooLarge {
        codec: &'static str,
        width: u64,
        height: u64,
    },
    #[error("{codec}: stride {stride} does not fit width {width}")]
    BadStride {
        codec: &'static str,
        stride: u32,
        width: u32,
    },
    #[error("{codec}: corrupt stream at byte {offset}: {reason}")]
    Corrupt {
        codec: &'static str,
        offset: usize,
        reason: &'static str,
    },
    #[error("{codec}: a palette is required for image type {value}")]
    MissingPalette { codec: &'static str, value: u32 },
    #[error("glz: referenced image {id} is not (yet) in the window")]
    MissingImage { id: u64 },
    #[error("{codec}: invalid input: {reason}")]
    InvalidInput { codec: &'static str, reason: String },
}

pub(crate) fn check_dims(codec: &'static str, width: u32, height: u32) -> Result<(), CodecError> {
    if width > MAX_DIMENSION
        || height > MAX_DIMENSION
        || u64::from(width) * u64::from(height) > MAX_PIXELS
    {
        return Err(CodecError::TooLarge {
            codec,
            width: width.into(),
            height: height.into(),
        });
    }
    Ok(())
}

/// Reorders rows of a packed buffer (`row_len` bytes per row) bottom-up ⇄ top-down.
pub(crate) fn flip_rows(data: &mut [u8], row_len: usize) {
    if row_len == 0 {
        return;
    }
    let rows = data.len() / row_len;
    for r in 0..rows / 2 {
        let (a, b) = data.split_at_mut((rows - 1 - r) * row_len);
        a[r * row_len..(r + 1) * row_len].swap_with_slice(&mut b[..row_len]);
    }
}

/// Big-endian byte reader shared by the LZ-family decoders.
pub(crate) struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
    pub codec: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(codec: &'static str, data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            codec,
        }
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(CodecError::Truncated {
                codec: self.codec,
                offset: self.pos,
            }),
        }
    }

    pub fn be32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn be64(&mut self) -> Result<u64, CodecError> {
        Ok((u64::from(self.be32()?) << 32) | u64::from(self.be32()?))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.data.len() - self.pos < n {
            return Err(CodecError::Truncated {
                codec: self.codec,
                offset: self.data.len(),
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn corrupt(&self, reason: &'static str) -> CodecError {
        CodecError::Corrupt {
            codec: self.codec,
            offset: self.pos,
            reason,
        }
    }
}
