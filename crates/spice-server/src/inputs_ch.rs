//! The inputs channel: keyboard and pointer events into the source.
//!
//! KEY_DOWN/KEY_UP carry spice-gtk's scancode form (a set-1 make code; extended keys as
//! `0xE0 | code << 8`), which the source accepts as is. KEY_SCANCODE carries raw set-1
//! bytes. Every `INPUT_MOTION_ACK_BUNCH` pointer motions are acknowledged, or spice-gtk
//! stops sending motion.

use std::sync::Arc;

use coop_display::ScancodeParser;
use spice_proto::consts::INPUT_MOTION_ACK_BUNCH;
use spice_proto::link::LinkInfo;
use spice_proto::{InputsClientMsg, InputsServerMsg, Message};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::Channel;
use crate::main_ch::MOUSE_SERVER;
use crate::{ServerError, Session, Shared};

/// Largest inputs message from a client (KEY_SCANCODE strings are short).
const MAX_INPUTS_MSG: u32 = 4096;

pub(crate) async fn run<S>(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    s: S,
    info: &LinkInfo,
    early: Vec<u8>,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let counters = Arc::new(vec![shared.total.clone()]);
    let mut ch = Channel::start(s, info, early, MAX_INPUTS_MSG, counters, "inputs");
    let r = serve_inputs(shared, session, &mut ch).await;
    ch.close().await;
    r
}

async fn serve_inputs(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    ch: &mut Channel,
) -> Result<(), ServerError> {
    ch.send_msg(&InputsServerMsg::Init {
        keyboard_modifiers: 0,
    })
    .await?;
    let src = &shared.source;
    let mut parser = ScancodeParser::new();
    let mut motions = 0u32;
    while let Some(m) = ch.rx.recv().await {
        let msg = InputsClientMsg::decode(m.msg_type, &m.body).map_err(|e| {
            ServerError::Protocol(format!("inputs message type {}: {e}", m.msg_type))
        })?;
        let mut motion = false;
        match msg {
            InputsClientMsg::KeyDown(code) => src.key(code, true),
            InputsClientMsg::KeyUp(code) => src.key(code, false),
            InputsClientMsg::KeyScancode(bytes) => {
                for (code, down) in parser.feed(&bytes) {
                    src.key(code, down);
                }
            }
            InputsClientMsg::KeyModifiers(m) => {
                tracing::debug!(modifiers = m, "client lock-key state (not applied)");
            }
            InputsClientMsg::MousePosition {
                x,
                y,
                buttons_state,
                display_id,
            } => {
                motion = true;
                if display_id == 0 {
                    src.pointer_abs(x, y, u32::from(buttons_state));
                }
            }
            InputsClientMsg::MouseMotion {
                dx,
                dy,
                buttons_state,
            } => {
                motion = true;
                let mode = session.mouse_mode.lock().map(|m| *m).unwrap_or(0);
                if mode == MOUSE_SERVER {
                    src.pointer_rel(dx, dy, u32::from(buttons_state));
                }
            }
            InputsClientMsg::MousePress { button, .. } => src.button(button, true),
            InputsClientMsg::MouseRelease { button, .. } => src.button(button, false),
            InputsClientMsg::Base(_) => {}
        }
        if motion {
            motions += 1;
            if motions == INPUT_MOTION_ACK_BUNCH {
                motions = 0;
                ch.send_msg(&InputsServerMsg::MouseMotionAck).await?;
            }
        }
    }
    Ok(())
}
