//! What the lossless codecs cost on video-like frames, as the server meets them when a
//! video region is sent as images (before a stream starts, or when streaming is off):
//! 125 frames of 320x240 panning over a smooth pattern, with and without ~1 level of
//! per-pixel noise, each encoded with QUIC, LZ and GLZ (one encoder keeping its
//! dictionary across frames, as for one client). Prints bytes and CPU per frame.
//!
//! `cargo run --release -p spice-server --example video_codec_cost [WINDOW_PIXELS]`
//! (the GLZ window defaults to spice-gtk's 4 Mpx).

use std::time::Instant;

use spice_codecs::lz::LzImageType;
use spice_codecs::quic::QuicImageType;
use spice_codecs::{glz, lz, quic, ImageRef};

const W: u32 = 320;
const H: u32 = 240;
const FRAMES: u32 = 125;

/// A smooth colour field, panned by (3, 2) pixels a frame, plus noise of `noise` levels
/// drawn from a fixed-seed generator (BGRX bytes).
fn frame(i: u32, noise: u32, seed: &mut u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((W * H * 4) as usize);
    for y in 0..H {
        for x in 0..W {
            let (gx, gy) = (x + 3 * i, y + 2 * i);
            let base = [
                (128.0 + 100.0 * ((gx as f32) / 37.0).sin() * ((gy as f32) / 53.0).cos()) as i32,
                (128.0 + 90.0 * ((gx + gy) as f32 / 61.0).sin()) as i32,
                (128.0 + 80.0 * ((gy as f32) / 29.0).sin()) as i32,
            ];
            for c in base {
                let n = if noise > 0 {
                    *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    ((*seed >> 16) % (2 * noise + 1)) as i32 - noise as i32
                } else {
                    0
                };
                v.push((c + n).clamp(0, 255) as u8);
            }
            v.push(0);
        }
    }
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let window: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|e| format!("WINDOW_PIXELS {a:?}: {e}"))?,
        None => 1 << 22,
    };
    println!("{FRAMES} frames {W}x{H}, GLZ window {window} px");
    println!(
        "{:<7} {:<5} {:>12} {:>12} {:>14}",
        "noise", "codec", "kB/frame", "ms/frame", "Mpx/s"
    );
    for noise in [0u32, 1] {
        let mut seed = 42;
        let frames: Vec<Vec<u8>> = (0..FRAMES).map(|i| frame(i, noise, &mut seed)).collect();
        let mut glz_enc = glz::Encoder::new(window);
        for codec in ["quic", "lz", "glz"] {
            let t = Instant::now();
            let mut bytes = 0usize;
            for f in &frames {
                let r = img(f);
                bytes += match codec {
                    "quic" => quic::encode(&r, QuicImageType::Rgb32)?.len(),
                    "lz" => lz::encode(&r, LzImageType::Rgb32)?.len(),
                    _ => glz_enc.encode(&r, LzImageType::Rgb32)?.0.len(),
                };
            }
            let el = t.elapsed().as_secs_f64();
            println!(
                "{:<7} {:<5} {:>12.1} {:>12.2} {:>14.1}",
                if noise > 0 { "+-1" } else { "none" },
                codec,
                bytes as f64 / f64::from(FRAMES) / 1000.0,
                el * 1e3 / f64::from(FRAMES),
                f64::from(W * H * FRAMES) / el / 1e6
            );
        }
    }
    Ok(())
}

fn img(d: &[u8]) -> ImageRef<'_> {
    ImageRef {
        width: W,
        height: H,
        stride: W as usize * 4,
        data: d,
    }
}
