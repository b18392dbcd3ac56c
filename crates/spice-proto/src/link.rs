//! The link stage: the plain-structured handshake every channel connection
//! starts with, before any data header is used.
//!
//! Wire order (all little-endian, layout from spice-protocol `spice/protocol.h`):
//! client → `SpiceLinkHeader` + `SpiceLinkMess` (+ caps); server →
//! `SpiceLinkHeader` + `SpiceLinkReply` (+ caps); client → optional
//! `SpiceLinkAuthMechanism` (when both sides announced
//! `PROTOCOL_AUTH_SELECTION`) + the 128-byte encrypted ticket; server → u32
//! link result. [`LinkServer`] and [`LinkClient`] drive both ends without I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use rsa::RsaPrivateKey;

use crate::consts::caps::common as ccap;
use crate::consts::{
    LinkErr, ENCRYPTED_TICKET_BYTES, MAGIC, MAX_PASSWORD_LENGTH, TICKET_PUBKEY_BYTES,
    VERSION_MAJOR, VERSION_MINOR,
};
use crate::error::{ProtoError, Result};
use crate::ticket;
use crate::wire::{decode_body, BodyBuilder};

/// Size of `SpiceLinkHeader`.
pub const LINK_HEADER_SIZE: usize = 16;
/// Size of the fixed part of `SpiceLinkMess`.
pub const LINK_MESS_SIZE: usize = 18;
/// Size of the fixed part of `SpiceLinkReply`.
pub const LINK_REPLY_SIZE: usize = 4 + TICKET_PUBKEY_BYTES + 12;
/// Upper bound spice-server applies to a link message, kept here too.
pub const MAX_LINK_MESS_SIZE: u32 = 4096;
/// spice-server refuses more cap words than this per list.
pub const MAX_CAP_WORDS: u32 = 1024;

/// Is capability bit `bit` set in the word array `caps`?
pub fn has_cap(caps: &[u32], bit: u32) -> bool {
    caps.get((bit / 32) as usize)
        .is_some_and(|w| w & (1 << (bit % 32)) != 0)
}

/// Sets capability bit `bit`, growing the word array as needed.
pub fn set_cap(caps: &mut Vec<u32>, bit: u32) {
    let idx = (bit / 32) as usize;
    if caps.len() <= idx {
        caps.resize(idx + 1, 0);
    }
    caps[idx] |= 1 << (bit % 32);
}

/// Builds a cap word array from bit numbers.
pub fn caps_from_bits(bits: &[u32]) -> Vec<u32> {
    let mut v = Vec::new();
    for &b in bits {
        set_cap(&mut v, b);
    }
    v
}

/// `SpiceLinkHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkHeader {
    pub magic: u32,
    pub major_version: u32,
    pub minor_version: u32,
    /// Size of the structure that follows.
    pub size: u32,
}

impl LinkHeader {
    pub fn new(size: u32) -> Self {
        LinkHeader {
            magic: MAGIC,
            major_version: VERSION_MAJOR,
            minor_version: VERSION_MINOR,
            size,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.magic,
            self.major_version,
            self.minor_version,
            self.size,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Parses the 16 header bytes without judging them.
    pub fn decode(b: &[u8]) -> Result<Self> {
        decode_body(b, |r| {
            Ok(LinkHeader {
                magic: r.u32("link header magic")?,
                major_version: r.u32("link header major_version")?,
                minor_version: r.u32("link header minor_version")?,
                size: r.u32("link header size")?,
            })
        })
    }
}

/// Reads `ncommon + nchannel` cap words at `caps_offset` of a link structure.
fn read_caps(
    b: &[u8],
    fixed: usize,
    ncommon: u32,
    nchannel: u32,
    caps_offset: u32,
    what: &'static str,
) -> Result<(Vec<u32>, Vec<u32>)> {
    if ncommon > MAX_CAP_WORDS || nchannel > MAX_CAP_WORDS {
        return Err(ProtoError::BadCount {
            what,
            count: u64::from(ncommon.max(nchannel)),
            remaining: b.len(),
        });
    }
    if ncommon + nchannel == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    if (caps_offset as usize) < fixed {
        return Err(ProtoError::BadOffset {
            what,
            offset: caps_offset,
            len: b.len(),
        });
    }
    decode_body(b, |r| {
        let mut r = r.at(caps_offset, what)?;
        let common = r.array(ncommon.into(), 4, what, |r| r.u32(what))?;
        let chan = r.array(nchannel.into(), 4, what, |r| r.u32(what))?;
        Ok((common, chan))
    })
}

/// `SpiceLinkMess`: what the client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMess {
    /// 0 for the main channel of a new session, else the session id from MAIN INIT.
    pub connection_id: u32,
    pub channel_type: u8,
    pub channel_id: u8,
    pub common_caps: Vec<u32>,
    pub channel_caps: Vec<u32>,
}

impl LinkMess {
    /// Encoded size, the `size` of the preceding link header.
    pub fn size(&self) -> usize {
        LINK_MESS_SIZE + 4 * (self.common_caps.len() + self.channel_caps.len())
    }

