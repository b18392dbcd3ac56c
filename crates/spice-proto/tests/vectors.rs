//! Hand-built byte vectors checked against the layouts in spice-common's
//! `spice.proto` (protocol 2.2) and spice-protocol's `spice/protocol.h`.
//! Each vector is assembled field by field here, independently of the
//! encoder, so a layout mistake in the crate shows up as a mismatch.

use spice_proto::agent::{self, AgentCaps, AgentMessage};
use spice_proto::consts::{
    bitmap_fmt, caps, channel, image_type, msg, msgc, ropd, surface_flags, surface_fmt,
};
use spice_proto::display::CopyData;
use spice_proto::framing::{DataHeader, MiniHeader};
use spice_proto::link::{caps_from_bits, LinkHeader, LinkMess};
use spice_proto::main_channel::MainInit;
use spice_proto::types::*;
use spice_proto::*;

fn le16(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}
fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}
fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// spice.proto MainChannel server `mouse_mode`: `mouse_mode supported_modes;
/// mouse_mode current_mode` where `flags16 mouse_mode { SERVER, CLIENT }`,
/// i.e. two u16 (the 2009 prose spec's u32 is wrong).
#[test]
fn main_mouse_mode_is_two_u16() {
    let expected = [3, 0, 2, 0];
    let m = MainServerMsg::MouseMode {
        supported: 3,
        current: 2,
    };
    assert_eq!(m.msg_type(), 105);
    assert_eq!(m.to_body(), expected);
    assert_eq!(MainServerMsg::decode(105, &expected).unwrap(), m);
    assert!(matches!(
        MainServerMsg::decode(105, &expected[..3]),
        Err(ProtoError::Short { .. })
    ));
}

/// spice.proto MainChannel server `init`: eight uint32 in the order
/// session_id, display_channels_hint, supported_mouse_modes,
/// current_mouse_mode, agent_connected, agent_tokens, multi_media_time, ram_hint.
#[test]
fn main_init_layout() {
    let mut v = Vec::new();
    for x in [0x1234_5678u32, 1, 3, 2, 0, 10, 777, 0x0100_0000] {
        v.extend_from_slice(&le32(x));
    }
    let m = MainServerMsg::Init(MainInit {
        session_id: 0x1234_5678,
        display_channels_hint: 1,
        supported_mouse_modes: 3,
        current_mouse_mode: 2,
        agent_connected: 0,
        agent_tokens: 10,
        multi_media_time: 777,
        ram_hint: 0x0100_0000,
    });
    assert_eq!(m.to_body(), v);
    assert_eq!(MainServerMsg::decode(msg::main::INIT, &v).unwrap(), m);
}

/// spice.proto InputsChannel client `mouse_position`: uint32 x, uint32 y,
/// mouse_button_mask (flags16) buttons_state, uint8 display_id: 11 bytes.
#[test]
fn inputs_mouse_position_layout() {
    let mut v = Vec::new();
    v.extend_from_slice(&le32(640));
    v.extend_from_slice(&le32(480));
    v.extend_from_slice(&le16(0b101));
    v.push(1);
    let m = InputsClientMsg::MousePosition {
        x: 640,
        y: 480,
        buttons_state: 0b101,
        display_id: 1,
    };
    assert_eq!(m.to_body(), v);
    assert_eq!(m.msg_type(), 112);
    assert_eq!(InputsClientMsg::decode(112, &v).unwrap(), m);
    // MOUSE_PRESS: enum8 mouse_button then flags16 buttons_state.
    let press = InputsClientMsg::MousePress {
        button: 1,
        buttons_state: 1,
    };
    assert_eq!(press.to_body(), [1, 1, 0]);
}

/// spice.proto DisplayChannel server `surface_create`: uint32 surface_id,
/// width, height, enum32 surface_fmt format, flags32 surface_flags flags.
#[test]
fn surface_create_primary_layout() {
    let mut v = Vec::new();
    for x in [
        0u32,
        1024,
        768,
        surface_fmt::FMT_32_XRGB,
        surface_flags::PRIMARY,
    ] {
        v.extend_from_slice(&le32(x));
    }
    assert_eq!(&v[12..16], &[32, 0, 0, 0]);
    assert_eq!(&v[16..20], &[1, 0, 0, 0]);
    let m = DisplayServerMsg::SurfaceCreate {
        surface_id: 0,
        width: 1024,
        height: 768,
        format: surface_fmt::FMT_32_XRGB,
        flags: surface_flags::PRIMARY,
    };
    assert_eq!(m.msg_type(), 314);
    assert_eq!(m.to_body(), v);
    assert_eq!(DisplayServerMsg::decode(314, &v).unwrap(), m);
}

