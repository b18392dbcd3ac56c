//! Display channel messages (spice.proto `DisplayChannel`).
//!
//! Draw commands carry a [`DisplayBase`] and, through u32 body offsets, the
//! images, paths and glyphs they draw with; compressed image payloads are
//! kept as bytes for the codec crate.

use crate::common::{channel_message, BaseClientMsg, BaseServerMsg, WaitForChannel};
use crate::consts::{msg::display as sm, msgc::display as cm};
use crate::error::Result;
use crate::types::{
    read_image_ptr, write_image_ptr, Brush, Clip, DisplayBase, GlyphString, Image, LineAttr, Path,
    Point, QMask, Rect,
};
use crate::wire::{BodyBuilder, Reader};

/// `ResourceID`: one entry of INVAL_LIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceId {
    /// `resource_type`.
    pub resource_type: u8,
    pub id: u64,
}

/// SPICE_MSG_DISPLAY_STREAM_CREATE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamCreate {
    pub surface_id: u32,
    pub id: u32,
    /// `stream_flags`.
    pub flags: u8,
    /// `video_codec` value.
    pub codec_type: u8,
    pub stamp: u64,
    pub stream_width: u32,
    pub stream_height: u32,
    pub src_width: u32,
    pub src_height: u32,
    pub dest: Rect,
    pub clip: Clip,
}

/// `Head`: one monitor of MONITORS_CONFIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub monitor_id: u32,
    pub surface_id: u32,
    pub width: u32,
    pub height: u32,
    pub x: u32,
    pub y: u32,
    pub flags: u32,
}

/// The body shared by DRAW_COPY and DRAW_BLEND.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyData {
    pub src_bitmap: Option<Box<Image>>,
    pub src_area: Rect,
    /// `ropd` bits.
    pub rop_descriptor: u16,
    /// `image_scale_mode`.
    pub scale_mode: u8,
    pub mask: QMask,
}

impl CopyData {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(CopyData {
            src_bitmap: read_image_ptr(r, "copy src_bitmap")?,
            src_area: Rect::read(r)?,
            rop_descriptor: r.u16("copy rop_descriptor")?,
            scale_mode: r.u8("copy scale_mode")?,
            mask: QMask::read(r)?,
        })
    }
    fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        write_image_ptr(b, &self.src_bitmap);
        self.src_area.write(b);
        b.u16(self.rop_descriptor);
        b.u8(self.scale_mode);
        self.mask.write(b);
    }
}

/// SPICE_MSGC_DISPLAY_STREAM_REPORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamReport {
    pub stream_id: u32,
    pub unique_id: u32,
    pub start_frame_mm_time: u32,
    pub end_frame_mm_time: u32,
    pub num_frames: u32,
    pub num_drops: u32,
    pub last_frame_delay: i32,
    pub audio_delay: u32,
}

