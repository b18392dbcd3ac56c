//! Against scripted servers on loopback: a correct session with draw
//! commands, compressed images and an M-JPEG stream; and hostile or broken
//! servers (garbage after the link, truncation, unknown messages, silence,
//! a refused password), which must end in a clear error, never a hang.

use std::io::Write;
use std::time::{Duration, Instant};

use spice_client::spice_proto::common::Message;
use spice_client::spice_proto::consts::{
    channel as chan, image_compression, ropd, stream_flags, surface_flags, surface_fmt, video_codec,
};
use spice_client::spice_proto::display::{CopyData, StreamCreate};
use spice_client::spice_proto::framing::write_message;
use spice_client::spice_proto::link::caps_from_bits;
use spice_client::spice_proto::main_channel::{ChannelId, MainInit};
use spice_client::spice_proto::types::{Brush, Clip, DisplayBase, Image, ImageData, QMask, Rect};
use spice_client::spice_proto::{DisplayServerMsg, MainClientMsg, MainServerMsg};
use spice_client::{capture, CaptureOptions, ClientConfig, ClientError, Session};

mod common;
use common::fake::{accept_link, agent_stream, next_agent_msg, server};

fn init() -> MainServerMsg {
    MainServerMsg::Init(MainInit {
        session_id: 0x1234,
        display_channels_hint: 1,
        supported_mouse_modes: 1,
        current_mouse_mode: 1,
        ..Default::default()
    })
}

fn cfg(port: u16) -> ClientConfig {
    let mut c = ClientConfig::new("127.0.0.1", port);
    c.timeout = Duration::from_secs(2);
    c.all_channels = false;
    c
}

fn opts() -> CaptureOptions {
    CaptureOptions {
        quiet: Duration::from_millis(150),
        settle: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        lossy_quiet: None,
    }
}

fn base(l: i32, t: i32, r: i32, b: i32) -> DisplayBase {
    DisplayBase {
        surface_id: 0,
        bbox: Rect::new(l, t, r, b),
        clip: Clip::None,
    }
}

#[test]
fn scripted_session_draws_the_expected_picture() {
    let (port, h) = server(None, |l, cfg| {
        let mut main = accept_link(&l, &cfg).unwrap();
        main.send(&init());
        // Wait for ATTACH_CHANNELS before announcing the display channel.
        loop {
            let (t, body) = main.recv().unwrap();
            if let Ok(MainClientMsg::AttachChannels) = MainClientMsg::decode(t, &body) {
                break;
            }
        }
        main.send(&MainServerMsg::ChannelsList(vec![ChannelId {
            channel_type: chan::DISPLAY,
            id: 0,
        }]));
        let mut d = accept_link(&l, &cfg).unwrap();
        assert_eq!(d.info.connection_id, 0x1234);
        assert_eq!(d.info.channel_type, chan::DISPLAY);
        // The client asks for LZ4, then sends INIT.
        let (t, body) = d.recv().unwrap();
        let m = spice_client::spice_proto::DisplayClientMsg::decode(t, &body).unwrap();
        assert_eq!(
            m,
            spice_client::spice_proto::DisplayClientMsg::PreferredCompression(
                image_compression::LZ4
            )
        );
        d.send(&DisplayServerMsg::SurfaceCreate {
            surface_id: 0,
            width: 64,
            height: 32,
            format: surface_fmt::FMT_32_XRGB,
            flags: surface_flags::PRIMARY,
        });
        d.send(&DisplayServerMsg::DrawFill {
            base: base(0, 0, 64, 32),
            brush: Brush::Solid(0x0020_4080),
            rop_descriptor: ropd::OP_PUT,
            mask: QMask::default(),
        });
        // An LZ RGB32 image, cached, then drawn again from the cache.
        let px: Vec<u8> = (0..16 * 8u32)
            .flat_map(|i| (i * 0x010203).to_le_bytes())
            .collect();
        let lz = spice_codecs::lz::encode(
            &spice_codecs::ImageRef {
                width: 16,
                height: 8,
                stride: 64,
                data: &px,
            },
            spice_codecs::lz::LzImageType::Rgb32,
        )
        .unwrap();
        let img = |data| {
            Some(Box::new(Image {
                id: 42,
                flags: spice_client::spice_proto::consts::image_flags::CACHE_ME,
                width: 16,
                height: 8,
                data,
            }))
        };
        let copy = |b: DisplayBase, src| DisplayServerMsg::DrawCopy {
            base: b,
            copy: CopyData {
                src_bitmap: src,
                src_area: Rect::new(0, 0, 16, 8),
                rop_descriptor: ropd::OP_PUT,
                scale_mode: 1,
                mask: QMask::default(),
            },
        };
        d.send(&copy(base(0, 0, 16, 8), img(ImageData::LzRgb(lz))));
        d.send(&copy(base(16, 0, 32, 8), img(ImageData::FromCache)));
        d.send(&DisplayServerMsg::Mark);
        // A one-frame M-JPEG stream into (32, 8)-(48, 24).
        let frame = vec![0x80u8; 16 * 16 * 4];
        let jpg = spice_codecs::jpeg::encode(
            &spice_codecs::ImageRef {
                width: 16,
                height: 16,
                stride: 64,
                data: &frame,
            },
            90,
        )
        .unwrap();
        d.send(&DisplayServerMsg::StreamCreate(StreamCreate {
            surface_id: 0,
            id: 3,
            flags: stream_flags::TOP_DOWN,
            codec_type: video_codec::MJPEG,
            stream_width: 16,
            stream_height: 16,
            src_width: 16,
            src_height: 16,
            dest: Rect::new(32, 8, 48, 24),
            clip: Clip::None,
            ..Default::default()
        }));
        d.send(&DisplayServerMsg::StreamData {
            id: 3,
            multi_media_time: 0,
            data: jpg,
        });
        // Keep the sockets open until the client is done.
        while d.recv().is_some() {}
        drop(main);
    });
    let mut c = cfg(port);
    c.preferred_compression = Some(image_compression::LZ4);
    let shot = capture(c, &opts()).unwrap();
    let s = &shot.screen;
    assert_eq!((s.width, s.height), (64, 32));
    assert_eq!(s.get(63, 31) & 0xffffff, 0x204080);
    for (x, y) in [(0u32, 0u32), (5, 3), (15, 7)] {
        let want = ((y * 16 + x) * 0x010203) & 0xffffff;
        assert_eq!(s.get(x, y) & 0xffffff, want, "LZ pixel ({x},{y})");
        assert_eq!(s.get(x + 16, y) & 0xffffff, want, "cached pixel ({x},{y})");
    }
    let p = s.get(40, 16);
    for sh in [0, 8, 16] {
        let c = (p >> sh) & 0xff;
        assert!((0x78..=0x88).contains(&c), "stream pixel {p:#x}");
    }
    assert!(shot
        .stats
        .iter()
        .any(|c| c.name == "display" && c.received > 0));
    drop(h);
}

