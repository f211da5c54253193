//! [`RangeWalk`]: a call over a key range (a scan, a delete range, a lock
//! scan) walked region by region, in either direction.
//!
//! Each piece is bounded to one region and, for scans, to one page; the
//! walk remembers the unread part of the range between pieces. Forward it
//! reads `[lower, upper)` upwards; in reverse it reads the same range from
//! the top down, finding the region below its cursor through the
//! coordinator (the cache is keyed by start key, and a cursor is an
//! exclusive upper bound). An empty bound is unbounded.

use nokv_proto::metapb::Region;

use crate::coordinator::CoordinatorClient;
use crate::region_cache::RegionRoute;
use crate::Result;

/// Most entries one scan request asks a store for; longer scans page.
pub(crate) const MAX_SCAN_PAGE: u32 = 10_000;

/// Smaller of two exclusive upper bounds, where empty means unbounded.
fn min_upper(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => a.min(b).to_vec(),
    }
}

/// Where a walk over a key range stands.
pub(crate) struct RangeWalk {
    /// Inclusive lower bound.
    lower: Vec<u8>,
    /// Exclusive upper bound (empty: the end of the key space).
    upper: Vec<u8>,
    reverse: bool,
    /// The unread part of the range: `[cursor, upper)` going up,
    /// `[lower, cursor)` going down (empty: from the end of the key space).
    cursor: Vec<u8>,
    /// The whole range is read.
    finished: bool,
}

impl RangeWalk {
    /// A walk the way scans take their bounds: forward over `[start, end)`;
    /// with `reverse`, over `[end, start)` from the top.
    pub fn new(start: &[u8], end: &[u8], reverse: bool) -> Self {
        let (lower, upper) = if reverse { (end, start) } else { (start, end) };
        RangeWalk {
            lower: lower.to_vec(),
            upper: upper.to_vec(),
            reverse,
            cursor: if reverse { upper } else { lower }.to_vec(),
            finished: false,
        }
    }

    /// Whether the range holds no key at all (its upper bound is at or
    /// below its lower one).
    pub fn is_empty(&self) -> bool {
        !self.upper.is_empty() && self.upper <= self.lower
    }

    /// The key whose region holds the next piece, or `None` once the walk
    /// is over.
    ///
    /// # Errors
    /// Going down, when the coordinator cannot list the regions below the
    /// cursor.
    pub async fn next_key(&self, coordinator: &CoordinatorClient) -> Result<Option<Vec<u8>>> {
        if self.finished {
            return Ok(None);
        }
        if !self.reverse {
            return Ok(Some(self.cursor.clone()));
        }
        // The region holding the greatest keys below the cursor.
        let regions = coordinator
            .scan_regions(&self.lower, &self.cursor, 0)
            .await?;
        Ok(regions
            .last()
            .and_then(|r| r.region.as_ref())
            .map(|last| last.start_key.clone().max(self.lower.clone())))
    }

    /// The `(start_key, end_key)` of the next piece inside `region`, the
    /// way scan requests take them: going down, `start_key` is the
    /// exclusive upper bound and `end_key` the inclusive lower one.
    pub fn bounds(&self, region: &Region) -> (Vec<u8>, Vec<u8>) {
        if self.reverse {
            (
                min_upper(&self.cursor, &region.end_key),
                region.start_key.clone().max(self.lower.clone()),
            )
        } else {
            (self.cursor.clone(), min_upper(&self.upper, &region.end_key))
        }
    }

    /// Moves past a piece answered along `route`. `full_page_last` is the
    /// last key of a page that came back full: more may follow in the same
    /// region, from just past it. `None`: the region's part is read.
    pub fn advance(&mut self, route: &RegionRoute, full_page_last: Option<Vec<u8>>) {
        if let Some(mut last) = full_page_last {
            if !self.reverse {
                last.push(0);
            }
            self.cursor = last;
            return;
        }
        let region = &route.region;
        let past_the_range = if self.reverse {
            region.start_key.is_empty() || region.start_key <= self.lower
        } else {
            region.end_key.is_empty() || (!self.upper.is_empty() && region.end_key >= self.upper)
        };
        if past_the_range {
            self.finished = true;
        } else if self.reverse {
            self.cursor = region.start_key.clone();
        } else {
            self.cursor = region.end_key.clone();
        }
    }
}

/// The last key of a page of `len` entries when it is full (`asked`
/// entries): the point a scan resumes from.
pub(crate) fn full_page_last(len: usize, asked: u32, last: Option<&[u8]>) -> Option<Vec<u8>> {
    (len as u32 >= asked)
        .then(|| last.map(<[u8]>::to_vec))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_upper_treats_empty_as_unbounded() {
        assert_eq!(min_upper(b"", b"m"), b"m".to_vec());
        assert_eq!(min_upper(b"x", b""), b"x".to_vec());
        assert_eq!(min_upper(b"x", b"m"), b"m".to_vec());
        assert!(min_upper(b"", b"").is_empty());
    }

    #[test]
    fn forward_walk_pages_within_a_region_then_moves_to_the_next() {
        let mut w = RangeWalk::new(b"b", b"t", false);
        assert!(!w.is_empty());
        let first = RegionRoute::over(b"", b"m");
        assert_eq!(w.bounds(&first.region), (b"b".to_vec(), b"m".to_vec()));
        w.advance(&first, Some(b"f".to_vec()));
        assert_eq!(w.bounds(&first.region).0, b"f\0".to_vec());
        w.advance(&first, None);
        let second = RegionRoute::over(b"m", b"");
        assert_eq!(w.bounds(&second.region), (b"m".to_vec(), b"t".to_vec()));
        w.advance(&second, None);
        assert!(w.finished, "the region reaches past the range's end");
    }

    #[test]
    fn reverse_walk_reads_down_to_the_lower_bound() {
        let mut w = RangeWalk::new(b"", b"c", true);
        let top = RegionRoute::over(b"m", b"");
        assert_eq!(w.bounds(&top.region), (Vec::new(), b"m".to_vec()));
        w.advance(&top, Some(b"p".to_vec()));
        assert_eq!(w.bounds(&top.region).0, b"p".to_vec());
        w.advance(&top, None);
        let bottom = RegionRoute::over(b"", b"m");
        assert_eq!(w.bounds(&bottom.region), (b"m".to_vec(), b"c".to_vec()));
        w.advance(&bottom, None);
        assert!(w.finished);
    }

    #[test]
    fn an_inverted_range_is_empty() {
        assert!(RangeWalk::new(b"m", b"c", false).is_empty());
        assert!(RangeWalk::new(b"c", b"m", true).is_empty());
        assert!(!RangeWalk::new(b"c", b"", false).is_empty());
    }

    #[test]
    fn only_a_full_page_resumes() {
        assert_eq!(full_page_last(3, 3, Some(b"k")), Some(b"k".to_vec()));
        assert_eq!(full_page_last(2, 3, Some(b"k")), None);
        assert_eq!(full_page_last(0, 0, None), None);
    }
}
