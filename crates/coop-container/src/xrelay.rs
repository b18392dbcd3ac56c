//! GUI programs of a coLinux guest on the host's X display (coLinux's Xming role).
//!
//! The guest is a separate kernel: it cannot open the host's unix socket of the Xvfb
//! that [`crate::display`] serves over SPICE. It reaches the host over the instance's
//! network instead: the monitor listens on the bridge address of that network, TCP port
//! `6000 + D` (X's port for display `D`), accepts only the address the guest leased, and
//! relays each connection to the Xvfb's unix socket. The Xvfb itself listens on no TCP
//! port and demands an MIT-MAGIC-COOKIE-1: the cookie is in an Xauthority file in the
//! instance's run directory, which the guest mounts read-only through hostfs (a
//! `coop.share` the monitor adds), so other hosts or instances on the bridge that spoof
//! the guest's address still cannot draw. `coop attach` gives commands `DISPLAY` and
//! `XAUTHORITY`; an `env` file beside the cookie has the same two lines for programs
//! started otherwise (`. /var/lib/coop/x11/env`).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::{Error, Result};

/// Where the guest mounts the directory holding the cookie.
pub(crate) const GUEST_DIR: &str = "/var/lib/coop/x11";
/// The directory's path inside the instance's jail (the run directory's `uml/` is bound
/// at `/run/uml` there), which is what the kernel's hostfs opens.
pub(crate) const JAIL_DIR: &str = "/run/uml/x11";
/// X's TCP ports start here: display `D` listens on `6000 + D`.
const X_TCP_BASE: u32 = 6000;
/// More simultaneous X clients than any desktop session opens; beyond it, refused.
const MAX_CONNECTIONS: usize = 64;
/// Copy threads move bytes and nothing else.
const RELAY_STACK: usize = 128 * 1024;
const COOKIE_NAME: &[u8] = b"MIT-MAGIC-COOKIE-1";
/// libXau's FamilyWild: the entry matches whatever address the client dialled.
const FAMILY_WILD: u16 = 0xffff;

/// The host directory of the cookie: `<run dir>/uml/x11`.
pub(crate) fn host_dir(uml_host: &Path) -> PathBuf {
    uml_host.join("x11")
}

/// The guest-side environment of an instance whose display is `:display` on `bridge`.
pub(crate) fn guest_env(bridge: Ipv4Addr, display: u32) -> Vec<(String, String)> {
    vec![
        ("DISPLAY".into(), format!("{bridge}:{display}")),
        ("XAUTHORITY".into(), format!("{GUEST_DIR}/Xauthority")),
    ]
}

/// Checks, before anything starts, that a coLinux instance asked for a SPICE display
/// has a network its guest can reach the host's X display through, and returns that
/// network's name.
pub(crate) fn require_network(
    store: &crate::Store,
    name: &str,
    ifaces: &[coop_net::IfaceSpec],
) -> Result<String> {
    let link = ifaces.iter().find_map(|i| match &i.kind {
        coop_net::IfaceType::Veth { link, .. } => Some(link.clone()),
        _ => None,
    });
    let hint = "add `lxc.net.0.type = veth` and `lxc.net.0.link = NETWORK` (a network made \
                with `coop net create`) to its config";
    match link {
        None => Err(Error::Msg(format!(
            "instance {name}: a SPICE display needs a network, as its guest reaches the \
             host's X display over it; {hint}"
        ))),
        Some(None) => Err(Error::Msg(format!(
            "instance {name}: a SPICE display needs its veth on a coop network \
             (lxc.net.0.link is not set); {hint}"
        ))),
        Some(Some(l)) => {
            if l != coop_net::DEFAULT_NETWORK && store.net()?.get(&l)?.is_none() {
                return Err(Error::Msg(format!(
                    "instance {name}: a SPICE display needs its veth on a coop network, and \
                     lxc.net.0.link = {l} is not one (coop net ls); {hint}"
                )));
            }
            Ok(l)
        }
    }
}

