//! Netlink access. The container start path ([`Conn`]) is a plain blocking socket that
//! batches requests; colder paths (network create/remove, macvlan/phys, stats) use
//! rtnetlink through a tiny current-thread runtime per call. Work inside a container's
//! namespace runs on a scoped thread that `setns`-ed into it (a netlink socket belongs to
//! the namespace it was created in).

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlag, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, IpVersion};

use crate::NetError;

pub(crate) fn nlerr(op: impl Into<String>, e: rtnetlink::Error) -> NetError {
    let msg = match &e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    };
    NetError::Netlink { op: op.into(), msg }
}

/// Runs `f` with a fresh rtnetlink handle in the calling thread's network namespace.
pub(crate) fn with_handle<T, F, Fut>(f: F) -> Result<T, NetError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetError::Netlink {
            op: "start runtime".into(),
            msg: e.to_string(),
        })?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetError::Netlink {
            op: "open socket".into(),
            msg: e.to_string(),
        })?;
        let task = tokio::spawn(conn);
        let r = f(handle).await;
        task.abort();
        r
    })
}

/// Runs `f` on a thread that joined the network namespace of `pid`.
pub(crate) fn in_netns<T, F>(pid: i32, f: F) -> Result<T, NetError>
where
    T: Send,
    F: FnOnce() -> Result<T, NetError> + Send,
{
    let path = format!("/proc/{pid}/ns/net");
    let ns = File::open(&path).map_err(|e| NetError::Netns {
        pid,
        msg: format!("{path}: {e}"),
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetError::Netns {
                    pid,
                    msg: format!("setns: {e}"),
                }
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetError::Netns {
                pid,
                msg: "worker thread panicked".into(),
            })
        })
    })
}

pub(crate) fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

pub(crate) fn link_is_up(m: &LinkMessage) -> bool {
    m.header.flags.contains(&LinkFlag::Up)
}

pub(crate) fn link_is_bridge(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

pub(crate) async fn get_link(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.raw_code() == -libc::ENODEV || e.raw_code() == -libc::EINVAL =>
        {
            Ok(None)
        }
        Err(e) => Err(nlerr(format!("get link {name}"), e)),
    }
}

pub(crate) async fn all_links(h: &Handle) -> Result<Vec<LinkMessage>, NetError> {
    h.link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nlerr("list links", e))
}

pub(crate) async fn del_link(h: &Handle, name: &str) -> Result<bool, NetError> {
    match get_link(h, name).await? {
        Some(m) => {
            match h.link().del(m.header.index).execute().await {
                Ok(()) => {}
                // Gone meanwhile (the peer namespace died): that is what we wanted.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
                Err(e) => return Err(nlerr(format!("delete link {name}"), e)),
            }
            Ok(true)
        }
        None => Ok(false),
    }
}

/// IPv4/IPv6 addresses of every link: (link index, address, prefix).
pub(crate) async fn all_addrs(h: &Handle) -> Result<Vec<(u32, IpAddr, u8)>, NetError> {
    let msgs: Vec<AddressMessage> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nlerr("list addresses", e))?;
    Ok(addr_tuples(&msgs))
}

fn addr_tuples(msgs: &[AddressMessage]) -> Vec<(u32, IpAddr, u8)> {
    msgs.iter()
        .filter_map(|m| {
            let a = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let a = a.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            })?;
            Some((m.header.index, a, m.header.prefix_len))
        })
        .collect()
}

/// IPv4 routes with a destination prefix (not default routes): (dst, prefix, oif).
pub(crate) async fn v4_routes(h: &Handle) -> Result<Vec<(Ipv4Addr, u8, Option<u32>)>, NetError> {
    let msgs: Vec<RouteMessage> = h
        .route()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(|e| nlerr("list routes", e))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.destination_prefix_length > 0)
        .filter_map(|m| {
            let dst = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })?;
            let oif = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            Some((dst, m.header.destination_prefix_length, oif))
        })
        .collect())
}

/// A blocking rtnetlink socket for the container start path: no runtime, no extra thread,
/// and several requests go out in one datagram (the kernel handles them in order).
pub(crate) struct Conn {
    sock: netlink_sys::Socket,
    seq: u32,
    /// Receive buffer, kept across exchanges.
    rbuf: Vec<u8>,
}

