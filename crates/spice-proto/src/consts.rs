//! Numeric constants of the SPICE protocol (spice-protocol `spice/enums.h`,
//! `spice/protocol.h`, `spice/vd_agent.h`), grouped by the field they fill.

use std::fmt;

/// "REDQ" read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"REDQ");
pub const VERSION_MAJOR: u32 = 2;
pub const VERSION_MINOR: u32 = 2;
pub const MAX_PASSWORD_LENGTH: usize = 60;
/// RSA modulus size used for tickets, in bits.
pub const TICKET_KEY_PAIR_LENGTH: usize = 1024;
/// Size of the SubjectPublicKeyInfo DER of the RSA-1024 ticket key.
pub const TICKET_PUBKEY_BYTES: usize = TICKET_KEY_PAIR_LENGTH / 8 + 34;
/// Size of the encrypted ticket (one RSA-1024 block).
pub const ENCRYPTED_TICKET_BYTES: usize = TICKET_KEY_PAIR_LENGTH / 8;
pub const MAX_NUM_STREAMS: u32 = 64;
/// Mouse-motion messages the client may send before waiting for an ack.
pub const INPUT_MOTION_ACK_BUNCH: u32 = 4;

/// A SPICE link error code (`SpiceLinkErr`), also the link result word.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkErr(pub u32);

impl LinkErr {
    pub const OK: LinkErr = LinkErr(0);
    pub const ERROR: LinkErr = LinkErr(1);
    pub const INVALID_MAGIC: LinkErr = LinkErr(2);
    pub const INVALID_DATA: LinkErr = LinkErr(3);
    pub const VERSION_MISMATCH: LinkErr = LinkErr(4);
    pub const NEED_SECURED: LinkErr = LinkErr(5);
    pub const NEED_UNSECURED: LinkErr = LinkErr(6);
    pub const PERMISSION_DENIED: LinkErr = LinkErr(7);
    pub const BAD_CONNECTION_ID: LinkErr = LinkErr(8);
    pub const CHANNEL_NOT_AVAILABLE: LinkErr = LinkErr(9);

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "OK",
            1 => "ERROR",
            2 => "INVALID_MAGIC",
            3 => "INVALID_DATA",
            4 => "VERSION_MISMATCH",
            5 => "NEED_SECURED",
            6 => "NEED_UNSECURED",
            7 => "PERMISSION_DENIED",
            8 => "BAD_CONNECTION_ID",
            9 => "CHANNEL_NOT_AVAILABLE",
            _ => return None,
        })
    }
}

impl fmt::Debug for LinkErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "LinkErr::{n}"),
            None => write!(f, "LinkErr({})", self.0),
        }
    }
}

impl fmt::Display for LinkErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "link error {}", self.0),
        }
    }
}

/// Channel types (`SPICE_CHANNEL_*`).
pub mod channel {
    pub const MAIN: u8 = 1;
    pub const DISPLAY: u8 = 2;
    pub const INPUTS: u8 = 3;
    pub const CURSOR: u8 = 4;
    pub const PLAYBACK: u8 = 5;
    pub const RECORD: u8 = 6;
    pub const TUNNEL: u8 = 7;
    pub const SMARTCARD: u8 = 8;
    pub const USBREDIR: u8 = 9;
    pub const PORT: u8 = 10;
    pub const WEBDAV: u8 = 11;
}

