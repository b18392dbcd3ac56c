//! 50 connect/disconnect cycles leave no fds, tasks or sessions behind. Its own test
//! binary so no other test's processes and pipes change the fd count meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spice_proto::consts::{channel, msg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_cycles_leak_nothing() {
    if skip_without(&["Xvfb", "xdpyinfo"]) {
        return;
    }
    let x = Xvfb::start(320, 240);
    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();
    let settle = |srv: &TestServer| {
        let st = srv.stats.clone();
        async move {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                let s = st.stats();
                if s.connections == 0 && s.sessions == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("connections did not wind down: {:?}", st.stats());
        }
    };
    // Warm up once so lazily created runtime threads and fds are counted in the baseline.
    {
        let (_m, sid) = session(tcp(addr).await, "").await;
        let mut d = link_channel(addr, sid, channel::DISPLAY).await;
        d.expect(msg::display::MARK).await;
    }
    settle(&srv).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds0 = open_fds();
    let tasks0 = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    for i in 0..50 {
        let (main, sid) = session(tcp(addr).await, "").await;
        let mut d = link_channel(addr, sid, channel::DISPLAY).await;
        let mut c = link_channel(addr, sid, channel::CURSOR).await;
        let mut inp = link_channel(addr, sid, channel::INPUTS).await;
        c.expect(msg::cursor::INIT).await;
        inp.expect(msg::inputs::INIT).await;
        if i % 2 == 0 {
            d.expect(msg::display::MARK).await;
        }
        // Half the time the main channel goes first (its session's channels must follow).
        if i % 3 == 0 {
            drop(main);
            drop(d);
        } else {
            drop(d);
            drop(main);
        }
        drop(c);
        drop(inp);
        // And a client that stops mid-link.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"REDQ")
            .await
            .unwrap();
        drop(s);
    }
    settle(&srv).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds1 = open_fds();
    let tasks1 = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    eprintln!("open fds before {fds0}, after 50 cycles {fds1}; tokio tasks {tasks0} -> {tasks1}");
    assert!(tasks1 <= tasks0, "tasks grew from {tasks0} to {tasks1}");
    assert!(fds1 <= fds0 + 2, "fds grew from {fds0} to {fds1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_server_closes_its_clients() {
    if skip_without(&["Xvfb", "xdpyinfo"]) {
        return;
    }
    let x = Xvfb::start(320, 240);
    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();
    let (mut main, sid) = session(tcp(addr).await, "").await;
    let mut d = link_channel(addr, sid, channel::DISPLAY).await;
    d.expect(msg::display::MARK).await;
    let stats = srv.stats.clone();
    drop(srv);
    for c in [&mut main, &mut d] {
        let eof = tokio::time::timeout(Duration::from_secs(5), async {
            while c.recv().await.is_some() {}
        })
        .await;
        assert!(
            eof.is_ok(),
            "a client stayed connected after the server stopped"
        );
    }
    let t0 = Instant::now();
    while stats.stats().connections > 0 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.stats().connections, 0);
}
