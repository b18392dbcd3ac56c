//! Cross-checks against spice-common's own C codecs, built outside this
//! repository as an "oracle" command (see `tests/fixtures/README.md`). Set
//! `SPICE_CODECS_ORACLE` to its path; without it these tests print SKIP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use spice_codecs::{lz, quic, ImageRef};

fn oracle() -> Option<PathBuf> {
    oracle_from("SPICE_CODECS_ORACLE", "spice-common's codec oracle")
}

/// The oracle program named by the environment variable `var`, or `None` after printing
/// a SKIP saying it is not set to `what`.
fn oracle_from(var: &str, what: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.exists());
    if p.is_none() {
        eprintln!("SKIP: {var} is not set to {what}");
    }
    p
}

/// A packed 32-bit `w`×`h` image over `data`.
fn image(w: u32, h: u32, data: &[u8]) -> ImageRef<'_> {
    ImageRef {
        width: w,
        height: h,
        stride: w as usize * 4,
        data,
    }
}

/// What a decoder gives back for `data` encoded as RGBA (`alpha`) or as RGB32 (the
/// fourth byte zero).
fn expected(data: &[u8], alpha: bool) -> Vec<u8> {
    if alpha {
        data.to_vec()
    } else {
        strip_x(data)
    }
}

/// Runs an oracle encoder: `TOOL TYPE W H RAW OUT`.
fn oracle_encode(oracle: &Path, tool: &str, ty: u32, w: u32, h: u32, raw: &Path, out: &Path) {
    run(
        oracle,
        &[
            tool,
            &ty.to_string(),
            &w.to_string(),
            &h.to_string(),
            raw.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("spice-codecs-oracle-{}-{name}", std::process::id()))
}

fn run<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(oracle: &Path, args: &[S]) -> String {
    let out = Command::new(oracle)
        .args(args)
        .output()
        .expect("run oracle");
    assert!(
        out.status.success(),
        "oracle {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn images() -> Vec<(&'static str, u32, u32, Vec<u8>)> {
    vec![
        ("flat", 64, 48, common::flat(64, 48, 0x00336699)),
        ("gradient", 300, 200, common::gradient(300, 200)),
        ("noise", 97, 61, common::noise(97, 61, 5)),
        ("screen", 640, 480, common::screen(640, 480, 9)),
        ("wide", 5000, 3, common::screen(5000, 3, 2)),
        ("tiny", 3, 1, common::noise(3, 1, 7)),
        (
            "alpha",
            120,
            90,
            common::with_alpha(common::screen(120, 90, 4), 120),
        ),
    ]
}

fn strip_x(v: &[u8]) -> Vec<u8> {
    v.chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2], 0])
        .collect()
}

