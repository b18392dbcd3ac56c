//! Interop with a real SPICE client: spice-gtk's `spicy-screenshot` links to a
//! tiny server built from this crate (LinkServer, Framer, typed messages),
//! receives MAIN INIT / CHANNELS_LIST, links the display channel, and writes
//! the 4x4 bitmap we draw with DRAW_COPY to a PPM. Every message it sends us
//! must decode with our client-message decoders.
//! Skipped (with a printed reason) when spicy-screenshot is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spice_proto::consts::{
    bitmap_flags, bitmap_fmt, channel, mouse_mode, ropd, surface_flags, surface_fmt, LinkErr,
};
use spice_proto::display::CopyData;
use spice_proto::framing::{write_message, Framer, HeaderKind};
use spice_proto::link::{LinkServer, LinkServerConfig, LinkStatus};
use spice_proto::main_channel::{ChannelId, MainInit};
use spice_proto::types::*;
use spice_proto::*;

const SPICY: &str = "/usr/bin/spicy-screenshot";
const SESSION: u32 = 0x5eed;

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Seen {
    links: Vec<LinkStatus>,
    client_msgs: Vec<(u8, String)>,
    decode_errors: Vec<String>,
}

fn pixel(x: u32, y: u32) -> [u8; 3] {
    [(x * 60) as u8, (y * 60) as u8, 0x80 + (x + y) as u8]
}

fn send(s: &mut TcpStream, kind: HeaderKind, m: &impl Message) {
    let mut out = Vec::new();
    write_message(kind, 0, m.msg_type(), &m.to_body(), &mut out);
    let _ = s.write_all(&out);
}

fn link(s: &mut TcpStream, cfg: Arc<LinkServerConfig>) -> (LinkStatus, Vec<u8>) {
    let mut ls = LinkServer::new(cfg);
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return (ls.status().clone(), Vec::new()),
            Ok(n) => n,
        };
        let mut out = Vec::new();
        let st = ls.feed(&buf[..n], &mut out);
        let _ = s.write_all(&out);
        if st != LinkStatus::InProgress {
            return (st, ls.take_remaining());
        }
    }
}

