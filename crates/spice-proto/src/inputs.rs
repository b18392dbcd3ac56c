//! Inputs channel messages (spice.proto `InputsChannel`).

use crate::common::{channel_message, BaseClientMsg, BaseServerMsg};
use crate::consts::{msg::inputs as sm, msgc::inputs as cm};
use crate::error::Result;
use crate::wire::{BodyBuilder, Reader};

/// Server→client inputs messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputsServerMsg {
    Base(BaseServerMsg),
    /// Current `keyboard_modifiers` bits.
    Init {
        keyboard_modifiers: u16,
    },
    KeyModifiers {
        modifiers: u16,
    },
    /// Sent every `INPUT_MOTION_ACK_BUNCH` motion/position messages.
    MouseMotionAck,
}

impl InputsServerMsg {
    fn type_of(&self) -> u16 {
        match self {
            Self::Base(m) => m.msg_type(),
            Self::Init { .. } => sm::INIT,
            Self::KeyModifiers { .. } => sm::KEY_MODIFIERS,
            Self::MouseMotionAck => sm::MOUSE_MOTION_ACK,
        }
    }
    fn write(&self, b: &mut BodyBuilder<'_>) {
        match self {
            Self::Base(m) => m.write(b),
            Self::Init { keyboard_modifiers } => b.u16(*keyboard_modifiers),
            Self::KeyModifiers { modifiers } => b.u16(*modifiers),
            Self::MouseMotionAck => {}
        }
    }
    fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(Some(match t {
            sm::INIT => Self::Init {
                keyboard_modifiers: r.u16("inputs init keyboard_modifiers")?,
            },
            sm::KEY_MODIFIERS => Self::KeyModifiers {
                modifiers: r.u16("key_modifiers modifiers")?,
            },
            sm::MOUSE_MOTION_ACK => Self::MouseMotionAck,
            _ => return Ok(None),
        }))
    }
}

channel_message!(InputsServerMsg, BaseServerMsg, "inputs (server)");

/// Client→server inputs messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputsClientMsg {
    Base(BaseClientMsg),
    /// PC AT scancode (set 1), extended codes as 0xe0 | code << 8 as spice-gtk sends them.
    KeyDown(u32),
    KeyUp(u32),
    KeyModifiers(u16),
    /// Raw scancode bytes (needs the `KEY_SCANCODE` inputs cap).
    KeyScancode(Vec<u8>),
    MouseMotion {
        dx: i32,
        dy: i32,
        buttons_state: u16,
    },
    MousePosition {
        x: u32,
        y: u32,
        buttons_state: u16,
        display_id: u8,
    },
    MousePress {
        /// `mouse_button`.
        button: u8,
        buttons_state: u16,
    },
    MouseRelease {
        button: u8,
        buttons_state: u16,
    },
}

impl InputsClientMsg {
    fn type_of(&self) -> u16 {
        match self {
            Self::Base(m) => m.msg_type(),
            Self::KeyDown(_) => cm::KEY_DOWN,
            Self::KeyUp(_) => cm::KEY_UP,
            Self::KeyModifiers(_) => cm::KEY_MODIFIERS,
            Self::KeyScancode(_) => cm::KEY_SCANCODE,
            Self::MouseMotion { .. } => cm::MOUSE_MOTION,
            Self::MousePosition { .. } => cm::MOUSE_POSITION,
            Self::MousePress { .. } => cm::MOUSE_PRESS,
            Self::MouseRelease { .. } => cm::MOUSE_RELEASE,
        }
    }
    fn write(&self, b: &mut BodyBuilder<'_>) {
        match self {
            Self::Base(m) => m.write(b),
            Self::KeyDown(c) | Self::KeyUp(c) => b.u32(*c),
            Self::KeyModifiers(m) => b.u16(*m),
            Self::KeyScancode(d) => b.bytes(d),
            Self::MouseMotion {
                dx,
                dy,
                buttons_state,
            } => {
                b.i32(*dx);
                b.i32(*dy);
                b.u16(*buttons_state);
            }
            Self::MousePosition {
                x,
                y,
                buttons_state,
                display_id,
            } => {
                b.u32(*x);
                b.u32(*y);
                b.u16(*buttons_state);
                b.u8(*display_id);
            }
            Self::MousePress {
                button,
                buttons_state,
            }
            | Self::MouseRelease {
                button,
                buttons_state,
            } => {
                b.u8(*button);
                b.u16(*buttons_state);
            }
        }
    }
    fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(Some(match t {
            cm::KEY_DOWN => Self::KeyDown(r.u32("key_down code")?),
            cm::KEY_UP => Self::KeyUp(r.u32("key_up code")?),
            cm::KEY_MODIFIERS => Self::KeyModifiers(r.u16("key_modifiers modifiers")?),
            cm::KEY_SCANCODE => Self::KeyScancode(r.rest("key_scancode")?),
            cm::MOUSE_MOTION => Self::MouseMotion {
                dx: r.i32("mouse_motion dx")?,
                dy: r.i32("mouse_motion dy")?,
                buttons_state: r.u16("mouse_motion buttons_state")?,
            },
            cm::MOUSE_POSITION => Self::MousePosition {
                x: r.u32("mouse_position x")?,
                y: r.u32("mouse_position y")?,
                buttons_state: r.u16("mouse_position buttons_state")?,
                display_id: r.u8("mouse_position display_id")?,
            },
            cm::MOUSE_PRESS => Self::MousePress {
                button: r.u8("mouse_press button")?,
                buttons_state: r.u16("mouse_press buttons_state")?,
            },
            cm::MOUSE_RELEASE => Self::MouseRelease {
                button: r.u8("mouse_release button")?,
                buttons_state: r.u16("mouse_release buttons_state")?,
            },
            _ => return Ok(None),
        }))
    }
}

channel_message!(InputsClientMsg, BaseClientMsg, "inputs (client)");
