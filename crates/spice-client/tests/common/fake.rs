//! A scripted SPICE server for tests: the real link stage (spice-proto's
//! LinkServer) over loopback TCP, then whatever messages a test sends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use spice_client::spice_proto::common::Message;
use spice_client::spice_proto::consts::channel as chan;
use spice_client::spice_proto::framing::write_message;
use spice_client::spice_proto::link::{caps_from_bits, LinkInfo};
use spice_client::spice_proto::{
    ticket, Framer, HeaderKind, LinkServer, LinkServerConfig, LinkStatus, MainClientMsg,
};

pub struct Peer {
    pub s: TcpStream,
    pub kind: HeaderKind,
    pub framer: Framer,
    pub info: LinkInfo,
}

impl Peer {
    pub fn send<M: Message>(&mut self, m: &M) {
        let mut out = Vec::new();
        write_message(self.kind, 1, m.msg_type(), &m.to_body(), &mut out);
        let _ = self.s.write_all(&out);
    }

    /// Next client message of a type other than the base ones.
    pub fn recv(&mut self) -> Option<(u16, Vec<u8>)> {
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(Some(m)) = self.framer.next_message() {
                return Some((m.msg_type, m.body));
            }
            let n = self.s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            self.framer.push(&buf[..n]);
        }
    }
}

/// Accepts one connection and runs the server side of the link.
pub fn accept_link(l: &TcpListener, cfg: &Arc<LinkServerConfig>) -> Option<Peer> {
    let (mut s, _) = l.accept().ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut ls = LinkServer::new(cfg.clone());
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        let mut out = Vec::new();
        let st = ls.feed(&buf[..n], &mut out);
        s.write_all(&out).ok()?;
        match st {
            LinkStatus::InProgress => {}
            LinkStatus::Failed(_) => return None,
            LinkStatus::Linked(info) => {
                let kind = HeaderKind::from_mini(info.mini_header);
                return Some(Peer {
                    s,
                    kind,
                    framer: Framer::new(kind, 1 << 20),
                    info,
                });
            }
        }
    }
}

pub fn server(
    password: Option<&str>,
    script: impl FnOnce(TcpListener, Arc<LinkServerConfig>) + Send + 'static,
) -> (u16, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut cfg = LinkServerConfig::new(
        ticket::generate_key().unwrap(),
        password.map(str::to_string),
    );
    cfg.channel_caps.insert(
        chan::DISPLAY,
        caps_from_bits(&[spice_client::spice_proto::consts::caps::display::PREF_COMPRESSION]),
    );
    let cfg = Arc::new(cfg);
    (port, std::thread::spawn(move || script(l, cfg)))
}

pub fn agent_stream(m: &spice_client::spice_proto::agent::AgentMessage) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_with_header(&mut v);
    v
}

/// The next agent message the client sent, skipping other main messages.
pub fn next_agent_msg(p: &mut Peer) -> spice_client::spice_proto::agent::AgentMessage {
    use spice_client::spice_proto::agent::{AgentCaps, AgentHeader, AgentMessage, HEADER_SIZE};
    loop {
        let (t, body) = p.recv().expect("client closed");
        if let Ok(MainClientMsg::AgentData(d)) = MainClientMsg::decode(t, &body) {
            let h = AgentHeader::decode(&d[..HEADER_SIZE]).unwrap();
            return AgentMessage::decode(h.msg_type, &d[HEADER_SIZE..], AgentCaps::default())
                .unwrap();
        }
    }
}
