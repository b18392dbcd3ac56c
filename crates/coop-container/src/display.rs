//! GUI containers: an X display for the container, shown to SPICE clients.
//!
//! The monitor starts an Xvfb on the host (the container never gets the host's X
//! server), binds its socket into the container as display `:0`, and runs coop's SPICE
//! server on that display. Both are children of the monitor and end with it.
//!
//! Without a password the server may only listen on a loopback address; with one
//! (`coop.display.spice.password-file`, `coop start --spice-password-file`) clients
//! must send it and any address is allowed. The server also answers on a control
//! socket in the container's run directory (`coop spice handover -n NAME`).
//!
//! A coLinux guest is another kernel and cannot share a socket: its Xvfb demands a
//! cookie and the guest reaches it over the network through [`crate::xrelay`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coop_config::MountEntry;

use crate::{Error, Result};

pub(crate) struct GuiDisplay {
    pub display: u32,
    pub addr: String,
    xvfb: Child,
    server: Option<Child>,
    /// The Xauthority file the Xvfb was started with (`-auth`), when it demands one.
    auth: Option<PathBuf>,
    /// The file whose first line clients must send as password, if any.
    pub password_file: Option<PathBuf>,
    /// The server's control socket, removed with the display (the server is killed).
    control: Option<PathBuf>,
}

/// Where a GUI container's SPICE server listens for control requests.
pub fn control_socket(store: &crate::Store, name: &str) -> PathBuf {
    store.run_dir(name).join("spice.ctl")
}

/// Checks that a SPICE password file is usable (the server reads it again itself).
fn check_password_file(name: &str, f: &Path) -> Result<()> {
    let text = std::fs::read_to_string(f).map_err(|e| {
        Error::Msg(format!(
            "container {name}: cannot read the SPICE password file {}: {e}",
            f.display()
        ))
    })?;
    let pw = text.lines().next().unwrap_or("");
    if pw.is_empty() {
        return Err(Error::Msg(format!(
            "container {name}: the SPICE password file {} is empty",
            f.display()
        )));
    }
    // SPICE's ticket limit.
    if pw.len() > 60 {
        return Err(Error::Msg(format!(
            "container {name}: the password in {} is {} bytes, SPICE allows at most 60",
            f.display(),
            pw.len()
        )));
    }
    Ok(())
}

/// The first display number with neither a socket nor a lock file.
fn free_display() -> Option<u32> {
    (20..200).find(|n| {
        !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
    })
}

