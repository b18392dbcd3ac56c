//! Synchronous wrappers over rtnetlink: each call runs a tiny current-thread runtime, and
//! work inside a container's namespace runs on a scoped thread that `setns`-ed into it
//! (a netlink socket belongs to the namespace it was created in).

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlag, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
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
    Ok(msgs
        .iter()
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
        .collect())
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
