//! Display paths an X server does not exercise (moved areas, resizes, KEY_SCANCODE),
//! driven through an in-memory source.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use spice_proto::consts::{channel, msg};
use spice_proto::InputsClientMsg;
use spice_server::coop_display::{Rect, SourceEvent};

fn fill(s: &mut FakeState, r: Rect, bgrx: [u8; 4]) {
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            let o = ((y * s.w + x) * 4) as usize;
            s.px[o..o + 4].copy_from_slice(&bgrx);
        }
    }
}

/// Reads display messages into `canvas` until it equals the source's pixels.
async fn sync(disp: &mut Client, canvas: &mut Canvas, st: &Arc<Mutex<FakeState>>) -> Vec<u16> {
    let mut types = Vec::new();
    let t0 = Instant::now();
    loop {
        {
            let s = st.lock().unwrap();
            if canvas.w == s.w
                && canvas.h == s.h
                && canvas
                    .px
                    .chunks(4)
                    .zip(s.px.chunks(4))
                    .all(|(a, b)| a[..3] == b[..3])
            {
                return types;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "canvas never matched the source"
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(100), disp.recv()).await {
            let m = m.expect("display closed");
            if m.msg_type != msg::display::MARK {
                types.push(m.msg_type);
            }
            canvas.apply(&m);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_rect_damage_and_resize_reach_the_client() {
    let st = FakeState::shared(200, 100, 0x10);
    {
        let mut s = st.lock().unwrap();
        fill(&mut s, Rect::new(10, 10, 30, 20), [0, 0, 255, 0]);
    }
    let srv = start_server_with(Box::new(FakeSource(st.clone())), no_auth()).await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut disp = link_channel(addr, sid, channel::DISPLAY).await;
    let mut canvas = Canvas::new();
    let t = sync(&mut disp, &mut canvas, &st).await;
    assert!(t.contains(&msg::display::SURFACE_CREATE));
    // The first frame ends with MARK.
    disp.expect(msg::display::MARK).await;

    // A moved area with nothing else pending becomes COPY_BITS.
    {
        let mut s = st.lock().unwrap();
        let src = Rect::new(10, 10, 30, 20);
        let block: Vec<u8> = (0..20u32)
            .flat_map(|y| {
                let o = (((10 + y) * 200 + 10) * 4) as usize;
                s.px[o..o + 120].to_vec()
            })
            .collect();
        for y in 0..20u32 {
            let o = (((50 + y) * 200 + 120) * 4) as usize;
            s.px[o..o + 120].copy_from_slice(&block[(y * 120) as usize..((y + 1) * 120) as usize]);
        }
        s.events.push(SourceEvent::CopyRect {
            src,
            dst_x: 120,
            dst_y: 50,
        });
    }
    let t = sync(&mut disp, &mut canvas, &st).await;
    assert_eq!(
        t,
        vec![msg::display::COPY_BITS],
        "a clean move is one COPY_BITS"
    );

    // Damage becomes DRAW_COPY of the damaged area.
    {
        let mut s = st.lock().unwrap();
        fill(&mut s, Rect::new(150, 5, 40, 30), [0, 200, 0, 0]);
        s.events
            .push(SourceEvent::Damage(vec![Rect::new(150, 5, 40, 30)]));
    }
    let t = sync(&mut disp, &mut canvas, &st).await;
    assert!(
        t.iter().all(|&m| m == msg::display::DRAW_COPY) && !t.is_empty(),
        "{t:?}"
    );
    assert!(canvas.draws >= 2);

    // A resize recreates the surface at the new size.
    {
        let mut s = st.lock().unwrap();
        s.w = 120;
        s.h = 90;
        s.px = vec![0x77; 120 * 90 * 4];
        s.events.push(SourceEvent::Resized {
            width: 120,
            height: 90,
        });
    }
    let t = sync(&mut disp, &mut canvas, &st).await;
    assert!(t.contains(&msg::display::SURFACE_DESTROY), "{t:?}");
    assert_eq!((canvas.w, canvas.h), (120, 90));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_scancode_bytes_become_key_events() {
    let st = FakeState::shared(16, 16, 0);
    let srv = start_server_with(Box::new(FakeSource(st.clone())), no_auth()).await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut inputs = link_channel(addr, sid, channel::INPUTS).await;
    inputs.expect(msg::inputs::INIT).await;
    // 'a' down/up, then Right Ctrl (E0 1D) down/up split across two messages.
    inputs
        .send(&InputsClientMsg::KeyScancode(vec![0x1e, 0x9e, 0xe0]))
        .await;
    inputs
        .send(&InputsClientMsg::KeyScancode(vec![0x1d, 0xe0, 0x9d]))
        .await;
    inputs.send(&InputsClientMsg::KeyDown(0x2c)).await;
    let t0 = Instant::now();
    while st.lock().unwrap().keys.len() < 5 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        st.lock().unwrap().keys,
        vec![
            (0x1e, true),
            (0x1e, false),
            (0x11d, true),
            (0x11d, false),
            (0x2c, true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_at_two_ack_windows_and_resumes_on_ack() {
    use spice_proto::BaseClientMsg;
    let st = FakeState::shared(64, 64, 0x10);
    let srv = start_server_with(Box::new(FakeSource(st.clone())), no_auth()).await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut disp = link_channel(addr, sid, channel::DISPLAY).await;
    disp.auto_ack = false;
    // Keep the source busy: a damaged pixel every 5 ms for the whole test.
    let feeder_st = st.clone();
    let feeder = tokio::spawn(async move {
        for i in 0u32.. {
            {
                let mut s = feeder_st.lock().unwrap();
                let x = i % 64;
                fill(&mut s, Rect::new(x, 0, 1, 1), [i as u8, 0, 0, 0]);
                s.events
                    .push(SourceEvent::Damage(vec![Rect::new(x, 0, 1, 1)]));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Without ACKs the server sends SET_ACK (window 20) and then at most 2 windows + 1.
    let mut after_set_ack = 0;
    let mut generation = None;
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), disp.recv_raw()).await {
            Ok(Some(m)) => {
                if m.msg_type == msg::base::SET_ACK {
                    let b = &m.body;
                    generation = Some(u32::from_le_bytes(b[0..4].try_into().unwrap()));
                    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 20);
                } else {
                    after_set_ack += 1;
                }
            }
            Ok(None) => panic!("display closed"),
            Err(_) => break,
        }
    }
    let generation = generation.expect("no SET_ACK");
    eprintln!("messages after SET_ACK without ACKs: {after_set_ack}");
    // spice-server's rule: stop once more than two windows are unacknowledged.
    assert_eq!(after_set_ack, 2 * 20 + 1, "messages sent without an ACK");
    // ACKing releases the stream.
    disp.send(&BaseClientMsg::AckSync { generation }).await;
    for _ in 0..3 {
        disp.send(&BaseClientMsg::Ack).await;
    }
    let more = tokio::time::timeout(Duration::from_secs(5), disp.recv_raw())
        .await
        .expect("no messages after ACKs");
    assert!(more.is_some());
    feeder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_capped_at_max_fps() {
    let st = FakeState::shared(32, 32, 0x10);
    let mut cfg = no_auth();
    cfg.max_fps = 10;
    let srv = start_server_with(Box::new(FakeSource(st.clone())), cfg).await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut disp = link_channel(addr, sid, channel::DISPLAY).await;
    disp.expect(msg::display::MARK).await;
    // The same pixel changes every 2 ms: one DRAW_COPY per update.
    let feeder_st = st.clone();
    let feeder = tokio::spawn(async move {
        for i in 0u32.. {
            {
                let mut s = feeder_st.lock().unwrap();
                fill(&mut s, Rect::new(5, 5, 1, 1), [i as u8, 1, 2, 0]);
                s.events
                    .push(SourceEvent::Damage(vec![Rect::new(5, 5, 1, 1)]));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let t0 = Instant::now();
    let mut draws = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), disp.recv()).await {
            if m.msg_type == msg::display::DRAW_COPY {
                draws += 1;
            }
        }
    }
    feeder.abort();
    eprintln!("{draws} updates in 2 s at max_fps 10");
    assert!(
        (5..=22).contains(&draws),
        "{draws} updates in 2 s at max_fps 10"
    );
}
