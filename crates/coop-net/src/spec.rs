//! Parsing of the container's `lxc.net.N.*` keys into interface specs.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::NetError;

/// Highest accepted `lxc.net.N` index: bounds the work a hostile config can cause.
const MAX_INDEX: u32 = 255;

/// An IPv4 address with an optional prefix length (LXC allows the prefix to be left out;
/// the network's own prefix is used then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: Option<u8>,
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{}", self.addr, p),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// An IPv6 address with its prefix length (64 when left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Cidr {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

/// Default-route choice for an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gateway<A> {
    /// The bridge's own address (LXC `auto`).
    Auto,
    /// A device route without a next hop (LXC `dev`).
    Dev,
    Addr(A),
}

/// Macvlan mode (`lxc.net.N.macvlan.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

impl MacvlanMode {
    /// The kernel's `MACVLAN_MODE_*` value.
    pub fn kernel_value(self) -> u32 {
        match self {
            MacvlanMode::Private => 1,
            MacvlanMode::Vepa => 2,
            MacvlanMode::Bridge => 4,
            MacvlanMode::Passthru => 8,
        }
    }
}

/// The `lxc.net.N.type` of an interface with its type-specific keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IfaceType {
    /// A veth pair; the host end goes into `link` (a coop network or an existing bridge).
    Veth {
        link: Option<String>,
        pair: Option<String>,
    },
    /// A new network namespace with only loopback.
    Empty,
    /// Share the host's network namespace.
    None,
    Macvlan {
        link: String,
        mode: MacvlanMode,
    },
    /// Move a host device into the container.
    Phys {
        link: String,
    },
}

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A published port: `[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// Only connections to this host address are forwarded; `None` = any local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

/// One container interface, from the `lxc.net.N.*` keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceSpec {
    /// The `N` of `lxc.net.N`.
    pub index: u32,
    pub kind: IfaceType,
    /// Name inside the container (`eth<N>`-style default is `eth0` for index 0).
    pub name: Option<String>,
    /// MAC address, lower-case `aa:bb:cc:dd:ee:ff`, with `xx` placeholders already filled.
    pub hwaddr: Option<String>,
    /// True when `hwaddr` was generated or had placeholders filled by [`parse_interfaces`]:
    /// the engine should persist it so the container keeps its MAC (and its DHCP lease).
    pub hwaddr_generated: bool,
    pub mtu: Option<u32>,
    pub up: bool,
    pub ipv4: Option<Ipv4Cidr>,
    pub ipv4_gateway: Option<Gateway<Ipv4Addr>>,
    pub ipv6: Option<Ipv6Cidr>,
    pub ipv6_gateway: Option<Gateway<Ipv6Addr>>,
    pub publish: Vec<Publish>,
}

impl IfaceSpec {
    /// Name of the interface inside the container.
    pub fn ifname(&self) -> String {
        match (&self.name, &self.kind) {
            (Some(n), _) => n.clone(),
            (None, IfaceType::Phys { link }) => link.clone(),
            (None, _) => format!("eth{}", self.index),
        }
    }

    /// The keys (without the `lxc.net.` prefix) that describe this interface; what the
    /// engine writes back after [`parse_interfaces`] filled a MAC address.
    pub fn to_keys(&self) -> Vec<(String, String)> {
        let i = self.index;
        let mut out = Vec::new();
        let mut push = |k: &str, v: String| out.push((format!("{i}.{k}"), v));
        match &self.kind {
            IfaceType::Veth { link, pair } => {
                push("type", "veth".into());
                if let Some(l) = link {
                    push("link", l.clone());
                }
                if let Some(p) = pair {
                    push("veth.pair", p.clone());
                }
            }
            IfaceType::Empty => push("type", "empty".into()),
            IfaceType::None => push("type", "none".into()),
            IfaceType::Macvlan { link, mode } => {
                push("type", "macvlan".into());
                push("link", link.clone());
                let m = match mode {
                    MacvlanMode::Private => "private",
                    MacvlanMode::Vepa => "vepa",
                    MacvlanMode::Bridge => "bridge",
                    MacvlanMode::Passthru => "passthru",
                };
                push("macvlan.mode", m.into());
            }
            IfaceType::Phys { link } => {
                push("type", "phys".into());
                push("link", link.clone());
            }
        }
        if self.up {
            push("flags", "up".into());
        }
        if let Some(n) = &self.name {
            push("name", n.clone());
        }
        if let Some(h) = &self.hwaddr {
            push("hwaddr", h.clone());
        }
        if let Some(m) = self.mtu {
            push("mtu", m.to_string());
        }
        if let Some(a) = self.ipv4 {
            push("ipv4.address", a.to_string());
        }
        if let Some(g) = self.ipv4_gateway {
            push("ipv4.gateway", gw_str(g));
        }
        if let Some(a) = self.ipv6 {
            push("ipv6.address", format!("{}/{}", a.addr, a.prefix));
        }
        if let Some(g) = self.ipv6_gateway {
            push("ipv6.gateway", gw_str(g));
        }
        for p in &self.publish {
            let host = p.host_ip.map(|h| format!("{h}:")).unwrap_or_default();
            push(
                "publish",
                format!(
                    "{host}{}:{}/{}",
                    p.host_port,
                    p.container_port,
                    p.proto.as_str()
                ),
            );
        }
        out
    }
}

fn gw_str<A: std::fmt::Display>(g: Gateway<A>) -> String {
    match g {
        Gateway::Auto => "auto".into(),
        Gateway::Dev => "dev".into(),
        Gateway::Addr(a) => a.to_string(),
    }
}

/// True unless an interface of type `none` asks to share the host's network namespace.
pub fn needs_netns(ifaces: &[IfaceSpec]) -> bool {
    !ifaces.iter().any(|i| i.kind == IfaceType::None)
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> NetError {
    NetError::BadKey {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Checks a Linux interface name: 1..=15 bytes, no `/`, `:`, whitespace, not `.`/`..`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// Parses a MAC address that may contain `xx` placeholder octets; returns the address and
/// whether anything was filled in.
fn parse_hwaddr(key: &str, value: &str) -> Result<(String, bool), NetError> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6 {
        return Err(bad(key, value, "expected six ':'-separated octets"));
    }
    let mut octets = [0u8; 6];
    let mut filled = false;
    for (i, p) in parts.iter().enumerate() {
        if p.eq_ignore_ascii_case("xx") {
            octets[i] = rand::random();
            if i == 0 {
                // A random first octet must still be a locally administered unicast one.
                octets[0] = (octets[0] & 0xfe) | 0x02;
            }
            filled = true;
        } else if p.len() == 2 {
            octets[i] =
                u8::from_str_radix(p, 16).map_err(|_| bad(key, value, "octet is not hex"))?;
        } else {
            return Err(bad(key, value, "octet is not two hex digits"));
        }
    }
    if octets[0] & 1 == 1 {
        return Err(bad(key, value, "multicast MAC address"));
    }
    if octets == [0; 6] {
        return Err(bad(key, value, "all-zero MAC address"));
    }
    Ok((format_mac(&octets), filled))
}

pub(crate) fn format_mac(o: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        o[0], o[1], o[2], o[3], o[4], o[5]
    )
}

pub(crate) fn mac_bytes(s: &str) -> Option<[u8; 6]> {
    let mut o = [0u8; 6];
    let mut n = 0;
    for p in s.split(':') {
        if n == 6 || p.len() != 2 {
            return None;
        }
        o[n] = u8::from_str_radix(p, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(o)
}

/// A random locally administered unicast MAC in LXC's `00:16:3e`-like style.
fn random_mac() -> String {
    let mut o: [u8; 6] = rand::random();
    o[0] = (o[0] & 0xfe) | 0x02;
    format_mac(&o)
}

fn parse_ipv4_cidr(key: &str, value: &str) -> Result<Ipv4Cidr, NetError> {
    let (a, p) = match value.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (value, None),
    };
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| bad(key, value, "not an IPv4 address"))?;
    let prefix = match p {
        Some(p) => {
            let n: u8 = p
                .parse()
                .map_err(|_| bad(key, value, "prefix length is not a number"))?;
            if !(1..=32).contains(&n) {
                return Err(bad(key, value, "prefix length must be 1..=32"));
            }
            Some(n)
        }
        None => None,
    };
    if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
        return Err(bad(key, value, "not a unicast address"));
    }
    Ok(Ipv4Cidr { addr, prefix })
}

fn parse_ipv6_cidr(key: &str, value: &str) -> Result<Ipv6Cidr, NetError> {
    let (a, p) = value.split_once('/').unwrap_or((value, "64"));
    let addr: Ipv6Addr = a
        .parse()
        .map_err(|_| bad(key, value, "not an IPv6 address"))?;
    let prefix: u8 = p
        .parse()
        .map_err(|_| bad(key, value, "prefix length is not a number"))?;
    if !(1..=128).contains(&prefix) {
        return Err(bad(key, value, "prefix length must be 1..=128"));
    }
    Ok(Ipv6Cidr { addr, prefix })
}

fn parse_port(key: &str, value: &str, s: &str) -> Result<u16, NetError> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad(key, value, format!("{s:?} is not a port 1..=65535"))),
    }
}

/// Parses one `publish` value: `[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]` or `PORT[/proto]`.
pub fn parse_publish(key: &str, value: &str) -> Result<Publish, NetError> {
    let (spec, proto) = match value.rsplit_once('/') {
        Some((s, "tcp")) => (s, Proto::Tcp),
        Some((s, "udp")) => (s, Proto::Udp),
        Some(_) => return Err(bad(key, value, "protocol must be tcp or udp")),
        None => (value, Proto::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, hp, cp) = match parts.as_slice() {
        [p] => (None, *p, *p),
        [h, c] => (None, *h, *c),
        [ip, h, c] => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| bad(key, value, "host address is not IPv4"))?;
            if ip.is_loopback() {
                // DNAT of loopback traffic needs route_localnet, which coop does not turn on.
                return Err(bad(
                    key,
                    value,
                    "loopback host addresses are not supported; publish on all addresses or a non-loopback host address",
                ));
            }
            (Some(ip), *h, *c)
        }
        _ => return Err(bad(key, value, "expected [HOSTIP:]HOSTPORT:PORT[/tcp|udp]")),
    };
    Ok(Publish {
        host_ip,
        host_port: parse_port(key, value, hp)?,
        container_port: parse_port(key, value, cp)?,
        proto,
    })
}

fn parse_gw4(key: &str, value: &str) -> Result<Gateway<Ipv4Addr>, NetError> {
    match value {
        "auto" => Ok(Gateway::Auto),
        "dev" => Ok(Gateway::Dev),
        v => v
            .parse()
            .map(Gateway::Addr)
            .map_err(|_| bad(key, value, "expected auto, dev or an IPv4 address")),
    }
}

fn parse_gw6(key: &str, value: &str) -> Result<Gateway<Ipv6Addr>, NetError> {
    match value {
        "auto" => Ok(Gateway::Auto),
        "dev" => Ok(Gateway::Dev),
        v => v
            .parse()
            .map(Gateway::Addr)
            .map_err(|_| bad(key, value, "expected auto, dev or an IPv6 address")),
    }
}

#[derive(Default)]
struct Raw {
    kind: Option<(String, String)>,
    link: Option<String>,
    pair: Option<String>,
    macvlan_mode: Option<(String, String)>,
    name: Option<String>,
    hwaddr: Option<(String, bool)>,
    mtu: Option<u32>,
    up: bool,
    ipv4: Option<Ipv4Cidr>,
    gw4: Option<Gateway<Ipv4Addr>>,
    ipv6: Option<Ipv6Cidr>,
    gw6: Option<Gateway<Ipv6Addr>>,
    publish: Vec<Publish>,
}

fn set_once<T>(slot: &mut Option<T>, v: T, key: &str, value: &str) -> Result<(), NetError> {
    if slot.is_some() {
        return Err(bad(key, value, "given more than once"));
    }
    *slot = Some(v);
    Ok(())
}

/// Parses the container's network keys (without the `lxc.net.` prefix), e.g.
/// `("0.type", "veth")`, into interface specs ordered by index.
pub fn parse_interfaces(keys: &[(String, String)]) -> Result<Vec<IfaceSpec>, NetError> {
    let mut raws: BTreeMap<u32, Raw> = BTreeMap::new();
    for (key, value) in keys {
        let (idx, sub) = key
            .split_once('.')
            .ok_or_else(|| bad(key, value, "expected N.subkey"))?;
        let idx: u32 = idx
            .parse()
            .map_err(|_| bad(key, value, "index is not a number"))?;
        if idx > MAX_INDEX {
            return Err(bad(key, value, format!("index above {MAX_INDEX}")));
        }
        let value = value.trim();
        let r = raws.entry(idx).or_default();
        match sub {
            "type" => set_once(&mut r.kind, (key.clone(), value.to_string()), key, value)?,
            "link" => {
                if !valid_ifname(value) {
                    return Err(bad(key, value, "not a valid interface name"));
                }
                set_once(&mut r.link, value.to_string(), key, value)?
            }
            "veth.pair" => {
                if !valid_ifname(value) {
                    return Err(bad(key, value, "not a valid interface name (max 15)"));
                }
                set_once(&mut r.pair, value.to_string(), key, value)?
            }
            "macvlan.mode" => set_once(
                &mut r.macvlan_mode,
                (key.clone(), value.to_string()),
                key,
                value,
            )?,
            "name" => {
                if !valid_ifname(value) {
                    return Err(bad(key, value, "not a valid interface name (max 15)"));
                }
                set_once(&mut r.name, value.to_string(), key, value)?
            }
            "hwaddr" => {
                let h = parse_hwaddr(key, value)?;
                set_once(&mut r.hwaddr, h, key, value)?
            }
            "mtu" => {
                let m: u32 = value.parse().map_err(|_| bad(key, value, "not a number"))?;
                if !(68..=65535).contains(&m) {
                    return Err(bad(key, value, "MTU must be 68..=65535"));
                }
                set_once(&mut r.mtu, m, key, value)?
            }
            "flags" => match value {
                "up" => r.up = true,
                "" => r.up = false,
                _ => return Err(bad(key, value, "only \"up\" is supported")),
            },
            "ipv4.address" => {
                let a = parse_ipv4_cidr(key, value)?;
                set_once(&mut r.ipv4, a, key, value)?
            }
            "ipv4.gateway" => {
                let g = parse_gw4(key, value)?;
                set_once(&mut r.gw4, g, key, value)?
            }
            "ipv6.address" => {
                let a = parse_ipv6_cidr(key, value)?;
                set_once(&mut r.ipv6, a, key, value)?
            }
            "ipv6.gateway" => {
                let g = parse_gw6(key, value)?;
                set_once(&mut r.gw6, g, key, value)?
            }
            "publish" => {
                for item in value.split([',', ' ']).filter(|s| !s.is_empty()) {
                    if r.publish.len() >= 1024 {
                        return Err(bad(key, value, "too many published ports"));
                    }
                    r.publish.push(parse_publish(key, item)?);
                }
            }
            _ => return Err(bad(key, value, format!("unknown subkey {sub:?}"))),
        }
    }

    let mut out = Vec::with_capacity(raws.len());
    for (index, r) in raws {
        let (tkey, tval) = r.kind.clone().ok_or_else(|| {
            bad(
                &format!("{index}.type"),
                "",
                "interface has keys but no type",
            )
        })?;
        let link_needed = |what: &str| {
            r.link.clone().ok_or_else(|| {
                bad(
                    &format!("{index}.link"),
                    "",
                    format!("type {what} needs a link"),
                )
            })
        };
        let kind = match tval.as_str() {
            "veth" => IfaceType::Veth {
                link: r.link.clone(),
                pair: r.pair.clone(),
            },
            "empty" => IfaceType::Empty,
            "none" => IfaceType::None,
            "macvlan" => {
                let mode = match r.macvlan_mode.as_ref().map(|(k, v)| (k, v.as_str())) {
                    None | Some((_, "private")) => MacvlanMode::Private,
                    Some((_, "vepa")) => MacvlanMode::Vepa,
                    Some((_, "bridge")) => MacvlanMode::Bridge,
                    Some((_, "passthru")) => MacvlanMode::Passthru,
                    Some((k, v)) => {
                        return Err(bad(k, v, "expected private, vepa, bridge or passthru"))
                    }
                };
                IfaceType::Macvlan {
                    link: link_needed("macvlan")?,
                    mode,
                }
            }
            "phys" => IfaceType::Phys {
                link: link_needed("phys")?,
            },
            _ => {
                return Err(bad(
                    &tkey,
                    &tval,
                    "unknown type (supported: veth, empty, none, macvlan, phys)",
                ))
            }
        };
        let kname = tval.as_str();
        if r.pair.is_some() && kname != "veth" {
            return Err(bad(
                &format!("{index}.veth.pair"),
                r.pair.as_deref().unwrap_or(""),
                "only for type veth",
            ));
        }
        if let Some((k, v)) = r.macvlan_mode.as_ref().filter(|_| kname != "macvlan") {
            return Err(bad(k, v, "only for type macvlan"));
        }
        if matches!(kind, IfaceType::Empty | IfaceType::None) {
            let has_more = r.link.is_some()
                || r.name.is_some()
                || r.hwaddr.is_some()
                || r.ipv4.is_some()
                || r.ipv6.is_some()
                || !r.publish.is_empty();
            if has_more {
                return Err(bad(&tkey, &tval, "this type takes no link/address keys"));
            }
        }
        if r.gw4.is_some() && r.ipv4.is_none() && r.link.is_none() {
            return Err(bad(
                &format!("{index}.ipv4.gateway"),
                "",
                "gateway without an address or a link",
            ));
        }
        let (hwaddr, hwaddr_generated) = match (&r.hwaddr, &kind) {
            (Some((h, filled)), _) => (Some(h.clone()), *filled),
            // A stable MAC keeps the DHCP lease stable across restarts.
            (None, IfaceType::Veth { .. } | IfaceType::Macvlan { .. }) => {
                (Some(random_mac()), true)
            }
            (None, _) => (None, false),
        };
        out.push(IfaceSpec {
            index,
            kind,
            name: r.name,
            hwaddr,
            hwaddr_generated,
            mtu: r.mtu,
            up: r.up,
            ipv4: r.ipv4,
            ipv4_gateway: r.gw4,
            ipv6: r.ipv6,
            ipv6_gateway: r.gw6,
            publish: r.publish,
        });
    }
    if out.len() > 1 && out.iter().any(|i| i.kind == IfaceType::None) {
        return Err(bad(
            "type",
            "none",
            "type none cannot be combined with other interfaces",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for i in &out {
        if !matches!(i.kind, IfaceType::Empty | IfaceType::None) && !names.insert(i.ifname()) {
            return Err(bad(
                &format!("{}.name", i.index),
                &i.ifname(),
                "two interfaces with the same name",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn full_veth() {
        let v = parse_interfaces(&kv(&[
            ("0.type", "veth"),
            ("0.link", "coopbr0"),
            ("0.flags", "up"),
            ("0.hwaddr", "00:16:3e:xx:xx:xx"),
            ("0.ipv4.address", "10.0.3.5/24"),
            ("0.ipv4.gateway", "auto"),
            ("0.name", "eth0"),
            ("0.mtu", "1500"),
            ("0.ipv6.address", "fd00::5/64"),
            ("0.veth.pair", "vhost0"),
            ("0.publish", "8080:80/tcp"),
            ("0.publish", "192.0.2.7:5353:53/udp,9000"),
        ]))
        .unwrap();
        assert_eq!(v.len(), 1);
        let i = &v[0];
        assert_eq!(
            i.kind,
            IfaceType::Veth {
                link: Some("coopbr0".into()),
                pair: Some("vhost0".into())
            }
        );
        let mac = i.hwaddr.as_deref().unwrap();
        assert!(mac.starts_with("00:16:3e:"), "{mac}");
        assert!(mac_bytes(mac).is_some());
        assert!(i.hwaddr_generated);
        assert_eq!(i.mtu, Some(1500));
        assert!(i.up);
        assert_eq!(i.ipv4.unwrap().addr, Ipv4Addr::new(10, 0, 3, 5));
        assert_eq!(i.ipv4.unwrap().prefix, Some(24));
        assert_eq!(i.ipv4_gateway, Some(Gateway::Auto));
        assert_eq!(i.publish.len(), 3);
        assert_eq!(i.publish[1].host_ip, Some(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(i.publish[1].proto, Proto::Udp);
        assert_eq!(i.publish[2].host_port, 9000);
        assert_eq!(i.publish[2].container_port, 9000);
        // Round trip through the persisted keys keeps the filled MAC.
        let again = parse_interfaces(&i.to_keys()).unwrap();
        assert_eq!(again[0].hwaddr, i.hwaddr);
        assert!(!again[0].hwaddr_generated);
        assert_eq!(again[0].publish, i.publish);
    }

    #[test]
    fn placeholders_make_local_unicast() {
        for _ in 0..50 {
            let v = parse_interfaces(&kv(&[
                ("0.type", "veth"),
                ("0.hwaddr", "xx:xx:xx:xx:xx:xx"),
            ]))
            .unwrap();
            let o = mac_bytes(v[0].hwaddr.as_deref().unwrap()).unwrap();
            assert_eq!(o[0] & 1, 0);
            assert_eq!(o[0] & 2, 2);
        }
    }

    #[test]
    fn errors_name_key_and_value() {
        let cases: &[&[(&str, &str)]] = &[
            &[("0.type", "vxlan")],
            &[("0.type", "veth"), ("0.bogus", "1")],
            &[("0.type", "veth"), ("0.mtu", "12")],
            &[("0.type", "veth"), ("0.hwaddr", "zz:00:00:00:00:00")],
            &[("0.type", "veth"), ("0.ipv4.address", "10.0.3.300/24")],
            &[("0.type", "veth"), ("0.ipv4.address", "10.0.3.3/40")],
            &[("0.type", "veth"), ("0.publish", "80:0")],
            &[("0.type", "veth"), ("0.publish", "80:81/sctp")],
            &[("0.type", "veth"), ("0.publish", "127.0.0.1:80:81")],
            &[("0.type", "veth"), ("0.name", "a-very-long-interface-name")],
            &[("0.type", "macvlan")],
            &[("0.type", "veth"), ("0.flags", "down")],
            &[("x.type", "veth")],
            &[("99999.type", "veth")],
            &[("0.link", "br0")],
            &[("0.type", "none"), ("1.type", "veth")],
        ];
        for c in cases {
            let err = parse_interfaces(&kv(c)).unwrap_err().to_string();
            assert!(err.contains("lxc.net."), "{c:?}: {err}");
        }
        let err = parse_interfaces(&kv(&[("0.type", "vxlan")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.type") && err.contains("vxlan"), "{err}");
    }

    #[test]
    fn none_means_host_netns() {
        let v = parse_interfaces(&kv(&[("0.type", "none")])).unwrap();
        assert!(!needs_netns(&v));
        let v = parse_interfaces(&kv(&[("0.type", "empty")])).unwrap();
        assert!(needs_netns(&v));
        assert!(needs_netns(&[]));
    }
}