    /// Appends the link header and the message.
    pub fn encode_with_header(&self, out: &mut Vec<u8>) {
        LinkHeader::new(self.size() as u32).encode(out);
        self.encode(out);
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = BodyBuilder::new(out);
        b.u32(self.connection_id);
        b.u8(self.channel_type);
        b.u8(self.channel_id);
        b.u32(self.common_caps.len() as u32);
        b.u32(self.channel_caps.len() as u32);
        b.u32(LINK_MESS_SIZE as u32);
        for &c in self.common_caps.iter().chain(&self.channel_caps) {
            b.u32(c);
        }
        b.finish();
    }

    /// Parses the message from exactly the `size` bytes the header announced.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let (connection_id, channel_type, channel_id, nc, nch, off) = decode_body(b, |r| {
            Ok((
                r.u32("link mess connection_id")?,
                r.u8("link mess channel_type")?,
                r.u8("link mess channel_id")?,
                r.u32("link mess num_common_caps")?,
                r.u32("link mess num_channel_caps")?,
                r.u32("link mess caps_offset")?,
            ))
        })?;
        let (common_caps, channel_caps) =
            read_caps(b, LINK_MESS_SIZE, nc, nch, off, "link mess caps")?;
        Ok(LinkMess {
            connection_id,
            channel_type,
            channel_id,
            common_caps,
            channel_caps,
        })
    }
}

/// `SpiceLinkReply`: the server's answer, with its ticket public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReply {
    pub error: LinkErr,
    pub pub_key: [u8; TICKET_PUBKEY_BYTES],
    pub common_caps: Vec<u32>,
    pub channel_caps: Vec<u32>,
}

impl LinkReply {
    /// The reply spice-server sends to refuse a link: only the error is set.
    pub fn error(error: LinkErr) -> Self {
        LinkReply {
            error,
            pub_key: [0; TICKET_PUBKEY_BYTES],
            common_caps: Vec::new(),
            channel_caps: Vec::new(),
        }
    }

    pub fn size(&self) -> usize {
        LINK_REPLY_SIZE + 4 * (self.common_caps.len() + self.channel_caps.len())
    }

    pub fn encode_with_header(&self, out: &mut Vec<u8>) {
        LinkHeader::new(self.size() as u32).encode(out);
        self.encode(out);
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = BodyBuilder::new(out);
        b.u32(self.error.0);
        b.bytes(&self.pub_key);
        b.u32(self.common_caps.len() as u32);
        b.u32(self.channel_caps.len() as u32);
        let no_caps = self.common_caps.is_empty() && self.channel_caps.is_empty();
        b.u32(if no_caps { 0 } else { LINK_REPLY_SIZE as u32 });
        for &c in self.common_caps.iter().chain(&self.channel_caps) {
            b.u32(c);
        }
        b.finish();
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let (error, pub_key, nc, nch, off) = decode_body(b, |r| {
            let error = LinkErr(r.u32("link reply error")?);
            let mut pk = [0u8; TICKET_PUBKEY_BYTES];
            pk.copy_from_slice(r.take(TICKET_PUBKEY_BYTES, "link reply pub_key")?);
            Ok((
                error,
                pk,
                r.u32("link reply num_common_caps")?,
                r.u32("link reply num_channel_caps")?,
                r.u32("link reply caps_offset")?,
            ))
        })?;
        let (common_caps, channel_caps) =
            read_caps(b, LINK_REPLY_SIZE, nc, nch, off, "link reply caps")?;
        Ok(LinkReply {
            error,
            pub_key,
            common_caps,
            channel_caps,
        })
    }
}

