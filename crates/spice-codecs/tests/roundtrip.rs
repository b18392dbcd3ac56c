//! Encoder → decoder round trips on random and screen-like images, ratio
//! sanity, and hostile input (truncation, huge sizes, garbage).

mod common;

use proptest::prelude::*;
use spice_codecs::{glz, jpeg, lz, lz4, quic, zlib_glz, CodecError, ImageRef, PixelFormat};

/// Builds a test image of one of several content kinds.
fn make(kind: u8, w: u32, h: u32, seed: u64) -> Vec<u8> {
    let v = match kind % 6 {
        0 => common::noise(w, h, seed),
        1 => common::flat(w, h, seed as u32),
        2 => common::gradient(w, h),
        3 => common::screen(w, h, seed),
        4 => {
            // Few colours in random rectangles (UI-like), random alpha.
            let mut r = common::Rng(seed | 1);
            let cols: Vec<u32> = (0..4).map(|_| r.next() as u32).collect();
            let rects: Vec<(u32, u32, u32, u32, u32)> = (0..6)
                .map(|_| {
                    let x = r.next() as u32 % w;
                    let y = r.next() as u32 % h;
                    (
                        x,
                        y,
                        1 + r.next() as u32 % w,
                        1 + r.next() as u32 % h,
                        cols[(r.next() % 4) as usize],
                    )
                })
                .collect();
            common::build(w, h, |x, y| {
                rects
                    .iter()
                    .rev()
                    .find(|(rx, ry, rw, rh, _)| x >= *rx && y >= *ry && x < rx + rw && y < ry + rh)
                    .map_or(0xff20_3040, |r| r.4)
            })
        }
        _ => {
            // Noise with long repeated stretches.
            let mut r = common::Rng(seed | 1);
            let base: Vec<u32> = (0..37).map(|_| r.next() as u32).collect();
            common::build(w, h, |x, y| base[((x + y * 3) % 37) as usize])
        }
    };
    if seed % 2 == 0 {
        common::with_alpha(v, w)
    } else {
        v
    }
}

fn image(data: &[u8], w: u32, h: u32) -> ImageRef<'_> {
    ImageRef {
        width: w,
        height: h,
        stride: w as usize * 4,
        data,
    }
}

fn map_px(data: &[u8], f: impl Fn([u8; 4]) -> [u8; 4]) -> Vec<u8> {
    data.chunks_exact(4)
        .flat_map(|p| f([p[0], p[1], p[2], p[3]]))
        .collect()
}