/// Server→client display messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayServerMsg {
    Base(BaseServerMsg),
    Mode {
        x_res: u32,
        y_res: u32,
        bits: u32,
    },
    Mark,
    Reset,
    CopyBits {
        base: DisplayBase,
        src_pos: Point,
    },
    /// At most 65535 entries.
    InvalList(Vec<ResourceId>),
    /// At most 255 entries.
    InvalAllPixmaps(Vec<WaitForChannel>),
    InvalPalette {
        id: u64,
    },
    InvalAllPalettes,
    StreamCreate(StreamCreate),
    StreamData {
        id: u32,
        multi_media_time: u32,
        data: Vec<u8>,
    },
    StreamClip {
        id: u32,
        clip: Clip,
    },
    StreamDestroy {
        id: u32,
    },
    StreamDestroyAll,
    DrawFill {
        base: DisplayBase,
        brush: Brush,
        rop_descriptor: u16,
        mask: QMask,
    },
    DrawOpaque {
        base: DisplayBase,
        src_bitmap: Option<Box<Image>>,
        src_area: Rect,
        brush: Brush,
        rop_descriptor: u16,
        scale_mode: u8,
        mask: QMask,
    },
    DrawCopy {
        base: DisplayBase,
        copy: CopyData,
    },
    DrawBlend {
        base: DisplayBase,
        copy: CopyData,
    },
    DrawBlackness {
        base: DisplayBase,
        mask: QMask,
    },
    DrawWhiteness {
        base: DisplayBase,
        mask: QMask,
    },
    DrawInvers {
        base: DisplayBase,
        mask: QMask,
    },
    DrawRop3 {
        base: DisplayBase,
        src_bitmap: Option<Box<Image>>,
        src_area: Rect,
        brush: Brush,
        rop3: u8,
        scale_mode: u8,
        mask: QMask,
    },
    DrawStroke {
        base: DisplayBase,
        path: Path,
        attr: LineAttr,
        brush: Brush,
        fore_mode: u16,
        back_mode: u16,
    },
    DrawText {
        base: DisplayBase,
        text: GlyphString,
        back_area: Rect,
        fore_brush: Brush,
        back_brush: Brush,
        fore_mode: u16,
        back_mode: u16,
    },
    DrawTransparent {
        base: DisplayBase,
        src_bitmap: Option<Box<Image>>,
        src_area: Rect,
        src_color: u32,
        true_color: u32,
    },
    DrawAlphaBlend {
        base: DisplayBase,
        /// `alpha_flags`.
        alpha_flags: u8,
        alpha: u8,
        src_bitmap: Option<Box<Image>>,
        src_area: Rect,
    },
    SurfaceCreate {
        surface_id: u32,
        width: u32,
        height: u32,
        /// `surface_fmt`.
        format: u32,
        /// `surface_flags` (PRIMARY for the screen).
        flags: u32,
    },
    SurfaceDestroy {
        surface_id: u32,
    },
    StreamDataSized {
        id: u32,
        multi_media_time: u32,
        width: u32,
        height: u32,
        dest: Rect,
        data: Vec<u8>,
    },
    MonitorsConfig {
        max_allowed: u16,
        /// At most 65535 entries.
        heads: Vec<Head>,
    },
    StreamActivateReport {
        stream_id: u32,
        unique_id: u32,
        max_window_size: u32,
        timeout_ms: u32,
    },
    GlDraw {
        x: u32,
        y: u32,
        w: u32,
        h: u32,
    },
}

