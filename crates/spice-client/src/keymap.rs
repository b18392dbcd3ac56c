//! Physical keys to PC AT scancodes (set 1), the codes SPICE's inputs channel
//! carries, and the KEY_DOWN/KEY_UP values spice-gtk sends for them.

/// A set-1 make code and whether it carries the 0xE0 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scancode {
    pub code: u8,
    pub extended: bool,
}

impl Scancode {
    const fn n(code: u8) -> Option<Self> {
        Some(Scancode {
            code,
            extended: false,
        })
    }
    const fn e(code: u8) -> Option<Self> {
        Some(Scancode {
            code,
            extended: true,
        })
    }

    /// The KEY_DOWN value: the make code, `0xE0 | code << 8` when extended.
    pub fn down(self) -> u32 {
        if self.extended {
            0xe0 | (u32::from(self.code) << 8)
        } else {
            u32::from(self.code)
        }
    }

    /// The KEY_UP value: the break code (make | 0x80), prefixed likewise.
    pub fn up(self) -> u32 {
        if self.extended {
            0xe0 | (u32::from(self.code | 0x80) << 8)
        } else {
            u32::from(self.code | 0x80)
        }
    }
}

/// Set-1 scancode of a key named as in the W3C UI Events `code` list (the
/// names winit's `KeyCode` uses).
pub fn scancode(code: &str) -> Option<Scancode> {
    use Scancode as S;
    match code {
        "Escape" => S::n(0x01),
        "Digit1" => S::n(0x02),
        "Digit2" => S::n(0x03),
        "Digit3" => S::n(0x04),
        "Digit4" => S::n(0x05),
        "Digit5" => S::n(0x06),
        "Digit6" => S::n(0x07),
        "Digit7" => S::n(0x08),
        "Digit8" => S::n(0x09),
        "Digit9" => S::n(0x0a),
        "Digit0" => S::n(0x0b),
        "Minus" => S::n(0x0c),
        "Equal" => S::n(0x0d),
        "Backspace" => S::n(0x0e),
        "Tab" => S::n(0x0f),
        "KeyQ" => S::n(0x10),
        "KeyW" => S::n(0x11),
        "KeyE" => S::n(0x12),
        "KeyR" => S::n(0x13),
        "KeyT" => S::n(0x14),
        "KeyY" => S::n(0x15),
        "KeyU" => S::n(0x16),
        "KeyI" => S::n(0x17),
        "KeyO" => S::n(0x18),
        "KeyP" => S::n(0x19),
        "BracketLeft" => S::n(0x1a),
        "BracketRight" => S::n(0x1b),
        "Enter" => S::n(0x1c),
        "ControlLeft" => S::n(0x1d),
        "KeyA" => S::n(0x1e),
        "KeyS" => S::n(0x1f),
        "KeyD" => S::n(0x20),
        "KeyF" => S::n(0x21),
        "KeyG" => S::n(0x22),
        "KeyH" => S::n(0x23),
        "KeyJ" => S::n(0x24),
        "KeyK" => S::n(0x25),
        "KeyL" => S::n(0x26),
        "Semicolon" => S::n(0x27),
        "Quote" => S::n(0x28),
        "Backquote" => S::n(0x29),
        "ShiftLeft" => S::n(0x2a),
        "Backslash" => S::n(0x2b),
        "KeyZ" => S::n(0x2c),
        "KeyX" => S::n(0x2d),
        "KeyC" => S::n(0x2e),
        "KeyV" => S::n(0x2f),
        "KeyB" => S::n(0x30),
        "KeyN" => S::n(0x31),
        "KeyM" => S::n(0x32),
        "Comma" => S::n(0x33),
        "Period" => S::n(0x34),
        "Slash" => S::n(0x35),
        "ShiftRight" => S::n(0x36),
        "NumpadMultiply" => S::n(0x37),
        "AltLeft" => S::n(0x38),
        "Space" => S::n(0x39),
        "CapsLock" => S::n(0x3a),
        "F1" => S::n(0x3b),
        "F2" => S::n(0x3c),
        "F3" => S::n(0x3d),
        "F4" => S::n(0x3e),
        "F5" => S::n(0x3f),
        "F6" => S::n(0x40),
        "F7" => S::n(0x41),
        "F8" => S::n(0x42),
        "F9" => S::n(0x43),
        "F10" => S::n(0x44),
        "NumLock" => S::n(0x45),
        "ScrollLock" => S::n(0x46),
        "Numpad7" => S::n(0x47),
        "Numpad8" => S::n(0x48),
        "Numpad9" => S::n(0x49),
        "NumpadSubtract" => S::n(0x4a),
        "Numpad4" => S::n(0x4b),
        "Numpad5" => S::n(0x4c),
        "Numpad6" => S::n(0x4d),
        "NumpadAdd" => S::n(0x4e),
        "Numpad1" => S::n(0x4f),
        "Numpad2" => S::n(0x50),
        "Numpad3" => S::n(0x51),
        "Numpad0" => S::n(0x52),
        "NumpadDecimal" => S::n(0x53),
        "IntlBackslash" => S::n(0x56),
        "F11" => S::n(0x57),
        "F12" => S::n(0x58),
        "IntlRo" => S::n(0x73),
        "IntlYen" => S::n(0x7d),
        "NumpadEnter" => S::e(0x1c),
        "ControlRight" => S::e(0x1d),
        "NumpadDivide" => S::e(0x35),
        "PrintScreen" => S::e(0x37),
        "AltRight" => S::e(0x38),
        "Home" => S::e(0x47),
        "ArrowUp" => S::e(0x48),
        "PageUp" => S::e(0x49),
        "ArrowLeft" => S::e(0x4b),
        "ArrowRight" => S::e(0x4d),
        "End" => S::e(0x4f),
        "ArrowDown" => S::e(0x50),
        "PageDown" => S::e(0x51),
        "Insert" => S::e(0x52),
        "Delete" => S::e(0x53),
        "SuperLeft" | "MetaLeft" => S::e(0x5b),
        "SuperRight" | "MetaRight" => S::e(0x5c),
        "ContextMenu" => S::e(0x5d),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_as_spice_gtk_sends_them() {
        let a = scancode("KeyA").unwrap();
        assert_eq!((a.down(), a.up()), (0x1e, 0x9e));
        let up = scancode("ArrowUp").unwrap();
        assert_eq!((up.down(), up.up()), (0x48e0, 0xc8e0));
        assert_eq!(scancode("Enter").unwrap().down(), 0x1c);
        assert!(scancode("Fn").is_none());
    }
}
