//! Password-protected GUI containers (`coop.display.spice.password-file`,
//! `coop start --spice-password-file`) and `coop spice handover -n NAME` moving a real
//! client (remote-viewer) from one GUI container's display to another's, by switch
//! host and by semi-seamless migration (`--to-name`).
//!
//! Ports 5990-5995, containers named `so-…`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn need_tools(tools: &[&str]) -> bool {
    for t in tools {
        if !have(t) {
            eprintln!("SKIP: {t} not installed");
            return false;
        }
    }
    true
}

/// A busybox GUI container with the host's /usr (X clients such as xsetroot).
fn gui_container(c: &Coop, name: &str, extra: &str) {
    let dir = c.busybox(
        name,
        &format!("lxc.mount.entry = /usr usr none ro,bind 0 0\n{extra}"),
    );
    for l in ["lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), dir.join("rootfs").join(l)).unwrap();
    }
}

fn set_root_colour(c: &Coop, name: &str, colour: &str) {
    c.ok(&[
        "attach",
        "-n",
        name,
        "--",
        "/usr/bin/xsetroot",
        "-solid",
        colour,
    ]);
}

/// `coop view --screenshot` with a password file; (exit code, stderr).
fn view(c: &Coop, port: u16, pw: &Path, out: &Path) -> (i32, String) {
    let o = c
        .cmd()
        .args([
            "view",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--timeout",
            "20",
        ])
        .arg("--password-file")
        .arg(pw)
        .arg("--screenshot")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every pixel of a binary PPM is `rgb`.
fn ppm_all(p: &Path, rgb: [u8; 3]) -> bool {
    let d = std::fs::read(p).unwrap();
    let Some(end) = d.windows(4).position(|w| w == b"255\n") else {
        return false;
    };
    let px = &d[end + 4..];
    !px.is_empty() && px.chunks(3).all(|p| p == rgb)
}

#[test]
fn password_protected_gui_container_refuses_wrong_password_and_serves_the_right_one() {
    if !need_root() || !need_tools(&["Xvfb", "xsetroot"]) {
        return;
    }
    let c = Coop::new();
    let pw = c.root.path().join("spice-pw");
    std::fs::write(&pw, "so-Secr3t\n").unwrap();
    let wrong = c.root.path().join("wrong-pw");
    std::fs::write(&wrong, "nope\n").unwrap();

    // Without a password a non-loopback address is refused, naming the way out.
    let open = "so-open";
    gui_container(&c, open, "");
    let e = c.fails(&["start", "-n", open, "--spice", "0.0.0.0:5990"]);
    assert!(e.contains("without a password"), "{e}");
    assert!(e.contains("password-file"), "{e}");
    // A password without a display to protect is a mistake worth saying.
    let e = c.fails(&[
        "start",
        "-n",
        open,
        "--spice-password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(e.contains("no display to serve"), "{e}");
    // A relative password-file path in the config is a bad value naming file, line, key.
    let rel = "so-rel";
    let cfg = c.root.path().join("rel.conf");
    std::fs::write(
        &cfg,
        "lxc.net.0.type = empty\ncoop.display.spice.password-file = pw.txt\n",
    )
    .unwrap();
    c.track(rel);
    let e = c.fails(&[
        "create",
        "-n",
        rel,
        "-t",
        "busybox",
        "-f",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        e.contains("rel.conf:2") && e.contains("coop.display.spice.password-file"),
        "{e}"
    );

    // The config key: ticketing on, so any address is allowed.
    let n = "so-pw";
    gui_container(
        &c,
        n,
        &format!(
            "coop.display.spice = 0.0.0.0:5991\ncoop.display.spice.password-file = {}\n",
            pw.display()
        ),
    );
    c.ok(&["start", "-n", n]);
    let info = c.info(n);
    assert_eq!(info["spice"], "0.0.0.0:5991");
    assert_eq!(info["spice_password_required"], true);
    let text = c.ok(&["info", "-n", n]);
    assert!(text.contains("SPICE password: required"), "{text}");
    assert!(
        !text.contains("so-Secr3t"),
        "info shows the password: {text}"
    );
    assert!(!serde_json::to_string(&info).unwrap().contains("so-Secr3t"));
    set_root_colour(&c, n, "#5522cc");

    let shot = c.root.path().join("shot.ppm");
    let (code, err) = view(&c, 5991, &wrong, &shot);
    assert_eq!(code, 2, "wrong password: exit {code}, {err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!shot.exists());
    let (code, err) = view(&c, 5991, &pw, &shot);
    assert_eq!(code, 0, "right password: {err}");
    assert!(
        ppm_all(&shot, [0x55, 0x22, 0xcc]),
        "screenshot is not the container's screen"
    );
    c.ok(&["stop", "-k", "-n", n]);

    // The command-line flag, with a relative path (made absolute for the monitor).
    let m = "so-pwflag";
    gui_container(&c, m, "");
    let o = c
        .cmd()
        .current_dir(c.root.path())
        .args([
            "start",
            "-n",
            m,
            "--spice",
            "127.0.0.1:5992",
            "--spice-password-file",
            "spice-pw",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(c.info(m)["spice_password_required"], true);
    let (code, err) = view(&c, 5992, &wrong, &shot);
    assert_eq!(code, 2, "{err}");
    let (code, err) = view(&c, 5992, &pw, &shot);
    assert_eq!(code, 0, "{err}");
    c.ok(&["stop", "-k", "-n", m]);
    assert_eq!(leftovers(&c, m), Vec::<String>::new());
    // A password file that is missing stops the start with its name.
    let e = c.fails(&[
        "start",
        "-n",
        m,
        "--spice",
        "127.0.0.1:5992",
        "--spice-password-file",
        "/nonexistent/so-pw",
    ]);
    assert!(e.contains("/nonexistent/so-pw"), "{e}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Established connections of processes named `comm` to 127.0.0.1:`port`.
fn connections_of(comm: &str, port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(3) == Some(&format!("127.0.0.1:{port}").as_str())
                && l.contains(&format!("((\"{comm}\""))
        })
        .count()
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// Asserts that remote-viewer moved from container `from` to `to` (name, SPICE port):
/// within 10 s its channels link to `to` only and `from`'s server has no session left;
/// `to`'s has one. `what` names the move in the messages.
fn assert_viewer_moved(c: &Coop, what: &str, from: (&str, u16), to: (&str, u16)) {
    assert!(
        wait_for(Duration::from_secs(10), || connections_of(
            "remote-viewer",
            to.1
        ) >= 3
            && connections_of("remote-viewer", from.1) == 0),
        "after {what} remote-viewer has {} connections to {} and {} to {}",
        connections_of("remote-viewer", to.1),
        to.0,
        connections_of("remote-viewer", from.1),
        from.0
    );
    assert!(
        wait_for(Duration::from_secs(10), || c
            .ok(&["spice", "status", "-n", from.0])
            .contains("sessions=0")),
        "{} still has a session",
        from.0
    );
    let st = c.ok(&["spice", "status", "-n", to.0]);
    assert!(st.contains("sessions=1"), "{}: {st}", to.0);
}

#[test]
fn spice_handover_moves_remote_viewer_between_gui_containers() {
    if !need_root() || !need_tools(&["Xvfb", "xsetroot", "remote-viewer", "ss"]) {
        return;
    }
    let c = Coop::new();
    let pw = c.root.path().join("pw");
    std::fs::write(&pw, "so-hand\n").unwrap();
    let (a, b) = ("so-hoa", "so-hob");
    for (n, port) in [(a, 5993), (b, 5994)] {
        gui_container(
            &c,
            n,
            &format!(
                "coop.display.spice = 127.0.0.1:{port}\ncoop.display.spice.password-file = {}\n",
                pw.display()
            ),
        );
        c.ok(&["start", "-n", n]);
    }
    set_root_colour(&c, b, "#11cc99");

    // remote-viewer, with the password, on container A's display.
    let xv = Killed(
        Command::new("Xvfb")
            .args([":160", "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(Duration::from_secs(10), || Path::new(
        "/tmp/.X11-unix/X160"
    )
    .exists()));
    let vv = c.root.path().join("a.vv");
    std::fs::write(
        &vv,
        "[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=5993\npassword=so-hand\n",
    )
    .unwrap();
    let _viewer = Killed(
        Command::new("remote-viewer")
            .arg(&vv)
            .env("DISPLAY", ":160")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(Duration::from_secs(20), || connections_of(
            "remote-viewer",
            5993
        ) >= 3),
        "remote-viewer did not link to A"
    );

    let out = c.ok(&["spice", "handover", "-n", a, "--to", "127.0.0.1:5994"]);
    assert!(out.contains("told 1 client(s)"), "{out}");
    // A is left with no client, B has it: ask their servers.
    assert_viewer_moved(&c, "the hand-over", (a, 5993), (b, 5994));
    // Back to A semi-seamlessly: A is told the session id to expect, remote-viewer
    // links to A while still on B, then B lets it go.
    let out = c.ok(&["spice", "handover", "-n", b, "--to-name", a]);
    assert!(
        out.contains("migrated=1 switched=0 lost=0"),
        "semi-seamless hand-over: {out}"
    );
    assert_viewer_moved(&c, "the migration", (b, 5994), (a, 5993));
    drop(xv);
    for n in [a, b] {
        c.ok(&["stop", "-k", "-n", n]);
        assert_eq!(leftovers(&c, n), Vec::<String>::new());
    }
}