/// The answer to one request of a batch: its reply messages (raw), or the kernel's error.
pub(crate) type RawAnswer = Result<Vec<Vec<u8>>, std::io::Error>;

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFF_UP: u32 = 1;

/// The few facts the start path needs about a link, read straight from an RTM_NEWLINK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Link {
    pub index: u32,
    pub up: bool,
    pub name: String,
    /// `IFLA_INFO_KIND` (`bridge`, `veth`, …), empty for devices without one (lo).
    pub kind: String,
    pub mac: Option<Vec<u8>>,
}

/// The attributes (type without flag bits, payload) in `b`; stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((kind, payload))
    })
}

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Link {
    /// Reads a whole netlink message (16-byte header, ifinfomsg, attributes).
    pub fn parse(msg: &[u8]) -> Option<Link> {
        if msg.len() < 32 || u16::from_ne_bytes([msg[4], msg[5]]) != RTM_NEWLINK {
            return None;
        }
        let index = u32::from_ne_bytes([msg[20], msg[21], msg[22], msg[23]]);
        let flags = u32::from_ne_bytes([msg[24], msg[25], msg[26], msg[27]]);
        let mut l = Link {
            index,
            up: flags & IFF_UP != 0,
            ..Link::default()
        };
        for (kind, p) in attrs(&msg[32..]) {
            match kind {
                IFLA_IFNAME => l.name = c_str(p),
                IFLA_ADDRESS => l.mac = Some(p.to_vec()),
                IFLA_LINKINFO => {
                    if let Some((_, k)) = attrs(p).find(|(t, _)| *t == IFLA_INFO_KIND) {
                        l.kind = c_str(k);
                    }
                }
                _ => {}
            }
        }
        Some(l)
    }

    pub fn is_bridge(&self) -> bool {
        self.kind == "bridge"
    }
}

/// (link index, address, prefix) of a whole RTM_NEWADDR message.
fn parse_addr(msg: &[u8]) -> Option<(u32, IpAddr, u8)> {
    if msg.len() < 24 || u16::from_ne_bytes([msg[4], msg[5]]) != RTM_NEWADDR {
        return None;
    }
    let prefix = msg[17];
    let index = u32::from_ne_bytes([msg[20], msg[21], msg[22], msg[23]]);
    let ip = |p: &[u8]| -> Option<IpAddr> {
        match p.len() {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(p).ok()?)),
            16 => Some(IpAddr::from(<[u8; 16]>::try_from(p).ok()?)),
            _ => None,
        }
    };
    // IFA_LOCAL is the interface's own address on point-to-point links; prefer it.
    let (mut local, mut address) = (None, None);
    for (kind, p) in attrs(&msg[24..]) {
        match kind {
            IFA_LOCAL => local = ip(p),
            IFA_ADDRESS => address = ip(p),
            _ => {}
        }
    }
    Some((index, local.or(address)?, prefix))
}

/// One request of a batch: the message, extra `NLM_F_*` flags, and what it does (for
/// error messages).
pub(crate) struct Req {
    pub msg: RouteNetlinkMessage,
    pub flags: u16,
    pub op: String,
}

impl Req {
    pub fn new(msg: RouteNetlinkMessage, flags: u16, op: impl Into<String>) -> Req {
        Req {
            msg,
            flags,
            op: op.into(),
        }
    }

    /// A request that creates something (fails if it exists).
    pub fn create(msg: RouteNetlinkMessage, op: impl Into<String>) -> Req {
        Req::new(msg, NLM_F_CREATE | NLM_F_EXCL, op)
    }
}

fn sock_err(op: &str, e: std::io::Error) -> NetError {
    NetError::Netlink {
        op: op.into(),
        msg: e.to_string(),
    }
}

impl Conn {
    /// Opens a socket in the calling thread's network namespace.
    pub fn new() -> Result<Conn, NetError> {
        let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)
            .map_err(|e| sock_err("open socket", e))?;
        sock.bind_auto().map_err(|e| sock_err("bind socket", e))?;
        Ok(Conn {
            sock,
            seq: 0,
            rbuf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Opens a socket in the network namespace of `pid`. The calling thread joins that
    /// namespace just long enough to create it (a socket stays in the namespace it was
    /// made in) — cheaper than a helper thread on the start path.
    pub fn in_netns_of(pid: i32) -> Result<Conn, NetError> {
        let nserr = |msg: String| NetError::Netns { pid, msg };
        let path = format!("/proc/{pid}/ns/net");
        let target = File::open(&path).map_err(|e| nserr(format!("{path}: {e}")))?;
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|e| nserr(format!("/proc/thread-self/ns/net: {e}")))?;
        nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| nserr(format!("setns: {e}")))?;
        let conn = Conn::new();
        if let Err(e) = nix::sched::setns(&home, nix::sched::CloneFlags::CLONE_NEWNET) {
            // Carrying on inside the container's namespace would configure the wrong
            // host; going back to a namespace we hold open cannot fail in practice.
            tracing::error!(pid, "cannot return to our own network namespace: {e}");
            std::process::abort();
        }
        conn
    }

