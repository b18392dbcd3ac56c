//! Integration tests against real X servers: Xvfb, and Xorg with the spiceqxl driver when
//! installed. Each test starts its own server, on a display number the server picks
//! itself via `-displayfd`, and stops it on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coop_display::{driver, DisplayError, DisplaySource, Rect, SourceEvent, X11Source};

struct XServer {
    child: Child,
    display: String,
}

impl Drop for XServer {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// SIGTERM first so X servers remove their lock file and socket, SIGKILL if they linger.
fn terminate(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills a helper process (xterm, xclip, xev, xlogo) when the test ends, even on failure.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Starts Xvfb with one 24-bit screen, or returns None (after printing SKIP) when the
/// tools are missing.
fn xvfb(w: u32, h: u32, tools: &[&str]) -> Option<XServer> {
    xvfb_with(w, h, tools, &[])
}

fn xvfb_with(w: u32, h: u32, tools: &[&str], extra: &[&str]) -> Option<XServer> {
    for t in std::iter::once(&"Xvfb").chain(tools) {
        if !have(t) {
            eprintln!("SKIP: {t} not installed (apt-get install xvfb x11-apps x11-xserver-utils xterm xdotool imagemagick xclip)");
            return None;
        }
    }
    // -noreset: otherwise the server resets (root background and all) whenever its last
    // client leaves, e.g. between two xsetroot runs.
    let mut cmd = Command::new("Xvfb");
    cmd.args(["-nolisten", "tcp", "-noreset", "-screen", "0"])
        .arg(format!("{w}x{h}x24"))
        .args(extra);
    let (child, n) = start_x_server(cmd).expect("Xvfb did not report a display number");
    Some(XServer {
        child,
        display: format!(":{n}"),
    })
}

/// Starts an X server with `-displayfd` on a pipe of its own and returns it with the
/// display number it chose. Not stdout: the server closes that fd after writing, so
/// the next client connection would become its fd 1 and anything the server (or a
/// driver) prints would corrupt that client's protocol stream.
fn start_x_server(mut cmd: Command) -> Option<(Child, u32)> {
    // Parallel servers with -displayfd can race for the same number: one at a time.
    static START: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = START.lock().unwrap_or_else(|e| e.into_inner());
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array; the result is checked.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned here from now on.
    let (rd, wr) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    // The child must inherit the write end: clear its close-on-exec flag.
    // SAFETY: fcntl on a descriptor we own.
    assert_eq!(unsafe { libc::fcntl(fds[1], libc::F_SETFD, 0) }, 0);
    let mut child = cmd
        .arg("-displayfd")
        .arg(fds[1].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn X server");
    drop(wr);
    let mut line = String::new();
    let _ = BufReader::new(rd).read_line(&mut line);
    match line.trim().parse::<u32>() {
        Ok(n) => Some((child, n)),
        Err(_) => {
            terminate(&mut child);
            None
        }
    }
}

fn run(x: &XServer, prog: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(prog)
        .args(args)
        .env("DISPLAY", &x.display)
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn(x: &XServer, prog: &str, args: &[&str]) -> Proc {
    Proc(
        Command::new(prog)
            .args(args)
            .env("DISPLAY", &x.display)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prog}: {e}")),
    )
}

/// Collects events until `done` says so or `limit` passes.
fn events_until(
    src: &mut X11Source,
    limit: Duration,
    mut done: impl FnMut(&[SourceEvent]) -> bool,
) -> Vec<SourceEvent> {
    let end = Instant::now() + limit;
    let mut all = Vec::new();
    while Instant::now() < end {
        all.extend(src.next_events(Duration::from_millis(50)).unwrap());
        if done(&all) {
            break;
        }
    }
    all
}

fn damage_rects(ev: &[SourceEvent]) -> Vec<Rect> {
    ev.iter()
        .filter_map(|e| match e {
            SourceEvent::Damage(r) => Some(r.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// True when every pixel of `area` lies in one of `rects`.
fn covered(rects: &[Rect], area: Rect) -> bool {
    (area.y..area.bottom()).all(|y| {
        (area.x..area.right()).all(|x| rects.iter().any(|r| r.contains(&Rect::new(x, y, 1, 1))))
    })
}

fn wait_for_window(x: &XServer, class: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let out = Command::new("xdotool")
            .args(["search", "--onlyvisible", "--class", class])
            .env("DISPLAY", &x.display)
            .output()
            .unwrap();
        if out.status.success() && !out.stdout.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("window of class {class} never appeared");
}

#[test]
fn capture_solid_colour_shm_and_getimage() {
    let Some(x) = xvfb(320, 200, &["xsetroot"]) else {
        return;
    };
    let mut src = X11Source::connect(&x.display).unwrap();
    assert_eq!(src.size(), (320, 200));
    run(&x, "xsetroot", &["-solid", "#123456"]);
    for shm in [true, false] {
        if shm && src.set_shm(true).is_err() {
            eprintln!("SKIP (part): MIT-SHM not usable on this Xvfb");
            continue;
        }
        src.set_shm(shm).unwrap();
        assert_eq!(src.uses_shm(), shm);
        let f = src.capture_full().unwrap();
        assert_eq!((f.width, f.height, f.stride), (320, 200, 1280));
        assert_eq!(f.data.len(), 320 * 200 * 4);
        for y in 0..200 {
            for xx in 0..320 {
                assert_eq!(f.pixel(xx, y), Some(0x123456), "pixel {xx},{y} shm={shm}");
            }
        }
        // BGRX byte order in memory.
        assert_eq!(&f.data[0..3], &[0x56, 0x34, 0x12]);
        let mut part = Vec::new();
        src.capture(Rect::new(310, 190, 10, 10), &mut part).unwrap();
        assert_eq!(part.len(), 400);
        assert!(part.chunks(4).all(|p| p[..3] == [0x56, 0x34, 0x12]));
    }
    let err = src
        .capture(Rect::new(300, 190, 30, 5), &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, DisplayError::OutOfBounds { .. }), "{err}");
}

#[test]
fn capture_matches_imagemagick_import() {
    let Some(x) = xvfb(400, 300, &["xsetroot", "import", "xlogo", "xdotool"]) else {
        return;
    };
    // A plaid root pattern in two colours, plus an xlogo window on top.
    run(
        &x,
        "xsetroot",
        &[
            "-bitmap",
            "/usr/include/X11/bitmaps/xlogo16",
            "-fg",
            "#ff8000",
            "-bg",
            "#0040c0",
        ],
    );
    let _logo = spawn(
        &x,
        "xlogo",
        &["-geometry", "120x90+30+40", "-fg", "#22cc44"],
    );
    wait_for_window(&x, "XLogo");
    std::thread::sleep(Duration::from_millis(300));
    let mut src = X11Source::connect(&x.display).unwrap();
    let f = src.capture_full().unwrap();
    let out = run(&x, "import", &["-window", "root", "-depth", "8", "rgb:-"]);
    assert_eq!(out.stdout.len(), 400 * 300 * 3, "import output size");
    let mut diffs = 0;
    for (i, rgb) in out.stdout.chunks(3).enumerate() {
        let want = u32::from(rgb[0]) << 16 | u32::from(rgb[1]) << 8 | u32::from(rgb[2]);
        let got = f.pixel(i as u32 % 400, i as u32 / 400).unwrap();
        if want != got {
            diffs += 1;
        }
    }
    assert_eq!(diffs, 0, "pixels differing from import");
    // The pattern really is a pattern (both colours present), so the test can fail.
    let colours: std::collections::HashSet<u32> = (0..400)
        .flat_map(|xx| (0..300).map(move |y| (xx, y)))
        .map(|(xx, y)| f.pixel(xx, y).unwrap())
        .collect();
    assert!(
        colours.contains(&0xff8000) && colours.contains(&0x0040c0),
        "{colours:?}"
    );
}

#[test]
fn damage_reports_root_paint_and_new_window() {
    let Some(x) = xvfb(640, 480, &["xsetroot", "xlogo", "xdotool"]) else {
        return;
    };
    let mut src = X11Source::connect(&x.display).unwrap();
    // Drain the start-up events (cursor shape/position).
    let _ = src.next_events(Duration::from_millis(100)).unwrap();
    let quiet = src.next_events(Duration::from_millis(200)).unwrap();
    assert!(
        damage_rects(&quiet).is_empty(),
        "unexpected damage: {quiet:?}"
    );

    run(&x, "xsetroot", &["-solid", "red"]);
    let ev = events_until(&mut src, Duration::from_secs(5), |e| {
        covered(&damage_rects(e), Rect::new(0, 0, 640, 480))
    });
    let rects = damage_rects(&ev);
    assert!(covered(&rects, Rect::new(0, 0, 640, 480)), "{rects:?}");
    assert!(rects.iter().all(|r| r.right() <= 640 && r.bottom() <= 480));

    let _ = src.next_events(Duration::from_millis(100)).unwrap();
    let _logo = spawn(&x, "xlogo", &["-geometry", "100x80+200+150"]);
    let win = Rect::new(200, 150, 100, 80);
    let ev = events_until(&mut src, Duration::from_secs(10), |e| {
        covered(&damage_rects(e), win)
    });
    let rects = damage_rects(&ev);
    assert!(
        covered(&rects, win),
        "xlogo window not covered by {rects:?}"
    );
    // The damage stays local: most of the screen is not reported.
    let area: u64 = rects.iter().map(|r| r.area()).sum();
    assert!(area < 640 * 480 / 4, "damage too large: {rects:?}");
}

#[test]
fn keyboard_types_into_xterm() {
    let Some(x) = xvfb(640, 480, &["xterm", "xdotool"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("typed");
    let script = format!("read x; echo \"$x\" > {}", out_file.display());
    let _term = spawn(
        &x,
        "xterm",
        &["-geometry", "40x5+0+0", "-e", "sh", "-c", &script],
    );
    wait_for_window(&x, "XTerm");
    std::thread::sleep(Duration::from_millis(300));
    let mut src = X11Source::connect(&x.display).unwrap();
    // No window manager: focus follows the pointer (PointerRoot), so park it on xterm.
    src.pointer_abs(50, 30, 0).unwrap();
    // "Hello" with shift, then Enter; plus an extended key pair (Right Ctrl) in the
    // spice-gtk wire form, which must not type anything. Releases use the 0x80 form.
    let shift = 0x2a;
    let keys: &[(u32, bool)] = &[
        (shift, true),
        (0x23, true),
        (0x23, false),
        (shift, false),
        (0x12, true),
        (0x12, false),
        (0x26, true),
        (0x26, false),
        (0x26, true),
        (0x26, false),
        (0x18, true),
        (0x18, false),
        (0x1de0, true),
        (0x9de0, false),
        // Left arrow (E0 4B) as spice-gtk sends it, then 'x' (release as 0xad): `read`
        // has no line editing, so xterm's Left sequence ESC [ D lands in the line.
        (0x4be0, true),
        (0xcbe0, false),
        (0x2d, true),
        (0xad, false),
        (0x1c, true),
        (0x1c, false),
    ];
    for &(code, down) in keys {
        src.key(code, down).unwrap();
    }
    let end = Instant::now() + Duration::from_secs(10);
    while !Path::new(&out_file).exists() && Instant::now() < end {
        let _ = src.next_events(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let text = std::fs::read_to_string(&out_file).expect("xterm never wrote the typed line");
    assert_eq!(text, "Hello\u{1b}[Dx\n");
    assert!(matches!(
        src.key(0x55, true),
        Err(DisplayError::InvalidArgument(_))
    ));
}

#[test]
fn pointer_and_buttons() {
    let Some(x) = xvfb(640, 480, &["xdotool", "xev"]) else {
        return;
    };
    let mut xev = Command::new("xev")
        .args(["-root", "-event", "button"])
        .env("DISPLAY", &x.display)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = xev.stdout.take().unwrap();
    let _xev = Proc(xev);
    std::thread::sleep(Duration::from_millis(400));
    let mut src = X11Source::connect(&x.display).unwrap();

    src.pointer_abs(123, 45, 0).unwrap();
    let loc = run(&x, "xdotool", &["getmouselocation"]);
    let loc = String::from_utf8_lossy(&loc.stdout);
    assert!(loc.starts_with("x:123 y:45 "), "{loc}");
    let ev = events_until(&mut src, Duration::from_secs(2), |e| {
        e.contains(&SourceEvent::CursorMoved { x: 123, y: 45 })
    });
    assert!(
        ev.contains(&SourceEvent::CursorMoved { x: 123, y: 45 }),
        "{ev:?}"
    );

    src.pointer_rel(10, -5, 0).unwrap();
    let loc = run(&x, "xdotool", &["getmouselocation"]);
    assert!(String::from_utf8_lossy(&loc.stdout).starts_with("x:133 y:40 "));

    // Right button via the mask, then a wheel-down click via button().
    src.pointer_abs(200, 100, 4).unwrap();
    src.pointer_abs(200, 100, 0).unwrap();
    src.button(5, true).unwrap();
    src.button(5, false).unwrap();
    assert!(src.button(9, true).is_err());

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut r = BufReader::new(stdout);
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    let _ = tx.send(text.clone());
                }
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(5);
    let mut seen = String::new();
    while Instant::now() < end {
        if let Ok(t) = rx.recv_timeout(Duration::from_millis(100)) {
            seen = t;
        }
        if seen.matches("button 5,").count() >= 2 {
            break;
        }
    }
    assert!(seen.contains("ButtonPress event"), "{seen}");
    assert!(seen.contains("ButtonRelease event"), "{seen}");
    assert!(seen.contains("button 3,"), "{seen}");
    assert_eq!(seen.matches("button 5,").count(), 2, "{seen}");
    assert!(seen.contains("root 0x"), "{seen}");
}

fn shapes(ev: &[SourceEvent]) -> Vec<coop_display::Cursor> {
    ev.iter()
        .filter_map(|e| match e {
            SourceEvent::CursorShape(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn cursor_shape_follows_window_under_pointer() {
    let Some(x) = xvfb(320, 240, &["xterm", "xdotool"]) else {
        return;
    };
    let _term = spawn(&x, "xterm", &["-geometry", "20x5+0+0"]);
    wait_for_window(&x, "XTerm");
    let mut src = X11Source::connect(&x.display).unwrap();
    src.pointer_abs(300, 200, 0).unwrap();
    let first = events_until(&mut src, Duration::from_millis(500), |_| false);
    let root = shapes(&first).pop().expect("no initial cursor shape");
    assert!(root.width > 0 && root.argb.len() == (root.width * root.height) as usize);

    // Over xterm the X server shows xterm's I-beam cursor.
    src.pointer_abs(30, 30, 0).unwrap();
    let ev = events_until(&mut src, Duration::from_secs(5), |e| !shapes(e).is_empty());
    let beam = shapes(&ev).pop().expect("no CursorShape over xterm");
    assert_ne!(beam.serial, root.serial);
    assert_ne!(beam.argb, root.argb);
    assert!(beam.hot_x < beam.width && beam.hot_y < beam.height);
    assert!(
        beam.argb.iter().any(|p| p >> 24 == 0xff),
        "I-beam has opaque pixels"
    );
    // Premultiplied: no colour channel exceeds alpha.
    assert!(beam
        .argb
        .iter()
        .all(|p| ((p >> 16) & 0xff).max((p >> 8) & 0xff).max(p & 0xff) <= p >> 24));

    // Back on the root window: the root cursor again.
    src.pointer_abs(300, 200, 0).unwrap();
    let ev = events_until(&mut src, Duration::from_secs(5), |e| !shapes(e).is_empty());
    let back = shapes(&ev).pop().expect("no CursorShape back on root");
    assert_eq!(back.argb, root.argb);
}

#[test]
fn cursor_shape_after_xsetroot() {
    // With the SECURITY extension, Xorg refuses GetCursorImage (BadAccess) once the
    // cursor's creator has exited, which xsetroot does at once: test both set-ups.
    for security in [false, true] {
        let extra: &[&str] = if security {
            &[]
        } else {
            &["-extension", "SECURITY"]
        };
        let Some(x) = xvfb_with(320, 240, &["xsetroot"], extra) else {
            return;
        };
        let mut src = X11Source::connect(&x.display).unwrap();
        let first = src.next_events(Duration::from_millis(200)).unwrap();
        let initial = shapes(&first).pop().expect("no initial cursor shape");
        run(&x, "xsetroot", &["-cursor_name", "watch"]);
        let ev = events_until(&mut src, Duration::from_secs(2), |e| !shapes(e).is_empty());
        match shapes(&ev).pop() {
            Some(watch) => {
                assert_ne!(watch.argb, initial.argb);
                assert_ne!(watch.serial, initial.serial);
                assert!(watch.width >= 16 && watch.height >= 16, "{watch:?}");
                assert!(watch.argb.iter().any(|p| p >> 24 == 0xff));
            }
            None if security => eprintln!(
                "NOTE: with SECURITY the X server refused the cursor image of exited \
                 xsetroot (expected Xorg behaviour); the source kept running"
            ),
            None => panic!("no CursorShape after xsetroot -cursor_name watch: {ev:?}"),
        }
        // The source survives either way.
        src.next_events(Duration::from_millis(50)).unwrap();
        src.capture_full().unwrap();
    }
}

#[test]
fn clipboard_both_directions() {
    let Some(x) = xvfb(320, 240, &["xclip"]) else {
        return;
    };
    let mut src = X11Source::connect(&x.display).unwrap();
    let _ = src.next_events(Duration::from_millis(50)).unwrap();

    // Ours → X client.
    let text = "héllo from coop ✓";
    src.set_clipboard("text/plain;charset=utf-8", text.as_bytes())
        .unwrap();
    let reader = Command::new("xclip")
        .args(["-o", "-selection", "clipboard"])
        .env("DISPLAY", &x.display)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = std::sync::Arc::new(std::sync::Mutex::new(Some(reader)));
    let mut output = None;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && output.is_none() {
        let _ = src.next_events(Duration::from_millis(20)).unwrap();
        let mut guard = reader.lock().unwrap();
        if let Some(st) = guard.as_mut().unwrap().try_wait().unwrap() {
            assert!(st.success());
            output = Some(guard.take().unwrap().wait_with_output().unwrap().stdout);
        }
    }
    if let Some(mut c) = reader.lock().unwrap().take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(
        String::from_utf8(output.expect("xclip -o hung")).unwrap(),
        text
    );

    // X client → ours.
    let mut writer = Command::new("xclip")
        .args(["-quiet", "-selection", "clipboard"])
        .env("DISPLAY", &x.display)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writer
        .stdin
        .take()
        .unwrap()
        .write_all(b"hi there\n")
        .unwrap();
    let _writer = Proc(writer);
    let ev = events_until(&mut src, Duration::from_secs(5), |e| {
        e.iter()
            .any(|e| matches!(e, SourceEvent::ClipboardChanged { .. }))
    });
    let got = ev.iter().find_map(|e| match e {
        SourceEvent::ClipboardChanged { mime, data } => Some((mime.clone(), data.clone())),
        _ => None,
    });
    assert_eq!(
        got,
        Some((
            "text/plain;charset=utf-8".to_string(),
            b"hi there\n".to_vec()
        ))
    );
    assert!(src.set_clipboard("text/plain", &[0xff, 0xfe]).is_err());
}

fn geometry(x: &XServer) -> String {
    String::from_utf8(run(x, "xdotool", &["getdisplaygeometry"]).stdout)
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn resize_via_randr() {
    let Some(x) = xvfb(800, 600, &["xdotool", "xsetroot"]) else {
        return;
    };
    let mut src = X11Source::connect(&x.display).unwrap();
    if !src.has_randr() {
        eprintln!("SKIP: this X server has no RANDR 1.2");
        return;
    }
    run(&x, "xsetroot", &["-solid", "#336699"]);
    src.resize(800, 600).unwrap(); // same size: no-op
    let _ = src.next_events(Duration::from_millis(100)).unwrap();
    if let Err(e) = src.resize(640, 480) {
        assert_eq!(src.size(), (800, 600));
        eprintln!("SKIP: this Xvfb cannot resize ({e}); RANDR resize is untested here");
        return;
    }
    assert_eq!(src.size(), (640, 480));
    assert_eq!(geometry(&x), "640 480");
    let ev = events_until(&mut src, Duration::from_secs(2), |e| {
        e.contains(&SourceEvent::Resized {
            width: 640,
            height: 480,
        })
    });
    assert!(
        ev.contains(&SourceEvent::Resized {
            width: 640,
            height: 480
        }),
        "{ev:?}"
    );
    for shm in [true, false] {
        if src.set_shm(shm).is_err() {
            continue;
        }
        let f = src.capture_full().unwrap();
        assert_eq!((f.width, f.height, f.data.len()), (640, 480, 640 * 480 * 4));
        assert_eq!(f.pixel(639, 479), Some(0x336699));
    }
    // Back to the original size, through the mode that already exists.
    src.resize(800, 600).unwrap();
    assert_eq!(geometry(&x), "800 600");
    assert_eq!(src.capture_full().unwrap().pixel(799, 599), Some(0x336699));
    // Xvfb's framebuffer cannot grow past its -screen size: a clear error.
    let err = src.resize(1024, 768).unwrap_err();
    assert!(matches!(err, DisplayError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("1024x768"), "{err}");
    assert_eq!(src.size(), (800, 600));
}

#[test]
fn driver_thread_delivers_events_and_applies_input() {
    let Some(x) = xvfb(320, 240, &["xsetroot", "xdotool"]) else {
        return;
    };
    let src = X11Source::connect(&x.display).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = driver::spawn(Box::new(src), move |ev| tx.send(ev).is_ok());
    assert_eq!(handle.size().unwrap(), (320, 240));
    run(&x, "xsetroot", &["-solid", "#00ff00"]);
    let end = Instant::now() + Duration::from_secs(5);
    let mut rects = Vec::new();
    while Instant::now() < end && !covered(&rects, Rect::new(0, 0, 320, 240)) {
        if let Ok(ev) = rx.recv_timeout(Duration::from_millis(100)) {
            rects.extend(damage_rects(&ev.unwrap()));
        }
    }
    assert!(covered(&rects, Rect::new(0, 0, 320, 240)), "{rects:?}");
    assert_eq!(handle.capture_full().unwrap().pixel(5, 5), Some(0x00ff00));
    let t0 = Instant::now();
    handle.pointer_abs(77, 66, 0).unwrap();
    // A round trip through the thread proves the queued motion was applied.
    handle.size().unwrap();
    let latency = t0.elapsed();
    let loc = run(&x, "xdotool", &["getmouselocation"]);
    assert!(String::from_utf8_lossy(&loc.stdout).starts_with("x:77 y:66 "));
    eprintln!("driver: input + round trip applied in {latency:?}");
    assert!(
        latency < Duration::from_millis(400),
        "wake-up did not work: {latency:?}"
    );
    drop(handle);
}

#[test]
fn bench_capture_full_shm_vs_getimage() {
    let Some(x) = xvfb(1024, 768, &["xsetroot"]) else {
        return;
    };
    run(
        &x,
        "xsetroot",
        &[
            "-bitmap",
            "/usr/include/X11/bitmaps/xlogo16",
            "-fg",
            "#abcdef",
            "-bg",
            "#102030",
        ],
    );
    let mut src = X11Source::connect(&x.display).unwrap();
    let mut results = Vec::new();
    let mut frames = Vec::new();
    for shm in [true, false] {
        if src.set_shm(shm).is_err() {
            eprintln!("SKIP (part): MIT-SHM not usable");
            continue;
        }
        let _ = src.capture_full().unwrap();
        let n = 20;
        let t = Instant::now();
        let mut f = None;
        for _ in 0..n {
            f = Some(src.capture_full().unwrap());
        }
        let per = t.elapsed() / n;
        results.push((if shm { "MIT-SHM" } else { "GetImage" }, per));
        frames.push(f.unwrap());
    }
    for (how, per) in &results {
        eprintln!("BENCH capture_full 1024x768 {how}: {per:?} per frame");
    }
    if frames.len() == 2 {
        assert!(frames[0] == frames[1], "SHM and GetImage frames differ");
    }
}

/// A real Xorg with the spiceqxl driver (the X server inside Xspice): RANDR can grow the
/// screen there, unlike Xvfb. Configuration written for this test; the SPICE port it
/// must name is an unused ephemeral one.
fn xorg_spiceqxl(dir: &Path) -> Option<XServer> {
    let xorg = Path::new("/usr/lib/xorg/Xorg");
    let driver = Path::new("/usr/lib/xorg/modules/drivers/spiceqxl_drv.so");
    if !xorg.exists() || !driver.exists() {
        eprintln!(
            "SKIP: Xorg or its spiceqxl driver is not installed (apt-get install xserver-xspice)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("xorg.conf");
    std::fs::write(
        &conf,
        format!(
            r#"Section "Device"
    Identifier "qxl"
    Driver "spiceqxl"
    Option "SpiceDisableTicketing" "True"
    Option "SpicePort" "{port}"
    Option "SpiceAddr" "127.0.0.1"
    Option "NumHeads" "1"
    Option "SurfaceBufferSize" "128"
    Option "CommandBufferSize" "128"
    Option "FrameBufferSize" "16"
EndSection
Section "InputDevice"
    Identifier "ptr"
    Driver "xspice pointer"
EndSection
Section "InputDevice"
    Identifier "kbd"
    Driver "xspice keyboard"
EndSection
Section "Monitor"
    Identifier "mon"
EndSection
Section "Screen"
    Identifier "scr"
    Monitor "mon"
    Device "qxl"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Virtual 1024 768
        Modes "1024x768"
    EndSubSection
EndSection
Section "ServerLayout"
    Identifier "layout"
    Screen "scr"
    InputDevice "kbd"
    InputDevice "ptr"
EndSection
Section "ServerFlags"
    Option "AutoAddDevices" "False"
EndSection
"#
        ),
    )
    .unwrap();
    let mut cmd = Command::new(xorg);
    cmd.arg("-config")
        .arg(&conf)
        .arg("-logfile")
        .arg(dir.join("Xorg.log"))
        .args(["-noreset", "-nolisten", "tcp"]);
    let Some((child, n)) = start_x_server(cmd) else {
        let log = std::fs::read_to_string(dir.join("Xorg.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        eprintln!("SKIP: Xorg with spiceqxl did not start; log tail: {tail:?}");
        return None;
    };
    Some(XServer {
        child,
        display: format!(":{n}"),
    })
}

#[test]
fn xorg_spiceqxl_capture_and_growing_resize() {
    for t in ["xsetroot", "xdotool", "import", "xlogo"] {
        if !have(t) {
            eprintln!("SKIP: {t} not installed");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(x) = xorg_spiceqxl(dir.path()) else {
        return;
    };
    let mut src = X11Source::connect(&x.display).unwrap();
    assert_eq!(src.size(), (1024, 768));
    assert!(src.has_randr());
    run(&x, "xsetroot", &["-solid", "#445566"]);
    let _logo = spawn(&x, "xlogo", &["-geometry", "150x100+300+200"]);
    wait_for_window(&x, "XLogo");
    std::thread::sleep(Duration::from_millis(300));

    // Pixel-exact against ImageMagick on a real Xorg driver too.
    let f = src.capture_full().unwrap();
    let out = run(&x, "import", &["-window", "root", "-depth", "8", "rgb:-"]);
    assert_eq!(out.stdout.len(), 1024 * 768 * 3);
    let diffs = out
        .stdout
        .chunks(3)
        .enumerate()
        .filter(|(i, p)| {
            let want = u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2]);
            f.pixel(*i as u32 % 1024, *i as u32 / 1024) != Some(want)
        })
        .count();
    assert_eq!(diffs, 0);

    let _ = src.next_events(Duration::from_millis(100)).unwrap();
    // Grow past the configured size (Xvfb cannot), then shrink, then back.
    for (w, h) in [(1280u32, 800u32), (800, 600), (1024, 768)] {
        src.resize(w, h).unwrap();
        assert_eq!(src.size(), (w, h));
        assert_eq!(geometry(&x), format!("{w} {h}"));
        let ev = events_until(&mut src, Duration::from_millis(300), |_| false);
        let resized: Vec<&SourceEvent> = ev
            .iter()
            .filter(|e| matches!(e, SourceEvent::Resized { .. }))
            .collect();
        // Exactly one, with the final size: the intermediate RANDR steps must not leak.
        assert_eq!(
            resized,
            vec![&SourceEvent::Resized {
                width: w,
                height: h
            }],
            "{ev:?}"
        );
        let f = src.capture_full().unwrap();
        assert_eq!((f.width, f.height), (w, h));
        assert_eq!(f.pixel(w - 1, h - 1), Some(0x445566));
    }
}

/// A client's picture kept the way the SPICE server keeps one: damage is collected and
/// captured later (every `flush_every` batches), moves are applied at once.
struct MirrorClient {
    width: u32,
    px: Vec<u8>,
    dirty: Vec<Rect>,
    batches: u32,
    copies: u32,
    copied_pixels: u64,
    captured_pixels: u64,
}

impl MirrorClient {
    fn new(src: &mut X11Source) -> MirrorClient {
        let f = src.capture_full().unwrap();
        MirrorClient {
            width: f.width,
            px: f.data,
            dirty: Vec::new(),
            batches: 0,
            copies: 0,
            copied_pixels: 0,
            captured_pixels: 0,
        }
    }

    fn apply(&mut self, src: &mut X11Source, ev: &[SourceEvent], flush_every: u32) {
        for e in ev {
            match e {
                SourceEvent::Damage(rs) => self.dirty.extend(rs.iter().copied()),
                SourceEvent::CopyRect {
                    src: s,
                    dst_x,
                    dst_y,
                } => {
                    let dst = Rect::new(*dst_x, *dst_y, s.w, s.h);
                    // As the SPICE server does: pending damage under the source is copied
                    // along stale, so it is owed at the destination too.
                    let shifted: Vec<Rect> = self
                        .dirty
                        .iter()
                        .filter_map(|r| r.intersect(s))
                        .map(|r| Rect::new(r.x - s.x + dst.x, r.y - s.y + dst.y, r.w, r.h))
                        .collect();
                    self.dirty.extend(shifted);
                    let row = s.w as usize * 4;
                    let moved: Vec<u8> = (s.y..s.bottom())
                        .flat_map(|y| {
                            let o = (y as usize * self.width as usize + s.x as usize) * 4;
                            self.px[o..o + row].to_vec()
                        })
                        .collect();
                    self.put(dst, &moved);
                    self.copies += 1;
                    self.copied_pixels += dst.area();
                }
                _ => {}
            }
        }
        self.batches += 1;
        if self.batches.is_multiple_of(flush_every) {
            self.flush(src);
        }
    }

    fn flush(&mut self, src: &mut X11Source) {
        let dirty = std::mem::take(&mut self.dirty);
        let (w, h) = src.size();
        for r in coop_display::merge_rects(&dirty, Rect::new(0, 0, w, h), 32) {
            let mut out = Vec::new();
            src.capture(r, &mut out).unwrap();
            self.put(r, &out);
            self.captured_pixels += r.area();
        }
    }

    fn put(&mut self, r: Rect, data: &[u8]) {
        let row = r.w as usize * 4;
        for (i, line) in data.chunks_exact(row).enumerate() {
            let o = ((r.y as usize + i) * self.width as usize + r.x as usize) * 4;
            self.px[o..o + row].copy_from_slice(line);
        }
    }

    /// Follows the source until `quiet` passes with no event after `busy` ends, then
    /// checks the picture against the X server's pixels.
    fn follow_and_check(&mut self, src: &mut X11Source, busy: &mut Proc, flush_every: u32) {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end && busy.0.try_wait().unwrap().is_none() {
            let ev = src.next_events(Duration::from_millis(20)).unwrap();
            self.apply(src, &ev, flush_every);
        }
        let mut idle_since = Instant::now();
        while idle_since.elapsed() < Duration::from_millis(500) && Instant::now() < end {
            let ev = src.next_events(Duration::from_millis(50)).unwrap();
            if ev
                .iter()
                .any(|e| matches!(e, SourceEvent::Damage(_) | SourceEvent::CopyRect { .. }))
            {
                idle_since = Instant::now();
            }
            self.apply(src, &ev, 1);
        }
        self.flush(src);
        let truth = src.capture_full().unwrap();
        let bad = self
            .px
            .chunks_exact(4)
            .zip(truth.data.chunks_exact(4))
            .position(|(a, b)| a[..3] != b[..3]);
        if let Some(i) = bad {
            let (x, y) = (i as u32 % self.width, i as u32 / self.width);
            panic!("client picture differs from the X server at ({x},{y})");
        }
    }
}

fn scroll_xterm_is_copied_and_exact(flush_every: u32) {
    let Some(x) = xvfb(640, 480, &["xterm", "xdotool"]) else {
        return;
    };
    let script = "sleep 1; for i in $(seq 1 150); do echo \"line $i of the scroll test $(date +%N)\"; sleep 0.01; done";
    let mut term = spawn(
        &x,
        "xterm",
        &["-geometry", "80x24+5+5", "-e", "sh", "-c", script],
    );
    wait_for_window(&x, "XTerm");
    let mut src = X11Source::connect(&x.display).unwrap();
    src.set_find_moves(true);
    let mut client = MirrorClient::new(&mut src);
    client.follow_and_check(&mut src, &mut term, flush_every);
    eprintln!(
        "scroll: {} copies, {} px copied, {} px captured",
        client.copies, client.copied_pixels, client.captured_pixels
    );
    assert!(client.copies > 10, "too few copies: {}", client.copies);
    assert!(
        client.copied_pixels > client.captured_pixels,
        "scrolling should mostly be copied: {} copied vs {} captured",
        client.copied_pixels,
        client.captured_pixels
    );
}

#[test]
fn scroll_xterm_is_copied_and_exact_immediate() {
    scroll_xterm_is_copied_and_exact(1);
}

#[test]
fn scroll_xterm_is_copied_and_exact_with_late_captures() {
    // Damage waits three batches before capture, as when the link is slow: moves that
    // touch it must fall back to damage, and the picture must still be exact.
    scroll_xterm_is_copied_and_exact(3);
}

#[test]
fn moved_window_is_copied_and_exact() {
    let Some(x) = xvfb(640, 480, &["convert", "display", "xdotool"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("photo.png");
    let out = Command::new("convert")
        .args(["-size", "200x150", "plasma:fractal"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "convert failed");
    let _photo = spawn(
        &x,
        "display",
        &["-geometry", "+20+20", img.to_str().unwrap()],
    );
    wait_for_window(&x, "Display");
    std::thread::sleep(Duration::from_millis(500));
    let id = String::from_utf8(
        run(
            &x,
            "xdotool",
            &["search", "--onlyvisible", "--class", "Display"],
        )
        .stdout,
    )
    .unwrap();
    let id = id.lines().next().unwrap().to_string();
    let mut src = X11Source::connect(&x.display).unwrap();
    src.set_find_moves(true);
    let mut client = MirrorClient::new(&mut src);
    let steps = (1..=30)
        .map(|i| {
            format!(
                "xdotool windowmove {id} {} {}; sleep 0.03",
                20 + i * 12,
                20 + i * 8
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut mover = spawn(&x, "sh", &["-c", &steps]);
    client.follow_and_check(&mut src, &mut mover, 1);
    eprintln!(
        "move: {} copies, {} px copied, {} px captured",
        client.copies, client.copied_pixels, client.captured_pixels
    );
    assert!(client.copies > 5, "too few copies: {}", client.copies);
    assert!(
        client.copied_pixels > client.captured_pixels,
        "the move should mostly be copied: {} copied vs {} captured",
        client.copied_pixels,
        client.captured_pixels
    );
}