fn read_sized(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<u8>> {
    let n = r.u32(what)?;
    let n = r.check_count(n.into(), 1, what)?;
    r.bytes(n, what)
}

impl DisplayServerMsg {
    fn type_of(&self) -> u16 {
        match self {
            Self::Base(m) => m.msg_type(),
            Self::Mode { .. } => sm::MODE,
            Self::Mark => sm::MARK,
            Self::Reset => sm::RESET,
            Self::CopyBits { .. } => sm::COPY_BITS,
            Self::InvalList(_) => sm::INVAL_LIST,
            Self::InvalAllPixmaps(_) => sm::INVAL_ALL_PIXMAPS,
            Self::InvalPalette { .. } => sm::INVAL_PALETTE,
            Self::InvalAllPalettes => sm::INVAL_ALL_PALETTES,
            Self::StreamCreate(_) => sm::STREAM_CREATE,
            Self::StreamData { .. } => sm::STREAM_DATA,
            Self::StreamClip { .. } => sm::STREAM_CLIP,
            Self::StreamDestroy { .. } => sm::STREAM_DESTROY,
            Self::StreamDestroyAll => sm::STREAM_DESTROY_ALL,
            Self::DrawFill { .. } => sm::DRAW_FILL,
            Self::DrawOpaque { .. } => sm::DRAW_OPAQUE,
            Self::DrawCopy { .. } => sm::DRAW_COPY,
            Self::DrawBlend { .. } => sm::DRAW_BLEND,
            Self::DrawBlackness { .. } => sm::DRAW_BLACKNESS,
            Self::DrawWhiteness { .. } => sm::DRAW_WHITENESS,
            Self::DrawInvers { .. } => sm::DRAW_INVERS,
            Self::DrawRop3 { .. } => sm::DRAW_ROP3,
            Self::DrawStroke { .. } => sm::DRAW_STROKE,
            Self::DrawText { .. } => sm::DRAW_TEXT,
            Self::DrawTransparent { .. } => sm::DRAW_TRANSPARENT,
            Self::DrawAlphaBlend { .. } => sm::DRAW_ALPHA_BLEND,
            Self::SurfaceCreate { .. } => sm::SURFACE_CREATE,
            Self::SurfaceDestroy { .. } => sm::SURFACE_DESTROY,
            Self::StreamDataSized { .. } => sm::STREAM_DATA_SIZED,
            Self::MonitorsConfig { .. } => sm::MONITORS_CONFIG,
            Self::StreamActivateReport { .. } => sm::STREAM_ACTIVATE_REPORT,
            Self::GlDraw { .. } => sm::GL_DRAW,
        }
    }

    fn write<'a>(&'a self, b: &mut BodyBuilder<'a>) {
        match self {
            Self::Base(m) => m.write(b),
            Self::Mode { x_res, y_res, bits } => {
                b.u32(*x_res);
                b.u32(*y_res);
                b.u32(*bits);
            }
            Self::Mark | Self::Reset | Self::InvalAllPalettes | Self::StreamDestroyAll => {}
            Self::CopyBits { base, src_pos } => {
                base.write(b);
                src_pos.write(b);
            }
            Self::InvalList(l) => {
                let n = l.len().min(u16::MAX as usize);
                b.u16(n as u16);
                for res in &l[..n] {
                    b.u8(res.resource_type);
                    b.u64(res.id);
                }
            }
            Self::InvalAllPixmaps(l) => WaitForChannel::write_list(l, b),
            Self::InvalPalette { id } => b.u64(*id),
            Self::StreamCreate(s) => {
                b.u32(s.surface_id);
                b.u32(s.id);
                b.u8(s.flags);
                b.u8(s.codec_type);
                b.u64(s.stamp);
                b.u32(s.stream_width);
                b.u32(s.stream_height);
                b.u32(s.src_width);
                b.u32(s.src_height);
                s.dest.write(b);
                s.clip.write(b);
            }
            Self::StreamData {
                id,
                multi_media_time,
                data,
            } => {
                b.u32(*id);
                b.u32(*multi_media_time);
                b.u32(data.len() as u32);
                b.bytes(data);
            }
            Self::StreamClip { id, clip } => {
                b.u32(*id);
                clip.write(b);
            }
            Self::StreamDestroy { id } => b.u32(*id),
            Self::DrawFill {
                base,
                brush,
                rop_descriptor,
                mask,
            } => {
                base.write(b);
                brush.write(b);
                b.u16(*rop_descriptor);
                mask.write(b);
            }
            Self::DrawOpaque {
                base,
                src_bitmap,
                src_area,
                brush,
                rop_descriptor,
                scale_mode,
                mask,
            } => {
                base.write(b);
                write_image_ptr(b, src_bitmap);
                src_area.write(b);
                brush.write(b);
                b.u16(*rop_descriptor);
                b.u8(*scale_mode);
                mask.write(b);
            }
            Self::DrawCopy { base, copy } | Self::DrawBlend { base, copy } => {
                base.write(b);
                copy.write(b);
            }
            Self::DrawBlackness { base, mask }
            | Self::DrawWhiteness { base, mask }
            | Self::DrawInvers { base, mask } => {
                base.write(b);
                mask.write(b);
            }
            Self::DrawRop3 {
                base,
                src_bitmap,
                src_area,
                brush,
                rop3,
                scale_mode,
                mask,
            } => {
                base.write(b);
                write_image_ptr(b, src_bitmap);
                src_area.write(b);
                brush.write(b);
                b.u8(*rop3);
                b.u8(*scale_mode);
                mask.write(b);
            }
            Self::DrawStroke {
                base,
                path,
                attr,
                brush,
                fore_mode,
                back_mode,
            } => {
                base.write(b);
                b.ptr(move |b| path.write(b));
                attr.write(b);
                brush.write(b);
                b.u16(*fore_mode);
                b.u16(*back_mode);
            }
            Self::DrawText {
                base,
                text,
                back_area,
                fore_brush,
                back_brush,
                fore_mode,
                back_mode,
            } => {
                base.write(b);
                b.ptr(move |b| text.write(b));
                back_area.write(b);
                fore_brush.write(b);
                back_brush.write(b);
                b.u16(*fore_mode);
                b.u16(*back_mode);
            }
            Self::DrawTransparent {
                base,
                src_bitmap,
                src_area,
                src_color,
                true_color,
            } => {
                base.write(b);
                write_image_ptr(b, src_bitmap);
                src_area.write(b);
                b.u32(*src_color);
                b.u32(*true_color);
            }
            Self::DrawAlphaBlend {
                base,
                alpha_flags,
                alpha,
                src_bitmap,
                src_area,
            } => {
                base.write(b);
                b.u8(*alpha_flags);
                b.u8(*alpha);
                write_image_ptr(b, src_bitmap);
                src_area.write(b);
            }
            Self::SurfaceCreate {
                surface_id,
                width,
                height,
                format,
                flags,
            } => {
                for v in [*surface_id, *width, *height, *format, *flags] {
                    b.u32(v);
                }
            }
            Self::SurfaceDestroy { surface_id } => b.u32(*surface_id),
            Self::StreamDataSized {
                id,
                multi_media_time,
                width,
                height,
                dest,
                data,
            } => {
                b.u32(*id);
                b.u32(*multi_media_time);
                b.u32(*width);
                b.u32(*height);
                dest.write(b);
                b.u32(data.len() as u32);
                b.bytes(data);
            }
            Self::MonitorsConfig { max_allowed, heads } => {
                let n = heads.len().min(u16::MAX as usize);
                b.u16(n as u16);
                b.u16(*max_allowed);
                for h in &heads[..n] {
                    for v in [
                        h.monitor_id,
                        h.surface_id,
                        h.width,
                        h.height,
                        h.x,
                        h.y,
                        h.flags,
                    ] {
                        b.u32(v);
                    }
                }
            }
            Self::StreamActivateReport {
                stream_id,
                unique_id,
                max_window_size,
                timeout_ms,
            } => {
                for v in [*stream_id, *unique_id, *max_window_size, *timeout_ms] {
                    b.u32(v);
                }
            }
            Self::GlDraw { x, y, w, h } => {
                for v in [*x, *y, *w, *h] {
                    b.u32(v);
                }
            }
        }
    }

    fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(Some(match t {
            sm::MODE => Self::Mode {
                x_res: r.u32("mode x_res")?,
                y_res: r.u32("mode y_res")?,
                bits: r.u32("mode bits")?,
            },
            sm::MARK => Self::Mark,
            sm::RESET => Self::Reset,
            sm::COPY_BITS => Self::CopyBits {
                base: DisplayBase::read(r)?,
                src_pos: Point::read(r)?,
            },
            sm::INVAL_LIST => {
                let n = r.u16("inval_list count")?;
                Self::InvalList(r.array(n.into(), 9, "inval_list resources", |r| {
                    Ok(ResourceId {
                        resource_type: r.u8("resource type")?,
                        id: r.u64("resource id")?,
                    })
                })?)
            }
            sm::INVAL_ALL_PIXMAPS => Self::InvalAllPixmaps(WaitForChannel::read_list(r)?),
            sm::INVAL_PALETTE => Self::InvalPalette {
                id: r.u64("inval_palette id")?,
            },
            sm::INVAL_ALL_PALETTES => Self::InvalAllPalettes,
            sm::STREAM_CREATE => Self::StreamCreate(StreamCreate {
                surface_id: r.u32("stream_create surface_id")?,
                id: r.u32("stream_create id")?,
                flags: r.u8("stream_create flags")?,
                codec_type: r.u8("stream_create codec_type")?,
                stamp: r.u64("stream_create stamp")?,
                stream_width: r.u32("stream_create stream_width")?,
                stream_height: r.u32("stream_create stream_height")?,
                src_width: r.u32("stream_create src_width")?,
                src_height: r.u32("stream_create src_height")?,
                dest: Rect::read(r)?,
                clip: Clip::read(r)?,
            }),
            sm::STREAM_DATA => Self::StreamData {
                id: r.u32("stream_data id")?,
                multi_media_time: r.u32("stream_data multi_media_time")?,
                data: read_sized(r, "stream_data data")?,
            },
            sm::STREAM_CLIP => Self::StreamClip {
                id: r.u32("stream_clip id")?,
                clip: Clip::read(r)?,
            },
            sm::STREAM_DESTROY => Self::StreamDestroy {
                id: r.u32("stream_destroy id")?,
            },
            sm::STREAM_DESTROY_ALL => Self::StreamDestroyAll,
            sm::DRAW_FILL => Self::DrawFill {
                base: DisplayBase::read(r)?,
                brush: Brush::read(r)?,
                rop_descriptor: r.u16("fill rop_descriptor")?,
                mask: QMask::read(r)?,
            },
            sm::DRAW_OPAQUE => Self::DrawOpaque {
                base: DisplayBase::read(r)?,
                src_bitmap: read_image_ptr(r, "opaque src_bitmap")?,
                src_area: Rect::read(r)?,
                brush: Brush::read(r)?,
                rop_descriptor: r.u16("opaque rop_descriptor")?,
                scale_mode: r.u8("opaque scale_mode")?,
                mask: QMask::read(r)?,
            },
            sm::DRAW_COPY => Self::DrawCopy {
                base: DisplayBase::read(r)?,
                copy: CopyData::read(r)?,
            },
            sm::DRAW_BLEND => Self::DrawBlend {
                base: DisplayBase::read(r)?,
                copy: CopyData::read(r)?,
            },
            sm::DRAW_BLACKNESS => Self::DrawBlackness {
                base: DisplayBase::read(r)?,
                mask: QMask::read(r)?,
            },
            sm::DRAW_WHITENESS => Self::DrawWhiteness {
                base: DisplayBase::read(r)?,
                mask: QMask::read(r)?,
            },
            sm::DRAW_INVERS => Self::DrawInvers {
                base: DisplayBase::read(r)?,
                mask: QMask::read(r)?,
            },
            sm::DRAW_ROP3 => Self::DrawRop3 {
                base: DisplayBase::read(r)?,
                src_bitmap: read_image_ptr(r, "rop3 src_bitmap")?,
                src_area: Rect::read(r)?,
                brush: Brush::read(r)?,
                rop3: r.u8("rop3 rop3")?,
                scale_mode: r.u8("rop3 scale_mode")?,
                mask: QMask::read(r)?,
            },
            sm::DRAW_STROKE => {
                let base = DisplayBase::read(r)?;
                let mut pr = r.ptr_nonnull("stroke path")?;
                Self::DrawStroke {
                    base,
                    path: Path::read(&mut pr)?,
                    attr: LineAttr::read(r)?,
                    brush: Brush::read(r)?,
                    fore_mode: r.u16("stroke fore_mode")?,
                    back_mode: r.u16("stroke back_mode")?,
                }
            }
            sm::DRAW_TEXT => {
                let base = DisplayBase::read(r)?;
                let mut sr = r.ptr_nonnull("text str")?;
                Self::DrawText {
                    base,
                    text: GlyphString::read(&mut sr)?,
                    back_area: Rect::read(r)?,
                    fore_brush: Brush::read(r)?,
                    back_brush: Brush::read(r)?,
                    fore_mode: r.u16("text fore_mode")?,
                    back_mode: r.u16("text back_mode")?,
                }
            }
            sm::DRAW_TRANSPARENT => Self::DrawTransparent {
                base: DisplayBase::read(r)?,
                src_bitmap: read_image_ptr(r, "transparent src_bitmap")?,
                src_area: Rect::read(r)?,
                src_color: r.u32("transparent src_color")?,
                true_color: r.u32("transparent true_color")?,
            },
            sm::DRAW_ALPHA_BLEND => Self::DrawAlphaBlend {
                base: DisplayBase::read(r)?,
                alpha_flags: r.u8("alpha_blend alpha_flags")?,
                alpha: r.u8("alpha_blend alpha")?,
                src_bitmap: read_image_ptr(r, "alpha_blend src_bitmap")?,
                src_area: Rect::read(r)?,
            },
            sm::SURFACE_CREATE => Self::SurfaceCreate {
                surface_id: r.u32("surface_create surface_id")?,
                width: r.u32("surface_create width")?,
                height: r.u32("surface_create height")?,
                format: r.u32("surface_create format")?,
                flags: r.u32("surface_create flags")?,
            },
            sm::SURFACE_DESTROY => Self::SurfaceDestroy {
                surface_id: r.u32("surface_destroy surface_id")?,
            },
            sm::STREAM_DATA_SIZED => Self::StreamDataSized {
                id: r.u32("stream_data_sized id")?,
                multi_media_time: r.u32("stream_data_sized multi_media_time")?,
                width: r.u32("stream_data_sized width")?,
                height: r.u32("stream_data_sized height")?,
                dest: Rect::read(r)?,
                data: read_sized(r, "stream_data_sized data")?,
            },
            sm::MONITORS_CONFIG => {
                let n = r.u16("monitors_config count")?;
                let max_allowed = r.u16("monitors_config max_allowed")?;
                let heads = r.array(n.into(), 28, "monitors_config heads", |r| {
                    Ok(Head {
                        monitor_id: r.u32("head monitor_id")?,
                        surface_id: r.u32("head surface_id")?,
                        width: r.u32("head width")?,
                        height: r.u32("head height")?,
                        x: r.u32("head x")?,
                        y: r.u32("head y")?,
                        flags: r.u32("head flags")?,
                    })
                })?;
                Self::MonitorsConfig { max_allowed, heads }
            }
            sm::STREAM_ACTIVATE_REPORT => Self::StreamActivateReport {
                stream_id: r.u32("stream_activate_report stream_id")?,
                unique_id: r.u32("stream_activate_report unique_id")?,
                max_window_size: r.u32("stream_activate_report max_window_size")?,
                timeout_ms: r.u32("stream_activate_report timeout_ms")?,
            },
            sm::GL_DRAW => Self::GlDraw {
                x: r.u32("gl_draw x")?,
                y: r.u32("gl_draw y")?,
                w: r.u32("gl_draw w")?,
                h: r.u32("gl_draw h")?,
            },
            _ => return Ok(None),
        }))
    }
}

