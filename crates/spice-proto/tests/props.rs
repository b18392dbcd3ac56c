//! Property tests: every message survives encode → decode unchanged, and no
//! decoder panics on arbitrary or mutated bytes.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::Union;

use spice_proto::agent::{self, AgentCaps, AgentMessage, MonConfig};
use spice_proto::common::WaitForChannel;
use spice_proto::consts::{bitmap_flags, line_flags, string_flags, LinkErr};
use spice_proto::cursor::{Cursor, CursorHeader};
use spice_proto::display::{CopyData, Head, ResourceId, StreamCreate, StreamReport};
use spice_proto::main_channel::{ChannelId, MainInit, MigrationDstInfo};
use spice_proto::types::*;
use spice_proto::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn rect() -> impl Strategy<Value = Rect> {
    any::<(i32, i32, i32, i32)>().prop_map(|(top, left, bottom, right)| Rect {
        top,
        left,
        bottom,
        right,
    })
}

fn point() -> impl Strategy<Value = Point> {
    any::<(i32, i32)>().prop_map(|(x, y)| Point { x, y })
}

fn clip() -> impl Strategy<Value = Clip> {
    prop_oneof![Just(Clip::None), vec(rect(), 0..4).prop_map(Clip::Rects)]
}

fn base() -> impl Strategy<Value = DisplayBase> {
    (any::<u32>(), rect(), clip()).prop_map(|(surface_id, bbox, clip)| DisplayBase {
        surface_id,
        bbox,
        clip,
    })
}

fn palette_source() -> impl Strategy<Value = PaletteSource> {
    prop_oneof![
        any::<u64>().prop_map(PaletteSource::Cached),
        (any::<u64>(), vec(any::<u32>(), 0..8))
            .prop_map(|(unique, ents)| PaletteSource::Inline(Palette { unique, ents })),
    ]
}

fn image_data() -> impl Strategy<Value = ImageData> {
    let bitmap = (
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
        0u32..16,
        0u32..8,
        option::of(palette_source()),
    )
        .prop_flat_map(|(format, flags, width, stride, height, palette)| {
            vec(any::<u8>(), (stride * height) as usize).prop_map(move |data| {
                ImageData::Bitmap(Bitmap {
                    format,
                    flags: flags & !bitmap_flags::PAL_FROM_CACHE,
                    width,
                    height,
                    stride,
                    palette: palette.clone(),
                    data,
                })
            })
        });
    let jpeg_alpha = (any::<u8>(), bytes(40)).prop_flat_map(|(flags, data)| {
        (0..=data.len() as u32).prop_map(move |jpeg_size| ImageData::JpegAlpha {
            flags,
            jpeg_size,
            data: data.clone(),
        })
    });
    Union::new(vec![
        bitmap.boxed(),
        bytes(40).prop_map(ImageData::Quic).boxed(),
        bytes(40).prop_map(ImageData::LzRgb).boxed(),
        bytes(40).prop_map(ImageData::GlzRgb).boxed(),
        bytes(40).prop_map(ImageData::Jpeg).boxed(),
        bytes(40).prop_map(ImageData::Lz4).boxed(),
        (any::<u8>(), palette_source(), bytes(40))
            .prop_map(|(f, palette, data)| ImageData::LzPlt {
                flags: f & !bitmap_flags::PAL_FROM_CACHE,
                palette,
                data,
            })
            .boxed(),
        (any::<u32>(), bytes(40))
            .prop_map(|(glz_data_size, data)| ImageData::ZlibGlzRgb {
                glz_data_size,
                data,
            })
            .boxed(),
        jpeg_alpha.boxed(),
        Just(ImageData::FromCache).boxed(),
        Just(ImageData::FromCacheLossless).boxed(),
        any::<u32>()
            .prop_map(|surface_id| ImageData::Surface { surface_id })
            .boxed(),
    ])
}

fn image() -> impl Strategy<Value = Image> {
    (
        any::<u64>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        image_data(),
    )
        .prop_map(|(id, flags, width, height, data)| Image {
            id,
            flags,
            width,
            height,
            data,
        })
}

