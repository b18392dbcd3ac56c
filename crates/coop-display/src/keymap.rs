//! PC AT set-1 scancodes (what SPICE clients send) to Linux evdev key codes (what X
//! servers with the standard `evdev` XKB rules use, X keycode = evdev + 8).
//!
//! spice-gtk's convention (`spice_make_scancode`): a plain key is its make code, with 0x80
//! set on release; an extended key (0xE0 prefix, internally `0x100 | code`) travels as the
//! little-endian byte string `E0 code`, i.e. the u32 `0xE0 | code << 8` (release:
//! `0x80E0 | code << 8`). spice-server feeds those bytes, low byte first, to the guest's
//! PS/2 controller.

/// Evdev codes of plain set-1 make codes 0x00..=0x7f (0 = no key).
/// 0x01..=0x53 coincide with evdev; the rest are the usual PC/Japanese extras.
const PLAIN: [u16; 128] = {
    let mut t = [0u16; 128];
    let mut i = 1;
    while i <= 0x53 {
        t[i] = i as u16;
        i += 1;
    }
    t[0x54] = 99; // Alt+SysRq
    t[0x56] = 86; // KEY_102ND (ISO < > key)
    t[0x57] = 87; // F11
    t[0x58] = 88; // F12
    t[0x59] = 117; // KP_EQUAL
                   // F13..F23 at 0x64..=0x6e, F24 at 0x76
    let mut f = 0;
    while f < 11 {
        t[0x64 + f] = 183 + f as u16;
        f += 1;
    }
    t[0x76] = 194;
    t[0x70] = 93; // KATAKANAHIRAGANA
    t[0x73] = 89; // RO
    t[0x79] = 92; // HENKAN
    t[0x7b] = 94; // MUHENKAN
    t[0x7d] = 124; // YEN
    t[0x7e] = 95; // KPJPCOMMA
    t
};

/// Evdev codes of extended (E0-prefixed) set-1 make codes.
const EXTENDED: [u16; 128] = {
    let mut t = [0u16; 128];
    t[0x10] = 165; // PREVIOUSSONG
    t[0x19] = 163; // NEXTSONG
    t[0x1c] = 96; // KPENTER
    t[0x1d] = 97; // RIGHTCTRL
    t[0x20] = 113; // MUTE
    t[0x21] = 140; // CALC
    t[0x22] = 164; // PLAYPAUSE
    t[0x24] = 166; // STOPCD
    t[0x2e] = 114; // VOLUMEDOWN
    t[0x30] = 115; // VOLUMEUP
    t[0x32] = 172; // HOMEPAGE
    t[0x35] = 98; // KPSLASH
    t[0x37] = 99; // SYSRQ / Print Screen
    t[0x38] = 100; // RIGHTALT (AltGr)
    t[0x46] = 119; // Ctrl+Break; spice-gtk sends Pause this way too
    t[0x47] = 102; // HOME
    t[0x48] = 103; // UP
    t[0x49] = 104; // PAGEUP
    t[0x4b] = 105; // LEFT
    t[0x4d] = 106; // RIGHT
    t[0x4f] = 107; // END
    t[0x50] = 108; // DOWN
    t[0x51] = 109; // PAGEDOWN
    t[0x52] = 110; // INSERT
    t[0x53] = 111; // DELETE
    t[0x5b] = 125; // LEFTMETA
    t[0x5c] = 126; // RIGHTMETA
    t[0x5d] = 127; // COMPOSE (menu)
    t[0x5e] = 116; // POWER
    t[0x5f] = 142; // SLEEP
    t[0x63] = 143; // WAKEUP
    t[0x65] = 217; // SEARCH
    t[0x66] = 156; // BOOKMARKS
    t[0x67] = 173; // REFRESH
    t[0x68] = 128; // STOP
    t[0x69] = 159; // FORWARD
    t[0x6a] = 158; // BACK
    t[0x6b] = 157; // COMPUTER
    t[0x6c] = 155; // MAIL
    t[0x6d] = 226; // MEDIA
    t
};

/// Evdev code of the Pause key (sent as the E1 1D 45 sequence by real keyboards).
const KEY_PAUSE: u16 = 119;

/// Maps a set-1 scancode to its evdev key code, or `None` for unknown codes.
///
/// Accepted forms (the release bit 0x80 of the code byte is ignored):
/// - `0x00..=0xff`: a plain make code;
/// - `0x100 | code` or `0xE000 | code`: an extended key;
/// - `0xE0 | code << 8`: an extended key as spice-gtk puts it in `INPUTS_KEY_DOWN/UP`;
/// - `0xE1 | …` or `0xE11D45`: Pause.
pub fn scancode_to_evdev(code: u32) -> Option<u16> {
    let low = code & 0xff;
    let ext = if low == 0xe0 && code > 0xff {
        Some((code >> 8) & 0x7f)
    } else if low == 0xe1 || code == 0xe1_1d45 {
        return Some(KEY_PAUSE);
    } else if (code & 0xff00 == 0xe000 && code <= 0xffff) || code & !0xff == 0x100 {
        Some(low & 0x7f)
    } else if code <= 0xff {
        None
    } else {
        return None;
    };
    let v = match ext {
        Some(c) => EXTENDED[c as usize],
        None => PLAIN[(low & 0x7f) as usize],
    };
    (v != 0).then_some(v)
}