channel_message!(DisplayServerMsg, BaseServerMsg, "display (server)");

/// Client→server display messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayClientMsg {
    Base(BaseClientMsg),
    Init {
        pixmap_cache_id: u8,
        /// In pixels.
        pixmap_cache_size: i64,
        glz_dictionary_id: u8,
        /// In pixels.
        glz_dictionary_window_size: i32,
    },
    StreamReport(StreamReport),
    /// `image_compression` value.
    PreferredCompression(u8),
    GlDrawDone,
    /// `video_codec` values in preference order; at most 255.
    PreferredVideoCodecType(Vec<u8>),
}

impl DisplayClientMsg {
    fn type_of(&self) -> u16 {
        match self {
            Self::Base(m) => m.msg_type(),
            Self::Init { .. } => cm::INIT,
            Self::StreamReport(_) => cm::STREAM_REPORT,
            Self::PreferredCompression(_) => cm::PREFERRED_COMPRESSION,
            Self::GlDrawDone => cm::GL_DRAW_DONE,
            Self::PreferredVideoCodecType(_) => cm::PREFERRED_VIDEO_CODEC_TYPE,
        }
    }

    fn write(&self, b: &mut BodyBuilder<'_>) {
        match self {
            Self::Base(m) => m.write(b),
            Self::Init {
                pixmap_cache_id,
                pixmap_cache_size,
                glz_dictionary_id,
                glz_dictionary_window_size,
            } => {
                b.u8(*pixmap_cache_id);
                b.i64(*pixmap_cache_size);
                b.u8(*glz_dictionary_id);
                b.i32(*glz_dictionary_window_size);
            }
            Self::StreamReport(s) => {
                for v in [
                    s.stream_id,
                    s.unique_id,
                    s.start_frame_mm_time,
                    s.end_frame_mm_time,
                    s.num_frames,
                    s.num_drops,
                ] {
                    b.u32(v);
                }
                b.i32(s.last_frame_delay);
                b.u32(s.audio_delay);
            }
            Self::PreferredCompression(c) => b.u8(*c),
            Self::GlDrawDone => {}
            Self::PreferredVideoCodecType(l) => {
                let n = l.len().min(255);
                b.u8(n as u8);
                b.bytes(&l[..n]);
            }
        }
    }

