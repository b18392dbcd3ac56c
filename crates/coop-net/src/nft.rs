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
pub(crate) fn table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
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
}
