//! The balance schedulers: pure decisions over a snapshot of stores and
//! regions, run periodically by the leader's scheduling
//! ([`crate::scheduling`]), which turns a [`Move`] into an operator,
//! charges its influence to the stores, and asks again until the
//! scheduler's in-flight limit is reached or nothing is worth moving.
//!
//! - balance-leader ([`Balance::Leaders`]): moves leadership from the `Up`
//!   store leading the most regions to the one leading the fewest, while
//!   they differ by two or more.
//! - balance-region ([`Balance::Regions`]): moves a replica (add learner,
//!   promote, remove) from the `Up` store holding the most replica bytes to
//!   the one holding the fewest, choosing a region no heavier than half
//!   their gap, so the move narrows the gap without reversing it. Each
//!   region weighs its approximate size but at least
//!   [`REGION_SIZE_FLOOR`]: near-empty regions still cost a raft group
//!   each, and a cluster of small regions balances by count.
//!
//! Both walk the same pairs of stores, fullest first, and only touch
//! regions that are healthy (no learner, no pending peer, a known leader)
//! and have no operator in flight.

use std::collections::HashMap;

use nokv_proto::coordinatorpb::RegionInfo;
use nokv_proto::metapb::{Peer, PeerRole, StoreState};

use crate::cluster_view::StoreView;

/// Stores must differ by at least this many leaders before leadership
/// moves (one would only swap which store is ahead).
const MIN_GAP: i64 = 2;

/// The least a region weighs for balance-region, in bytes.
pub const REGION_SIZE_FLOOR: i64 = 1 << 20;

/// What a region of `size_bytes` (as its leader counted) weighs.
pub fn weight(size_bytes: u64) -> i64 {
    i64::try_from(size_bytes)
        .unwrap_or(i64::MAX)
        .max(REGION_SIZE_FLOOR)
}

/// A region with what its leader last reported.
#[derive(Debug, Clone)]
pub struct RegionView {
    /// Region, leader and term as applied.
    pub info: RegionInfo,
    /// Peers the leader reports as not caught up.
    pub pending: Vec<Peer>,
    /// Approximate size the leader last reported.
    pub size_bytes: u64,
}

impl RegionView {
    fn healthy(&self, max_replicas: usize) -> bool {
        let Some(r) = &self.info.region else {
            return false;
        };
        self.info.leader.is_some()
            && self.pending.is_empty()
            && r.peers.len() == max_replicas
            && r.peers.iter().all(|p| p.role() == PeerRole::Voter)
    }
}

/// A leadership move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderMove {
    /// Region.
    pub region_id: u64,
    /// Current leader.
    pub from: Peer,
    /// New leader.
    pub to: Peer,
}

/// A replica move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionMove {
    /// Region.
    pub region_id: u64,
    /// Replica to remove once the new one votes.
    pub from: Peer,
    /// Store receiving the new replica.
    pub to_store: u64,
    /// What the region weighs.
    pub bytes: i64,
}

/// The two balance schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// balance-leader: evens out leader counts.
    Leaders,
    /// balance-region: evens out replica bytes.
    Regions,
}

/// What a balance scheduler decided: one operator's worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Transfer a region's leadership.
    Leader(LeaderMove),
    /// Move a replica to another store.
    Replica(RegionMove),
}

impl Move {
    /// The region that moves.
    pub fn region_id(&self) -> u64 {
        match self {
            Move::Leader(m) => m.region_id,
            Move::Replica(m) => m.region_id,
        }
    }
}

impl Balance {
    /// This scheduler's next move, if the stores are apart.
    pub fn next_move(
        self,
        stores: &HashMap<u64, StoreView>,
        regions: &[RegionView],
        busy: impl Fn(u64) -> bool,
        max_replicas: usize,
    ) -> Option<Move> {
        match self {
            Balance::Leaders => {
                balance_leader(stores, regions, busy, max_replicas).map(Move::Leader)
            }
            Balance::Regions => {
                balance_region(stores, regions, busy, max_replicas).map(Move::Replica)
            }
        }
    }
}

