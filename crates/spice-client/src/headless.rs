//! Headless use: connect, wait for a complete picture, return it with timings
//! and traffic figures. Owns its tokio runtime, so callers stay synchronous.

use std::time::{Duration, Instant};

use crate::canvas::Pixmap;
use crate::error::ClientError;
use crate::session::{ChannelStats, ClientConfig, Session};

/// When the picture counts as complete.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Quiet period after MARK with no display update.
    pub quiet: Duration,
    /// Take the picture anyway this long after MARK if the screen keeps changing.
    pub settle: Duration,
    /// Give up after this long.
    pub timeout: Duration,
    /// When lossy images (JPEG, video frames) were drawn, wait for this quiet period
    /// instead, if longer: coop's server re-sends a lossy area losslessly about 0.4 s
    /// after it stops changing (slow links), and a picture taken earlier would keep
    /// the JPEG's artefacts. `None` treats lossy updates like any other.
    pub lossy_quiet: Option<Duration>,
}

/// The default [`CaptureOptions::lossy_quiet`]: longer than coop's refine settle time
/// (400 ms) plus its refine pass interval (100 ms), with margin for a slow link.
pub const LOSSY_QUIET: Duration = Duration::from_millis(700);

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            quiet: Duration::from_millis(300),
            settle: Duration::from_millis(1500),
            timeout: Duration::from_secs(30),
            lossy_quiet: Some(LOSSY_QUIET),
        }
    }
}

/// A captured screen and how it was obtained.
#[derive(Debug, Clone)]
pub struct Capture {
    pub screen: Pixmap,
    /// From connect to the first draw command (the first full picture from
    /// spice-server and QEMU, which start with a full-screen image).
    pub first_frame: Duration,
    /// From connect to the moment the picture counted as complete.
    pub complete: Duration,
    pub stats: Vec<ChannelStats>,
    /// Decoded images by `image_type`.
    pub image_counts: Vec<(u8, u64)>,
    /// Display messages applied, by message type.
    pub display_messages: Vec<(u16, u64)>,
}

/// Whether anything lossy reached the screen: JPEG images or M-JPEG stream frames.
fn drew_lossy(s: &Session) -> bool {
    use spice_proto::consts::{image_type, msg};
    s.image_counts()
        .iter()
        .any(|(t, n)| *n > 0 && (*t == image_type::JPEG || *t == image_type::JPEG_ALPHA))
        || s.display_message_counts()
            .iter()
            .any(|(t, n)| *n > 0 && *t == msg::display::STREAM_DATA)
}

/// Connects, waits for a complete picture and returns it.
pub fn capture(cfg: ClientConfig, opts: &CaptureOptions) -> Result<Capture, ClientError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ClientError::Io {
            channel: "runtime",
            reason: e.to_string(),
        })?;
    rt.block_on(async {
        let start = Instant::now();
        let s = Session::connect(cfg).await?;
        let left = opts.timeout.saturating_sub(start.elapsed());
        s.wait_display_complete(opts.quiet, opts.settle, left)
            .await?;
        if let Some(lq) = opts.lossy_quiet.filter(|lq| *lq > opts.quiet) {
            if drew_lossy(&s) {
                // `settle` counts from MARK: leave room for the refine to arrive.
                let left = opts.timeout.saturating_sub(start.elapsed());
                s.wait_display_complete(lq, opts.settle + lq * 4, left)
                    .await?;
            }
        }
        let screen = s
            .screen()
            .ok_or_else(|| ClientError::Server("no primary surface".into()))?;
        Ok(Capture {
            screen,
            first_frame: s
                .first_draw()
                .unwrap_or_else(|| s.last_update())
                .saturating_duration_since(start),
            complete: start.elapsed(),
            stats: s.stats(),
            image_counts: s.image_counts(),
            display_messages: s.display_message_counts(),
        })
    })
}
