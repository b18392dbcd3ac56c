//! Decodes streams made by spice-common's own encoders (see
//! `tests/fixtures/README.md`) and checks QUIC encoding is byte-identical.

mod common;

use spice_codecs::{glz, lz, quic, ImageRef, PixelFormat};

const W: u32 = 160;
const H: u32 = 120;

fn scene() -> Vec<u8> {
    common::with_alpha(common::screen(W, H, 11), W)
}

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn no_alpha(v: &[u8]) -> Vec<u8> {
    v.chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2], 0])
        .collect()
}

#[test]
fn spice_lz_rgb32_decodes() {
    let b = lz::decode(&fixture("screen160x120.lz-rgb32.bin"), None).unwrap();
    assert_eq!(
        (b.width, b.height, b.format, b.top_down),
        (W, H, PixelFormat::Rgb32, true)
    );
    assert!(b.data == no_alpha(&scene()));
}

#[test]
fn spice_lz_rgba_decodes() {
    let b = lz::decode(&fixture("screen160x120.lz-rgba.bin"), None).unwrap();
    assert_eq!(b.format, PixelFormat::Rgba);
    assert!(b.data == scene());
}

#[test]
fn spice_lz_plt8_decodes_through_the_palette() {
    let pal: Vec<u32> = (0..256u32).map(|i| (i * 0x010101) ^ 0x00a050).collect();
    let b = lz::decode(&fixture("screen160x120.lz-plt8.bin"), Some(&pal)).unwrap();
    assert_eq!(b.format, PixelFormat::Plt8);
    for (i, p) in scene().chunks_exact(4).enumerate() {
        let want = pal[(p[0] ^ p[1]) as usize];
        assert_eq!(b.pixel(i as u32 % W, i as u32 / W), want, "pixel {i}");
    }
}

#[test]
fn spice_quic_decodes_and_our_encoder_matches_byte_for_byte() {
    let data = scene();
    let img = ImageRef {
        width: W,
        height: H,
        stride: W as usize * 4,
        data: &data,
    };
    for (file, ty) in [
        ("screen160x120.quic-rgb32.bin", quic::QuicImageType::Rgb32),
        ("screen160x120.quic-rgba.bin", quic::QuicImageType::Rgba),
    ] {
        let spice = fixture(file);
        let b = quic::decode(&spice).unwrap();
        let want = if ty == quic::QuicImageType::Rgba {
            data.clone()
        } else {
            no_alpha(&data)
        };
        assert!(b.data == want, "{file}: pixels differ");
        assert!(
            quic::encode(&img, ty).unwrap() == spice,
            "{file}: our encoding differs"
        );
    }
}

#[test]
fn spice_server_glz_sequence_decodes_with_cross_image_references() {
    for (tag, alpha) in [("rgb32", false), ("rgba", true)] {
        let mut win = glz::Window::default();
        for (i, seed) in [1u64, 2, 1].into_iter().enumerate() {
            let s = fixture(&format!("screen160x120.glz-{tag}.{i}.bin"));
            let hdr = glz::parse_header(&s).unwrap();
            assert_eq!((hdr.id, hdr.width, hdr.height), (i as u64, W, H));
            if i == 2 {
                // the third frame repeats the first: tiny, and only decodable
                // with the window holding frame 0
                assert!(s.len() < 1000, "{tag}: {} bytes", s.len());
                assert!(glz::decode(&mut glz::Window::default(), &s, None).is_err());
            }
            let (b, id) = glz::decode(&mut win, &s, None).unwrap();
            assert_eq!(id, i as u64);
            let src = common::with_alpha(common::screen(W, H, seed), W);
            let want = if alpha { src } else { no_alpha(&src) };
            assert!(b.data == want, "{tag} frame {i}: pixels differ");
        }
    }
}