fn handle(mut s: TcpStream, cfg: Arc<LinkServerConfig>, seen: Arc<Mutex<Seen>>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (st, rest) = link(&mut s, cfg);
    seen.lock().unwrap().links.push(st.clone());
    let LinkStatus::Linked(info) = st else { return };
    let kind = HeaderKind::from_mini(info.mini_header);
    match info.channel_type {
        channel::MAIN => send(
            &mut s,
            kind,
            &MainServerMsg::Init(MainInit {
                session_id: SESSION,
                display_channels_hint: 1,
                supported_mouse_modes: mouse_mode::SERVER.into(),
                current_mouse_mode: mouse_mode::SERVER.into(),
                agent_connected: 0,
                agent_tokens: 0,
                multi_media_time: 0,
                ram_hint: 0,
            }),
        ),
        channel::DISPLAY => {
            send(
                &mut s,
                kind,
                &DisplayServerMsg::SurfaceCreate {
                    surface_id: 0,
                    width: 4,
                    height: 4,
                    format: surface_fmt::FMT_32_XRGB,
                    flags: surface_flags::PRIMARY,
                },
            );
            let mut data = Vec::new();
            for y in 0..4 {
                for x in 0..4 {
                    let [r, g, b] = pixel(x, y);
                    data.extend_from_slice(&[b, g, r, 0]);
                }
            }
            let full = Rect::new(0, 0, 4, 4);
            send(
                &mut s,
                kind,
                &DisplayServerMsg::DrawCopy {
                    base: DisplayBase {
                        surface_id: 0,
                        bbox: full,
                        clip: Clip::None,
                    },
                    copy: CopyData {
                        src_bitmap: Some(Box::new(Image {
                            id: 1,
                            flags: 0,
                            width: 4,
                            height: 4,
                            data: ImageData::Bitmap(Bitmap {
                                format: bitmap_fmt::BIT32,
                                flags: bitmap_flags::TOP_DOWN,
                                width: 4,
                                height: 4,
                                stride: 16,
                                palette: None,
                                data,
                            }),
                        })),
                        src_area: full,
                        rop_descriptor: ropd::OP_PUT,
                        scale_mode: 0,
                        mask: QMask::default(),
                    },
                },
            );
        }
        _ => {}
    }
    let mut framer = Framer::new(kind, 1 << 20);
    framer.push(&rest);
    let mut buf = [0u8; 4096];
    loop {
        while let Ok(Some(raw)) = framer.next_message() {
            let decoded = match info.channel_type {
                channel::MAIN => MainClientMsg::decode(raw.msg_type, &raw.body).map(|m| {
                    if m == MainClientMsg::AttachChannels {
                        send(
                            &mut s,
                            kind,
                            &MainServerMsg::ChannelsList(vec![ChannelId {
                                channel_type: channel::DISPLAY,
                                id: 0,
                            }]),
                        );
                    }
                    format!("{m:?}")
                }),
                channel::DISPLAY => {
                    DisplayClientMsg::decode(raw.msg_type, &raw.body).map(|m| format!("{m:?}"))
                }
                _ => Ok(String::new()),
            };
            let mut seen = seen.lock().unwrap();
            match decoded {
                Ok(d) => seen.client_msgs.push((info.channel_type, d)),
                Err(e) => seen.decode_errors.push(format!(
                    "type {} on {}: {e}",
                    raw.msg_type, info.channel_type
                )),
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => framer.push(&buf[..n]),
        }
    }
}

/// The PPM spicy-screenshot wrote (if any) and what the server saw.
type SpicyRun = (Option<Vec<u8>>, Arc<Mutex<Seen>>);

/// Runs spicy-screenshot against our server.
fn run_spicy(server_pw: &str, client_pw: &str) -> Option<SpicyRun> {
    if !Path::new(SPICY).exists() {
        eprintln!("SKIP: {SPICY} not installed (package spice-client-gtk)");
        return None;
    }
    let key = spice_proto::ticket::generate_key().unwrap();
    let cfg = Arc::new(LinkServerConfig::new(key, Some(server_pw.to_string())));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir =
        std::env::temp_dir().join(format!("spice-proto-interop-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("shot.ppm");
    let mut child = KillOnDrop(
        Command::new(SPICY)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-w",
                client_pw,
                "-o",
            ])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn spicy-screenshot"),
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut threads = Vec::new();
    loop {
        if let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(false).unwrap();
            let (cfg, seen) = (cfg.clone(), seen.clone());
            threads.push(std::thread::spawn(move || handle(s, cfg, seen)));
        }
        if let Ok(Some(_)) = child.0.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("spicy-screenshot did not exit within 20 s");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(child);
    for t in threads {
        let _ = t.join();
    }
    let ppm = std::fs::read(&out).ok();
    let _ = std::fs::remove_dir_all(&dir);
    Some((ppm, seen))
}

#[test]
fn spicy_screenshot_links_and_draws() {
    let Some((ppm, seen)) = run_spicy("pw", "pw") else {
        return;
    };
    let seen = seen.lock().unwrap();
    eprintln!("links: {:?}", seen.links);
    eprintln!("client messages: {:?}", seen.client_msgs);
    assert!(seen.decode_errors.is_empty(), "{:?}", seen.decode_errors);
    assert!(
        seen.links.len() >= 2,
        "main and display links: {:?}",
        seen.links
    );
    for l in &seen.links {
        let LinkStatus::Linked(i) = l else {
            panic!("link failed: {l:?}")
        };
        assert!(i.mini_header, "spice-gtk announces MINI_HEADER");
        assert!(i.auth_selection);
    }
    let display = seen
        .links
        .iter()
        .find_map(|l| match l {
            LinkStatus::Linked(i) if i.channel_type == channel::DISPLAY => Some(i.clone()),
            _ => None,
        })
        .expect("display link");
    assert_eq!(display.connection_id, SESSION);
    assert!(seen
        .client_msgs
        .iter()
        .any(|(c, m)| *c == channel::MAIN && m == "AttachChannels"));
    assert!(seen
        .client_msgs
        .iter()
        .any(|(c, m)| *c == channel::DISPLAY && m.starts_with("Init {")));

    let ppm = ppm.expect("spicy-screenshot wrote no PPM");
    let header = b"P6\n4 4\n255\n";
    assert_eq!(&ppm[..header.len()], header);
    let px = &ppm[header.len()..];
    assert_eq!(px.len(), 48);
    for y in 0..4 {
        for x in 0..4 {
            let i = ((y * 4 + x) * 3) as usize;
            assert_eq!(&px[i..i + 3], &pixel(x, y), "pixel {x},{y}");
        }
    }
}

#[test]
fn spicy_screenshot_wrong_password_denied() {
    let Some((ppm, seen)) = run_spicy("pw", "wrong") else {
        return;
    };
    let seen = seen.lock().unwrap();
    assert!(ppm.is_none());
    assert_eq!(
        seen.links.first(),
        Some(&LinkStatus::Failed(LinkErr::PERMISSION_DENIED))
    );
}
