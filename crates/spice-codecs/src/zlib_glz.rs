//! ZLIB_GLZ: a GLZ stream wrapped in zlib (deflate with zlib header), as
//! spice-server sends when GLZ output is still large. The payload fields are
//! `glz_data_size` (the inflated size) and the zlib bytes.

use std::io::Read;

use crate::{glz, Bitmap, CodecError};

const CODEC: &str = "zlib_glz";

/// Inflates to exactly `glz_data_size` bytes and decodes the GLZ image into `win`.
pub fn decode(
    win: &mut glz::Window,
    zlib_data: &[u8],
    glz_data_size: u32,
    palette: Option<&[u32]>,
) -> Result<(Bitmap, u64), CodecError> {
    let glz = inflate(zlib_data, glz_data_size)?;
    glz::decode(win, &glz, palette)
}

/// Inflates the wrapper only.
pub fn inflate(zlib_data: &[u8], glz_data_size: u32) -> Result<Vec<u8>, CodecError> {
    let size = glz_data_size as usize;
    // A GLZ stream never exceeds ~5 bytes per pixel (literals + control bytes).
    if size as u64 > crate::MAX_PIXELS * 5 + 64 {
        return Err(CodecError::InvalidInput {
            codec: CODEC,
            reason: format!("glz_data_size {size} too large"),
        });
    }
    let mut out = Vec::with_capacity(size.min(zlib_data.len().saturating_mul(1032)));
    let mut dec = flate2::read::ZlibDecoder::new(zlib_data).take(size as u64);
    dec.read_to_end(&mut out).map_err(|_| CodecError::Corrupt {
        codec: CODEC,
        offset: 0,
        reason: "bad zlib stream",
    })?;
    if out.len() != size {
        return Err(CodecError::Truncated {
            codec: CODEC,
            offset: zlib_data.len(),
        });
    }
    Ok(out)
}

/// Wraps a GLZ stream; `level` is zlib's 0–9. The caller sends
/// `glz_data_size = glz_stream.len()` alongside.
pub fn encode(glz_stream: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level.min(9)));
    // Writing into a Vec cannot fail.
    let _ = e.write_all(glz_stream);
    e.finish().unwrap_or_default()
}