fn opt_image() -> impl Strategy<Value = Option<Box<Image>>> {
    option::of(image().prop_map(Box::new))
}

fn brush() -> impl Strategy<Value = Brush> {
    prop_oneof![
        Just(Brush::None),
        any::<u32>().prop_map(Brush::Solid),
        (image(), point()).prop_map(|(i, pos)| Brush::Pattern {
            image: Box::new(i),
            pos
        }),
    ]
}

fn qmask() -> impl Strategy<Value = QMask> {
    (any::<u8>(), point(), opt_image()).prop_map(|(flags, pos, bitmap)| QMask {
        flags,
        pos,
        bitmap,
    })
}

fn copy_data() -> impl Strategy<Value = CopyData> {
    (opt_image(), rect(), any::<u16>(), any::<u8>(), qmask()).prop_map(
        |(src_bitmap, src_area, rop_descriptor, scale_mode, mask)| CopyData {
            src_bitmap,
            src_area,
            rop_descriptor,
            scale_mode,
            mask,
        },
    )
}

fn glyph_string() -> impl Strategy<Value = GlyphString> {
    prop_oneof![
        (any::<u8>(), Just(0u64)),
        Just((string_flags::RASTER_A1, 1u64)),
        Just((
            string_flags::RASTER_A4 | string_flags::RASTER_TOP_DOWN,
            4u64
        )),
        Just((string_flags::RASTER_A8, 8u64)),
    ]
    .prop_flat_map(|(flags, bpp)| {
        let flags = if bpp == 0 {
            flags & !(string_flags::RASTER_A1 | string_flags::RASTER_A4 | string_flags::RASTER_A8)
        } else {
            flags
        };
        let glyph = (point(), point(), 0u16..12, 0u16..5).prop_flat_map(move |(rp, go, w, h)| {
            let n = (u64::from(w) * bpp).div_ceil(8) * u64::from(h);
            vec(any::<u8>(), n as usize).prop_map(move |data| RasterGlyph {
                render_pos: rp,
                glyph_origin: go,
                width: w,
                height: h,
                data,
            })
        });
        let max = if bpp == 0 { 1 } else { 4 };
        vec(glyph, 0..max).prop_map(move |glyphs| GlyphString { flags, glyphs })
    })
}

fn path() -> impl Strategy<Value = Path> {
    vec(
        (any::<u8>(), vec(point(), 0..4)).prop_map(|(flags, points)| PathSegment { flags, points }),
        0..4,
    )
    .prop_map(|segments| Path { segments })
}

fn line_attr() -> impl Strategy<Value = LineAttr> {
    (any::<u8>(), option::of(vec(any::<i32>(), 0..5))).prop_map(|(f, style)| LineAttr {
        flags: f & !line_flags::STYLED,
        style,
    })
}

fn wait_list() -> impl Strategy<Value = Vec<WaitForChannel>> {
    vec(
        any::<(u8, u8, u64)>().prop_map(|(channel_type, channel_id, message_serial)| {
            WaitForChannel {
                channel_type,
                channel_id,
                message_serial,
            }
        }),
        0..4,
    )
}

fn base_server() -> impl Strategy<Value = BaseServerMsg> {
    Union::new(vec![
        any::<u32>()
            .prop_map(|flags| BaseServerMsg::Migrate { flags })
            .boxed(),
        bytes(30).prop_map(BaseServerMsg::MigrateData).boxed(),
        any::<(u32, u32)>()
            .prop_map(|(generation, window)| BaseServerMsg::SetAck { generation, window })
            .boxed(),
        (any::<u32>(), any::<u64>(), bytes(30))
            .prop_map(|(id, timestamp, data)| BaseServerMsg::Ping {
                id,
                timestamp,
                data,
            })
            .boxed(),
        wait_list().prop_map(BaseServerMsg::WaitForChannels).boxed(),
        any::<(u64, u32)>()
            .prop_map(|(time_stamp, r)| BaseServerMsg::Disconnecting {
                time_stamp,
                reason: LinkErr(r),
            })
            .boxed(),
        (any::<(u64, u32, u32, u32)>(), bytes(30))
            .prop_map(
                |((time_stamp, severity, visibility, what), message)| BaseServerMsg::Notify {
                    time_stamp,
                    severity,
                    visibility,
                    what,
                    message,
                },
            )
            .boxed(),
    ])
}