fn expect_error(port: u16, within: Duration) -> ClientError {
    let t = Instant::now();
    let r = capture(cfg(port), &opts());
    assert!(t.elapsed() < within, "took {:?}", t.elapsed());
    match r {
        Ok(_) => panic!("a broken server gave a picture"),
        Err(e) => e,
    }
}

#[test]
fn garbage_after_the_link_is_a_clean_error() {
    let (port, _h) = server(None, |l, cfg| {
        let mut p = accept_link(&l, &cfg).unwrap();
        // A mini header announcing 3 GB, then noise.
        let mut junk = vec![0x42, 0x00, 0xff, 0xff, 0xff, 0xbf];
        junk.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let _ = p.s.write_all(&junk);
        std::thread::sleep(Duration::from_secs(3));
    });
    let e = expect_error(port, Duration::from_secs(3));
    assert!(e.to_string().contains("malformed data"), "{e}");
}

#[test]
fn unknown_message_type_is_a_clean_error() {
    let (port, _h) = server(None, |l, cfg| {
        let mut p = accept_link(&l, &cfg).unwrap();
        let mut out = Vec::new();
        write_message(p.kind, 1, 999, &[1, 2, 3], &mut out);
        let _ = p.s.write_all(&out);
        std::thread::sleep(Duration::from_secs(3));
    });
    let e = expect_error(port, Duration::from_secs(3));
    assert!(e.to_string().contains("unknown message type 999"), "{e}");
}

#[test]
fn truncated_message_then_close_is_a_clean_error() {
    let (port, _h) = server(None, |l, cfg| {
        let mut p = accept_link(&l, &cfg).unwrap();
        let mut out = Vec::new();
        write_message(p.kind, 1, 103, &[0; 32], &mut out);
        out.truncate(20);
        let _ = p.s.write_all(&out);
    });
    let e = expect_error(port, Duration::from_secs(3));
    assert!(matches!(e, ClientError::Disconnected { .. }), "{e:?}");
    assert!(e.to_string().contains("closed the connection"), "{e}");
}

#[test]
fn silent_server_times_out() {
    let (port, _h) = server(None, |l, cfg| {
        let _p = accept_link(&l, &cfg).unwrap();
        std::thread::sleep(Duration::from_secs(4));
    });
    let e = expect_error(port, Duration::from_secs(4));
    assert!(matches!(e, ClientError::Timeout { .. }), "{e:?}");
}