/// Capability bit numbers; caps travel as arrays of u32 words, bit `n` in word `n / 32`.
pub mod caps {
    pub mod common {
        pub const PROTOCOL_AUTH_SELECTION: u32 = 0;
        pub const AUTH_SPICE: u32 = 1;
        pub const AUTH_SASL: u32 = 2;
        pub const MINI_HEADER: u32 = 3;
    }
    pub mod main {
        pub const SEMI_SEAMLESS_MIGRATE: u32 = 0;
        pub const NAME_AND_UUID: u32 = 1;
        pub const AGENT_CONNECTED_TOKENS: u32 = 2;
        pub const SEAMLESS_MIGRATE: u32 = 3;
    }
    pub mod display {
        pub const SIZED_STREAM: u32 = 0;
        pub const MONITORS_CONFIG: u32 = 1;
        pub const COMPOSITE: u32 = 2;
        pub const A8_SURFACE: u32 = 3;
        pub const STREAM_REPORT: u32 = 4;
        pub const LZ4_COMPRESSION: u32 = 5;
        pub const PREF_COMPRESSION: u32 = 6;
        pub const GL_SCANOUT: u32 = 7;
        pub const MULTI_CODEC: u32 = 8;
        pub const CODEC_MJPEG: u32 = 9;
        pub const CODEC_VP8: u32 = 10;
        pub const CODEC_H264: u32 = 11;
        pub const PREF_VIDEO_CODEC_TYPE: u32 = 12;
        pub const CODEC_VP9: u32 = 13;
        pub const CODEC_H265: u32 = 14;
    }
    pub mod inputs {
        pub const KEY_SCANCODE: u32 = 0;
    }
    pub mod playback {
        pub const CELT_0_5_1: u32 = 0;
        pub const VOLUME: u32 = 1;
        pub const LATENCY: u32 = 2;
        pub const OPUS: u32 = 3;
    }
    pub mod record {
        pub const CELT_0_5_1: u32 = 0;
        pub const VOLUME: u32 = 1;
        pub const OPUS: u32 = 2;
    }
}

/// Message numbers; `msg` is server→client, `msgc` client→server.
pub mod msg {
    /// Messages every channel understands (below 101).
    pub mod base {
        pub const MIGRATE: u16 = 1;
        pub const MIGRATE_DATA: u16 = 2;
        pub const SET_ACK: u16 = 3;
        pub const PING: u16 = 4;
        pub const WAIT_FOR_CHANNELS: u16 = 5;
        pub const DISCONNECTING: u16 = 6;
        pub const NOTIFY: u16 = 7;
        pub const LIST: u16 = 8;
        pub const BASE_LAST: u16 = 100;
    }
    pub mod main {
        pub const MIGRATE_BEGIN: u16 = 101;
        pub const MIGRATE_CANCEL: u16 = 102;
        pub const INIT: u16 = 103;
        pub const CHANNELS_LIST: u16 = 104;
        pub const MOUSE_MODE: u16 = 105;
        pub const MULTI_MEDIA_TIME: u16 = 106;
        pub const AGENT_CONNECTED: u16 = 107;
        pub const AGENT_DISCONNECTED: u16 = 108;
        pub const AGENT_DATA: u16 = 109;
        pub const AGENT_TOKEN: u16 = 110;
        pub const MIGRATE_SWITCH_HOST: u16 = 111;
        pub const MIGRATE_END: u16 = 112;
        pub const NAME: u16 = 113;
        pub const UUID: u16 = 114;
        pub const AGENT_CONNECTED_TOKENS: u16 = 115;
        pub const MIGRATE_BEGIN_SEAMLESS: u16 = 116;
        pub const MIGRATE_DST_SEAMLESS_ACK: u16 = 117;
        pub const MIGRATE_DST_SEAMLESS_NACK: u16 = 118;
    }
    pub mod display {
        pub const MODE: u16 = 101;
        pub const MARK: u16 = 102;
        pub const RESET: u16 = 103;
        pub const COPY_BITS: u16 = 104;
        pub const INVAL_LIST: u16 = 105;
        pub const INVAL_ALL_PIXMAPS: u16 = 106;
        pub const INVAL_PALETTE: u16 = 107;
        pub const INVAL_ALL_PALETTES: u16 = 108;
        pub const STREAM_CREATE: u16 = 122;
        pub const STREAM_DATA: u16 = 123;
        pub const STREAM_CLIP: u16 = 124;
        pub const STREAM_DESTROY: u16 = 125;
        pub const STREAM_DESTROY_ALL: u16 = 126;
        pub const DRAW_FILL: u16 = 302;
        pub const DRAW_OPAQUE: u16 = 303;
        pub const DRAW_COPY: u16 = 304;
        pub const DRAW_BLEND: u16 = 305;
        pub const DRAW_BLACKNESS: u16 = 306;
        pub const DRAW_WHITENESS: u16 = 307;
        pub const DRAW_INVERS: u16 = 308;
        pub const DRAW_ROP3: u16 = 309;
        pub const DRAW_STROKE: u16 = 310;
        pub const DRAW_TEXT: u16 = 311;
        pub const DRAW_TRANSPARENT: u16 = 312;
        pub const DRAW_ALPHA_BLEND: u16 = 313;
        pub const SURFACE_CREATE: u16 = 314;
        pub const SURFACE_DESTROY: u16 = 315;
        pub const STREAM_DATA_SIZED: u16 = 316;
        pub const MONITORS_CONFIG: u16 = 317;
        pub const DRAW_COMPOSITE: u16 = 318;
        pub const STREAM_ACTIVATE_REPORT: u16 = 319;
        pub const GL_SCANOUT_UNIX: u16 = 320;
        pub const GL_DRAW: u16 = 321;
        pub const QUALITY_INDICATOR: u16 = 322;
    }
    pub mod inputs {
        pub const INIT: u16 = 101;
        pub const KEY_MODIFIERS: u16 = 102;
        pub const MOUSE_MOTION_ACK: u16 = 111;
    }
    pub mod cursor {
        pub const INIT: u16 = 101;
        pub const RESET: u16 = 102;
        pub const SET: u16 = 103;
        pub const MOVE: u16 = 104;
        pub const HIDE: u16 = 105;
        pub const TRAIL: u16 = 106;
        pub const INVAL_ONE: u16 = 107;
        pub const INVAL_ALL: u16 = 108;
    }
}

