//! LZ decoder on arbitrary bytes; the first byte picks a palette size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pal_len, rest) = match data.split_first() {
        Some((&n, rest)) => (n as usize, rest),
        None => return,
    };
    let palette: Vec<u32> = (0..pal_len as u32).map(|i| i * 0x010101).collect();
    let pal = if pal_len == 0 {
        None
    } else {
        Some(&palette[..])
    };
    if let Ok(b) = spice_codecs::lz::decode(rest, pal) {
        assert_eq!(b.data.len(), b.width as usize * b.height as usize * 4);
    }
});