#[test]
fn our_lz_decodes_with_spice_and_back() {
    let Some(o) = oracle() else { return };
    for (name, w, h, data) in images() {
        let img = image(w, h, &data);
        for ty in [lz::LzImageType::Rgb32, lz::LzImageType::Rgba] {
            let enc = lz::encode(&img, ty).unwrap();
            let (fi, fo) = (
                tmp(&format!("{name}-lz.bin")),
                tmp(&format!("{name}-lz.raw")),
            );
            std::fs::write(&fi, &enc).unwrap();
            run(&o, &["lz-dec", fi.to_str().unwrap(), fo.to_str().unwrap()]);
            let theirs = std::fs::read(&fo).unwrap();
            let want = expected(&data, ty == lz::LzImageType::Rgba);
            assert!(
                theirs == want,
                "{name} {ty:?}: spice decodes our LZ differently"
            );
            // and spice's encoder output decodes with ours
            let raw = tmp(&format!("{name}-in.raw"));
            std::fs::write(&raw, &data).unwrap();
            oracle_encode(&o, "lz-enc", ty as u32, w, h, &raw, &fi);
            let spice_bytes = std::fs::read(&fi).unwrap();
            let ours = lz::decode(&spice_bytes, None).unwrap();
            assert!(
                ours.data == want,
                "{name} {ty:?}: we decode spice's LZ differently"
            );
            eprintln!(
                "{name} {ty:?}: ours {} bytes, spice {} bytes",
                enc.len(),
                spice_bytes.len()
            );
            for f in [fi, fo, raw] {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

#[test]
fn quic_is_bit_identical_to_spice() {
    let Some(o) = oracle() else { return };
    for (name, w, h, data) in images() {
        let img = image(w, h, &data);
        for ty in [quic::QuicImageType::Rgb32, quic::QuicImageType::Rgba] {
            let ours = quic::encode(&img, ty).unwrap();
            let raw = tmp(&format!("{name}-q.raw"));
            let enc = tmp(&format!("{name}-q.bin"));
            std::fs::write(&raw, &data).unwrap();
            oracle_encode(&o, "quic-enc", ty as u32, w, h, &raw, &enc);
            let theirs = std::fs::read(&enc).unwrap();
            assert!(
                ours == theirs,
                "{name} {ty:?}: encoded bytes differ ({} vs {})",
                ours.len(),
                theirs.len()
            );
            let dec = quic::decode(&theirs).unwrap();
            let want = expected(&data, ty == quic::QuicImageType::Rgba);
            assert!(dec.data == want, "{name} {ty:?}: decode differs");
            for f in [raw, enc] {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Repacks 32-bit pixels into the layout a QUIC/LZ type reads natively.
fn native(data: &[u8], fmt: &str) -> Vec<u8> {
    data.chunks_exact(4)
        .flat_map(|p| match fmt {
            "rgb24" => vec![p[0], p[1], p[2]],
            "rgb16" => {
                let v = (u16::from(p[2] >> 3) << 10)
                    | (u16::from(p[1] >> 3) << 5)
                    | u16::from(p[0] >> 3);
                v.to_le_bytes().to_vec()
            }
            "gray" => vec![p[1]],
            _ => p.to_vec(),
        })
        .collect()
}

#[test]
fn quic_other_types_are_bit_identical() {
    let Some(o) = oracle() else { return };
    for (name, w, h, data) in images() {
        let img = image(w, h, &data);
        for (ty, fmt) in [
            (quic::QuicImageType::Rgb24, "rgb24"),
            (quic::QuicImageType::Rgb16, "rgb16"),
            (quic::QuicImageType::Gray, "gray"),
        ] {
            let ours = quic::encode(&img, ty).unwrap();
            let raw = tmp(&format!("{name}-{fmt}.raw"));
            let enc = tmp(&format!("{name}-{fmt}.bin"));
            let dec = tmp(&format!("{name}-{fmt}.out"));
            std::fs::write(&raw, native(&data, fmt)).unwrap();
            oracle_encode(&o, "quic-enc", ty as u32, w, h, &raw, &enc);
            let theirs = std::fs::read(&enc).unwrap();
            assert!(
                ours == theirs,
                "{name} {ty:?}: encoded bytes differ ({} vs {})",
                ours.len(),
                theirs.len()
            );
            run(
                &o,
                &["quic-dec", enc.to_str().unwrap(), dec.to_str().unwrap()],
            );
            let spice_px = std::fs::read(&dec).unwrap();
            let our_px = quic::decode(&theirs).unwrap();
            let want: Vec<u8> = if fmt == "gray" {
                our_px.data.chunks_exact(4).map(|p| p[1]).collect()
            } else {
                our_px.data.clone()
            };
            assert!(spice_px == want, "{name} {ty:?}: decoded pixels differ");
            for f in [raw, enc, dec] {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

#[test]
fn lz_other_types_match_spice() {
    let Some(o) = oracle() else { return };
    for (name, w, h, data) in images() {
        let img = image(w, h, &data);
        for ty in [
            lz::LzImageType::Rgb24,
            lz::LzImageType::Rgb16,
            lz::LzImageType::Xxxa,
            lz::LzImageType::A8,
        ] {
            let ours = lz::encode(&img, ty).unwrap();
            let ours_dec = lz::decode(&ours, None).unwrap();
            let fi = tmp(&format!("{name}-{ty:?}.bin"));
            let fo = tmp(&format!("{name}-{ty:?}.out"));
            std::fs::write(&fi, &ours).unwrap();
            run(&o, &["lz-dec", fi.to_str().unwrap(), fo.to_str().unwrap()]);
            let theirs = std::fs::read(&fo).unwrap();
            let want: Vec<u8> = match ty {
                lz::LzImageType::A8 => ours_dec.data.chunks_exact(4).map(|p| p[3]).collect(),
                lz::LzImageType::Xxxa => ours_dec
                    .data
                    .chunks_exact(4)
                    .flat_map(|p| [0, 0, 0, p[3]])
                    .collect(),
                _ => ours_dec.data.clone(),
            };
            assert!(
                theirs == want,
                "{name} {ty:?}: spice decodes our stream differently"
            );
            let _ = std::fs::remove_file(&fi);
            let _ = std::fs::remove_file(&fo);
        }
        // Palette types: spice encodes packed indices, both decode with a palette.
        let pal: Vec<u32> = (0..256u32)
            .map(|i| i.wrapping_mul(0x0001_0305) & 0xffffff)
            .collect();
        let pal_file = tmp(&format!("{name}-pal.bin"));
        std::fs::write(
            &pal_file,
            pal.iter().flat_map(|p| p.to_le_bytes()).collect::<Vec<_>>(),
        )
        .unwrap();
        for (ty, ppb) in [
            (lz::LzImageType::Plt8, 1u32),
            (lz::LzImageType::Plt4Le, 2),
            (lz::LzImageType::Plt4Be, 2),
            (lz::LzImageType::Plt1Le, 8),
            (lz::LzImageType::Plt1Be, 8),
        ] {
            let stride = w.div_ceil(ppb);
            let idx: Vec<u8> = (0..stride * h)
                .map(|i| data[(i as usize * 4) % data.len()] ^ (i / stride) as u8)
                .collect();
            let raw = tmp(&format!("{name}-{ty:?}.idx"));
            let fi = tmp(&format!("{name}-{ty:?}.plz"));
            let fo = tmp(&format!("{name}-{ty:?}.pout"));
            std::fs::write(&raw, &idx).unwrap();
            oracle_encode(&o, "lz-enc", ty as u32, w, h, &raw, &fi);
            let spice_stream = std::fs::read(&fi).unwrap();
            // Use only 16 entries for 4-bit and 2 for 1-bit, as real palettes do.
            let n = match ppb {
                1 => 256,
                2 => 16,
                _ => 2,
            };
            std::fs::write(
                &pal_file,
                pal[..n]
                    .iter()
                    .flat_map(|p| p.to_le_bytes())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            run(
                &o,
                &[
                    "lz-dec",
                    fi.to_str().unwrap(),
                    fo.to_str().unwrap(),
                    pal_file.to_str().unwrap(),
                ],
            );
            let theirs = std::fs::read(&fo).unwrap();
            let ours = lz::decode(&spice_stream, Some(&pal[..n])).unwrap();
            let row_px = (stride * ppb) as usize;
            for y in 0..h as usize {
                let a = &theirs[y * row_px * 4..(y * row_px + w as usize) * 4];
                let b = &ours.data[y * w as usize * 4..(y + 1) * w as usize * 4];
                assert!(a == b, "{name} {ty:?}: row {y} differs");
            }
            // our encoder's stream for the same indices decodes identically in spice
            let mine = lz::encode_raw(ty, w, h, stride, true, &idx).unwrap();
            std::fs::write(&fi, &mine).unwrap();
            run(
                &o,
                &[
                    "lz-dec",
                    fi.to_str().unwrap(),
                    fo.to_str().unwrap(),
                    pal_file.to_str().unwrap(),
                ],
            );
            assert!(
                std::fs::read(&fo).unwrap() == theirs,
                "{name} {ty:?}: our palette stream differs in spice"
            );
            for f in [raw, fi, fo] {
                let _ = std::fs::remove_file(f);
            }
        }
        let _ = std::fs::remove_file(pal_file);
    }
}

/// Regenerates `tests/fixtures/*` from spice's encoder (run with
/// `SPICE_CODECS_WRITE_FIXTURES=1` and the oracle set).
#[test]
fn write_golden_fixtures() {
    let Some(o) = oracle() else { return };
    if std::env::var_os("SPICE_CODECS_WRITE_FIXTURES").is_none() {
        eprintln!("SKIP: SPICE_CODECS_WRITE_FIXTURES not set");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let (w, h) = (160u32, 120u32);
    let data = common::with_alpha(common::screen(w, h, 11), w);
    let raw = tmp("fixture.raw");
    std::fs::write(&raw, &data).unwrap();
    let (ws, hs) = (w.to_string(), h.to_string());
    for (file, tool, ty) in [
        (
            "screen160x120.lz-rgb32.bin",
            "lz-enc",
            lz::LzImageType::Rgb32 as u32,
        ),
        (
            "screen160x120.lz-rgba.bin",
            "lz-enc",
            lz::LzImageType::Rgba as u32,
        ),
        (
            "screen160x120.quic-rgb32.bin",
            "quic-enc",
            quic::QuicImageType::Rgb32 as u32,
        ),
        (
            "screen160x120.quic-rgba.bin",
            "quic-enc",
            quic::QuicImageType::Rgba as u32,
        ),
    ] {
        let out = dir.join(file);
        run(
            &o,
            &[
                tool,
                &ty.to_string(),
                &ws,
                &hs,
                raw.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        );
    }
    let idx: Vec<u8> = data.chunks_exact(4).map(|p| p[0] ^ p[1]).collect();
    std::fs::write(&raw, &idx).unwrap();
    let out = dir.join("screen160x120.lz-plt8.bin");
    run(
        &o,
        &[
            "lz-enc",
            &(lz::LzImageType::Plt8 as u32).to_string(),
            &ws,
            &hs,
            raw.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&raw);
    // spice-server GLZ: three frames (seeds 1, 2, 1) sharing one dictionary.
    let Some(g) = std::env::var_os("SPICE_CODECS_GLZ_ENCODER")
        .map(PathBuf::from)
        .filter(|p| p.exists())
    else {
        eprintln!("SKIP: GLZ fixtures need SPICE_CODECS_GLZ_ENCODER");
        return;
    };
    for (tag, ty) in [
        ("rgb32", lz::LzImageType::Rgb32),
        ("rgba", lz::LzImageType::Rgba),
    ] {
        let mut args = vec![(ty as u32).to_string(), ws.clone(), hs.clone()];
        for (i, seed) in [1u64, 2, 1].into_iter().enumerate() {
            let d = common::with_alpha(common::screen(w, h, seed), w);
            let fi = tmp(&format!("fx{i}.raw"));
            std::fs::write(&fi, &d).unwrap();
            args.push(fi.to_str().unwrap().to_string());
            args.push(
                dir.join(format!("screen160x120.glz-{tag}.{i}.bin"))
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
        }
        run(&g, &args);
        for i in 0..3 {
            let _ = std::fs::remove_file(tmp(&format!("fx{i}.raw")));
        }
    }
}

/// spice-gtk's GLZ decoding template (`decode-glz-tmpl.c`) built with a
/// simple id-indexed window: `glzoracle IN1 OUT1 IN2 OUT2 …` decodes in
/// order and fails unless every stream is consumed exactly.
#[test]
fn our_glz_decodes_with_spice_gtk() {
    let Some(o) = oracle_from("SPICE_CODECS_GLZ_ORACLE", "spice-gtk's GLZ decoding oracle") else {
        return;
    };
    for ty in [lz::LzImageType::Rgb32, lz::LzImageType::Rgba] {
        let mut enc = spice_codecs::glz::Encoder::new(1 << 20);
        let (w, h) = (200u32, 150u32);
        let mut frames = glz_frames(w, h);
        // Noise with bands copied from the noise frame at other positions:
        // matches found after the encoder skipped ahead, extended backwards.
        let mut d = common::noise(w, h, 5);
        for j in 0..4usize {
            let (to, from, len) = (
                (10 + 30 * j) * w as usize + 17 * j + 3,
                (5 + 31 * j) * w as usize + 7,
                900,
            );
            d[to * 4..(to + len) * 4].copy_from_slice(&frames[6][from * 4..(from + len) * 4]);
        }
        frames.push(d);
        let mut args = Vec::new();
        let mut files = Vec::new();
        for (i, d) in frames.iter().enumerate() {
            let img = image(w, h, d);
            let (s, _) = enc.encode(&img, ty).unwrap();
            let fi = tmp(&format!("glz{i}.bin"));
            let fo = tmp(&format!("glz{i}.out"));
            std::fs::write(&fi, &s).unwrap();
            args.push(fi.to_str().unwrap().to_string());
            args.push(fo.to_str().unwrap().to_string());
            files.push((fi, fo, d.clone(), s.len()));
        }
        run(&o, &args);
        for (i, (fi, fo, d, len)) in files.into_iter().enumerate() {
            let got = std::fs::read(&fo).unwrap();
            let want = expected(&d, ty == lz::LzImageType::Rgba);
            assert!(
                got == want,
                "{ty:?} frame {i}: spice-gtk decodes our GLZ differently"
            );
            eprintln!("{ty:?} frame {i}: {len} bytes");
            let _ = std::fs::remove_file(fi);
            let _ = std::fs::remove_file(fo);
        }
    }
}

/// Eight GLZ test frames: screens (seeds 1, 1, 2, 2, 3, 3; odd ones scrolled by three
/// rows), noise, and the first frame again.
fn glz_frames(w: u32, h: u32) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for i in 0..6u64 {
        let mut d = common::with_alpha(common::screen(w, h, 1 + i / 2), w);
        // scroll-like change on odd frames
        if i % 2 == 1 {
            d.rotate_left((w * 4 * 3) as usize);
        }
        frames.push(d);
    }
    frames.push(common::noise(w, h, 3));
    frames.push(frames[0].clone());
    frames
}

/// spice-server's own GLZ encoder (`server/glz-encoder.c` with its shared
/// dictionary), built as `glzenc TYPE W H IN1 OUT1 …`: we must decode its
/// streams, cross-image references included.
#[test]
fn spice_server_glz_decodes_with_ours() {
    let Some(o) = oracle_from(
        "SPICE_CODECS_GLZ_ENCODER",
        "spice-server's GLZ encoder oracle",
    ) else {
        return;
    };
    let (w, h) = (200u32, 150u32);
    for ty in [lz::LzImageType::Rgb32, lz::LzImageType::Rgba] {
        let frames = glz_frames(w, h);
        let mut args = vec![(ty as u32).to_string(), w.to_string(), h.to_string()];
        let mut outs = Vec::new();
        for (i, d) in frames.iter().enumerate() {
            let fi = tmp(&format!("sglz{i}.raw"));
            let fo = tmp(&format!("sglz{i}.bin"));
            std::fs::write(&fi, d).unwrap();
            args.push(fi.to_str().unwrap().to_string());
            args.push(fo.to_str().unwrap().to_string());
            outs.push((fi, fo));
        }
        run(&o, &args);
        let mut win = spice_codecs::glz::Window::default();
        let mut ours_enc = spice_codecs::glz::Encoder::default();
        for (i, ((fi, fo), d)) in outs.into_iter().zip(&frames).enumerate() {
            let s = std::fs::read(&fo).unwrap();
            let (b, id) = spice_codecs::glz::decode(&mut win, &s, None).unwrap();
            assert_eq!(id, i as u64);
            let want = expected(d, ty == lz::LzImageType::Rgba);
            assert!(
                b.data == want,
                "{ty:?} frame {i}: we decode spice-server's GLZ differently"
            );
            let img = image(w, h, d);
            let mine = ours_enc.encode(&img, ty).unwrap().0.len();
            eprintln!(
                "{ty:?} frame {i}: spice-server {} bytes, ours {mine} bytes",
                s.len()
            );
            let _ = std::fs::remove_file(fi);
            let _ = std::fs::remove_file(fo);
        }
    }
}

/// spice-server's GLZ encoder on the other image types it supports (RGB16,
/// RGB24 and the palette types), three frames sharing one dictionary.
#[test]
fn spice_server_glz_other_types_decode_with_ours() {
    let Some(o) = oracle_from(
        "SPICE_CODECS_GLZ_ENCODER",
        "spice-server's GLZ encoder oracle",
    ) else {
        return;
    };
    let (w, h) = (101u32, 37u32);
    let pal: Vec<u32> = (0..256u32)
        .map(|i| i.wrapping_mul(0x0003_0907) & 0xff_ffff)
        .collect();
    let exp5 = |v: u8| {
        let t = v >> 3;
        (t << 3) | (t >> 2)
    };
    for (ty, ppb) in [
        (lz::LzImageType::Rgb16, 0u32),
        (lz::LzImageType::Rgb24, 0),
        (lz::LzImageType::Plt8, 1),
        (lz::LzImageType::Plt4Le, 2),
        (lz::LzImageType::Plt4Be, 2),
        (lz::LzImageType::Plt1Le, 8),
        (lz::LzImageType::Plt1Be, 8),
    ] {
        let frames: Vec<Vec<u8>> = [1u64, 2, 1]
            .iter()
            .map(|&s| common::screen(w, h, s))
            .collect();
        let mut args = vec![(ty as u32).to_string(), w.to_string(), h.to_string()];
        let mut files = Vec::new();
        let mut expected = Vec::new();
        for (i, d) in frames.iter().enumerate() {
            let (native, want): (Vec<u8>, Vec<u8>) = if ppb == 0 {
                let native = if ty == lz::LzImageType::Rgb16 {
                    native(d, "rgb16")
                } else {
                    native(d, "rgb24")
                };
                let want = d
                    .chunks_exact(4)
                    .flat_map(|p| {
                        if ty == lz::LzImageType::Rgb16 {
                            [exp5(p[0]), exp5(p[1]), exp5(p[2]), 0]
                        } else {
                            [p[0], p[1], p[2], 0]
                        }
                    })
                    .collect();
                (native, want)
            } else {
                let stride = w.div_ceil(ppb) as usize;
                let bits = 8 / ppb as usize;
                let mut idx = vec![0u8; stride * h as usize];
                let mut want = Vec::new();
                for y in 0..h as usize {
                    for x in 0..w as usize {
                        let p = &d[(y * w as usize + x) * 4..];
                        let v = ((p[0] ^ p[2]) as usize) & ((1 << bits) - 1);
                        let k = x % ppb as usize;
                        let shift = match ty {
                            lz::LzImageType::Plt4Be => 4 - 4 * k,
                            lz::LzImageType::Plt4Le => 4 * k,
                            lz::LzImageType::Plt1Be => 7 - k,
                            lz::LzImageType::Plt1Le => k,
                            _ => 0,
                        };
                        idx[y * stride + x / ppb as usize] |= (v << shift) as u8;
                        want.extend_from_slice(&pal[v].to_le_bytes());
                    }
                }
                (idx, want)
            };
            let fi = tmp(&format!("sglzt{i}.raw"));
            let fo = tmp(&format!("sglzt{i}.bin"));
            std::fs::write(&fi, native).unwrap();
            args.push(fi.to_str().unwrap().to_string());
            args.push(fo.to_str().unwrap().to_string());
            files.push((fi, fo));
            expected.push(want);
        }
        run(&o, &args);
        let mut win = spice_codecs::glz::Window::default();
        let n = match ppb {
            0 | 1 => 256,
            2 => 16,
            _ => 2,
        };
        for (i, ((fi, fo), want)) in files.into_iter().zip(expected).enumerate() {
            let s = std::fs::read(&fo).unwrap();
            let (b, _) = spice_codecs::glz::decode(&mut win, &s, Some(&pal[..n])).unwrap();
            assert!(
                b.data == want,
                "{ty:?} frame {i}: we decode spice-server's GLZ differently"
            );
            eprintln!("{ty:?} frame {i}: {} bytes", s.len());
            let _ = std::fs::remove_file(fi);
            let _ = std::fs::remove_file(fo);
        }
    }
}

/// The real Xspice GLZ session (`tests/fixtures/xspice`) decodes to the same
/// pixels in spice-gtk's GLZ template as in ours.
#[test]
fn xspice_glz_session_matches_spice_gtk() {
    let Some(o) = oracle_from("SPICE_CODECS_GLZ_ORACLE", "spice-gtk's GLZ decoding oracle") else {
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xspice");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("glz."))
        .collect();
    names.sort();
    let mut args = Vec::new();
    let mut outs = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let fo = tmp(&format!("xglz{i}.out"));
        args.push(n.to_str().unwrap().to_string());
        args.push(fo.to_str().unwrap().to_string());
        outs.push(fo);
    }
    run(&o, &args);
    let mut win = spice_codecs::glz::Window::default();
    for (n, fo) in names.iter().zip(outs) {
        let (b, _) = spice_codecs::glz::decode(&mut win, &std::fs::read(n).unwrap(), None).unwrap();
        let theirs = std::fs::read(&fo).unwrap();
        assert!(
            b.data == theirs,
            "{}: pixels differ from spice-gtk",
            n.display()
        );
        let _ = std::fs::remove_file(fo);
    }
}