/// Client→server message numbers.
pub mod msgc {
    pub mod base {
        pub const ACK_SYNC: u16 = 1;
        pub const ACK: u16 = 2;
        pub const PONG: u16 = 3;
        pub const MIGRATE_FLUSH_MARK: u16 = 4;
        pub const MIGRATE_DATA: u16 = 5;
        pub const DISCONNECTING: u16 = 6;
    }
    pub mod main {
        pub const CLIENT_INFO: u16 = 101;
        pub const MIGRATE_CONNECTED: u16 = 102;
        pub const MIGRATE_CONNECT_ERROR: u16 = 103;
        pub const ATTACH_CHANNELS: u16 = 104;
        pub const MOUSE_MODE_REQUEST: u16 = 105;
        pub const AGENT_START: u16 = 106;
        pub const AGENT_DATA: u16 = 107;
        pub const AGENT_TOKEN: u16 = 108;
        pub const MIGRATE_END: u16 = 109;
        pub const MIGRATE_DST_DO_SEAMLESS: u16 = 110;
        pub const MIGRATE_CONNECTED_SEAMLESS: u16 = 111;
        pub const QUALITY_INDICATOR: u16 = 112;
    }
    pub mod display {
        pub const INIT: u16 = 101;
        pub const STREAM_REPORT: u16 = 102;
        pub const PREFERRED_COMPRESSION: u16 = 103;
        pub const GL_DRAW_DONE: u16 = 104;
        pub const PREFERRED_VIDEO_CODEC_TYPE: u16 = 105;
    }
    pub mod inputs {
        pub const KEY_DOWN: u16 = 101;
        pub const KEY_UP: u16 = 102;
        pub const KEY_MODIFIERS: u16 = 103;
        pub const KEY_SCANCODE: u16 = 104;
        pub const MOUSE_MOTION: u16 = 111;
        pub const MOUSE_POSITION: u16 = 112;
        pub const MOUSE_PRESS: u16 = 113;
        pub const MOUSE_RELEASE: u16 = 114;
    }
}