/// Turns a raw set-1 byte stream (SPICE `INPUTS_KEY_SCANCODE`, or the bytes of a
/// `KEY_DOWN`/`KEY_UP` code, low byte first, up to the first zero) into
/// `(normalized scancode, down)` pairs; the normalized form is `code` or `0x100 | code`
/// (Pause as `0xE11D45`). Keeps state across calls so a prefix split over two messages works.
#[derive(Debug, Default, Clone)]
pub struct ScancodeParser {
    extended: bool,
    pause_left: u8,
}

impl ScancodeParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes, returns complete key events.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.pause_left > 0 {
                self.pause_left -= 1;
                if self.pause_left == 0 {
                    out.push((0xe1_1d45, b & 0x80 == 0));
                }
                continue;
            }
            match b {
                0xe0 => self.extended = true,
                0xe1 => self.pause_left = 2,
                _ => {
                    let code = u32::from(b & 0x7f);
                    let ext = std::mem::take(&mut self.extended);
                    // E0 2A / E0 36 are "fake shifts" keyboards wrap around some keys.
                    if ext && (code == 0x2a || code == 0x36) {
                        continue;
                    }
                    out.push((if ext { 0x100 | code } else { code }, b & 0x80 == 0));
                }
            }
        }
        out
    }

    /// Convenience for the u32 `code` of `INPUTS_KEY_DOWN`/`INPUTS_KEY_UP`: its bytes,
    /// low first, until a zero byte (what spice-server does).
    pub fn feed_spice_code(&mut self, code: u32) -> Vec<(u32, bool)> {
        let bytes: Vec<u8> = code
            .to_le_bytes()
            .into_iter()
            .take_while(|&b| b != 0)
            .collect();
        self.feed(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_letters_and_controls() {
        assert_eq!(scancode_to_evdev(0x1e), Some(30)); // a
        assert_eq!(scancode_to_evdev(0x9e), Some(30)); // a released
        assert_eq!(scancode_to_evdev(0x1c), Some(28)); // Enter
        assert_eq!(scancode_to_evdev(0x01), Some(1)); // Esc
        assert_eq!(scancode_to_evdev(0x58), Some(88)); // F12
        assert_eq!(scancode_to_evdev(0x00), None);
        assert_eq!(scancode_to_evdev(0x55), None);
    }

    #[test]
    fn extended_all_forms() {
        // Right Ctrl: E0 1D
        for code in [0x11d, 0xe01d, 0x1de0, 0x9de0] {
            assert_eq!(scancode_to_evdev(code), Some(97), "{code:#x}");
        }
        assert_eq!(scancode_to_evdev(0x148), Some(103)); // Up
        assert_eq!(scancode_to_evdev(0x5be0), Some(125)); // Left Meta
        assert_eq!(scancode_to_evdev(0x146), Some(119)); // Pause (spice-gtk)
        assert_eq!(scancode_to_evdev(0xe11d45), Some(119));
        assert_eq!(scancode_to_evdev(0x12a), None); // fake shift
        assert_eq!(scancode_to_evdev(0x1234_5678), None);
    }

    #[test]
    fn parser_handles_prefixes_split_and_pause() {
        let mut p = ScancodeParser::new();
        assert_eq!(p.feed(&[0x1e, 0x9e]), vec![(0x1e, true), (0x1e, false)]);
        assert_eq!(p.feed(&[0xe0]), vec![]);
        assert_eq!(p.feed(&[0x48]), vec![(0x148, true)]);
        // Print Screen with fake shifts: E0 2A E0 37
        assert_eq!(p.feed(&[0xe0, 0x2a, 0xe0, 0x37]), vec![(0x137, true)]);
        assert_eq!(
            p.feed(&[0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]),
            vec![(0xe11d45, true), (0xe11d45, false)]
        );
        assert_eq!(
            p.feed_spice_code(0x80e0 | (0x1d << 8)),
            vec![(0x11d, false)]
        );
        assert_eq!(p.feed_spice_code(0x2a), vec![(0x2a, true)]);
        for (code, _) in p.feed(&[0xe0, 0x53, 0x10]) {
            assert!(scancode_to_evdev(code).is_some());
        }
    }
}
