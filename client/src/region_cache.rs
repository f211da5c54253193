//! [`RegionCache`]: what the client believes about regions and leaders.
//! It is only a hint: stores check every request's epoch, and their typed
//! errors update the cache.

use std::collections::BTreeMap;
use std::sync::RwLock;

use nokv_proto::metapb::{Peer, Region};
use nokv_proto::poison::RwLockExt;

/// A region and the peer believed to lead it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionRoute {
    /// The region as last seen.
    pub region: Region,
    /// Its believed leader.
    pub leader: Option<Peer>,
}

impl RegionRoute {
    /// Whether `key` falls in this region's range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.region.start_key.as_slice()
            && (self.region.end_key.is_empty() || key < self.region.end_key.as_slice())
    }
}

#[cfg(test)]
impl RegionRoute {
    /// A route over `[start, end)` with no peers and no leader, for tests
    /// of what is decided by ranges alone.
    pub(crate) fn over(start: &[u8], end: &[u8]) -> Self {
        RegionRoute {
            region: Region {
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                ..Default::default()
            },
            leader: None,
        }
    }
}

/// Cached routes by region start key.
#[derive(Debug, Default)]
pub struct RegionCache {
    routes: RwLock<BTreeMap<Vec<u8>, RegionRoute>>,
}

impl RegionCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached route containing `key`.
    pub fn locate(&self, key: &[u8]) -> Option<RegionRoute> {
        let routes = self.routes.read_unpoisoned();
        let (_, r) = routes.range(..=key.to_vec()).next_back()?;
        r.contains(key).then(|| r.clone())
    }

    /// Inserts a route, evicting cached routes that overlap it.
    pub fn insert(&self, route: RegionRoute) {
        let mut routes = self.routes.write_unpoisoned();
        let start = route.region.start_key.clone();
        let end = route.region.end_key.clone();
        routes.retain(|_, r| {
            let overlaps = (end.is_empty() || r.region.start_key < end)
                && (r.region.end_key.is_empty() || start < r.region.end_key);
            !overlaps
        });
        routes.insert(start, route);
    }

    /// Forgets a region (its epoch or placement changed).
    pub fn invalidate(&self, region_id: u64) {
        let mut routes = self.routes.write_unpoisoned();
        routes.retain(|_, r| r.region.id != region_id);
    }

    /// Records a new leader for a region.
    pub fn update_leader(&self, region_id: u64, leader: Peer) {
        let mut routes = self.routes.write_unpoisoned();
        for r in routes.values_mut() {
            if r.region.id == region_id {
                r.leader = Some(leader);
            }
        }
    }

    /// Moves the believed leader to the next peer (the current one is
    /// unreachable or does not know the leader).
    pub fn rotate_leader(&self, region_id: u64) {
        let mut routes = self.routes.write_unpoisoned();
        for r in routes.values_mut() {
            if r.region.id != region_id || r.region.peers.is_empty() {
                continue;
            }
            let pos = r
                .leader
                .as_ref()
                .and_then(|l| r.region.peers.iter().position(|p| p.id == l.id))
                .map(|i| (i + 1) % r.region.peers.len())
                .unwrap_or(0);
            r.leader = Some(r.region.peers[pos]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: u64, start: &[u8], end: &[u8]) -> RegionRoute {
        RegionRoute {
            region: Region {
                id,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                epoch: None,
                peers: vec![
                    Peer {
                        id: id * 10 + 1,
                        store_id: 1,
                        role: 0,
                    },
                    Peer {
                        id: id * 10 + 2,
                        store_id: 2,
                        role: 0,
                    },
                ],
            },
            leader: None,
        }
    }

    #[test]
    fn locate_respects_range_ends() {
        let c = RegionCache::new();
        c.insert(route(1, b"", b"m"));
        c.insert(route(2, b"m", b""));
        assert_eq!(c.locate(b"a").unwrap().region.id, 1);
        assert_eq!(c.locate(b"m").unwrap().region.id, 2);
        assert_eq!(c.locate(b"zzz").unwrap().region.id, 2);
    }

    #[test]
    fn insert_evicts_overlaps_and_gaps_are_misses() {
        let c = RegionCache::new();
        c.insert(route(1, b"", b""));
        c.insert(route(2, b"m", b"t"));
        assert!(
            c.locate(b"a").is_none(),
            "the old whole-range route must be evicted"
        );
        assert_eq!(c.locate(b"n").unwrap().region.id, 2);
        assert!(c.locate(b"u").is_none());
    }

    #[test]
    fn rotate_cycles_through_peers() {
        let c = RegionCache::new();
        c.insert(route(1, b"", b""));
        c.rotate_leader(1);
        assert_eq!(c.locate(b"x").unwrap().leader.unwrap().id, 11);
        c.rotate_leader(1);
        assert_eq!(c.locate(b"x").unwrap().leader.unwrap().id, 12);
        c.rotate_leader(1);
        assert_eq!(c.locate(b"x").unwrap().leader.unwrap().id, 11);
    }
}