pub mod migrate_flags {
    pub const NEED_FLUSH: u32 = 1 << 0;
    pub const NEED_DATA_TRANSFER: u32 = 1 << 1;
}

pub mod notify_severity {
    pub const INFO: u32 = 0;
    pub const WARN: u32 = 1;
    pub const ERROR: u32 = 2;
}

pub mod notify_visibility {
    pub const LOW: u32 = 0;
    pub const MEDIUM: u32 = 1;
    pub const HIGH: u32 = 2;
}

/// Mouse modes, a u16 bit set on the wire.
pub mod mouse_mode {
    pub const SERVER: u16 = 1 << 0;
    pub const CLIENT: u16 = 1 << 1;
    pub const MASK: u16 = 0x3;
}

pub mod clip_type {
    pub const NONE: u8 = 0;
    pub const RECTS: u8 = 1;
}

pub mod path_flags {
    pub const BEGIN: u8 = 1 << 0;
    pub const END: u8 = 1 << 1;
    pub const CLOSE: u8 = 1 << 3;
    pub const BEZIER: u8 = 1 << 4;
}

/// Video codecs as carried in STREAM_CREATE and PREFERRED_VIDEO_CODEC_TYPE.
pub mod video_codec {
    pub const MJPEG: u8 = 1;
    pub const VP8: u8 = 2;
    pub const H264: u8 = 3;
    pub const VP9: u8 = 4;
    pub const H265: u8 = 5;
}

pub mod stream_flags {
    pub const TOP_DOWN: u8 = 1 << 0;
}

pub mod brush_type {
    pub const NONE: u8 = 0;
    pub const SOLID: u8 = 1;
    pub const PATTERN: u8 = 2;
}

pub mod mask_flags {
    pub const INVERS: u8 = 1 << 0;
}

pub mod image_type {
    pub const BITMAP: u8 = 0;
    pub const QUIC: u8 = 1;
    pub const RESERVED: u8 = 2;
    pub const LZ_PLT: u8 = 100;
    pub const LZ_RGB: u8 = 101;
    pub const GLZ_RGB: u8 = 102;
    pub const FROM_CACHE: u8 = 103;
    pub const SURFACE: u8 = 104;
    pub const JPEG: u8 = 105;
    pub const FROM_CACHE_LOSSLESS: u8 = 106;
    pub const ZLIB_GLZ_RGB: u8 = 107;
    pub const JPEG_ALPHA: u8 = 108;
    pub const LZ4: u8 = 109;
}

/// Image compression preferences (`SpiceImageCompression`), sent by the client
/// in PREFERRED_COMPRESSION.
pub mod image_compression {
    pub const INVALID: u8 = 0;
    pub const OFF: u8 = 1;
    pub const AUTO_GLZ: u8 = 2;
    pub const AUTO_LZ: u8 = 3;
    pub const QUIC: u8 = 4;
    pub const GLZ: u8 = 5;
    pub const LZ: u8 = 6;
    pub const LZ4: u8 = 7;
}

pub mod image_flags {
    pub const CACHE_ME: u8 = 1 << 0;
    pub const HIGH_BITS_SET: u8 = 1 << 1;
    pub const CACHE_REPLACE_ME: u8 = 1 << 2;
}

pub mod bitmap_fmt {
    pub const INVALID: u8 = 0;
    pub const BIT1_LE: u8 = 1;
    pub const BIT1_BE: u8 = 2;
    pub const BIT4_LE: u8 = 3;
    pub const BIT4_BE: u8 = 4;
    pub const BIT8: u8 = 5;
    pub const BIT16: u8 = 6;
    pub const BIT24: u8 = 7;
    pub const BIT32: u8 = 8;
    pub const RGBA: u8 = 9;
    pub const BIT8_A: u8 = 10;
}

pub mod bitmap_flags {
    pub const PAL_CACHE_ME: u8 = 1 << 0;
    pub const PAL_FROM_CACHE: u8 = 1 << 1;
    pub const TOP_DOWN: u8 = 1 << 2;
}