/// Pairs `(source, destination)` of `Up` stores whose `load` differs by
/// at least `min_gap`: the most loaded source first, and for each source
/// the least loaded destination first (ties to the lower id).
fn pairs_apart(
    stores: &HashMap<u64, StoreView>,
    load: fn(&StoreView) -> i64,
    min_gap: i64,
) -> Vec<(StoreView, StoreView)> {
    let mut up: Vec<StoreView> = stores
        .values()
        .filter(|s| s.state == StoreState::Up)
        .copied()
        .collect();
    up.sort_by_key(|s| (load(s), s.id));
    let mut pairs = Vec::new();
    for src in up.iter().rev() {
        for dst in up.iter().take_while(|d| load(src) - load(d) >= min_gap) {
            pairs.push((*src, *dst));
        }
    }
    pairs
}

/// The regions a balance scheduler may move: healthy, with no operator in
/// flight.
fn movable<'a>(
    regions: &'a [RegionView],
    busy: &'a impl Fn(u64) -> bool,
    max_replicas: usize,
) -> impl Iterator<Item = &'a RegionView> + 'a {
    regions.iter().filter(move |rv| {
        rv.info
            .region
            .as_ref()
            .is_some_and(|r| !busy(r.id) && rv.healthy(max_replicas))
    })
}

/// The next leadership move, if stores' leader counts are apart.
pub fn balance_leader(
    stores: &HashMap<u64, StoreView>,
    regions: &[RegionView],
    busy: impl Fn(u64) -> bool,
    max_replicas: usize,
) -> Option<LeaderMove> {
    pairs_apart(stores, |s| s.leaders, MIN_GAP)
        .into_iter()
        .find_map(|(src, dst)| {
            movable(regions, &busy, max_replicas).find_map(|rv| {
                let (r, leader) = (rv.info.region.as_ref()?, rv.info.leader?);
                if leader.store_id != src.id {
                    return None;
                }
                let to = r.peers.iter().find(|p| p.store_id == dst.id)?;
                Some(LeaderMove {
                    region_id: r.id,
                    from: leader,
                    to: *to,
                })
            })
        })
}