fn exp5(v: u8) -> u8 {
    let t = v >> 3;
    (t << 3) | (t >> 2)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn lz_round_trips(kind in 0u8..6, w in 1u32..70, h in 1u32..40, seed in any::<u64>()) {
        let data = make(kind, w, h, seed);
        let img = image(&data, w, h);
        for ty in [lz::LzImageType::Rgb32, lz::LzImageType::Rgb24, lz::LzImageType::Rgba,
                   lz::LzImageType::Xxxa, lz::LzImageType::A8, lz::LzImageType::Rgb16] {
            let enc = lz::encode(&img, ty).unwrap();
            let (dec, used) = lz::decode_with_len(&enc, None).unwrap();
            prop_assert_eq!(used, enc.len(), "{:?}: stream not fully consumed", ty);
            prop_assert_eq!((dec.width, dec.height), (w, h));
            let want = match ty {
                lz::LzImageType::Rgba => data.clone(),
                lz::LzImageType::Xxxa | lz::LzImageType::A8 => map_px(&data, |p| [0, 0, 0, p[3]]),
                lz::LzImageType::Rgb16 => map_px(&data, |p| [exp5(p[0]), exp5(p[1]), exp5(p[2]), 0]),
                _ => map_px(&data, |p| [p[0], p[1], p[2], 0]),
            };
            prop_assert!(dec.data == want, "{:?} mismatch", ty);
        }
    }

    #[test]
    fn lz_palette_round_trips(w in 1u32..70, h in 1u32..30, seed in any::<u64>(), which in 0usize..5) {
        let (ty, ppb) = [(lz::LzImageType::Plt8, 1u32), (lz::LzImageType::Plt4Le, 2), (lz::LzImageType::Plt4Be, 2),
                         (lz::LzImageType::Plt1Le, 8), (lz::LzImageType::Plt1Be, 8)][which];
        let stride = w.div_ceil(ppb);
        let mut r = common::Rng(seed | 1);
        let runs = seed % 3 == 0;
        let idx: Vec<u8> = (0..stride * h).map(|i| if runs { (i / 9) as u8 } else { r.next() as u8 }).collect();
        let pal: Vec<u32> = (0..256u32).map(|i| i.wrapping_mul(0x0004_0a13) & 0xff_ffff).collect();
        let enc = lz::encode_raw(ty, w, h, stride, seed % 2 == 0, &idx).unwrap();
        let dec = lz::decode(&enc, Some(&pal)).unwrap();
        for y in 0..h {
            let src_row = if seed % 2 == 0 { y } else { h - 1 - y };
            for x in 0..w {
                let b = idx[(src_row * stride + x / ppb) as usize];
                let i = match ty {
                    lz::LzImageType::Plt8 => b,
                    lz::LzImageType::Plt4Le => if x % 2 == 0 { b & 15 } else { b >> 4 },
                    lz::LzImageType::Plt4Be => if x % 2 == 0 { b >> 4 } else { b & 15 },
                    lz::LzImageType::Plt1Le => (b >> (x % 8)) & 1,
                    _ => (b >> (7 - x % 8)) & 1,
                };
                prop_assert_eq!(dec.pixel(x, y), pal[i as usize]);
            }
        }
    }

    #[test]
    fn quic_round_trips(kind in 0u8..6, w in 1u32..70, h in 1u32..40, seed in any::<u64>()) {
        let data = make(kind, w, h, seed);
        let img = image(&data, w, h);
        for ty in [quic::QuicImageType::Rgb32, quic::QuicImageType::Rgba, quic::QuicImageType::Rgb24,
                   quic::QuicImageType::Rgb16, quic::QuicImageType::Gray] {
            let enc = quic::encode(&img, ty).unwrap();
            let dec = quic::decode(&enc).unwrap();
            let want = match ty {
                quic::QuicImageType::Rgba => data.clone(),
                quic::QuicImageType::Rgb16 => map_px(&data, |p| [exp5(p[0]), exp5(p[1]), exp5(p[2]), 0]),
                quic::QuicImageType::Gray => map_px(&data, |p| [p[1], p[1], p[1], 0]),
                _ => map_px(&data, |p| [p[0], p[1], p[2], 0]),
            };
            prop_assert!(dec.data == want, "{:?} mismatch", ty);
        }
    }

    #[test]
    fn glz_sequences_round_trip(kinds in proptest::collection::vec(0u8..6, 1..5), w in 1u32..60, h in 1u32..30, seed in any::<u64>()) {
        let mut enc = glz::Encoder::new(1 << 16);
        let mut win = glz::Window::default();
        for (n, k) in kinds.iter().enumerate() {
            // Repeat earlier content now and then so cross-image matches happen.
            let data = make(*k, w, h, seed.wrapping_add((n / 2) as u64));
            let img = image(&data, w, h);
            let ty = if seed % 3 == 0 { lz::LzImageType::Rgba } else { lz::LzImageType::Rgb32 };
            let (bytes, id) = enc.encode(&img, ty).unwrap();
            prop_assert_eq!(id, n as u64);
            let (dec, did) = glz::decode(&mut win, &bytes, None).unwrap();
            prop_assert_eq!(did, id);
            let want = if ty == lz::LzImageType::Rgba { data.clone() } else { map_px(&data, |p| [p[0], p[1], p[2], 0]) };
            prop_assert!(dec.data == want, "image {} mismatch", n);
            // the same bytes also survive the zlib wrapper
            let z = zlib_glz::encode(&bytes, 6);
            prop_assert_eq!(zlib_glz::inflate(&z, bytes.len() as u32).unwrap(), bytes);
        }
    }

    #[test]
    fn lz4_round_trips(kind in 0u8..6, w in 1u32..70, h in 1u32..40, seed in any::<u64>(), alpha in any::<bool>()) {
        let data = make(kind, w, h, seed);
        let enc = lz4::encode(&image(&data, w, h), alpha).unwrap();
        let dec = lz4::decode(&enc, w, h).unwrap();
        let want = if alpha { data.clone() } else { map_px(&data, |p| [p[0], p[1], p[2], p[3]]) };
        prop_assert!(dec.data == want);
        prop_assert_eq!(dec.format, if alpha { PixelFormat::Rgba } else { PixelFormat::Rgb32 });
    }

    #[test]
    fn decoders_survive_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..400), seed in any::<u64>()) {
        // Also plant valid headers in front of garbage, which reaches deeper.
        let mut lz_stream = lz::encode(&image(&make(3, 9, 7, seed), 9, 7), lz::LzImageType::Rgba).unwrap();
        lz_stream.truncate(28);
        lz_stream.extend_from_slice(&bytes);
        let mut q = quic::encode(&image(&make(3, 9, 7, seed), 9, 7), quic::QuicImageType::Rgba).unwrap();
        q.truncate(20);
        q.extend_from_slice(&bytes);
        let mut g = glz::Encoder::default().encode(&image(&make(0, 9, 7, seed), 9, 7), lz::LzImageType::Rgba).unwrap().0;
        g.truncate(29);
        g.extend_from_slice(&bytes);
        let pal = [1u32, 2, 3];
        for input in [&bytes, &lz_stream, &q, &g] {
            let _ = lz::decode(input, Some(&pal));
            let _ = quic::decode(input);
            let _ = glz::decode(&mut glz::Window::default(), input, Some(&pal));
            let _ = lz4::decode(input, 9, 7);
            let _ = jpeg::decode(input);
            let _ = jpeg::decode_alpha(input, input.len() / 2);
            let _ = zlib_glz::decode(&mut glz::Window::default(), input, 300, None);
        }
    }
}

