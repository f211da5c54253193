//! The merge checker: finds a small region next to another small region
//! and folds it in, so a key space that emptied out (deletes, TTL, a
//! dropped table) does not leave thousands of near-empty regions behind,
//! each costing a raft group, heartbeats and routing entries.
//!
//! A region is a merge **source** when it is healthy (a leader, every peer
//! a caught-up voter on an `Up` store, the configured replica count), its
//! leader has measured its size this term, it holds at most
//! `max_merge_region_size_bytes` and `max_merge_region_keys`, and its range
//! has not shrunk (split) within `split_merge_interval_ms`. Its **target**
//! is an adjacent region meeting the same conditions; of two, the smaller.
//!
//! Stores only merge regions whose replicas sit on the same stores, so when
//! the two differ the plan first **aligns** the source: it moves each
//! source replica on a store the target lacks to a store the target has
//! (add learner, promote, remove). Alignment and merge are one operator:
//! from its start the target counts as busy, so balance-region cannot
//! move the target's replicas away while the source moves onto them.

use std::collections::HashMap;
use std::time::Duration;

use nokv_proto::metapb::{Peer, PeerRole, Region, StoreState};

use crate::cluster_view::StoreView;

/// The thresholds from the coordinator's config.
#[derive(Debug, Clone, Copy)]
pub struct MergeLimits {
    /// Largest region merged, in bytes; 0 turns the checker off.
    pub max_size_bytes: u64,
    /// Largest region merged, in keys; 0 means no limit by keys.
    pub max_keys: u64,
    /// How long a region's range must not have shrunk.
    pub split_merge_interval: Duration,
}

/// A region with what its leader last reported, as the checker needs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The region as applied in the routing table.
    pub region: Region,
    /// Its leader, if known.
    pub leader: Option<Peer>,
    /// The leader reports pending or down peers.
    pub lagging: bool,
    /// Approximate size, from the leader's last count.
    pub size_bytes: u64,
    /// Approximate keys, from the leader's last count.
    pub keys: u64,
    /// The counts were taken by the current leader.
    pub size_measured: bool,
    /// How long the range has not shrunk, as this leader has watched it.
    pub stable_for: Duration,
    /// An operator is in flight on the region (or merges into it).
    pub busy: bool,
}

/// A merge the checker wants done: align, then merge.
#[derive(Debug, Clone, PartialEq)]
pub struct MergePlan {
    /// The region that goes away.
    pub source: Region,
    /// The region that takes its range.
    pub target: Region,
    /// Source replicas to replace first, each with the store receiving its
    /// stand-in (empty when both already share stores).
    pub moves: Vec<(Peer, u64)>,
}

fn stores_of(r: &Region) -> Vec<u64> {
    let mut v: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
    v.sort_unstable();
    v
}

fn eligible(
    c: &Candidate,
    stores: &HashMap<u64, StoreView>,
    max_replicas: usize,
    limits: &MergeLimits,
) -> bool {
    let peers_ok = c.region.peers.len() == max_replicas
        && c.region.peers.iter().all(|p| {
            p.role() == PeerRole::Voter
                && stores
                    .get(&p.store_id)
                    .is_some_and(|s| s.state == StoreState::Up)
        });
    peers_ok
        && !c.busy
        && !c.lagging
        && c.leader.is_some()
        && c.size_measured
        && c.size_bytes <= limits.max_size_bytes
        && (limits.max_keys == 0 || c.keys <= limits.max_keys)
        && c.stable_for >= limits.split_merge_interval
}