/// DRAW_COPY with an inline BITMAP image, per spice.proto:
/// `DisplayBase { uint32 surface_id; Rect box; Clip clip }` (Rect is
/// top, left, bottom, right; Clip NONE is one byte), then `Copy { Image
/// *src_bitmap; Rect src_area; ropd rop_descriptor (flags16); image_scale_mode
/// (enum8); QMask mask { flags8; Point pos; Image *bitmap } }`. Pointers are
/// u32 offsets from the body start; the image follows the fixed part:
/// `ImageDescriptor { uint64 id; enum8 type; flags8 flags; uint32 width, height }`
/// then `BitmapData { enum8 format; flags8 flags; uint32 x, y, stride;
/// Palette *palette; uint8 data[stride * y] }` with the data inline.
#[test]
fn draw_copy_bitmap_layout() {
    let pixels: Vec<u8> = (0..16).collect(); // 2x2 32-bit, stride 8
    let mut v = Vec::new();
    v.extend_from_slice(&le32(0)); // surface_id
    for x in [10i32, 20, 12, 22] {
        v.extend_from_slice(&x.to_le_bytes()); // box: top, left, bottom, right
    }
    v.push(0); // clip NONE
    let fixed_len = 21 + 4 + 16 + 2 + 1 + 1 + 8 + 4;
    v.extend_from_slice(&le32(fixed_len as u32)); // src_bitmap offset
    for x in [0i32, 0, 2, 2] {
        v.extend_from_slice(&x.to_le_bytes()); // src_area
    }
    v.extend_from_slice(&le16(ropd::OP_PUT));
    v.push(0); // scale mode INTERPOLATE
    v.push(0); // mask flags
    v.extend_from_slice(&[0; 8]); // mask pos
    v.extend_from_slice(&le32(0)); // mask bitmap: null
    assert_eq!(v.len(), fixed_len);
    v.extend_from_slice(&le64(0xabcdef)); // image id
    v.push(image_type::BITMAP);
    v.push(0); // image flags
    v.extend_from_slice(&le32(2));
    v.extend_from_slice(&le32(2));
    v.push(bitmap_fmt::BIT32);
    v.push(0); // bitmap flags
    v.extend_from_slice(&le32(2)); // x
    v.extend_from_slice(&le32(2)); // y
    v.extend_from_slice(&le32(8)); // stride
    v.extend_from_slice(&le32(0)); // palette: null
    v.extend_from_slice(&pixels);

    let m = DisplayServerMsg::DrawCopy {
        base: DisplayBase {
            surface_id: 0,
            bbox: Rect::new(20, 10, 22, 12),
            clip: Clip::None,
        },
        copy: CopyData {
            src_bitmap: Some(Box::new(Image {
                id: 0xabcdef,
                flags: 0,
                width: 2,
                height: 2,
                data: ImageData::Bitmap(Bitmap {
                    format: bitmap_fmt::BIT32,
                    flags: 0,
                    width: 2,
                    height: 2,
                    stride: 8,
                    palette: None,
                    data: pixels.clone(),
                }),
            })),
            src_area: Rect::new(0, 0, 2, 2),
            rop_descriptor: ropd::OP_PUT,
            scale_mode: 0,
            mask: QMask::default(),
        },
    };
    assert_eq!(m.msg_type(), 304);
    assert_eq!(m.to_body(), v);
    assert_eq!(DisplayServerMsg::decode(304, &v).unwrap(), m);

    // The same body with the image pointer past the end is refused.
    let mut bad = v.clone();
    bad[21..25].copy_from_slice(&le32(10_000));
    assert!(matches!(
        DisplayServerMsg::decode(304, &bad),
        Err(ProtoError::BadOffset { offset: 10_000, .. })
    ));
    // A stride * height beyond the body is refused before allocating.
    let mut bad = v.clone();
    let stride_pos = fixed_len + 18 + 10;
    bad[stride_pos..stride_pos + 4].copy_from_slice(&le32(0x4000_0000));
    assert!(matches!(
        DisplayServerMsg::decode(304, &bad),
        Err(ProtoError::BadCount { .. })
    ));
    // An unknown image type is refused.
    let mut bad = v.clone();
    bad[fixed_len + 8] = image_type::RESERVED;
    assert!(matches!(
        DisplayServerMsg::decode(304, &bad),
        Err(ProtoError::BadValue { .. })
    ));
}