#[test]
fn flat_screen_lz_is_under_one_percent() {
    let (w, h) = (1024u32, 768u32);
    let data = common::flat(w, h, 0x0030_5070);
    let raw = data.len();
    let lz = lz::encode(&image(&data, w, h), lz::LzImageType::Rgb32).unwrap();
    assert!(lz.len() * 100 < raw, "LZ {} bytes of {raw}", lz.len());
    let (g, _) = glz::Encoder::default()
        .encode(&image(&data, w, h), lz::LzImageType::Rgb32)
        .unwrap();
    assert!(g.len() * 100 < raw, "GLZ {} bytes of {raw}", g.len());
    let q = quic::encode(&image(&data, w, h), quic::QuicImageType::Rgb32).unwrap();
    assert!(q.len() * 100 < raw, "QUIC {} bytes of {raw}", q.len());
    let l4 = lz4::encode(&image(&data, w, h), false).unwrap();
    assert!(l4.len() * 100 < raw, "LZ4 {} bytes of {raw}", l4.len());
}

#[test]
fn screen_like_content_compresses() {
    let (w, h) = (1024u32, 768u32);
    let data = common::screen(w, h, 3);
    let lz = lz::encode(&image(&data, w, h), lz::LzImageType::Rgb32).unwrap();
    let q = quic::encode(&image(&data, w, h), quic::QuicImageType::Rgb32).unwrap();
    eprintln!(
        "screen 1024x768: LZ {} B, QUIC {} B, raw {} B",
        lz.len(),
        q.len(),
        data.len()
    );
    assert!(lz.len() * 10 < data.len());
    assert!(q.len() * 5 < data.len());
}

#[test]
fn glz_reuses_the_previous_frame() {
    let (w, h) = (320u32, 200u32);
    let a = common::screen(w, h, 1);
    let mut b = a.clone();
    // a small change: one text line differs
    for x in 0..200usize {
        b[(100 * w as usize + x) * 4] ^= 0x55;
    }
    let mut enc = glz::Encoder::default();
    let (s0, _) = enc
        .encode(&image(&a, w, h), lz::LzImageType::Rgb32)
        .unwrap();
    let (s1, _) = enc
        .encode(&image(&b, w, h), lz::LzImageType::Rgb32)
        .unwrap();
    assert!(
        s1.len() * 4 < s0.len(),
        "second frame {} vs first {}",
        s1.len(),
        s0.len()
    );
    let mut win = glz::Window::default();
    glz::decode(&mut win, &s0, None).unwrap();
    let (d1, _) = glz::decode(&mut win, &s1, None).unwrap();
    assert!(d1.data == map_px(&b, |p| [p[0], p[1], p[2], 0]));
}