/// `SpiceLinkAuthMechanism`: the client's choice, sent before the ticket when
/// both sides announced `PROTOCOL_AUTH_SELECTION`. The value is the common cap
/// bit of the mechanism (`AUTH_SPICE` or `AUTH_SASL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAuthMechanism {
    pub mechanism: u32,
}

impl LinkAuthMechanism {
    pub const SIZE: usize = 4;

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mechanism.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        decode_body(b, |r| {
            Ok(LinkAuthMechanism {
                mechanism: r.u32("link auth mechanism")?,
            })
        })
    }
}

/// Everything a server needs to answer link requests; share one per listener.
pub struct LinkServerConfig {
    /// The RSA-1024 ticket key (spice-server makes one per connection; one per
    /// listener is as safe since the ticket is OAEP-randomised).
    pub key: RsaPrivateKey,
    /// `None` disables ticketing: any ticket is accepted. `Some("")` refuses
    /// every client, as spice-server does when ticketing is on without a password.
    pub password: Option<String>,
    /// Common cap words announced in every reply.
    pub common_caps: Vec<u32>,
    /// Channel cap words announced per channel type.
    pub channel_caps: BTreeMap<u8, Vec<u32>>,
    /// Channel types the server serves; `None` accepts every type.
    pub available_channels: Option<Vec<u8>>,
}

impl LinkServerConfig {
    /// A config announcing auth selection, SPICE auth and the mini header, like spice-server.
    pub fn new(key: RsaPrivateKey, password: Option<String>) -> Self {
        LinkServerConfig {
            key,
            password,
            common_caps: caps_from_bits(&[
                ccap::PROTOCOL_AUTH_SELECTION,
                ccap::AUTH_SPICE,
                ccap::MINI_HEADER,
            ]),
            channel_caps: BTreeMap::new(),
            available_channels: None,
        }
    }
}

/// What came out of a finished link, for either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub connection_id: u32,
    pub channel_type: u8,
    pub channel_id: u8,
    /// Caps the peer announced.
    pub peer_common_caps: Vec<u32>,
    pub peer_channel_caps: Vec<u32>,
    /// Both sides announced `MINI_HEADER`: data messages use the 6-byte header.
    pub mini_header: bool,
    /// Both sides announced `PROTOCOL_AUTH_SELECTION`.
    pub auth_selection: bool,
}

/// Where a link attempt stands after some input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// More input is needed.
    InProgress,
    /// The link succeeded; data messages follow.
    Linked(LinkInfo),
    /// The link failed with this code (already queued for the peer when we are the server).
    Failed(LinkErr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    Header,
    Mess(u32),
    AuthMechanism,
    Ticket,
    Done,
}

/// Decides, once the ticket is accepted, whether a link message's connection id and
/// channel are acceptable (`LinkErr::OK`) or which error ends the link (e.g.
/// `BAD_CONNECTION_ID` for a session the server does not know).
pub type ConnectionCheck = Box<dyn Fn(&LinkMess) -> LinkErr + Send + Sync>;

/// Server side of the link stage.
pub struct LinkServer {
    config: Arc<LinkServerConfig>,
    state: ServerState,
    buf: Vec<u8>,
    mess: Option<LinkMess>,
    auth_selection: bool,
    status: LinkStatus,
    check: Option<ConnectionCheck>,
}

impl LinkServer {
    pub fn new(config: Arc<LinkServerConfig>) -> Self {
        LinkServer {
            config,
            state: ServerState::Header,
            buf: Vec::new(),
            mess: None,
            auth_selection: false,
            status: LinkStatus::InProgress,
            check: None,
        }
    }

