//! Cursor channel state: the current shape (as ARGB pixels), its position,
//! visibility and the server-managed cursor cache.

use std::collections::HashMap;
use std::sync::Arc;

use spice_proto::consts::{cursor_flags, cursor_type};
use spice_proto::cursor::Cursor;
use spice_proto::CursorServerMsg;

use crate::error::ClientError;

/// Most cursor shapes kept (spice-gtk's cache is of this order).
const MAX_CURSORS: usize = 1024;
/// Largest cursor side accepted.
const MAX_CURSOR_SIDE: u16 = 512;

/// A cursor shape as premultiplied-free ARGB (`0xAARRGGBB`), rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorShape {
    pub width: u32,
    pub height: u32,
    pub hot_x: u32,
    pub hot_y: u32,
    pub argb: Vec<u32>,
}

#[derive(Default)]
pub struct CursorState {
    pub shape: Option<Arc<CursorShape>>,
    pub x: i32,
    pub y: i32,
    pub visible: bool,
    cache: HashMap<u64, Arc<CursorShape>>,
}

impl CursorState {
    pub fn apply(&mut self, msg: CursorServerMsg) -> Result<(), ClientError> {
        match msg {
            CursorServerMsg::Base(_) | CursorServerMsg::Trail { .. } => {}
            CursorServerMsg::Init {
                position,
                visible,
                cursor,
                ..
            }
            | CursorServerMsg::Set {
                position,
                visible,
                cursor,
            } => {
                self.x = position.x.into();
                self.y = position.y.into();
                self.visible = visible != 0;
                self.shape = self.shape_of(&cursor)?;
            }
            CursorServerMsg::Move { position } => {
                self.x = position.x.into();
                self.y = position.y.into();
                self.visible = true;
            }
            CursorServerMsg::Hide => self.visible = false,
            CursorServerMsg::Reset => {
                self.cache.clear();
                self.shape = None;
            }
            CursorServerMsg::InvalOne { id } => {
                self.cache.remove(&id);
            }
            CursorServerMsg::InvalAll => self.cache.clear(),
        }
        Ok(())
    }

    fn shape_of(&mut self, c: &Cursor) -> Result<Option<Arc<CursorShape>>, ClientError> {
        let Some(h) = &c.header else {
            return Ok(None);
        };
        if c.flags & cursor_flags::FROM_CACHE != 0 {
            return self.cache.get(&h.unique).cloned().map(Some).ok_or_else(|| {
                ClientError::Server(format!(
                    "cursor {:#x} requested from the cache but not in it",
                    h.unique
                ))
            });
        }
        let shape = Arc::new(decode_cursor(c)?);
        if c.flags & cursor_flags::CACHE_ME != 0 {
            if self.cache.len() >= MAX_CURSORS {
                return Err(ClientError::Server(format!(
                    "cursor cache overflow (more than {MAX_CURSORS})"
                )));
            }
            self.cache.insert(h.unique, shape.clone());
        }
        Ok(Some(shape))
    }
}

/// Decodes the ALPHA (32-bit ARGB) and MONO (AND + XOR masks) cursor types.
pub fn decode_cursor(c: &Cursor) -> Result<CursorShape, ClientError> {
    let h = c
        .header
        .as_ref()
        .ok_or_else(|| ClientError::Server("cursor without a header".into()))?;
    if h.width > MAX_CURSOR_SIDE || h.height > MAX_CURSOR_SIDE {
        return Err(ClientError::Server(format!(
            "cursor {}x{} too large",
            h.width, h.height
        )));
    }
    let (w, hh) = (usize::from(h.width), usize::from(h.height));
    let short = |need: usize| {
        ClientError::Server(format!(
            "cursor {}x{} type {} needs {need} bytes, got {}",
            w,
            hh,
            h.cursor_type,
            c.data.len()
        ))
    };
    let argb = match h.cursor_type {
        cursor_type::ALPHA => {
            let need = w * hh * 4;
            if c.data.len() < need {
                return Err(short(need));
            }
            c.data[..need]
                .chunks_exact(4)
                .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
                .collect()
        }
        cursor_type::MONO => {
            let stride = w.div_ceil(8);
            let need = 2 * stride * hh;
            if c.data.len() < need {
                return Err(short(need));
            }
            let (and, xor) = c.data.split_at(stride * hh);
            let mut v = Vec::with_capacity(w * hh);
            for y in 0..hh {
                for x in 0..w {
                    let bit = |m: &[u8]| m[y * stride + x / 8] & (0x80 >> (x % 8)) != 0;
                    v.push(match (bit(and), bit(xor)) {
                        (false, false) => 0xff00_0000,
                        (false, true) => 0xffff_ffff,
                        (true, false) => 0,
                        // "Invert the screen": drawn as opaque black locally.
                        (true, true) => 0xff00_0000,
                    });
                }
            }
            v
        }
        _ => {
            return Err(ClientError::Unsupported(
                "palette/16/24/32-bit cursor types",
            ))
        }
    };
    Ok(CursorShape {
        width: w as u32,
        height: hh as u32,
        hot_x: h.hot_spot_x.into(),
        hot_y: h.hot_spot_y.into(),
        argb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spice_proto::cursor::CursorHeader;
    use spice_proto::types::Point16;

    fn cur(flags: u16, unique: u64, ty: u8, w: u16, h: u16, data: Vec<u8>) -> Cursor {
        Cursor {
            flags,
            header: Some(CursorHeader {
                unique,
                cursor_type: ty,
                width: w,
                height: h,
                hot_spot_x: 1,
                hot_spot_y: 0,
            }),
            data,
        }
    }

    #[test]
    fn set_cache_and_mono() {
        let mut s = CursorState::default();
        let c = cur(
            cursor_flags::CACHE_ME,
            9,
            cursor_type::ALPHA,
            1,
            1,
            vec![1, 2, 3, 0x80],
        );
        s.apply(CursorServerMsg::Set {
            position: Point16 { x: 5, y: 6 },
            visible: 1,
            cursor: c,
        })
        .unwrap();
        assert_eq!(s.shape.as_ref().unwrap().argb, vec![0x8003_0201]);
        let from = cur(
            cursor_flags::FROM_CACHE,
            9,
            cursor_type::ALPHA,
            1,
            1,
            vec![],
        );
        s.apply(CursorServerMsg::Set {
            position: Point16 { x: 0, y: 0 },
            visible: 1,
            cursor: from.clone(),
        })
        .unwrap();
        assert_eq!(s.shape.as_ref().unwrap().argb, vec![0x8003_0201]);
        s.apply(CursorServerMsg::InvalAll).unwrap();
        assert!(s
            .apply(CursorServerMsg::Set {
                position: Point16 { x: 0, y: 0 },
                visible: 1,
                cursor: from,
            })
            .is_err());
        let mono = cur(
            0,
            1,
            cursor_type::MONO,
            2,
            1,
            vec![0b0100_0000, 0b1000_0000],
        );
        let shape = decode_cursor(&mono).unwrap();
        assert_eq!(shape.argb, vec![0xffff_ffff, 0]);
        let short = cur(0, 1, cursor_type::ALPHA, 4, 4, vec![0; 3]);
        assert!(decode_cursor(&short).is_err());
    }
}