/// The bridge address of coop network `link`, where the guest's X clients connect.
pub(crate) fn bridge_of(store: &crate::Store, link: &str) -> Result<Ipv4Addr> {
    let net = store.net()?;
    let n = if link == coop_net::DEFAULT_NETWORK {
        net.ensure_default()?
    } else {
        net.get(link)?
            .ok_or_else(|| Error::Msg(format!("no coop network named {link:?}")))?
    };
    Ok(n.bridge_addr)
}

/// The read-only hostfs share that shows the cookie directory in the guest.
pub(crate) fn guest_share() -> coop_colinux::Share {
    coop_colinux::Share {
        host: JAIL_DIR.into(),
        guest: GUEST_DIR.into(),
        read_only: true,
    }
}

/// The address the guest leased on its (first, lent) veth.
pub(crate) fn guest_addr(name: &str, attached: Option<&coop_net::Attached>) -> Result<Ipv4Addr> {
    attached
        .and_then(|a| a.ifaces.iter().find(|i| i.kind == "veth"))
        .and_then(|i| i.ipv4.as_deref())
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            Error::Msg(format!(
                "instance {name}: its veth got no IPv4 address, so no X client of the guest \
                 could be told apart; give lxc.net.0 a coop network with addresses"
            ))
        })
}

/// A fresh cookie from the kernel's random pool.
fn new_cookie() -> io::Result<[u8; 16]> {
    let mut c = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut c)?;
    Ok(c)
}

/// One Xauthority entry: family, address, display number, protocol name, data, each
/// string a big-endian u16 length and the bytes (libXau's file format).
fn xauth_entry(display: u32, cookie: &[u8]) -> Vec<u8> {
    let mut v = FAMILY_WILD.to_be_bytes().to_vec();
    let number = display.to_string();
    for field in [&b""[..], number.as_bytes(), COOKIE_NAME, cookie] {
        v.extend_from_slice(&(field.len() as u16).to_be_bytes());
        v.extend_from_slice(field);
    }
    v
}

/// Makes `dir` (0700) with a fresh cookie for `:display` in `dir/Xauthority` (0600),
/// for both the Xvfb (`-auth`) and the guest, and `dir/env` naming the display on
/// `bridge`. Returns the Xauthority path.
pub(crate) fn write_cookie(dir: &Path, display: u32, bridge: Ipv4Addr) -> Result<PathBuf> {
    let io_err = |what: &str, p: &Path| Error::io(format!("cannot {what} {}", p.display()));
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create", dir)(e)),
    }
    let path = dir.join("Xauthority");
    let cookie = new_cookie().map_err(io_err("read a cookie for", &path))?;
    let write = |p: &Path, data: &[u8]| -> Result<()> {
        let _ = std::fs::remove_file(p);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
            .and_then(|mut f| f.write_all(data))
            .map_err(io_err("write", p))
    };
    write(&path, &xauth_entry(display, &cookie))?;
    let env: String = guest_env(bridge, display)
        .iter()
        .map(|(k, v)| format!("{k}={v}\nexport {k}\n"))
        .collect();
    write(&dir.join("env"), env.as_bytes())?;
    Ok(path)
}

/// The listener and its accept thread; dropping it stops accepting and cuts the
/// connections still open.
pub(crate) struct XRelay {
    pub addr: SocketAddr,
    /// `DISPLAY` and `XAUTHORITY` for commands in the guest.
    pub env: Vec<(String, String)>,
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<(u64, TcpStream)>>>,
    thread: Option<JoinHandle<()>>,
}

