//! JPEG and JPEG_ALPHA decoders on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = spice_codecs::jpeg::decode(data);
    if let Some((&cut, rest)) = data.split_first() {
        let _ = spice_codecs::jpeg::decode_alpha(rest, (cut as usize * rest.len()) / 256);
    }
});