pub mod jpeg_alpha_flags {
    pub const TOP_DOWN: u8 = 1 << 0;
}

pub mod image_scale_mode {
    pub const INTERPOLATE: u8 = 0;
    pub const NEAREST: u8 = 1;
}

/// Raster operation descriptor bits (`SpiceRopd`), a u16 on the wire.
pub mod ropd {
    pub const INVERS_SRC: u16 = 1 << 0;
    pub const INVERS_BRUSH: u16 = 1 << 1;
    pub const INVERS_DEST: u16 = 1 << 2;
    pub const OP_PUT: u16 = 1 << 3;
    pub const OP_OR: u16 = 1 << 4;
    pub const OP_AND: u16 = 1 << 5;
    pub const OP_XOR: u16 = 1 << 6;
    pub const OP_BLACKNESS: u16 = 1 << 7;
    pub const OP_WHITENESS: u16 = 1 << 8;
    pub const OP_INVERS: u16 = 1 << 9;
    pub const INVERS_RES: u16 = 1 << 10;
}

pub mod line_flags {
    pub const START_WITH_GAP: u8 = 1 << 2;
    pub const STYLED: u8 = 1 << 3;
}

pub mod string_flags {
    pub const RASTER_A1: u8 = 1 << 0;
    pub const RASTER_A4: u8 = 1 << 1;
    pub const RASTER_A8: u8 = 1 << 2;
    pub const RASTER_TOP_DOWN: u8 = 1 << 3;
}

pub mod surface_flags {
    pub const PRIMARY: u32 = 1 << 0;
    pub const STREAMING_MODE: u32 = 1 << 1;
}

pub mod surface_fmt {
    pub const INVALID: u32 = 0;
    pub const FMT_1_A: u32 = 1;
    pub const FMT_8_A: u32 = 8;
    pub const FMT_16_555: u32 = 16;
    pub const FMT_32_XRGB: u32 = 32;
    pub const FMT_16_565: u32 = 80;
    pub const FMT_32_ARGB: u32 = 96;
}

pub mod alpha_flags {
    pub const DEST_HAS_ALPHA: u8 = 1 << 0;
    pub const SRC_SURFACE_HAS_ALPHA: u8 = 1 << 1;
}

pub mod resource_type {
    pub const INVALID: u8 = 0;
    pub const PIXMAP: u8 = 1;
}

pub mod keyboard_modifiers {
    pub const SCROLL_LOCK: u16 = 1 << 0;
    pub const NUM_LOCK: u16 = 1 << 1;
    pub const CAPS_LOCK: u16 = 1 << 2;
}

pub mod mouse_button {
    pub const INVALID: u8 = 0;
    pub const LEFT: u8 = 1;
    pub const MIDDLE: u8 = 2;
    pub const RIGHT: u8 = 3;
    pub const UP: u8 = 4;
    pub const DOWN: u8 = 5;
    pub const SIDE: u8 = 6;
    pub const EXTRA: u8 = 7;
}

pub mod mouse_button_mask {
    pub const LEFT: u16 = 1 << 0;
    pub const MIDDLE: u16 = 1 << 1;
    pub const RIGHT: u16 = 1 << 2;
    pub const UP: u16 = 1 << 3;
    pub const DOWN: u16 = 1 << 4;
    pub const SIDE: u16 = 1 << 5;
    pub const EXTRA: u16 = 1 << 6;
}

pub mod cursor_type {
    pub const ALPHA: u8 = 0;
    pub const MONO: u8 = 1;
    pub const COLOR4: u8 = 2;
    pub const COLOR8: u8 = 3;
    pub const COLOR16: u8 = 4;
    pub const COLOR24: u8 = 5;
    pub const COLOR32: u8 = 6;
}

pub mod cursor_flags {
    /// No cursor: the header is absent.
    pub const NONE: u16 = 1 << 0;
    pub const CACHE_ME: u16 = 1 << 1;
    pub const FROM_CACHE: u16 = 1 << 2;
}
