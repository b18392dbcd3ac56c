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
        Ok(Conn { sock, seq: 0 })
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

    /// Sends all `reqs` at once, then collects the answers of each: its reply messages,
    /// or the error the kernel gave (as an errno).
    pub fn exchange(
        &mut self,
        reqs: Vec<Req>,
    ) -> Result<Vec<Result<Vec<RouteNetlinkMessage>, std::io::Error>>, NetError> {
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
        let mut out: Vec<Option<Result<Vec<RouteNetlinkMessage>, std::io::Error>>> =
            (0..n).map(|_| None).collect();
        let mut replies: Vec<Vec<RouteNetlinkMessage>> = (0..n).map(|_| Vec::new()).collect();
        if n == 0 {
            return Ok(Vec::new());
        }
        self.sock
            .send_to(&buf, &netlink_sys::SocketAddr::new(0, 0), 0)
            .map_err(|e| sock_err("send request", e))?;
        let mut left = n;
        while left > 0 {
            let (data, _) = self
                .sock
                .recv_from_full()
                .map_err(|e| sock_err("receive answer", e))?;
            let mut off = 0;
            while off + 16 <= data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| NetError::Netlink {
                        op: "decode answer".into(),
                        msg: e.to_string(),
                    })?;
                let len = (msg.header.length as usize).max(16);
                off += len.next_multiple_of(4);
                let i = msg.header.sequence_number.wrapping_sub(first) as usize;
                // Late answers to an earlier exchange (e.g. an ACK after a dump) are
                // not ours.
                if i >= n || out[i].is_some() {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => replies[i].push(m),
                    NetlinkPayload::Done(_) if dump[i] => {
                        out[i] = Some(Ok(std::mem::take(&mut replies[i])));
                        left -= 1;
                    }
                    NetlinkPayload::Error(e) => {
                        out[i] = Some(match e.code {
                            None => Ok(std::mem::take(&mut replies[i])),
                            Some(_) => Err(e.to_io()),
                        });
                        left -= 1;
                    }
                    _ => {}
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Ok(Vec::new())))
            .collect())
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

    /// One request, its replies.
    pub fn request(&mut self, req: Req) -> Result<Vec<RouteNetlinkMessage>, NetError> {
        let op = req.op.clone();
        self.exchange(vec![req])?
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()))
            .map_err(|e| NetError::Netlink {
                op,
                msg: e.to_string(),
            })
    }

    /// The link called `name`, if any.
    pub fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>, NetError> {
        Ok(self.get_links(&[name])?.pop().flatten())
    }

    /// The links called `names` (None for each missing one), in one round trip.
    pub fn get_links(&mut self, names: &[&str]) -> Result<Vec<Option<LinkMessage>>, NetError> {
        let reqs = names
            .iter()
            .map(|n| {
                let mut m = LinkMessage::default();
                m.attributes.push(LinkAttribute::IfName(n.to_string()));
                Req::new(RouteNetlinkMessage::GetLink(m), 0, format!("get link {n}"))
            })
            .collect();
        self.exchange(reqs)?
            .into_iter()
            .zip(names)
            .map(|(r, name)| match r {
                Ok(v) => Ok(v.into_iter().find_map(|m| match m {
                    RouteNetlinkMessage::NewLink(l) => Some(l),
                    _ => None,
                })),
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
    pub fn links(&mut self) -> Result<Vec<LinkMessage>, NetError> {
        Ok(self
            .request(Req::new(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
                "list links",
            ))?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    /// Addresses of every link: (link index, address, prefix).
    pub fn addrs(&mut self) -> Result<Vec<(u32, IpAddr, u8)>, NetError> {
        let msgs: Vec<AddressMessage> = self
            .request(Req::new(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                NLM_F_DUMP,
                "list addresses",
            ))?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect();
        Ok(addr_tuples(&msgs))
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
