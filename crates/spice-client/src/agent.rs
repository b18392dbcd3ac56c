//! The client end of the guest agent (vdagent) link, carried in the main
//! channel's AGENT_DATA messages: capability exchange, monitor configuration
//! requests and text clipboard sharing, with the server's token flow control.

use std::collections::VecDeque;

use spice_proto::agent::{
    cap, clipboard_type, split_for_agent_data, AgentCaps, AgentMessage, AgentReassembler, MonConfig,
};
use spice_proto::link::caps_from_bits;

use crate::error::ClientError;

/// Largest agent message accepted from the guest (a big clipboard).
const MAX_AGENT_MESSAGE: u32 = 16 << 20;
/// Chunks queued while waiting for tokens, at most (bounded memory).
const MAX_QUEUED_CHUNKS: usize = 16 * 1024;

/// The agent link of a session.
#[derive(Default)]
pub struct AgentState {
    pub connected: bool,
    /// AGENT_DATA messages we may still send.
    tokens: u32,
    queue: VecDeque<Vec<u8>>,
    reasm: Option<AgentReassembler>,
    their_caps: Vec<u32>,
    caps: AgentCaps,
    /// Text we offered to the guest (answered on CLIPBOARD_REQUEST).
    pub host_clipboard: Option<String>,
    /// The latest text the guest's clipboard held.
    pub guest_clipboard: Option<String>,
}

/// The agent capabilities we announce.
pub fn our_caps() -> Vec<u32> {
    caps_from_bits(&[cap::MONITORS_CONFIG, cap::REPLY, cap::CLIPBOARD_BY_DEMAND])
}

impl AgentState {
    /// The agent came up: queues our capability announcement.
    pub fn start(&mut self, tokens: u32) {
        self.connected = true;
        self.tokens = tokens;
        self.queue.clear();
        self.reasm = Some(AgentReassembler::new(MAX_AGENT_MESSAGE));
        self.their_caps.clear();
        self.caps = AgentCaps::default();
        let _ = self.push(&AgentMessage::AnnounceCapabilities {
            request: true,
            caps: our_caps(),
        });
    }

    pub fn stop(&mut self) {
        self.connected = false;
        self.queue.clear();
        self.reasm = None;
    }

    pub fn add_tokens(&mut self, n: u32) {
        self.tokens = self.tokens.saturating_add(n);
    }

    /// Whether the guest agent can take a monitor configuration.
    pub fn can_monitors_config(&self) -> bool {
        spice_proto::link::has_cap(&self.their_caps, cap::MONITORS_CONFIG)
    }

    /// Queues one message (split into AGENT_DATA chunks).
    pub fn push(&mut self, m: &AgentMessage) -> Result<(), ClientError> {
        if !self.connected {
            return Err(ClientError::Server("no guest agent is connected".into()));
        }
        let mut stream = Vec::new();
        m.encode_with_header(&mut stream);
        let chunks: Vec<Vec<u8>> = split_for_agent_data(&stream).map(<[u8]>::to_vec).collect();
        if self.queue.len() + chunks.len() > MAX_QUEUED_CHUNKS {
            return Err(ClientError::Server(
                "agent send queue is full (the server grants no tokens)".into(),
            ));
        }
        self.queue.extend(chunks);
        Ok(())
    }

    /// Chunks that may be sent now (each uses one token).
    pub fn take_sendable(&mut self) -> Vec<Vec<u8>> {
        let n = (self.tokens as usize).min(self.queue.len());
        self.tokens -= n as u32;
        self.queue.drain(..n).collect()
    }

    pub fn monitors_config(&mut self, width: u32, height: u32) -> Result<(), ClientError> {
        self.push(&AgentMessage::MonitorsConfig {
            flags: 0,
            monitors: vec![MonConfig {
                width,
                height,
                depth: 32,
                x: 0,
                y: 0,
            }],
            physical_sizes: None,
        })
    }

    /// Offers `text` as the clipboard to the guest.
    pub fn grab_clipboard(&mut self, text: String) -> Result<(), ClientError> {
        self.host_clipboard = Some(text);
        let selection = self.caps.clipboard_selection.then_some(0);
        let serial = self.caps.grab_serial.then_some(0);
        self.push(&AgentMessage::ClipboardGrab {
            selection,
            serial,
            types: vec![clipboard_type::UTF8_TEXT],
        })
    }

