//! `coop info` and `coop ls`: what a container is doing and what it is allowed to do.

use serde::Serialize;

use coop_cgroups::{Cgroup, Hierarchy, Stats};
use coop_config::Config;

use crate::state::RunState;
use crate::{Result, Store};

#[derive(Debug, Serialize)]
pub struct Info {
    pub name: String,
    pub kind: String,
    /// RUNNING, FROZEN or STOPPED, as lxc-info prints it.
    pub state: String,
    pub pid: Option<i32>,
    pub started_at: Option<u64>,
    pub ips: Vec<String>,
    pub cpu_use_ns: Option<u64>,
    pub memory_use_bytes: Option<u64>,
    /// Limits in force, read back from the cgroup while running, else from the config.
    pub limits: LimitsInfo,
    pub autostart: bool,
    pub rootfs: String,
    pub console_log: String,
    pub spice: Option<String>,
    /// Whether SPICE clients must send a password (never the password itself).
    pub spice_password_required: bool,
    pub interfaces: Vec<coop_net::IfaceStats>,
}

#[derive(Debug, Serialize, Default)]
pub struct LimitsInfo {
    pub cpu: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpuset: Option<String>,
}

pub fn info(store: &Store, name: &str) -> Result<Info> {
    store.require(name)?;
    let config = Config::load(&store.config_path(name))?;
    let st = RunState::load(store, name)?;
    let mut info = Info {
        name: name.to_string(),
        kind: config.kind.clone().unwrap_or_else(|| "container".into()),
        state: "STOPPED".into(),
        pid: None,
        started_at: None,
        ips: vec![],
        cpu_use_ns: None,
        memory_use_bytes: None,
        limits: LimitsInfo {
            cpu: config.limits.cpu,
            memory_bytes: config.limits.memory,
            pids: config.limits.pids,
            cpuset: config.limits.cpuset.clone(),
        },
        autostart: config.start_auto,
        rootfs: config
            .rootfs
            .clone()
            .unwrap_or_else(|| store.dir(name).join("rootfs"))
            .display()
            .to_string(),
        console_log: config
            .console_logfile
            .clone()
            .unwrap_or_else(|| store.console_log(name))
            .display()
            .to_string(),
        spice: None,
        spice_password_required: false,
        interfaces: vec![],
    };
    if let Some(st) = st {
        let cg = Cgroup::new(&Hierarchy::detect()?, &st.cgroup);
        let stats: Stats = cg.stats().unwrap_or_default();
        info.state = if is_frozen(&cg) {
            "FROZEN".into()
        } else {
            "RUNNING".into()
        };
        info.pid = Some(st.init_pid);
        info.started_at = Some(st.started_at);
        info.cpu_use_ns = stats.cpu_usage_ns;
        info.memory_use_bytes = stats.memory_bytes;
        info.limits = LimitsInfo {
            cpu: stats.cpu_quota,
            memory_bytes: stats.memory_limit,
            pids: stats.pids_max,
            cpuset: stats.cpuset.or(info.limits.cpuset),
        };
        info.ips = addresses(st.init_pid);
        let attached: Option<coop_net::Attached> =
            st.net.clone().and_then(|v| serde_json::from_value(v).ok());
        let attached_guest = attached.clone();
        info.interfaces = match attached {
            Some(a) => coop_net::iface_stats_attached(&a).unwrap_or_default(),
            None => coop_net::iface_stats(st.init_pid).unwrap_or_default(),
        };
        if st.kind.as_deref() == Some("colinux") {
            if let Some(a) = &attached_guest {
                guest_leases(store, a, &mut info);
            }
        }
        info.spice = st.spice;
        info.spice_password_required = st.spice_password;
    }
    Ok(info)
}

