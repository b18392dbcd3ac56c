//! Network definitions, leases and published ports on disk, and the host-side objects
//! (bridge, nft table, dnsmasq) derived from them.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::spec::{valid_ifname, Proto};
use crate::{dhcp, nft, nl, NetError};

/// Name of the network made by [`NetStore::ensure_default`].
pub const DEFAULT_NETWORK: &str = "coopbr0";
/// Bridge address and prefix of the default network.
pub const DEFAULT_SUBNET: &str = "10.0.3.1/24";

/// A network definition: a bridge named `name` holding `bridge_addr/prefix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub bridge_addr: Ipv4Addr,
    pub prefix: u8,
    pub nat: bool,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn overlaps(a: Ipv4Addr, ap: u8, b: Ipv4Addr, bp: u8) -> bool {
    let m = mask(ap.min(bp));
    u32::from(a) & m == u32::from(b) & m
}

impl Network {
    /// `bridge_addr/prefix`, the form `create_network` takes.
    pub fn subnet(&self) -> String {
        format!("{}/{}", self.bridge_addr, self.prefix)
    }
    pub fn network_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.bridge_addr) & mask(self.prefix))
    }
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network_addr()) | !mask(self.prefix))
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        overlaps(ip, 32, self.bridge_addr, self.prefix)
    }
}

/// One line of `coop net ls`.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkInfo {
    pub name: String,
    pub subnet: String,
    pub nat: bool,
    pub bridge_up: bool,
    pub leases: usize,
}

/// An address held by a container interface; kept across restarts, dropped on destroy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub container: String,
    /// The `N` of `lxc.net.N`.
    pub index: u32,
    pub hwaddr: Option<String>,
    pub ip: Ipv4Addr,
    /// Set by `ipv4.address` rather than allocated.
    pub fixed: bool,
}

/// An active published port (DNAT rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRule {
    pub container: String,
    pub network: String,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// The coop networking state directory.
pub struct NetStore {
    dir: PathBuf,
    table: String,
    /// Networks found ready by `ensure_up`, and when.
    verified: Mutex<HashMap<String, Instant>>,
}

/// How long an `ensure_up` check stands in for the one `setup` makes.
const VERIFIED_FOR: Duration = Duration::from_secs(1);

