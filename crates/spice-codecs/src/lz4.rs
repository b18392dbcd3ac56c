//! SPICE's LZ4 image payload.
//!
//! Layout: one byte `top_down`, one byte SPICE bitmap format (16BIT = 6,
//! 24BIT = 7, 32BIT = 8, RGBA = 9), then blocks of `u32` big-endian
//! compressed size + raw LZ4 block. Blocks are chained like LZ4's streaming
//! API: a later block may copy from the output of earlier ones. The rows are
//! packed (`width × bytes per pixel`); width and height come from the image
//! descriptor, not from the payload.

use crate::lz::rgb16_to_32;
use crate::{check_dims, flip_rows, Bitmap, CodecError, ImageRef, PixelFormat};

const CODEC: &str = "lz4";

/// SPICE bitmap format codes carried in the LZ4 header.
pub const FMT_16BIT: u8 = 6;
pub const FMT_24BIT: u8 = 7;
pub const FMT_32BIT: u8 = 8;
pub const FMT_RGBA: u8 = 9;

/// Decodes an LZ4 payload of a `width × height` image.
pub fn decode(data: &[u8], width: u32, height: u32) -> Result<Bitmap, CodecError> {
    check_dims(CODEC, width, height)?;
    if data.len() < 2 {
        return Err(CodecError::Truncated {
            codec: CODEC,
            offset: data.len(),
        });
    }
    let top_down = data[0] != 0;
    let (format, bpp) = match data[1] {
        FMT_16BIT => (PixelFormat::Rgb16, 2usize),
        FMT_24BIT => (PixelFormat::Rgb24, 3),
        FMT_32BIT => (PixelFormat::Rgb32, 4),
        FMT_RGBA => (PixelFormat::Rgba, 4),
        other => {
            return Err(CodecError::BadType {
                codec: CODEC,
                value: other.into(),
            })
        }
    };
    let (w, h) = (width as usize, height as usize);
    let total = w * h * bpp;
    // LZ4 expands at most ~255× per input byte; refuse absurd announcements.
    if total as u64 > (data.len() as u64 + 16) * 256 {
        return Err(CodecError::Corrupt {
            codec: CODEC,
            offset: 2,
            reason: "payload too short for the image size",
        });
    }
    let mut raw = vec![0u8; total];
    let mut filled = 0usize;
    let mut pos = 2usize;
    while pos < data.len() {
        if data.len() - pos < 4 {
            return Err(CodecError::Truncated {
                codec: CODEC,
                offset: data.len(),
            });
        }
        let n =
            u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        pos += 4;
        if n > data.len() - pos {
            return Err(CodecError::Truncated {
                codec: CODEC,
                offset: data.len(),
            });
        }
        let (done, rest) = raw.split_at_mut(filled);
        let got = lz4_flex::block::decompress_into_with_dict(&data[pos..pos + n], rest, done)
            .map_err(|_| CodecError::Corrupt {
                codec: CODEC,
                offset: pos,
                reason: "bad LZ4 block",
            })?;
        if got == 0 && n > 0 && filled < total {
            return Err(CodecError::Corrupt {
                codec: CODEC,
                offset: pos,
                reason: "empty LZ4 block",
            });
        }
        filled += got;
        pos += n;
    }
    if filled != total {
        return Err(CodecError::Corrupt {
            codec: CODEC,
            offset: data.len(),
            reason: "decoded size differs from width × height",
        });
    }
    let mut out = Vec::with_capacity(w * h * 4);
    match format {
        PixelFormat::Rgb16 => {
            for p in raw.chunks_exact(2) {
                let v = u16::from_le_bytes([p[0], p[1]]);
                out.extend_from_slice(&rgb16_to_32((v >> 8) as u8, v as u8).to_le_bytes());
            }
        }
        PixelFormat::Rgb24 => {
            for p in raw.chunks_exact(3) {
                out.extend_from_slice(&[p[0], p[1], p[2], 0]);
            }
        }
        _ => out = raw,
    }
    if !top_down {
        flip_rows(&mut out, w * 4);
    }
    Ok(Bitmap {
        width,
        height,
        format,
        stride: w * 4,
        top_down,
        data: out,
    })
}

/// Encodes a 32-bit image (top-down) as format 32BIT or RGBA (`with_alpha`).
pub fn encode(img: &ImageRef<'_>, with_alpha: bool) -> Result<Vec<u8>, CodecError> {
    img.validate(CODEC)?;
    let row = img.width as usize * 4;
    let mut raw = Vec::with_capacity(row * img.height as usize);
    for y in 0..img.height {
        raw.extend_from_slice(img.row(y));
    }
    let mut out = vec![1u8, if with_alpha { FMT_RGBA } else { FMT_32BIT }];
    // One block per ~1 MiB of rows keeps blocks well inside decoder limits.
    let rows_per_block = ((1usize << 20) / row.max(1)).max(1);
    for chunk in raw.chunks(rows_per_block * row.max(1)) {
        if chunk.is_empty() {
            continue;
        }
        let block = lz4_flex::block::compress(chunk);
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&block);
    }
    Ok(out)
}
