//! One dnsmasq per bridge, in static mode: it answers only MACs listed in the hosts file
//! coop writes from its leases, so a guest's DHCP address is always coop's allocation.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::store::{Lease, Network};
use crate::NetError;

pub(crate) struct DhcpFiles {
    pub hosts: PathBuf,
    pub pid: PathBuf,
    pub leases: PathBuf,
}

pub(crate) fn files(run_dir: &Path, net: &str) -> DhcpFiles {
    DhcpFiles {
        hosts: run_dir.join(format!("{net}.dhcp-hosts")),
        pid: run_dir.join(format!("{net}.dnsmasq.pid")),
        leases: run_dir.join(format!("{net}.dnsmasq.leases")),
    }
}

fn derr(net: &str, msg: impl Into<String>) -> NetError {
    NetError::Dhcp {
        network: net.to_string(),
        msg: msg.into(),
    }
}

/// Writes the `mac,ip` hosts file dnsmasq re-reads on SIGHUP.
pub(crate) fn write_hosts(run_dir: &Path, net: &str, leases: &[Lease]) -> Result<(), NetError> {
    let f = files(run_dir, net);
    let text = hosts_text(leases);
    let tmp = f.hosts.with_extension("tmp");
    fs::write(&tmp, text).map_err(|e| NetError::io(&tmp, e))?;
    // dnsmasq re-reads the file after dropping root.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
        .map_err(|e| NetError::io(&tmp, e))?;
    fs::rename(&tmp, &f.hosts).map_err(|e| NetError::io(&f.hosts, e))
}

fn hosts_text(leases: &[Lease]) -> String {
    let mut text = String::new();
    for l in leases {
        if let Some(mac) = &l.hwaddr {
            text.push_str(&format!("{mac},{}\n", l.ip));
        }
    }
    text
}

/// The address dnsmasq's lease file (`EXPIRY MAC IP HOST CLIENT-ID` per line) shows
/// bound to `mac`, compared without regard to case.
pub(crate) fn bound_in(leases_file: &str, mac: &str) -> Option<std::net::Ipv4Addr> {
    leases_file.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_expiry, m, ip) = (f.next()?, f.next()?, f.next()?);
        if m.eq_ignore_ascii_case(mac) {
            ip.parse().ok()
        } else {
            None
        }
    })
}

/// The pid of our running dnsmasq for `net`, verified through its command line (a stale
/// pid file may name a reused pid).
pub(crate) fn running_pid(run_dir: &Path, net: &str) -> Option<i32> {
    let f = files(run_dir, net);
    let pid: i32 = fs::read_to_string(&f.pid).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let ours = cmdline.starts_with("dnsmasq") || cmdline.contains("/dnsmasq\0");
    (ours && cmdline.contains(&*f.pid.to_string_lossy())).then_some(pid)
}

/// True when an unprivileged process can reach `path` (every ancestor searchable by others).
fn world_reachable(path: &Path) -> bool {
    path.ancestors().skip(1).all(|d| {
        fs::metadata(d)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

/// Starts dnsmasq for `net` unless it runs; otherwise makes it re-read its hosts file.
pub(crate) fn ensure(run_dir: &Path, net: &Network, leases: &[Lease]) -> Result<(), NetError> {
    let running = running_pid(run_dir, &net.name);
    if running.is_some() {
        // A restart with the same lease changes nothing: spare the rewrite and the reload.
        let current = fs::read(files(run_dir, &net.name).hosts).ok();
        if current.as_deref() == Some(hosts_text(leases).as_bytes()) {
            return Ok(());
        }
    }
    write_hosts(run_dir, &net.name, leases)?;
    if let Some(pid) = running {
        kill(Pid::from_raw(pid), Signal::SIGHUP)
            .map_err(|e| derr(&net.name, format!("SIGHUP to pid {pid}: {e}")))?;
        return Ok(());
    }
    let f = files(run_dir, &net.name);
    let _ = fs::remove_file(&f.pid);
    let user = if world_reachable(&f.hosts) {
        "nobody"
    } else {
        // Our state directory is private: an unprivileged dnsmasq could not re-read the
        // hosts file on SIGHUP.
        "root"
    };
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--conf-file=/dev/null",
        "--strict-order",
        "--bind-interfaces",
        "--except-interface=lo",
        "--dhcp-no-override",
        "--dhcp-authoritative",
        "--no-ping",
        "--no-hosts",
    ]);
    cmd.arg(format!("--user={user}"))
        .arg(format!("--listen-address={}", net.bridge_addr))
        .arg(format!(
            "--dhcp-range={},static,{},1h",
            net.network_addr(),
            net.netmask()
        ))
        .arg(format!("--dhcp-option=option:router,{}", net.bridge_addr))
        .arg(format!("--dhcp-hostsfile={}", f.hosts.display()))
        .arg(format!("--dhcp-leasefile={}", f.leases.display()))
        .arg(format!("--pid-file={}", f.pid.display()));
    let out = cmd
        .output()
        .map_err(|e| derr(&net.name, format!("cannot run dnsmasq: {e}")))?;
    if !out.status.success() {
        return Err(derr(
            &net.name,
            format!(
                "exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    // The daemon writes its pid file right after forking; wait for it so stop() works.
    let deadline = Instant::now() + Duration::from_secs(2);
    while running_pid(run_dir, &net.name).is_none() {
        if Instant::now() > deadline {
            return Err(derr(&net.name, "started but wrote no pid file"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::debug!(network = %net.name, "dnsmasq started");
    Ok(())
}

/// Stops our dnsmasq for `net` (if any) and removes its run files.
pub(crate) fn stop(run_dir: &Path, net: &str) -> Result<(), NetError> {
    if let Some(pid) = running_pid(run_dir, net) {
        let p = Pid::from_raw(pid);
        let _ = kill(p, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                let _ = kill(p, Signal::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let f = files(run_dir, net);
    for p in [&f.pid, &f.hosts, &f.leases] {
        let _ = fs::remove_file(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_lease_found_by_mac() {
        let f = "1795724641 d6:9b:98:c1:fa:10 10.77.1.2 gn-deb1 ff:da:d2\n\
                 1795724700 02:00:00:00:00:01 10.77.1.3 * *\n\
                 garbage\n";
        assert_eq!(
            bound_in(f, "D6:9B:98:C1:FA:10"),
            Some("10.77.1.2".parse().unwrap())
        );
        assert_eq!(
            bound_in(f, "02:00:00:00:00:01"),
            Some("10.77.1.3".parse().unwrap())
        );
        assert_eq!(bound_in(f, "02:00:00:00:00:02"), None);
        assert_eq!(bound_in("", "02:00:00:00:00:02"), None);
    }
}
