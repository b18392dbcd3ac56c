//! The agent on the host, serving a pty instead of a UML serial line: the same framing,
//! raw tty setup and process handling, without booting a kernel.

use std::fs::File;
use std::io::Write;
use std::process::{Child, Command};

use coop_colinux::proto::{read_frame, Kind, Request};

struct Agent {
    child: Child,
    master: File,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Agent {
    let pty = nix::pty::openpty(None, None).unwrap();
    let name = nix::unistd::ttyname(&pty.slave).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_coop-guest-agent"))
        .arg(&name)
        .spawn()
        .unwrap();
    drop(pty.slave);
    let mut master = File::from(pty.master);
    // The hello frame comes after the agent made the line raw; before that, bytes we
    // wrote could be echoed or mangled.
    let hello = read_frame(&mut master).unwrap().unwrap();
    assert_eq!(hello.kind, Kind::Hello);
    assert!(String::from_utf8_lossy(&hello.payload).starts_with("coop-guest-agent"));
    Agent { child, master }
}

fn run(a: &Agent, argv: &[&str], stdin: &[u8], pty: bool) -> (i32, Vec<u8>, Vec<u8>) {
    let req = Request {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec!["COOP_TEST=yes".into()],
        pty,
        rows: 30,
        cols: 100,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = coop_colinux::attach(
        a.master.try_clone().unwrap(),
        a.master.try_clone().unwrap(),
        &req,
        Box::new(std::io::Cursor::new(stdin.to_vec())),
        &mut out,
        &mut err,
    )
    .unwrap();
    (code, out, err)
}

#[test]
fn commands_stdio_exit_codes_and_pty() {
    let a = start();
    let (code, out, err) = run(
        &a,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; echo $COOP_TEST; exit 5",
        ],
        b"",
        false,
    );
    assert_eq!(
        (code, &out[..], &err[..]),
        (5, &b"out\nyes\n"[..], &b"err\n"[..])
    );

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (code, out, _) = run(&a, &["cat"], &data, false);
    assert_eq!(code, 0);
    assert!(out == data, "binary data through the agent differs");

    let (code, _, err) = run(&a, &["/no/such/binary"], b"", false);
    assert_eq!(code, 127);
    assert!(String::from_utf8_lossy(&err).contains("cannot run"));

    let (code, out, _) = run(&a, &["sh", "-c", "tty; stty size"], b"", true);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 0);
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    assert!(out.contains("30 100"), "pty size not applied: {out:?}");

    let (code, _, _) = run(&a, &["sh", "-c", "kill -TERM $$"], b"", false);
    assert_eq!(code, 128 + 15);
}

#[test]
fn garbage_on_the_line_is_skipped() {
    let mut a = start();
    a.master
        .write_all(b"\xc0\x00junk\xc0\x0b\x7f\x00\x00\x00\x00\x00\x00\x00\x00noise")
        .unwrap();
    let (code, out, _) = run(&a, &["echo", "still-alive"], b"", false);
    assert_eq!((code, &out[..]), (0, &b"still-alive\n"[..]));
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "agent died on garbage"
    );
}
