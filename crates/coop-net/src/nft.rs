//! The coop nftables table, regenerated as a whole from the store's state and applied in
//! one `nft -j -f -` transaction, so the kernel never sees a half-updated rule set.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::store::{Network, PortRule};
use crate::NetError;

fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}

fn prefix(n: &Network) -> Value {
    json!({"prefix": {"addr": n.network_addr().to_string(), "len": n.prefix}})
}

/// Builds the transaction that replaces table `inet <table>`; with no networks it only
/// deletes the table.
pub(crate) fn ruleset(
    table: &str,
    nets: &[Network],
    ports: &[PortRule],
    forward_policy_drop: bool,
) -> Value {
    let tbl = json!({"family": "inet", "name": table});
    // "add" before "delete" makes the delete succeed whether or not the table existed.
    let mut cmds = vec![
        json!({"add": {"table": tbl}}),
        json!({"delete": {"table": tbl}}),
    ];
    if nets.is_empty() {
        return json!({ "nftables": cmds });
    }
    cmds.push(json!({"add": {"table": tbl}}));
    let chain = |name: &str, ty: &str, hook: &str, prio: i32, policy: &str| {
        json!({"add": {"chain": {"family": "inet", "table": table, "name": name,
            "type": ty, "hook": hook, "prio": prio, "policy": policy}}})
    };
    let policy = if forward_policy_drop {
        "drop"
    } else {
        "accept"
    };
    cmds.push(chain("forward", "filter", "forward", 0, policy));
    cmds.push(chain("prerouting", "nat", "prerouting", -100, "accept"));
    cmds.push(chain("output", "nat", "output", -100, "accept"));
    cmds.push(chain("postrouting", "nat", "postrouting", 100, "accept"));
    let mut rule = |chain: &str, expr: Vec<Value>| {
        cmds.push(json!({"add": {"rule": {"family": "inet", "table": table, "chain": chain, "expr": expr}}}));
    };

    // Networks are isolated from each other even though the host routes between them.
    for a in nets {
        for b in nets {
            if a.name != b.name {
                rule(
                    "forward",
                    vec![
                        m(meta("iifname"), "==", json!(a.name)),
                        m(meta("oifname"), "==", json!(b.name)),
                        json!({"drop": null}),
                    ],
                );
            }
        }
    }
    for n in nets {
        rule(
            "forward",
            vec![
                m(meta("iifname"), "==", json!(n.name)),
                json!({"accept": null}),
            ],
        );
        rule(
            "forward",
            vec![
                m(meta("oifname"), "==", json!(n.name)),
                m(
                    json!({"ct": {"key": "state"}}),
                    "in",
                    json!(["established", "related"]),
                ),
                json!({"accept": null}),
            ],
        );
        rule(
            "forward",
            vec![
                m(meta("oifname"), "==", json!(n.name)),
                m(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
                json!({"accept": null}),
            ],
        );
        // A NATed network is not reachable from outside except through published ports;
        // a routed (non-NAT) one is.
        let verdict = if n.nat {
            json!({"drop": null})
        } else {
            json!({"accept": null})
        };
        rule(
            "forward",
            vec![m(meta("oifname"), "==", json!(n.name)), verdict],
        );
        if n.nat {
            rule(
                "postrouting",
                vec![
                    m(payload("ip", "saddr"), "==", prefix(n)),
                    m(meta("oifname"), "!=", json!(n.name)),
                    json!({"masquerade": null}),
                ],
            );
        }
        // Hairpin: a container reaching a published port of its own network must see
        // replies come back through the host, not directly from the peer.
        rule(
            "postrouting",
            vec![
                m(payload("ip", "saddr"), "==", prefix(n)),
                m(meta("oifname"), "==", json!(n.name)),
                m(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
                json!({"masquerade": null}),
            ],
        );
    }

    for p in ports {
        let dst = match p.host_ip {
            Some(ip) => m(payload("ip", "daddr"), "==", json!(ip.to_string())),
            None => m(
                json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                "==",
                json!("local"),
            ),
        };
        let proto = p.proto.as_str();
        let dnat = json!({"dnat": {"family": "ip", "addr": p.addr.to_string(), "port": p.port}});
        let comment = format!("{} {}", p.container, p.network);
        for chain in ["prerouting", "output"] {
            let mut expr = vec![m(meta("nfproto"), "==", json!("ipv4")), dst.clone()];
            if chain == "output" {
                // Loopback sources cannot be routed to a bridge without route_localnet.
                expr.push(m(
                    payload("ip", "daddr"),
                    "!=",
                    json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
                ));
            }
            expr.push(m(payload(proto, "dport"), "==", json!(p.host_port)));
            expr.push(dnat.clone());
            cmds.push(
                json!({"add": {"rule": {"family": "inet", "table": table, "chain": chain,
                "comment": comment, "expr": expr}}}),
            );
        }
    }
    json!({ "nftables": cmds })
}

/// Applies a transaction built by [`ruleset`].
pub(crate) fn apply(doc: &Value) -> Result<(), NetError> {
    let text = doc.to_string();
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nft(format!("cannot run nft: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .map_err(|e| NetError::Nft(format!("writing to nft: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Nft(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        return Err(NetError::Nft(format!(
            "nft -j -f - failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether table `inet <table>` exists (a read, no transaction).
/// Whether table `inet <table>` exists, asked over nfnetlink (NFT_MSG_GETTABLE) rather
/// than by running `nft`: this runs on every container start and a process spawn costs
/// milliseconds. Any failure (no nf_tables, no permission) counts as "missing", which
/// makes the caller rebuild the table with `nft`.
pub(crate) fn table_exists(table: &str) -> bool {
    table_query(table).unwrap_or(false)
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFTA_TABLE_NAME: u16 = 1;
const NFPROTO_INET: u8 = 1;
const NLMSG_ERROR: u16 = 2;

/// The GETTABLE request: nlmsghdr, nfgenmsg, one NFTA_TABLE_NAME attribute.
fn gettable_request(table: &str, seq: u32) -> Vec<u8> {
    let name_len = table.len() + 1;
    let attr_len = 4 + name_len;
    let total = 16 + 4 + attr_len.next_multiple_of(4);
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&(total as u32).to_ne_bytes());
    b.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version (NFNETLINK_V0), resource id (big endian, unused).
    b.extend_from_slice(&[NFPROTO_INET, 0, 0, 0]);
    b.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    b.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    b.extend_from_slice(table.as_bytes());
    b.push(0);
    b.resize(total, 0);
    b
}

fn table_query(table: &str) -> Option<bool> {
    let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER).ok()?;
    sock.bind_auto().ok()?;
    let seq = 1;
    sock.send_to(
        &gettable_request(table, seq),
        &netlink_sys::SocketAddr::new(0, 0),
        0,
    )
    .ok()?;
    let mut found = false;
    // The kernel answers before sendto returns: a NEWTABLE, then the ACK (or only an
    // error such as ENOENT). Bounded, in case of surprises.
    for _ in 0..8 {
        let (data, _) = sock.recv_from_full().ok()?;
        let mut off = 0;
        while off + 16 <= data.len() {
            let len = u32::from_ne_bytes(data[off..off + 4].try_into().ok()?) as usize;
            let ty = u16::from_ne_bytes(data[off + 4..off + 6].try_into().ok()?);
            let mseq = u32::from_ne_bytes(data[off + 8..off + 12].try_into().ok()?);
            if len < 16 || off + len > data.len() {
                return None;
            }
            if mseq == seq {
                if ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
                    found = true;
                } else if ty == NLMSG_ERROR {
                    if len < 20 {
                        return None;
                    }
                    let code = i32::from_ne_bytes(data[off + 16..off + 20].try_into().ok()?);
                    return Some(found && code == 0);
                }
            }
            off += len.next_multiple_of(4);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Proto;
    use std::net::Ipv4Addr;

    fn net(name: &str, third: u8, nat: bool) -> Network {
        Network {
            name: name.into(),
            bridge_addr: Ipv4Addr::new(10, 0, third, 1),
            prefix: 24,
            nat,
        }
    }

    #[test]
    fn empty_state_only_deletes() {
        let v = ruleset("coop", &[], &[], true);
        let cmds = v["nftables"].as_array().unwrap();
        assert_eq!(cmds.len(), 2);
        assert!(cmds[1].get("delete").is_some());
    }

    #[test]
    fn rules_for_networks_and_ports() {
        let nets = [net("a0", 1, true), net("b0", 2, false)];
        let ports = [PortRule {
            container: "c".into(),
            network: "a0".into(),
            host_ip: None,
            host_port: 8080,
            proto: Proto::Tcp,
            addr: Ipv4Addr::new(10, 0, 1, 2),
            port: 80,
        }];
        let v = ruleset("coop", &nets, &ports, true);
        let text = v.to_string();
        assert!(text.contains(r#""policy":"drop""#));
        // Isolation both ways, masquerade only for the NAT network.
        assert!(text.contains(r#""right":"a0"}},{"match":{"left":{"meta":{"key":"oifname"}},"op":"==","right":"b0"}},{"drop":null}"#));
        assert!(text.contains(r#""right":"b0"}},{"match":{"left":{"meta":{"key":"oifname"}},"op":"==","right":"a0"}},{"drop":null}"#));
        assert_eq!(text.matches(r#"{"masquerade":null}"#).count(), 3);
        assert!(text.contains(r#"{"dnat":{"addr":"10.0.1.2","family":"ip","port":80}}"#));
        assert_eq!(text.matches(r#""right":8080"#).count(), 2);
        let v = ruleset("coop", &nets, &[], false);
        assert!(v.to_string().contains(r#""policy":"accept""#));
    }

    #[test]
    fn gettable_request_layout() {
        let b = gettable_request("coop", 7);
        // header 16 + nfgenmsg 4 + attribute 4 + "coop\0" padded to 8.
        assert_eq!(b.len(), 32);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 0x0a01);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        assert_eq!(b[16], NFPROTO_INET);
        assert_eq!(u16::from_ne_bytes(b[20..22].try_into().unwrap()), 9);
        assert_eq!(u16::from_ne_bytes(b[22..24].try_into().unwrap()), 1);
        assert_eq!(&b[24..29], b"coop\0");
    }

    #[test]
    fn table_exists_asks_the_kernel() {
        let have_nft = Command::new("nft")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !nix::unistd::geteuid().is_root() || !have_nft {
            eprintln!("SKIP: needs root and nft");
            return;
        }
        let name = format!("cooptx{}", std::process::id());
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = Command::new("nft")
                    .args(["delete", "table", "inet", &self.0])
                    .status();
            }
        }
        assert!(!table_exists(&name));
        let ok = Command::new("nft")
            .args(["add", "table", "inet", &name])
            .status()
            .unwrap();
        assert!(ok.success());
        let _d = Del(name.clone());
        assert!(table_exists(&name));
        // Same name in another family is not ours.
        assert!(!table_exists(&format!("{name}x")));
        drop(_d);
        assert!(!table_exists(&name));
    }
}
