//! The leader's view of the cluster: what this leader learned from
//! heartbeats in its term, beyond the replicated [`crate::state`]. It owns
//!
//! - store liveness: when each store last sent a heartbeat, and its stats;
//!   a store's live state (`Up`, `Disconnected`, `Down`) is worked out from
//!   that age;
//! - region load: what each region's leader last reported (pending and
//!   down peers, size and keys, read and write flow);
//! - range ages: since when each region's range has not shrunk, so the
//!   merge checker leaves fresh splits alone;
//! - routing-table gaps: the gap last seen and since when, so a gap is
//!   recorded as broken only once it outlives the grace period;
//! - the [`Operators`] in flight and their recent history.
//!
//! None of it is replicated. A member that becomes leader starts from an
//! empty view ([`ClusterView::lead`]): it counts every store alive from
//! the moment it took over, cancels the operators of earlier terms, and
//! waits a full interval before merging any region.
//!
//! The view holds no handle to raft: callers pass the leadership and the
//! applied records they read. It also defines [`StoreView`], the summary of
//! one store the checkers and schedulers decide on.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nokv_proto::coordinatorpb::{RegionHeartbeatRequest, RegionInfo, StoreInfo, StoreStats};
use nokv_proto::metapb::{Peer, Region, Store, StoreState};

use crate::operator::Operators;
use crate::raft_loop::Leadership;
use nokv_proto::poison::MutexExt;

/// A store as the checkers and schedulers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreView {
    /// Store id.
    pub id: u64,
    /// Its live state (from heartbeat age and decommission).
    pub state: StoreState,
    /// Replicas it holds, counting operators in flight.
    pub regions: i64,
    /// Leaders it holds, counting operators in flight.
    pub leaders: i64,
    /// Bytes of its replicas, each region weighing at least the floor of
    /// balance-region (`balance::REGION_SIZE_FLOOR`), counting operators
    /// in flight.
    pub size: i64,
}

/// A key range `[from, to)`; an empty `to` is the end of the key space.
pub type KeyRange = (Vec<u8>, Vec<u8>);

/// When a store last sent a heartbeat, and what it said.
struct Liveness {
    last_heartbeat: Instant,
    /// The same moment as wall-clock ms, for display.
    last_heartbeat_ms: u64,
    stats: StoreStats,
}

/// What a region's leader last reported about it.
#[derive(Debug, Clone, Default)]
pub struct RegionLoad {
    /// Peers the leader reports as not caught up.
    pub pending_peers: Vec<Peer>,
    /// Peers the leader has not heard from.
    pub down_peers: Vec<Peer>,
    /// Approximate size in bytes.
    pub approximate_size_bytes: u64,
    /// Approximate number of keys.
    pub approximate_keys: u64,
    /// The leader counted the size above in its current term.
    pub size_measured: bool,
    /// The reporting leader's term.
    term: u64,
    /// Bytes and keys read and written over the leader's last heartbeat
    /// interval, as sent.
    flow: Flow,
}

/// A region leader's read and write flow over one heartbeat interval.
#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    bytes_written: u64,
    keys_written: u64,
    bytes_read: u64,
    keys_read: u64,
    interval_ms: u64,
}

/// A region's range as this leader last saw it, and since when it has not
/// shrunk.
struct RangeAge {
    start: Vec<u8>,
    end: Vec<u8>,
    since: Instant,
}

/// A gap in the routing table, when first seen, and whether it was
/// already recorded.
struct SeenGaps {
    gaps: Vec<KeyRange>,
    since: Instant,
    recorded: bool,
}

/// The leader's in-memory view of the cluster.
pub struct ClusterView {
    /// A store silent for longer is Disconnected.
    disconnect_after_ms: u64,
    /// A store silent for longer is Down.
    down_after_ms: u64,
    stores: Mutex<HashMap<u64, Liveness>>,
    regions: Mutex<HashMap<u64, RegionLoad>>,
    range_ages: Mutex<HashMap<u64, RangeAge>>,
    gaps: Mutex<Option<SeenGaps>>,
    /// Term in which this member last became leader, and when.
    leader_since: Mutex<(u64, Instant)>,
    operators: Operators,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock_unpoisoned()
}

impl ClusterView {
    /// An empty view. A store without a heartbeat for `disconnect_after_ms`
    /// is Disconnected, for `down_after_ms` Down; an operator step without
    /// a timeout of its own gets `step_timeout`.
    pub fn new(disconnect_after_ms: u64, down_after_ms: u64, step_timeout: Duration) -> Self {
        ClusterView {
            disconnect_after_ms,
            down_after_ms,
            stores: Mutex::new(HashMap::new()),
            regions: Mutex::new(HashMap::new()),
            range_ages: Mutex::new(HashMap::new()),
            gaps: Mutex::new(None),
            leader_since: Mutex::new((0, Instant::now())),
            operators: Operators::new(step_timeout),
        }
    }