impl XRelay {
    /// Listens on `bridge:6000+display` for `guest` only and relays to `socket`.
    pub fn start(
        name: &str,
        bridge: Ipv4Addr,
        display: u32,
        guest: Ipv4Addr,
        socket: PathBuf,
    ) -> Result<XRelay> {
        let port = u16::try_from(X_TCP_BASE + display)
            .map_err(|_| Error::Msg(format!("X display :{display} has no TCP port")))?;
        let addr = SocketAddr::from((bridge, port));
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::Msg(format!(
                "instance {name}: cannot listen for the guest's X clients on {addr}: {e}"
            ))
        })?;
        let listener = Arc::new(listener);
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let ctx = Accept {
            listener: listener.clone(),
            stop: stop.clone(),
            conns: conns.clone(),
            guest,
            socket,
            active: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(0),
        };
        let thread = std::thread::Builder::new()
            .name("x-relay".into())
            .stack_size(RELAY_STACK)
            .spawn(move || ctx.run())
            .map_err(Error::io("cannot start the X relay thread"))?;
        let disp = display;
        tracing::info!("X relay for the guest at {guest}: {addr} to X display :{disp}");
        Ok(XRelay {
            addr,
            env: guest_env(bridge, display),
            listener,
            stop,
            conns,
            thread: Some(thread),
        })
    }
}

impl Drop for XRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) on a socket we own; on a listening socket it wakes the
        // thread blocked in accept(2), which then sees `stop`.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        for (_, s) in conns.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        tracing::debug!(
            "X relay on {} closed ({} connections cut)",
            self.addr,
            conns.len()
        );
    }
}

struct Accept {
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<(u64, TcpStream)>>>,
    guest: Ipv4Addr,
    socket: PathBuf,
    active: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

impl Accept {
    fn run(&self) {
        loop {
            let res = self.listener.accept();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            match res {
                Ok((tcp, peer)) => self.on_connection(tcp, peer),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors or memory: back off rather than spin.
                    tracing::warn!("X relay: accept: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }

    fn on_connection(&self, tcp: TcpStream, peer: SocketAddr) {
        if peer.ip() != IpAddr::V4(self.guest) {
            tracing::warn!(%peer, "X relay: refused a client that is not the guest");
            return;
        }
        if self.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            tracing::warn!(%peer, "X relay: more than {MAX_CONNECTIONS} X clients; refused");
            return;
        }
        let unix = match UnixStream::connect(&self.socket) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!("X relay: cannot reach {}: {e}", self.socket.display());
                return;
            }
        };
        // X requests are small and answered one by one: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let (Ok(tcp2), Ok(unix2), Ok(tcp3)) = (tcp.try_clone(), unix.try_clone(), tcp.try_clone())
        else {
            return;
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, tcp3));
        self.active.fetch_add(1, Ordering::SeqCst);
        let guard = Arc::new(ConnGuard {
            id,
            active: self.active.clone(),
            conns: self.conns.clone(),
        });
        let g2 = guard.clone();
        let spawn = |f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name("x-relay-conn".into())
                .stack_size(RELAY_STACK)
                .spawn(f)
        };
        let up = spawn(Box::new(move || {
            pump(tcp, unix);
            drop(guard);
        }));
        let down = spawn(Box::new(move || {
            pump(unix2, tcp2);
            drop(g2);
        }));
        if up.is_err() || down.is_err() {
            tracing::warn!("X relay: cannot start a connection thread");
        }
    }
}

/// Copies `from` to `to` until either side ends, then tells `to` no more is coming.
fn pump<R: Read, W: Write + ShutdownWrite>(mut from: R, mut to: W) {
    let _ = io::copy(&mut from, &mut to);
    to.shutdown_write();
}

trait ShutdownWrite {
    fn shutdown_write(&self);
}

