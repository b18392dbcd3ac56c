//! Per-container interfaces: made in the host, moved into the init's network namespace,
//! configured there; undone completely if any step fails.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlag, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use serde::{Deserialize, Serialize};

use crate::nl::{self, nlerr};
use crate::spec::{mac_bytes, needs_netns, Gateway, IfaceSpec, IfaceType};
use crate::store::{Lease, NetStore, Network, PortRule};
use crate::NetError;

/// One interface as created by [`setup`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedIface {
    pub index: u32,
    /// `veth`, `macvlan`, `phys` or `empty`.
    pub kind: String,
    /// Name inside the container.
    pub name: String,
    /// Host end of a veth pair.
    pub host_veth: Option<String>,
    /// The coop network the interface is attached to.
    pub network: Option<String>,
    pub hwaddr: Option<String>,
    /// `addr/prefix`.
    pub ipv4: Option<String>,
    pub ipv4_gateway: Option<String>,
    pub ipv6: Option<String>,
    /// Host name of a moved physical device (to give it back on teardown).
    pub phys_link: Option<String>,
}

/// What [`setup`] created; the engine keeps it in its state file for [`teardown`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    pub container: String,
    pub init_pid: i32,
    pub ifaces: Vec<AttachedIface>,
    pub ports: Vec<PortRule>,
}

/// Counters and addresses of one interface inside a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceStats {
    pub name: String,
    /// `addr/prefix`, IPv4 and IPv6.
    pub addresses: Vec<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub host_veth: Option<String>,
}

