//! Interop with a real SPICE server: LinkClient links to Xspice (spice-server
//! 0.15) with a password, then every main and display message the server
//! sends for its first frame must decode with our server-message decoders.
//! Skipped (with a printed reason) when Xspice or its peer config is missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spice_proto::consts::{caps, channel, surface_flags, LinkErr};
use spice_proto::framing::{write_message, Framer, HeaderKind};
use spice_proto::link::{caps_from_bits, LinkClient, LinkClientConfig, LinkStatus};
use spice_proto::types::ImageData;
use spice_proto::*;

const XSPICE: &str = "/usr/bin/Xspice";
/// The Xspice config that works on these machines (shared/peers/xspice.conf); the test
/// command exports its path, beside the checkout.
fn peer_conf() -> String {
    std::env::var("COOP_XSPICE_CONF").unwrap_or_else(|_| "/work/shared/peers/xspice.conf".into())
}

/// Xspice is a wrapper that starts Xorg; both live in their own process group,
/// which is terminated by its id on drop.
struct XspiceGuard {
    child: Child,
    dir: PathBuf,
}

impl Drop for XspiceGuard {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_xspice(password: &str) -> Option<(XspiceGuard, u16)> {
    if !Path::new(XSPICE).exists() || !Path::new(&peer_conf()).exists() {
        eprintln!("SKIP: {XSPICE} or {} missing", peer_conf());
        return None;
    }
    let port = free_port();
    let display = (0..50)
        .map(|i| 150 + (std::process::id() as u16 % 200) + i)
        .find(|d| !Path::new(&format!("/tmp/.X{d}-lock")).exists())?;
    let dir =
        std::env::temp_dir().join(format!("spice-proto-xspice-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = std::fs::read_to_string(peer_conf())
        .unwrap()
        .replace(
            "Option \"SpiceDisableTicketing\" \"True\"",
            "Option \"SpiceDisableTicketing\" \"False\"",
        )
        .replace(
            "#Option \"SpicePassword\" \"\"",
            &format!("Option \"SpicePassword\" \"{password}\""),
        )
        .replace(
            "Option \"SpicePort\" \"5912\"",
            &format!("Option \"SpicePort\" \"{port}\""),
        );
    let conf_path = dir.join("xspice.conf");
    std::fs::write(&conf_path, conf).unwrap();
    use std::os::unix::process::CommandExt;
    let child = Command::new(XSPICE)
        .arg("--config")
        .arg(&conf_path)
        .arg(format!(":{display}"))
        .env("XSPICE_LOG", dir.join("xspice.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    let guard = XspiceGuard { child, dir };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((guard, port));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("SKIP: Xspice did not listen on port {port} within 15 s");
    None
}

fn link(port: u16, cfg: LinkClientConfig) -> (TcpStream, LinkStatus, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = LinkClient::new(cfg).unwrap();
    let mut out = Vec::new();
    c.start(&mut out);
    s.write_all(&out).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed during link");
        let mut out = Vec::new();
        let st = c.feed(&buf[..n], &mut out).unwrap();
        s.write_all(&out).unwrap();
        if st != LinkStatus::InProgress {
            return (s, st, c.take_remaining());
        }
    }
}

/// Reads messages until `done` says stop or time runs out, answering SET_ACK
/// and PING like a client must so the server keeps sending.
fn pump<M: Message + std::fmt::Debug>(
    s: &mut TcpStream,
    kind: HeaderKind,
    first: Vec<u8>,
    base_of: impl Fn(&M) -> Option<&BaseServerMsg>,
    mut on_msg: impl FnMut(&M, &mut TcpStream) -> bool,
) {
    let mut f = Framer::new(kind, 8 << 20);
    f.push(&first);
    let mut window = 0u32;
    let mut count = 0u32;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = vec![0u8; 65536];
    let send = |s: &mut TcpStream, m: &BaseClientMsg| {
        let mut out = Vec::new();
        write_message(kind, 0, m.msg_type(), &m.to_body(), &mut out);
        s.write_all(&out).unwrap();
    };
    loop {
        while let Some(raw) = f.next_message().unwrap() {
            let m = M::decode(raw.msg_type, &raw.body).unwrap_or_else(|e| {
                panic!(
                    "type {} ({} bytes) failed to decode: {e}",
                    raw.msg_type,
                    raw.body.len()
                )
            });
            match base_of(&m) {
                Some(BaseServerMsg::SetAck {
                    generation,
                    window: w,
                }) => {
                    window = *w;
                    send(
                        s,
                        &BaseClientMsg::AckSync {
                            generation: *generation,
                        },
                    );
                }
                Some(BaseServerMsg::Ping { id, timestamp, .. }) => send(
                    s,
                    &BaseClientMsg::Pong {
                        id: *id,
                        timestamp: *timestamp,
                    },
                ),
                _ => {}
            }
            count += 1;
            if window > 0 && count >= window {
                count = 0;
                send(s, &BaseClientMsg::Ack);
            }
            if !on_msg(&m, s) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for messages");
        let n = s.read(&mut buf).expect("read from Xspice");
        assert!(n > 0, "Xspice closed the connection");
        f.push(&buf[..n]);
    }
}

#[test]
fn xspice_link_and_first_frame_decode() {
    let Some((_guard, port)) = start_xspice("s3cret") else {
        return;
    };

    // Wrong password first: spice-server answers PERMISSION_DENIED.
    let (_s, st, _) = link(port, LinkClientConfig::new(0, channel::MAIN, 0, "nope"));
    assert_eq!(st, LinkStatus::Failed(LinkErr::PERMISSION_DENIED));

    let mut cfg = LinkClientConfig::new(0, channel::MAIN, 0, "s3cret");
    cfg.channel_caps = caps_from_bits(&[
        caps::main::NAME_AND_UUID,
        caps::main::AGENT_CONNECTED_TOKENS,
    ]);
    let (mut main, st, rest) = link(port, cfg);
    let LinkStatus::Linked(info) = st else {
        panic!("main link: {st:?}")
    };
    assert!(info.mini_header, "spice-server announces MINI_HEADER");
    let kind = HeaderKind::Mini;

    let mut session = None;
    let mut seen_main = Vec::new();
    pump::<MainServerMsg>(
        &mut main,
        kind,
        rest,
        |m| match m {
            MainServerMsg::Base(b) => Some(b),
            _ => None,
        },
        |m, s| {
            seen_main.push(m.msg_type());
            match m {
                MainServerMsg::Init(i) => {
                    session = Some(i.session_id);
                    let mut out = Vec::new();
                    let a = MainClientMsg::AttachChannels;
                    write_message(kind, 0, a.msg_type(), &a.to_body(), &mut out);
                    s.write_all(&out).unwrap();
                    true
                }
                MainServerMsg::ChannelsList(l) => {
                    assert!(l
                        .iter()
                        .any(|c| c.channel_type == channel::DISPLAY && c.id == 0));
                    false
                }
                _ => true,
            }
        },
    );
    let session = session.expect("MAIN INIT");

    let mut dcfg = LinkClientConfig::new(session, channel::DISPLAY, 0, "s3cret");
    dcfg.channel_caps = caps_from_bits(&[
        caps::display::SIZED_STREAM,
        caps::display::MONITORS_CONFIG,
        caps::display::STREAM_REPORT,
        caps::display::LZ4_COMPRESSION,
        caps::display::PREF_COMPRESSION,
        caps::display::MULTI_CODEC,
        caps::display::CODEC_MJPEG,
    ]);
    let (mut disp, st, rest) = link(port, dcfg);
    assert!(matches!(st, LinkStatus::Linked(_)), "display link: {st:?}");
    let init = DisplayClientMsg::Init {
        pixmap_cache_id: 1,
        pixmap_cache_size: 20 << 20,
        glz_dictionary_id: 1,
        glz_dictionary_window_size: 3 << 20,
    };
    let mut out = Vec::new();
    write_message(kind, 0, init.msg_type(), &init.to_body(), &mut out);
    disp.write_all(&out).unwrap();

    let mut primary = None;
    let mut draws = 0;
    let mut image_types = Vec::new();
    pump::<DisplayServerMsg>(
        &mut disp,
        kind,
        rest,
        |m| match m {
            DisplayServerMsg::Base(b) => Some(b),
            _ => None,
        },
        |m, _| {
            match m {
                DisplayServerMsg::SurfaceCreate {
                    width,
                    height,
                    flags,
                    ..
                } if flags & surface_flags::PRIMARY != 0 => primary = Some((*width, *height)),
                DisplayServerMsg::DrawCopy { copy, .. } => {
                    draws += 1;
                    if let Some(img) = &copy.src_bitmap {
                        image_types.push(img.data.image_type());
                        if let ImageData::Bitmap(b) = &img.data {
                            assert_eq!(b.data.len(), (b.stride * b.height) as usize);
                        }
                    }
                }
                DisplayServerMsg::DrawFill { .. } => draws += 1,
                _ => {}
            }
            // The first frame is complete once a draw after the primary surface arrived
            // and a MARK was seen, or after enough draws.
            !(primary.is_some() && (matches!(m, DisplayServerMsg::Mark) || draws >= 4))
        },
    );
    eprintln!("main message types: {seen_main:?}");
    assert!(seen_main.contains(&spice_proto::consts::msg::main::INIT));
    eprintln!("primary {primary:?}, {draws} draws, image types {image_types:?}");
    assert_eq!(primary, Some((1024, 768)));

    // Cursor and inputs channels: their INIT messages must decode too.
    let (mut cur, st, rest) = link(
        port,
        LinkClientConfig::new(session, channel::CURSOR, 0, "s3cret"),
    );
    assert!(matches!(st, LinkStatus::Linked(_)), "cursor link: {st:?}");
    let mut cursor_init = None;
    pump::<CursorServerMsg>(
        &mut cur,
        kind,
        rest,
        |m| match m {
            CursorServerMsg::Base(b) => Some(b),
            _ => None,
        },
        |m, _| {
            if let CursorServerMsg::Init { cursor, .. } = m {
                cursor_init = Some(cursor.clone());
                return false;
            }
            true
        },
    );
    let cursor_init = cursor_init.expect("CURSOR INIT");
    eprintln!(
        "cursor init: flags {:#x}, header {:?}, {} data bytes",
        cursor_init.flags,
        cursor_init.header,
        cursor_init.data.len()
    );

    let (mut inp, st, rest) = link(
        port,
        LinkClientConfig::new(session, channel::INPUTS, 0, "s3cret"),
    );
    assert!(matches!(st, LinkStatus::Linked(_)), "inputs link: {st:?}");
    let mut inputs_init = false;
    pump::<InputsServerMsg>(
        &mut inp,
        kind,
        rest,
        |m| match m {
            InputsServerMsg::Base(b) => Some(b),
            _ => None,
        },
        |m, _| {
            inputs_init = matches!(m, InputsServerMsg::Init { .. });
            !inputs_init
        },
    );
    assert!(inputs_init);
}