/// A coLinux guest's addresses are inside its own kernel, out of the host's sight; what
/// the host knows is which address coop's DHCP server handed to each guest MAC. Those
/// go into `ips` and onto the interface of the guest's host side, once the guest has
/// actually taken them.
fn guest_leases(store: &Store, a: &coop_net::Attached, info: &mut Info) {
    let Ok(net) = store.net() else { return };
    for i in &a.ifaces {
        let (Some(network), Some(mac)) = (&i.network, &i.hwaddr) else {
            continue;
        };
        let Some(ip) = net.dhcp_bound(network, mac) else {
            continue;
        };
        let ip = ip.to_string();
        if !info.ips.contains(&ip) {
            info.ips.push(ip.clone());
        }
        let prefix = i
            .ipv4
            .as_deref()
            .and_then(|c| c.split_once('/'))
            .map(|(_, p)| p)
            .unwrap_or("32");
        if let Some(s) = info.interfaces.iter_mut().find(|s| s.name == i.name) {
            let cidr = format!("{ip}/{prefix}");
            if !s.addresses.contains(&cidr) {
                s.addresses.push(cidr);
            }
        }
    }
}

fn is_frozen(cg: &Cgroup) -> bool {
    if let Some(p) = cg.path("freezer") {
        return std::fs::read_to_string(p.join("freezer.state"))
            .is_ok_and(|s| s.trim() == "FROZEN");
    }
    cg.unified_path().is_some_and(|p| {
        std::fs::read_to_string(p.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    })
}

pub fn list(store: &Store) -> Result<Vec<Info>> {
    store.list()?.iter().map(|n| info(store, n)).collect()
}

/// The container's IPv4 addresses (loopback excluded), read from its network namespace's
/// routing table without entering it.
fn addresses(pid: i32) -> Vec<String> {
    let Ok(trie) = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")) else {
        return vec![];
    };
    let mut out: Vec<String> = Vec::new();
    let mut last_ip: Option<&str> = None;
    for line in trie.lines() {
        let t = line.trim_start();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last_ip = Some(ip.trim());
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = last_ip {
                if !ip.starts_with("127.") && !out.iter().any(|o| o == ip) {
                    out.push(ip.to_string());
                }
            }
        }
    }
    out
}

/// lxc-info's human format.
pub fn render(i: &Info) -> String {
    let mut s = format!("Name:           {}\nState:          {}\n", i.name, i.state);
    if let Some(pid) = i.pid {
        s += &format!("PID:            {pid}\n");
    }
    for ip in &i.ips {
        s += &format!("IP:             {ip}\n");
    }
    if let Some(ns) = i.cpu_use_ns {
        s += &format!("CPU use:        {:.2} seconds\n", ns as f64 / 1e9);
    }
    if let Some(m) = i.memory_use_bytes {
        s += &format!("Memory use:     {}\n", human(m));
    }
    let l = &i.limits;
    s += &format!(
        "CPU limit:      {}\n",
        l.cpu
            .map(|c| format!("{c} CPUs"))
            .unwrap_or_else(|| "none".into())
    );
    s += &format!(
        "Memory limit:   {}\n",
        l.memory_bytes.map(human).unwrap_or_else(|| "none".into())
    );
    s += &format!(
        "Pids limit:     {}\n",
        l.pids
            .map(|p| p.to_string())
            .unwrap_or_else(|| "none".into())
    );
    if let Some(c) = &l.cpuset {
        s += &format!("CPU set:        {c}\n");
    }
    for n in &i.interfaces {
        if n.name == "lo" {
            continue;
        }
        s += &format!(
            "Link:           {}{} rx {} tx {} ({})\n",
            n.name,
            n.host_veth
                .as_ref()
                .map(|h| format!(" (host {h})"))
                .unwrap_or_default(),
            human(n.rx_bytes),
            human(n.tx_bytes),
            n.addresses.join(", ")
        );
    }
    if let Some(sp) = &i.spice {
        s += &format!("SPICE:          spice://{sp}\n");
        s += &format!(
            "SPICE password: {}\n",
            if i.spice_password_required {
                "required"
            } else {
                "none (loopback only)"
            }
        );
    }
    s
}

fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < U.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", U[u])
}

/// Containers whose config attaches an interface to network `net` (running or not).
pub fn users_of_network(store: &Store, net: &str) -> Result<Vec<String>> {
    let mut users = Vec::new();
    for n in store.list()? {
        let c = Config::load(&store.config_path(&n))?;
        if c.net.iter().any(|(k, v)| k.ends_with(".link") && v == net) {
            users.push(n);
        }
    }
    Ok(users)
}