fn base_client() -> impl Strategy<Value = BaseClientMsg> {
    prop_oneof![
        any::<u32>().prop_map(|generation| BaseClientMsg::AckSync { generation }),
        Just(BaseClientMsg::Ack),
        any::<(u32, u64)>().prop_map(|(id, timestamp)| BaseClientMsg::Pong { id, timestamp }),
        Just(BaseClientMsg::MigrateFlushMark),
        bytes(30).prop_map(BaseClientMsg::MigrateData),
        any::<(u64, u32)>().prop_map(|(time_stamp, r)| BaseClientMsg::Disconnecting {
            time_stamp,
            reason: LinkErr(r)
        }),
    ]
}

fn dst_info() -> impl Strategy<Value = MigrationDstInfo> {
    (any::<(u16, u16)>(), bytes(20), bytes(20)).prop_map(|((port, sport), host, cert_subject)| {
        MigrationDstInfo {
            port,
            sport,
            host,
            cert_subject,
        }
    })
}

fn main_server() -> impl Strategy<Value = MainServerMsg> {
    use MainServerMsg as M;
    Union::new(vec![
        base_server().prop_map(M::Base).boxed(),
        dst_info().prop_map(M::MigrateBegin).boxed(),
        Just(M::MigrateCancel).boxed(),
        any::<[u32; 8]>()
            .prop_map(|a| {
                M::Init(MainInit {
                    session_id: a[0],
                    display_channels_hint: a[1],
                    supported_mouse_modes: a[2],
                    current_mouse_mode: a[3],
                    agent_connected: a[4],
                    agent_tokens: a[5],
                    multi_media_time: a[6],
                    ram_hint: a[7],
                })
            })
            .boxed(),
        vec(
            any::<(u8, u8)>().prop_map(|(channel_type, id)| ChannelId { channel_type, id }),
            0..6,
        )
        .prop_map(M::ChannelsList)
        .boxed(),
        any::<(u16, u16)>()
            .prop_map(|(supported, current)| M::MouseMode { supported, current })
            .boxed(),
        any::<u32>().prop_map(M::MultiMediaTime).boxed(),
        Just(M::AgentConnected).boxed(),
        any::<u32>()
            .prop_map(|e| M::AgentDisconnected(LinkErr(e)))
            .boxed(),
        bytes(40).prop_map(M::AgentData).boxed(),
        any::<u32>().prop_map(M::AgentToken).boxed(),
        dst_info().prop_map(M::MigrateSwitchHost).boxed(),
        Just(M::MigrateEnd).boxed(),
        bytes(20).prop_map(M::Name).boxed(),
        any::<[u8; 16]>().prop_map(M::Uuid).boxed(),
        any::<u32>().prop_map(M::AgentConnectedTokens).boxed(),
        (dst_info(), any::<u32>())
            .prop_map(|(dst_info, src_mig_version)| M::MigrateBeginSeamless {
                dst_info,
                src_mig_version,
            })
            .boxed(),
        Just(M::MigrateDstSeamlessAck).boxed(),
        Just(M::MigrateDstSeamlessNack).boxed(),
    ])
}