/// spice.proto `Clip`: enum8 type; case RECTS: `ClipRects { uint32 num_rects;
/// Rect rects[num_rects] }` carried inline (the C struct holds a pointer, the
/// wire does not). STREAM_CLIP is `stream_id_t id; Clip clip`.
#[test]
fn stream_clip_rects_inline() {
    let mut v = Vec::new();
    v.extend_from_slice(&le32(7));
    v.push(1);
    v.extend_from_slice(&le32(1));
    for x in [1i32, 2, 3, 4] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    let m = DisplayServerMsg::StreamClip {
        id: 7,
        clip: Clip::Rects(vec![Rect {
            top: 1,
            left: 2,
            bottom: 3,
            right: 4,
        }]),
    };
    assert_eq!(m.to_body(), v);
    assert_eq!(DisplayServerMsg::decode(124, &v).unwrap(), m);
    // A rect count that cannot fit is a BadCount, not an allocation.
    let mut bad = v.clone();
    bad[5..9].copy_from_slice(&le32(u32::MAX));
    assert!(matches!(
        DisplayServerMsg::decode(124, &bad),
        Err(ProtoError::BadCount { .. })
    ));
    // Unknown clip type.
    let mut bad = v;
    bad[4] = 9;
    assert!(matches!(
        DisplayServerMsg::decode(124, &bad),
        Err(ProtoError::BadValue { .. })
    ));
}

/// spice.proto DisplayChannel client `init`: uint8 pixmap_cache_id, int64
/// pixmap_cache_size, uint8 glz_dictionary_id, int32 glz_dictionary_window_size
/// (14 bytes, packed).
#[test]
fn display_client_init_layout() {
    let mut v = vec![1];
    v.extend_from_slice(&(20_000_000i64).to_le_bytes());
    v.push(1);
    v.extend_from_slice(&(8_388_608i32).to_le_bytes());
    let m = DisplayClientMsg::Init {
        pixmap_cache_id: 1,
        pixmap_cache_size: 20_000_000,
        glz_dictionary_id: 1,
        glz_dictionary_window_size: 8_388_608,
    };
    assert_eq!(m.to_body(), v);
    assert_eq!(v.len(), 14);
    assert_eq!(
        DisplayClientMsg::decode(msgc::display::INIT, &v).unwrap(),
        m
    );
}

/// spice.proto CursorChannel `set`: Point16 position; uint8 visible; Cursor
/// { flags16 cursor_flags; if !NONE: CursorHeader; data[] to the end }.
#[test]
fn cursor_set_without_shape() {
    let v = [5, 0, 0xfe, 0xff, 1, 1, 0];
    let m = CursorServerMsg::Set {
        position: Point16 { x: 5, y: -2 },
        visible: 1,
        cursor: spice_proto::cursor::Cursor::default(),
    };
    assert_eq!(m.to_body(), v);
    assert_eq!(CursorServerMsg::decode(103, &v).unwrap(), m);
    // Unknown cursor type in a present header.
    let mut bad = vec![0, 0, 0, 0, 1, 0, 0];
    bad.extend_from_slice(&le64(1));
    bad.push(42);
    bad.extend_from_slice(&[0; 8]);
    assert!(matches!(
        CursorServerMsg::decode(103, &bad),
        Err(ProtoError::BadValue { .. })
    ));
}

