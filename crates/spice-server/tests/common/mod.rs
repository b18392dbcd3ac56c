//! Shared test helpers: Xvfb guards, a server on a free port, spicy-screenshot, PPM
//! comparison and a minimal SPICE client built on spice-proto.
#![allow(dead_code)]

pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spice_proto::consts::{channel, msg};
use spice_proto::framing::write_message;
use spice_proto::link::LinkInfo;
use spice_proto::{
    BaseClientMsg, BaseServerMsg, Framer, HeaderKind, LinkClient, LinkClientConfig, LinkStatus,
    Message, RawMessage,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub fn have(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Skips (returns true after printing why) when a tool is missing.
pub fn skip_without(bins: &[&str]) -> bool {
    for b in bins {
        if !have(b) {
            eprintln!("SKIP: {b} is not installed");
            return true;
        }
    }
    false
}

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so X servers remove their lock files and sockets.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Xvfb on a free display number (Xvfb picks it: `-displayfd`).
pub struct Xvfb {
    pub num: u32,
    pub name: String,
    _proc: Proc,
    pub children: Vec<Proc>,
}

impl Xvfb {
    pub fn start(w: u32, h: u32) -> Xvfb {
        let dir = tempfile::tempdir().expect("tempdir");
        let numfile = dir.path().join("display");
        // Xvfb writes the display number to fd 3 once it accepts clients.
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec Xvfb -displayfd 3 -screen 0 {w}x{h}x24 -nolisten tcp -noreset 3>'{}'",
                numfile.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn Xvfb");
        let p = Proc(child);
        let t0 = Instant::now();
        loop {
            let s = std::fs::read_to_string(&numfile).unwrap_or_default();
            if s.ends_with('\n') {
                let num: u32 = s.trim().parse().expect("display number");
                return Xvfb {
                    num,
                    name: format!(":{num}"),
                    _proc: p,
                    children: Vec::new(),
                };
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "Xvfb did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wraps an X server started elsewhere (e.g. Xspice) on display `num`.
    pub fn attach(num: u32) -> Xvfb {
        Xvfb {
            num,
            name: format!(":{num}"),
            _proc: Proc(Command::new("true").spawn().expect("spawn true")),
            children: Vec::new(),
        }
    }

    /// Waits until the server answers.
    pub fn ready(&self) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if self.run("xdpyinfo", &[]) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Runs a client on this display, killed with the guard.
    pub fn spawn(&mut self, cmd: &str, args: &[&str]) {
        let c = Command::new(cmd)
            .args(args)
            .env("DISPLAY", &self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd}: {e}"));
        self.children.push(Proc(c));
    }

    pub fn run(&self, cmd: &str, args: &[&str]) -> bool {
        Command::new(cmd)
            .args(args)
            .env("DISPLAY", &self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Starts the `sh` script `sh` on this display (output discarded) and returns it
    /// running, for tests that watch the screen while it works.
    pub fn script(&self, sh: &str) -> Child {
        Command::new("sh")
            .args(["-c", sh])
            .env("DISPLAY", &self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh")
    }

    /// The X server's own view of the screen, as (w, h, RGB bytes).
    pub fn reference(&self, dir: &Path) -> (u32, u32, Vec<u8>) {
        let out = dir.join("reference.ppm");
        assert!(
            self.run(
                "import",
                &["-window", "root", "-depth", "8", out.to_str().unwrap()]
            ),
            "import -window root failed"
        );
        read_ppm(&out).expect("reference ppm")
    }

    /// Waits until a window named `name` is mapped.
    pub fn wait_window(&self, name: &str) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if self.run("xdotool", &["search", "--onlyvisible", "--name", name]) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// What a client on this display prints (stdout, lossily decoded).
    pub fn output(&self, cmd: &str, args: &[&str]) -> String {
        let o = Command::new(cmd)
            .args(args)
            .env("DISPLAY", &self.name)
            .output()
            .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// The id of the first window whose name matches `name` (xdotool search).
    pub fn window_id(&self, name: &str) -> String {
        self.output("xdotool", &["search", "--name", name])
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no window named {name}"))
            .to_string()
    }

    /// Shows the image file `path` in an ImageMagick `display` window titled `title`
    /// at `geometry` (e.g. `+100+100`).
    pub fn show_image(&mut self, title: &str, geometry: &str, path: &Path) {
        self.spawn(
            "display",
            &[
                "-title",
                title,
                "-geometry",
                geometry,
                path.to_str().unwrap(),
            ],
        );
    }

    /// Animates `frames` at 25 frames a second in a window titled `title` at +100+80,
    /// and waits until it is mapped.
    pub fn animate(&mut self, frames: &[String], title: &str) {
        let mut args = vec!["-delay", "4", "-geometry", "+100+80", "-title", title];
        args.extend(frames.iter().map(String::as_str));
        self.spawn("animate", &args);
        assert!(self.wait_window(title), "animate did not map");
    }

    /// An xterm titled `title` at `geometry` that reads one line and writes it to
    /// `file`; waits until it is mapped.
    pub fn line_reading_xterm(&mut self, geometry: &str, title: &str, file: &Path) {
        let script = format!("read x; echo \"$x\" > {}", file.display());
        self.spawn(
            "xterm",
            &[
                "-geometry",
                geometry,
                "-T",
                title,
                "-e",
                "sh",
                "-c",
                &script,
            ],
        );
        assert!(self.wait_window(title), "xterm did not map");
    }

    /// Starts spice-gtk's `spicy` on this display against 127.0.0.1:`port` and waits
    /// for its display window.
    pub fn spicy(&mut self, port: &str) {
        self.spawn("spicy", &["-h", "127.0.0.1", "-p", port]);
        assert!(
            self.wait_window("spice display"),
            "spicy did not open its display window"
        );
    }
}

/// Parses a binary PPM (P6, maxval 255).
pub fn read_ppm(p: &Path) -> Option<(u32, u32, Vec<u8>)> {
    let d = std::fs::read(p).ok()?;
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 && i < d.len() {
        while i < d.len() && d[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < d.len() && d[i] == b'#' {
            while i < d.len() && d[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let s = i;
        while i < d.len() && !d[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&d[s..i]).to_string());
    }
    if fields.first().map(String::as_str) != Some("P6")
        || fields.get(3).map(String::as_str) != Some("255")
    {
        return None;
    }
    let w: u32 = fields[1].parse().ok()?;
    let h: u32 = fields[2].parse().ok()?;
    let data = d.get(i + 1..)?.to_vec();
    (data.len() == (w * h * 3) as usize).then_some((w, h, data))
}

/// Number of differing pixels.
pub fn diff_pixels(a: &[u8], b: &[u8]) -> usize {
    a.chunks(3).zip(b.chunks(3)).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len()) / 3
}

/// Runs ImageMagick's `convert ARGS OUT`, asserting it succeeded; returns OUT as a string.
pub fn convert(args: &[&str], out: &Path) -> String {
    let ok = Command::new("convert")
        .args(args)
        .arg(out)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "convert {} {} failed", args.join(" "), out.display());
    out.to_str().unwrap().to_string()
}

/// A plasma image `dir/name` of `size` (e.g. `200x150`) from random seed `seed`.
pub fn plasma(dir: &Path, name: &str, size: &str, seed: u32) -> String {
    convert(
        &["-seed", &seed.to_string(), "-size", size, "plasma:"],
        &dir.join(name),
    )
}

/// `count` plasma frames `dir/{prefix}{i}.png` (seeds 1, 2, …) for an animation.
pub fn plasma_frames(dir: &Path, prefix: &str, count: u32, size: &str) -> Vec<String> {
    (0..count)
        .map(|i| plasma(dir, &format!("{prefix}{i}.png"), size, i + 1))
        .collect()
}

/// PSNR in dB of two equally sized RGB buffers (infinite when equal).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    if se == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 * a.len() as f64 / se).log10()
}

/// RGB bytes of the `w`×`h` area at (`x`, `y`) of a `stride_w`-wide RGB screen.
pub fn crop(rgb: &[u8], stride_w: u32, x: u32, y: u32, w: u32, h: u32) -> Vec<u8> {
    (y..y + h)
        .flat_map(|r| {
            let o = ((r * stride_w + x) * 3) as usize;
            rgb[o..o + w as usize * 3].to_vec()
        })
        .collect()
}

/// Waits up to 10 s for `file` to appear, gives its writer 100 ms more, and reads it.
pub async fn wait_for_file(file: &Path) -> std::io::Result<String> {
    let t0 = Instant::now();
    while !file.exists() && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::read_to_string(file)
}

/// [`screenshot`] on a blocking thread, for async tests.
pub async fn screenshot_async(
    args: &[&str],
    out: &Path,
    env: &[(&str, &str)],
) -> Result<Duration, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = out.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        screenshot(&args, &out, &env)
    })
    .await
    .expect("screenshot thread")
}

/// Runs spicy-screenshot; `Ok(elapsed)` when it wrote the file.
pub fn screenshot(args: &[&str], out: &Path, env: &[(&str, &str)]) -> Result<Duration, String> {
    let _ = std::fs::remove_file(out);
    let t0 = Instant::now();
    let mut cmd = Command::new("spicy-screenshot");
    cmd.args(args)
        .args(["-o", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let pid = child.id();
    // A watchdog: spicy-screenshot waits forever when no frame comes.
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let o = child.wait_with_output();
        let _ = tx.send(());
        o
    });
    if rx.recv_timeout(Duration::from_secs(20)).is_err() {
        // Our own child, not reaped yet (the waiter is still in wait()).
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let o = waiter
        .join()
        .map_err(|_| "waiter panicked")?
        .map_err(|e| e.to_string())?;
    let el = t0.elapsed();
    if out.exists() {
        Ok(el)
    } else {
        Err(format!(
            "spicy-screenshot wrote nothing (status {:?}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// A started server, its address and statistics.
pub struct TestServer {
    pub addr: Option<std::net::SocketAddr>,
    pub tls_addr: Option<std::net::SocketAddr>,
    pub stats: spice_server::StatsHandle,
    task: tokio::task::JoinHandle<Result<(), spice_server::ServerError>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_server(display: &str, config: spice_server::Config) -> TestServer {
    let src = spice_server::coop_display::X11Source::connect(display).expect("X11Source");
    start_server_with(Box::new(src), config).await
}

pub async fn start_server_with(
    src: Box<dyn spice_server::coop_display::DisplaySource>,
    mut config: spice_server::Config,
) -> TestServer {
    if config.port.is_some() {
        config.port = Some(0);
    }
    let server = spice_server::Server::bind(config, src).await.expect("bind");
    let addr = server.plain_addr();
    let tls_addr = server.tls_addr();
    let stats = server.stats_handle();
    let task = tokio::spawn(server.run());
    TestServer {
        addr,
        tls_addr,
        stats,
        task,
    }
}

pub fn no_auth() -> spice_server::Config {
    spice_server::Config {
        ticketing: spice_server::Ticketing::Disabled,
        ..Default::default()
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A minimal SPICE channel client: links, answers SET_ACK/PING, counts ACKs.
pub struct Client {
    pub s: Box<dyn Stream>,
    framer: Framer,
    kind: HeaderKind,
    serial: u64,
    window: u32,
    left: u32,
    pub info: LinkInfo,
    /// Answer SET_ACK and send ACKs (a well-behaved client); off to play a stalled one.
    pub auto_ack: bool,
}

pub async fn tcp(addr: std::net::SocketAddr) -> Box<dyn Stream> {
    Box::new(tokio::net::TcpStream::connect(addr).await.expect("connect"))
}

/// Links one channel; `Err(status)` when the server refused.
pub async fn link(
    mut s: Box<dyn Stream>,
    conn_id: u32,
    ch_type: u8,
    password: &str,
) -> Result<Client, LinkStatus> {
    let mut cfg = LinkClientConfig::new(conn_id, ch_type, 0, password);
    if ch_type == channel::MAIN {
        cfg.channel_caps = spice_proto::link::caps_from_bits(&[
            spice_proto::consts::caps::main::NAME_AND_UUID,
            spice_proto::consts::caps::main::AGENT_CONNECTED_TOKENS,
        ]);
    }
    let mut lc = LinkClient::new(cfg).expect("link client");
    let mut out = Vec::new();
    lc.start(&mut out);
    s.write_all(&out).await.expect("write link");
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return Err(LinkStatus::InProgress);
        }
        out.clear();
        let st = lc.feed(&buf[..n], &mut out).expect("link feed");
        if !out.is_empty() {
            s.write_all(&out).await.expect("write ticket");
        }
        match st {
            LinkStatus::InProgress => {}
            LinkStatus::Failed(_) => return Err(st),
            LinkStatus::Linked(info) => {
                let kind = HeaderKind::from_mini(info.mini_header);
                let mut framer = Framer::new(kind, 64 << 20);
                framer.push(&lc.take_remaining());
                return Ok(Client {
                    s,
                    framer,
                    kind,
                    serial: 0,
                    window: 0,
                    left: 0,
                    info,
                    auto_ack: true,
                });
            }
        }
    }
}

/// What [`Client::on_received`] saw.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    /// A PING (answered).
    Ping,
    /// Another base message (SET_ACK answered when `auto_ack`).
    Base,
    /// A channel message, for the caller.
    Other,
}

impl Client {
    /// Counts `m` towards the ACK window (sending ACK when it is full) and answers base
    /// messages as spice-gtk does: SET_ACK with ACK_SYNC, PING with PONG.
    async fn on_received(&mut self, m: &RawMessage) -> Received {
        if self.window > 0 && self.auto_ack {
            self.left -= 1;
            if self.left == 0 {
                self.left = self.window;
                self.send(&BaseClientMsg::Ack).await;
            }
        }
        if m.msg_type >= msg::base::BASE_LAST {
            return Received::Other;
        }
        match BaseServerMsg::decode(m.msg_type, &m.body).expect("base msg") {
            BaseServerMsg::SetAck { generation, window } if self.auto_ack => {
                self.window = window;
                self.left = window;
                self.send(&BaseClientMsg::AckSync { generation }).await;
                Received::Base
            }
            BaseServerMsg::Ping { id, timestamp, .. } => {
                self.send(&BaseClientMsg::Pong { id, timestamp }).await;
                Received::Ping
            }
            _ => Received::Base,
        }
    }

    pub async fn send<M: Message>(&mut self, m: &M) {
        self.serial += 1;
        let mut out = Vec::new();
        write_message(self.kind, self.serial, m.msg_type(), &m.to_body(), &mut out);
        self.s.write_all(&out).await.expect("client write");
    }

    /// The next non-base message (None on EOF), answering base messages.
    pub async fn recv(&mut self) -> Option<RawMessage> {
        loop {
            match self.framer.next_message() {
                Ok(Some(m)) => {
                    if self.on_received(&m).await == Received::Other {
                        return Some(m);
                    }
                    // A base message, answered: the framer may hold more.
                    continue;
                }
                Ok(None) => {}
                Err(e) => panic!("framing: {e}"),
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    /// Reads what the server sent next into the framer; false at EOF.
    async fn read_more(&mut self) -> bool {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.s.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        self.framer.push(&buf[..n]);
        true
    }

    /// The next message of any type, without answering anything.
    pub async fn recv_raw(&mut self) -> Option<RawMessage> {
        loop {
            match self.framer.next_message() {
                Ok(Some(m)) => return Some(m),
                Ok(None) => {}
                Err(e) => panic!("framing: {e}"),
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    /// Waits for a message of type `t`.
    pub async fn expect(&mut self, t: u16) -> RawMessage {
        let f = async {
            loop {
                let m = self.recv().await.expect("connection closed");
                if m.msg_type == t {
                    return m;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .unwrap_or_else(|_| panic!("no message of type {t}"))
    }
}

/// Links channel `ch` of session `sid` on a new TCP connection, without a password.
pub async fn link_channel(addr: std::net::SocketAddr, sid: u32, ch: u8) -> Client {
    link(tcp(addr).await, sid, ch, "")
        .await
        .unwrap_or_else(|s| panic!("link of channel type {ch} failed: {s:?}"))
}

/// The display channel INIT spice-gtk sends: a 4 MiB pixmap cache, a 2 MiB GLZ window.
pub fn spice_gtk_display_init() -> spice_proto::DisplayClientMsg {
    spice_proto::DisplayClientMsg::Init {
        pixmap_cache_id: 1,
        pixmap_cache_size: 4 << 20,
        glz_dictionary_id: 1,
        glz_dictionary_window_size: 1 << 21,
    }
}

/// Applies display messages to `canvas` up to and including the first MARK (the end of
/// the first frame).
pub async fn read_first_frame(disp: &mut Client, canvas: &mut Canvas) {
    loop {
        let m = disp.recv().await.expect("display closed");
        canvas.apply(&m);
        if m.msg_type == msg::display::MARK {
            break;
        }
    }
}

/// Follows the display channel until the canvas equals the X screen (or panics).
pub async fn follow_until_equal(x: &Xvfb, disp: &mut Client, canvas: &mut Canvas, dir: &Path) {
    let t0 = Instant::now();
    let mut last_check = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "client canvas never matched the X screen"
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), disp.recv()).await {
            canvas.apply(&m.expect("display channel closed"));
        }
        if last_check.elapsed() > Duration::from_millis(300) {
            last_check = Instant::now();
            let (w, h, want) = tokio::task::block_in_place(|| x.reference(dir));
            if (w, h) == (canvas.w, canvas.h) && diff_pixels(&canvas.rgb(), &want) == 0 {
                return;
            }
        }
    }
}

/// Opens a session: main channel linked and its INIT read. Returns (main, session id).
pub async fn session(s: Box<dyn Stream>, password: &str) -> (Client, u32) {
    let mut main = link(s, 0, channel::MAIN, password)
        .await
        .expect("main link");
    let m = main.expect(msg::main::INIT).await;
    let init = spice_proto::MainServerMsg::decode(m.msg_type, &m.body).expect("init");
    let spice_proto::MainServerMsg::Init(i) = init else {
        panic!("not INIT")
    };
    main.answer_net_test().await;
    (main, i.session_id)
}

impl Client {
    /// Answers the main channel's three bandwidth-test PINGs (as spice-gtk does at
    /// once), so the display channel does not wait for the test to time out.
    /// Returns the non-base messages read meanwhile.
    pub async fn answer_net_test(&mut self) -> Vec<RawMessage> {
        let mut others = Vec::new();
        let mut pings = 0;
        let f = async {
            while pings < 3 {
                let Some(m) = self.recv_raw().await else {
                    break;
                };
                match self.on_received(&m).await {
                    Received::Ping => pings += 1,
                    Received::Base => {}
                    Received::Other => others.push(m),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
        others
    }
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

pub fn file_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A client-side copy of the primary surface, updated from display messages.
pub struct Canvas {
    pub w: u32,
    pub h: u32,
    /// BGRX rows.
    pub px: Vec<u8>,
    pub draws: usize,
    /// The client's GLZ dictionary.
    pub glz: spice_codecs::glz::Window,
    /// The client's pixmap cache: id → (w, h, packed BGRX), kept until invalidated.
    pub cache: std::collections::HashMap<u64, (u32, u32, Vec<u8>)>,
    /// Draws served from the cache.
    pub from_cache: usize,
    /// Images by type (`image_type` value).
    pub types: std::collections::BTreeMap<u8, usize>,
    /// Live video streams: id → destination (left, top, width, height).
    pub streams: std::collections::HashMap<u32, (u32, u32, u32, u32)>,
    pub streams_created: usize,
    pub streams_destroyed: usize,
    pub stream_frames: usize,
}

impl Canvas {
    pub fn new() -> Canvas {
        Canvas {
            w: 0,
            h: 0,
            px: Vec::new(),
            draws: 0,
            glz: spice_codecs::glz::Window::new(1 << 24),
            cache: Default::default(),
            from_cache: 0,
            types: Default::default(),
            streams: Default::default(),
            streams_created: 0,
            streams_destroyed: 0,
            stream_frames: 0,
        }
    }

    /// Applies one display message; panics on anything malformed.
    pub fn apply(&mut self, m: &RawMessage) {
        use spice_proto::types::ImageData;
        use spice_proto::DisplayServerMsg as D;
        let Ok(msg) = D::decode(m.msg_type, &m.body) else {
            panic!("undecodable display message {}", m.msg_type)
        };
        match msg {
            D::SurfaceCreate { width, height, .. } => {
                self.w = width;
                self.h = height;
                self.px = vec![0; (width * height * 4) as usize];
            }
            D::DrawCopy { base, copy } => {
                self.draws += 1;
                let img = copy.src_bitmap.expect("draw_copy without image");
                *self.types.entry(img.data.image_type()).or_default() += 1;
                let bitmap = |bm: spice_codecs::Bitmap| (bm.width, bm.height, bm.stride, bm.data);
                let (iw, ih, stride, data) = match img.data {
                    ImageData::LzRgb(b) => bitmap(spice_codecs::lz::decode(&b, None).expect("LZ")),
                    ImageData::GlzRgb(b) => bitmap(
                        spice_codecs::glz::decode(&mut self.glz, &b, None)
                            .expect("GLZ")
                            .0,
                    ),
                    ImageData::Quic(b) => bitmap(spice_codecs::quic::decode(&b).expect("QUIC")),
                    ImageData::Lz4(b) => {
                        bitmap(spice_codecs::lz4::decode(&b, img.width, img.height).expect("LZ4"))
                    }
                    ImageData::Bitmap(b) => (b.width, b.height, b.stride as usize, b.data),
                    ImageData::FromCache => {
                        self.from_cache += 1;
                        let (w, h, d) = self
                            .cache
                            .get(&img.id)
                            .unwrap_or_else(|| panic!("image {:#x} is not in the cache", img.id))
                            .clone();
                        (w, h, w as usize * 4, d)
                    }
                    other => panic!("unexpected image type {}", other.image_type()),
                };
                if img.flags & spice_proto::consts::image_flags::CACHE_ME != 0 {
                    let packed: Vec<u8> = (0..ih as usize)
                        .flat_map(|y| data[y * stride..y * stride + iw as usize * 4].to_vec())
                        .collect();
                    self.cache.insert(img.id, (iw, ih, packed));
                }
                let (x0, y0) = (base.bbox.left as u32, base.bbox.top as u32);
                let (bw, bh) = (
                    (base.bbox.right - base.bbox.left) as u32,
                    (base.bbox.bottom - base.bbox.top) as u32,
                );
                assert_eq!((bw, bh), (iw, ih), "bbox and image size differ");
                for y in 0..ih {
                    let src = &data[y as usize * stride..y as usize * stride + iw as usize * 4];
                    let off = (((y0 + y) * self.w + x0) * 4) as usize;
                    self.px[off..off + iw as usize * 4].copy_from_slice(src);
                }
            }
            D::CopyBits { base, src_pos } => {
                let w = (base.bbox.right - base.bbox.left) as u32;
                let h = (base.bbox.bottom - base.bbox.top) as u32;
                let old = self.px.clone();
                for y in 0..h {
                    let s = (((src_pos.y as u32 + y) * self.w + src_pos.x as u32) * 4) as usize;
                    let d = (((base.bbox.top as u32 + y) * self.w + base.bbox.left as u32) * 4)
                        as usize;
                    self.px[d..d + w as usize * 4].copy_from_slice(&old[s..s + w as usize * 4]);
                }
            }
            D::InvalList(l) => {
                for r in l {
                    assert!(
                        self.cache.remove(&r.id).is_some(),
                        "server invalidated {:#x}, which the client never cached",
                        r.id
                    );
                }
            }
            D::InvalAllPixmaps(_) => self.cache.clear(),
            D::StreamCreate(c) => {
                assert_eq!(
                    c.codec_type,
                    spice_proto::consts::video_codec::MJPEG,
                    "stream codec"
                );
                let (l, t) = (c.dest.left as u32, c.dest.top as u32);
                let (w, h) = (
                    (c.dest.right - c.dest.left) as u32,
                    (c.dest.bottom - c.dest.top) as u32,
                );
                assert_eq!((w, h), (c.src_width, c.src_height), "scaled stream");
                self.streams.insert(c.id, (l, t, w, h));
                self.streams_created += 1;
            }
            D::StreamData { id, data, .. } => {
                let (l, t, w, h) = *self.streams.get(&id).expect("data for an unknown stream");
                let bm = spice_codecs::jpeg::decode(&data).expect("stream frame decodes");
                assert_eq!((bm.width, bm.height), (w, h), "stream frame size");
                for y in 0..h {
                    let src = &bm.data[y as usize * bm.stride..][..w as usize * 4];
                    let off = (((t + y) * self.w + l) * 4) as usize;
                    self.px[off..off + w as usize * 4].copy_from_slice(src);
                }
                self.stream_frames += 1;
            }
            D::StreamDestroy { id } => {
                assert!(
                    self.streams.remove(&id).is_some(),
                    "destroyed unknown stream"
                );
                self.streams_destroyed += 1;
            }
            _ => {}
        }
    }

    /// RGB bytes, as a PPM holds them.
    pub fn rgb(&self) -> Vec<u8> {
        self.px.chunks(4).flat_map(|p| [p[2], p[1], p[0]]).collect()
    }
}

/// What a [`FakeSource`] shows and what happened to it.
#[derive(Default)]
pub struct FakeState {
    pub w: u32,
    pub h: u32,
    /// BGRX rows.
    pub px: Vec<u8>,
    pub events: Vec<spice_server::coop_display::SourceEvent>,
    pub keys: Vec<(u32, bool)>,
    pub resizes: Vec<(u32, u32)>,
}

impl FakeState {
    /// A `w`×`h` screen with every byte `byte`, shared with its [`FakeSource`].
    pub fn shared(w: u32, h: u32, byte: u8) -> std::sync::Arc<std::sync::Mutex<FakeState>> {
        std::sync::Arc::new(std::sync::Mutex::new(FakeState {
            w,
            h,
            px: vec![byte; (w * h * 4) as usize],
            ..Default::default()
        }))
    }
}

/// An in-memory display source the test drives directly.
pub struct FakeSource(pub std::sync::Arc<std::sync::Mutex<FakeState>>);

impl spice_server::coop_display::DisplaySource for FakeSource {
    fn size(&self) -> (u32, u32) {
        let s = self.0.lock().unwrap();
        (s.w, s.h)
    }
    fn capture(
        &mut self,
        a: spice_server::coop_display::Rect,
        out: &mut Vec<u8>,
    ) -> Result<(), spice_server::coop_display::DisplayError> {
        let s = self.0.lock().unwrap();
        if a.right() > s.w || a.bottom() > s.h {
            return Err(spice_server::coop_display::DisplayError::OutOfBounds {
                area: a,
                width: s.w,
                height: s.h,
            });
        }
        out.clear();
        for y in a.y..a.bottom() {
            let o = ((y * s.w + a.x) * 4) as usize;
            out.extend_from_slice(&s.px[o..o + a.w as usize * 4]);
        }
        Ok(())
    }
    fn capture_full(
        &mut self,
    ) -> Result<spice_server::coop_display::Frame, spice_server::coop_display::DisplayError> {
        let s = self.0.lock().unwrap();
        Ok(spice_server::coop_display::Frame {
            width: s.w,
            height: s.h,
            stride: s.w as usize * 4,
            data: s.px.clone(),
        })
    }
    fn next_events(
        &mut self,
        timeout: Duration,
    ) -> Result<
        Vec<spice_server::coop_display::SourceEvent>,
        spice_server::coop_display::DisplayError,
    > {
        let t0 = Instant::now();
        loop {
            let ev = std::mem::take(&mut self.0.lock().unwrap().events);
            if !ev.is_empty() || t0.elapsed() >= timeout {
                return Ok(ev);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    fn key(
        &mut self,
        code: u32,
        down: bool,
    ) -> Result<(), spice_server::coop_display::DisplayError> {
        self.0.lock().unwrap().keys.push((code, down));
        Ok(())
    }
    fn pointer_abs(
        &mut self,
        _: u32,
        _: u32,
        _: u32,
    ) -> Result<(), spice_server::coop_display::DisplayError> {
        Ok(())
    }
    fn pointer_rel(
        &mut self,
        _: i32,
        _: i32,
        _: u32,
    ) -> Result<(), spice_server::coop_display::DisplayError> {
        Ok(())
    }
    fn button(&mut self, _: u8, _: bool) -> Result<(), spice_server::coop_display::DisplayError> {
        Ok(())
    }
    fn resize(&mut self, w: u32, h: u32) -> Result<(), spice_server::coop_display::DisplayError> {
        let mut s = self.0.lock().unwrap();
        s.resizes.push((w, h));
        s.w = w;
        s.h = h;
        s.px = vec![0x40; (w * h * 4) as usize];
        s.events
            .push(spice_server::coop_display::SourceEvent::Resized {
                width: w,
                height: h,
            });
        Ok(())
    }
    fn set_clipboard(
        &mut self,
        _: &str,
        _: &[u8],
    ) -> Result<(), spice_server::coop_display::DisplayError> {
        Ok(())
    }
}
