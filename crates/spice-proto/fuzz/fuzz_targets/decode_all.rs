//! Feeds one input to every decoder, both framers and both link state
//! machines; any panic, overflow or runaway allocation is a finding.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use spice_proto::agent::{AgentCaps, AgentMessage, AgentReassembler};
use spice_proto::framing::{Framer, HeaderKind};
use spice_proto::link::{
    LinkClient, LinkClientConfig, LinkMess, LinkReply, LinkServer, LinkServerConfig,
};
use spice_proto::*;

fn server_config() -> Arc<LinkServerConfig> {
    static CFG: OnceLock<Arc<LinkServerConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let key = spice_proto::ticket::generate_key().expect("key generation");
        Arc::new(LinkServerConfig::new(key, Some("pw".into())))
    })
    .clone()
}

fn decode_all(t: u16, body: &[u8]) {
    let _ = BaseServerMsg::decode(t, body);
    let _ = BaseClientMsg::decode(t, body);
    let _ = MainServerMsg::decode(t, body);
    let _ = MainClientMsg::decode(t, body);
    let _ = DisplayServerMsg::decode(t, body);
    let _ = DisplayClientMsg::decode(t, body);
    let _ = InputsServerMsg::decode(t, body);
    let _ = InputsClientMsg::decode(t, body);
    let _ = CursorServerMsg::decode(t, body);
    for (sel, ser) in [(false, false), (true, false), (true, true)] {
        let caps = AgentCaps {
            clipboard_selection: sel,
            grab_serial: ser,
        };
        let _ = AgentMessage::decode(u32::from(t), body, caps);
    }
    // Anything that decodes must encode again without trouble.
    if let Ok(m) = DisplayServerMsg::decode(t, body) {
        let again = m.to_body();
        assert_eq!(DisplayServerMsg::decode(t, &again).as_ref(), Ok(&m));
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let t = u16::from_le_bytes([data[0], data[1]]);
        decode_all(t, &data[2..]);
        // Map the type into the dense ranges too, so short inputs hit real handlers.
        let dense = match data[0] % 3 {
            0 => 1 + u16::from(data[1] % 10),
            1 => 101 + u16::from(data[1] % 30),
            _ => 302 + u16::from(data[1] % 22),
        };
        decode_all(dense, &data[2..]);
    }

    for kind in [HeaderKind::Full, HeaderKind::Mini] {
        let mut f = Framer::new(kind, 1 << 16);
        for chunk in data.chunks(7) {
            f.push(chunk);
            while let Ok(Some(m)) = f.next_message() {
                decode_all(m.msg_type, &m.body);
            }
        }
    }

    let mut re = AgentReassembler::new(1 << 16);
    re.push(data);
    while let Ok(Some(_)) = re.next_message() {}

    let _ = LinkMess::decode(data);
    let _ = LinkReply::decode(data);

    let mut server = LinkServer::new(server_config());
    let mut out = Vec::new();
    for chunk in data.chunks(13) {
        server.feed(chunk, &mut out);
    }

    if let Ok(mut client) = LinkClient::new(LinkClientConfig::new(0, 1, 0, "pw")) {
        let mut hello = Vec::new();
        client.start(&mut hello);
        let _ = client.feed(data, &mut out);
    }
});