    /// Sends all `reqs` at once, then collects the answers of each: its reply messages
    /// (raw, header included), or the error the kernel gave (as an errno). Nothing is
    /// decoded here: netlink-packet-route takes ~0.5 ms to decode one bridge's
    /// RTM_NEWLINK (its per-family attributes), which the start path cannot afford.
    pub fn exchange_raw(&mut self, reqs: Vec<Req>) -> Result<Vec<RawAnswer>, NetError> {
        let first = self.seq.wrapping_add(1);
        let mut buf = Vec::new();
        let mut dump = Vec::with_capacity(reqs.len());
        for r in reqs {
            self.seq = self.seq.wrapping_add(1);
            let is_dump = r.flags & NLM_F_DUMP == NLM_F_DUMP;
            dump.push(is_dump);
            let mut m = NetlinkMessage::from(r.msg);
            // Dumps end with NLMSG_DONE; everything else is acknowledged, so every
            // request has a definite last message.
            m.header.flags = NLM_F_REQUEST | r.flags | if is_dump { 0 } else { NLM_F_ACK };
            m.header.sequence_number = self.seq;
            m.finalize();
            let at = buf.len();
            buf.resize(at + m.buffer_len(), 0);
            m.serialize(&mut buf[at..]);
            // Netlink messages start on 4-byte boundaries.
            buf.resize(buf.len().next_multiple_of(4), 0);
        }
        let n = dump.len();
        let mut out: Vec<Option<RawAnswer>> = (0..n).map(|_| None).collect();
        let mut replies: Vec<Vec<Vec<u8>>> = (0..n).map(|_| Vec::new()).collect();
        if n == 0 {
            return Ok(Vec::new());
        }
        self.sock
            .send_to(&buf, &netlink_sys::SocketAddr::new(0, 0), 0)
            .map_err(|e| sock_err("send request", e))?;
        let mut left = n;
        let mut data = std::mem::take(&mut self.rbuf);
        while left > 0 {
            data.clear();
            // One read per datagram into a buffer big enough for any rtnetlink datagram
            // (the kernel caps them at 32 KiB unless told otherwise), instead of a peek
            // for the size and a second read.
            let got = self
                .sock
                .recv(&mut data, libc::MSG_TRUNC)
                .map_err(|e| sock_err("receive answer", e))?;
            if got > data.len() {
                self.rbuf = data;
                return Err(sock_err(
                    "receive answer",
                    std::io::Error::other(format!("datagram of {got} bytes truncated")),
                ));
            }
            let mut off = 0;
            while off + 16 <= data.len() {
                let h = &data[off..];
                let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let kind = u16::from_ne_bytes([h[4], h[5]]);
                let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if len < 16 || len > h.len() {
                    self.rbuf = data;
                    return Err(NetError::Netlink {
                        op: "decode answer".into(),
                        msg: format!("bad message length {len}"),
                    });
                }
                let msg = &h[..len];
                off += len.next_multiple_of(4);
                let i = seq.wrapping_sub(first) as usize;
                // Late answers to an earlier exchange (e.g. an ACK after a dump) are
                // not ours.
                if i >= n || out[i].is_some() {
                    continue;
                }
                match kind {
                    NLMSG_DONE if dump[i] => {
                        out[i] = Some(Ok(std::mem::take(&mut replies[i])));
                        left -= 1;
                    }
                    NLMSG_ERROR => {
                        let code = msg
                            .get(16..20)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EBADMSG);
                        out[i] = Some(if code == 0 {
                            Ok(std::mem::take(&mut replies[i]))
                        } else {
                            Err(std::io::Error::from_raw_os_error(-code))
                        });
                        left -= 1;
                    }
                    NLMSG_NOOP | NLMSG_OVERRUN => {}
                    _ => replies[i].push(msg.to_vec()),
                }
            }
        }
        self.rbuf = data;
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Ok(Vec::new())))
            .collect())
    }

    /// [`Conn::exchange_raw`] with the replies decoded.
    pub fn exchange(
        &mut self,
        reqs: Vec<Req>,
    ) -> Result<Vec<Result<Vec<RouteNetlinkMessage>, std::io::Error>>, NetError> {
        self.exchange_raw(reqs)?
            .into_iter()
            .map(|r| match r {
                Err(e) => Ok(Err(e)),
                Ok(msgs) => msgs
                    .iter()
                    .map(|m| {
                        NetlinkMessage::<RouteNetlinkMessage>::deserialize(m)
                            .map_err(|e| NetError::Netlink {
                                op: "decode answer".into(),
                                msg: e.to_string(),
                            })
                            .map(|m| match m.payload {
                                NetlinkPayload::InnerMessage(m) => Some(m),
                                _ => None,
                            })
                    })
                    .filter_map(Result::transpose)
                    .collect::<Result<Vec<_>, _>>()
                    .map(Ok),
            })
            .collect()
    }

    /// Runs `reqs` in one round trip; the first failure is the error.
    pub fn batch(&mut self, reqs: Vec<Req>) -> Result<(), NetError> {
        let ops: Vec<String> = reqs.iter().map(|r| r.op.clone()).collect();
        for (r, op) in self.exchange(reqs)?.into_iter().zip(ops) {
            r.map_err(|e| NetError::Netlink {
                op,
                msg: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The link called `name`, if any.
    pub fn get_link(&mut self, name: &str) -> Result<Option<Link>, NetError> {
        Ok(self.get_links(&[name])?.pop().flatten())
    }

    /// The links called `names` (None for each missing one), in one round trip.
    pub fn get_links(&mut self, names: &[&str]) -> Result<Vec<Option<Link>>, NetError> {
        let reqs = names
            .iter()
            .map(|n| {
                let mut m = LinkMessage::default();
                m.attributes.push(LinkAttribute::IfName(n.to_string()));
                Req::new(RouteNetlinkMessage::GetLink(m), 0, format!("get link {n}"))
            })
            .collect();
        self.exchange_raw(reqs)?
            .into_iter()
            .zip(names)
            .map(|(r, name)| match r {
                Ok(v) => Ok(v.iter().find_map(|m| Link::parse(m))),
                Err(e)
                    if e.raw_os_error() == Some(libc::ENODEV)
                        || e.raw_os_error() == Some(libc::EINVAL) =>
                {
                    Ok(None)
                }
                Err(e) => Err(sock_err(&format!("get link {name}"), e)),
            })
            .collect()
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetError> {
        Ok(self
            .raw_dump(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                "list links",
            )?
            .iter()
            .filter_map(|m| Link::parse(m))
            .collect())
    }

    /// Addresses of every link: (link index, address, prefix).
    pub fn addrs(&mut self) -> Result<Vec<(u32, IpAddr, u8)>, NetError> {
        Ok(self
            .raw_dump(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                "list addresses",
            )?
            .iter()
            .filter_map(|m| parse_addr(m))
            .collect())
    }

    fn raw_dump(&mut self, msg: RouteNetlinkMessage, op: &str) -> Result<Vec<Vec<u8>>, NetError> {
        self.exchange_raw(vec![Req::new(msg, NLM_F_DUMP, op)])?
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()))
            .map_err(|e| sock_err(op, e))
    }

    /// Deletes link `name`; false when there was none.
    pub fn del_link(&mut self, name: &str) -> Result<bool, NetError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        let r = self
            .exchange(vec![Req::new(
                RouteNetlinkMessage::DelLink(m),
                0,
                format!("delete link {name}"),
            )])?
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()));
        match r {
            Ok(_) => Ok(true),
            // Gone already (e.g. its peer's namespace died): that is what we wanted.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(sock_err(&format!("delete link {name}"), e)),
        }
    }
}