fn fnv(container: &str, index: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container.bytes().chain([0]).chain(index.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Default host name of the veth end of `container`'s interface `index`: `vc` + 12 hex
/// digits of a hash of both (14 characters, fits IFNAMSIZ).
pub fn host_veth_name(container: &str, index: u32) -> String {
    format!("vc{:012x}", fnv(container, index) & 0xffff_ffff_ffff)
}

/// Name of the container end while it is still in the host.
fn temp_name(container: &str, index: u32) -> String {
    format!("vp{:012x}", fnv(container, index) & 0xffff_ffff_ffff)
}

enum Gw4 {
    Via(Ipv4Addr),
    Dev,
}

enum Gw6 {
    Via(Ipv6Addr),
    Dev,
}

struct Plan<'a> {
    spec: &'a IfaceSpec,
    ifname: String,
    /// Name of the device to move into the container, while in the host.
    move_name: Option<String>,
    host_veth: Option<String>,
    net: Option<Network>,
    v4: Option<(Ipv4Addr, u8)>,
    gw4: Option<Gw4>,
    gw6: Option<Gw6>,
}

#[derive(Default)]
struct Undo {
    host_links: Vec<String>,
    /// Links already moved into the container: (name inside, phys host name if phys).
    moved: Vec<(String, Option<String>)>,
    leases: HashMap<String, Vec<Lease>>,
    ports: Option<Vec<PortRule>>,
    dhcp_nets: Vec<Network>,
}

impl Undo {
    fn run(self, store: &NetStore, pid: i32) {
        if !self.moved.is_empty() {
            let moved = self.moved;
            let _ = give_back(pid, &moved);
        }
        for l in &self.host_links {
            if let Err(e) = nl::Conn::new().and_then(|mut c| c.del_link(l)) {
                tracing::warn!(link = %l, "rollback: {e}");
            }
        }
        for (net, leases) in &self.leases {
            let _ = store.write_leases(net, leases);
        }
        for n in &self.dhcp_nets {
            let _ = store.refresh_dhcp(n);
        }
        if let Some(p) = self.ports {
            let _ = store.write_ports(&p);
            let _ = store.apply_nft();
        }
    }
}

/// Deletes moved virtual links inside the container and gives physical ones back to the
/// host under their original names.
fn give_back(pid: i32, moved: &[(String, Option<String>)]) -> Result<(), NetError> {
    let host_ns =
        fs::File::open("/proc/self/ns/net").map_err(|e| NetError::io("/proc/self/ns/net", e))?;
    let fd = host_ns.as_raw_fd();
    nl::in_netns(pid, || {
        nl::with_handle(|h| async move {
            for (name, phys) in moved {
                let Some(m) = nl::get_link(&h, name).await? else {
                    continue;
                };
                let idx = m.header.index;
                match phys {
                    Some(orig) => {
                        h.link()
                            .set(idx)
                            .down()
                            .execute()
                            .await
                            .map_err(|e| nlerr(format!("set {name} down"), e))?;
                        h.link()
                            .set(idx)
                            .name(orig.clone())
                            .setns_by_fd(fd)
                            .execute()
                            .await
                            .map_err(|e| nlerr(format!("give {name} back as {orig}"), e))?;
                    }
                    None => {
                        nl::del_link(&h, name).await?;
                    }
                }
            }
            Ok(())
        })
    })
}

/// Creates the container's interfaces (see the crate docs); on error nothing it made stays.
pub fn setup(
    store: &NetStore,
    container: &str,
    init_pid: i32,
    ifaces: &[IfaceSpec],
) -> Result<Attached, NetError> {
    if init_pid <= 0 {
        return Err(NetError::Netns {
            pid: init_pid,
            msg: "not a process id".into(),
        });
    }
    if needs_netns(ifaces) {
        // Configuring "the container" in the host's own namespace would rewrite the
        // host's default route: refuse a pid that did not get its own namespace.
        let theirs = fs::metadata(format!("/proc/{init_pid}/ns/net"));
        let ours = fs::metadata("/proc/self/ns/net");
        match (theirs, ours) {
            (Ok(t), Ok(o)) if t.ino() == o.ino() && t.dev() == o.dev() => {
                return Err(NetError::Netns {
                    pid: init_pid,
                    msg: "shares the host's network namespace".into(),
                })
            }
            (Err(e), _) => {
                return Err(NetError::Netns {
                    pid: init_pid,
                    msg: format!("/proc/{init_pid}/ns/net: {e}"),
                })
            }
            _ => {}
        }
    }
    let _l = store.lock()?;
    let mut undo = Undo::default();
    match setup_locked(store, container, init_pid, ifaces, &mut undo) {
        Ok(a) => {
            tracing::info!(container, ifaces = a.ifaces.len(), "network set up");
            Ok(a)
        }
        Err(e) => {
            tracing::warn!(container, "network setup failed, rolling back: {e}");
            undo.run(store, init_pid);
            Err(e)
        }
    }
}

fn setup_locked(
    store: &NetStore,
    container: &str,
    pid: i32,
    ifaces: &[IfaceSpec],
    undo: &mut Undo,
) -> Result<Attached, NetError> {
    if ifaces.iter().any(|i| i.kind == IfaceType::None) {
        return Ok(Attached {
            container: container.into(),
            init_pid: pid,
            ifaces: vec![],
            ports: vec![],
        });
    }
    let t0 = std::time::Instant::now();
    // Phase 1: addresses and ports, touching only our own files (backed up).
    let mut plans = Vec::new();
    let mut new_ports = Vec::new();
    for spec in ifaces {
        let ifname = spec.ifname();
        let mut plan = Plan {
            spec,
            ifname,
            move_name: None,
            host_veth: None,
            net: None,
            v4: spec.ipv4.map(|c| (c.addr, c.prefix.unwrap_or(24))),
            gw4: None,
            gw6: None,
        };
        let link = match &spec.kind {
            IfaceType::Empty | IfaceType::None => {
                plans.push(plan);
                continue;
            }
            IfaceType::Veth { link, pair } => {
                plan.host_veth = Some(
                    pair.clone()
                        .unwrap_or_else(|| host_veth_name(container, spec.index)),
                );
                // Created directly inside under its final name.
                plan.move_name = Some(plan.ifname.clone());
                link.clone()
            }
            IfaceType::Macvlan { link, .. } => {
                plan.move_name = Some(temp_name(container, spec.index));
                Some(link.clone())
            }
            IfaceType::Phys { link } => {
                plan.move_name = Some(link.clone());
                Some(link.clone())
            }
        };
        let coop_net = match (&spec.kind, &link) {
            (IfaceType::Veth { .. }, Some(l)) => store.get(l)?,
            _ => None,
        };
        if let Some(net) = coop_net {
            let net = store.ensure_ready_locked(&net.name)?;
            if !undo.leases.contains_key(&net.name) {
                undo.leases
                    .insert(net.name.clone(), store.leases(&net.name)?);
            }
            let ip = store.assign(
                &net,
                container,
                spec.index,
                spec.hwaddr.as_deref(),
                spec.ipv4.map(|c| c.addr),
            )?;
            let prefix = spec.ipv4.and_then(|c| c.prefix).unwrap_or(net.prefix);
            plan.v4 = Some((ip, prefix));
            plan.gw4 = match spec.ipv4_gateway {
                None | Some(Gateway::Auto) => Some(Gw4::Via(net.bridge_addr)),
                Some(Gateway::Dev) => Some(Gw4::Dev),
                Some(Gateway::Addr(a)) => Some(Gw4::Via(a)),
            };
            for p in &spec.publish {
                new_ports.push(PortRule {
                    container: container.into(),
                    network: net.name.clone(),
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    proto: p.proto,
                    addr: ip,
                    port: p.container_port,
                });
            }
            undo.dhcp_nets.push(net.clone());
            plan.net = Some(net);
        } else {
            if !spec.publish.is_empty() {
                return Err(NetError::BadKey {
                    key: format!("{}.publish", spec.index),
                    value: format!("{:?}", spec.publish.first().map(|p| p.host_port)),
                    reason: "published ports need link = a coop network".into(),
                });
            }
            plan.gw4 = match spec.ipv4_gateway {
                None => None,
                Some(Gateway::Dev) => Some(Gw4::Dev),
                Some(Gateway::Addr(a)) => Some(Gw4::Via(a)),
                Some(Gateway::Auto) => {
                    let l = link.clone().unwrap_or_default();
                    Some(Gw4::Via(first_v4_of(&l)?.ok_or_else(|| {
                        NetError::BadKey {
                            key: format!("{}.ipv4.gateway", spec.index),
                            value: "auto".into(),
                            reason: format!("link {l:?} has no IPv4 address to use"),
                        }
                    })?))
                }
            };
        }
        plan.gw6 = match spec.ipv6_gateway {
            None => None,
            Some(Gateway::Dev) => Some(Gw6::Dev),
            Some(Gateway::Addr(a)) => Some(Gw6::Via(a)),
            Some(Gateway::Auto) => {
                return Err(NetError::BadKey {
                    key: format!("{}.ipv6.gateway", spec.index),
                    value: "auto".into(),
                    reason: "coop networks have no IPv6 bridge address; give an address".into(),
                })
            }
        };
        plans.push(plan);
    }
    store.check_ports(container, &new_ports)?;

    tracing::debug!(elapsed = ?t0.elapsed(), "addresses assigned");

    // Phase 2: host-side links, moved into the container.
    for plan in &plans {
        create_and_move(plan, pid, undo)?;
    }
    tracing::debug!(elapsed = ?t0.elapsed(), "links created");

    // Phase 3: configuration inside the container's namespace.
    configure_inside(pid, &plans)?;
    tracing::debug!(elapsed = ?t0.elapsed(), "configured inside");

    // Phase 4: DHCP hosts, then published ports.
    for n in &undo.dhcp_nets {
        crate::dhcp::ensure(&store.run_dir(), n, &store.leases(&n.name)?)?;
    }
    if !new_ports.is_empty() || store.ports()?.iter().any(|p| p.container == container) {
        let old = store.ports()?;
        undo.ports = Some(old.clone());
        let mut all: Vec<PortRule> = old
            .into_iter()
            .filter(|p| p.container != container)
            .collect();
        all.extend(new_ports.iter().cloned());
        store.write_ports(&all)?;
        store.apply_nft()?;
    }
    tracing::debug!(elapsed = ?t0.elapsed(), "dhcp and ports done");

    Ok(Attached {
        container: container.into(),
        init_pid: pid,
        ifaces: plans
            .iter()
            .map(|p| AttachedIface {
                index: p.spec.index,
                kind: match &p.spec.kind {
                    IfaceType::Veth { .. } => "veth",
                    IfaceType::Empty => "empty",
                    IfaceType::None => "none",
                    IfaceType::Macvlan { .. } => "macvlan",
                    IfaceType::Phys { .. } => "phys",
                }
                .into(),
                name: if matches!(p.spec.kind, IfaceType::Empty) {
                    "lo".into()
                } else {
                    p.ifname.clone()
                },
                host_veth: p.host_veth.clone(),
                network: p.net.as_ref().map(|n| n.name.clone()),
                hwaddr: p.spec.hwaddr.clone(),
                ipv4: p.v4.map(|(a, l)| format!("{a}/{l}")),
                ipv4_gateway: p.gw4.as_ref().map(|g| match g {
                    Gw4::Via(a) => a.to_string(),
                    Gw4::Dev => "dev".into(),
                }),
                ipv6: p.spec.ipv6.map(|c| format!("{}/{}", c.addr, c.prefix)),
                phys_link: match &p.spec.kind {
                    IfaceType::Phys { link } => Some(link.clone()),
                    _ => None,
                },
            })
            .collect(),
        ports: new_ports,
    })
}

fn first_v4_of(link: &str) -> Result<Option<Ipv4Addr>, NetError> {
    let link = link.to_string();
    nl::with_handle(|h| async move {
        let Some(m) = nl::get_link(&h, &link).await? else {
            return Ok(None);
        };
        Ok(nl::all_addrs(&h)
            .await?
            .into_iter()
            .find_map(|(i, a, _)| match a {
                IpAddr::V4(a) if i == m.header.index => Some(a),
                _ => None,
            }))
    })
}

fn create_and_move(plan: &Plan, pid: i32, undo: &mut Undo) -> Result<(), NetError> {
    let Some(move_name) = plan.move_name.clone() else {
        return Ok(());
    };
    let spec = plan.spec;
    let mac = match spec.hwaddr.as_deref() {
        Some(m) => Some(mac_bytes(m).ok_or_else(|| NetError::BadKey {
            key: format!("{}.hwaddr", spec.index),
            value: m.into(),
            reason: "not a MAC address".into(),
        })?),
        None => None,
    };
    let kind = spec.kind.clone();
    let mtu = spec.mtu;
    let upid = u32::try_from(pid).map_err(|_| NetError::Netns {
        pid,
        msg: "not a process id".into(),
    })?;
    if let IfaceType::Veth { link, .. } = &spec.kind {
        let host = plan.host_veth.clone().unwrap_or_default();
        let r = create_veth(spec, link.as_deref(), &host, &move_name, mac, upid);
        if r.is_ok() {
            undo.host_links.push(host);
        }
        return r;
    }
    let created: Vec<String> = Vec::new();
    let (created, res) = nl::with_handle(|h| async move {
        let mut created = created;
        let r: Result<(), NetError> = async {
            match &kind {
                // Handled by create_veth before this runtime starts.
                IfaceType::Veth { .. } => return Ok(()),
                IfaceType::Macvlan { link, mode } => {
                    let lower = nl::get_link(&h, link)
                        .await?
                        .ok_or_else(|| NetError::BadKey {
                            key: format!("{}.link", spec.index),
                            value: link.clone(),
                            reason: "no such link on the host".into(),
                        })?;
                    h.link()
                        .add()
                        .macvlan(move_name.clone(), lower.header.index, mode.kernel_value())
                        .execute()
                        .await
                        .map_err(|e| nlerr(format!("create macvlan on {link}"), e))?;
                    created.push(move_name.clone());
                }
                IfaceType::Phys { link } => {
                    let m = nl::get_link(&h, link)
                        .await?
                        .ok_or_else(|| NetError::BadKey {
                            key: format!("{}.link", spec.index),
                            value: link.clone(),
                            reason: "no such link on the host".into(),
                        })?;
                    h.link()
                        .set(m.header.index)
                        .down()
                        .execute()
                        .await
                        .map_err(|e| nlerr(format!("set {link} down"), e))?;
                }
                IfaceType::Empty | IfaceType::None => return Ok(()),
            }
            let idx = nl::get_link(&h, &move_name)
                .await?
                .ok_or_else(|| NetError::Netlink {
                    op: format!("find {move_name}"),
                    msg: "vanished".into(),
                })?
                .header
                .index;
            let mut req = h.link().set(idx);
            if let Some(m) = mac {
                req = req.address(m.to_vec());
            }
            if let Some(m) = mtu {
                req = req.mtu(m);
            }
            req.execute()
                .await
                .map_err(|e| nlerr(format!("set address/mtu of {move_name}"), e))?;
            h.link()
                .set(idx)
                .setns_by_pid(upid)
                .execute()
                .await
                .map_err(|e| nlerr(format!("move {move_name} into pid {pid}"), e))?;
            Ok(())
        }
        .await;
        Ok((created, r))
    })?;
    match &spec.kind {
        IfaceType::Veth { .. } => undo.host_links.extend(created),
        IfaceType::Macvlan { .. } => {
            if res.is_ok() {
                undo.moved
                    .push((plan.move_name.clone().unwrap_or_default(), None));
            } else {
                undo.host_links.extend(created);
            }
        }
        IfaceType::Phys { link } if res.is_ok() => {
            undo.moved.push((link.clone(), Some(link.clone())));
        }
        _ => {}
    }
    res
}

/// One request makes both ends of a veth: the host end attached to its bridge and up, the
/// container end created directly in the init's namespace under its final name (moving a
/// device later costs another RCU grace period).
fn create_veth(
    spec: &IfaceSpec,
    link: Option<&str>,
    host: &str,
    inside: &str,
    mac: Option<[u8; 6]>,
    upid: u32,
) -> Result<(), NetError> {
    let mut c = nl::Conn::new()?;
    let mut found = c.get_links(&[host, link.unwrap_or(host)])?.into_iter();
    if found.next().flatten().is_some() {
        return Err(NetError::Network {
            name: host.to_string(),
            reason: "a link of this name already exists on the host".into(),
        });
    }
    let bridge = match link {
        Some(l) => Some(
            found
                .next()
                .flatten()
                .filter(nl::Link::is_bridge)
                .ok_or_else(|| NetError::BadKey {
                    key: format!("{}.link", spec.index),
                    value: l.to_string(),
                    reason: "no such bridge on the host".into(),
                })?
                .index,
        ),
        None => None,
    };
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(inside.to_string()));
    peer.attributes.push(LinkAttribute::NetNsPid(upid));
    if let Some(m) = mac {
        peer.attributes.push(LinkAttribute::Address(m.to_vec()));
    }
    if let Some(m) = spec.mtu {
        peer.attributes.push(LinkAttribute::Mtu(m));
    }
    let mut msg = LinkMessage::default();
    msg.header.flags = vec![LinkFlag::Up];
    msg.header.change_mask = vec![LinkFlag::Up];
    msg.attributes.push(LinkAttribute::IfName(host.to_string()));
    if let Some(b) = bridge {
        msg.attributes.push(LinkAttribute::Controller(b));
    }
    if let Some(m) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(m));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    c.batch(vec![nl::Req::create(
        RouteNetlinkMessage::NewLink(msg),
        format!("create veth {host} / {inside} in pid {upid}"),
    )])
}

