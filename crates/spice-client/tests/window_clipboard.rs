//! The viewer shares text between the host clipboard (Xvfb here) and the
//! guest agent: a scripted agent's clipboard appears on the host, and text
//! put on the host clipboard is offered to and fetched by the agent. A
//! window resized by the user asks the agent for that resolution.

#![cfg(feature = "window")]

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake::{accept_link, agent_stream, next_agent_msg, server};
use common::{missing, start_xvfb, ChildGuard};
use spice_client::spice_proto::agent::{cap, clipboard_type, AgentMessage};
use spice_client::spice_proto::consts::{channel, surface_flags, surface_fmt};
use spice_client::spice_proto::link::caps_from_bits;
use spice_client::spice_proto::main_channel::{ChannelId, MainInit};
use spice_client::spice_proto::{DisplayServerMsg, MainClientMsg, MainServerMsg, Message};
use spice_client::viewer::{run_window, ViewerOptions};
use spice_client::ClientConfig;

#[test]
fn clipboard_goes_both_ways_through_the_agent() {
    if let Some(m) = missing(&["Xvfb", "xclip", "xdotool"]) {
        eprintln!("SKIP: {m} is not installed");
        return;
    }
    let (got_tx, got_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let (mon_tx, mon_rx) = std::sync::mpsc::channel::<(u32, u32)>();
    let (port, _srv) = server(None, move |l, cfg| {
        let mut main = accept_link(&l, &cfg).unwrap();
        main.send(&MainServerMsg::Init(MainInit {
            session_id: 7,
            agent_connected: 1,
            agent_tokens: 100,
            supported_mouse_modes: 3,
            current_mouse_mode: 2,
            ..Default::default()
        }));
        main.send(&MainServerMsg::ChannelsList(vec![ChannelId {
            channel_type: channel::DISPLAY,
            id: 0,
        }]));
        // The display channel: a 640×480 screen, served from its own thread.
        let dl = l.try_clone().unwrap();
        let dcfg = cfg.clone();
        std::thread::spawn(move || {
            let mut d = accept_link(&dl, &dcfg).unwrap();
            d.send(&DisplayServerMsg::SurfaceCreate {
                surface_id: 0,
                width: 640,
                height: 480,
                format: surface_fmt::FMT_32_XRGB,
                flags: surface_flags::PRIMARY,
            });
            d.send(&DisplayServerMsg::Mark);
            while d.recv().is_some() {}
        });
        loop {
            let (t, body) = main.recv().unwrap();
            if MainClientMsg::decode(t, &body).unwrap() == MainClientMsg::AgentStart(u32::MAX) {
                break;
            }
        }
        let mut data = agent_stream(&AgentMessage::AnnounceCapabilities {
            request: false,
            caps: caps_from_bits(&[cap::CLIPBOARD_BY_DEMAND, cap::MONITORS_CONFIG]),
        });
        data.extend(agent_stream(&AgentMessage::ClipboardGrab {
            selection: None,
            serial: None,
            types: vec![clipboard_type::UTF8_TEXT],
        }));
        main.send(&MainServerMsg::AgentData(data));
        loop {
            match next_agent_msg(&mut main) {
                AgentMessage::ClipboardRequest { .. } => {
                    main.send(&MainServerMsg::AgentData(agent_stream(
                        &AgentMessage::Clipboard {
                            selection: None,
                            clip_type: clipboard_type::UTF8_TEXT,
                            data: b"from guest".to_vec(),
                        },
                    )));
                    break;
                }
                _ => continue,
            }
        }
        // The host side grabs later; fetch its text like a guest would.
        loop {
            match next_agent_msg(&mut main) {
                AgentMessage::ClipboardGrab { .. } => {
                    main.send(&MainServerMsg::AgentData(agent_stream(
                        &AgentMessage::ClipboardRequest {
                            selection: None,
                            clip_type: clipboard_type::UTF8_TEXT,
                        },
                    )));
                }
                AgentMessage::Clipboard { data, .. } => {
                    let _ = got_tx.send(data);
                    break;
                }
                _ => {}
            }
        }
        // A window resized by the user becomes a monitor configuration.
        loop {
            if let AgentMessage::MonitorsConfig { monitors, .. } = next_agent_msg(&mut main) {
                let _ = mon_tx.send((monitors[0].width, monitors[0].height));
                break;
            }
        }
        while main.recv().is_some() {}
    });
    let (_xvfb, vdisp) = start_xvfb(6);
    // winit and arboard find the X server through DISPLAY.
    std::env::set_var("DISPLAY", format!(":{vdisp}"));
    let quit = Arc::new(AtomicBool::new(false));
    let q2 = quit.clone();
    let viewer = std::thread::spawn(move || {
        run_window(
            ClientConfig::new("127.0.0.1", port),
            ViewerOptions {
                title: "coop-view-clipboard-test".into(),
                any_thread: true,
                quit: Some(q2),
            },
        )
    });
    let xclip_out = || {
        let o = Command::new("xclip")
            .env("DISPLAY", format!(":{vdisp}"))
            .args(["-o", "-selection", "clipboard"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let t = Instant::now();
    let mut host = String::new();
    while t.elapsed() < Duration::from_secs(10) {
        host = xclip_out();
        if host == "from guest" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut xclip = Command::new("xclip")
        .env("DISPLAY", format!(":{vdisp}"))
        .args(["-quiet", "-i", "-selection", "clipboard"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = xclip.stdin.take().unwrap();
        stdin.write_all(b"from host").unwrap();
    }
    let _xclip = ChildGuard(xclip);
    let got = got_rx.recv_timeout(Duration::from_secs(10));
    let o = Command::new("xdotool")
        .env("DISPLAY", format!(":{vdisp}"))
        .args(["search", "--name", "coop-view-clipboard-test"])
        .output()
        .unwrap();
    let win = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    Command::new("xdotool")
        .env("DISPLAY", format!(":{vdisp}"))
        .args(["windowsize", &win, "800", "600"])
        .status()
        .unwrap();
    let mon = mon_rx.recv_timeout(Duration::from_secs(10));
    quit.store(true, Ordering::Relaxed);
    let r = viewer.join().unwrap();
    assert_eq!(host, "from guest");
    assert_eq!(got.as_deref(), Ok(&b"from host"[..]));
    assert_eq!(mon, Ok((800, 600)), "resize did not reach the agent");
    assert!(r.is_ok(), "{r:?}");
}
