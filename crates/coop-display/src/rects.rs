//! Damage rectangle bookkeeping: clipping and merging so the server sends few, compact
//! updates instead of hundreds of tiny ones.

use crate::Rect;

/// Clips `rects` to `bounds`, drops empty ones, and merges them until at most `max`
/// remain: first every pair that overlaps or whose union wastes little area, then (while
/// still above `max`) the pair whose union adds the least area. `max == 0` is treated as 1.
pub fn merge_rects(rects: &[Rect], bounds: Rect, max: usize) -> Vec<Rect> {
    let max = max.max(1);
    let mut v: Vec<Rect> = rects.iter().filter_map(|r| r.intersect(&bounds)).collect();
    // Large inputs: a bounding box is cheaper than the quadratic merge and good enough.
    if v.len() > 256 {
        let all = v.iter().skip(1).fold(v[0], |acc, r| acc.union(r));
        return vec![all];
    }
    // Pass 1: merge when the union costs at most what the two cover (plus a small slack
    // for adjacent strips that X servers tend to report, e.g. one per text line).
    let mut changed = true;
    while changed {
        changed = false;
        'outer: for i in 0..v.len() {
            for j in i + 1..v.len() {
                let u = v[i].union(&v[j]);
                let overlap = v[i].intersect(&v[j]).map_or(0, |r| r.area());
                let covered = v[i].area() + v[j].area() - overlap;
                if u.area() <= covered + covered / 8 + 64 {
                    v[i] = u;
                    v.swap_remove(j);
                    changed = true;
                    break 'outer;
                }
            }
        }
    }
    // Pass 2: enforce the count limit with the cheapest merges.
    while v.len() > max {
        let mut best = (0, 1, u64::MAX);
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                let cost = v[i].union(&v[j]).area() - v[i].area().max(v[j].area());
                if cost < best.2 {
                    best = (i, j, cost);
                }
            }
        }
        let (i, j, _) = best;
        v[i] = v[i].union(&v[j]);
        v.swap_remove(j);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(out: &[Rect], r: &Rect) -> bool {
        // Every pixel of r must be in some output rect (checked on a coarse grid + edges).
        for y in [r.y, r.y + r.h / 2, r.bottom() - 1] {
            for x in [r.x, r.x + r.w / 2, r.right() - 1] {
                let p = Rect::new(x, y, 1, 1);
                if !out.iter().any(|o| o.contains(&p)) {
                    return false;
                }
            }
        }
        true
    }

    #[test]
    fn clips_and_drops_empty() {
        let b = Rect::new(0, 0, 100, 100);
        let out = merge_rects(
            &[
                Rect::new(90, 90, 50, 50),
                Rect::new(200, 0, 5, 5),
                Rect::new(0, 0, 0, 9),
            ],
            b,
            8,
        );
        assert_eq!(out, vec![Rect::new(90, 90, 10, 10)]);
    }

    #[test]
    fn merges_overlapping_keeps_distant() {
        let b = Rect::new(0, 0, 1000, 1000);
        let input = [
            Rect::new(0, 0, 10, 10),
            Rect::new(5, 5, 10, 10),
            Rect::new(500, 500, 10, 10),
        ];
        let out = merge_rects(&input, b, 8);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.contains(&Rect::new(0, 0, 15, 15)));
        assert!(out.contains(&Rect::new(500, 500, 10, 10)));
    }

    #[test]
    fn respects_max_and_covers_all() {
        let b = Rect::new(0, 0, 1000, 1000);
        let input: Vec<Rect> = (0..20)
            .map(|i| Rect::new(i * 45 % 900, i * 97 % 900, 7, 9))
            .collect();
        let out = merge_rects(&input, b, 4);
        assert!(out.len() <= 4);
        for r in &input {
            assert!(covers(&out, r), "{r:?} not covered by {out:?}");
        }
    }

    #[test]
    fn huge_input_becomes_bounding_box() {
        let b = Rect::new(0, 0, 2000, 2000);
        let input: Vec<Rect> = (0..1000).map(|i| Rect::new(i, i, 1, 1)).collect();
        assert_eq!(
            merge_rects(&input, b, 16),
            vec![Rect::new(0, 0, 1000, 1000)]
        );
    }

    #[test]
    fn rect_ops_saturate() {
        let r = Rect::new(u32::MAX - 1, 0, 10, 10);
        assert_eq!(r.right(), u32::MAX);
        assert!(r.intersect(&Rect::new(0, 0, 100, 100)).is_none());
    }
}
