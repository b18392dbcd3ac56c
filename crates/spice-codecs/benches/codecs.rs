//! Encode/decode throughput (MB/s of raw 32-bit pixels) on a 1024×768
//! screen-like image: `cargo bench -p spice-codecs`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use spice_codecs::{glz, lz, lz4, quic, ImageRef};

const W: u32 = 1024;
const H: u32 = 768;

/// Desktop-like content: flat background, a window with text-like glyph
/// rows, a title bar and a noisy "photo" patch.
fn screen() -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let glyphs: Vec<u16> = (0..64).map(|_| rnd() as u16).collect();
    let mut v = Vec::with_capacity((W * H * 4) as usize);
    for y in 0..H {
        for x in 0..W {
            let p: u32 = if !(x > 128 && x < 896 && y > 96 && y < 672) {
                0x002a_4d6e
            } else if y < 116 {
                0x00d0_d0d0
            } else if x > 512 && y > 384 && x < 812 && y < 604 {
                0x0040_6080u32.wrapping_add(rnd() as u32 & 0x1f1f1f)
            } else {
                let line = (y - 116) / 14;
                let g = glyphs[((x / 8 + line * 13) % 64) as usize];
                if (y - 116) % 14 < 10 && (g >> ((x % 8) + (y % 2) * 8)) & 1 == 1 {
                    0x0010_1010
                } else {
                    0x00ff_ffff
                }
            };
            v.extend_from_slice(&p.to_le_bytes());
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let data = screen();
    let img = ImageRef {
        width: W,
        height: H,
        stride: W as usize * 4,
        data: &data,
    };
    let mut g = c.benchmark_group("screen-1024x768");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);

    let lz_s = lz::encode(&img, lz::LzImageType::Rgb32).unwrap();
    let q_s = quic::encode(&img, quic::QuicImageType::Rgb32).unwrap();
    let l4_s = lz4::encode(&img, false).unwrap();
    let (glz_s, _) = glz::Encoder::default()
        .encode(&img, lz::LzImageType::Rgb32)
        .unwrap();
    eprintln!(
        "sizes: raw {} LZ {} GLZ {} QUIC {} LZ4 {}",
        data.len(),
        lz_s.len(),
        glz_s.len(),
        q_s.len(),
        l4_s.len()
    );

    g.bench_function("lz_encode", |b| {
        b.iter(|| lz::encode(black_box(&img), lz::LzImageType::Rgb32).unwrap())
    });
    g.bench_function("lz_decode", |b| {
        b.iter(|| lz::decode(black_box(&lz_s), None).unwrap())
    });
    g.bench_function("quic_encode", |b| {
        b.iter(|| quic::encode(black_box(&img), quic::QuicImageType::Rgb32).unwrap())
    });
    g.bench_function("quic_decode", |b| {
        b.iter(|| quic::decode(black_box(&q_s)).unwrap())
    });
    g.bench_function("glz_encode", |b| {
        b.iter(|| {
            glz::Encoder::new(1 << 20)
                .encode(black_box(&img), lz::LzImageType::Rgb32)
                .unwrap()
        })
    });
    g.bench_function("glz_decode", |b| {
        b.iter(|| glz::decode(&mut glz::Window::default(), black_box(&glz_s), None).unwrap())
    });
    g.bench_function("lz4_encode", |b| {
        b.iter(|| lz4::encode(black_box(&img), false).unwrap())
    });
    g.bench_function("lz4_decode", |b| {
        b.iter(|| lz4::decode(black_box(&l4_s), W, H).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