    /// The operators in flight and their recent history.
    pub fn operators(&self) -> &Operators {
        &self.operators
    }

    /// Whether this member may act as leader now: it is the ready leader.
    /// The first call in a new term forgets what earlier terms saw (store
    /// heartbeats, range ages) and cancels their operators, which may have
    /// been overtaken.
    pub fn lead(&self, leadership: Leadership, now: Instant) -> bool {
        if !leadership.ready_leader {
            return false;
        }
        let mut since = lock(&self.leader_since);
        if since.0 != leadership.term {
            // Heartbeats seen by earlier leaders are unknown here: count
            // every store as alive from now on.
            *since = (leadership.term, now);
            lock(&self.stores).clear();
            self.operators.cancel_all("the coordinator leader changed");
            // Splits seen by earlier leaders are unknown here too: the
            // merge checker waits a full interval for every region.
            lock(&self.range_ages).clear();
        }
        true
    }

    /// Notes a heartbeat of `store_id` at `now`, with its stats if sent.
    pub fn touch_store(&self, store_id: u64, stats: Option<StoreStats>, now: Instant) {
        let now_ms = crate::tso::now_ms();
        let mut stores = lock(&self.stores);
        let entry = stores.entry(store_id).or_insert_with(|| Liveness {
            last_heartbeat: now,
            last_heartbeat_ms: now_ms,
            stats: StoreStats {
                store_id,
                ..Default::default()
            },
        });
        entry.last_heartbeat = now;
        entry.last_heartbeat_ms = now_ms;
        if let Some(s) = stats {
            entry.stats = s;
        }
    }

    /// The live state of `store` at `now` and its last heartbeat in
    /// wall-clock ms (0 if none). `Offline` and `Tombstone` are replicated
    /// and returned as they are, and so is every state on a member that is
    /// not the ready leader (it does not see heartbeats). A store not heard
    /// from in this term counts from when this member became leader.
    pub fn live_state(&self, store: &Store, ready_leader: bool, now: Instant) -> (StoreState, u64) {
        let state = store.state();
        if matches!(state, StoreState::Offline | StoreState::Tombstone) || !ready_leader {
            return (state, 0);
        }
        let (since, last_ms) = match lock(&self.stores).get(&store.id) {
            Some(l) => (l.last_heartbeat, l.last_heartbeat_ms),
            None => (lock(&self.leader_since).1, 0),
        };
        let silent_ms = now.saturating_duration_since(since).as_millis() as u64;
        let live = if silent_ms > self.down_after_ms {
            StoreState::Down
        } else if silent_ms > self.disconnect_after_ms {
            StoreState::Disconnected
        } else {
            StoreState::Up
        };
        (live, last_ms)
    }

    /// `store` with its live state, last heartbeat and stats filled in.
    pub fn store_info(&self, store: &Store, ready_leader: bool, now: Instant) -> StoreInfo {
        let (state, last_ms) = self.live_state(store, ready_leader, now);
        let mut store = store.clone();
        store.state = state as i32;
        store.last_heartbeat_ms = last_ms;
        let stats = lock(&self.stores).get(&store.id).map(|l| l.stats);
        StoreInfo {
            store: Some(store),
            stats,
        }
    }

    /// Notes what a region heartbeat reports about the region's load.
    pub fn record_region(&self, hb: &RegionHeartbeatRequest) {
        let Some(region) = &hb.region else {
            return;
        };
        let load = RegionLoad {
            pending_peers: hb.pending_peers.clone(),
            down_peers: hb.down_peers.clone(),
            approximate_size_bytes: hb.approximate_size_bytes,
            approximate_keys: hb.approximate_keys,
            size_measured: hb.size_measured,
            term: hb.term,
            flow: Flow {
                bytes_written: hb.bytes_written,
                keys_written: hb.keys_written,
                bytes_read: hb.bytes_read,
                keys_read: hb.keys_read,
                interval_ms: hb.interval_ms,
            },
        };
        lock(&self.regions).insert(region.id, load);
    }

    /// What the region's leader last reported, if it did in this view.
    pub fn region_load(&self, region_id: u64) -> Option<RegionLoad> {
        lock(&self.regions).get(&region_id).cloned()
    }

    /// Every region's approximate size as its leader last reported it.
    pub fn region_sizes(&self) -> HashMap<u64, u64> {
        lock(&self.regions)
            .iter()
            .map(|(id, l)| (*id, l.approximate_size_bytes))
            .collect()
    }

