//! JPEG and JPEG_ALPHA payloads.
//!
//! SPICE sends baseline JPEG (colour converted from BGRX by the server) and
//! the client writes the decoded RGB into its B, G, R, X surface. JPEG_ALPHA
//! appends an LZ `XXXA` stream carrying the alpha plane; the payload's
//! `jpeg_size` field says where the JPEG ends.

use crate::lz::{self, LzImageType};
use crate::{check_dims, Bitmap, CodecError, ImageRef, PixelFormat};

const CODEC: &str = "jpeg";

/// Decodes a JPEG into 32-bit B, G, R, 0 pixels.
pub fn decode(data: &[u8]) -> Result<Bitmap, CodecError> {
    let mut d = jpeg_decoder::Decoder::new(data);
    d.read_info().map_err(|_| CodecError::Corrupt {
        codec: CODEC,
        offset: 0,
        reason: "bad JPEG header",
    })?;
    let info = d.info().ok_or(CodecError::Corrupt {
        codec: CODEC,
        offset: 0,
        reason: "bad JPEG header",
    })?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    check_dims(CODEC, w, h)?;
    // Even all-flat blocks cost a few bits each (≈ 170 pixels per byte at
    // best), so a huge announced size in a short stream is a lie: refuse it
    // before the decoder allocates planes for it.
    if u64::from(w) * u64::from(h) > (data.len() as u64 + 64) * 1024 {
        return Err(CodecError::Corrupt {
            codec: CODEC,
            offset: 0,
            reason: "stream too short for the announced image size",
        });
    }
    // Bound the decoder's working memory by what the announced size needs.
    d.set_max_decoding_buffer_size((w as usize * h as usize * 4).max(1 << 16));
    let px = d.decode().map_err(|_| CodecError::Corrupt {
        codec: CODEC,
        offset: 0,
        reason: "bad JPEG data",
    })?;
    let n = w as usize * h as usize;
    let mut out = Vec::with_capacity(n * 4);
    match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 if px.len() >= n * 3 => {
            for p in px.chunks_exact(3).take(n) {
                out.extend_from_slice(&[p[2], p[1], p[0], 0]);
            }
        }
        jpeg_decoder::PixelFormat::L8 if px.len() >= n => {
            for &v in px.iter().take(n) {
                out.extend_from_slice(&[v, v, v, 0]);
            }
        }
        _ => {
            return Err(CodecError::Corrupt {
                codec: CODEC,
                offset: 0,
                reason: "unsupported JPEG colour format (need RGB or grey)",
            })
        }
    }
    Ok(Bitmap {
        width: w,
        height: h,
        format: PixelFormat::Rgb32,
        stride: w as usize * 4,
        top_down: true,
        data: out,
    })
}

/// Encodes the B, G, R bytes of a 32-bit image at `quality` (1–100).
pub fn encode(img: &ImageRef<'_>, quality: u8) -> Result<Vec<u8>, CodecError> {
    img.validate(CODEC)?;
    if img.width == 0
        || img.height == 0
        || img.width > u32::from(u16::MAX)
        || img.height > u32::from(u16::MAX)
    {
        return Err(CodecError::InvalidInput {
            codec: CODEC,
            reason: format!("JPEG cannot code a {}x{} image", img.width, img.height),
        });
    }
    let mut packed = Vec::with_capacity(img.width as usize * img.height as usize * 4);
    for y in 0..img.height {
        packed.extend_from_slice(img.row(y));
    }
    let mut out = Vec::new();
    let enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    enc.encode(
        &packed,
        img.width as u16,
        img.height as u16,
        jpeg_encoder::ColorType::Bgra,
    )
    .map_err(|e| CodecError::InvalidInput {
        codec: CODEC,
        reason: format!("JPEG encoder: {e}"),
    })?;
    Ok(out)
}

/// Decodes a JPEG_ALPHA payload: `data[..jpeg_size]` is the JPEG, the rest an
/// LZ `XXXA` stream of the same size whose values become the alpha bytes.
pub fn decode_alpha(data: &[u8], jpeg_size: usize) -> Result<Bitmap, CodecError> {
    if jpeg_size > data.len() {
        return Err(CodecError::Truncated {
            codec: CODEC,
            offset: data.len(),
        });
    }
    let mut b = decode(&data[..jpeg_size])?;
    let hdr = lz::parse_header(&data[jpeg_size..])?;
    if hdr.ty != LzImageType::Xxxa || hdr.width != b.width || hdr.height != b.height {
        return Err(CodecError::InvalidInput {
            codec: CODEC,
            reason: format!(
                "alpha plane is {:?} {}x{}, JPEG is {}x{}",
                hdr.ty, hdr.width, hdr.height, b.width, b.height
            ),
        });
    }
    let a = lz::decode(&data[jpeg_size..], None)?;
    for (px, ap) in b.data.chunks_exact_mut(4).zip(a.data.chunks_exact(4)) {
        px[3] = ap[3];
    }
    b.format = PixelFormat::Rgba;
    b.top_down = hdr.top_down;
    Ok(b)
}

/// Encodes JPEG + LZ alpha. Returns the payload and `jpeg_size`.
pub fn encode_alpha(img: &ImageRef<'_>, quality: u8) -> Result<(Vec<u8>, usize), CodecError> {
    let mut out = encode(img, quality)?;
    let jpeg_size = out.len();
    out.extend_from_slice(&lz::encode(img, LzImageType::Xxxa)?);
    Ok((out, jpeg_size))
}

/// Decodes one frame of an M-JPEG video stream.
///
/// spice-server's M-JPEG encoder leaves the Huffman tables out of every frame but the
/// first, as Motion-JPEG allows (the decoder then uses the standard tables of JPEG
/// Annex K). An APP0 "AVI1" segment marks the frame as Motion-JPEG so that the decoder
/// fills in those tables; frames that carry their own tables are unaffected.
pub fn decode_mjpeg(data: &[u8]) -> Result<Bitmap, CodecError> {
    if data.len() < 2 || data[..2] != [0xff, 0xd8] {
        return decode(data);
    }
    let mut v = Vec::with_capacity(data.len() + 16);
    v.extend_from_slice(&[0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]);
    v.extend_from_slice(b"AVI1\0");
    v.extend_from_slice(&[0; 9]);
    v.extend_from_slice(&data[2..]);
    decode(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drop every DHT segment, as spice-server does for M-JPEG frames after the first.
    fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while i + 4 <= jpeg.len() && jpeg[i] == 0xff {
            let marker = jpeg[i + 1];
            if marker == 0xda {
                break;
            }
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if marker != 0xc4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out.extend_from_slice(&jpeg[i..]);
        out
    }

    #[test]
    fn mjpeg_frames_without_tables_decode_with_the_standard_ones() {
        let (w, h) = (64u32, 48u32);
        let data: Vec<u8> = (0..w * h)
            .flat_map(|i| [(i % 251) as u8, (i / 7 % 256) as u8, 90, 0])
            .collect();
        let img = ImageRef {
            width: w,
            height: h,
            stride: (w * 4) as usize,
            data: &data,
        };
        let full = encode(&img, 80).unwrap();
        let bare = strip_huffman_tables(&full);
        assert!(bare.len() < full.len(), "the encoder wrote no DHT to strip");
        assert!(
            decode(&bare).is_err(),
            "plain JPEG decoding needs the tables"
        );
        let a = decode(&full).unwrap();
        let b = decode_mjpeg(&bare).unwrap();
        assert_eq!(a.data, b.data);
    }
}
