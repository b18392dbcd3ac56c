//! Lending a container's interface to a guest kernel running inside the container
//! (coLinux's `conet`: a User-Mode Linux kernel sending its frames through the
//! container's veth with a raw socket).
//!
//! The guest owns the address and the MAC the lease was made for, so DHCP hands it the
//! container's lease. The container's own stack must then stay out of the way: the
//! interface loses its addresses and gets another MAC, so frames for the guest are
//! "other host" to the container's stack and only the guest's raw socket takes them.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlag, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::nl::{Conn, Req};
use crate::NetError;

/// Strips `ifname` in the network namespace of `init_pid` for a guest kernel and returns
/// the MAC the guest must use (the interface's configured one).
pub fn lend_to_guest(init_pid: i32, ifname: &str) -> Result<String, NetError> {
    let mut conn = Conn::in_netns_of(init_pid)?;
    let link = conn.get_link(ifname)?.ok_or_else(|| NetError::Netlink {
        op: format!("lend {ifname} to the guest"),
        msg: format!("no interface {ifname} in the container of pid {init_pid}"),
    })?;
    let idx = link.index;
    let mac = link
        .mac
        .filter(|b| b.len() == 6)
        .ok_or_else(|| NetError::Netlink {
            op: format!("lend {ifname} to the guest"),
            msg: "the interface has no Ethernet address".into(),
        })?;
    let mut reqs = Vec::new();
    for (i, addr, prefix) in conn.addrs()? {
        if i != idx {
            continue;
        }
        let mut m = AddressMessage::default();
        m.header.index = idx;
        m.header.prefix_len = prefix;
        m.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.attributes.push(AddressAttribute::Address(addr));
        reqs.push(Req::new(
            RouteNetlinkMessage::DelAddress(m),
            0,
            format!("remove {addr}/{prefix} from {ifname}"),
        ));
    }
    // Another locally administered MAC for the container side: the guest keeps the
    // original, which the lease and the bridge's DHCP know.
    let mut own = mac.clone();
    own[0] = (own[0] | 0x02) & 0xfe;
    own[5] ^= 0x5a;
    if own == mac {
        own[4] ^= 0xa5;
    }
    let mut m = LinkMessage::default();
    m.header.index = idx;
    m.header.flags = vec![LinkFlag::Promisc, LinkFlag::Up];
    m.header.change_mask = vec![LinkFlag::Promisc, LinkFlag::Up];
    m.attributes.push(LinkAttribute::Address(own));
    reqs.push(Req::new(
        RouteNetlinkMessage::SetLink(m),
        0,
        format!("give {ifname} a MAC of its own"),
    ));
    conn.batch(reqs)?;
    Ok(mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}
