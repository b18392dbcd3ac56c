//! Which parts of one client's screen hold lossy pixels (JPEG images, video frames), so
//! that a still screen is refined to the exact source pixels.
//!
//! The region is a list of disjoint rectangles, each with the time it was last drawn
//! lossy or damaged. A part that stayed untouched for the settle time is due: the
//! display channel captures it again and sends it with a lossless codec. Lossless draws
//! cut their area out of the region, COPY_BITS carries the lossy parts of its source
//! along to the destination, so the region always describes what the client shows.

use std::time::{Duration, Instant};

use coop_display::{merge_rects, Rect};

/// Parts kept before the list is merged into fewer, larger rectangles (which may then
/// cover a little lossless area too: refining that again is harmless, only extra bytes).
const MAX_PARTS: usize = 128;
/// Parts after such a merge.
const MERGED_PARTS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Part {
    rect: Rect,
    /// Last lossy draw or damage of this area.
    since: Instant,
}

/// The lossy area of one client's primary surface.
#[derive(Debug, Default)]
pub(crate) struct LossyRegion {
    parts: Vec<Part>,
}

/// `a` minus `b`: up to four disjoint pieces (bands above and below `b`, then the
/// pieces left and right of it).
fn subtract(a: Rect, b: Rect) -> Vec<Rect> {
    let Some(i) = a.intersect(&b) else {
        return vec![a];
    };
    let mut out = Vec::with_capacity(4);
    if i.y > a.y {
        out.push(Rect::new(a.x, a.y, a.w, i.y - a.y));
    }
    if i.bottom() < a.bottom() {
        out.push(Rect::new(a.x, i.bottom(), a.w, a.bottom() - i.bottom()));
    }
    if i.x > a.x {
        out.push(Rect::new(a.x, i.y, i.x - a.x, i.h));
    }
    if i.right() < a.right() {
        out.push(Rect::new(i.right(), i.y, a.right() - i.right(), i.h));
    }
    out
}

impl LossyRegion {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Pixels the client holds lossy.
    pub fn pixels(&self) -> u64 {
        self.parts.iter().map(|p| p.rect.area()).sum()
    }

    /// The lossy rectangles (disjoint).
    #[cfg(test)]
    pub fn rects(&self) -> Vec<Rect> {
        self.parts.iter().map(|p| p.rect).collect()
    }

    /// Forgets everything (the whole screen is about to be redrawn).
    pub fn clear(&mut self) {
        self.parts.clear();
    }

    /// `r` was drawn lossy at `now`.
    pub fn mark_lossy(&mut self, r: Rect, now: Instant) {
        if r.is_empty() {
            return;
        }
        self.cut(r);
        self.parts.push(Part {
            rect: r,
            since: now,
        });
        self.bound();
    }

    /// `r` was drawn losslessly: the client's pixels there are exact.
    pub fn mark_lossless(&mut self, r: Rect) {
        self.cut(r);
    }

    /// New damage at `r`: lossy parts it touches wait a full settle time again (the
    /// area changes, and its redraw will set its state anyway).
    pub fn touch(&mut self, r: Rect, now: Instant) {
        for p in &mut self.parts {
            if p.rect.intersect(&r).is_some() {
                p.since = now;
            }
        }
    }

    /// A COPY_BITS of `src` to `dst` (same size): the destination now shows what the
    /// source showed, lossy where the source was.
    pub fn copy(&mut self, src: Rect, dst: Rect) {
        let moved: Vec<Part> = self
            .parts
            .iter()
            .filter_map(|p| {
                p.rect.intersect(&src).map(|i| Part {
                    rect: Rect::new(i.x - src.x + dst.x, i.y - src.y + dst.y, i.w, i.h),
                    since: p.since,
                })
            })
            .collect();
        self.cut(dst);
        self.parts.extend(moved);
        self.bound();
    }

    /// When the earliest part becomes due, parts intersecting `exclude` aside.
    pub fn next_due(&self, settle: Duration, exclude: Option<Rect>) -> Option<Instant> {
        self.parts
            .iter()
            .filter(|p| !excluded(p, exclude))
            .map(|p| p.since + settle)
            .min()
    }