fn main_client() -> impl Strategy<Value = MainClientMsg> {
    use MainClientMsg as M;
    Union::new(vec![
        base_client().prop_map(M::Base).boxed(),
        any::<u64>()
            .prop_map(|cache_size| M::ClientInfo { cache_size })
            .boxed(),
        Just(M::MigrateConnected).boxed(),
        Just(M::MigrateConnectError).boxed(),
        Just(M::AttachChannels).boxed(),
        any::<u16>().prop_map(M::MouseModeRequest).boxed(),
        any::<u32>().prop_map(M::AgentStart).boxed(),
        bytes(40).prop_map(M::AgentData).boxed(),
        any::<u32>().prop_map(M::AgentToken).boxed(),
        Just(M::MigrateEnd).boxed(),
        any::<u32>()
            .prop_map(|src_version| M::MigrateDstDoSeamless { src_version })
            .boxed(),
        Just(M::MigrateConnectedSeamless).boxed(),
    ])
}

fn display_server() -> impl Strategy<Value = DisplayServerMsg> {
    use DisplayServerMsg as D;
    Union::new(vec![
        base_server().prop_map(D::Base).boxed(),
        any::<(u32, u32, u32)>()
            .prop_map(|(x_res, y_res, bits)| D::Mode { x_res, y_res, bits })
            .boxed(),
        Just(D::Mark).boxed(),
        Just(D::Reset).boxed(),
        (base(), point())
            .prop_map(|(base, src_pos)| D::CopyBits { base, src_pos })
            .boxed(),
        vec(
            any::<(u8, u64)>().prop_map(|(resource_type, id)| ResourceId { resource_type, id }),
            0..5,
        )
        .prop_map(D::InvalList)
        .boxed(),
        wait_list().prop_map(D::InvalAllPixmaps).boxed(),
        any::<u64>().prop_map(|id| D::InvalPalette { id }).boxed(),
        Just(D::InvalAllPalettes).boxed(),
        (
            any::<(u32, u32, u8, u8, u64)>(),
            any::<[u32; 4]>(),
            rect(),
            clip(),
        )
            .prop_map(
                |((surface_id, id, flags, codec_type, stamp), s, dest, clip)| {
                    D::StreamCreate(StreamCreate {
                        surface_id,
                        id,
                        flags,
                        codec_type,
                        stamp,
                        stream_width: s[0],
                        stream_height: s[1],
                        src_width: s[2],
                        src_height: s[3],
                        dest,
                        clip,
                    })
                },
            )
            .boxed(),
        (any::<(u32, u32)>(), bytes(40))
            .prop_map(|((id, multi_media_time), data)| D::StreamData {
                id,
                multi_media_time,
                data,
            })
            .boxed(),
        (any::<u32>(), clip())
            .prop_map(|(id, clip)| D::StreamClip { id, clip })
            .boxed(),
        any::<u32>().prop_map(|id| D::StreamDestroy { id }).boxed(),
        Just(D::StreamDestroyAll).boxed(),
        (base(), brush(), any::<u16>(), qmask())
            .prop_map(|(base, brush, rop_descriptor, mask)| D::DrawFill {
                base,
                brush,
                rop_descriptor,
                mask,
            })
            .boxed(),
        (
            base(),
            opt_image(),
            rect(),
            brush(),
            any::<(u16, u8)>(),
            qmask(),
        )
            .prop_map(
                |(base, src_bitmap, src_area, brush, (rop_descriptor, scale_mode), mask)| {
                    D::DrawOpaque {
                        base,
                        src_bitmap,
                        src_area,
                        brush,
                        rop_descriptor,
                        scale_mode,
                        mask,
                    }
                },
            )
            .boxed(),
        (base(), copy_data())
            .prop_map(|(base, copy)| D::DrawCopy { base, copy })
            .boxed(),
        (base(), copy_data())
            .prop_map(|(base, copy)| D::DrawBlend { base, copy })
            .boxed(),
        (base(), qmask())
            .prop_map(|(base, mask)| D::DrawBlackness { base, mask })
            .boxed(),
        (base(), qmask())
            .prop_map(|(base, mask)| D::DrawWhiteness { base, mask })
            .boxed(),
        (base(), qmask())
            .prop_map(|(base, mask)| D::DrawInvers { base, mask })
            .boxed(),
        (
            base(),
            opt_image(),
            rect(),
            brush(),
            any::<(u8, u8)>(),
            qmask(),
        )
            .prop_map(
                |(base, src_bitmap, src_area, brush, (rop3, scale_mode), mask)| D::DrawRop3 {
                    base,
                    src_bitmap,
                    src_area,
                    brush,
                    rop3,
                    scale_mode,
                    mask,
                },
            )
            .boxed(),
        (base(), path(), line_attr(), brush(), any::<(u16, u16)>())
            .prop_map(
                |(base, path, attr, brush, (fore_mode, back_mode))| D::DrawStroke {
                    base,
                    path,
                    attr,
                    brush,
                    fore_mode,
                    back_mode,
                },
            )
            .boxed(),
        (
            base(),
            glyph_string(),
            rect(),
            brush(),
            brush(),
            any::<(u16, u16)>(),
        )
            .prop_map(
                |(base, text, back_area, fore_brush, back_brush, (fore_mode, back_mode))| {
                    D::DrawText {
                        base,
                        text,
                        back_area,
                        fore_brush,
                        back_brush,
                        fore_mode,
                        back_mode,
                    }
                },
            )
            .boxed(),
        (base(), opt_image(), rect(), any::<(u32, u32)>())
            .prop_map(
                |(base, src_bitmap, src_area, (src_color, true_color))| D::DrawTransparent {
                    base,
                    src_bitmap,
                    src_area,
                    src_color,
                    true_color,
                },
            )
            .boxed(),
        (base(), any::<(u8, u8)>(), opt_image(), rect())
            .prop_map(
                |(base, (alpha_flags, alpha), src_bitmap, src_area)| D::DrawAlphaBlend {
                    base,
                    alpha_flags,
                    alpha,
                    src_bitmap,
                    src_area,
                },
            )
            .boxed(),
        any::<(u32, u32, u32, u32, u32)>()
            .prop_map(
                |(surface_id, width, height, format, flags)| D::SurfaceCreate {
                    surface_id,
                    width,
                    height,
                    format,
                    flags,
                },
            )
            .boxed(),
        any::<u32>()
            .prop_map(|surface_id| D::SurfaceDestroy { surface_id })
            .boxed(),
        (any::<(u32, u32, u32, u32)>(), rect(), bytes(40))
            .prop_map(
                |((id, multi_media_time, width, height), dest, data)| D::StreamDataSized {
                    id,
                    multi_media_time,
                    width,
                    height,
                    dest,
                    data,
                },
            )
            .boxed(),
        (
            any::<u16>(),
            vec(
                any::<[u32; 7]>().prop_map(|a| Head {
                    monitor_id: a[0],
                    surface_id: a[1],
                    width: a[2],
                    height: a[3],
                    x: a[4],
                    y: a[5],
                    flags: a[6],
                }),
                0..4,
            ),
        )
            .prop_map(|(max_allowed, heads)| D::MonitorsConfig { max_allowed, heads })
            .boxed(),
        any::<(u32, u32, u32, u32)>()
            .prop_map(|(stream_id, unique_id, max_window_size, timeout_ms)| {
                D::StreamActivateReport {
                    stream_id,
                    unique_id,
                    max_window_size,
                    timeout_ms,
                }
            })
            .boxed(),
        any::<(u32, u32, u32, u32)>()
            .prop_map(|(x, y, w, h)| D::GlDraw { x, y, w, h })
            .boxed(),
    ])
}