    /// `info` with what the region's leader last reported filled in.
    pub fn region_info(&self, mut info: RegionInfo) -> RegionInfo {
        let id = info.region.as_ref().map(|r| r.id).unwrap_or(0);
        if let Some(load) = lock(&self.regions).get(&id) {
            info.pending_peers = load.pending_peers.clone();
            info.down_peers = load.down_peers.clone();
            info.approximate_size_bytes = load.approximate_size_bytes;
            info.approximate_keys = load.approximate_keys;
            info.term = load.term;
            info.bytes_written = load.flow.bytes_written;
            info.keys_written = load.flow.keys_written;
            info.bytes_read = load.flow.bytes_read;
            info.keys_read = load.flow.keys_read;
            info.interval_ms = load.flow.interval_ms;
        }
        info
    }

    /// Notes `region`'s range as of `now`: a range that shrank (a split) or
    /// is new restarts its clock; one that grew (a merge) keeps it.
    pub fn observe_range(&self, region: &Region, now: Instant) {
        let fresh = || RangeAge {
            start: region.start_key.clone(),
            end: region.end_key.clone(),
            since: now,
        };
        let mut ages = lock(&self.range_ages);
        match ages.get_mut(&region.id) {
            None => {
                ages.insert(region.id, fresh());
            }
            Some(a) if a.start != region.start_key || a.end != region.end_key => {
                let unbounded = |k: &[u8]| k.is_empty();
                let grew = region.start_key <= a.start
                    && (unbounded(&region.end_key)
                        || (!unbounded(&a.end) && region.end_key >= a.end));
                let since = a.since;
                *a = fresh();
                if grew {
                    a.since = since;
                }
            }
            Some(_) => {}
        }
    }

    /// How long `region_id`'s range has not shrunk as of `now`, as this
    /// leader watched it (zero when it has not seen the region yet).
    pub fn range_stable_for(&self, region_id: u64, now: Instant) -> Duration {
        lock(&self.range_ages)
            .get(&region_id)
            .map_or(Duration::ZERO, |a| now.saturating_duration_since(a.since))
    }

    /// Forgets the range ages of regions not in `known` (merged away).
    pub fn retain_ranges(&self, known: &HashSet<u64>) {
        lock(&self.range_ages).retain(|id, _| known.contains(id));
    }

