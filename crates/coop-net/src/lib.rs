//! Container networking for coop: named networks (Linux bridges) with NAT, DHCP and
//! published ports, and the per-container interfaces described by `lxc.net.N.*` keys.
//!
//! The engine calls [`setup`] from its monitor after cloning the container's init into a
//! new network namespace and before that init execs, and [`teardown`] when it stops.
//! Links, addresses and routes are made through rtnetlink; NAT and port forwarding live
//! in one nftables table owned by coop (`table inet coop`, applied atomically via
//! `nft -j -f -`); DHCP is one `dnsmasq` per bridge serving only the leases coop
//! allocated (static mode, MAC → address).
//!
//! Start latency: [`setup`] runs between clone and exec of the container's init, and
//! [`NetStore::ensure_up`] just before it, so both stay in-process and batched. On a
//! ready network they spawn nothing: readiness is one netlink link query, one address
//! dump, one nfnetlink table query (no `nft`) and a dnsmasq pid check; the veth pair is
//! one RTM_NEWLINK (container end made directly in the init's namespace), the inside
//! configuration (lo up, address, link up, routes) one batched datagram on a blocking
//! socket (no async runtime, no helper thread); a restart that keeps its lease rewrites
//! neither the lease file nor dnsmasq's hosts file (no SIGHUP). `nft` runs only when
//! published ports change or the table must be rebuilt. Colder paths (network
//! create/remove, macvlan/phys, stats) use rtnetlink on a per-call current-thread runtime.
//!
//! Published ports (`coop.net.N.publish = [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`) are DNAT
//! rules for connections to any local address of the host (or to `HOSTIP`): they work from
//! other hosts and namespaces (prerouting) and from the host itself when it connects to
//! one of its non-loopback addresses, e.g. the bridge address (output). Connections to
//! `127.0.0.1` are not forwarded: that would need `route_localnet`, which coop leaves off;
//! loopback `HOSTIP`s are rejected.
//!
//! Forwarding: coop sets `net.ipv4.ip_forward=1` and never turns it off again. When coop
//! was the one to turn it on, its forward chain has policy drop and accepts only its
//! bridges' traffic (so the host does not become a router for anything else); when it was
//! already on, the policy stays accept and only coop's own rules apply (networks isolated
//! from each other, NATed networks closed to unsolicited inbound connections).
//!
//! State lives under the store directory: `networks/<name>.json`, `leases/<net>.json`,
//! `run/` (published ports, dnsmasq pid/hosts/lease files). Every mutation holds an
//! exclusive `flock` on `<dir>/.lock`, so several monitors can start containers at once.

mod attach;
mod dhcp;
mod guest;
mod nft;
mod nl;
mod spec;
mod store;

use std::path::PathBuf;

pub use attach::{
    host_veth_name, iface_stats, iface_stats_attached, setup, teardown, Attached, AttachedIface,
    IfaceStats,
};
pub use guest::lend_to_guest;
pub use spec::{
    needs_netns, parse_interfaces, parse_publish, valid_ifname, Gateway, IfaceSpec, IfaceType,
    Ipv4Cidr, Ipv6Cidr, MacvlanMode, Proto, Publish,
};
pub use store::{Lease, NetStore, Network, NetworkInfo, PortRule, DEFAULT_NETWORK, DEFAULT_SUBNET};

/// Everything that can go wrong; messages name the key, file, network or address involved.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("lxc.net.{key} = {value:?}: {reason}")]
    BadKey {
        key: String,
        value: String,
        reason: String,
    },
    #[error("network {name:?}: {reason}")]
    Network { name: String, reason: String },
    #[error("no network named {0:?}")]
    NoSuchNetwork(String),
    #[error("network {name:?} is in use by {users:?}")]
    InUse { name: String, users: Vec<String> },
    #[error("address {addr}: {reason}")]
    Address { addr: String, reason: String },
    #[error("published port {port}/{proto}: {reason}")]
    Port {
        port: u16,
        proto: &'static str,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("netlink: {op}: {msg}")]
    Netlink { op: String, msg: String },
    #[error("nft: {0}")]
    Nft(String),
    #[error("dnsmasq for network {network:?}: {msg}")]
    Dhcp { network: String, msg: String },
    #[error("network namespace of pid {pid}: {msg}")]
    Netns { pid: i32, msg: String },
}

impl NetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetError::Io {
            path: path.into(),
            source,
        }
    }
}
