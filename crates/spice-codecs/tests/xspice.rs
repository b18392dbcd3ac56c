//! Streams captured from a real spice-server (Debian's Xspice, spice-server
//! 0.15.1) between it and spice-gtk's `spicy-screenshot` / `spicy-stats`
//! (see `tests/fixtures/README.md`). The LZ and QUIC frames must decode to
//! the X server's own framebuffer, checked through an FNV-1a-64 digest of
//! its B, G, R, 0 bytes taken with `import -window root` at capture time.

use spice_codecs::{glz, lz, quic, Bitmap, PixelFormat};

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/xspice")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn fnv_bgr0(b: &Bitmap) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in b.data.chunks_exact(4) {
        for v in [p[0], p[1], p[2], 0] {
            h ^= u64::from(v);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[test]
fn xspice_lz_frame_equals_the_x_framebuffer() {
    // root window: `xsetroot -mod 7 5 -fg '#336699' -bg '#ffcc00'`
    let b = lz::decode(&fixture("lz-rgb.1024x768.bin"), None).unwrap();
    assert_eq!(
        (b.width, b.height, b.format),
        (1024, 768, PixelFormat::Rgb32)
    );
    assert_eq!(fnv_bgr0(&b), 0x3ec3_9054_f95b_4325);
}

#[test]
fn xspice_quic_frame_equals_the_x_framebuffer() {
    // root window `xsetroot -solid '#336699'` with an xlogo window
    let b = quic::decode(&fixture("quic.1024x768.bin")).unwrap();
    assert_eq!(
        (b.width, b.height, b.format),
        (1024, 768, PixelFormat::Rgb32)
    );
    assert_eq!(fnv_bgr0(&b), 0x95b7_5773_b7de_428c);
}

#[test]
fn xspice_glz_session_decodes_in_order() {
    // 13 GLZ RGBA images of an auto_glz session (xlogo, xsetroot, xclock).
    let mut names: Vec<String> = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xspice"),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .filter(|n| n.starts_with("glz."))
    .collect();
    names.sort();
    assert_eq!(names.len(), 13);
    let mut win = glz::Window::default();
    for (i, n) in names.iter().enumerate() {
        let s = fixture(n);
        let h = glz::parse_header(&s).unwrap();
        assert_eq!(h.id, i as u64, "{n}");
        // every image may reach back to the first one
        assert_eq!(u64::from(h.win_head_dist), i as u64, "{n}");
        // one byte short is an error and leaves the window as it was
        assert!(
            glz::decode(&mut win, &s[..s.len() - 1], None).is_err(),
            "{n}"
        );
        assert_eq!(win.len(), i);
        let (b, id) = glz::decode(&mut win, &s, None).unwrap();
        assert_eq!(id, i as u64);
        assert_eq!(b.format, PixelFormat::Rgba);
    }
    assert_eq!(win.len(), 13);
}
