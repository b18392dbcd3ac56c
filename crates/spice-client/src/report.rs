//! STREAM_REPORT: what the client tells the server about a video stream so that the
//! server can adapt its rate (as spice-gtk does).
//!
//! After STREAM_ACTIVATE_REPORT the client counts the stream's frames and the late
//! ones (stamped before the client's multimedia clock: they would be dropped) and
//! reports every `max_window_size` frames, after `timeout_ms`, or after three late
//! frames in a row.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use spice_proto::display::StreamReport;
use spice_proto::{DisplayClientMsg, DisplayServerMsg};

/// Late frames in a row that trigger a report before the window is full
/// (spice-gtk's limit).
const DROP_SEQ_REPORT: u32 = 3;
/// Streams a server may ask reports for at once (spice's stream limit).
const MAX_REPORTED: usize = 64;

/// The server's multimedia clock as the client estimates it: the value MAIN INIT
/// carried, advanced by local time since.
#[derive(Clone, Copy, Debug)]
pub struct MmClock {
    server_ms: u32,
    at: Instant,
}

impl MmClock {
    pub fn new(server_ms: u32, at: Instant) -> MmClock {
        MmClock { server_ms, at }
    }

    pub fn at(&self, now: Instant) -> u32 {
        let ms = now.saturating_duration_since(self.at).as_millis();
        self.server_ms.wrapping_add(ms as u32)
    }
}

struct Active {
    unique_id: u32,
    window: u32,
    timeout: Duration,
    frames: u32,
    drops: u32,
    drop_seq: u32,
    start_mm: u32,
    started: Instant,
}

/// Per-stream report state of one display channel.
#[derive(Default)]
pub struct Reporter {
    streams: HashMap<u32, Active>,
    /// Reports produced so far.
    pub sent: u64,
}

impl Reporter {
    /// Follows one server message; returns the report to send, if one is due.
    pub fn on_message(
        &mut self,
        msg: &DisplayServerMsg,
        clock: &MmClock,
        now: Instant,
    ) -> Option<DisplayClientMsg> {
        use DisplayServerMsg as M;
        match msg {
            M::StreamActivateReport {
                stream_id,
                unique_id,
                max_window_size,
                timeout_ms,
            } => {
                if self.streams.len() < MAX_REPORTED || self.streams.contains_key(stream_id) {
                    self.streams.insert(
                        *stream_id,
                        Active {
                            unique_id: *unique_id,
                            window: (*max_window_size).max(1),
                            timeout: Duration::from_millis(u64::from(*timeout_ms)),
                            frames: 0,
                            drops: 0,
                            drop_seq: 0,
                            start_mm: 0,
                            started: now,
                        },
                    );
                }
                None
            }
            M::StreamData {
                id,
                multi_media_time,
                ..
            }
            | M::StreamDataSized {
                id,
                multi_media_time,
                ..
            } => self.frame(*id, *multi_media_time, clock.at(now), now),
            M::StreamDestroy { id } => {
                self.streams.remove(id);
                None
            }
            M::StreamDestroyAll | M::Reset => {
                self.streams.clear();
                None
            }
            _ => None,
        }
    }

    fn frame(
        &mut self,
        id: u32,
        stamp: u32,
        mm_now: u32,
        now: Instant,
    ) -> Option<DisplayClientMsg> {
        let a = self.streams.get_mut(&id)?;
        if a.frames == 0 {
            a.start_mm = stamp;
            a.started = now;
        }
        a.frames += 1;
        let delay = stamp.wrapping_sub(mm_now) as i32;
        if delay < 0 {
            a.drops += 1;
            a.drop_seq += 1;
        } else {
            a.drop_seq = 0;
        }
        let due = a.frames >= a.window
            || now.saturating_duration_since(a.started) >= a.timeout
            || a.drop_seq >= DROP_SEQ_REPORT;
        if !due {
            return None;
        }
        let r = StreamReport {
            stream_id: id,
            unique_id: a.unique_id,
            start_frame_mm_time: a.start_mm,
            end_frame_mm_time: stamp,
            num_frames: a.frames,
            num_drops: a.drops,
            last_frame_delay: delay,
            audio_delay: u32::MAX,
        };
        a.frames = 0;
        a.drops = 0;
        a.drop_seq = 0;
        self.sent += 1;
        Some(DisplayClientMsg::StreamReport(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(id: u32, mm: u32) -> DisplayServerMsg {
        DisplayServerMsg::StreamData {
            id,
            multi_media_time: mm,
            data: Vec::new(),
        }
    }

    #[test]
    fn reports_every_window_and_early_on_late_frames() {
        let t0 = Instant::now();
        let clock = MmClock::new(1000, t0);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Reporter::default();
        // Frames before activation are not reported.
        assert!(r.on_message(&data(3, 1100), &clock, ms(0)).is_none());
        r.on_message(
            &DisplayServerMsg::StreamActivateReport {
                stream_id: 3,
                unique_id: 9,
                max_window_size: 5,
                timeout_ms: 1000,
            },
            &clock,
            ms(0),
        );
        // Five timely frames (stamped 100 ms ahead): one report.
        let mut got = None;
        for i in 0..5u32 {
            got = r.on_message(&data(3, 1100 + i * 40), &clock, ms(u64::from(i) * 40));
            assert_eq!(got.is_some(), i == 4, "frame {i}");
        }
        let Some(DisplayClientMsg::StreamReport(rep)) = got else {
            panic!("no report")
        };
        assert_eq!(
            (rep.stream_id, rep.unique_id, rep.num_frames, rep.num_drops),
            (3, 9, 5, 0)
        );
        assert_eq!(
            (rep.start_frame_mm_time, rep.end_frame_mm_time),
            (1100, 1260)
        );
        assert_eq!(rep.last_frame_delay, 100);
        // Three late frames in a row report at once.
        let mut n = 0;
        for i in 0..3u64 {
            if let Some(DisplayClientMsg::StreamReport(rep)) =
                r.on_message(&data(3, 1500), &clock, ms(800 + i))
            {
                assert_eq!((rep.num_frames, rep.num_drops), (3, 3));
                assert!(rep.last_frame_delay < 0);
                n += 1;
            }
        }
        assert_eq!(n, 1);
        // A destroyed stream is forgotten.
        r.on_message(&DisplayServerMsg::StreamDestroy { id: 3 }, &clock, ms(900));
        assert!((0..10).all(|i| r.on_message(&data(3, 2000), &clock, ms(900 + i)).is_none()));
        assert_eq!(r.sent, 2);
    }
}