    /// Adds a [`ConnectionCheck`], run after the ticket and channel checks; its error
    /// becomes the link result.
    pub fn with_connection_check(mut self, check: ConnectionCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// The client's link message, once received.
    pub fn link_mess(&self) -> Option<&LinkMess> {
        self.mess.as_ref()
    }

    pub fn status(&self) -> &LinkStatus {
        &self.status
    }

    /// Bytes received after the link finished (normally none: clients wait
    /// for the result). Call it once the status is final; later `feed` calls
    /// only add to this buffer.
    pub fn take_remaining(&mut self) -> Vec<u8> {
        if self.state == ServerState::Done {
            std::mem::take(&mut self.buf)
        } else {
            Vec::new()
        }
    }

    fn fail_reply(&mut self, err: LinkErr, out: &mut Vec<u8>) {
        tracing::debug!(%err, "link refused with an error reply");
        LinkReply::error(err).encode_with_header(out);
        self.finish(LinkStatus::Failed(err));
    }

    fn fail_result(&mut self, err: LinkErr, out: &mut Vec<u8>) {
        tracing::debug!(%err, "link refused with a result word");
        out.extend_from_slice(&err.0.to_le_bytes());
        self.finish(LinkStatus::Failed(err));
    }

    fn finish(&mut self, status: LinkStatus) {
        self.state = ServerState::Done;
        self.status = status;
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.buf.len() < n {
            return None;
        }
        let rest = self.buf.split_off(n);
        Some(std::mem::replace(&mut self.buf, rest))
    }

    /// Consumes client bytes; anything to send back is appended to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> LinkStatus {
        // While linking, the largest thing awaited is a capped link message,
        // so the buffer stays bounded by that plus one read. After the link,
        // input is only kept for take_remaining().
        self.buf.extend_from_slice(input);
        if self.state == ServerState::Done {
            return self.status.clone();
        }
        loop {
            match self.state {
                ServerState::Header => {
                    let Some(h) = self.take(LINK_HEADER_SIZE) else {
                        break;
                    };
                    let Ok(h) = LinkHeader::decode(&h) else { break };
                    if h.magic != MAGIC {
                        self.fail_reply(LinkErr::INVALID_MAGIC, out);
                    } else if h.major_version != VERSION_MAJOR {
                        self.fail_reply(LinkErr::VERSION_MISMATCH, out);
                    } else if (h.size as usize) < LINK_MESS_SIZE || h.size > MAX_LINK_MESS_SIZE {
                        self.fail_reply(LinkErr::INVALID_DATA, out);
                    } else {
                        self.state = ServerState::Mess(h.size);
                    }
                }
                ServerState::Mess(size) => {
                    let Some(b) = self.take(size as usize) else {
                        break;
                    };
                    match LinkMess::decode(&b) {
                        Err(e) => {
                            tracing::debug!(error = %e, "bad link message");
                            self.fail_reply(LinkErr::INVALID_DATA, out);
                        }
                        Ok(m) => self.reply(m, out),
                    }
                }
                ServerState::AuthMechanism => {
                    let Some(b) = self.take(LinkAuthMechanism::SIZE) else {
                        break;
                    };
                    let Ok(mech) = LinkAuthMechanism::decode(&b) else {
                        break;
                    };
                    if mech.mechanism == ccap::AUTH_SPICE {
                        self.state = ServerState::Ticket;
                    } else {
                        // SASL is not offered; spice-server answers any other
                        // mechanism with an INVALID_DATA error reply.
                        self.fail_reply(LinkErr::INVALID_DATA, out);
                    }
                }
                ServerState::Ticket => {
                    let Some(t) = self.take(ENCRYPTED_TICKET_BYTES) else {
                        break;
                    };
                    self.check_ticket(&t, out);
                }
                ServerState::Done => break,
            }
        }
        self.status.clone()
    }

