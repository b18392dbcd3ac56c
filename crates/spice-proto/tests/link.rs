//! The link stage end to end between LinkClient and LinkServer, tickets, and
//! refusals.

use std::sync::{Arc, OnceLock};

use spice_proto::consts::{caps, channel, LinkErr};
use spice_proto::link::*;
use spice_proto::ticket;
use spice_proto::ProtoError;

fn key() -> &'static ticket::PrivateKey {
    static KEY: OnceLock<ticket::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| ticket::generate_key().expect("RSA-1024 key generation"))
}

fn server(password: Option<&str>) -> LinkServer {
    let mut cfg = LinkServerConfig::new(key().clone(), password.map(str::to_string));
    cfg.channel_caps.insert(
        channel::MAIN,
        caps_from_bits(&[
            caps::main::NAME_AND_UUID,
            caps::main::AGENT_CONNECTED_TOKENS,
        ]),
    );
    cfg.available_channels = Some(vec![channel::MAIN, channel::DISPLAY, channel::INPUTS]);
    LinkServer::new(Arc::new(cfg))
}

/// Runs both state machines against each other, delivering bytes in pieces of
/// `piece` to exercise partial input.
fn run(client: &mut LinkClient, server: &mut LinkServer, piece: usize) -> (LinkStatus, LinkStatus) {
    let mut to_server = Vec::new();
    client.start(&mut to_server);
    let mut cs = LinkStatus::InProgress;
    let mut ss = LinkStatus::InProgress;
    for _ in 0..100 {
        let mut to_client = Vec::new();
        for chunk in to_server.chunks(piece.max(1)) {
            ss = server.feed(chunk, &mut to_client);
        }
        to_server.clear();
        for chunk in to_client.chunks(piece.max(1)) {
            cs = client.feed(chunk, &mut to_server).expect("client feed");
        }
        if cs != LinkStatus::InProgress && to_server.is_empty() {
            break;
        }
    }
    (cs, ss)
}

#[test]
fn ticket_roundtrip() {
    let der = ticket::public_key_der(key()).unwrap();
    assert_eq!(der.len(), 162);
    let t = ticket::encrypt(&der, "s3cret").unwrap();
    assert_eq!(t.len(), 128);
    assert_eq!(ticket::decrypt(key(), &t).unwrap(), "s3cret");
    // OAEP is randomised: two encryptions differ but decrypt the same.
    let t2 = ticket::encrypt(&der, "s3cret").unwrap();
    assert_ne!(t, t2);
    assert_eq!(ticket::decrypt(key(), &t2).unwrap(), "s3cret");
    // Empty and maximal passwords.
    let e = ticket::encrypt(&der, "").unwrap();
    assert_eq!(ticket::decrypt(key(), &e).unwrap(), "");
    let long = "x".repeat(60);
    let l = ticket::encrypt(&der, &long).unwrap();
    assert_eq!(ticket::decrypt(key(), &l).unwrap(), long);
    assert_eq!(
        ticket::encrypt(&der, &"x".repeat(61)),
        Err(ProtoError::PasswordTooLong(61))
    );
    // Tampered ciphertext and wrong sizes fail cleanly.
    let mut bad = t;
    bad[5] ^= 0x40;
    assert!(ticket::decrypt(key(), &bad).is_err());
    assert!(ticket::decrypt(key(), &t[..100]).is_err());
    assert!(ticket::encrypt(&der[..100], "a").is_err());
}

#[test]
fn link_ok_with_password() {
    for piece in [1, 7, 4096] {
        let mut c = LinkClient::new(LinkClientConfig::new(0, channel::MAIN, 0, "pw")).unwrap();
        let mut s = server(Some("pw"));
        let (cs, ss) = run(&mut c, &mut s, piece);
        let LinkStatus::Linked(ci) = cs else {
            panic!("client: {cs:?}")
        };
        let LinkStatus::Linked(si) = ss else {
            panic!("server: {ss:?}")
        };
        assert!(ci.mini_header && si.mini_header);
        assert!(ci.auth_selection && si.auth_selection);
        assert_eq!(si.channel_type, channel::MAIN);
        assert!(has_cap(&ci.peer_channel_caps, caps::main::NAME_AND_UUID));
        assert!(has_cap(&si.peer_common_caps, caps::common::MINI_HEADER));
        assert_eq!(s.link_mess().unwrap().channel_type, channel::MAIN);
    }
}