fn display_client() -> impl Strategy<Value = DisplayClientMsg> {
    use DisplayClientMsg as D;
    prop_oneof![
        base_client().prop_map(D::Base),
        any::<(u8, i64, u8, i32)>().prop_map(|(a, b, c, d)| D::Init {
            pixmap_cache_id: a,
            pixmap_cache_size: b,
            glz_dictionary_id: c,
            glz_dictionary_window_size: d,
        }),
        (any::<[u32; 6]>(), any::<i32>(), any::<u32>()).prop_map(
            |(a, last_frame_delay, audio_delay)| {
                D::StreamReport(StreamReport {
                    stream_id: a[0],
                    unique_id: a[1],
                    start_frame_mm_time: a[2],
                    end_frame_mm_time: a[3],
                    num_frames: a[4],
                    num_drops: a[5],
                    last_frame_delay,
                    audio_delay,
                })
            }
        ),
        any::<u8>().prop_map(D::PreferredCompression),
        Just(D::GlDrawDone),
        bytes(10).prop_map(D::PreferredVideoCodecType),
    ]
}

fn inputs_server() -> impl Strategy<Value = InputsServerMsg> {
    use InputsServerMsg as I;
    prop_oneof![
        base_server().prop_map(I::Base),
        any::<u16>().prop_map(|keyboard_modifiers| I::Init { keyboard_modifiers }),
        any::<u16>().prop_map(|modifiers| I::KeyModifiers { modifiers }),
        Just(I::MouseMotionAck),
    ]
}

