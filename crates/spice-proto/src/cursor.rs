//! Cursor channel messages (spice.proto `CursorChannel`).

use crate::common::{channel_message, BaseServerMsg};
use crate::consts::{cursor_flags, cursor_type, msg::cursor as sm};
use crate::error::{ProtoError, Result};
use crate::types::Point16;
use crate::wire::{BodyBuilder, Reader};

/// `CursorHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CursorHeader {
    pub unique: u64,
    /// `cursor_type`.
    pub cursor_type: u8,
    pub width: u16,
    pub height: u16,
    pub hot_spot_x: u16,
    pub hot_spot_y: u16,
}

/// `Cursor`: header and shape bytes (the rest of the message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// `cursor_flags` other than `NONE`, which is set when `header` is `None`.
    pub flags: u16,
    pub header: Option<CursorHeader>,
    pub data: Vec<u8>,
}

impl Cursor {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let flags = r.u16("cursor flags")?;
        let header = if flags & cursor_flags::NONE == 0 {
            let unique = r.u64("cursor unique")?;
            let ty = r.u8("cursor type")?;
            if ty > cursor_type::COLOR32 {
                return Err(ProtoError::BadValue {
                    what: "cursor type",
                    value: ty.into(),
                });
            }
            Some(CursorHeader {
                unique,
                cursor_type: ty,
                width: r.u16("cursor width")?,
                height: r.u16("cursor height")?,
                hot_spot_x: r.u16("cursor hot_spot_x")?,
                hot_spot_y: r.u16("cursor hot_spot_y")?,
            })
        } else {
            None
        };
        Ok(Cursor {
            flags: flags & !cursor_flags::NONE,
            header,
            data: r.rest("cursor data")?,
        })
    }

    fn write(&self, b: &mut BodyBuilder<'_>) {
        match &self.header {
            None => b.u16(self.flags | cursor_flags::NONE),
            Some(h) => {
                b.u16(self.flags & !cursor_flags::NONE);
                b.u64(h.unique);
                b.u8(h.cursor_type);
                b.u16(h.width);
                b.u16(h.height);
                b.u16(h.hot_spot_x);
                b.u16(h.hot_spot_y);
            }
        }
        b.bytes(&self.data);
    }
}

/// Server→client cursor messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorServerMsg {
    Base(BaseServerMsg),
    Init {
        position: Point16,
        trail_length: u16,
        trail_frequency: u16,
        visible: u8,
        cursor: Cursor,
    },
    Reset,
    Set {
        position: Point16,
        visible: u8,
        cursor: Cursor,
    },
    Move {
        position: Point16,
    },
    Hide,
    Trail {
        length: u16,
        frequency: u16,
    },
    InvalOne {
        id: u64,
    },
    InvalAll,
}

impl CursorServerMsg {
    fn type_of(&self) -> u16 {
        match self {
            Self::Base(m) => m.msg_type(),
            Self::Init { .. } => sm::INIT,
            Self::Reset => sm::RESET,
            Self::Set { .. } => sm::SET,
            Self::Move { .. } => sm::MOVE,
            Self::Hide => sm::HIDE,
            Self::Trail { .. } => sm::TRAIL,
            Self::InvalOne { .. } => sm::INVAL_ONE,
            Self::InvalAll => sm::INVAL_ALL,
        }
    }
    fn write(&self, b: &mut BodyBuilder<'_>) {
        match self {
            Self::Base(m) => m.write(b),
            Self::Init {
                position,
                trail_length,
                trail_frequency,
                visible,
                cursor,
            } => {
                position.write(b);
                b.u16(*trail_length);
                b.u16(*trail_frequency);
                b.u8(*visible);
                cursor.write(b);
            }
            Self::Reset | Self::Hide | Self::InvalAll => {}
            Self::Set {
                position,
                visible,
                cursor,
            } => {
                position.write(b);
                b.u8(*visible);
                cursor.write(b);
            }
            Self::Move { position } => position.write(b),
            Self::Trail { length, frequency } => {
                b.u16(*length);
                b.u16(*frequency);
            }
            Self::InvalOne { id } => b.u64(*id),
        }
    }
    fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(Some(match t {
            sm::INIT => Self::Init {
                position: Point16::read(r)?,
                trail_length: r.u16("cursor init trail_length")?,
                trail_frequency: r.u16("cursor init trail_frequency")?,
                visible: r.u8("cursor init visible")?,
                cursor: Cursor::read(r)?,
            },
            sm::RESET => Self::Reset,
            sm::SET => Self::Set {
                position: Point16::read(r)?,
                visible: r.u8("cursor set visible")?,
                cursor: Cursor::read(r)?,
            },
            sm::MOVE => Self::Move {
                position: Point16::read(r)?,
            },
            sm::HIDE => Self::Hide,
            sm::TRAIL => Self::Trail {
                length: r.u16("cursor trail length")?,
                frequency: r.u16("cursor trail frequency")?,
            },
            sm::INVAL_ONE => Self::InvalOne {
                id: r.u64("cursor inval_one id")?,
            },
            sm::INVAL_ALL => Self::InvalAll,
            _ => return Ok(None),
        }))
    }
}

channel_message!(CursorServerMsg, BaseServerMsg, "cursor (server)");

/// Client→server cursor messages: only the base ones exist.
pub type CursorClientMsg = crate::common::BaseClientMsg;
