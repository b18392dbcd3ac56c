//! TLS against coop's own SPICE server serving TLS only (no plain port): the screen
//! arrives with the X server's exact pixels over TLS channels; a wrong CA, a host
//! name the certificate does not cover and a wrong --host-subject are refused with
//! errors naming the host and the reason; a NEED_SECURED answer on the plain port
//! sends a channel to the TLS port; switch-host and semi-seamless migration from a
//! plain server to a TLS-only one are followed. Also Xspice over TLS when it runs.
//!
//! Certificates come from `openssl` at test time. X displays :181-:189 and TCP ports
//! 16310-16349 are this file's.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_same, missing, ChildGuard};
use spice_client::{capture, CaptureOptions, ClientConfig, ClientError, Session};
use spice_server::{HandoverTarget, Server, Ticketing, TlsConfig};

const SERVER_SUBJECT: &str = "C=XX, O=coop tests, CN=coop tls server";

/// A CA, a server certificate it signed (for DNS:localhost only, so that
/// 127.0.0.1 does not match it), and an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("server-cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("server-key.pem")
    }
    /// The server certificate and key, served on `port`.
    fn tls(&self, port: u16) -> Option<(PathBuf, PathBuf, u16)> {
        Some((self.cert(), self.key(), port))
    }
    /// A certificate with CN=localhost and no subjectAltName (as SPICE's and QEMU's
    /// guides make them), served on `port`.
    fn cn_only(&self, port: u16) -> Option<(PathBuf, PathBuf, u16)> {
        let d = self.dir.path();
        Some((d.join("cn-cert.pem"), d.join("cn-key.pem"), port))
    }

    fn make() -> Option<Pki> {
        if let Some(m) = missing(&["openssl"]) {
            eprintln!("SKIP: {m} is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (name, cn) in [("ca", "coop test CA"), ("other-ca", "unrelated CA")] {
            let mut a = vec!["req", "-x509", "-nodes", "-days", "2"];
            a.extend(ec);
            let (k, c, s) = (
                format!("{name}-key.pem"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            a.extend(["-keyout", &k, "-out", &c, "-subj", &s]);
            run(&a);
        }
        // A leaf `{stem}-cert.pem` / `{stem}-key.pem` for `subj`, signed by ca.pem
        // with the extensions `ext`.
        let leaf = |stem: &str, subj: &str, ext: &str| {
            let (key, csr, cnf, cert) = (
                format!("{stem}-key.pem"),
                format!("{stem}.csr"),
                format!("{stem}-ext.cnf"),
                format!("{stem}-cert.pem"),
            );
            let mut a = vec!["req", "-nodes"];
            a.extend(ec);
            a.extend(["-keyout", &key, "-out", &csr, "-subj", subj]);
            run(&a);
            std::fs::write(d.join(&cnf), ext).unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &cnf,
                "-out",
                &cert,
            ]);
        };
        leaf(
            "server",
            "/C=XX/O=coop tests/CN=coop tls server",
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        leaf(
            "cn",
            "/O=coop tests/CN=localhost",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        );
        Some(Pki { dir })
    }
}

/// Xvfb on display `num` (this file's range), killed on drop.
struct Xvfb {
    name: String,
    _p: ChildGuard,
}

impl Xvfb {
    fn start(num: u32) -> Option<Xvfb> {
        if let Some(m) = missing(&["Xvfb", "xsetroot", "import"]) {
            eprintln!("SKIP: {m} is not installed");
            return None;
        }
        let child = Command::new("Xvfb")
            .arg(format!(":{num}"))
            .args(["-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let x = Xvfb {
            name: format!(":{num}"),
            _p: ChildGuard(child),
        };
        let t0 = Instant::now();
        while !x.run("xsetroot", &["-solid", "black"]) {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "Xvfb :{num} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(x)
    }

    fn run(&self, cmd: &str, args: &[&str]) -> bool {
        Command::new(cmd)
            .args(args)
            .env("DISPLAY", &self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn reference(&self, dir: &Path) -> (u32, u32, Vec<u8>) {
        let f = dir.join("root.ppm");
        assert!(self.run(
            "import",
            &["-window", "root", "-depth", "8", f.to_str().unwrap()]
        ));
        spice_client::output::read_ppm(&f).unwrap()
    }
}

/// Our server on its own runtime; stops when dropped.
struct Served {
    rt: tokio::runtime::Runtime,
    control: spice_server::ControlHandle,
}

fn serve(x: &Xvfb, plain: Option<u16>, tls: Option<(PathBuf, PathBuf, u16)>) -> Served {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let src = spice_server::coop_display::X11Source::connect(&x.name).expect("X11Source");
    let cfg = spice_server::Config {
        port: plain,
        tls: tls.map(|(cert, key, port)| TlsConfig { port, cert, key }),
        ticketing: Ticketing::Disabled,
        name: format!("tls test {}", x.name),
        ..Default::default()
    };
    let server = rt.block_on(Server::bind(cfg, Box::new(src))).expect("bind");
    let control = server.control_handle();
    rt.spawn(server.run());
    Served { rt, control }
}

fn tls_cfg(host: &str, port: u16, ca: &Path) -> ClientConfig {
    let mut c = ClientConfig::tls(host, port);
    c.ca_file = Some(ca.to_path_buf());
    c.all_channels = false;
    c.timeout = Duration::from_secs(10);
    c
}

fn shot(cfg: ClientConfig) -> Result<spice_client::Capture, ClientError> {
    capture(
        cfg,
        &CaptureOptions {
            timeout: Duration::from_secs(20),
            ..Default::default()
        },
    )
}

#[test]
fn tls_only_server_gives_the_exact_screen_over_tls() {
    let Some(pki) = Pki::make() else { return };
    let Some(x) = Xvfb::start(181) else { return };
    // A fine pattern, so that any pixel lost or changed shows.
    assert!(x.run(
        "xsetroot",
        &["-mod", "3", "5", "-fg", "#1f4e8c", "-bg", "#f2c14e"]
    ));
    let _s = serve(&x, None, pki.tls(16311));
    let t0 = Instant::now();
    let c = shot(tls_cfg("localhost", 16311, &pki.ca())).expect("screenshot over TLS");
    eprintln!("TLS screenshot complete after {:?}", t0.elapsed());
    assert_same(
        "tls-only",
        &c.screen,
        &x.reference(pki.dir.path()),
        pki.dir.path(),
    );
    assert!(c.stats.len() >= 2, "{:?}", c.stats);
    for s in &c.stats {
        assert!(s.secure, "{s} is not over TLS");
        assert!(s.to_string().contains("(TLS)"), "{s}");
    }
}

/// The reason of a TLS refusal, checking it names the host.
fn tls_refusal(r: Result<Session, ClientError>, host: &str) -> String {
    match r {
        Err(e @ ClientError::Tls { .. }) => {
            let text = e.to_string();
            assert!(text.contains(host), "{text:?} does not name {host}");
            text
        }
        Err(e) => panic!("not a TLS refusal: {e}"),
        Ok(_) => panic!("connected to {host} although the certificate must be refused"),
    }
}

#[test]
fn certificate_checks_refuse_wrong_ca_name_and_subject() {
    let Some(pki) = Pki::make() else { return };
    let Some(x) = Xvfb::start(182) else { return };
    assert!(x.run("xsetroot", &["-solid", "#336699"]));
    let s = serve(&x, None, pki.tls(16312));
    let _cn_only = serve(&x, None, pki.cn_only(16318));
    s.rt.block_on(async {
        let connect = |cfg: ClientConfig| Session::connect(cfg);
        // The right CA and a name the certificate covers.
        let ok = connect(tls_cfg("localhost", 16312, &pki.ca()))
            .await
            .expect("localhost with the right CA");
        ok.wait_display_complete(
            Duration::from_millis(200),
            Duration::from_secs(2),
            Duration::from_secs(20),
        )
        .await
        .expect("picture");
        drop(ok);

        let e = tls_refusal(
            connect(tls_cfg("localhost", 16312, &pki.other_ca())).await,
            "localhost",
        );
        assert!(e.contains("unknown issuer"), "{e}");
        assert!(
            e.contains(pki.other_ca().to_str().unwrap()),
            "{e} names no CA file"
        );

        // 127.0.0.1 is not in the certificate.
        let e = tls_refusal(
            connect(tls_cfg("127.0.0.1", 16312, &pki.ca())).await,
            "127.0.0.1",
        );
        assert!(e.contains("not valid for this host name"), "{e}");

        // ... but its subject is what --host-subject checks instead, spaces and case aside.
        let mut cfg = tls_cfg("127.0.0.1", 16312, &pki.ca());
        cfg.host_subject = Some("c=XX,O=coop  tests, CN=COOP TLS SERVER".into());
        connect(cfg).await.expect("subject matches");

        let mut cfg = tls_cfg("localhost", 16312, &pki.ca());
        cfg.host_subject = Some("C=XX, O=coop tests, CN=another server".into());
        let e = tls_refusal(connect(cfg).await, "localhost");
        assert!(e.contains("does not match"), "{e}");
        assert!(e.contains("another server"), "{e}");

        // The subject does not replace the CA check.
        let mut cfg = tls_cfg("127.0.0.1", 16312, &pki.other_ca());
        cfg.host_subject = Some(SERVER_SUBJECT.into());
        let e = tls_refusal(connect(cfg).await, "127.0.0.1");
        assert!(e.contains("unknown issuer"), "{e}");

        // Without subjectAltName the CN names the host, as spice-gtk accepts.
        connect(tls_cfg("localhost", 16318, &pki.ca()))
            .await
            .expect("CN-only certificate for localhost");
        let e = tls_refusal(
            connect(tls_cfg("127.0.0.1", 16318, &pki.ca())).await,
            "127.0.0.1",
        );
        assert!(e.contains("not valid for this host name"), "{e}");
        let e = tls_refusal(
            connect(tls_cfg("localhost", 16318, &pki.other_ca())).await,
            "localhost",
        );
        assert!(e.contains("unknown issuer"), "{e}");

        // A missing CA file is named.
        let e = tls_refusal(
            connect(tls_cfg(
                "localhost",
                16312,
                Path::new("/nonexistent/ca.pem"),
            ))
            .await,
            "localhost",
        );
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    });
}

/// A plain port that answers every link with NEED_SECURED; counts the links.
fn need_secured_port(port: u16) -> Arc<AtomicUsize> {
    use spice_client::spice_proto::link::LinkReply;
    use spice_client::spice_proto::LinkErr;
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut head = [0u8; 16];
            if s.read_exact(&mut head).is_err() {
                continue;
            }
            let size = u32::from_le_bytes(head[12..16].try_into().unwrap()).min(4096);
            let mut body = vec![0u8; size as usize];
            if s.read_exact(&mut body).is_err() {
                continue;
            }
            n2.fetch_add(1, Ordering::SeqCst);
            let mut out = Vec::new();
            LinkReply::error(LinkErr::NEED_SECURED).encode_with_header(&mut out);
            let _ = s.write_all(&out);
        }
    });
    n
}

#[test]
fn need_secured_on_the_plain_port_moves_each_channel_to_tls() {
    let Some(pki) = Pki::make() else { return };
    let Some(x) = Xvfb::start(183) else { return };
    assert!(x.run("xsetroot", &["-solid", "#884422"]));
    let _s = serve(&x, None, pki.tls(16313));
    let refused = need_secured_port(16314);
    let mut cfg = tls_cfg("localhost", 16313, &pki.ca());
    cfg.port = 16314;
    let c = shot(cfg).expect("screenshot after NEED_SECURED");
    assert_same(
        "need-secured",
        &c.screen,
        &x.reference(pki.dir.path()),
        pki.dir.path(),
    );
    assert!(c.stats.iter().all(|s| s.secure), "{:?}", c.stats);
    // Main and display each tried the plain port first.
    assert_eq!(refused.load(Ordering::SeqCst), c.stats.len());

    // Without a TLS port the refusal is the error.
    let mut cfg = ClientConfig::new("127.0.0.1", 16314);
    cfg.timeout = Duration::from_secs(5);
    match shot(cfg) {
        Err(ClientError::LinkRefused { err, .. }) => {
            assert_eq!(err, spice_client::spice_proto::LinkErr::NEED_SECURED)
        }
        other => panic!("expected NEED_SECURED, got {other:?}"),
    }

    // --secure-channels all never tries the plain port.
    let before = refused.load(Ordering::SeqCst);
    let mut cfg = tls_cfg("localhost", 16313, &pki.ca());
    cfg.port = 16314;
    cfg.secure_channels = spice_client::SecureChannels::parse("all").unwrap();
    let c = shot(cfg).expect("screenshot with all channels secure");
    assert!(c.stats.iter().all(|s| s.secure));
    assert_eq!(refused.load(Ordering::SeqCst), before);
}

/// Share of the screen's pixels that are `rgb` (0xRRGGBB).
fn share_of(s: &Session, rgb: u32) -> f64 {
    let Some(p) = s.screen() else { return 0.0 };
    let n = p.data.iter().filter(|&&px| px & 0xff_ffff == rgb).count();
    n as f64 / p.data.len().max(1) as f64
}

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

#[test]
fn handover_and_migration_from_plain_to_a_tls_only_server_are_followed() {
    let Some(pki) = Pki::make() else { return };
    let Some(ax) = Xvfb::start(184) else { return };
    let Some(bx) = Xvfb::start(185) else { return };
    assert!(ax.run("xsetroot", &["-solid", "#cc3311"]));
    assert!(bx.run("xsetroot", &["-solid", "#22aa55"]));
    let a = serve(&ax, Some(16315), None);
    let b = serve(&bx, None, pki.tls(16316));
    // B's certificate does not cover 127.0.0.1: only the subject the hand-over
    // carries lets the client accept it.
    let target = HandoverTarget {
        host: "127.0.0.1".into(),
        port: 0,
        tls_port: 16316,
        cert_subject: Some(SERVER_SUBJECT.into()),
    };
    a.rt.block_on(async {
        let mut cfg = ClientConfig::new("127.0.0.1", 16315);
        cfg.ca_file = Some(pki.ca());
        let ours = Session::connect(cfg).await.expect("connect to A");
        assert!(
            wait_for(Duration::from_secs(20), || share_of(&ours, 0xcc3311) > 0.9).await,
            "A's colour not shown: {:?}",
            ours.error()
        );
        assert!(ours.stats().iter().all(|s| !s.secure));

        // Switch host: A tells us to go to B's TLS port.
        let t0 = Instant::now();
        assert_eq!(a.control.handover(target.clone()).unwrap(), 1);
        assert!(
            wait_for(Duration::from_secs(20), || share_of(&ours, 0x22aa55) > 0.9).await,
            "B's colour not shown after the switch: {:?}",
            ours.error()
        );
        eprintln!("switch host to TLS: B's screen after {:?}", t0.elapsed());
        assert!(ours.error().is_none(), "{:?}", ours.error());
        assert_eq!(ours.switches(), 1);
        let now = ours.current_config();
        assert_eq!((now.port, now.tls_port), (0, 16316));
        assert_eq!(now.host_subject.as_deref(), Some(SERVER_SUBJECT));
        assert!(ours.stats().iter().all(|s| s.secure), "{:?}", ours.stats());
        drop(ours);

        // Semi-seamless: the main channel links to B over TLS before leaving A.
        let mut cfg = ClientConfig::new("127.0.0.1", 16315);
        cfg.ca_file = Some(pki.ca());
        let ours = Session::connect(cfg).await.expect("connect to A again");
        assert!(wait_for(Duration::from_secs(20), || share_of(&ours, 0xcc3311) > 0.9).await);
        let ids = a.control.migratable_sessions();
        assert_eq!(ids, vec![ours.session_id()]);
        assert_eq!(b.control.expect_migration(&ids).unwrap(), 1);
        let r = a.control.migrate(target.clone()).await.expect("migrate");
        assert_eq!((r.migrated, r.switched, r.lost), (1, 0, 0), "{r:?}");
        assert!(
            wait_for(Duration::from_secs(20), || share_of(&ours, 0x22aa55) > 0.9).await,
            "B's colour not shown after the migration: {:?}",
            ours.error()
        );
        assert_eq!((ours.switches(), ours.migrations()), (1, 1));
        assert!(ours.stats().iter().all(|s| s.secure), "{:?}", ours.stats());
        drop(ours);

        // A hand-over to a TLS target whose certificate the client cannot check
        // (no subject given, and 127.0.0.1 not covered) fails with the TLS reason.
        let mut cfg = ClientConfig::new("127.0.0.1", 16315);
        cfg.ca_file = Some(pki.ca());
        let ours = Session::connect(cfg)
            .await
            .expect("connect to A a third time");
        assert!(wait_for(Duration::from_secs(20), || share_of(&ours, 0xcc3311) > 0.9).await);
        let bad = HandoverTarget {
            cert_subject: None,
            ..target.clone()
        };
        a.control.handover(bad).unwrap();
        assert!(
            wait_for(Duration::from_secs(20), || ours.error().is_some()).await,
            "no error after a hand-over to an unverifiable server"
        );
        let e = ours.error().unwrap().to_string();
        assert!(
            e.contains("127.0.0.1") && e.contains("not valid for this host name"),
            "{e}"
        );
    });
}

#[test]
fn xspice_over_tls() {
    let Some(pki) = Pki::make() else { return };
    let tls_port = 16317u16;
    // Xspice looks for fixed file names in its X509 directory.
    let x509 = pki.dir.path().join("x509");
    std::fs::create_dir(&x509).unwrap();
    for (from, to) in [
        (pki.ca(), "ca-cert.pem"),
        (pki.cert(), "server-cert.pem"),
        (pki.key(), "server-key.pem"),
    ] {
        std::fs::copy(from, x509.join(to)).unwrap();
    }
    let tls_line = format!("Option \"SpiceTlsPort\" \"{tls_port}\"");
    let dir_line = format!("Option \"SpiceX509Dir\" \"{}\"", x509.display());
    let Some(mut xs) = common::Xspice::start_with(
        186,
        None,
        &[
            ("#Option \"SpiceTlsPort\" \"5900\"", &tls_line),
            ("#Option \"SpiceX509Dir\" \"\"", &dir_line),
        ],
    ) else {
        return;
    };
    if !common::wait_port(tls_port, Duration::from_secs(10)) {
        eprintln!("SKIP: Xspice did not open its TLS port {tls_port}");
        return;
    }
    xs.run(&[
        "xsetroot", "-mod", "4", "3", "-fg", "#204060", "-bg", "#e0d0a0",
    ]);
    let c = match shot(tls_cfg("localhost", tls_port, &pki.ca())) {
        Ok(c) => c,
        Err(e) => panic!("Xspice over TLS: {e}"),
    };
    assert!(c.stats.iter().all(|s| s.secure), "{:?}", c.stats);
    assert_same("xspice-tls", &c.screen, &xs.import(), xs.dir.path());
}