    /// Removes and returns the parts untouched for `settle` at `now`, at most
    /// `max_pixels` of them (a part larger than what is left of the budget is split
    /// by rows; at least one row goes, so every call makes progress). Parts touching
    /// `exclude` (a live video stream) stay. The caller sends what it gets losslessly.
    pub fn take_due(
        &mut self,
        now: Instant,
        settle: Duration,
        max_pixels: u64,
        exclude: Option<Rect>,
    ) -> Vec<Rect> {
        let mut out = Vec::new();
        let mut left = max_pixels;
        let mut i = 0;
        while i < self.parts.len() && left > 0 {
            let p = self.parts[i];
            if excluded(&p, exclude) || p.since + settle > now {
                i += 1;
                continue;
            }
            if p.rect.area() <= left {
                left -= p.rect.area();
                out.push(p.rect);
                self.parts.swap_remove(i);
                continue;
            }
            let rows = (left / u64::from(p.rect.w)).max(u64::from(out.is_empty())) as u32;
            if rows == 0 {
                break;
            }
            let rows = rows.min(p.rect.h);
            out.push(Rect::new(p.rect.x, p.rect.y, p.rect.w, rows));
            self.parts[i].rect = Rect::new(p.rect.x, p.rect.y + rows, p.rect.w, p.rect.h - rows);
            break;
        }
        out
    }

    fn cut(&mut self, r: Rect) {
        if !self.parts.iter().any(|p| p.rect.intersect(&r).is_some()) {
            return;
        }
        let old = std::mem::take(&mut self.parts);
        for p in old {
            for piece in subtract(p.rect, r) {
                self.parts.push(Part {
                    rect: piece,
                    since: p.since,
                });
            }
        }
    }

    /// Keeps the list short: a fragmented region is merged into a few bounding boxes
    /// (then no longer disjoint pieces of lossless area may be included; they are
    /// refined again, which costs bytes but never correctness).
    fn bound(&mut self) {
        if self.parts.len() <= MAX_PARTS {
            return;
        }
        let rects: Vec<Rect> = self.parts.iter().map(|p| p.rect).collect();
        let since = self.parts.iter().map(|p| p.since).max();
        let bounds = rects.iter().skip(1).fold(rects[0], |a, r| a.union(r));
        let merged = merge_rects(&rects, bounds, MERGED_PARTS);
        self.parts.clear();
        // Made disjoint again so pixel counts and refines do not repeat areas.
        let since = since.unwrap_or_else(Instant::now);
        for r in merged {
            self.cut(r);
            self.parts.push(Part { rect: r, since });
        }
    }
}