#[test]
fn wrong_password_is_permission_denied() {
    let mut c = LinkClient::new(LinkClientConfig::new(0, channel::MAIN, 0, "nope")).unwrap();
    let mut s = server(Some("pw"));
    let (cs, ss) = run(&mut c, &mut s, 64);
    assert_eq!(cs, LinkStatus::Failed(LinkErr::PERMISSION_DENIED));
    assert_eq!(ss, LinkStatus::Failed(LinkErr::PERMISSION_DENIED));
}

#[test]
fn empty_configured_password_denies_everyone() {
    // spice-server refuses every ticket when ticketing is on without a password.
    let mut c = LinkClient::new(LinkClientConfig::new(0, channel::MAIN, 0, "")).unwrap();
    let mut s = server(Some(""));
    let (cs, _) = run(&mut c, &mut s, 64);
    assert_eq!(cs, LinkStatus::Failed(LinkErr::PERMISSION_DENIED));
}

#[test]
fn disabled_ticketing_accepts_any_password() {
    let mut c = LinkClient::new(LinkClientConfig::new(0, channel::MAIN, 0, "whatever")).unwrap();
    let mut s = server(None);
    let (cs, ss) = run(&mut c, &mut s, 64);
    assert!(matches!(cs, LinkStatus::Linked(_)));
    assert!(matches!(ss, LinkStatus::Linked(_)));
}

#[test]
fn old_client_without_auth_selection_or_mini_header() {
    let mut cfg = LinkClientConfig::new(42, channel::DISPLAY, 0, "pw");
    cfg.common_caps = Vec::new();
    let mut c = LinkClient::new(cfg).unwrap();
    let mut s = server(Some("pw"));
    let (cs, ss) = run(&mut c, &mut s, 64);
    let LinkStatus::Linked(si) = ss else {
        panic!("server: {ss:?}")
    };
    assert!(!si.mini_header && !si.auth_selection);
    assert_eq!(si.connection_id, 42);
    let LinkStatus::Linked(ci) = cs else {
        panic!("client: {cs:?}")
    };
    assert!(!ci.mini_header);
}

#[test]
fn unavailable_channel_is_refused_after_ticket() {
    let mut c = LinkClient::new(LinkClientConfig::new(1, channel::USBREDIR, 0, "pw")).unwrap();
    let mut s = server(Some("pw"));
    let (cs, _) = run(&mut c, &mut s, 64);
    assert_eq!(cs, LinkStatus::Failed(LinkErr::CHANNEL_NOT_AVAILABLE));
}

fn server_reply_error(input: &[u8]) -> LinkErr {
    let mut s = server(Some("pw"));
    let mut out = Vec::new();
    let st = s.feed(input, &mut out);
    // An error reply is a link header plus a 178-byte SpiceLinkReply.
    assert_eq!(out.len(), 16 + 178, "reply bytes for {input:?}");
    let reply = LinkReply::decode(&out[16..]).unwrap();
    assert_eq!(st, LinkStatus::Failed(reply.error));
    reply.error
}

#[test]
fn server_refusals() {
    let mut bad_magic = Vec::new();
    LinkHeader {
        magic: u32::from_le_bytes(*b"GET "),
        ..LinkHeader::new(18)
    }
    .encode(&mut bad_magic);
    assert_eq!(server_reply_error(&bad_magic), LinkErr::INVALID_MAGIC);

    let mut bad_version = Vec::new();
    LinkHeader {
        major_version: 1,
        ..LinkHeader::new(18)
    }
    .encode(&mut bad_version);
    assert_eq!(server_reply_error(&bad_version), LinkErr::VERSION_MISMATCH);

    let mut huge = Vec::new();
    LinkHeader::new(1 << 30).encode(&mut huge);
    assert_eq!(server_reply_error(&huge), LinkErr::INVALID_DATA);

    // Caps pointing outside the link message.
    let mut bad_caps = Vec::new();
    LinkHeader::new(18).encode(&mut bad_caps);
    bad_caps.extend_from_slice(&0u32.to_le_bytes());
    bad_caps.extend_from_slice(&[1, 0]);
    bad_caps.extend_from_slice(&3u32.to_le_bytes());
    bad_caps.extend_from_slice(&0u32.to_le_bytes());
    bad_caps.extend_from_slice(&18u32.to_le_bytes());
    assert_eq!(server_reply_error(&bad_caps), LinkErr::INVALID_DATA);
}

