//! SPICE protocol core for coop, with no I/O: the link stage (with RSA-OAEP
//! tickets), data-message framing, typed messages for the main, display,
//! inputs and cursor channels and the vdagent stream, and small state
//! machines for both link ends. Used by coop's SPICE server and client, and
//! wire-compatible with spice-gtk and spice-server (protocol 2.2 as described
//! by spice-common's `spice.proto`).
//!
//! Every decoder takes the message type and body, returns [`ProtoError`] on
//! malformed input, never panics, and never allocates more than the body
//! could hold.
//!
//! A connection is: the link stage ([`LinkServer`] / [`LinkClient`]), then a
//! stream of messages split by a [`Framer`] (mini header when
//! [`link::LinkInfo::mini_header`]) and decoded per channel and direction:
//!
//! ```
//! use spice_proto::framing::write_message;
//! use spice_proto::{Framer, HeaderKind, InputsClientMsg, Message};
//!
//! let msg = InputsClientMsg::KeyDown(0x1e);
//! let mut wire = Vec::new();
//! write_message(HeaderKind::Mini, 0, msg.msg_type(), &msg.to_body(), &mut wire);
//!
//! let mut framer = Framer::new(HeaderKind::Mini, 1 << 20);
//! framer.push(&wire);
//! let raw = framer.next_message().unwrap().unwrap();
//! assert_eq!(InputsClientMsg::decode(raw.msg_type, &raw.body).unwrap(), msg);
//! ```

pub mod agent;
pub mod common;
pub mod consts;
pub mod cursor;
pub mod display;
pub mod error;
pub mod framing;
pub mod inputs;
pub mod link;
pub mod main_channel;
pub mod ticket;
pub mod types;
pub mod wire;

pub use common::{BaseClientMsg, BaseServerMsg, Message};
pub use consts::LinkErr;
pub use cursor::{CursorClientMsg, CursorServerMsg};
pub use display::{DisplayClientMsg, DisplayServerMsg};
pub use error::{ProtoError, Result};
pub use framing::{Framer, HeaderKind, RawMessage};
pub use inputs::{InputsClientMsg, InputsServerMsg};
pub use link::{LinkClient, LinkClientConfig, LinkServer, LinkServerConfig, LinkStatus};
pub use main_channel::{MainClientMsg, MainServerMsg};
