//! The data model of a survey: the cluster as plain data (stores,
//! regions with their peers' raft progress, operators), and what is
//! derived from it alone (rates, lag, voters), so the TUI and the doctor
//! are pure functions of it.

use nokv_proto::coordinatorpb::{RegionInfo, StoreStats};
use nokv_proto::metapb::{PeerRole, StoreState};
use serde::Serialize;

use crate::status_http::RequestTotals;

/// The cluster as seen at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    /// Unix ms when the survey finished.
    pub taken_at_ms: u64,
    /// Cluster id from the coordinator's response header (0 = not
    /// bootstrapped).
    pub cluster_id: u64,
    /// Coordinator members.
    pub members: Vec<Member>,
    /// The member that leads the coordinator group, if one is known.
    pub leader_member_id: Option<u64>,
    /// Every store, by id.
    pub stores: Vec<Store>,
    /// Every region, in key order.
    pub regions: Vec<Region>,
    /// Scheduling operators, or why they could not be listed.
    pub operators: Operators,
}

/// Read and write rates over the last heartbeat interval of a region's
/// leader (or of a store, summed over the regions it leads), as the
/// coordinator last heard them. JSON field names are stable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlowRates {
    /// Bytes of keys and values read per second (gets and scans).
    pub read_bytes_per_sec: u64,
    /// Keys read per second.
    pub read_keys_per_sec: u64,
    /// Bytes of keys and values written per second (applied writes).
    pub write_bytes_per_sec: u64,
    /// Keys written per second.
    pub write_keys_per_sec: u64,
}

impl FlowRates {
    /// Rates from the counts of one interval of `interval_ms` (all zero
    /// when the interval is empty: nothing measured yet).
    pub fn from_counts(
        bytes_read: u64,
        keys_read: u64,
        bytes_written: u64,
        keys_written: u64,
        interval_ms: u64,
    ) -> Self {
        let per_sec = |n: u64| n.saturating_mul(1000).checked_div(interval_ms).unwrap_or(0);
        FlowRates {
            read_bytes_per_sec: per_sec(bytes_read),
            read_keys_per_sec: per_sec(keys_read),
            write_bytes_per_sec: per_sec(bytes_written),
            write_keys_per_sec: per_sec(keys_written),
        }
    }

    /// From a region as the coordinator reports it.
    pub fn of_region(info: &RegionInfo) -> Self {
        Self::from_counts(
            info.bytes_read,
            info.keys_read,
            info.bytes_written,
            info.keys_written,
            info.interval_ms,
        )
    }

    /// From a store's last heartbeat.
    pub fn of_store(stats: &StoreStats) -> Self {
        Self::from_counts(
            stats.bytes_read,
            stats.keys_read,
            stats.bytes_written,
            stats.keys_written,
            stats.interval_ms,
        )
    }
}

/// One coordinator member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Raft id of the member.
    pub id: u64,
    /// Display name (`coordinator-N`).
    pub name: String,
    /// gRPC address.
    pub address: String,
}

/// One store as the coordinator and the store itself report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Store id.
    pub id: u64,
    /// gRPC address.
    pub address: String,
    /// HTTP status address.
    pub status_address: String,
    /// Live state from the coordinator leader.
    pub state: StoreState,
    /// Size of the filesystem holding the store's data (0 = unknown).
    pub capacity_bytes: u64,
    /// Free bytes on it.
    pub available_bytes: u64,
    /// Bytes the store's RocksDB files take.
    pub used_bytes: u64,
    /// Region replicas, from the last store heartbeat.
    pub region_count: u64,
    /// Region leaders, from the last store heartbeat.
    pub leader_count: u64,
    /// Unix ms of the last heartbeat (0 = none since the leader took over).
    pub last_heartbeat_ms: u64,
    /// Bytes and keys its leaders read and wrote per second, from its last
    /// heartbeat.
    pub flow: FlowRates,
    /// Read and write requests served since the node started, when its
    /// `/metrics` answered.
    pub requests: Option<RequestTotals>,
    /// Why the store's Admin API did not answer, when it did not.
    pub admin_error: Option<String>,
}

impl Store {
    /// Whether the store serves its replicas: Up for the coordinator, and
    /// its Admin API answers.
    pub fn is_serving(&self) -> bool {
        self.state == StoreState::Up && self.admin_error.is_none()
    }
}

/// One replica of a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Peer id.
    pub id: u64,
    /// Store hosting it.
    pub store_id: u64,
    /// Voter or learner.
    pub role: PeerRole,
    /// Highest log index the leader knows this peer holds (leader's
    /// progress; the leader itself counts its last index).
    pub matched: Option<u64>,
    /// The leader's replication state for it: `Probe`, `Replicate` or
    /// `Snapshot`.
    pub progress_state: Option<String>,
    /// Commit index on the peer's own store.
    pub commit_index: Option<u64>,
    /// Applied index on the peer's own store.
    pub applied_index: Option<u64>,
    /// Client sessions its region's session table holds on its own store.
    pub sessions: Option<u64>,
    /// The leader reports it as catching up (behind the truncated log, or
    /// not answering yet).
    pub pending: bool,
    /// The coordinator reports it as down.
    pub down: bool,
}

impl Peer {
    /// Whether the leader is sending, or must send, it a snapshot.
    pub fn needs_snapshot(&self) -> bool {
        self.progress_state.as_deref() == Some("Snapshot")
    }
}

