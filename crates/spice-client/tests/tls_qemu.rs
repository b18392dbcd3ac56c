//! Against QEMU 7.2 (libspice-server) over TLS: with a plain and a TLS port where
//! QEMU wants main and display secured (`tls-channel=`), the plain links are
//! refused with NEED_SECURED and those channels come back over TLS while inputs
//! and cursor stay plain; `--secure-channels all` links everything over TLS; a
//! TLS-only QEMU gives the same SeaBIOS picture. Ports 16350-16359.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{missing, sh_in, start_qemu_spice};
use spice_client::spice_proto::consts::channel as chan;
use spice_client::{capture, CaptureOptions, ClientConfig, SecureChannels, Session};

fn make_pki(d: &Path) {
    // QEMU's x509-dir names.
    let script = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
openssl req -x509 -nodes -days 2 $ec -keyout ca-key.pem -out ca-cert.pem -subj "/CN=qemu test CA"
openssl req -nodes $ec -keyout server-key.pem -out s.csr -subj "/O=coop tests/CN=qemu tls"
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in s.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile ext.cnf -out server-cert.pem
"#;
    sh_in(d, script);
}

fn secure_of(stats: &[spice_client::ChannelStats], name: &str) -> Option<bool> {
    stats.iter().find(|s| s.name == name).map(|s| s.secure)
}

#[test]
fn qemu_need_secured_channels_and_tls_only() {
    if let Some(m) = missing(&["openssl"]) {
        eprintln!("SKIP: {m} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let ca = d.join("ca-cert.pem");
    let x509 = d.display();
    let Some(both) = start_qemu_spice(
        &format!(
            "port=16350,tls-port=16351,addr=127.0.0.1,disable-ticketing=on,\
             x509-dir={x509},tls-channel=main,tls-channel=display"
        ),
        16351,
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = ClientConfig::new("localhost", 16350);
        cfg.tls_port = 16351;
        cfg.ca_file = Some(ca.clone());
        let s = Session::connect(cfg).await.expect("connect to QEMU");
        s.wait_display_complete(
            Duration::from_millis(300),
            Duration::from_secs(1),
            Duration::from_secs(30),
        )
        .await
        .expect("QEMU's picture");
        // Give inputs and cursor time to link.
        let t0 = std::time::Instant::now();
        while s.stats().len() < 4 && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let st = s.stats();
        eprintln!("{st:?}");
        assert_eq!(secure_of(&st, "main"), Some(true), "{st:?}");
        assert_eq!(secure_of(&st, "display"), Some(true), "{st:?}");
        assert_eq!(secure_of(&st, "inputs"), Some(false), "{st:?}");
        assert_eq!(secure_of(&st, "cursor"), Some(false), "{st:?}");
        assert!(s.error().is_none(), "{:?}", s.error());

        let mut cfg = ClientConfig::new("localhost", 16350);
        cfg.tls_port = 16351;
        cfg.ca_file = Some(ca.clone());
        cfg.secure_channels = SecureChannels::Only(vec![chan::INPUTS]);
        let s = Session::connect(cfg).await.expect("connect to QEMU again");
        let t0 = std::time::Instant::now();
        while s.stats().len() < 4 && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let st = s.stats();
        assert_eq!(secure_of(&st, "inputs"), Some(true), "{st:?}");
        assert_eq!(secure_of(&st, "cursor"), Some(false), "{st:?}");
    });
    drop(both);

    // TLS only.
    let Some(_q) = start_qemu_spice(
        &format!("tls-port=16352,addr=127.0.0.1,disable-ticketing=on,x509-dir={x509}"),
        16352,
    ) else {
        return;
    };
    let mut cfg = ClientConfig::tls("localhost", 16352);
    cfg.ca_file = Some(ca);
    cfg.all_channels = false;
    let opts = CaptureOptions {
        quiet: Duration::from_millis(300),
        settle: Duration::from_millis(1000),
        timeout: Duration::from_secs(30),
        lossy_quiet: None,
    };
    // SeaBIOS needs a moment to draw text; an all-black frame proves little.
    for _ in 0..20 {
        let c = capture(cfg.clone(), &opts).expect("capture QEMU over TLS");
        assert!(c.stats.iter().all(|s| s.secure), "{:?}", c.stats);
        let colours: std::collections::HashSet<u32> =
            c.screen.data.iter().map(|p| p & 0xffffff).collect();
        if colours.len() >= 2 {
            eprintln!(
                "QEMU over TLS: {}x{} with {} colours",
                c.screen.width,
                c.screen.height,
                colours.len()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("QEMU's screen stayed blank over TLS");
}