#[test]
fn bad_image_on_the_display_is_a_clean_error() {
    let (port, _h) = server(None, |l, cfg| {
        let mut main = accept_link(&l, &cfg).unwrap();
        main.send(&init());
        main.send(&MainServerMsg::ChannelsList(vec![ChannelId {
            channel_type: chan::DISPLAY,
            id: 0,
        }]));
        let mut d = accept_link(&l, &cfg).unwrap();
        d.send(&DisplayServerMsg::SurfaceCreate {
            surface_id: 0,
            width: 8,
            height: 8,
            format: surface_fmt::FMT_32_XRGB,
            flags: surface_flags::PRIMARY,
        });
        d.send(&DisplayServerMsg::DrawCopy {
            base: base(0, 0, 8, 8),
            copy: CopyData {
                src_bitmap: Some(Box::new(Image {
                    id: 7,
                    flags: 0,
                    width: 8,
                    height: 8,
                    data: ImageData::Quic(vec![0x51, 0x55, 0x49, 0x43, 1, 2, 3]),
                })),
                src_area: Rect::new(0, 0, 8, 8),
                rop_descriptor: ropd::OP_PUT,
                scale_mode: 1,
                mask: QMask::default(),
            },
        });
        std::thread::sleep(Duration::from_secs(3));
        drop(main);
    });
    let e = expect_error(port, Duration::from_secs(3));
    assert!(
        e.to_string().contains("cannot decode image 0x7 (QUIC)"),
        "{e}"
    );
}