impl ShutdownWrite for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl ShutdownWrite for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Held by both copy threads of a connection; the last one out forgets it.
struct ConnGuard {
    id: u64,
    active: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<(u64, TcpStream)>>>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(i, _)| *i != self.id);
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_needs_a_veth_on_a_coop_network() {
        let d = tempfile::tempdir().unwrap();
        let store = crate::Store::new(Some(d.path()));
        let ifaces = |kv: &[(&str, &str)]| {
            let keys: Vec<(String, String)> = kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            coop_net::parse_interfaces(&keys).unwrap()
        };
        let err = |kv: &[(&str, &str)]| {
            require_network(&store, "vm", &ifaces(kv))
                .unwrap_err()
                .to_string()
        };
        let none = err(&[]);
        assert!(none.contains("needs a network"), "{none}");
        assert!(none.contains("lxc.net.0.link = NETWORK"), "{none}");
        let empty = err(&[("0.type", "empty")]);
        assert!(empty.contains("needs a network"), "{empty}");
        let unlinked = err(&[("0.type", "veth")]);
        assert!(unlinked.contains("lxc.net.0.link is not set"), "{unlinked}");
        let foreign = err(&[("0.type", "veth"), ("0.link", "br-other")]);
        assert!(foreign.contains("br-other is not one"), "{foreign}");
        let default = require_network(
            &store,
            "vm",
            &ifaces(&[("0.type", "veth"), ("0.link", coop_net::DEFAULT_NETWORK)]),
        )
        .unwrap();
        assert_eq!(default, coop_net::DEFAULT_NETWORK);
    }

    #[test]
    fn xauthority_entry_is_libxau_format() {
        let e = xauth_entry(61, &[0xab; 16]);
        let mut want = vec![0xff, 0xff, 0, 0, 0, 2, b'6', b'1', 0, 18];
        want.extend_from_slice(b"MIT-MAGIC-COOKIE-1");
        want.extend_from_slice(&[0, 16]);
        want.extend_from_slice(&[0xab; 16]);
        assert_eq!(e, want);
    }

    #[test]
    fn cookie_files_are_private_and_fresh() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("x11");
        let bridge = Ipv4Addr::new(10, 232, 1, 1);
        let p = write_cookie(&dir, 62, bridge).unwrap();
        let first = std::fs::read(&p).unwrap();
        assert_eq!(first.len(), 2 + 2 + 2 + 2 + 2 + 18 + 2 + 16);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&p), 0o600);
        let env = std::fs::read_to_string(dir.join("env")).unwrap();
        assert!(env.contains("DISPLAY=10.232.1.1:62\n"), "{env}");
        assert!(env.contains("XAUTHORITY=/var/lib/coop/x11/Xauthority\n"));
        // A restart makes a new cookie.
        write_cookie(&dir, 62, bridge).unwrap();
        assert_ne!(
            std::fs::read(&p).unwrap()[first.len() - 16..],
            first[first.len() - 16..]
        );
    }

    #[test]
    fn relay_serves_only_the_guest_address() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("X");
        let server = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // Loopback stands in for the bridge; the "guest" is 127.0.0.1 and 127.0.0.2 is not.
        let display = 1000 + std::process::id() % 20000;
        let relay = XRelay::start(
            "t",
            Ipv4Addr::LOCALHOST,
            display,
            Ipv4Addr::LOCALHOST,
            sock.clone(),
        )
        .unwrap();
        assert_eq!(relay.addr.port() as u32, 6000 + display);

        // Another address: the connection is closed and never reaches the X server.
        let mut o = connect_from(Ipv4Addr::new(127, 0, 0, 2), relay.addr).expect("127.0.0.2");
        o.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        match o.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("a foreign client was served: {other:?}"),
        }
        server.set_nonblocking(true).unwrap();
        assert_eq!(
            server.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "the relay connected a foreign client to the X server"
        );
        server.set_nonblocking(false).unwrap();

        // The guest: bytes flow both ways, and the server's end reaches the client.
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        });
        let mut c = TcpStream::connect(relay.addr).unwrap();
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");
        echo.join().unwrap();
        assert_eq!(c.read(&mut b).unwrap(), 0);

        let addr = relay.addr;
        drop(relay);
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }

    /// A TCP connection from a chosen local address (127.0.0.2 is loopback too).
    fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> Option<TcpStream> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket/bind/connect on a descriptor we create and hand to
        // TcpStream, which then owns it; the sockaddr_in lives across the calls.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return None;
            }
            let s = TcpStream::from_raw_fd(fd);
            let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            let a = sin(src, 0);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), len) != 0 {
                return None;
            }
            let SocketAddr::V4(d) = dst else { return None };
            let b = sin(*d.ip(), d.port());
            if libc::connect(fd, (&b as *const libc::sockaddr_in).cast(), len) != 0 {
                return None;
            }
            Some(s)
        }
    }
}
