//! QUIC decoder on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A few run bits can legitimately describe a 64M-pixel flat image; such
    // inputs are slow but uninteresting, so keep the fuzzer on small ones.
    if let Ok(h) = spice_codecs::quic::parse_header(data) {
        if u64::from(h.width) * u64::from(h.height) > 1 << 20 {
            return;
        }
    }
    if let Ok(b) = spice_codecs::quic::decode(data) {
        assert_eq!(b.data.len(), b.width as usize * b.height as usize * 4);
    }
});