fn configure_inside(pid: i32, plans: &[Plan]) -> Result<(), NetError> {
    struct Job {
        from: String,
        to: String,
        up: bool,
        v4: Option<(Ipv4Addr, u8)>,
        v6: Option<(Ipv6Addr, u8)>,
        gw4: Option<Option<Ipv4Addr>>,
        gw6: Option<Option<Ipv6Addr>>,
    }
    let jobs: Vec<Job> = plans
        .iter()
        .filter_map(|p| {
            Some(Job {
                from: p.move_name.clone()?,
                to: p.ifname.clone(),
                up: p.spec.up,
                v4: p.v4,
                v6: p.spec.ipv6.map(|c| (c.addr, c.prefix)),
                gw4: p.gw4.as_ref().map(|g| match g {
                    Gw4::Via(a) => Some(*a),
                    Gw4::Dev => None,
                }),
                gw6: p.gw6.as_ref().map(|g| match g {
                    Gw6::Via(a) => Some(*a),
                    Gw6::Dev => None,
                }),
            })
        })
        .collect();
    let mut c = nl::Conn::in_netns_of(pid)?;
    let links = c.links()?;
    let index_of = |name: &str| links.iter().find(|l| l.name == name).map(|l| l.index);
    let lo = index_of("lo").ok_or_else(|| NetError::Netns {
        pid,
        msg: "no loopback device".into(),
    })?;
    // Everything else goes out in one batch: the kernel applies it in order.
    let mut reqs = vec![nl::Req::new(nl::msg_link_up(lo), 0, "set lo up")];
    for j in &jobs {
        let idx = index_of(&j.from).ok_or_else(|| NetError::Netns {
            pid,
            msg: format!("{} did not arrive", j.from),
        })?;
        if j.from != j.to {
            if index_of(&j.to).is_some() {
                return Err(NetError::Netns {
                    pid,
                    msg: format!("a link named {} already exists inside", j.to),
                });
            }
            reqs.push(nl::Req::new(
                nl::msg_rename(idx, &j.to),
                0,
                format!("rename {} to {}", j.from, j.to),
            ));
        }
        if let Some((a, p)) = j.v4 {
            reqs.push(nl::Req::create(
                nl::msg_add_addr(idx, IpAddr::V4(a), p),
                format!("add {a}/{p} to {}", j.to),
            ));
        }
        if let Some((a, p)) = j.v6 {
            reqs.push(nl::Req::create(
                nl::msg_add_addr(idx, IpAddr::V6(a), p),
                format!("add {a}/{p} to {}", j.to),
            ));
        }
        if !j.up {
            continue;
        }
        reqs.push(nl::Req::new(
            nl::msg_link_up(idx),
            0,
            format!("set {} up", j.to),
        ));
        match j.gw4 {
            Some(Some(gw)) => reqs.push(nl::Req::create(
                nl::msg_default_route(false, Some(IpAddr::V4(gw)), idx),
                format!("default route via {gw}"),
            )),
            Some(None) => reqs.push(nl::Req::create(
                nl::msg_default_route(false, None, idx),
                format!("default route dev {}", j.to),
            )),
            None => {}
        }
        match j.gw6 {
            Some(Some(gw)) => reqs.push(nl::Req::create(
                nl::msg_default_route(true, Some(IpAddr::V6(gw)), idx),
                format!("default route via {gw}"),
            )),
            Some(None) => reqs.push(nl::Req::create(
                nl::msg_default_route(true, None, idx),
                format!("IPv6 default route dev {}", j.to),
            )),
            None => {}
        }
    }
    c.batch(reqs)
}