pub(crate) struct Lock(#[allow(dead_code)] Flock<File>);

fn neterr(name: &str, reason: impl Into<String>) -> NetError {
    NetError::Network {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T, NetError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| NetError::Json {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(NetError::io(path, e)),
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), NetError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(v).map_err(|source| NetError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    fs::write(&tmp, text).map_err(|e| NetError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| NetError::io(path, e))
}

fn parse_subnet(name: &str, subnet: &str) -> Result<(Ipv4Addr, u8), NetError> {
    let (a, p) = subnet
        .split_once('/')
        .ok_or_else(|| neterr(name, format!("subnet {subnet:?}: expected A.B.C.D/PREFIX")))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| neterr(name, format!("subnet {subnet:?}: bad IPv4 address")))?;
    let prefix: u8 = p
        .parse()
        .map_err(|_| neterr(name, format!("subnet {subnet:?}: bad prefix length")))?;
    if !(8..=30).contains(&prefix) {
        return Err(neterr(
            name,
            format!("subnet {subnet:?}: prefix must be 8..=30"),
        ));
    }
    let n = Network {
        name: name.into(),
        bridge_addr: addr,
        prefix,
        nat: false,
    };
    if addr == n.network_addr() || addr == n.broadcast() {
        return Err(neterr(
            name,
            format!("subnet {subnet:?}: give the bridge's own address (e.g. x.y.z.1/24), not the network or broadcast address"),
        ));
    }
    if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() || addr.is_link_local() {
        return Err(neterr(
            name,
            format!("subnet {subnet:?}: not a usable range"),
        ));
    }
    Ok((addr, prefix))
}

impl NetStore {
    /// Opens (creating) the state directory; the nft table is `inet coop`.
    pub fn open(state_dir: &Path) -> Result<NetStore, NetError> {
        NetStore::open_with_table(state_dir, "coop")
    }

    /// Like [`NetStore::open`] with another nft table name, for isolated instances (tests).
    pub fn open_with_table(state_dir: &Path, table: &str) -> Result<NetStore, NetError> {
        if table.is_empty()
            || table.len() > 32
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(neterr(table, "nft table name must be [A-Za-z0-9_]{1,32}"));
        }
        for sub in ["networks", "leases", "run"] {
            let d = state_dir.join(sub);
            fs::create_dir_all(&d).map_err(|e| NetError::io(&d, e))?;
        }
        Ok(NetStore {
            dir: state_dir.to_path_buf(),
            table: table.to_string(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The nft table (family `inet`) holding this store's rules.
    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn lock(&self) -> Result<Lock, NetError> {
        let p = self.dir.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| NetError::io(&p, e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map(Lock)
            .map_err(|(_, e)| NetError::io(&p, e.into()))
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn net_path(&self, name: &str) -> PathBuf {
        self.dir.join("networks").join(format!("{name}.json"))
    }

    fn leases_path(&self, name: &str) -> PathBuf {
        self.dir.join("leases").join(format!("{name}.json"))
    }

    fn ports_path(&self) -> PathBuf {
        self.run_dir().join("ports.json")
    }

    /// The definition of network `name`, if it is one of ours.
    pub fn get(&self, name: &str) -> Result<Option<Network>, NetError> {
        if !valid_ifname(name) {
            return Ok(None);
        }
        let p = self.net_path(name);
        if !p.exists() {
            return Ok(None);
        }
        let n: Option<Network> = read_json(&p)?;
        Ok(n)
    }

    pub(crate) fn networks(&self) -> Result<Vec<Network>, NetError> {
        let d = self.dir.join("networks");
        let mut out = Vec::new();
        for e in fs::read_dir(&d).map_err(|e| NetError::io(&d, e))? {
            let e = e.map_err(|e| NetError::io(&d, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".json") {
                if let Some(n) = self.get(stem)? {
                    out.push(n);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Leases of network `net`.
    pub fn leases(&self, net: &str) -> Result<Vec<Lease>, NetError> {
        read_json(&self.leases_path(net))
    }

    pub(crate) fn write_leases(&self, net: &str, l: &[Lease]) -> Result<(), NetError> {
        write_json(&self.leases_path(net), &l)
    }

    /// The address coop's DHCP server on `net` has handed to the interface with MAC
    /// `hwaddr`, if it has (from dnsmasq's lease file). For a guest kernel (coLinux) this
    /// is the only host-side sign that the guest took its lease: its addresses live in
    /// the guest, not in any host namespace.
    pub fn dhcp_bound(&self, net: &str, hwaddr: &str) -> Option<std::net::Ipv4Addr> {
        let f = crate::dhcp::files(&self.run_dir(), net);
        let text = fs::read_to_string(&f.leases).ok()?;
        crate::dhcp::bound_in(&text, hwaddr)
    }

    /// Active published ports of all containers.
    pub fn ports(&self) -> Result<Vec<PortRule>, NetError> {
        read_json(&self.ports_path())
    }

    pub(crate) fn write_ports(&self, p: &[PortRule]) -> Result<(), NetError> {
        write_json(&self.ports_path(), &p)
    }

    /// Turns on IPv4 forwarding; remembers whether coop did it, in which case only our
    /// bridges' traffic is forwarded (policy drop in our forward chain).
    fn enable_forwarding(&self) -> Result<(), NetError> {
        let p = Path::new("/proc/sys/net/ipv4/ip_forward");
        let cur = fs::read_to_string(p).map_err(|e| NetError::io(p, e))?;
        if cur.trim() == "0" {
            let flag = self.run_dir().join("forwarding-enabled-by-coop");
            fs::write(&flag, "1\n").map_err(|e| NetError::io(&flag, e))?;
            fs::write(p, "1\n").map_err(|e| NetError::io(p, e))?;
        }
        Ok(())
    }

    /// Rewrites our nft table from the definitions and active ports.
    pub(crate) fn apply_nft(&self) -> Result<(), NetError> {
        let nets = self.networks()?;
        let ports = self.ports()?;
        if !nets.is_empty() {
            self.enable_forwarding()?;
        }
        let drop = self.run_dir().join("forwarding-enabled-by-coop").exists();
        nft::apply(&nft::ruleset(&self.table, &nets, &ports, drop))
    }

    /// Creates network `name` with bridge address/prefix `subnet` (e.g. `10.0.3.1/24`).
    pub fn create_network(&self, name: &str, subnet: &str, nat: bool) -> Result<Network, NetError> {
        let _l = self.lock()?;
        self.create_locked(name, subnet, nat)
    }

    fn create_locked(&self, name: &str, subnet: &str, nat: bool) -> Result<Network, NetError> {
        if !valid_ifname(name) {
            return Err(neterr(
                name,
                "not a valid interface name (1..=15 characters, no '/', ':' or spaces)",
            ));
        }
        let (bridge_addr, prefix) = parse_subnet(name, subnet)?;
        if self.get(name)?.is_some() {
            return Err(neterr(name, "already exists"));
        }
        for other in self.networks()? {
            if overlaps(bridge_addr, prefix, other.bridge_addr, other.prefix) {
                return Err(neterr(
                    name,
                    format!(
                        "subnet {subnet} overlaps network {:?} ({})",
                        other.name,
                        other.subnet()
                    ),
                ));
            }
        }
        nl::with_handle(|h| async move {
            let links = nl::all_links(&h).await?;
            if links.iter().any(|l| nl::link_name(l) == Some(name)) {
                return Err(neterr(
                    name,
                    "a link of that name already exists on the host and is not a coop network",
                ));
            }
            let link_name = |idx: u32| {
                links
                    .iter()
                    .find(|l| l.header.index == idx)
                    .and_then(nl::link_name)
                    .unwrap_or("?")
                    .to_string()
            };
            for (idx, a, p) in nl::all_addrs(&h).await? {
                if let IpAddr::V4(a) = a {
                    if overlaps(a, p, bridge_addr, prefix) {
                        return Err(neterr(
                            name,
                            format!(
                                "subnet {subnet} overlaps host address {a}/{p} on {}",
                                link_name(idx)
                            ),
                        ));
                    }
                }
            }
            for (dst, p, oif) in nl::v4_routes(&h).await? {
                if overlaps(dst, p, bridge_addr, prefix) {
                    let dev = oif.map(link_name).unwrap_or_default();
                    return Err(neterr(
                        name,
                        format!("subnet {subnet} overlaps host route {dst}/{p} {dev}"),
                    ));
                }
            }
            Ok(())
        })?;
        let net = Network {
            name: name.to_string(),
            bridge_addr,
            prefix,
            nat,
        };
        write_json(&self.net_path(name), &net)?;
        if let Err(e) = self.bring_up(&net) {
            // Undo: the bridge cannot have existed before (checked above).
            let _ = dhcp::stop(&self.run_dir(), name);
            let _ = nl::with_handle(|h| async move { nl::del_link(&h, name).await });
            let _ = fs::remove_file(self.net_path(name));
            let _ = self.apply_nft();
            return Err(e);
        }
        tracing::info!(network = name, subnet, nat, "network created");
        Ok(net)
    }

    /// Creates whatever of bridge, address, nft rules and dnsmasq is missing.
    fn bring_up(&self, net: &Network) -> Result<(), NetError> {
        let (name, addr, prefix) = (net.name.clone(), net.bridge_addr, net.prefix);
        nl::with_handle(|h| async move {
            let idx = match nl::get_link(&h, &name).await? {
                Some(m) if nl::link_is_bridge(&m) => m.header.index,
                Some(_) => {
                    return Err(neterr(&name, "a non-bridge link has this name"));
                }
                None => {
                    h.link()
                        .add()
                        .bridge(name.clone())
                        .execute()
                        .await
                        .map_err(|e| nl::nlerr(format!("create bridge {name}"), e))?;
                    nl::get_link(&h, &name)
                        .await?
                        .ok_or_else(|| neterr(&name, "bridge vanished after creation"))?
                        .header
                        .index
                }
            };
            let have = nl::all_addrs(&h)
                .await?
                .iter()
                .any(|(i, a, p)| *i == idx && *a == IpAddr::V4(addr) && *p == prefix);
            if !have {
                h.address()
                    .add(idx, IpAddr::V4(addr), prefix)
                    .execute()
                    .await
                    .map_err(|e| nl::nlerr(format!("add {addr}/{prefix} to {name}"), e))?;
            }
            h.link()
                .set(idx)
                .up()
                .execute()
                .await
                .map_err(|e| nl::nlerr(format!("set {name} up"), e))
        })?;
        self.apply_nft()?;
        dhcp::ensure(&self.run_dir(), net, &self.leases(&net.name)?)
    }

    /// All networks with their bridge state and lease counts.
    pub fn list(&self) -> Result<Vec<NetworkInfo>, NetError> {
        let nets = self.networks()?;
        let links = nl::with_handle(|h| async move { nl::all_links(&h).await })?;
        let mut out = Vec::new();
        for n in nets {
            let bridge_up = links
                .iter()
                .any(|l| nl::link_name(l) == Some(n.name.as_str()) && nl::link_is_up(l));
            out.push(NetworkInfo {
                subnet: n.subnet(),
                nat: n.nat,
                bridge_up,
                leases: self.leases(&n.name)?.len(),
                name: n.name,
            });
        }
        Ok(out)
    }

    /// Deletes network `name` (bridge, rules, dnsmasq, definition, leases); refuses while
    /// containers use it.
    pub fn remove(&self, name: &str, in_use_by: &[String]) -> Result<(), NetError> {
        if !in_use_by.is_empty() {
            return Err(NetError::InUse {
                name: name.to_string(),
                users: in_use_by.to_vec(),
            });
        }
        let _l = self.lock()?;
        if self.get(name)?.is_none() {
            return Err(NetError::NoSuchNetwork(name.to_string()));
        }
        dhcp::stop(&self.run_dir(), name)?;
        nl::with_handle(|h| async move { nl::del_link(&h, name).await })?;
        let mut ports = self.ports()?;
        ports.retain(|p| p.network != name);
        self.write_ports(&ports)?;
        let p = self.net_path(name);
        fs::remove_file(&p).map_err(|e| NetError::io(&p, e))?;
        let lp = self.leases_path(name);
        if lp.exists() {
            fs::remove_file(&lp).map_err(|e| NetError::io(&lp, e))?;
        }
        self.apply_nft()?;
        tracing::info!(network = name, "network removed");
        Ok(())
    }

    /// The default network `coopbr0` (10.0.3.1/24, NAT), created on first use.
    pub fn ensure_default(&self) -> Result<Network, NetError> {
        let _l = self.lock()?;
        if self.get(DEFAULT_NETWORK)?.is_some() {
            return self.ensure_up_locked(DEFAULT_NETWORK);
        }
        self.create_locked(DEFAULT_NETWORK, DEFAULT_SUBNET, true)
    }

    /// Recreates bridge, address, rules and dnsmasq of `name` where missing (e.g. after a
    /// host reboot). When all are there (bridge up with its address, our nft table,
    /// dnsmasq alive, forwarding on) it changes nothing and spawns nothing: this runs on
    /// every container start.
    pub fn ensure_up(&self, name: &str) -> Result<Network, NetError> {
        let _l = self.lock()?;
        self.ensure_up_locked(name)
    }

    pub(crate) fn ensure_up_locked(&self, name: &str) -> Result<Network, NetError> {
        let net = self
            .get(name)?
            .ok_or_else(|| NetError::NoSuchNetwork(name.to_string()))?;
        if !self.is_ready(&net)? {
            self.bring_up(&net)?;
        }
        if let Ok(mut v) = self.verified.lock() {
            v.insert(name.to_string(), Instant::now());
        }
        Ok(net)
    }

    /// Whether bridge (up, with its address), our nft table and dnsmasq are all there:
    /// two netlink round trips, one nfnetlink query and two small file reads, no process.
    fn is_ready(&self, net: &Network) -> Result<bool, NetError> {
        let mut c = nl::Conn::new()?;
        let Some(m) = c.get_link(&net.name)? else {
            return Ok(false);
        };
        if !m.is_bridge() || !m.up {
            return Ok(false);
        }
        let idx = m.index;
        let want = IpAddr::V4(net.bridge_addr);
        let has_addr = c
            .addrs()?
            .iter()
            .any(|(i, a, p)| *i == idx && *a == want && *p == net.prefix);
        // A host that lost forwarding (sysctl reset) needs apply_nft to turn it back on.
        let forwarding = fs::read("/proc/sys/net/ipv4/ip_forward")
            .map(|v| v.first() == Some(&b'1'))
            .unwrap_or(false);
        Ok(has_addr
            && forwarding
            && dhcp::running_pid(&self.run_dir(), &net.name).is_some()
            && nft::table_exists(&self.table))
    }

    /// The cheap check made on every container start: repairs (like `ensure_up`) only when
    /// the bridge, its address, our table or dnsmasq is missing. Skipped when this store
    /// verified `name` through `ensure_up` an instant ago (the monitor does both in a row).
    pub(crate) fn ensure_ready_locked(&self, name: &str) -> Result<Network, NetError> {
        let net = self
            .get(name)?
            .ok_or_else(|| NetError::NoSuchNetwork(name.to_string()))?;
        let fresh = self
            .verified
            .lock()
            .ok()
            .and_then(|v| v.get(name).map(|t| t.elapsed() < VERIFIED_FOR))
            .unwrap_or(false);
        if fresh {
            return Ok(net);
        }
        if !self.is_ready(&net)? {
            self.bring_up(&net)?;
        }
        Ok(net)
    }

    /// Drops every lease of `container` (when it is destroyed).
    pub fn release_leases(&self, container: &str) -> Result<(), NetError> {
        let _l = self.lock()?;
        for n in self.networks()? {
            let mut l = self.leases(&n.name)?;
            let before = l.len();
            l.retain(|x| x.container != container);
            if l.len() != before {
                self.write_leases(&n.name, &l)?;
                if dhcp::running_pid(&self.run_dir(), &n.name).is_some() {
                    // dnsmasq would keep the released addresses bound to the old MACs until
                    // their lease time ends (SIGHUP does not forget leases): restart it
                    // without its lease database so the next owner gets them at once.
                    dhcp::stop(&self.run_dir(), &n.name)?;
                    dhcp::ensure(&self.run_dir(), &n, &l)?;
                }
            }
        }
        Ok(())
    }

    /// Rewrites the DHCP hosts of `net` and signals dnsmasq if it runs.
    pub(crate) fn refresh_dhcp(&self, net: &Network) -> Result<(), NetError> {
        if dhcp::running_pid(&self.run_dir(), &net.name).is_some() {
            dhcp::ensure(&self.run_dir(), net, &self.leases(&net.name)?)?;
        }
        Ok(())
    }

    /// Gives `container`'s interface `index` an address on `net`: the fixed one asked for
    /// (checked), else its existing lease, else the first free one. Returns the address.
    pub(crate) fn assign(
        &self,
        net: &Network,
        container: &str,
        index: u32,
        hwaddr: Option<&str>,
        fixed: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, NetError> {
        let mut leases = self.leases(&net.name)?;
        let mine = |l: &Lease| l.container == container && l.index == index;
        let ip = match fixed {
            Some(ip) => {
                let aerr = |reason: String| NetError::Address {
                    addr: ip.to_string(),
                    reason,
                };
                if !net.contains(ip) {
                    return Err(aerr(format!(
                        "outside network {:?} ({})",
                        net.name,
                        net.subnet()
                    )));
                }
                if ip == net.bridge_addr || ip == net.network_addr() || ip == net.broadcast() {
                    return Err(aerr(format!(
                        "is the bridge, network or broadcast address of {:?}",
                        net.name
                    )));
                }
                if let Some(o) = leases.iter().find(|l| l.ip == ip && !mine(l)) {
                    return Err(aerr(format!(
                        "already taken by container {:?} (lxc.net.{})",
                        o.container, o.index
                    )));
                }
                ip
            }
            None => match leases.iter().find(|l| mine(l) && !l.fixed) {
                Some(l) => l.ip,
                None => {
                    let used: HashSet<Ipv4Addr> =
                        leases.iter().filter(|l| !mine(l)).map(|l| l.ip).collect();
                    let first = u32::from(net.network_addr()) + 1;
                    let last = u32::from(net.broadcast()) - 1;
                    (first..=last)
                        .map(Ipv4Addr::from)
                        .find(|a| *a != net.bridge_addr && !used.contains(a))
                        .ok_or_else(|| neterr(&net.name, "no free address left"))?
                }
            },
        };
        let lease = Lease {
            container: container.to_string(),
            index,
            hwaddr: hwaddr.map(str::to_string),
            ip,
            fixed: fixed.is_some(),
        };
        // A restart keeps its lease: no need to rewrite the file.
        if leases.iter().filter(|l| mine(l)).eq([&lease]) {
            return Ok(ip);
        }
        leases.retain(|l| !mine(l));
        leases.push(lease);
        self.write_leases(&net.name, &leases)?;
        Ok(ip)
    }

    /// Checks that `wanted` ports are free: not published by another container and not
    /// bound by any host socket.
    pub(crate) fn check_ports(&self, container: &str, wanted: &[PortRule]) -> Result<(), NetError> {
        let existing = self.ports()?;
        let clash = |a: &PortRule, b: &PortRule| {
            a.proto == b.proto
                && a.host_port == b.host_port
                && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
        };
        for (i, w) in wanted.iter().enumerate() {
            let perr = |reason: String| NetError::Port {
                port: w.host_port,
                proto: w.proto.as_str(),
                reason,
            };
            if let Some(o) = existing
                .iter()
                .find(|o| o.container != container && clash(o, w))
            {
                return Err(perr(format!(
                    "already published by container {:?}",
                    o.container
                )));
            }
            if wanted[..i].iter().any(|o| clash(o, w)) {
                return Err(perr("published twice".into()));
            }
            let ip = w.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let r = match w.proto {
                Proto::Tcp => TcpListener::bind((ip, w.host_port)).map(drop),
                Proto::Udp => UdpSocket::bind((ip, w.host_port)).map(drop),
            };
            if let Err(e) = r {
                return Err(perr(format!(
                    "cannot bind {ip}:{} on the host: {e}",
                    w.host_port
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(addr: [u8; 4], prefix: u8) -> Network {
        Network {
            name: "t0".into(),
            bridge_addr: Ipv4Addr::from(addr),
            prefix,
            nat: true,
        }
    }

    #[test]
    fn subnet_math() {
        let n = net([10, 0, 3, 1], 24);
        assert_eq!(n.network_addr(), Ipv4Addr::new(10, 0, 3, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 0, 3, 255));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(n.contains(Ipv4Addr::new(10, 0, 3, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 0, 4, 1)));
        assert!(overlaps(
            Ipv4Addr::new(10, 0, 3, 129),
            25,
            Ipv4Addr::new(10, 0, 3, 1),
            24
        ));
        assert!(!overlaps(
            Ipv4Addr::new(10, 0, 4, 1),
            24,
            Ipv4Addr::new(10, 0, 3, 1),
            24
        ));
        assert!(parse_subnet("x", "10.0.3.0/24").is_err());
        assert!(parse_subnet("x", "10.0.3.255/24").is_err());
        assert!(parse_subnet("x", "10.0.3.1/31").is_err());
        assert!(parse_subnet("x", "127.0.0.1/8").is_err());
        assert_eq!(
            parse_subnet("x", "10.0.3.1/24").unwrap(),
            (Ipv4Addr::new(10, 0, 3, 1), 24)
        );
    }

    #[test]
    fn lease_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let s = NetStore::open(dir.path()).unwrap();
        // A /29: .1 bridge, .2-.6 for containers.
        let n = net([10, 9, 9, 1], 29);
        let a = s
            .assign(&n, "a", 0, Some("02:00:00:00:00:0a"), None)
            .unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 9, 2));
        // Same container and interface: same address, also after a MAC change.
        let again = s
            .assign(&n, "a", 0, Some("02:00:00:00:00:0b"), None)
            .unwrap();
        assert_eq!(again, a);
        assert_eq!(
            s.leases("t0").unwrap()[0].hwaddr.as_deref(),
            Some("02:00:00:00:00:0b")
        );
        let fixed = s
            .assign(&n, "b", 0, None, Some(Ipv4Addr::new(10, 9, 9, 3)))
            .unwrap();
        assert_eq!(fixed, Ipv4Addr::new(10, 9, 9, 3));
        let err = s
            .assign(&n, "c", 0, None, Some(Ipv4Addr::new(10, 9, 9, 3)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.9.9.3") && err.contains("\"b\""), "{err}");
        for (bad, why) in [
            ([10, 9, 9, 1], "bridge"),
            ([10, 9, 9, 7], "broadcast"),
            ([10, 9, 10, 2], "outside"),
        ] {
            let err = s
                .assign(&n, "c", 0, None, Some(Ipv4Addr::from(bad)))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
        }
        // Fill the rest: .4 .5 .6, then the network is full.
        for (i, want) in [4u8, 5, 6].into_iter().enumerate() {
            let ip = s.assign(&n, "d", i as u32, None, None).unwrap();
            assert_eq!(ip, Ipv4Addr::new(10, 9, 9, want));
        }
        let err = s.assign(&n, "e", 0, None, None).unwrap_err().to_string();
        assert!(err.contains("no free address"), "{err}");
        assert_eq!(s.leases("t0").unwrap().len(), 5);
    }
}