#[test]
fn server_refuses_sasl_mechanism() {
    let mut s = server(Some("pw"));
    let mut out = Vec::new();
    let c = LinkClient::new(LinkClientConfig::new(0, channel::MAIN, 0, "pw")).unwrap();
    let mut hello = Vec::new();
    c.start(&mut hello);
    assert_eq!(s.feed(&hello, &mut out), LinkStatus::InProgress);
    out.clear();
    let st = s.feed(&caps::common::AUTH_SASL.to_le_bytes(), &mut out);
    assert_eq!(st, LinkStatus::Failed(LinkErr::INVALID_DATA));
}

#[test]
fn client_reports_server_error_reply_and_garbage() {
    let mut c = LinkClient::new(LinkClientConfig::new(0, channel::MAIN, 0, "pw")).unwrap();
    let mut out = Vec::new();
    LinkReply::error(LinkErr::NEED_SECURED).encode_with_header(&mut out);
    let mut sent = Vec::new();
    assert_eq!(
        c.feed(&out, &mut sent).unwrap(),
        LinkStatus::Failed(LinkErr::NEED_SECURED)
    );
    assert!(sent.is_empty());

    let mut c = LinkClient::new(LinkClientConfig::new(0, channel::MAIN, 0, "pw")).unwrap();
    assert!(matches!(
        c.feed(b"HTTP/1.1 400 Bad Request\r\n", &mut sent),
        Err(ProtoError::BadMagic(_))
    ));

    assert!(LinkClient::new(LinkClientConfig::new(0, 1, 0, &"p".repeat(61))).is_err());
}

#[test]
fn link_reply_roundtrip() {
    let r = LinkReply {
        error: LinkErr::OK,
        pub_key: ticket::public_key_der(key()).unwrap(),
        common_caps: vec![0xb],
        channel_caps: vec![1, 2],
    };
    let mut out = Vec::new();
    r.encode_with_header(&mut out);
    let h = LinkHeader::decode(&out[..16]).unwrap();
    assert_eq!(h.size as usize, 178 + 12);
    // caps_offset is sizeof(SpiceLinkReply) = 178, as reds.cpp writes it.
    assert_eq!(&out[16 + 174..16 + 178], &178u32.to_le_bytes());
    assert_eq!(LinkReply::decode(&out[16..]).unwrap(), r);
}

#[test]
fn client_refuses_sasl_only_server() {
    let mut c = LinkClient::new(LinkClientConfig::new(0, channel::MAIN, 0, "pw")).unwrap();
    let reply = LinkReply {
        error: LinkErr::OK,
        pub_key: ticket::public_key_der(key()).unwrap(),
        common_caps: caps_from_bits(&[
            caps::common::PROTOCOL_AUTH_SELECTION,
            caps::common::AUTH_SASL,
        ]),
        channel_caps: Vec::new(),
    };
    let mut bytes = Vec::new();
    reply.encode_with_header(&mut bytes);
    let mut sent = Vec::new();
    assert_eq!(c.feed(&bytes, &mut sent), Err(ProtoError::NoCommonAuth));
    assert!(sent.is_empty(), "no ticket may be sent");
}

#[test]
fn private_key_der_roundtrip() {
    let der = ticket::private_key_der(key()).unwrap();
    let back = ticket::private_key_from_der(&der).unwrap();
    assert_eq!(&back, key());
    let t = ticket::encrypt(&ticket::public_key_der(&back).unwrap(), "k").unwrap();
    assert_eq!(ticket::decrypt(key(), &t).unwrap(), "k");
    assert!(ticket::private_key_from_der(&der[..50]).is_err());
}
