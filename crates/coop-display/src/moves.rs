//! Finding moved content (scrolls, window moves) so a source can report
//! [`crate::SourceEvent::CopyRect`] instead of re-sending the pixels.
//!
//! The source keeps a [`Shadow`]: its belief of what a client holds (the pixels last
//! captured for each area, with reported copies applied). When an area is damaged, its new
//! pixels are compared with the shadow shifted by a candidate offset; a candidate comes
//! from window-move hints or from voting over row hashes (a vertical scroll moves whole
//! rows). Only rows whose bytes match exactly are reported as moved, so a wrong guess costs
//! time, never a wrong picture.

use std::collections::HashMap;

use crate::Rect;

/// A screen-sized copy of the pixels a client is believed to show (4 bytes per pixel).
pub(crate) struct Shadow {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl Shadow {
    /// A shadow built from a full frame of `width`×`height` pixels (tightly packed).
    pub(crate) fn from_frame(width: u32, height: u32, data: &[u8]) -> Option<Shadow> {
        (data.len() == width as usize * height as usize * 4).then(|| Shadow {
            width,
            height,
            data: data.to_vec(),
        })
    }

    pub(crate) fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Writes the tightly packed pixels `px` of `area` into the shadow; ignores an area
    /// outside the screen or a buffer of the wrong size.
    pub(crate) fn put(&mut self, area: Rect, px: &[u8]) {
        if !Rect::new(0, 0, self.width, self.height).contains(&area)
            || px.len() != area.w as usize * area.h as usize * 4
        {
            return;
        }
        let row = area.w as usize * 4;
        for (i, line) in px.chunks_exact(row).enumerate() {
            let off = self.offset(area.x, area.y + i as u32);
            self.data[off..off + row].copy_from_slice(line);
        }
    }

    /// Applies a copy of `src` to (`dst_x`, `dst_y`), as a client does for COPY_BITS.
    pub(crate) fn copy(&mut self, src: Rect, dst_x: u32, dst_y: u32) {
        let screen = Rect::new(0, 0, self.width, self.height);
        if !screen.contains(&src) || !screen.contains(&Rect::new(dst_x, dst_y, src.w, src.h)) {
            return;
        }
        let row = src.w as usize * 4;
        let mut moved = Vec::with_capacity(row * src.h as usize);
        for y in 0..src.h {
            let off = self.offset(src.x, src.y + y);
            moved.extend_from_slice(&self.data[off..off + row]);
        }
        self.put(Rect::new(dst_x, dst_y, src.w, src.h), &moved);
    }

    fn offset(&self, x: u32, y: u32) -> usize {
        (y as usize * self.width as usize + x as usize) * 4
    }

    fn row(&self, x: u32, y: u32, w: u32) -> &[u8] {
        let off = self.offset(x, y);
        &self.data[off..off + w as usize * 4]
    }
}

/// A detected move: the shadow's pixels of `src` are the new pixels of `dst` (same size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Move {
    pub src: Rect,
    pub dst: Rect,
}

/// Fewest rows a reported move spans, and fewest pixels: below that a COPY_BITS saves
/// too little to be worth the risk of splitting a damage rectangle.
const MIN_ROWS: u32 = 8;
const MIN_PIXELS: u64 = 4096;
/// A row hash seen more often than this in the old area (blank lines) casts no votes.
const MAX_HASH_REPEATS: usize = 4;

