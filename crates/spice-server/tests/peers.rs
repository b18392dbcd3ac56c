//! The server against real peers: spice-gtk's spicy-screenshot, Xvfb + xterm, and a
//! protocol client built from spice-proto.

mod common;

use std::time::Duration;

use common::*;
use spice_proto::consts::{channel, msg, LinkErr};
use spice_proto::{InputsClientMsg, LinkStatus};

/// Puts known content on the screen: a solid root, an xterm and a plasma image.
fn scene(x: &mut Xvfb, dir: &std::path::Path) {
    assert!(x.run("xsetroot", &["-solid", "#3366cc"]));
    x.spawn(
        "xterm",
        &[
            "-geometry",
            "60x10+20+20",
            "-T",
            "sceneterm",
            "-e",
            "sh",
            "-c",
            "echo coop SPICE test; sleep 600",
        ],
    );
    let img = dir.join("plasma.png");
    convert(&["-size", "320x200", "plasma:red-blue"], &img);
    x.show_image("sceneimg", "+500+400", &img);
    assert!(x.wait_window("sceneterm"), "xterm did not map");
    assert!(x.wait_window("sceneimg"), "display did not map");
    // Let both finish drawing.
    std::thread::sleep(Duration::from_millis(1500));
}

async fn screenshot_equals_x(compression: spice_server::ImageCompression) {
    if skip_without(&[
        "Xvfb",
        "spicy-screenshot",
        "xterm",
        "import",
        "display",
        "convert",
        "xdotool",
        "xsetroot",
    ]) {
        return;
    }
    let dir = tempdir();
    let mut x = Xvfb::start(1024, 768);
    scene(&mut x, dir.path());
    let mut cfg = no_auth();
    cfg.image_compression = compression;
    let srv = start_server(&x.name, cfg).await;
    let port = srv.addr.unwrap().port().to_string();
    let out = dir.path().join("shot.ppm");
    let el = screenshot_async(&["-h", "127.0.0.1", "-p", &port], &out, &[])
        .await
        .expect("spicy-screenshot against our server");
    let (w, h, got) = read_ppm(&out).expect("client ppm");
    let (rw, rh, want) = x.reference(dir.path());
    assert_eq!((w, h), (rw, rh), "screen size");
    let d = diff_pixels(&got, &want);
    eprintln!(
        "{compression:?}: spicy-screenshot {:.0} ms, display channel sent {} bytes, {d} differing pixels",
        el.as_secs_f64() * 1e3,
        srv.stats.stats().display_bytes_out
    );
    assert_eq!(d, 0, "client pixels differ from the X server's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_equals_x_pixels_lz() {
    screenshot_equals_x(spice_server::ImageCompression::Lz).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_equals_x_pixels_raw() {
    screenshot_equals_x(spice_server::ImageCompression::Off).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_equals_x_pixels_quic() {
    screenshot_equals_x(spice_server::ImageCompression::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_equals_x_pixels_glz() {
    screenshot_equals_x(spice_server::ImageCompression::Glz).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_equals_x_pixels_lz4() {
    screenshot_equals_x(spice_server::ImageCompression::Lz4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_equals_x_pixels_auto_glz() {
    screenshot_equals_x(spice_server::ImageCompression::AutoGlz).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_equals_x_pixels_auto_lz() {
    screenshot_equals_x(spice_server::ImageCompression::AutoLz).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_refused_then_right_one_served() {
    if skip_without(&["Xvfb", "spicy-screenshot", "xsetroot", "xdpyinfo"]) {
        return;
    }
    let dir = tempdir();
    let x = Xvfb::start(640, 480);
    assert!(x.run("xsetroot", &["-solid", "#aa5500"]));
    let mut cfg = no_auth();
    cfg.ticketing = spice_server::Ticketing::Password("s3cret".into());
    let srv = start_server(&x.name, cfg).await;
    let addr = srv.addr.unwrap();

    // A protocol client with the wrong ticket gets PERMISSION_DENIED.
    match link(tcp(addr).await, 0, channel::MAIN, "wrong").await {
        Err(LinkStatus::Failed(e)) => assert_eq!(e, LinkErr::PERMISSION_DENIED),
        Err(s) => panic!("unexpected link outcome {s:?}"),
        Ok(_) => panic!("wrong password accepted"),
    }
    // spice-gtk with the wrong password writes nothing.
    let port = addr.port().to_string();
    let out = dir.path().join("no.ppm");
    let r = screenshot_async(&["-h", "127.0.0.1", "-p", &port, "-w", "nope"], &out, &[]).await;
    assert!(
        r.is_err(),
        "spicy-screenshot with a wrong password got a frame"
    );
    // The server still serves a correct client.
    let out = dir.path().join("yes.ppm");
    screenshot_async(&["-h", "127.0.0.1", "-p", &port, "-w", "s3cret"], &out, &[])
        .await
        .expect("right password");
    let (_, _, px) = read_ppm(&out).unwrap();
    assert_eq!(&px[..3], &[0xaa, 0x55, 0x00]);
    let (main, _) = session(tcp(addr).await, "s3cret").await;
    drop(main);
}

/// Set-1 make codes for a few letters.
fn scancode(c: char) -> u32 {
    match c {
        'h' => 0x23,
        'e' => 0x12,
        'l' => 0x26,
        'o' => 0x18,
        'c' => 0x2e,
        'p' => 0x19,
        ' ' => 0x39,
        _ => panic!("no scancode for {c:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reach_xterm() {
    if skip_without(&["Xvfb", "xterm", "xdotool", "xdpyinfo"]) {
        return;
    }
    let dir = tempdir();
    let file = dir.path().join("typed.txt");
    let mut x = Xvfb::start(800, 600);
    x.line_reading_xterm("80x20+0+0", "keyterm", &file);
    std::thread::sleep(Duration::from_millis(500));
    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut inputs = link_channel(addr, sid, channel::INPUTS).await;
    inputs.expect(msg::inputs::INIT).await;
    // Client mouse mode: put the pointer over the xterm so it has the focus.
    for i in 0..4 {
        inputs
            .send(&InputsClientMsg::MousePosition {
                x: 100 + i,
                y: 100,
                buttons_state: 0,
                display_id: 0,
            })
            .await;
    }
    inputs.expect(msg::inputs::MOUSE_MOTION_ACK).await;
    for c in "hello coop".chars() {
        let k = scancode(c);
        inputs.send(&InputsClientMsg::KeyDown(k)).await;
        inputs.send(&InputsClientMsg::KeyUp(k | 0x80)).await;
    }
    // Keypad Enter is an extended key: spice-gtk sends it as 0xE0 | 0x1C << 8.
    inputs
        .send(&InputsClientMsg::KeyDown(0xe0 | (0x1c << 8)))
        .await;
    inputs
        .send(&InputsClientMsg::KeyUp(0x80e0 | (0x1c << 8)))
        .await;
    let got = wait_for_file(&file)
        .await
        .expect("the xterm never got Enter");
    assert_eq!(got.trim_end(), "hello coop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_are_dropped_and_others_served() {
    if skip_without(&["Xvfb", "xdpyinfo"]) {
        return;
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let x = Xvfb::start(320, 240);
    let srv = start_server(&x.name, no_auth()).await;
    let addr = srv.addr.unwrap();

    // Garbage instead of a link header: an error reply, then close.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("server kept a garbage client open")
        .unwrap();
    assert!(buf.len() >= 20, "no link error reply");
    assert_eq!(
        u32::from_le_bytes(buf[16..20].try_into().unwrap()),
        LinkErr::INVALID_MAGIC.0
    );

    // A linked inputs channel announcing a 1 GiB message is dropped.
    let (_main, sid) = session(tcp(addr).await, "").await;
    let mut inputs = link_channel(addr, sid, channel::INPUTS).await;
    inputs.expect(msg::inputs::INIT).await;
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&101u16.to_le_bytes());
    hdr.extend_from_slice(&(1u32 << 30).to_le_bytes());
    inputs.s.write_all(&hdr).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while inputs.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "oversized message did not drop the client");

    // A truncated KEY_DOWN body (2 bytes instead of 4) is malformed: dropped too.
    let mut inputs = link_channel(addr, sid, channel::INPUTS).await;
    inputs.expect(msg::inputs::INIT).await;
    let mut m = Vec::new();
    m.extend_from_slice(&101u16.to_le_bytes());
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&[1, 2]);
    inputs.s.write_all(&m).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while inputs.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "malformed message did not drop the client");

    // A channel claiming an unknown session is refused at the link stage.
    match link(tcp(addr).await, 0x1234_5678, channel::DISPLAY, "").await {
        Err(LinkStatus::Failed(e)) => assert_eq!(e, LinkErr::BAD_CONNECTION_ID),
        Err(other) => panic!("stray display link ended with {other:?}"),
        Ok(_) => panic!("a display channel of an unknown session was linked"),
    }

    // Others are still served: a display channel gets its surface.
    let mut disp = link_channel(addr, sid, channel::DISPLAY).await;
    disp.expect(msg::display::SURFACE_CREATE).await;
    disp.expect(msg::display::DRAW_COPY).await;
}

/// Makes a CA and a server certificate for 127.0.0.1 with openssl; returns (ca, cert, key).
fn make_certs(
    dir: &std::path::Path,
) -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let d = dir.display();
    let script = format!(
        "set -e; cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=coop-test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 2 -extfile ext.cnf 2>/dev/null"
    );
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| {
        (
            dir.join("ca.pem"),
            dir.join("server-cert.pem"),
            dir.join("server-key.pem"),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_port_serves_spice_gtk_and_rustls_client() {
    if skip_without(&[
        "Xvfb",
        "spicy-screenshot",
        "openssl",
        "xsetroot",
        "xdpyinfo",
        "import",
    ]) {
        return;
    }
    let dir = tempdir();
    let Some((ca, cert, key)) = make_certs(dir.path()) else {
        eprintln!("SKIP: openssl could not make test certificates");
        return;
    };
    let x = Xvfb::start(640, 480);
    assert!(x.run("xsetroot", &["-solid", "#11aa77"]));
    let mut cfg = no_auth();
    cfg.ticketing = spice_server::Ticketing::Password("tlspw".into());
    cfg.port = None;
    cfg.tls = Some(spice_server::TlsConfig { port: 0, cert, key });
    let srv = start_server(&x.name, cfg).await;
    assert!(srv.addr.is_none());
    let taddr = srv.tls_addr.expect("tls port");

    // spicy-screenshot has no CA option and spice-gtk then uses OpenSSL's default
    // verify paths, which SSL_CERT_FILE overrides.
    let out = dir.path().join("tls.ppm");
    let port = taddr.port().to_string();
    let r = screenshot_async(
        &["-h", "127.0.0.1", "-s", &port, "-w", "tlspw"],
        &out,
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    )
    .await;
    match r {
        Ok(el) => {
            let (_, _, got) = read_ppm(&out).unwrap();
            let (_, _, want) = x.reference(dir.path());
            assert_eq!(diff_pixels(&got, &want), 0);
            eprintln!(
                "spicy-screenshot over TLS: {:.0} ms",
                el.as_secs_f64() * 1e3
            );
        }
        Err(e) => panic!("spicy-screenshot over TLS failed: {e}"),
    }

    // Our own rustls client: every channel type links over TLS.
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let ccfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(ccfg));
    let tls = |conn: tokio_rustls::TlsConnector| async move {
        let s = tokio::net::TcpStream::connect(taddr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let s: Box<dyn Stream> = Box::new(conn.connect(name, s).await.expect("TLS handshake"));
        s
    };
    let (_main, sid) = session(tls(conn.clone()).await, "tlspw").await;
    let mut d = link(tls(conn.clone()).await, sid, channel::DISPLAY, "tlspw")
        .await
        .unwrap();
    d.expect(msg::display::SURFACE_CREATE).await;
    d.expect(msg::display::DRAW_COPY).await;
    let mut c = link(tls(conn.clone()).await, sid, channel::CURSOR, "tlspw")
        .await
        .unwrap();
    c.expect(msg::cursor::INIT).await;
    match link(tls(conn.clone()).await, sid, channel::INPUTS, "bad").await {
        Err(LinkStatus::Failed(e)) => assert_eq!(e, LinkErr::PERMISSION_DENIED),
        _ => panic!("bad password accepted over TLS"),
    }
}

/// An Xspice (spice-server's own X server) on display `num`; its X clients are stopped
/// before it (fields drop in order).
struct Xspice {
    x: Xvfb,
    _server: Proc,
}

impl Xspice {
    /// Writes `conf` to `dir/{tag}.conf` and starts Xspice with it, logging to
    /// `dir/{tag}.log`; `Err` says why it is not usable.
    fn start(dir: &std::path::Path, tag: &str, conf: &str, num: u32) -> Result<Xspice, String> {
        let conf_path = dir.join(format!("{tag}.conf"));
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.join(format!("{tag}.log"));
        let child = std::process::Command::new("Xspice")
            .args([
                "--config",
                conf_path.to_str().unwrap(),
                "-logfile",
                log.to_str().unwrap(),
            ])
            .arg(format!(":{num}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|_| "Xspice did not start".to_string())?;
        let server = Proc(child);
        let x = Xvfb::attach(num);
        if !x.ready() {
            return Err(format!("Xspice display :{num} never answered"));
        }
        Ok(Xspice { x, _server: server })
    }
}

/// Measures first-frame time and bytes against us and against Xspice on the same scene.
/// Prints the figures; asserts only that both frames are pixel-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_first_frame_vs_xspice() {
    if skip_without(&[
        "Xvfb",
        "Xspice",
        "spicy-screenshot",
        "xterm",
        "import",
        "display",
        "convert",
        "xdotool",
        "xsetroot",
    ]) {
        return;
    }
    let conf_src = std::path::Path::new("/work/shared/peers/xspice.conf");
    if !conf_src.exists() {
        eprintln!("SKIP: {} is missing", conf_src.display());
        return;
    }
    let dir = tempdir();
    // Ours, first on a plain black 1024x768 screen, then on the scene.
    let mut x = Xvfb::start(1024, 768);
    {
        let srv = start_server(&x.name, no_auth()).await;
        let p = srv.addr.unwrap().port().to_string();
        let out = dir.path().join("black.ppm");
        let el = screenshot_async(&["-h", "127.0.0.1", "-p", &p], &out, &[])
            .await
            .expect("black screen");
        eprintln!(
            "MEASURE black 1024x768: display channel {} bytes, spicy-screenshot {:.0} ms",
            srv.stats.stats().display_bytes_out,
            el.as_secs_f64() * 1e3
        );
    }
    scene(&mut x, dir.path());
    let srv = start_server(&x.name, no_auth()).await;
    let port = srv.addr.unwrap().port().to_string();
    let mut ours = Vec::new();
    for i in 0..5 {
        let out = dir.path().join(format!("ours{i}.ppm"));
        let el = screenshot_async(&["-h", "127.0.0.1", "-p", &port], &out, &[])
            .await
            .expect("ours");
        ours.push(el.as_secs_f64() * 1e3);
    }
    let bytes_per_frame = srv.stats.stats().display_bytes_out / 5;
    drop(srv);
    drop(x);

    // Xspice: its own X server, same scene.
    let xs_port = 20000 + (std::process::id() % 20000) as u16;
    let conf = std::fs::read_to_string(conf_src).unwrap().replace(
        "\"SpicePort\" \"5912\"",
        &format!("\"SpicePort\" \"{xs_port}\""),
    );
    let num = 600 + (std::process::id() % 200);
    let mut xs = match Xspice::start(dir.path(), "xspice", &conf, num) {
        Ok(xs) => xs,
        Err(e) => {
            eprintln!("SKIP: {e}");
            return;
        }
    };
    scene(&mut xs.x, dir.path());
    let mut theirs = Vec::new();
    for i in 0..5 {
        let out = dir.path().join(format!("xspice{i}.ppm"));
        let p = xs_port.to_string();
        match screenshot_async(&["-h", "127.0.0.1", "-p", &p], &out, &[]).await {
            Ok(el) => theirs.push(el.as_secs_f64() * 1e3),
            Err(e) => {
                eprintln!("SKIP (Xspice part): {e}");
                return;
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    eprintln!(
        "MEASURE 1024x768 scene: first frame display-channel bytes (ours, auto_glz) = {bytes_per_frame}; \
         spicy-screenshot median: ours {:.0} ms, Xspice {:.0} ms",
        med(&mut ours),
        med(&mut theirs)
    );
}

/// A TCP relay to `target` that counts the bytes servers send on display channels
/// (channel type read from each connection's SpiceLinkMess).
async fn display_byte_relay(
    target: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let is_display = Arc::new(AtomicBool::new(false));
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let d = is_display.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut head = Vec::new();
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if head.len() <= 20 {
                        head.extend_from_slice(&buf[..n]);
                        if head.len() > 20 {
                            // 16-byte link header, then connection_id, then channel_type.
                            d.store(head[20] == channel::DISPLAY, Ordering::SeqCst);
                        }
                    }
                }
            });
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if is_display.load(Ordering::SeqCst) {
                        c.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (addr, count)
}

/// One spicy-screenshot through a byte-counting relay: (display bytes, differing pixels
/// against `want`).
async fn first_frame_bytes(
    target: std::net::SocketAddr,
    dir: &std::path::Path,
    want: &[u8],
) -> Option<(u64, usize)> {
    let (relay, count) = display_byte_relay(target).await;
    let out = dir.join("measure.ppm");
    let port = relay.port().to_string();
    let r = screenshot_async(&["-h", "127.0.0.1", "-p", &port], &out, &[]).await;
    if let Err(e) = r {
        eprintln!("screenshot failed: {e}");
        return None;
    }
    // Let the relay finish counting what arrived before the client closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, _, got) = read_ppm(&out)?;
    Some((
        count.load(std::sync::atomic::Ordering::Relaxed),
        diff_pixels(&got, want),
    ))
}

/// First-frame display-channel bytes of the same 1024x768 scene per image compression,
/// ours and Xspice's (spice-server 0.15), each through the same counting relay. Prints
/// the figures; asserts that our frames are pixel-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_first_frame_bytes_per_codec_vs_xspice() {
    use spice_server::ImageCompression as M;
    if skip_without(&[
        "Xvfb",
        "spicy-screenshot",
        "xterm",
        "import",
        "display",
        "convert",
        "xdotool",
        "xsetroot",
    ]) {
        return;
    }
    let modes = [
        (M::AutoGlz, "auto_glz"),
        (M::AutoLz, "auto_lz"),
        (M::Quic, "quic"),
        (M::Glz, "glz"),
        (M::Lz, "lz"),
        (M::Lz4, "lz4"),
        (M::Off, "off"),
    ];
    let dir = tempdir();
    let mut x = Xvfb::start(1024, 768);
    scene(&mut x, dir.path());
    let (_, _, want) = x.reference(dir.path());
    let mut ours = Vec::new();
    for (mode, name) in modes {
        let mut cfg = no_auth();
        cfg.image_compression = mode;
        let srv = start_server(&x.name, cfg).await;
        let (bytes, d) = first_frame_bytes(srv.addr.unwrap(), dir.path(), &want)
            .await
            .expect("screenshot of our server");
        assert_eq!(d, 0, "{name}: client pixels differ from the X server's");
        ours.push((name, bytes));
    }
    drop(x);
    for (name, bytes) in &ours {
        eprintln!("MEASURE ours {name}: {bytes} display bytes");
    }

    let conf_src = std::path::Path::new("/work/shared/peers/xspice.conf");
    if !have("Xspice") || !conf_src.exists() {
        eprintln!(
            "SKIP (Xspice part): Xspice or {} is missing",
            conf_src.display()
        );
        return;
    }
    let base_conf = std::fs::read_to_string(conf_src).unwrap();
    for (i, (_, name)) in modes.iter().enumerate() {
        if *name == "lz4" {
            continue; // Xspice has no LZ4 setting.
        }
        let port = 21000 + (std::process::id() % 15000) as u16 + i as u16;
        let conf = base_conf
            .replace(
                "\"SpicePort\" \"5912\"",
                &format!("\"SpicePort\" \"{port}\""),
            )
            .replace(
                "#Option \"SpiceImageCompression\" \"\"",
                &format!("Option \"SpiceImageCompression\" \"{name}\""),
            );
        let num = 600 + (std::process::id() % 200) + i as u32;
        let mut xs = match Xspice::start(dir.path(), &format!("xspice-{name}"), &conf, num) {
            Ok(xs) => xs,
            Err(e) => {
                eprintln!("SKIP (Xspice part): {e}");
                return;
            }
        };
        scene(&mut xs.x, dir.path());
        let (_, _, want) = xs.x.reference(dir.path());
        let target: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        match first_frame_bytes(target, dir.path(), &want).await {
            Some((bytes, d)) => {
                eprintln!("MEASURE Xspice {name}: {bytes} display bytes ({d} differing pixels)")
            }
            None => eprintln!("MEASURE Xspice {name}: no frame"),
        }
    }
}