impl GuiDisplay {
    /// Start the Xvfb. `addr` is `HOST:PORT` for the SPICE server, checked here so a bad
    /// value fails before the container exists. With `cookie_for`, a coLinux guest's
    /// (the cookie directory and the bridge address it dials), the Xvfb demands a fresh
    /// cookie written there.
    pub fn start(
        name: &str,
        addr: &str,
        password_file: Option<&Path>,
        cookie_for: Option<(&Path, std::net::Ipv4Addr)>,
    ) -> Result<GuiDisplay> {
        if let Some(f) = password_file {
            check_password_file(name, f)?;
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
            Error::Msg(format!(
                "container {name}: SPICE address {addr:?} is not HOST:PORT"
            ))
        })?;
        let ip: std::net::IpAddr = host
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| {
                Error::Msg(format!(
                    "container {name}: SPICE host {host:?} is not an IP address"
                ))
            })?;
        let port: u16 = port.parse().map_err(|_| {
            Error::Msg(format!(
                "container {name}: SPICE port {port:?} is not a number"
            ))
        })?;
        // Refuse a taken port now rather than after the container started.
        std::net::TcpListener::bind((ip, port)).map_err(|e| {
            Error::Msg(format!(
                "container {name}: cannot serve SPICE on {addr}: {e}"
            ))
        })?;
        if !ip.is_loopback() && password_file.is_none() {
            return Err(Error::Msg(format!(
                "container {name}: SPICE on {addr} would be reachable from the network without a password; \
                 use a 127.0.0.1 address, or set a password (coop.display.spice.password-file, \
                 coop start --spice-password-file FILE)"
            )));
        }
        let display = free_display()
            .ok_or_else(|| Error::Msg("no free X display number between :20 and :199".into()))?;
        let auth = match cookie_for {
            Some((dir, bridge)) => Some(crate::xrelay::write_cookie(dir, display, bridge)?),
            None => None,
        };
        let mut xvfb = with_default_signals(Command::new("Xvfb"));
        xvfb.arg(format!(":{display}")).args([
            "-screen",
            "0",
            "1024x768x24",
            "-nolisten",
            "tcp",
            "-noreset",
        ]);
        if let Some(a) = &auth {
            xvfb.arg("-auth").arg(a);
        }
        let xvfb = xvfb
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Msg(format!(
                    "container {name}: cannot run Xvfb for its display ({e}); install the xvfb package"
                ))
            })?;
        let mut gui = GuiDisplay {
            display,
            addr: addr.to_string(),
            xvfb,
            server: None,
            auth,
            password_file: password_file.map(Path::to_path_buf),
            control: None,
        };
        let sock = gui.socket();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if Instant::now() > deadline || gui.xvfb.try_wait().ok().flatten().is_some() {
                return Err(Error::Msg(format!(
                    "container {name}: Xvfb :{display} did not come up"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(gui)
    }

    pub fn socket(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/.X11-unix/X{}", self.display))
    }

    /// The bind mount that makes the display `:0` inside the container.
    pub fn mount_entry(&self) -> MountEntry {
        MountEntry {
            source: self.socket().display().to_string(),
            target: "tmp/.X11-unix/X0".into(),
            fstype: "none".into(),
            options: vec!["bind".into(), "create=file".into()],
        }
    }

    /// Serve the display with `coop spice serve`, re-executing our own binary, with a
    /// control socket at `control`.
    pub fn serve(&mut self, exe: &Path, control: &Path) -> Result<()> {
        let (host, port) = self.addr.rsplit_once(':').expect("checked in start");
        let mut cmd = with_default_signals(Command::new(exe));
        if let Some(a) = &self.auth {
            cmd.env("XAUTHORITY", a);
        }
        let child = cmd
            .args(["spice", "serve", "--x11", &format!(":{}", self.display)])
            .args([
                "--addr",
                host.trim_matches(|c| c == '[' || c == ']'),
                "--port",
                port,
            ])
            .args(match &self.password_file {
                Some(f) => vec![std::ffi::OsStr::new("--password-file"), f.as_os_str()],
                None => vec![std::ffi::OsStr::new("--disable-ticketing")],
            })
            .arg("--control-socket")
            .arg(control)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(Error::io("cannot start the SPICE server"))?;
        self.server = Some(child);
        self.control = Some(control.to_path_buf());
        // Ready when the port accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            if Instant::now() > deadline {
                return Err(Error::Msg(format!(
                    "SPICE server on {} did not come up",
                    self.addr
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// The monitor ignores SIGPIPE; its helpers must start with default dispositions. They
/// also get SIGTERM when the monitor dies, so a monitor killed with SIGKILL leaves no
/// display or server running behind it.
fn with_default_signals(mut cmd: Command) -> Command {
    use std::os::unix::process::CommandExt;
    let monitor = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only calls signal(2),
    // sigprocmask(2), prctl(2) and getppid(2), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            crate::init::reset_signals();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            // The monitor may have died before prctl took effect.
            if libc::getppid() != monitor {
                return Err(std::io::Error::other("the monitor is gone"));
            }
            Ok(())
        });
    }
    cmd
}

impl Drop for GuiDisplay {
    fn drop(&mut self) {
        if let Some(s) = &mut self.server {
            let _ = s.kill();
            let _ = s.wait();
        }
        if let Some(c) = &self.control {
            let _ = std::fs::remove_file(c);
        }
        // SIGTERM lets Xvfb remove its socket and lock file.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.xvfb.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.xvfb.wait();
    }
}