fn inputs_client() -> impl Strategy<Value = InputsClientMsg> {
    use InputsClientMsg as I;
    Union::new(vec![
        base_client().prop_map(I::Base).boxed(),
        any::<u32>().prop_map(I::KeyDown).boxed(),
        any::<u32>().prop_map(I::KeyUp).boxed(),
        any::<u16>().prop_map(I::KeyModifiers).boxed(),
        bytes(8).prop_map(I::KeyScancode).boxed(),
        any::<(i32, i32, u16)>()
            .prop_map(|(dx, dy, buttons_state)| I::MouseMotion {
                dx,
                dy,
                buttons_state,
            })
            .boxed(),
        any::<(u32, u32, u16, u8)>()
            .prop_map(|(x, y, buttons_state, display_id)| I::MousePosition {
                x,
                y,
                buttons_state,
                display_id,
            })
            .boxed(),
        any::<(u8, u16)>()
            .prop_map(|(button, buttons_state)| I::MousePress {
                button,
                buttons_state,
            })
            .boxed(),
        any::<(u8, u16)>()
            .prop_map(|(button, buttons_state)| I::MouseRelease {
                button,
                buttons_state,
            })
            .boxed(),
    ])
}

fn point16() -> impl Strategy<Value = Point16> {
    any::<(i16, i16)>().prop_map(|(x, y)| Point16 { x, y })
}

fn cursor() -> impl Strategy<Value = Cursor> {
    (
        any::<u16>(),
        option::of(
            (any::<u64>(), 0u8..=6, any::<[u16; 4]>()).prop_map(|(unique, t, a)| CursorHeader {
                unique,
                cursor_type: t,
                width: a[0],
                height: a[1],
                hot_spot_x: a[2],
                hot_spot_y: a[3],
            }),
        ),
        bytes(40),
    )
        .prop_map(|(flags, header, data)| Cursor {
            flags: flags & !spice_proto::consts::cursor_flags::NONE,
            header,
            data,
        })
}

fn cursor_server() -> impl Strategy<Value = CursorServerMsg> {
    use CursorServerMsg as C;
    Union::new(vec![
        base_server().prop_map(C::Base).boxed(),
        (point16(), any::<(u16, u16, u8)>(), cursor())
            .prop_map(
                |(position, (trail_length, trail_frequency, visible), cursor)| C::Init {
                    position,
                    trail_length,
                    trail_frequency,
                    visible,
                    cursor,
                },
            )
            .boxed(),
        Just(C::Reset).boxed(),
        (point16(), any::<u8>(), cursor())
            .prop_map(|(position, visible, cursor)| C::Set {
                position,
                visible,
                cursor,
            })
            .boxed(),
        point16().prop_map(|position| C::Move { position }).boxed(),
        Just(C::Hide).boxed(),
        any::<(u16, u16)>()
            .prop_map(|(length, frequency)| C::Trail { length, frequency })
            .boxed(),
        any::<u64>().prop_map(|id| C::InvalOne { id }).boxed(),
        Just(C::InvalAll).boxed(),
    ])
}

