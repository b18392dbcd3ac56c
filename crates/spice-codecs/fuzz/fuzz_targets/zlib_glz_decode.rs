//! ZLIB_GLZ: the first four bytes are the announced GLZ size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let size = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) % (1 << 22);
    let mut win = spice_codecs::glz::Window::new(1 << 20);
    let _ = spice_codecs::zlib_glz::decode(&mut win, &data[4..], size, None);
});
