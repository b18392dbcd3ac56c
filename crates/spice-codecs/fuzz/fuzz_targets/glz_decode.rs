//! GLZ decoder: the input is split into several streams decoded into one
//! window, so cross-image references get exercised.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut win = spice_codecs::glz::Window::new(1 << 20);
    let palette = [0x102030u32, 0x405060, 0x708090];
    for part in data.split(|&b| b == 0xfe).take(8) {
        if let Ok((b, _)) = spice_codecs::glz::decode(&mut win, part, Some(&palette)) {
            assert_eq!(b.data.len(), b.width as usize * b.height as usize * 4);
        }
    }
});