    fn read(t: u16, r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(Some(match t {
            cm::INIT => Self::Init {
                pixmap_cache_id: r.u8("display init pixmap_cache_id")?,
                pixmap_cache_size: r.i64("display init pixmap_cache_size")?,
                glz_dictionary_id: r.u8("display init glz_dictionary_id")?,
                glz_dictionary_window_size: r.i32("display init glz_dictionary_window_size")?,
            },
            cm::STREAM_REPORT => Self::StreamReport(StreamReport {
                stream_id: r.u32("stream_report stream_id")?,
                unique_id: r.u32("stream_report unique_id")?,
                start_frame_mm_time: r.u32("stream_report start_frame_mm_time")?,
                end_frame_mm_time: r.u32("stream_report end_frame_mm_time")?,
                num_frames: r.u32("stream_report num_frames")?,
                num_drops: r.u32("stream_report num_drops")?,
                last_frame_delay: r.i32("stream_report last_frame_delay")?,
                audio_delay: r.u32("stream_report audio_delay")?,
            }),
            cm::PREFERRED_COMPRESSION => Self::PreferredCompression(r.u8("preferred_compression")?),
            cm::GL_DRAW_DONE => Self::GlDrawDone,
            cm::PREFERRED_VIDEO_CODEC_TYPE => {
                let n = r.u8("preferred_video_codec_type num_of_codecs")?;
                let n = r.check_count(n.into(), 1, "preferred_video_codec_type codecs")?;
                Self::PreferredVideoCodecType(r.bytes(n, "preferred_video_codec_type codecs")?)
            }
            _ => return Ok(None),
        }))
    }
}

channel_message!(DisplayClientMsg, BaseClientMsg, "display (client)");