/// One region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Region id.
    pub id: u64,
    /// First key (inclusive; empty = start of the key space).
    pub start_key: Vec<u8>,
    /// End key (exclusive; empty = end of the key space).
    pub end_key: Vec<u8>,
    /// Epoch version (splits and merges).
    pub version: u64,
    /// Epoch conf_ver (membership changes).
    pub conf_ver: u64,
    /// Replicas.
    pub peers: Vec<Peer>,
    /// Leader's peer id (0 = unknown).
    pub leader_peer_id: u64,
    /// Leader's store id (0 = unknown).
    pub leader_store_id: u64,
    /// Keys, as the leader last counted them.
    pub approximate_keys: u64,
    /// Bytes of keys and values, as the leader last counted them.
    pub approximate_size_bytes: u64,
    /// The leader's last log index, when its store answered.
    pub leader_last_index: Option<u64>,
    /// The leader's commit index, when its store answered.
    pub leader_commit_index: Option<u64>,
    /// Bytes and keys its leader read and wrote per second, from its last
    /// heartbeat.
    pub flow: FlowRates,
}

impl Region {
    /// How many log entries `peer` is behind the leader: by the leader's
    /// progress when known, else by the peer's own applied index against
    /// the leader's commit index. `None` when neither side answered.
    pub fn lag(&self, peer: &Peer) -> Option<u64> {
        if peer.id == self.leader_peer_id {
            return Some(0);
        }
        if let (Some(last), Some(m)) = (self.leader_last_index, peer.matched) {
            return Some(last.saturating_sub(m));
        }
        match (self.leader_commit_index, peer.applied_index) {
            (Some(c), Some(a)) => Some(c.saturating_sub(a)),
            _ => None,
        }
    }

    /// Whether `peer` is behind by more than `threshold` entries or needs a
    /// snapshot.
    pub fn is_lagging(&self, peer: &Peer, threshold: u64) -> bool {
        peer.needs_snapshot() || self.lag(peer).is_some_and(|l| l > threshold)
    }

    /// The largest lag among the peers (0 when none is known).
    pub fn max_lag(&self) -> u64 {
        self.peers
            .iter()
            .filter_map(|p| self.lag(p))
            .max()
            .unwrap_or(0)
    }

    /// Voters among the peers.
    pub fn voters(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| p.role == PeerRole::Voter)
            .count()
    }
}

/// The coordinator's scheduling operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Operators {
    /// Not asked for.
    #[default]
    NotAsked,
    /// The coordinator could not list them; the text says why (today:
    /// `GetOperators` answers UNIMPLEMENTED).
    Unavailable(String),
    /// The operators, running and finished.
    Listed(Vec<Operator>),
}

/// One scheduling operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Operator id.
    pub id: u64,
    /// Region it works on.
    pub region_id: u64,
    /// What it does (e.g. `add-replica`).
    pub kind: String,
    /// Its steps, described.
    pub steps: Vec<String>,
    /// Index of the step in progress.
    pub current_step: u32,
    /// `Running`, `Succeeded`, `Cancelled`, `TimedOut` or `Failed`.
    pub state: String,
    /// Who created it (a checker, a scheduler, an operator).
    pub source: String,
    /// Unix ms of creation.
    pub created_at_ms: u64,
    /// Unix ms it finished (0 = running).
    pub finished_at_ms: u64,
    /// Sum of the steps' timeouts, ms (0 = none set).
    pub timeout_ms: u64,
    /// Result or error text.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::fixture::*;

    #[test]
    fn flow_rates_are_counts_over_the_interval() {
        let r = FlowRates::from_counts(4000, 10, 1000, 3, 2000);
        assert_eq!(
            r,
            FlowRates {
                read_bytes_per_sec: 2000,
                read_keys_per_sec: 5,
                write_bytes_per_sec: 500,
                write_keys_per_sec: 1,
            }
        );
        assert_eq!(
            FlowRates::from_counts(4000, 10, 1000, 3, 0),
            FlowRates::default(),
            "an empty interval measured nothing"
        );
        assert_eq!(
            FlowRates::from_counts(u64::MAX, 0, 0, 0, 1000).read_bytes_per_sec,
            u64::MAX / 1000,
            "saturates instead of overflowing"
        );
    }

    #[test]
    fn lag_uses_the_leaders_progress_then_applied_indexes() {
        let s = survey();
        let r = &s.regions[1];
        assert_eq!(r.lag(&r.peers[1]), Some(0), "the leader never lags");
        assert_eq!(r.lag(&r.peers[2]), Some(500));
        assert!(r.is_lagging(&r.peers[2], 100));
        assert!(!r.is_lagging(&r.peers[2], 500));
        assert_eq!(r.max_lag(), 500);

        let mut no_progress = r.clone();
        no_progress.peers[0].matched = None;
        no_progress.peers[0].applied_index = Some(850);
        assert_eq!(no_progress.lag(&no_progress.peers[0]), Some(50));
        no_progress.peers[0].applied_index = None;
        assert_eq!(no_progress.lag(&no_progress.peers[0]), None);
    }

    #[test]
    fn a_peer_in_snapshot_state_counts_as_lagging() {
        let s = survey();
        let r = &s.regions[0];
        let mut p = r.peers[1].clone();
        assert!(!r.is_lagging(&p, 100));
        p.progress_state = Some("Snapshot".into());
        assert!(r.is_lagging(&p, 100));
    }
}
