//! LZ4 payload decoder; the first four bytes choose the image size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let w = u32::from(u16::from_le_bytes([data[0], data[1]])) % 2048;
    let h = u32::from(u16::from_le_bytes([data[2], data[3]])) % 2048;
    if let Ok(b) = spice_codecs::lz4::decode(&data[4..], w, h) {
        assert_eq!(b.data.len(), w as usize * h as usize * 4);
    }
});