#[test]
fn glz_window_is_bounded_and_releases_old_images() {
    let (w, h) = (64u32, 64u32);
    let mut enc = glz::Encoder::new(3 * 64 * 64);
    let mut win = glz::Window::new(1 << 20);
    for i in 0..20u64 {
        let d = common::noise(w, h, i + 1);
        let (s, _) = enc
            .encode(&image(&d, w, h), lz::LzImageType::Rgb32)
            .unwrap();
        glz::decode(&mut win, &s, None).unwrap();
        assert!(win.len() <= 4, "window holds {} images", win.len());
    }
    // A window capped below one image still keeps the newest image.
    let mut tiny = glz::Window::new(10);
    let mut enc = glz::Encoder::default();
    for i in 0..3u64 {
        let d = common::noise(w, h, i + 7);
        let (s, id) = enc
            .encode(&image(&d, w, h), lz::LzImageType::Rgb32)
            .unwrap();
        glz::decode(&mut tiny, &s, None).unwrap();
        assert!(tiny.contains(id));
        assert_eq!(tiny.len(), 1);
    }
}

#[test]
fn glz_shared_window_waits_for_other_channel() {
    let (w, h) = (48u32, 32u32);
    let d = common::noise(w, h, 77);
    let mut enc = glz::Encoder::default();
    let (s0, _) = enc
        .encode(&image(&d, w, h), lz::LzImageType::Rgb32)
        .unwrap();
    let (s1, _) = enc
        .encode(&image(&d, w, h), lz::LzImageType::Rgb32)
        .unwrap();
    let shared = glz::SharedWindow::new(1 << 20);
    let other = shared.clone();
    let t = std::thread::spawn(move || other.decode(&s1, None, std::time::Duration::from_secs(10)));
    std::thread::sleep(std::time::Duration::from_millis(50));
    shared
        .decode(&s0, None, std::time::Duration::from_secs(1))
        .unwrap();
    let (b1, id1) = t.join().unwrap().unwrap();
    assert_eq!(id1, 1);
    assert!(b1.data == map_px(&d, |p| [p[0], p[1], p[2], 0]));
    // and a reference that never arrives times out with MissingImage
    let (s2, _) = glz::Encoder::default()
        .encode(&image(&d, w, h), lz::LzImageType::Rgb32)
        .unwrap();
    let (s3, _) = {
        let mut e = glz::Encoder::default();
        e.encode(&image(&d, w, h), lz::LzImageType::Rgb32).unwrap();
        e.encode(&image(&d, w, h), lz::LzImageType::Rgb32).unwrap()
    };
    let lonely = glz::SharedWindow::new(1 << 20);
    let _ = s2;
    assert_eq!(
        lonely
            .decode(&s3, None, std::time::Duration::from_millis(30))
            .unwrap_err(),
        CodecError::MissingImage { id: 0 }
    );
}

#[test]
fn jpeg_round_trip_is_close_and_alpha_exact() {
    let (w, h) = (96u32, 64u32);
    let data = common::with_alpha(common::gradient(w, h), w);
    let img = image(&data, w, h);
    let j = jpeg::encode(&img, 95).unwrap();
    let d = jpeg::decode(&j).unwrap();
    assert_eq!((d.width, d.height), (w, h));
    let err: u64 = data
        .chunks_exact(4)
        .zip(d.data.chunks_exact(4))
        .map(|(a, b)| {
            (0..3)
                .map(|c| (i64::from(a[c]) - i64::from(b[c])).unsigned_abs())
                .sum::<u64>()
        })
        .sum();
    let mean = err as f64 / (w * h * 3) as f64;
    assert!(mean < 3.0, "mean abs error {mean}");
    // colour order: a pure red image stays red
    let red = common::flat(16, 16, 0x00ff_0000);
    let r = jpeg::decode(&jpeg::encode(&image(&red, 16, 16), 90).unwrap()).unwrap();
    let p = r.pixel(8, 8);
    assert!((p >> 16) & 0xff > 240 && p & 0xff < 16, "pixel {p:#x}");
    let (ja, jsize) = jpeg::encode_alpha(&img, 90).unwrap();
    let da = jpeg::decode_alpha(&ja, jsize).unwrap();
    assert_eq!(da.format, PixelFormat::Rgba);
    for (a, b) in data.chunks_exact(4).zip(da.data.chunks_exact(4)) {
        assert_eq!(a[3], b[3]);
    }
}