/// Removes what [`setup`] made (host veths if still there, published ports); leases stay.
pub fn teardown(store: &NetStore, attached: &Attached) -> Result<(), NetError> {
    let _l = store.lock()?;
    let veths: Vec<String> = attached
        .ifaces
        .iter()
        .filter_map(|i| i.host_veth.clone())
        .collect();
    if !veths.is_empty() {
        let mut c = nl::Conn::new()?;
        for v in &veths {
            c.del_link(v)?;
        }
    }
    let phys: Vec<(String, Option<String>)> = attached
        .ifaces
        .iter()
        .filter_map(|i| Some((i.name.clone(), Some(i.phys_link.clone()?))))
        .collect();
    if !phys.is_empty() && attached.init_pid > 0 {
        if let Err(e) = give_back(attached.init_pid, &phys) {
            tracing::warn!(container = %attached.container, "physical links not given back: {e}");
        }
    }
    let ports = store.ports()?;
    if ports.iter().any(|p| p.container == attached.container) {
        let keep: Vec<PortRule> = ports
            .into_iter()
            .filter(|p| p.container != attached.container)
            .collect();
        store.write_ports(&keep)?;
        store.apply_nft()?;
    }
    tracing::info!(container = %attached.container, "network torn down");
    Ok(())
}

/// Interfaces seen inside the container's namespace, with byte/packet counters.
pub fn iface_stats(init_pid: i32) -> Result<Vec<IfaceStats>, NetError> {
    let path = format!("/proc/{init_pid}/net/dev");
    let text = fs::read_to_string(&path).map_err(|e| NetError::io(&path, e))?;
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() < 10 {
            continue;
        }
        out.push(IfaceStats {
            name: name.trim().to_string(),
            addresses: Vec::new(),
            rx_bytes: f[0],
            rx_packets: f[1],
            tx_bytes: f[8],
            tx_packets: f[9],
            host_veth: None,
        });
    }
    let addrs = nl::in_netns(init_pid, || {
        nl::with_handle(|h| async move {
            let links = nl::all_links(&h).await?;
            let names: HashMap<u32, String> = links
                .iter()
                .filter_map(|l| Some((l.header.index, nl::link_name(l)?.to_string())))
                .collect();
            Ok(nl::all_addrs(&h)
                .await?
                .into_iter()
                .filter_map(|(i, a, p)| Some((names.get(&i)?.clone(), format!("{a}/{p}"))))
                .collect::<Vec<_>>())
        })
    })?;
    for s in &mut out {
        s.addresses = addrs
            .iter()
            .filter(|(n, _)| *n == s.name)
            .map(|(_, a)| a.clone())
            .collect();
    }
    Ok(out)
}

/// [`iface_stats`] with the host-side veth names filled from `attached`.
pub fn iface_stats_attached(attached: &Attached) -> Result<Vec<IfaceStats>, NetError> {
    let mut s = iface_stats(attached.init_pid)?;
    for st in &mut s {
        st.host_veth = attached
            .ifaces
            .iter()
            .find(|i| i.name == st.name)
            .and_then(|i| i.host_veth.clone());
    }
    Ok(s)
}