/// RTM_SETLINK that raises link `idx`.
pub(crate) fn msg_link_up(idx: u32) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = idx;
    m.header.flags = vec![LinkFlag::Up];
    m.header.change_mask = vec![LinkFlag::Up];
    RouteNetlinkMessage::SetLink(m)
}

/// RTM_SETLINK that renames link `idx`.
pub(crate) fn msg_rename(idx: u32, name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = idx;
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::SetLink(m)
}

/// RTM_NEWADDR for `addr/prefix` on link `idx` (with the broadcast address for IPv4, as
/// `ip addr add … brd +` does).
pub(crate) fn msg_add_addr(idx: u32, addr: IpAddr, prefix: u8) -> RouteNetlinkMessage {
    let mut m = AddressMessage::default();
    m.header.index = idx;
    m.header.prefix_len = prefix;
    m.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.attributes.push(AddressAttribute::Address(addr));
    m.attributes.push(AddressAttribute::Local(addr));
    if let IpAddr::V4(a) = addr {
        let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        m.attributes
            .push(AddressAttribute::Broadcast(Ipv4Addr::from(
                u32::from(a) | host_bits,
            )));
    }
    RouteNetlinkMessage::NewAddress(m)
}

/// RTM_NEWROUTE for a default route, via `gw` or (without one) straight out of `oif`.
pub(crate) fn msg_default_route(v6: bool, gw: Option<IpAddr>, oif: u32) -> RouteNetlinkMessage {
    let mut m = RouteMessage::default();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    m.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    match gw {
        Some(IpAddr::V4(a)) => m
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(a))),
        Some(IpAddr::V6(a)) => m
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(a))),
        None => {
            m.attributes.push(RouteAttribute::Oif(oif));
            if !v6 {
                m.header.scope = RouteScope::Link;
            }
        }
    }
    RouteNetlinkMessage::NewRoute(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(msg: RouteNetlinkMessage) -> Vec<u8> {
        let mut m = NetlinkMessage::from(msg);
        m.finalize();
        let mut b = vec![0; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    #[test]
    fn raw_link_parse_matches_the_encoder() {
        let mut m = LinkMessage::default();
        m.header.index = 42;
        m.header.flags = vec![LinkFlag::Up, LinkFlag::Broadcast];
        m.attributes.push(LinkAttribute::Mtu(1500));
        m.attributes.push(LinkAttribute::IfName("ntbr7".into()));
        m.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let l = Link::parse(&wire(RouteNetlinkMessage::NewLink(m.clone()))).unwrap();
        assert_eq!(
            l,
            Link {
                index: 42,
                up: true,
                name: "ntbr7".into(),
                kind: "bridge".into(),
                mac: Some(vec![2, 0, 0, 0, 0, 9]),
            }
        );
        assert!(l.is_bridge());
        // Down, no kind (like lo).
        m.header.flags = vec![LinkFlag::Broadcast];
        m.attributes
            .retain(|a| !matches!(a, LinkAttribute::LinkInfo(_)));
        let l = Link::parse(&wire(RouteNetlinkMessage::NewLink(m))).unwrap();
        assert!(!l.up && !l.is_bridge() && l.kind.is_empty());
        // Not a link message, or cut short: nothing.
        let a = wire(msg_add_addr(
            3,
            IpAddr::V4(Ipv4Addr::new(10, 233, 1, 2)),
            24,
        ));
        assert_eq!(Link::parse(&a), None);
        assert_eq!(Link::parse(&a[..20]), None);
    }

    #[test]
    fn raw_addr_parse_matches_the_encoder() {
        let mut a = wire(msg_add_addr(
            7,
            IpAddr::V4(Ipv4Addr::new(10, 233, 1, 2)),
            24,
        ));
        // RTM_NEWADDR is what a dump answers with; msg_add_addr builds the same layout.
        a[4..6].copy_from_slice(&RTM_NEWADDR.to_ne_bytes());
        assert_eq!(
            parse_addr(&a),
            Some((7, IpAddr::V4(Ipv4Addr::new(10, 233, 1, 2)), 24))
        );
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let mut b = wire(msg_add_addr(9, v6, 64));
        b[4..6].copy_from_slice(&RTM_NEWADDR.to_ne_bytes());
        assert_eq!(parse_addr(&b), Some((9, v6, 64)));
        // A truncated attribute ends the walk instead of reading past the end.
        let short = &b[..b.len() - 10];
        let mut cut = short.to_vec();
        let n = cut.len() as u32;
        cut[0..4].copy_from_slice(&n.to_ne_bytes());
        assert!(parse_addr(&cut).is_none_or(|(i, _, _)| i == 9));
    }
}