/// The next merge or alignment, scanning `regions` in key order.
pub fn check(
    regions: &[Candidate],
    stores: &HashMap<u64, StoreView>,
    max_replicas: usize,
    limits: &MergeLimits,
) -> Option<MergePlan> {
    if limits.max_size_bytes == 0 {
        return None;
    }
    let mut sorted: Vec<&Candidate> = regions.iter().collect();
    sorted.sort_by(|a, b| a.region.start_key.cmp(&b.region.start_key));
    let ok = |c: &Candidate| eligible(c, stores, max_replicas, limits);
    for (i, src) in sorted.iter().enumerate() {
        if !ok(src) {
            continue;
        }
        let prev = i
            .checked_sub(1)
            .map(|j| sorted[j])
            .filter(|p| !p.region.end_key.is_empty() && p.region.end_key == src.region.start_key);
        let next = sorted
            .get(i + 1)
            .copied()
            .filter(|n| !src.region.end_key.is_empty() && src.region.end_key == n.region.start_key);
        let target = [prev, next]
            .into_iter()
            .flatten()
            .filter(|t| ok(t))
            .min_by_key(|t| (t.size_bytes, t.keys));
        let Some(target) = target else { continue };
        let (s, t) = (stores_of(&src.region), stores_of(&target.region));
        let mut free = t.iter().filter(|id| !s.contains(id));
        let moves: Vec<(Peer, u64)> = src
            .region
            .peers
            .iter()
            .filter(|p| !t.contains(&p.store_id))
            .filter_map(|p| free.next().map(|to| (*p, *to)))
            .collect();
        return Some(MergePlan {
            source: src.region.clone(),
            target: target.region.clone(),
            moves,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &str, end: &str, stores: &[u64]) -> Region {
        Region {
            id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            peers: stores
                .iter()
                .map(|s| Peer {
                    id: id * 100 + s,
                    store_id: *s,
                    role: PeerRole::Voter as i32,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn cand(r: Region, keys: u64) -> Candidate {
        Candidate {
            leader: r.peers.first().copied(),
            region: r,
            lagging: false,
            size_bytes: keys * 10,
            keys,
            size_measured: true,
            stable_for: Duration::from_secs(60),
            busy: false,
        }
    }

    fn stores(ids: &[u64]) -> HashMap<u64, StoreView> {
        ids.iter()
            .map(|id| {
                (
                    *id,
                    StoreView {
                        id: *id,
                        state: StoreState::Up,
                        regions: 0,
                        leaders: 0,
                        size: 0,
                    },
                )
            })
            .collect()
    }

    /// Makes one candidate unfit for merging.
    type Spoil = Box<dyn Fn(&mut Candidate)>;

    const LIMITS: MergeLimits = MergeLimits {
        max_size_bytes: 1000,
        max_keys: 100,
        split_merge_interval: Duration::from_secs(10),
    };

    #[test]
    fn merges_a_small_region_into_its_smaller_small_neighbour() {
        let s = stores(&[1, 2, 3]);
        let regions = vec![
            cand(region(1, "", "b", &[1, 2, 3]), 50),
            cand(region(2, "b", "d", &[1, 2, 3]), 5),
            cand(region(3, "d", "", &[1, 2, 3]), 20),
        ];
        let plan = check(&regions, &s, 3, &LIMITS).expect("a merge");
        // Region 1 is scanned first; its only neighbour is region 2.
        assert_eq!(
            plan,
            MergePlan {
                source: regions[0].region.clone(),
                target: regions[1].region.clone(),
                moves: vec![],
            }
        );
        // With region 1 too big, region 2 goes into the smaller of 1 and 3.
        let mut big = regions.clone();
        big[0].keys = 500;
        let plan = check(&big, &s, 3, &LIMITS).expect("a merge");
        assert_eq!(
            plan,
            MergePlan {
                source: regions[1].region.clone(),
                target: regions[2].region.clone(),
                moves: vec![],
            }
        );
    }

    #[test]
    fn unfit_regions_are_left_alone() {
        let s = stores(&[1, 2, 3]);
        let base = vec![
            cand(region(1, "", "m", &[1, 2, 3]), 5),
            cand(region(2, "m", "", &[1, 2, 3]), 5),
        ];
        assert!(check(&base, &s, 3, &LIMITS).is_some());
        let unfit: Vec<Spoil> = vec![
            Box::new(|c| c.size_measured = false),
            Box::new(|c| c.stable_for = Duration::from_secs(1)),
            Box::new(|c| c.busy = true),
            Box::new(|c| c.lagging = true),
            Box::new(|c| c.leader = None),
            Box::new(|c| c.size_bytes = 5000),
            Box::new(|c| c.keys = 500),
            Box::new(|c| c.region.peers[2].role = PeerRole::Learner as i32),
            Box::new(|c| {
                c.region.peers.pop();
            }),
        ];
        for (i, spoil) in unfit.iter().enumerate() {
            for which in 0..2 {
                let mut rs = base.clone();
                spoil(&mut rs[which]);
                assert_eq!(check(&rs, &s, 3, &LIMITS), None, "case {i}, region {which}");
            }
        }
        let mut down = s.clone();
        if let Some(st) = down.get_mut(&2) {
            st.state = StoreState::Down;
        }
        assert_eq!(check(&base, &down, 3, &LIMITS), None);
        let off = MergeLimits {
            max_size_bytes: 0,
            ..LIMITS
        };
        assert_eq!(check(&base, &s, 3, &off), None);
        // Not adjacent: a hole between them.
        let apart = vec![
            cand(region(1, "", "k", &[1, 2, 3]), 5),
            cand(region(2, "m", "", &[1, 2, 3]), 5),
        ];
        assert_eq!(check(&apart, &s, 3, &LIMITS), None);
    }

    #[test]
    fn replicas_on_other_stores_are_aligned_first() {
        let s = stores(&[1, 2, 3, 4, 5]);
        let regions = vec![
            cand(region(1, "", "m", &[1, 2, 4]), 5),
            cand(region(2, "m", "", &[1, 3, 5]), 50),
        ];
        let plan = check(&regions, &s, 3, &LIMITS).expect("a merge");
        assert_eq!((plan.source.id, plan.target.id), (1, 2));
        let moves = plan.moves;
        let moved: Vec<(u64, u64)> = moves.iter().map(|(p, to)| (p.store_id, *to)).collect();
        assert_eq!(moved, vec![(2, 3), (4, 5)]);
    }
}
