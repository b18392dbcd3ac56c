//! Writing a captured screen to disk as PNG or binary PPM.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::canvas::Pixmap;
use crate::error::ClientError;

fn out_err(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes `p` as PNG, or as PPM (P6) when the name ends in `.ppm`.
pub fn write_image(p: &Pixmap, path: &Path) -> Result<(), ClientError> {
    let ppm = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ppm"));
    let f = File::create(path).map_err(|e| out_err(path, e))?;
    let mut w = BufWriter::new(f);
    if ppm {
        write!(w, "P6\n{} {}\n255\n", p.width, p.height).map_err(|e| out_err(path, e))?;
        w.write_all(&p.to_rgb8()).map_err(|e| out_err(path, e))?;
    } else {
        let mut enc = png::Encoder::new(&mut w, p.width, p.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| out_err(path, e))?;
        wr.write_image_data(&p.to_rgb8())
            .map_err(|e| out_err(path, e))?;
        wr.finish().map_err(|e| out_err(path, e))?;
    }
    w.flush().map_err(|e| out_err(path, e))
}

/// Reads a binary PPM (P6, maxval 255) as produced by `spicy-screenshot`:
/// `(width, height, rgb bytes)`.
pub fn read_ppm(path: &Path) -> Result<(u32, u32, Vec<u8>), ClientError> {
    let data = std::fs::read(path).map_err(|e| out_err(path, e))?;
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < data.len() && data[i] == b'#' {
            while i < data.len() && data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let s = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if s == i {
            return Err(out_err(path, "truncated PPM header"));
        }
        fields.push(String::from_utf8_lossy(&data[s..i]).into_owned());
    }
    i += 1;
    let bad = || out_err(path, "not a binary 8-bit PPM");
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(bad());
    }
    let w: u32 = fields[1].parse().map_err(|_| bad())?;
    let h: u32 = fields[2].parse().map_err(|_| bad())?;
    let n = w as usize * h as usize * 3;
    if data.len() < i + n {
        return Err(out_err(path, "PPM pixel data truncated"));
    }
    Ok((w, h, data[i..i + n].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_and_png_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Pixmap::new(3, 2, 0x00ff_0000);
        p.data[4] = 0x0000_12ab;
        let ppm = dir.path().join("a.ppm");
        write_image(&p, &ppm).unwrap();
        let (w, h, rgb) = read_ppm(&ppm).unwrap();
        assert_eq!((w, h), (3, 2));
        assert_eq!(rgb, p.to_rgb8());
        let png_path = dir.path().join("a.png");
        write_image(&p, &png_path).unwrap();
        let dec = png::Decoder::new(File::open(&png_path).unwrap());
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[..info.buffer_size()], &p.to_rgb8()[..]);
    }
}