    fn reply(&mut self, m: LinkMess, out: &mut Vec<u8>) {
        let pub_key = match ticket::public_key_der(&self.config.key) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "cannot export the ticket key");
                self.fail_reply(LinkErr::ERROR, out);
                return;
            }
        };
        let reply = LinkReply {
            error: LinkErr::OK,
            pub_key,
            common_caps: self.config.common_caps.clone(),
            channel_caps: self
                .config
                .channel_caps
                .get(&m.channel_type)
                .cloned()
                .unwrap_or_default(),
        };
        reply.encode_with_header(out);
        self.auth_selection = has_cap(&m.common_caps, ccap::PROTOCOL_AUTH_SELECTION)
            && has_cap(&self.config.common_caps, ccap::PROTOCOL_AUTH_SELECTION);
        self.state = if self.auth_selection {
            ServerState::AuthMechanism
        } else {
            ServerState::Ticket
        };
        self.mess = Some(m);
    }

    fn check_ticket(&mut self, t: &[u8], out: &mut Vec<u8>) {
        if let Some(expected) = &self.config.password {
            let ok = match ticket::decrypt(&self.config.key, t) {
                Ok(pw) => !expected.is_empty() && ct_eq(pw.as_bytes(), expected.as_bytes()),
                Err(e) => {
                    tracing::debug!(error = %e, "ticket rejected");
                    false
                }
            };
            if !ok {
                self.fail_result(LinkErr::PERMISSION_DENIED, out);
                return;
            }
        }
        let Some(m) = self.mess.clone() else {
            self.fail_result(LinkErr::ERROR, out);
            return;
        };
        if let Some(avail) = &self.config.available_channels {
            if !avail.contains(&m.channel_type) {
                self.fail_result(LinkErr::CHANNEL_NOT_AVAILABLE, out);
                return;
            }
        }
        if let Some(check) = &self.check {
            let e = check(&m);
            if e != LinkErr::OK {
                self.fail_result(e, out);
                return;
            }
        }
        out.extend_from_slice(&LinkErr::OK.0.to_le_bytes());
        let info = LinkInfo {
            connection_id: m.connection_id,
            channel_type: m.channel_type,
            channel_id: m.channel_id,
            mini_header: has_cap(&m.common_caps, ccap::MINI_HEADER)
                && has_cap(&self.config.common_caps, ccap::MINI_HEADER),
            auth_selection: self.auth_selection,
            peer_common_caps: m.common_caps,
            peer_channel_caps: m.channel_caps,
        };
        self.finish(LinkStatus::Linked(info));
    }
}

/// Compares without an early exit so timing does not reveal the matching prefix.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a client wants from a link.
#[derive(Debug, Clone)]
pub struct LinkClientConfig {
    pub connection_id: u32,
    pub channel_type: u8,
    pub channel_id: u8,
    pub common_caps: Vec<u32>,
    pub channel_caps: Vec<u32>,
    pub password: String,
}

