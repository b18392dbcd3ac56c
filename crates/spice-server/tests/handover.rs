//! Hand-over with real peers: remote-viewer and our own client, linked to server A,
//! are told to move to server B (MIGRATE_SWITCH_HOST, or semi-seamless migration
//! with MIGRATE_BEGIN/END) and end up on B's screen.
//!
//! Xvfb picks its displays and the servers bind port 0: no fixed numbers.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{link, skip_without, tcp, Xvfb};
use spice_server::{ControlHandle, HandoverTarget, Server, Ticketing};

struct Running {
    port: u16,
    control: ControlHandle,
    task: tokio::task::JoinHandle<Result<(), spice_server::ServerError>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(display: &str, ticketing: Ticketing) -> Running {
    let src = spice_server::coop_display::X11Source::connect(display).expect("X11Source");
    let cfg = spice_server::Config {
        port: Some(0),
        ticketing,
        name: format!("so-handover {display}"),
        ..Default::default()
    };
    let server = Server::bind(cfg, Box::new(src)).await.expect("bind");
    Running {
        port: server.plain_addr().expect("plain port").port(),
        control: server.control_handle(),
        task: tokio::spawn(server.run()),
    }
}

/// Two X servers of `w`×`h` with solid roots `a_hex` and `b_hex`, each served without a
/// password: (A's X, B's X, A, B).
async fn two_servers(w: u32, h: u32, a_hex: &str, b_hex: &str) -> (Xvfb, Xvfb, Running, Running) {
    let a_x = Xvfb::start(w, h);
    let b_x = Xvfb::start(w, h);
    assert!(a_x.run("xsetroot", &["-solid", a_hex]));
    assert!(b_x.run("xsetroot", &["-solid", b_hex]));
    let a = serve(&a_x.name, Ticketing::Disabled).await;
    let b = serve(&b_x.name, Ticketing::Disabled).await;
    (a_x, b_x, a, b)
}

/// A plain-port hand-over target on this host.
fn target(port: u16) -> HandoverTarget {
    HandoverTarget {
        host: "127.0.0.1".into(),
        port,
        tls_port: 0,
        cert_subject: None,
    }
}

/// Waits (up to `limit`) until servers `a` and `b` hold `na` and `nb` sessions.
async fn wait_sessions(limit: Duration, a: &Running, na: usize, b: &Running, nb: usize) -> bool {
    wait_for(limit, || {
        a.control.stats().sessions == na && b.control.stats().sessions == nb
    })
    .await
}

/// Asserts that remote-viewer's channels (at least 3) moved from port `from` to `to`
/// within 10 s (ss).
async fn assert_viewer_moved(from: u16, to: u16) {
    assert!(
        wait_for(Duration::from_secs(10), || connections_of(
            "remote-viewer",
            to
        ) >= 3
            && connections_of("remote-viewer", from) == 0)
        .await,
        "ss: remote-viewer has {} connections to the target and {} to the source",
        connections_of("remote-viewer", to),
        connections_of("remote-viewer", from)
    );
}

/// Waits until `f` holds, up to `limit`.
async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

/// Share of the screen's pixels that are `rgb` (0xRRGGBB).
fn share_of(s: &spice_client::Session, rgb: u32) -> f64 {
    let Some(p) = s.screen() else { return 0.0 };
    let n = p.data.iter().filter(|&&px| px & 0xff_ffff == rgb).count();
    n as f64 / p.data.len().max(1) as f64
}

/// Established TCP connections of processes named `comm` to 127.0.0.1:`port`.
fn connections_of(comm: &str, port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            // With a state filter ss prints: Recv-Q Send-Q Local Peer Process.
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(3) == Some(&format!("127.0.0.1:{port}").as_str())
                && l.contains(&format!("((\"{comm}\""))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_viewer_and_our_client_follow_a_handover_to_another_server() {
    if skip_without(&[
        "Xvfb",
        "xdpyinfo",
        "xsetroot",
        "remote-viewer",
        "xdotool",
        "ss",
    ]) {
        return;
    }
    let (_a_x, _b_x, a, b) = two_servers(640, 480, "#cc3311", "#22aa55").await;

    // Our client on A sees A's colour.
    let mut cfg = spice_client::ClientConfig::new("127.0.0.1", a.port);
    cfg.all_channels = true;
    let ours = spice_client::Session::connect(cfg)
        .await
        .expect("connect to A");
    ours.wait_display_complete(
        Duration::from_millis(300),
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .await
    .expect("A's picture");
    assert!(
        share_of(&ours, 0xcc3311) > 0.9,
        "our client does not show A's colour"
    );

    // remote-viewer on A too.
    let mut viewer_x = Xvfb::start(1024, 768);
    viewer_x.spawn("remote-viewer", &[&format!("spice://127.0.0.1:{}", a.port)]);
    assert!(
        wait_for(Duration::from_secs(20), || a.control.stats().sessions == 2).await,
        "remote-viewer did not link to A (A has {} sessions)",
        a.control.stats().sessions
    );
    assert!(
        wait_for(Duration::from_secs(10), || connections_of(
            "remote-viewer",
            a.port
        ) >= 3)
        .await,
        "ss does not show remote-viewer's channels to A"
    );

    let t0 = Instant::now();
    let told = a.control.handover(target(b.port)).expect("handover");
    assert_eq!(told, 2, "both sessions were told to switch");

    // Both clients leave A for B by themselves, before A's grace period would close them.
    assert!(
        wait_sessions(Duration::from_secs(4), &a, 0, &b, 2).await,
        "after the hand-over A has {} sessions and B {} (want 0 and 2)",
        a.control.stats().sessions,
        b.control.stats().sessions
    );
    assert_viewer_moved(a.port, b.port).await;
    assert_eq!(ours.switches(), 1);
    assert_eq!(ours.server(), ("127.0.0.1".to_string(), b.port));
    assert!(
        wait_for(Duration::from_secs(20), || share_of(&ours, 0x22aa55) > 0.9).await,
        "our client does not show B's colour after the hand-over (error: {:?})",
        ours.error()
    );
    eprintln!(
        "switch host: both clients on B and our client showing B's screen {:?} after the order",
        t0.elapsed()
    );
    assert!(ours.error().is_none(), "{:?}", ours.error());
    // The hand-over is not a one-way trip: B can hand the clients back.
    let told = b.control.handover(target(a.port)).expect("handover back");
    assert_eq!(told, 2);
    assert!(
        wait_sessions(Duration::from_secs(4), &a, 2, &b, 0).await,
        "hand-back: A has {} sessions, B {}",
        a.control.stats().sessions,
        b.control.stats().sessions
    );
    assert!(
        wait_for(Duration::from_secs(20), || share_of(&ours, 0xcc3311) > 0.9).await,
        "our client does not show A's colour after the hand-back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_keeps_the_password_and_refuses_bad_targets() {
    if skip_without(&["Xvfb", "xdpyinfo", "xsetroot"]) {
        return;
    }
    let a_x = Xvfb::start(320, 240);
    let b_x = Xvfb::start(320, 240);
    assert!(b_x.run("xsetroot", &["-solid", "#1144ee"]));
    let pw = || Ticketing::Password("so-secret".into());
    let a = serve(&a_x.name, pw()).await;
    let b = serve(&b_x.name, pw()).await;
    for bad in [
        HandoverTarget {
            host: String::new(),
            port: 1,
            tls_port: 0,
            cert_subject: None,
        },
        HandoverTarget {
            host: "h".into(),
            port: 0,
            tls_port: 0,
            cert_subject: None,
        },
        HandoverTarget {
            host: "a\0b".into(),
            port: 1,
            tls_port: 0,
            cert_subject: None,
        },
    ] {
        assert!(a.control.handover(bad.clone()).is_err(), "{bad:?} accepted");
    }
    // No client yet: nobody to tell.
    let t = target(b.port);
    assert_eq!(a.control.handover(t.clone()).unwrap(), 0);

    let mut cfg = spice_client::ClientConfig::new("127.0.0.1", a.port);
    cfg.password = "so-secret".into();
    let ours = spice_client::Session::connect(cfg)
        .await
        .expect("connect to A");
    assert!(wait_for(Duration::from_secs(10), || a.control.stats().sessions == 1).await);
    assert_eq!(a.control.handover(t).unwrap(), 1);
    // B demands the same password: the client links there with the one it has.
    assert!(
        wait_for(Duration::from_secs(20), || share_of(&ours, 0x1144ee) > 0.9).await,
        "no picture from B (error: {:?})",
        ours.error()
    );
    assert_eq!(b.control.stats().sessions, 1);
    assert_eq!(a.control.stats().sessions, 0);
}

/// The number of pixels of colour `rgb` on the X display `x` (`import -window root`).
fn pixels_of(x: &Xvfb, rgb: [u8; 3]) -> usize {
    let out = Command::new("import")
        .args(["-window", "root", "-depth", "8", "ppm:-"])
        .env("DISPLAY", &x.name)
        .output()
        .expect("import");
    let d = out.stdout;
    // P6 header: magic, width, height, maxval, each followed by one whitespace byte.
    let mut fields = 0;
    let mut i = 0;
    while fields < 4 && i < d.len() {
        while i < d.len() && d[i].is_ascii_whitespace() {
            i += 1;
        }
        while i < d.len() && !d[i].is_ascii_whitespace() {
            i += 1;
        }
        fields += 1;
    }
    d.get(i + 1..)
        .unwrap_or_default()
        .chunks(3)
        .filter(|p| *p == rgb)
        .count()
}

/// Links a main channel to `port` with `connection_id`; `Err(status)` when refused.
async fn link_main(port: u16, connection_id: u32) -> Result<(), spice_proto::LinkStatus> {
    let s = tcp(([127, 0, 0, 1], port).into()).await;
    link(s, connection_id, spice_proto::consts::channel::MAIN, "")
        .await
        .map(|_| ())
}

use spice_client::spice_proto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_viewer_migrates_semi_seamlessly_and_a_target_refuses_unexpected_ids() {
    if skip_without(&[
        "Xvfb",
        "xdpyinfo",
        "xsetroot",
        "remote-viewer",
        "import",
        "ss",
    ]) {
        return;
    }
    let (_a_x, _b_x, a, b) = two_servers(400, 300, "#aa4411", "#1188aa").await;
    let mut viewer_x = Xvfb::start(1024, 768);
    viewer_x.spawn("remote-viewer", &[&format!("spice://127.0.0.1:{}", a.port)]);
    let a_colour = [0xaa, 0x44, 0x11];
    let b_colour = [0x11, 0x88, 0xaa];
    let shown = 400 * 300 * 9 / 10;
    assert!(
        wait_for(Duration::from_secs(20), || pixels_of(&viewer_x, a_colour)
            >= shown)
        .await,
        "remote-viewer does not show A"
    );
    // spice-gtk announces SEMI_SEAMLESS_MIGRATE: its session can migrate; so does ours.
    let rv_ids = a.control.migratable_sessions();
    assert_eq!(rv_ids.len(), 1, "{rv_ids:?}");
    let id = rv_ids[0];
    let ours = spice_client::Session::connect(spice_client::ClientConfig::new("127.0.0.1", a.port))
        .await
        .expect("connect to A");
    assert!(
        wait_for(Duration::from_secs(20), || share_of(&ours, 0xaa4411) > 0.9).await,
        "our client does not show A"
    );
    let ids = a.control.migratable_sessions();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&ours.session_id()));

    // A target refuses a main channel carrying a session id it was not told to expect…
    assert_eq!(
        link_main(b.port, id).await,
        Err(spice_proto::LinkStatus::Failed(
            spice_proto::LinkErr::BAD_CONNECTION_ID
        ))
    );
    assert!(b.control.expect_migration(&[0]).is_err());
    // …and accepts the client once it was.
    assert_eq!(b.control.expect_migration(&ids).unwrap(), 2);
    let t0 = Instant::now();
    let r = a.control.migrate(target(b.port)).await.expect("migrate");
    eprintln!(
        "semi-seamless migration answered in {:?}: {r:?}",
        t0.elapsed()
    );
    assert_eq!((r.migrated, r.switched, r.lost), (2, 0, 0), "{r:?}");
    assert!(
        wait_sessions(Duration::from_secs(5), &a, 0, &b, 2).await,
        "A has {} sessions, B {}",
        a.control.stats().sessions,
        b.control.stats().sessions
    );
    // The sessions kept their ids on B.
    assert_eq!(b.control.migratable_sessions(), ids);
    assert!(
        wait_for(Duration::from_secs(20), || share_of(&ours, 0x1188aa) > 0.9).await,
        "our client does not show B after the migration (error: {:?})",
        ours.error()
    );
    assert_eq!((ours.switches(), ours.migrations()), (1, 1));
    assert_eq!(ours.server(), ("127.0.0.1".to_string(), b.port));
    assert_viewer_moved(a.port, b.port).await;
    assert!(
        wait_for(Duration::from_secs(20), || pixels_of(&viewer_x, b_colour)
            >= shown)
        .await,
        "remote-viewer does not show B after the migration ({} B pixels, {} A pixels)",
        pixels_of(&viewer_x, b_colour),
        pixels_of(&viewer_x, a_colour)
    );
    // The id is used up: the same link again is refused.
    assert_eq!(
        link_main(b.port, id).await,
        Err(spice_proto::LinkStatus::Failed(
            spice_proto::LinkErr::BAD_CONNECTION_ID
        ))
    );

    // Back to A without telling A to expect the session: the client's links to A are
    // refused, it answers MIGRATE_CONNECT_ERROR and is switched over instead.
    let r = b
        .control
        .migrate(target(a.port))
        .await
        .expect("migrate back");
    assert_eq!((r.migrated, r.switched, r.lost), (0, 2, 0), "{r:?}");
    assert!(
        wait_sessions(Duration::from_secs(10), &a, 2, &b, 0).await,
        "A has {} sessions, B {}",
        a.control.stats().sessions,
        b.control.stats().sessions
    );
    assert!(
        wait_for(Duration::from_secs(20), || pixels_of(&viewer_x, a_colour)
            >= shown)
        .await,
        "remote-viewer does not show A after the switch back"
    );
    assert!(
        wait_for(Duration::from_secs(20), || share_of(&ours, 0xaa4411) > 0.9).await,
        "our client does not show A after the switch back"
    );
    assert_eq!((ours.switches(), ours.migrations()), (2, 1));
    assert!(ours.error().is_none(), "{:?}", ours.error());
}