fn agent_msg() -> impl Strategy<Value = (AgentCaps, AgentMessage)> {
    (any::<bool>(), any::<bool>()).prop_flat_map(|(sel, ser)| {
        let caps = AgentCaps {
            clipboard_selection: sel,
            grab_serial: ser,
        };
        let selection = move || -> BoxedStrategy<Option<u8>> {
            if sel {
                any::<u8>().prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            }
        };
        let serial: BoxedStrategy<Option<u32>> = if ser {
            any::<u32>().prop_map(Some).boxed()
        } else {
            Just(None).boxed()
        };
        let monitors = vec(
            any::<(u32, u32, u32, i32, i32)>().prop_map(|(height, width, depth, x, y)| MonConfig {
                height,
                width,
                depth,
                x,
                y,
            }),
            0..4,
        )
        .prop_flat_map(|m| {
            let n = m.len();
            (
                Just(m),
                any::<u32>(),
                option::of(vec(any::<(u16, u16)>(), n)),
            )
        })
        .prop_map(
            |(monitors, flags, physical_sizes)| AgentMessage::MonitorsConfig {
                flags: flags & !agent::MONITORS_FLAG_PHYSICAL_SIZE,
                monitors,
                physical_sizes,
            },
        );
        let m = Union::new(vec![
            (any::<bool>(), vec(any::<u32>(), 0..3))
                .prop_map(|(request, caps)| AgentMessage::AnnounceCapabilities { request, caps })
                .boxed(),
            monitors.boxed(),
            any::<(u32, u32)>()
                .prop_map(|(msg_type, error)| AgentMessage::Reply { msg_type, error })
                .boxed(),
            (selection(), serial, vec(any::<u32>(), 0..4))
                .prop_map(|(selection, serial, types)| AgentMessage::ClipboardGrab {
                    selection,
                    serial,
                    types,
                })
                .boxed(),
            (selection(), any::<u32>())
                .prop_map(|(selection, clip_type)| AgentMessage::ClipboardRequest {
                    selection,
                    clip_type,
                })
                .boxed(),
            (selection(), any::<u32>(), bytes(30))
                .prop_map(|(selection, clip_type, data)| AgentMessage::Clipboard {
                    selection,
                    clip_type,
                    data,
                })
                .boxed(),
            selection()
                .prop_map(|selection| AgentMessage::ClipboardRelease { selection })
                .boxed(),
            (
                prop_oneof![Just(1u32), Just(5), 10u32..=16, 17u32..1000],
                bytes(30),
            )
                .prop_map(|(msg_type, data)| AgentMessage::Other { msg_type, data })
                .boxed(),
        ]);
        m.prop_map(move |m| (caps, m))
    })
}

fn roundtrip<M: Message + PartialEq + std::fmt::Debug>(
    m: &M,
) -> std::result::Result<(), TestCaseError> {
    let body = m.to_body();
    let back = M::decode(m.msg_type(), &body)
        .map_err(|e| TestCaseError::fail(format!("decode of {m:?} failed: {e}")))?;
    prop_assert_eq!(&back, m);
    Ok(())
}

/// Decodes `body` as type `t` of every family; the result is ignored, only
/// panics (or hangs) fail.
fn decode_everything(t: u16, body: &[u8]) {
    let _ = BaseServerMsg::decode(t, body);
    let _ = BaseClientMsg::decode(t, body);
    let _ = MainServerMsg::decode(t, body);
    let _ = MainClientMsg::decode(t, body);
    let _ = DisplayServerMsg::decode(t, body);
    let _ = DisplayClientMsg::decode(t, body);
    let _ = InputsServerMsg::decode(t, body);
    let _ = InputsClientMsg::decode(t, body);
    let _ = CursorServerMsg::decode(t, body);
    for caps in [
        AgentCaps::default(),
        AgentCaps {
            clipboard_selection: true,
            grab_serial: true,
        },
    ] {
        let _ = AgentMessage::decode(u32::from(t % 20), body, caps);
    }
}