/// spice/protocol.h `SpiceLinkHeader { magic, major, minor, size }` and
/// `SpiceLinkMess { connection_id u32; channel_type u8; channel_id u8;
/// num_common_caps u32; num_channel_caps u32; caps_offset u32 }` with the caps
/// words at caps_offset (18), as spice-gtk sends for a main channel.
#[test]
fn link_mess_layout() {
    let mut v = Vec::new();
    v.extend_from_slice(b"REDQ");
    v.extend_from_slice(&le32(2));
    v.extend_from_slice(&le32(2));
    v.extend_from_slice(&le32(26));
    v.extend_from_slice(&le32(0));
    v.push(channel::MAIN);
    v.push(0);
    v.extend_from_slice(&le32(1));
    v.extend_from_slice(&le32(1));
    v.extend_from_slice(&le32(18));
    v.extend_from_slice(&le32(0b1011)); // AUTH_SELECTION | AUTH_SPICE | MINI_HEADER
    v.extend_from_slice(&le32(0b0110)); // NAME_AND_UUID | AGENT_CONNECTED_TOKENS
    let m = LinkMess {
        connection_id: 0,
        channel_type: channel::MAIN,
        channel_id: 0,
        common_caps: caps_from_bits(&[
            caps::common::PROTOCOL_AUTH_SELECTION,
            caps::common::AUTH_SPICE,
            caps::common::MINI_HEADER,
        ]),
        channel_caps: caps_from_bits(&[
            caps::main::NAME_AND_UUID,
            caps::main::AGENT_CONNECTED_TOKENS,
        ]),
    };
    let mut out = Vec::new();
    m.encode_with_header(&mut out);
    assert_eq!(out, v);
    let h = LinkHeader::decode(&v[..16]).unwrap();
    assert_eq!(h, LinkHeader::new(26));
    assert_eq!(LinkMess::decode(&v[16..]).unwrap(), m);
    // Caps past the end of the message are refused.
    let mut bad = v[16..].to_vec();
    bad[10..14].copy_from_slice(&le32(5));
    assert!(LinkMess::decode(&bad).is_err());
}

/// protocol.h `SpiceDataHeader { uint64 serial; uint16 type; uint32 size;
/// uint32 sub_list }` (18 bytes, packed) and `SpiceMiniDataHeader { uint16
/// type; uint32 size }` (6 bytes).
#[test]
fn data_headers_layout() {
    let mut v = Vec::new();
    DataHeader {
        serial: 1,
        msg_type: 103,
        size: 32,
        sub_list: 0,
    }
    .encode(&mut v);
    assert_eq!(v, [1, 0, 0, 0, 0, 0, 0, 0, 103, 0, 32, 0, 0, 0, 0, 0, 0, 0]);
    let mut m = Vec::new();
    MiniHeader {
        msg_type: 103,
        size: 32,
    }
    .encode(&mut m);
    assert_eq!(m, [103, 0, 32, 0, 0, 0]);
}

/// vd_agent.h: `VDAgentMessage { u32 protocol; u32 type; u64 opaque; u32 size }`
/// then `VDAgentClipboardGrab` which, with CLIPBOARD_SELECTION, starts with
/// `uint8 selection; uint8 reserved[3]`, then with CLIPBOARD_GRAB_SERIAL a
/// u32 serial, then the u32 types.
#[test]
fn agent_clipboard_grab_with_selection() {
    let mut v = Vec::new();
    v.extend_from_slice(&le32(1));
    v.extend_from_slice(&le32(agent::msg::CLIPBOARD_GRAB));
    v.extend_from_slice(&le64(0));
    v.extend_from_slice(&le32(12));
    v.extend_from_slice(&[1, 0, 0, 0]);
    v.extend_from_slice(&le32(99));
    v.extend_from_slice(&le32(agent::clipboard_type::UTF8_TEXT));
    let m = AgentMessage::ClipboardGrab {
        selection: Some(agent::selection::PRIMARY),
        serial: Some(99),
        types: vec![agent::clipboard_type::UTF8_TEXT],
    };
    let mut out = Vec::new();
    m.encode_with_header(&mut out);
    assert_eq!(out, v);
    let caps = AgentCaps {
        clipboard_selection: true,
        grab_serial: true,
    };
    assert_eq!(
        AgentMessage::decode(agent::msg::CLIPBOARD_GRAB, &v[20..], caps).unwrap(),
        m
    );
    // Without the caps the same bytes read as three types.
    let plain =
        AgentMessage::decode(agent::msg::CLIPBOARD_GRAB, &v[20..], AgentCaps::default()).unwrap();
    assert_eq!(
        plain,
        AgentMessage::ClipboardGrab {
            selection: None,
            serial: None,
            types: vec![1, 99, 1],
        }
    );
}

/// Messages of a type the channel does not define are reported as such.
#[test]
fn unknown_types_are_errors() {
    assert!(matches!(
        MainServerMsg::decode(99, &[]),
        Err(ProtoError::UnknownMessage { msg_type: 99, .. })
    ));
    assert!(matches!(
        InputsClientMsg::decode(200, &[]),
        Err(ProtoError::UnknownMessage { .. })
    ));
    // Base messages decode through every channel enum.
    let ping = DisplayServerMsg::decode(4, &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(
        ping,
        DisplayServerMsg::Base(BaseServerMsg::Ping {
            id: 1,
            timestamp: 2,
            data: vec![]
        })
    );
}
