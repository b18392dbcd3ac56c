//! Server features against a real X server through a spice-proto client: damage
//! updates, a stalled client, the built-in agent (clipboard, resize), cursor, pointer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spice_proto::agent::{self, AgentCaps, AgentMessage, AgentReassembler, MonConfig};
use spice_proto::consts::{channel, cursor_flags, cursor_type, msg};
use spice_proto::{
    CursorServerMsg, InputsClientMsg, MainClientMsg, MainServerMsg, Message, RawMessage,
};

/// Follows the display channel until the canvas equals the X screen (or panics).
async fn follow_until_equal(
    x: &Xvfb,
    disp: &mut Client,
    canvas: &mut Canvas,
    dir: &std::path::Path,
) {
    let t0 = Instant::now();
    let mut last_check = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "client canvas never matched the X screen"
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), disp.recv()).await {
            canvas.apply(&m.expect("display channel closed"));
        }
        if last_check.elapsed() > Duration::from_millis(300) {
            last_check = Instant::now();
            let (w, h, want) = tokio::task::block_in_place(|| x.reference(dir));
            if (w, h) == (canvas.w, canvas.h) && diff_pixels(&canvas.rgb(), &want) == 0 {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_updates_keep_client_in_sync_and_stalled_client_blocks_only_itself() {
    if skip_without(&["Xvfb", "xsetroot", "xterm", "import", "xdotool"]) {
        return;
    }
    let dir = tempdir();
    let mut x = Xvfb::start(640, 480);
    assert!(x.run("xsetroot", &["-solid", "#204060"]));
    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;

    // A client that links a display channel and then never reads nor ACKs.
    let stalled = link(tcp(addr).await, sid, channel::DISPLAY, "")
        .await
        .unwrap();

    let mut disp = link(tcp(addr).await, sid, channel::DISPLAY, "")
        .await
        .unwrap();
    let mut canvas = Canvas::new();
    loop {
        let m = disp.recv().await.expect("display closed");
        canvas.apply(&m);
        if m.msg_type == msg::display::MARK {
            break;
        }
    }
    follow_until_equal(&x, &mut disp, &mut canvas, dir.path()).await;
    let first_draws = canvas.draws;

    // Lots of changes: background flips and a terminal printing.
    x.spawn(
        "xterm",
        &[
            "-geometry",
            "50x12+30+30",
            "-T",
            "dmg",
            "-e",
            "sh",
            "-c",
            "for i in $(seq 1 200); do echo line $i; done; sleep 600",
        ],
    );
    for c in ["#ff0000", "#00ff00", "#0000ff", "#336699", "#996633"] {
        assert!(x.run("xsetroot", &["-solid", c]));
    }
    assert!(x.wait_window("dmg"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    follow_until_equal(&x, &mut disp, &mut canvas, dir.path()).await;
    assert!(
        canvas.draws > first_draws,
        "no incremental updates were sent"
    );
    // The stalled client is still connected: its own queue is what waits.
    assert!(srv.stats.stats().connections >= 3);
    drop(stalled);
}

fn agent_data(m: &AgentMessage) -> MainClientMsg {
    let mut v = Vec::new();
    m.encode_with_header(&mut v);
    assert!(v.len() <= agent::MAX_DATA_SIZE);
    MainClientMsg::AgentData(v)
}

/// Reads main-channel messages until the agent stream yields a message matching `want`.
async fn agent_expect(
    main: &mut Client,
    reasm: &mut AgentReassembler,
    want: impl Fn(&AgentMessage) -> bool,
) -> AgentMessage {
    let f = async {
        loop {
            while let Some((h, data)) = reasm.next_message().expect("agent stream") {
                let m = AgentMessage::decode(h.msg_type, &data, AgentCaps::default())
                    .expect("agent msg");
                if want(&m) {
                    return m;
                }
            }
            let raw: RawMessage = main.recv().await.expect("main closed");
            if let Ok(MainServerMsg::AgentData(d)) = MainServerMsg::decode(raw.msg_type, &raw.body)
            {
                reasm.push(&d);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("agent message never came")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_clipboard_both_ways_and_monitor_resize() {
    if skip_without(&["Xvfb", "xclip", "xdpyinfo"]) {
        return;
    }
    let mut x = Xvfb::start(800, 600);
    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();
    let (mut main, sid) = session(tcp(addr).await, "").await;
    main.send(&MainClientMsg::AgentStart(20)).await;
    let mut reasm = AgentReassembler::new(1 << 20);
    agent_expect(&mut main, &mut reasm, |m| {
        matches!(m, AgentMessage::AnnounceCapabilities { request: true, .. })
    })
    .await;
    let caps = spice_proto::link::caps_from_bits(&[
        agent::cap::MONITORS_CONFIG,
        agent::cap::REPLY,
        agent::cap::CLIPBOARD_BY_DEMAND,
    ]);
    main.send(&agent_data(&AgentMessage::AnnounceCapabilities {
        request: false,
        caps,
    }))
    .await;

    // Client → X: grab, the server asks for the text, we send it, X has it.
    main.send(&agent_data(&AgentMessage::ClipboardGrab {
        selection: None,
        serial: None,
        types: vec![agent::clipboard_type::UTF8_TEXT],
    }))
    .await;
    agent_expect(&mut main, &mut reasm, |m| {
        matches!(m, AgentMessage::ClipboardRequest { clip_type, .. } if *clip_type == agent::clipboard_type::UTF8_TEXT)
    })
    .await;
    main.send(&agent_data(&AgentMessage::Clipboard {
        selection: None,
        clip_type: agent::clipboard_type::UTF8_TEXT,
        data: "from spice ✓".as_bytes().to_vec(),
    }))
    .await;
    let t0 = Instant::now();
    let mut got = String::new();
    while t0.elapsed() < Duration::from_secs(10) {
        let o = std::process::Command::new("xclip")
            .args(["-o", "-selection", "clipboard"])
            .env("DISPLAY", &x.name)
            .output()
            .unwrap();
        got = String::from_utf8_lossy(&o.stdout).to_string();
        if got == "from spice ✓" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        got, "from spice ✓",
        "X clipboard did not get the client's text"
    );

    // X → client: a new owner; the server grabs, we request, we get the text.
    let mut xc = std::process::Command::new("xclip")
        .args(["-i", "-selection", "clipboard", "-quiet"])
        .env("DISPLAY", &x.name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = xc.stdin.take().unwrap();
        stdin.write_all(b"from x").unwrap();
    }
    x.children.push(Proc(xc));
    agent_expect(&mut main, &mut reasm, |m| {
        matches!(m, AgentMessage::ClipboardGrab { types, .. } if types.contains(&agent::clipboard_type::UTF8_TEXT))
    })
    .await;
    main.send(&agent_data(&AgentMessage::ClipboardRequest {
        selection: None,
        clip_type: agent::clipboard_type::UTF8_TEXT,
    }))
    .await;
    let m = agent_expect(&mut main, &mut reasm, |m| {
        matches!(m, AgentMessage::Clipboard { .. })
    })
    .await;
    let AgentMessage::Clipboard { data, .. } = m else {
        unreachable!()
    };
    assert_eq!(data, b"from x");

    // Monitor config: the screen is resized and the display channel follows.
    let mut disp = link(tcp(addr).await, sid, channel::DISPLAY, "")
        .await
        .unwrap();
    disp.expect(msg::display::MARK).await;
    main.send(&agent_data(&AgentMessage::MonitorsConfig {
        flags: 0,
        monitors: vec![MonConfig {
            width: 640,
            height: 480,
            depth: 32,
            x: 0,
            y: 0,
        }],
        physical_sizes: None,
    }))
    .await;
    let reply = agent_expect(&mut main, &mut reasm, |m| {
        matches!(m, AgentMessage::Reply { .. })
    })
    .await;
    let AgentMessage::Reply { msg_type, error } = reply else {
        unreachable!()
    };
    assert_eq!(msg_type, agent::msg::MONITORS_CONFIG);
    if error != agent::SUCCESS {
        eprintln!("SKIP (resize part): this X server refused the resize");
        return;
    }
    let f = async {
        loop {
            let m = disp.expect(msg::display::SURFACE_CREATE).await;
            let d = spice_proto::DisplayServerMsg::decode(m.msg_type, &m.body).unwrap();
            if let spice_proto::DisplayServerMsg::SurfaceCreate { width, height, .. } = d {
                if (width, height) == (640, 480) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("display never showed the new size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_shape_and_pointer_position() {
    if skip_without(&["Xvfb", "xterm", "xdotool", "xdpyinfo"]) {
        return;
    }
    let mut x = Xvfb::start(640, 480);
    // Cursors of disconnected clients cannot be read back (X SECURITY); an xterm
    // stays connected and has its own text cursor.
    x.spawn("xterm", &["-geometry", "20x5+400+300", "-T", "curterm"]);
    assert!(x.wait_window("curterm"));
    assert!(x.run("xdotool", &["mousemove", "100", "100"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();
    let (mut main, sid) = session(tcp(addr).await, "").await;
    let mut cur = link(tcp(addr).await, sid, channel::CURSOR, "")
        .await
        .unwrap();
    let m = cur.expect(msg::cursor::INIT).await;
    let CursorServerMsg::Init { cursor, .. } =
        CursorServerMsg::decode(m.msg_type, &m.body).unwrap()
    else {
        unreachable!()
    };
    let root_unique = cursor.header.map(|h| {
        assert_eq!(h.cursor_type, cursor_type::ALPHA);
        assert_eq!(cursor.data.len(), h.width as usize * h.height as usize * 4);
        h.unique
    });
    let set = |m: RawMessage| {
        let CursorServerMsg::Set { cursor, .. } =
            CursorServerMsg::decode(m.msg_type, &m.body).unwrap()
        else {
            unreachable!()
        };
        cursor
    };
    // Over the xterm: a new shape, sent with its image and marked for the client's cache.
    assert!(x.run("xdotool", &["mousemove", "450", "330"]));
    let cursor = set(cur.expect(msg::cursor::SET).await);
    let h = cursor.header.expect("cursor header");
    assert_eq!(h.cursor_type, cursor_type::ALPHA);
    assert_ne!(cursor.flags & cursor_flags::CACHE_ME, 0);
    assert_eq!(cursor.data.len(), h.width as usize * h.height as usize * 4);
    // Back over the root: the client already has that shape, so only its id is sent.
    assert!(x.run("xdotool", &["mousemove", "100", "100"]));
    let cursor = set(cur.expect(msg::cursor::SET).await);
    if let Some(u) = root_unique {
        assert_eq!(cursor.header.map(|h| h.unique), Some(u));
        assert_ne!(cursor.flags & cursor_flags::FROM_CACHE, 0);
        assert!(cursor.data.is_empty());
    }

    // Client mouse mode: MOUSE_POSITION moves the X pointer.
    let mut inputs = link(tcp(addr).await, sid, channel::INPUTS, "")
        .await
        .unwrap();
    inputs.expect(msg::inputs::INIT).await;
    inputs
        .send(&InputsClientMsg::MousePosition {
            x: 123,
            y: 77,
            buttons_state: 0,
            display_id: 0,
        })
        .await;
    let t0 = Instant::now();
    let mut loc = String::new();
    while t0.elapsed() < Duration::from_secs(5) {
        let o = std::process::Command::new("xdotool")
            .arg("getmouselocation")
            .env("DISPLAY", &x.name)
            .output()
            .unwrap();
        loc = String::from_utf8_lossy(&o.stdout).to_string();
        if loc.starts_with("x:123 y:77") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(loc.starts_with("x:123 y:77"), "pointer at {loc}");

    // Server mouse mode: relative motion moves it, and the cursor channel follows.
    main.send(&MainClientMsg::MouseModeRequest(1)).await;
    let m = main.expect(msg::main::MOUSE_MODE).await;
    let MainServerMsg::MouseMode { current, .. } =
        MainServerMsg::decode(m.msg_type, &m.body).unwrap()
    else {
        unreachable!()
    };
    assert_eq!(current, 1);
    inputs
        .send(&InputsClientMsg::MouseMotion {
            dx: 10,
            dy: 5,
            buttons_state: 0,
        })
        .await;
    let f = async {
        loop {
            let m = cur.expect(msg::cursor::MOVE).await;
            if let CursorServerMsg::Move { position } =
                CursorServerMsg::decode(m.msg_type, &m.body).unwrap()
            {
                if (position.x, position.y) == (133, 82) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("no cursor MOVE to the new position");
}