fn any_type() -> impl Strategy<Value = u16> {
    prop_oneof![1u16..10, 101u16..130, 300u16..325, any::<u16>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn main_server_roundtrip(m in main_server()) { roundtrip(&m)?; }
    #[test]
    fn main_client_roundtrip(m in main_client()) { roundtrip(&m)?; }
    #[test]
    fn display_server_roundtrip(m in display_server()) { roundtrip(&m)?; }
    #[test]
    fn display_client_roundtrip(m in display_client()) { roundtrip(&m)?; }
    #[test]
    fn inputs_server_roundtrip(m in inputs_server()) { roundtrip(&m)?; }
    #[test]
    fn inputs_client_roundtrip(m in inputs_client()) { roundtrip(&m)?; }
    #[test]
    fn cursor_server_roundtrip(m in cursor_server()) { roundtrip(&m)?; }
    #[test]
    fn base_roundtrip(s in base_server(), c in base_client()) {
        roundtrip(&s)?;
        roundtrip(&c)?;
    }

    #[test]
    fn agent_roundtrip((caps, m) in agent_msg()) {
        let mut stream = Vec::new();
        m.encode_with_header(&mut stream);
        // Through the AGENT_DATA split and reassembly, as on the main channel.
        let mut re = agent::AgentReassembler::new(1 << 20);
        for part in agent::split_for_agent_data(&stream) {
            re.push(part);
        }
        let (h, data) = re.next_message().unwrap().expect("one whole message");
        prop_assert_eq!(h.protocol, agent::PROTOCOL);
        prop_assert_eq!(h.size as usize, data.len());
        let back = AgentMessage::decode(h.msg_type, &data, caps).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn decoders_never_panic_on_random_bytes(t in any_type(), body in bytes(300)) {
        decode_everything(t, &body);
    }

    /// Valid messages with a few bytes changed reach deeper decoder paths
    /// (pointers, counts) than random bytes do.
    #[test]
    fn decoders_never_panic_on_mutated_messages(
        m in display_server(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = m.to_body();
        if !body.is_empty() {
            for (i, v) in edits {
                let i = i.index(body.len());
                body[i] = v;
            }
        }
        let t = m.msg_type();
        decode_everything(t, &body);
        let keep = cut.index(body.len() + 1);
        decode_everything(t, &body[..keep]);
    }

    #[test]
    fn link_parsers_never_panic(body in bytes(400)) {
        let _ = link::LinkMess::decode(&body);
        let _ = link::LinkReply::decode(&body);
        let _ = link::LinkHeader::decode(&body);
    }
}

/// An image whose pointers all alias one big palette must not blow up memory:
/// the decoding budget rejects it.
#[test]
fn aliased_pointers_hit_the_budget() {
    // DRAW_STROKE whose path has many segment pointers to one large segment.
    let seg_points = 200u32;
    let nseg = 2000u32;
    let mut body = Vec::new();
    // DisplayBase: surface 0, rect, clip none.
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&[0u8; 16]);
    body.push(0);
    let path_ptr_pos = body.len();
    body.extend_from_slice(&0u32.to_le_bytes());
    body.push(0); // line attr flags
    body.push(0); // brush none
    body.extend_from_slice(&[0u8; 4]); // fore/back mode
    let path_off = body.len() as u32;
    body[path_ptr_pos..path_ptr_pos + 4].copy_from_slice(&path_off.to_le_bytes());
    body.extend_from_slice(&nseg.to_le_bytes());
    let seg_off = path_off + 4 + 4 * nseg;
    for _ in 0..nseg {
        body.extend_from_slice(&seg_off.to_le_bytes());
    }
    body.push(0);
    body.extend_from_slice(&seg_points.to_le_bytes());
    body.extend_from_slice(&vec![0u8; 8 * seg_points as usize]);
    let err = DisplayServerMsg::decode(spice_proto::consts::msg::display::DRAW_STROKE, &body)
        .unwrap_err();
    assert_eq!(err, ProtoError::Budget);
}