impl LinkClientConfig {
    /// Announces auth selection, SPICE auth and the mini header, like spice-gtk.
    pub fn new(connection_id: u32, channel_type: u8, channel_id: u8, password: &str) -> Self {
        LinkClientConfig {
            connection_id,
            channel_type,
            channel_id,
            common_caps: caps_from_bits(&[
                ccap::PROTOCOL_AUTH_SELECTION,
                ccap::AUTH_SPICE,
                ccap::MINI_HEADER,
            ]),
            channel_caps: Vec::new(),
            password: password.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    ReplyHeader,
    Reply(u32),
    Result,
    Done,
}

/// Client side of the link stage.
pub struct LinkClient {
    config: LinkClientConfig,
    state: ClientState,
    buf: Vec<u8>,
    reply: Option<LinkReply>,
    status: LinkStatus,
}

impl LinkClient {
    pub fn new(config: LinkClientConfig) -> Result<Self> {
        if config.password.len() > MAX_PASSWORD_LENGTH {
            return Err(ProtoError::PasswordTooLong(config.password.len()));
        }
        Ok(LinkClient {
            config,
            state: ClientState::ReplyHeader,
            buf: Vec::new(),
            reply: None,
            status: LinkStatus::InProgress,
        })
    }

    /// The link header and message to send first.
    pub fn start(&self, out: &mut Vec<u8>) {
        LinkMess {
            connection_id: self.config.connection_id,
            channel_type: self.config.channel_type,
            channel_id: self.config.channel_id,
            common_caps: self.config.common_caps.clone(),
            channel_caps: self.config.channel_caps.clone(),
        }
        .encode_with_header(out);
    }

    /// The server's reply, once received.
    pub fn reply(&self) -> Option<&LinkReply> {
        self.reply.as_ref()
    }

    /// Bytes received after the result (the first data messages, if the server was quick).
    pub fn take_remaining(&mut self) -> Vec<u8> {
        if self.state == ClientState::Done {
            std::mem::take(&mut self.buf)
        } else {
            Vec::new()
        }
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.buf.len() < n {
            return None;
        }
        let rest = self.buf.split_off(n);
        Some(std::mem::replace(&mut self.buf, rest))
    }

    /// Consumes server bytes; the auth mechanism and ticket are appended to `out`.
    /// Malformed server data is an error; a refusal is `Ok(LinkStatus::Failed)`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<LinkStatus> {
        self.buf.extend_from_slice(input);
        loop {
            match self.state {
                ClientState::ReplyHeader => {
                    let Some(h) = self.take(LINK_HEADER_SIZE) else {
                        break;
                    };
                    let h = LinkHeader::decode(&h)?;
                    if h.magic != MAGIC {
                        return Err(ProtoError::BadMagic(h.magic));
                    }
                    if h.major_version != VERSION_MAJOR {
                        return Err(ProtoError::Version {
                            major: h.major_version,
                            minor: h.minor_version,
                        });
                    }
                    // The error word alone is enough to report a refusal, so
                    // only replies too short to hold it are malformed here.
                    if h.size < 4 {
                        return Err(ProtoError::Short {
                            what: "link reply",
                            offset: 0,
                            need: 4,
                            have: h.size as usize,
                        });
                    }
                    if h.size > MAX_LINK_MESS_SIZE {
                        return Err(ProtoError::TooLarge {
                            size: h.size.into(),
                            max: MAX_LINK_MESS_SIZE.into(),
                        });
                    }
                    self.state = ClientState::Reply(h.size);
                }
                ClientState::Reply(size) => {
                    let Some(b) = self.take(size as usize) else {
                        break;
                    };
                    let error = LinkErr(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    if error != LinkErr::OK {
                        self.state = ClientState::Done;
                        self.status = LinkStatus::Failed(error);
                        break;
                    }
                    let reply = LinkReply::decode(&b)?;
                    if has_cap(&reply.common_caps, ccap::PROTOCOL_AUTH_SELECTION)
                        && has_cap(&self.config.common_caps, ccap::PROTOCOL_AUTH_SELECTION)
                    {
                        if !has_cap(&reply.common_caps, ccap::AUTH_SPICE) {
                            // Only SASL on offer, which we do not speak; spice-gtk
                            // without SASL gives up the same way.
                            return Err(ProtoError::NoCommonAuth);
                        }
                        LinkAuthMechanism {
                            mechanism: ccap::AUTH_SPICE,
                        }
                        .encode(out);
                    }
                    let t = ticket::encrypt(&reply.pub_key, &self.config.password)?;
                    out.extend_from_slice(&t);
                    self.reply = Some(reply);
                    self.state = ClientState::Result;
                }
                ClientState::Result => {
                    let Some(b) = self.take(4) else { break };
                    let err = LinkErr(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    self.state = ClientState::Done;
                    self.status = if err == LinkErr::OK {
                        let r = self.reply.clone().unwrap_or_else(|| LinkReply::error(err));
                        LinkStatus::Linked(LinkInfo {
                            connection_id: self.config.connection_id,
                            channel_type: self.config.channel_type,
                            channel_id: self.config.channel_id,
                            mini_header: has_cap(&r.common_caps, ccap::MINI_HEADER)
                                && has_cap(&self.config.common_caps, ccap::MINI_HEADER),
                            auth_selection: has_cap(&r.common_caps, ccap::PROTOCOL_AUTH_SELECTION)
                                && has_cap(&self.config.common_caps, ccap::PROTOCOL_AUTH_SELECTION),
                            peer_common_caps: r.common_caps,
                            peer_channel_caps: r.channel_caps,
                        })
                    } else {
                        LinkStatus::Failed(err)
                    };
                }
                ClientState::Done => break,
            }
        }
        Ok(self.status.clone())
    }
}