/// The next replica move, if stores' replica bytes are apart.
pub fn balance_region(
    stores: &HashMap<u64, StoreView>,
    regions: &[RegionView],
    busy: impl Fn(u64) -> bool,
    max_replicas: usize,
) -> Option<RegionMove> {
    pairs_apart(stores, |s| s.size, 2 * REGION_SIZE_FLOOR)
        .into_iter()
        .find_map(|(src, dst)| {
            let gap = src.size - dst.size;
            // The heaviest region that fits the gap, a follower in
            // preference (no leadership hand-off needed).
            let mut best: Option<((bool, i64), RegionMove)> = None;
            for rv in movable(regions, &busy, max_replicas) {
                let Some(r) = &rv.info.region else { continue };
                let w = weight(rv.size_bytes);
                if 2 * w > gap || r.peers.iter().any(|p| p.store_id == dst.id) {
                    continue;
                }
                let Some(from) = r.peers.iter().find(|p| p.store_id == src.id) else {
                    continue;
                };
                let follower = rv.info.leader.is_none_or(|l| l.id != from.id);
                let key = (follower, w);
                if best.as_ref().is_none_or(|(k, _)| key > *k) {
                    best = Some((
                        key,
                        RegionMove {
                            region_id: r.id,
                            from: *from,
                            to_store: dst.id,
                            bytes: w,
                        },
                    ));
                }
            }
            best.map(|(_, m)| m)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::metapb::Region;

    fn store(id: u64, regions: i64, leaders: i64) -> (u64, StoreView) {
        (
            id,
            StoreView {
                id,
                state: StoreState::Up,
                regions,
                leaders,
                size: regions * REGION_SIZE_FLOOR,
            },
        )
    }

    fn rv(id: u64, stores: &[u64], leader_store: u64) -> RegionView {
        let peers: Vec<Peer> = stores
            .iter()
            .map(|s| Peer {
                id: id * 100 + s,
                store_id: *s,
                role: PeerRole::Voter as i32,
            })
            .collect();
        let leader = peers.iter().find(|p| p.store_id == leader_store).copied();
        RegionView {
            info: RegionInfo {
                region: Some(Region {
                    id,
                    peers,
                    ..Default::default()
                }),
                leader,
                ..Default::default()
            },
            pending: vec![],
            size_bytes: 0,
        }
    }

    #[test]
    fn leader_moves_from_busiest_to_idlest_follower_store() {
        let stores: HashMap<_, _> = [store(1, 3, 3), store(2, 3, 0), store(3, 3, 0)].into();
        let regions = vec![
            rv(1, &[1, 2, 3], 1),
            rv(2, &[1, 2, 3], 1),
            rv(3, &[1, 2, 3], 1),
        ];
        let m = balance_leader(&stores, &regions, |_| false, 3).expect("a move");
        assert_eq!(m.from.store_id, 1);
        assert_eq!(m.to.store_id, 2);
        // A busy region is skipped; balanced stores move nothing.
        let m = balance_leader(&stores, &regions, |id| id == 1, 3).expect("a move");
        assert_eq!(m.region_id, 2);
        let even: HashMap<_, _> = [store(1, 3, 1), store(2, 3, 1), store(3, 3, 1)].into();
        assert_eq!(balance_leader(&even, &regions, |_| false, 3), None);
    }

    #[test]
    fn region_moves_to_an_empty_store_preferring_followers() {
        let stores: HashMap<_, _> = [
            store(1, 2, 2),
            store(2, 2, 0),
            store(3, 2, 0),
            store(4, 0, 0),
        ]
        .into();
        let regions = vec![rv(1, &[1, 2, 3], 1), rv(2, &[1, 2, 3], 1)];
        let m = balance_region(&stores, &regions, |_| false, 3).expect("a move");
        assert_eq!(m.to_store, 4);
        assert_ne!(m.from.store_id, 1, "a follower moves before a leader");
        let mut unhealthy = regions.clone();
        for r in &mut unhealthy {
            r.pending = vec![r.info.region.as_ref().unwrap().peers[1]];
        }
        assert_eq!(balance_region(&stores, &unhealthy, |_| false, 3), None);
        let even: HashMap<_, _> = [store(1, 2, 1), store(2, 2, 1), store(3, 1, 0)].into();
        assert_eq!(balance_region(&even, &regions, |_| false, 3), None);
    }

    #[test]
    fn region_balance_weighs_bytes_and_never_reverses_the_gap() {
        const MIB: i64 = 1 << 20;
        let mut big = rv(1, &[1, 2, 3], 1);
        big.size_bytes = 100 * MIB as u64;
        let regions = vec![big, rv(2, &[1, 2, 3], 1)];
        let view = |id: u64, regions: i64, size: i64| {
            (
                id,
                StoreView {
                    id,
                    state: StoreState::Up,
                    regions,
                    leaders: 0,
                    size,
                },
            )
        };
        let with_store_4 = |regions: i64, size: i64| -> HashMap<u64, StoreView> {
            [
                view(1, 2, 300 * MIB),
                view(2, 2, 300 * MIB),
                view(3, 2, 300 * MIB),
                view(4, regions, size),
            ]
            .into()
        };
        // Store 4 holds the most replicas but the fewest bytes: it gets the
        // heaviest region that fits the gap, a follower replica.
        let m =
            balance_region(&with_store_4(10, 10 * MIB), &regions, |_| false, 3).expect("a move");
        assert_eq!((m.region_id, m.to_store, m.bytes), (1, 4, 100 * MIB));
        assert_ne!(m.from.store_id, 1, "the leader's replica stays");
        // A 150 MiB gap: moving 100 MiB would put store 4 ahead, so the
        // small region goes instead.
        let m =
            balance_region(&with_store_4(10, 150 * MIB), &regions, |_| false, 3).expect("a move");
        assert_eq!((m.region_id, m.bytes), (2, REGION_SIZE_FLOOR));
        // Within two floors of each other: nothing moves.
        assert_eq!(
            balance_region(&with_store_4(2, 299 * MIB), &regions, |_| false, 3),
            None
        );
    }
}