#[test]
fn truncated_streams_are_errors() {
    let (w, h) = (40u32, 30u32);
    let data = common::with_alpha(common::screen(w, h, 5), w);
    let img = image(&data, w, h);
    let lz_s = lz::encode(&img, lz::LzImageType::Rgba).unwrap();
    let q_s = quic::encode(&img, quic::QuicImageType::Rgba).unwrap();
    let (g_s, _) = glz::Encoder::default()
        .encode(&img, lz::LzImageType::Rgba)
        .unwrap();
    let l4 = lz4::encode(&img, true).unwrap();
    let j = jpeg::encode(&img, 80).unwrap();
    for cut in 0..lz_s.len() {
        assert!(lz::decode(&lz_s[..cut], None).is_err(), "lz cut {cut}");
    }
    for cut in 0..g_s.len() {
        assert!(
            glz::decode(&mut glz::Window::default(), &g_s[..cut], None).is_err(),
            "glz cut {cut}"
        );
    }
    // QUIC's last word is padding the decoder may not need: drop ≥ 2 words.
    for cut in 0..q_s.len().saturating_sub(8) {
        assert!(quic::decode(&q_s[..cut]).is_err(), "quic cut {cut}");
    }
    for cut in 0..l4.len() {
        assert!(lz4::decode(&l4[..cut], w, h).is_err(), "lz4 cut {cut}");
    }
    for cut in (0..j.len()).step_by(7) {
        assert!(
            jpeg::decode(&j[..cut]).is_err() || cut > j.len() - 3,
            "jpeg cut {cut}"
        );
    }
}

#[test]
fn huge_dimensions_are_refused_without_allocating() {
    let mut s = Vec::new();
    for v in [lz::MAGIC, lz::VERSION, 8, 100_000, 100_000, 400_000, 1] {
        s.extend_from_slice(&v.to_be_bytes());
    }
    assert!(matches!(
        lz::decode(&s, None),
        Err(CodecError::TooLarge { .. })
    ));
    let mut s = Vec::new();
    for v in [lz::MAGIC, lz::VERSION, 8, 16000, 4000, 64000, 1] {
        s.extend_from_slice(&v.to_be_bytes());
    }
    s.push(0);
    // within the dimension cap but the 29-byte stream cannot hold 64M pixels
    assert!(matches!(
        lz::decode(&s, None),
        Err(CodecError::Corrupt { .. })
    ));
    let mut q = Vec::new();
    for v in [quic::MAGIC, quic::VERSION, 4, 16000, 4000] {
        q.extend_from_slice(&v.to_le_bytes());
    }
    q.extend_from_slice(&[0; 8]);
    assert!(quic::decode(&q).is_err());
    let mut q = Vec::new();
    for v in [quic::MAGIC, quic::VERSION, 4, 1 << 20, 1] {
        q.extend_from_slice(&v.to_le_bytes());
    }
    assert!(matches!(quic::decode(&q), Err(CodecError::TooLarge { .. })));
    assert!(lz4::decode(&[1, 8, 0, 0, 0, 1, 0], 16384, 16384).is_err());
    assert!(zlib_glz::inflate(&[0x78, 0x9c], u32::MAX).is_err());
    let mut g = Vec::new();
    g.extend_from_slice(&lz::MAGIC.to_be_bytes());
    g.extend_from_slice(&lz::VERSION.to_be_bytes());
    g.push(8 | 16);
    for v in [70_000u32, 70_000, 280_000] {
        g.extend_from_slice(&v.to_be_bytes());
    }
    g.extend_from_slice(&[0; 12]);
    assert!(matches!(
        glz::decode(&mut glz::Window::default(), &g, None),
        Err(CodecError::TooLarge { .. })
    ));
}

#[test]
fn bad_headers_name_the_problem() {
    let data = common::noise(4, 4, 1);
    let mut s = lz::encode(&image(&data, 4, 4), lz::LzImageType::Rgb32).unwrap();
    s[0] = b'X';
    assert!(matches!(
        lz::decode(&s, None),
        Err(CodecError::BadMagic { codec: "lz", .. })
    ));
    let mut s = lz::encode(&image(&data, 4, 4), lz::LzImageType::Rgb32).unwrap();
    s[11] = 12;
    assert!(matches!(
        lz::decode(&s, None),
        Err(CodecError::BadType { value: 12, .. })
    ));
    let plt = lz::encode_raw(lz::LzImageType::Plt8, 4, 4, 4, true, &[0; 16]).unwrap();
    assert!(matches!(
        lz::decode(&plt, None),
        Err(CodecError::MissingPalette { .. })
    ));
    let mut s = lz::encode(&image(&data, 4, 4), lz::LzImageType::Rgb32).unwrap();
    s[23] = 15; // stride 15 for width 4
    assert!(matches!(
        lz::decode(&s, None),
        Err(CodecError::BadStride { .. })
    ));
    let msg = lz::decode(&[], None).unwrap_err().to_string();
    assert!(msg.contains("lz") && msg.contains("truncated"), "{msg}");
}