fn row_hash(row: &[u8]) -> u64 {
    // FNV-1a over 8-byte words: cheap, and a collision only costs a failed byte compare.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = row.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        h = (h ^ v).wrapping_mul(0x0100_0000_01b3);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The vertical shift `dy` (new row `y` holds old row `y - dy`) that most rows of `area`
/// agree on, from row hashes; `new` is the area's new pixels, tightly packed.
pub(crate) fn vertical_candidate(shadow: &Shadow, area: Rect, new: &[u8]) -> Option<i32> {
    let row = area.w as usize * 4;
    if area.h < MIN_ROWS || new.len() != row * area.h as usize {
        return None;
    }
    let mut old_rows: HashMap<u64, Vec<u32>> = HashMap::new();
    for i in 0..area.h {
        old_rows
            .entry(row_hash(shadow.row(area.x, area.y + i, area.w)))
            .or_default()
            .push(i);
    }
    let mut votes: HashMap<i32, u32> = HashMap::new();
    for (i, line) in new.chunks_exact(row).enumerate() {
        if let Some(js) = old_rows.get(&row_hash(line)) {
            if js.len() > MAX_HASH_REPEATS {
                continue;
            }
            for &j in js {
                let dy = i as i32 - j as i32;
                if dy != 0 {
                    *votes.entry(dy).or_default() += 1;
                }
            }
        }
    }
    votes
        .into_iter()
        .filter(|&(_, n)| n >= MIN_ROWS)
        .max_by_key(|&(dy, n)| (n, -dy.abs()))
        .map(|(dy, _)| dy)
}

/// Checks the shift (`dx`, `dy`) for `dst` (new pixels `new`, tightly packed): the
/// longest run of rows of `dst` whose new bytes equal the shadow's at the shifted place.
/// `dst` must be clipped so the shifted rectangle lies on the screen.
pub(crate) fn verify(shadow: &Shadow, dst: Rect, new: &[u8], dx: i32, dy: i32) -> Option<Move> {
    let row = dst.w as usize * 4;
    if (dx, dy) == (0, 0) || dst.is_empty() || new.len() != row * dst.h as usize {
        return None;
    }
    let sx = i64::from(dst.x) - i64::from(dx);
    let sy = i64::from(dst.y) - i64::from(dy);
    let (sw, sh) = (i64::from(shadow.width), i64::from(shadow.height));
    if sx < 0 || sy < 0 || sx + i64::from(dst.w) > sw || sy + i64::from(dst.h) > sh {
        return None;
    }
    let (sx, sy) = (sx as u32, sy as u32);
    let (mut best, mut run_start) = ((0u32, 0u32), None::<u32>);
    for (i, line) in new.chunks_exact(row).enumerate() {
        let i = i as u32;
        if shadow.row(sx, sy + i, dst.w) == line {
            let s = *run_start.get_or_insert(i);
            if i + 1 - s > best.1 {
                best = (s, i + 1 - s);
            }
        } else {
            run_start = None;
        }
    }
    let (start, len) = best;
    (len >= MIN_ROWS && u64::from(len) * u64::from(dst.w) >= MIN_PIXELS).then(|| Move {
        src: Rect::new(sx, sy + start, dst.w, len),
        dst: Rect::new(dst.x, dst.y + start, dst.w, len),
    })
}

/// `r` minus `hole`: up to four rectangles (above, below, left, right of the hole).
pub(crate) fn subtract(r: Rect, hole: Rect) -> Vec<Rect> {
    let Some(h) = r.intersect(&hole) else {
        return vec![r];
    };
    let mut out = Vec::with_capacity(4);
    if h.y > r.y {
        out.push(Rect::new(r.x, r.y, r.w, h.y - r.y));
    }
    if h.bottom() < r.bottom() {
        out.push(Rect::new(r.x, h.bottom(), r.w, r.bottom() - h.bottom()));
    }
    if h.x > r.x {
        out.push(Rect::new(r.x, h.y, h.x - r.x, h.h));
    }
    if h.right() < r.right() {
        out.push(Rect::new(h.right(), h.y, r.right() - h.right(), h.h));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A screen whose rows all differ: pixel = (x, y) mixed.
    fn screen(w: u32, h: u32, seed: u32) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                let v = x.wrapping_mul(2_654_435_761) ^ (y + seed).wrapping_mul(40_503);
                v.to_le_bytes()
            })
            .collect()
    }

    fn grab(data: &[u8], w: u32, r: Rect) -> Vec<u8> {
        let mut out = Vec::new();
        for y in r.y..r.bottom() {
            let o = ((y * w + r.x) * 4) as usize;
            out.extend_from_slice(&data[o..o + r.w as usize * 4]);
        }
        out
    }

    #[test]
    fn finds_a_scroll_up_and_only_the_matching_rows() {
        let (w, h) = (64, 100);
        let old = screen(w, h, 0);
        let sh = Shadow::from_frame(w, h, &old).expect("sized");
        // Area rows 10..90 scroll up by 7: new row y = old row y + 7; the last 7 are new.
        let area = Rect::new(0, 10, w, 80);
        let mut new = old.clone();
        for y in 10..83 {
            let (d, s) = ((y * w * 4) as usize, ((y + 7) * w * 4) as usize);
            let line = old[s..s + w as usize * 4].to_vec();
            new[d..d + line.len()].copy_from_slice(&line);
        }
        let fresh = screen(w, 7, 999);
        new[(83 * w * 4) as usize..(90 * w * 4) as usize].copy_from_slice(&fresh);
        let px = grab(&new, w, area);
        let dy = vertical_candidate(&sh, area, &px).expect("a candidate");
        assert_eq!(dy, -7);
        let m = verify(&sh, area, &px, 0, dy).expect("verified");
        assert_eq!(m.dst, Rect::new(0, 10, w, 73));
        assert_eq!(m.src, Rect::new(0, 17, w, 73));
        // Applying the move to the shadow reproduces the new pixels of the band.
        let mut sh2 = Shadow::from_frame(w, h, &old).expect("sized");
        sh2.copy(m.src, m.dst.x, m.dst.y);
        assert_eq!(grab(&sh2.data, w, m.dst), grab(&new, w, m.dst));
    }

    #[test]
    fn rejects_a_shift_whose_bytes_differ() {
        let (w, h) = (64, 64);
        let old = screen(w, h, 0);
        let sh = Shadow::from_frame(w, h, &old).expect("sized");
        let new = screen(w, h, 5000);
        let area = Rect::new(0, 0, w, h);
        let px = grab(&new, w, area);
        assert_eq!(vertical_candidate(&sh, area, &px), None);
        assert_eq!(
            verify(
                &sh,
                Rect::new(0, 8, w, 56),
                &px[..(56 * w * 4) as usize],
                0,
                8
            ),
            None
        );
    }

    #[test]
    fn verifies_a_two_dimensional_move_and_clips_to_the_screen() {
        let (w, h) = (120, 90);
        let old = screen(w, h, 3);
        let sh = Shadow::from_frame(w, h, &old).expect("sized");
        // An 80x60 window at (10,10) moves to (30,25) (overlapping its old place).
        let mut new = old.clone();
        let win = grab(&old, w, Rect::new(10, 10, 80, 60));
        for y in 0..60u32 {
            let d = (((25 + y) * w + 30) * 4) as usize;
            new[d..d + 320].copy_from_slice(&win[(y * 320) as usize..((y + 1) * 320) as usize]);
        }
        let dst = Rect::new(30, 25, 80, 60);
        let m = verify(&sh, dst, &grab(&new, w, dst), 20, 15).expect("verified");
        assert_eq!(
            m,
            Move {
                src: Rect::new(10, 10, 80, 60),
                dst
            }
        );
        // A shift that would read outside the screen is refused, not panicking.
        assert_eq!(verify(&sh, dst, &grab(&new, w, dst), 100, 0), None);
    }

    #[test]
    fn subtract_covers_exactly_the_rest() {
        let r = Rect::new(0, 0, 10, 10);
        let parts = subtract(r, Rect::new(2, 3, 4, 5));
        let area: u64 = parts.iter().map(|p| p.area()).sum();
        assert_eq!(area, 100 - 20);
        assert!(parts
            .iter()
            .all(|p| r.contains(p) && p.intersect(&Rect::new(2, 3, 4, 5)).is_none()));
        assert_eq!(subtract(r, Rect::new(20, 20, 2, 2)), vec![r]);
        assert!(subtract(r, r).is_empty());
    }

    #[test]
    fn put_ignores_bad_sizes() {
        let mut sh = Shadow::from_frame(4, 4, &[0; 64]).expect("sized");
        sh.put(Rect::new(3, 3, 2, 2), &[1; 16]);
        sh.put(Rect::new(0, 0, 2, 2), &[1; 15]);
        assert!(sh.data.iter().all(|&b| b == 0));
        assert!(Shadow::from_frame(4, 4, &[0; 63]).is_none());
    }
}
