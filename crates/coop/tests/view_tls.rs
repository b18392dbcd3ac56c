//! `coop view` over TLS against `coop spice serve --tls-port`: a spice+tls:// URI
//! gets the X server's exact pixels with every channel over TLS; a wrong CA and a
//! wrong --host-subject fail with a message naming the host and the reason;
//! `spice://HOST?port=P&tls-port=T` stays plain unless --secure-channels asks for TLS.
//!
//! Certificates come from `openssl` at test time. X display :187, ports 16320-16321.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, have, ppm_pixels};

/// Kills and reaps a child on drop.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA and a server certificate for DNS:localhost signed by it, and another CA.
fn make_pki(d: &Path) {
    let script = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
openssl req -x509 -nodes -days 2 $ec -keyout ca-key.pem -out ca.pem -subj "/CN=coop view test CA"
openssl req -x509 -nodes -days 2 $ec -keyout other-key.pem -out other-ca.pem -subj "/CN=unrelated CA"
openssl req -nodes $ec -keyout server-key.pem -out server.csr -subj "/C=XX/O=coop tests/CN=coop view server"
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile ext.cnf -out server-cert.pem
"#;
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn view(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("view")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn x_ok(display: &str, cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .env("DISPLAY", display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_port(port: u16) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn coop_view_over_tls_gets_exact_pixels_and_refuses_bad_certificates() {
    for b in ["openssl", "Xvfb", "xsetroot", "import"] {
        if !have(b) {
            eprintln!("SKIP: {b} is not installed");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let display = ":187";
    let _x = Guard(
        Command::new("Xvfb")
            .args([
                display,
                "-screen",
                "0",
                "800x600x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while !x_ok(display, "xsetroot", &["-solid", "black"]) {
        assert!(t0.elapsed() < Duration::from_secs(15), "Xvfb did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(x_ok(
        display,
        "xsetroot",
        &["-mod", "5", "3", "-fg", "#3a7d44", "-bg", "#efe6dd"]
    ));
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let _server = Guard(
        Command::new(bin())
            .args(["spice", "serve", "--x11", display, "--port", "16320"])
            .args(["--tls-port", "16321", "--disable-ticketing"])
            .args(["--x509-cert", &p("server-cert.pem")])
            .args(["--x509-key", &p("server-key.pem")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_port(16320) && wait_port(16321),
        "coop spice serve did not listen"
    );

    // TLS only: every channel over TLS, exact pixels.
    let shot = p("tls.ppm");
    let o = view(&[
        "spice+tls://localhost:16321",
        "--ca-file",
        &p("ca.pem"),
        "--screenshot",
        &shot,
        "--stats",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "coop view over TLS failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let channels: Vec<&str> = stdout.lines().filter(|l| l.contains(" bytes")).collect();
    assert!(channels.len() >= 2, "{stdout}");
    assert!(channels.iter().all(|l| l.contains("(TLS)")), "{stdout}");
    assert!(x_ok(
        display,
        "import",
        &["-window", "root", "-depth", "8", &p("root.ppm")]
    ));
    let (ours, reference) = (
        ppm_pixels(Path::new(&shot)),
        ppm_pixels(&d.join("root.ppm")),
    );
    assert_eq!(ours.len(), 800 * 600);
    let differ = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} pixels differ from the X server's");

    // A CA that did not sign the certificate.
    let o = view(&[
        "spice://localhost?tls-port=16321",
        "--ca-file",
        &p("other-ca.pem"),
        "--screenshot",
        &p("no.ppm"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("TLS with localhost") && err.contains("unknown issuer"),
        "{err}"
    );
    assert!(!d.join("no.ppm").exists());

    // The host subject decides instead of the name: right subject via 127.0.0.1
    // (not in the certificate) works, a wrong one is refused.
    let by_subject = |cn: &str, out: &str| {
        view(&[
            "-h",
            "127.0.0.1",
            "--tls-port",
            "16321",
            "--ca-file",
            &p("ca.pem"),
            "--host-subject",
            &format!("C=XX,O=coop tests,CN={cn}"),
            "--screenshot",
            &p(out),
        ])
    };
    let o = by_subject("coop view server", "subject.ppm");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = by_subject("impostor", "no.ppm");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("127.0.0.1") && err.contains("does not match") && err.contains("impostor"),
        "{err}"
    );

    // Both ports: plain by default, TLS for the channels --secure-channels names.
    for (secure, want_tls) in [(None, false), (Some("all"), true)] {
        let (ca, out) = (p("ca.pem"), p("both.ppm"));
        let mut args = vec![
            "spice://localhost?port=16320&tls-port=16321",
            "--ca-file",
            &ca,
            "--screenshot",
            &out,
            "--stats",
        ];
        if let Some(s) = secure {
            args.extend(["--secure-channels", s]);
        }
        let o = view(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let channels: Vec<&str> = stdout.lines().filter(|l| l.contains(" bytes")).collect();
        assert!(channels.len() >= 2, "{stdout}");
        assert!(
            channels.iter().all(|l| l.contains("(TLS)") == want_tls),
            "--secure-channels {secure:?}: {stdout}"
        );
    }
    let o = view(&[
        "spice://localhost:16320",
        "--secure-channels",
        "all",
        "--screenshot",
        &p("x.ppm"),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs a TLS port"));
}
