//! When a replica may sleep, and how it wakes: the queries hibernation asks
//! of a replica (is this leader idle, may this follower sleep for its
//! leader) and waking it. The protocol is described in `hibernation`.

use crate::raftstore::peer::Peer;

impl Peer {
    /// Wakes a hibernating replica. A leader that slept gets a full
    /// election timeout before check-quorum judges its followers, who may
    /// be asleep.
    pub fn wake(&mut self) {
        self.hibernation.wake();
        if self.raft.is_leader() {
            self.raft.reset_election_timer();
        }
    }

    /// The leader's last log index and its term.
    pub fn last_log(&self) -> (u64, u64) {
        self.raft.last_log()
    }

    /// Whether this leader has nothing in flight: every entry committed and
    /// applied, every peer's log equal to its own, no pending request,
    /// membership change, transfer or merge.
    pub fn idle_leader(&self) -> bool {
        if !self.raft.is_leader()
            || !self.is_initialized()
            || self.merge_state.is_some()
            || !self.unapplied.is_empty()
            || self.applying.tasks > 0
            || self.raft.pending_requests() > 0
        {
            return false;
        }
        let last = self.raft.last_index();
        if self.raft.committed() != last
            || self.apply_state.applied_index != last
            || self.raft.lead_transferee().is_some()
            || self.raft.pending_conf_index() > self.apply_state.applied_index
        {
            return false;
        }
        self.raft.progress().all(|(_, pr)| pr.matched == last)
    }

    /// Whether this follower may sleep on its leader `from`'s request whose
    /// log ends at `(index, term)` in leader term `leader_term`.
    pub fn may_sleep_for(&self, from: u64, leader_term: u64, index: u64, term: u64) -> bool {
        !self.raft.is_leader()
            && self.is_initialized()
            && from != raft::INVALID_ID
            && self.raft.leader_id() == from
            && self.raft.term() == leader_term
            && self.last_log() == (index, term)
            && self.raft.committed() == index
            && self.unapplied.is_empty()
            && self.applying.tasks == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::RaftConfig;
    use crate::engine::ALL_CFS;
    use crate::raftstore::snapshot::RegionSnapshotSource;
    use nokv_proto::metapb::{Peer as PeerMeta, PeerRole, Region, RegionEpoch};
    use rocksdb::WriteBatch;

    fn open(voters: &[(u64, u64)]) -> (tempfile::TempDir, Peer) {
        let tmp = tempfile::tempdir().expect("tmp");
        let db = nokv_consensus::engine::open(&tmp.path().join("db"), &ALL_CFS).expect("db");
        let region = Region {
            id: 2,
            start_key: vec![],
            end_key: vec![],
            epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: voters
                .iter()
                .map(|(id, store_id)| PeerMeta {
                    id: *id,
                    store_id: *store_id,
                    role: PeerRole::Voter as i32,
                })
                .collect(),
        };
        let mut wb = WriteBatch::default();
        crate::raftstore::peer::write_initial_state(&db, &region, &mut wb).expect("state");
        db.write(wb).expect("write");
        let snaps = Arc::new(
            RegionSnapshotSource::new(db.clone(), tmp.path().join("snap")).expect("snapshots"),
        );
        let peer =
            Peer::open(db, 1, region, voters[0].0, &RaftConfig::default(), snaps).expect("open");
        (tmp, peer)
    }

    #[test]
    fn a_leader_with_an_unapplied_entry_is_not_idle() {
        // A lone voter leads at once and appends an empty entry of its term,
        // which is neither committed nor applied until its Ready is handled.
        let (_tmp, leader) = open(&[(20, 1)]);
        assert!(leader.raft.is_leader());
        assert!(!leader.idle_leader());
    }

    #[test]
    fn a_follower_without_a_leader_never_sleeps() {
        let (_tmp, follower) = open(&[(20, 1), (21, 2), (22, 3)]);
        let (index, term) = follower.last_log();
        let leader_term = follower.raft.term();
        assert!(!follower.may_sleep_for(21, leader_term, index, term));
        assert!(!follower.may_sleep_for(0, leader_term, index, term));
    }
}