fn excluded(p: &Part, exclude: Option<Rect>) -> bool {
    exclude.is_some_and(|e| p.rect.intersect(&e).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(400);

    fn covered(reg: &LossyRegion, x: u32, y: u32) -> bool {
        reg.rects()
            .iter()
            .any(|r| r.contains(&Rect::new(x, y, 1, 1)))
    }

    fn assert_disjoint(reg: &LossyRegion) {
        let r = reg.rects();
        for i in 0..r.len() {
            for j in i + 1..r.len() {
                assert!(
                    r[i].intersect(&r[j]).is_none(),
                    "{:?} overlaps {:?}",
                    r[i],
                    r[j]
                );
            }
        }
    }

    #[test]
    fn lossless_draws_cut_holes_and_lossy_draws_union() {
        let t = Instant::now();
        let mut reg = LossyRegion::default();
        reg.mark_lossy(Rect::new(0, 0, 100, 100), t);
        reg.mark_lossy(Rect::new(50, 50, 100, 100), t);
        assert_disjoint(&reg);
        assert_eq!(reg.pixels(), 100 * 100 * 2 - 50 * 50);
        reg.mark_lossless(Rect::new(20, 20, 10, 10));
        assert_disjoint(&reg);
        assert_eq!(reg.pixels(), 100 * 100 * 2 - 50 * 50 - 100);
        assert!(!covered(&reg, 25, 25));
        assert!(covered(&reg, 19, 25) && covered(&reg, 30, 25) && covered(&reg, 149, 149));
        reg.mark_lossless(Rect::new(0, 0, 1000, 1000));
        assert!(reg.is_empty());
    }

    #[test]
    fn parts_are_due_after_settling_untouched_and_within_the_budget() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let mut reg = LossyRegion::default();
        reg.mark_lossy(Rect::new(0, 0, 100, 100), t);
        reg.mark_lossy(Rect::new(200, 0, 10, 10), ms(100));
        assert_eq!(reg.next_due(SETTLE, None), Some(ms(400)));
        assert!(reg.take_due(ms(399), SETTLE, u64::MAX, None).is_empty());
        // Damage restarts the wait of what it touches.
        reg.touch(Rect::new(99, 99, 5, 5), ms(300));
        assert_eq!(reg.next_due(SETTLE, None), Some(ms(500)));
        // A budget of 2500 pixels: the first 25 rows of the big part.
        assert_eq!(
            reg.take_due(ms(700), SETTLE, 2500, None),
            vec![Rect::new(0, 0, 100, 25)]
        );
        assert_eq!(reg.pixels(), 100 * 75 + 100);
        // A budget below one row still makes progress: one row.
        assert_eq!(
            reg.take_due(ms(700), SETTLE, 10, None)
                .iter()
                .map(|r| r.area())
                .sum::<u64>(),
            100
        );
        // A live stream's area waits; the rest goes.
        let stream = Some(Rect::new(0, 0, 100, 100));
        let got = reg.take_due(ms(700), SETTLE, u64::MAX, stream);
        assert_eq!(got, vec![Rect::new(200, 0, 10, 10)]);
        assert_eq!(reg.next_due(SETTLE, stream), None);
        let got = reg.take_due(ms(700), SETTLE, u64::MAX, None);
        assert_eq!(got, vec![Rect::new(0, 26, 100, 74)]);
        assert!(reg.is_empty());
        // Nothing is due twice.
        assert!(reg.take_due(ms(5000), SETTLE, u64::MAX, None).is_empty());
    }

    #[test]
    fn copy_bits_carries_lossiness_and_overwrites_the_destination() {
        let t = Instant::now();
        let mut reg = LossyRegion::default();
        // Lossy source at (0,0)-(50,50); the destination was lossy elsewhere.
        reg.mark_lossy(Rect::new(0, 0, 50, 50), t);
        reg.mark_lossy(Rect::new(300, 300, 40, 40), t);
        // Move (0,0)-(100,100) to (300,300): the destination takes the source's state.
        reg.copy(Rect::new(0, 0, 100, 100), Rect::new(300, 300, 100, 100));
        assert_disjoint(&reg);
        assert!(covered(&reg, 0, 0), "the source keeps its pixels");
        assert!(covered(&reg, 349, 349) && covered(&reg, 300, 300));
        assert!(
            !covered(&reg, 350, 350),
            "lossless source pixels made it exact"
        );
        assert_eq!(reg.pixels(), 2 * 50 * 50);
        // A lossless source copied over a lossy destination clears it.
        reg.copy(Rect::new(600, 0, 60, 60), Rect::new(300, 300, 60, 60));
        assert_eq!(reg.pixels(), 50 * 50);
    }

    #[test]
    fn fragmentation_is_bounded() {
        let t = Instant::now();
        let mut reg = LossyRegion::default();
        for i in 0..2000u32 {
            reg.mark_lossy(Rect::new((i * 37) % 1000, (i * 91) % 700, 9, 7), t);
            reg.mark_lossless(Rect::new((i * 53) % 1000, (i * 29) % 700, 5, 5));
        }
        assert!(reg.rects().len() <= MAX_PARTS + 4 * MAX_PARTS);
        assert_disjoint(&reg);
        // The latest lossy draw is still covered (merging only grows the area).
        let i = 1999u32;
        let (x, y) = ((i * 37) % 1000, (i * 91) % 700);
        let cut = Rect::new((i * 53) % 1000, (i * 29) % 700, 5, 5);
        assert!(cut.intersect(&Rect::new(x, y, 9, 7)).is_none());
        assert!(covered(&reg, x, y));
    }
}