#[tokio::test]
async fn refused_password_is_an_authentication_failure() {
    let (port, _h) = server(Some("right"), |l, cfg| {
        let _ = accept_link(&l, &cfg);
    });
    let mut c = cfg(port);
    c.password = "wrong".into();
    let e = match Session::connect(c).await {
        Ok(_) => panic!("wrong password accepted"),
        Err(e) => e,
    };
    assert!(e.is_auth_failure(), "{e:?}");
    assert!(e.to_string().starts_with("authentication failed"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_clipboard_and_monitors_config() {
    use spice_client::spice_proto::agent::{cap, clipboard_type, AgentMessage, MonConfig};
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (port, _h) = server(None, move |l, cfg| {
        let mut main = accept_link(&l, &cfg).unwrap();
        main.send(&MainServerMsg::Init(MainInit {
            session_id: 1,
            agent_connected: 1,
            agent_tokens: 10,
            supported_mouse_modes: 1,
            current_mouse_mode: 1,
            ..Default::default()
        }));
        let (t, body) = main.recv().unwrap();
        assert_eq!(
            MainClientMsg::decode(t, &body).unwrap(),
            MainClientMsg::AgentStart(u32::MAX)
        );
        assert!(matches!(
            next_agent_msg(&mut main),
            AgentMessage::AnnounceCapabilities { request: true, .. }
        ));
        let mut data = agent_stream(&AgentMessage::AnnounceCapabilities {
            request: false,
            caps: caps_from_bits(&[cap::MONITORS_CONFIG, cap::CLIPBOARD_BY_DEMAND]),
        });
        data.extend(agent_stream(&AgentMessage::ClipboardGrab {
            selection: None,
            serial: None,
            types: vec![clipboard_type::UTF8_TEXT],
        }));
        main.send(&MainServerMsg::AgentData(data));
        assert_eq!(
            next_agent_msg(&mut main),
            AgentMessage::ClipboardRequest {
                selection: None,
                clip_type: clipboard_type::UTF8_TEXT
            }
        );
        main.send(&MainServerMsg::AgentData(agent_stream(
            &AgentMessage::Clipboard {
                selection: None,
                clip_type: clipboard_type::UTF8_TEXT,
                data: b"from guest".to_vec(),
            },
        )));
        assert_eq!(
            next_agent_msg(&mut main),
            AgentMessage::MonitorsConfig {
                flags: 0,
                monitors: vec![MonConfig {
                    width: 800,
                    height: 600,
                    depth: 32,
                    x: 0,
                    y: 0
                }],
                physical_sizes: None
            }
        );
        assert!(matches!(
            next_agent_msg(&mut main),
            AgentMessage::ClipboardGrab { .. }
        ));
        main.send(&MainServerMsg::AgentData(agent_stream(
            &AgentMessage::ClipboardRequest {
                selection: None,
                clip_type: clipboard_type::UTF8_TEXT,
            },
        )));
        assert_eq!(
            next_agent_msg(&mut main),
            AgentMessage::Clipboard {
                selection: None,
                clip_type: clipboard_type::UTF8_TEXT,
                data: b"from host".to_vec()
            }
        );
        done_tx.send(()).unwrap();
        while main.recv().is_some() {}
    });
    let mut c = cfg(port);
    c.timeout = Duration::from_secs(5);
    let s = Session::connect(c).await.unwrap();
    let t = Instant::now();
    while s.guest_clipboard().is_none() && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.guest_clipboard().as_deref(), Some("from guest"));
    assert!(s.agent_connected());
    s.set_guest_resolution(800, 600).await.unwrap();
    s.set_clipboard_text("from host".into()).await.unwrap();
    let ok = tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(
        ok.is_ok(),
        "the fake agent did not see the expected messages"
    );
    assert!(s.error().is_none(), "{:?}", s.error());
}

#[test]
fn pings_forever_without_init_time_out() {
    let (port, _h) = server(None, |l, cfg| {
        let mut p = accept_link(&l, &cfg).unwrap();
        for id in 0..100 {
            p.send(&spice_client::spice_proto::BaseServerMsg::Ping {
                id,
                timestamp: 0,
                data: Vec::new(),
            });
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let e = expect_error(port, Duration::from_secs(4));
    assert!(matches!(e, ClientError::Timeout { .. }), "{e:?}");
}

/// Two display channels share the GLZ window: an image on channel 1 that
/// refers to one channel 0 has not delivered yet waits for it, then draws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glz_image_waits_for_the_other_display_channel() {
    use spice_codecs::lz::LzImageType;
    let px: Vec<u8> = (0..32 * 32u32)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 8).to_le_bytes())
        .collect();
    let img = spice_codecs::ImageRef {
        width: 32,
        height: 32,
        stride: 128,
        data: &px,
    };
    let mut enc = spice_codecs::glz::Encoder::new(1 << 20);
    let (a, _) = enc.encode(&img, LzImageType::Rgb32).unwrap();
    let (b, _) = enc.encode(&img, LzImageType::Rgb32).unwrap();
    assert!(
        b.len() * 4 < a.len(),
        "the second image should refer to the first"
    );
    let (port, _h) = server(None, move |l, cfg| {
        let mut main = accept_link(&l, &cfg).unwrap();
        main.send(&init());
        main.send(&MainServerMsg::ChannelsList(vec![
            ChannelId {
                channel_type: chan::DISPLAY,
                id: 0,
            },
            ChannelId {
                channel_type: chan::DISPLAY,
                id: 1,
            },
        ]));
        let mut threads = Vec::new();
        for _ in 0..2 {
            let mut d = accept_link(&l, &cfg).unwrap();
            let (a, b) = (a.clone(), b.clone());
            threads.push(std::thread::spawn(move || {
                let first = d.info.channel_id == 0;
                if first {
                    // Channel 0 is late with the image channel 1 refers to.
                    std::thread::sleep(Duration::from_millis(700));
                }
                d.send(&DisplayServerMsg::SurfaceCreate {
                    surface_id: 0,
                    width: 32,
                    height: 32,
                    format: surface_fmt::FMT_32_XRGB,
                    flags: surface_flags::PRIMARY,
                });
                d.send(&DisplayServerMsg::DrawCopy {
                    base: base(0, 0, 32, 32),
                    copy: CopyData {
                        src_bitmap: Some(Box::new(Image {
                            id: if first { 100 } else { 101 },
                            flags: 0,
                            width: 32,
                            height: 32,
                            data: ImageData::GlzRgb(if first { a } else { b }),
                        })),
                        src_area: Rect::new(0, 0, 32, 32),
                        rop_descriptor: ropd::OP_PUT,
                        scale_mode: 1,
                        mask: QMask::default(),
                    },
                });
                d.send(&DisplayServerMsg::Mark);
                while d.recv().is_some() {}
            }));
        }
        while main.recv().is_some() {}
        drop(threads);
    });
    let start = Instant::now();
    let s = Session::connect(cfg(port)).await.unwrap();
    let want: Vec<u32> = px
        .chunks_exact(4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
        .collect();
    let masked = |p: Option<spice_client::Pixmap>| {
        p.map(|p| p.data.iter().map(|v| v & 0xffffff).collect::<Vec<u32>>())
    };
    let mut second = None;
    while start.elapsed() < Duration::from_secs(5) {
        if let Some(e) = s.error() {
            panic!("session failed: {e}");
        }
        let got = masked(s.extra_screen(1));
        if got.as_ref() == Some(&want) {
            second = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = second.expect("the second head never showed the GLZ image");
    assert!(
        second >= Duration::from_millis(600),
        "drawn after {second:?}: did not wait"
    );
    s.wait_display_complete(
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(masked(s.screen()), Some(want));
    assert_eq!(s.extra_display_ids(), vec![1]);
}