    /// Feeds the payload of one AGENT_DATA message from the server.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let Some(r) = self.reasm.as_mut() else {
            // Data without AGENT_CONNECTED: spice-server only sends it to a started agent link.
            return Err(ClientError::Server(
                "agent data before the agent link started".into(),
            ));
        };
        r.push(data);
        loop {
            let next = self
                .reasm
                .as_mut()
                .map(AgentReassembler::next_message)
                .transpose()
                .map_err(|source| ClientError::Proto {
                    channel: "main (agent)",
                    source,
                })?
                .flatten();
            let Some((h, body)) = next else {
                return Ok(());
            };
            let m = AgentMessage::decode(h.msg_type, &body, self.caps).map_err(|source| {
                ClientError::Proto {
                    channel: "main (agent)",
                    source,
                }
            })?;
            self.handle(m)?;
        }
    }

    fn handle(&mut self, m: AgentMessage) -> Result<(), ClientError> {
        match m {
            AgentMessage::AnnounceCapabilities { request, caps } => {
                self.caps = AgentCaps::negotiate(&our_caps(), &caps);
                self.their_caps = caps;
                if request {
                    self.push(&AgentMessage::AnnounceCapabilities {
                        request: false,
                        caps: our_caps(),
                    })?;
                }
            }
            AgentMessage::ClipboardGrab {
                selection, types, ..
            } => {
                if types.contains(&clipboard_type::UTF8_TEXT) {
                    self.push(&AgentMessage::ClipboardRequest {
                        selection,
                        clip_type: clipboard_type::UTF8_TEXT,
                    })?;
                }
            }
            AgentMessage::Clipboard {
                clip_type, data, ..
            } => {
                if clip_type == clipboard_type::UTF8_TEXT {
                    self.guest_clipboard = Some(String::from_utf8_lossy(&data).into_owned());
                }
            }
            AgentMessage::ClipboardRequest {
                selection,
                clip_type,
            } => {
                let data = match (&self.host_clipboard, clip_type) {
                    (Some(t), clipboard_type::UTF8_TEXT) => t.clone().into_bytes(),
                    _ => Vec::new(),
                };
                self.push(&AgentMessage::Clipboard {
                    selection,
                    clip_type: if data.is_empty() {
                        clipboard_type::NONE
                    } else {
                        clip_type
                    },
                    data,
                })?;
            }
            AgentMessage::ClipboardRelease { .. } => self.guest_clipboard = None,
            AgentMessage::Reply { msg_type, error } => {
                if error != spice_proto::agent::SUCCESS {
                    tracing::warn!(msg_type, error, "guest agent refused a request");
                }
            }
            AgentMessage::MonitorsConfig { .. } | AgentMessage::Other { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(m: &AgentMessage) -> Vec<u8> {
        let mut v = Vec::new();
        m.encode_with_header(&mut v);
        v
    }

    #[test]
    fn tokens_limit_what_is_sent() {
        let mut a = AgentState::default();
        a.start(1);
        a.monitors_config(800, 600).unwrap();
        assert_eq!(a.take_sendable().len(), 1);
        assert!(a.take_sendable().is_empty());
        a.add_tokens(5);
        let sent = a.take_sendable();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0],
            stream(&AgentMessage::MonitorsConfig {
                flags: 0,
                monitors: vec![MonConfig {
                    width: 800,
                    height: 600,
                    depth: 32,
                    x: 0,
                    y: 0
                }],
                physical_sizes: None
            })
        );
    }

    #[test]
    fn guest_clipboard_is_requested_and_kept() {
        let mut a = AgentState::default();
        a.start(100);
        a.take_sendable();
        let grab = stream(&AgentMessage::ClipboardGrab {
            selection: None,
            serial: None,
            types: vec![clipboard_type::UTF8_TEXT],
        });
        // Split across two AGENT_DATA messages.
        a.feed(&grab[..7]).unwrap();
        a.feed(&grab[7..]).unwrap();
        let req = a.take_sendable();
        assert_eq!(
            req,
            vec![stream(&AgentMessage::ClipboardRequest {
                selection: None,
                clip_type: clipboard_type::UTF8_TEXT
            })]
        );
        a.feed(&stream(&AgentMessage::Clipboard {
            selection: None,
            clip_type: clipboard_type::UTF8_TEXT,
            data: b"from guest".to_vec(),
        }))
        .unwrap();
        assert_eq!(a.guest_clipboard.as_deref(), Some("from guest"));
        assert!(a.feed(&[0xff; 40]).is_err());
    }
}