    /// Notes the routing table's gaps as of `now`; true exactly once per
    /// gap, when it has lasted longer than `grace` (the caller records it
    /// then). A changed gap starts over; no gap clears what was seen.
    pub fn note_gaps(&self, gaps: &[KeyRange], grace: Duration, now: Instant) -> bool {
        let mut seen = lock(&self.gaps);
        if gaps.is_empty() {
            *seen = None;
            return false;
        }
        match seen.as_mut() {
            Some(s) if s.gaps == gaps => {
                if !s.recorded && now.saturating_duration_since(s.since) > grace {
                    s.recorded = true;
                    return true;
                }
                false
            }
            _ => {
                *seen = Some(SeenGaps {
                    gaps: gaps.to_vec(),
                    since: now,
                    recorded: false,
                });
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::coordinatorpb::Operator;
    use nokv_proto::metapb::RegionEpoch;

    const S: Duration = Duration::from_secs(1);

    fn view() -> ClusterView {
        ClusterView::new(3_000, 10_000, 10 * S)
    }

    fn leader(term: u64) -> Leadership {
        Leadership {
            leader_id: 1,
            term,
            ready_leader: true,
        }
    }

    fn store(id: u64, state: StoreState) -> Store {
        Store {
            id,
            state: state as i32,
            ..Default::default()
        }
    }

    fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_store_goes_disconnected_then_down_as_its_heartbeats_age() {
        let v = view();
        let t0 = Instant::now();
        assert!(v.lead(leader(1), t0));
        let s = store(4, StoreState::Up);
        v.touch_store(4, None, t0);
        let state_at = |t: Instant| v.live_state(&s, true, t).0;
        assert_eq!(state_at(t0 + 3 * S), StoreState::Up);
        assert_eq!(state_at(t0 + 4 * S), StoreState::Disconnected);
        assert_eq!(state_at(t0 + 11 * S), StoreState::Down);
        v.touch_store(4, None, t0 + 11 * S);
        assert_eq!(state_at(t0 + 12 * S), StoreState::Up);
        assert_ne!(v.live_state(&s, true, t0).1, 0, "last heartbeat in ms");
    }

    #[test]
    fn replicated_states_and_followers_pass_the_stored_state_through() {
        let v = view();
        let t0 = Instant::now();
        assert!(v.lead(leader(1), t0));
        let late = t0 + 60 * S;
        for state in [StoreState::Offline, StoreState::Tombstone] {
            assert_eq!(v.live_state(&store(1, state), true, late), (state, 0));
        }
        let up = store(2, StoreState::Up);
        assert_eq!(v.live_state(&up, false, late), (StoreState::Up, 0));
        assert_eq!(v.live_state(&up, true, late).0, StoreState::Down);
    }

    #[test]
    fn a_new_term_forgets_heartbeats_ages_and_operators() {
        let v = view();
        let t0 = Instant::now();
        assert!(!v.lead(Leadership::default(), t0), "not the ready leader");
        assert!(v.lead(leader(1), t0));
        v.touch_store(4, None, t0);
        v.observe_range(&region(9, b"", b""), t0);
        let op = Operator {
            id: 1,
            region_id: 9,
            steps: vec![crate::operator::transfer_leader(Peer::default(), 0)],
            ..Default::default()
        };
        v.operators()
            .add(op, RegionEpoch::default(), vec![])
            .expect("added");
        let later = t0 + 20 * S;
        // The same term changes nothing.
        assert!(v.lead(leader(1), later));
        assert!(v.operators().is_busy(9));
        assert_eq!(v.range_stable_for(9, later), 20 * S);
        // Term 2 starts over: store 4 counts as alive from `later` on.
        assert!(v.lead(leader(2), later));
        assert!(!v.operators().is_busy(9));
        assert_eq!(v.range_stable_for(9, later), Duration::ZERO);
        let s = store(4, StoreState::Up);
        assert_eq!(v.live_state(&s, true, later + S), (StoreState::Up, 0));
        assert_eq!(
            v.live_state(&s, true, later + 4 * S).0,
            StoreState::Disconnected
        );
    }

    #[test]
    fn a_split_restarts_the_range_clock_and_a_merge_keeps_it() {
        let v = view();
        let t0 = Instant::now();
        v.observe_range(&region(1, b"", b"m"), t0);
        assert_eq!(v.range_stable_for(1, t0 + S), S);
        // Grew (absorbed its right neighbour): the clock keeps running.
        v.observe_range(&region(1, b"", b""), t0 + 2 * S);
        assert_eq!(v.range_stable_for(1, t0 + 3 * S), 3 * S);
        // Shrank (split): the clock restarts.
        v.observe_range(&region(1, b"", b"f"), t0 + 4 * S);
        assert_eq!(v.range_stable_for(1, t0 + 5 * S), S);
        v.retain_ranges(&HashSet::new());
        assert_eq!(v.range_stable_for(1, t0 + 5 * S), Duration::ZERO);
    }

    #[test]
    fn a_gap_is_recorded_once_after_the_grace_period() {
        let v = view();
        let t0 = Instant::now();
        let gap = vec![(b"c".to_vec(), b"d".to_vec())];
        assert!(!v.note_gaps(&gap, 30 * S, t0));
        assert!(!v.note_gaps(&gap, 30 * S, t0 + 30 * S));
        assert!(v.note_gaps(&gap, 30 * S, t0 + 31 * S));
        assert!(!v.note_gaps(&gap, 30 * S, t0 + 40 * S), "only once");
        // Another gap starts over; tiling again clears it.
        let other = vec![(b"x".to_vec(), Vec::new())];
        assert!(!v.note_gaps(&other, 30 * S, t0 + 41 * S));
        assert!(!v.note_gaps(&[], 30 * S, t0 + 80 * S));
        assert!(!v.note_gaps(&other, 30 * S, t0 + 81 * S));
        assert!(v.note_gaps(&other, 30 * S, t0 + 112 * S));
    }

    #[test]
    fn region_info_carries_what_the_leader_last_reported() {
        let v = view();
        let r = region(5, b"a", b"b");
        let info = RegionInfo {
            region: Some(r.clone()),
            ..Default::default()
        };
        assert_eq!(v.region_info(info.clone()), info, "nothing reported yet");
        let pending = Peer {
            id: 51,
            store_id: 2,
            role: 0,
        };
        v.record_region(&RegionHeartbeatRequest {
            region: Some(r),
            pending_peers: vec![pending],
            approximate_size_bytes: 4096,
            approximate_keys: 8,
            size_measured: true,
            term: 7,
            bytes_written: 100,
            interval_ms: 10_000,
            ..Default::default()
        });
        let filled = v.region_info(info);
        assert_eq!(filled.pending_peers, vec![pending]);
        assert_eq!(
            (
                filled.approximate_size_bytes,
                filled.approximate_keys,
                filled.term
            ),
            (4096, 8, 7)
        );
        assert_eq!((filled.bytes_written, filled.interval_ms), (100, 10_000));
        assert_eq!(v.region_sizes().get(&5), Some(&4096));
        assert!(v.region_load(5).is_some_and(|l| l.size_measured));
    }
}
