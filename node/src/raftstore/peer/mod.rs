//! [`Peer`]: one replica of one region on this store: its raft driver, the
//! region it believes in, and how far it has applied.

pub mod batch;
pub mod hibernation;
pub mod propose;
mod sleep;

use std::collections::HashMap;
use std::sync::Arc;

use nokv_consensus::engine::{cf, CF_META};
use nokv_consensus::keys::{apply_state_key, region_state_key};
use nokv_consensus::{RaftPeer, RaftPeerConfig, RocksRaftLog, SnapshotSource};
use nokv_proto::adminpb::{PeerProgress, RegionStatus};
use nokv_proto::coordinatorpb::RegionHeartbeatRequest;
use nokv_proto::metapb::{self, Region};
use nokv_proto::raft_cmdpb::RaftCmdResponse;
use nokv_proto::raft_serverpb::{
    ApplyState, MergeState, PeerState, RaftTruncatedState, RegionLocalState,
};
use prost::Message;
use raft::prelude::Entry;
use rocksdb::{WriteBatch, DB};

use crate::config::RaftConfig;
use crate::region::conf_state_of;
use crate::Result;

/// Log index and term a bootstrapped region starts at. Starting above zero
/// means a new replica never finds the beginning of the log and is always
/// initialized by a snapshot, which carries the membership.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// See [`RAFT_INIT_LOG_INDEX`].
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// Writes the state a freshly created region replica starts from (region
/// state, apply state and hard state at [`RAFT_INIT_LOG_INDEX`]) into `wb`.
/// A hard state already on disk with a higher term (an uninitialized replica
/// that voted or heard from a leader) is kept: forgetting a vote is unsafe.
pub fn write_initial_state(db: &DB, region: &Region, wb: &mut WriteBatch) -> Result<()> {
    use nokv_consensus::engine::CF_RAFT;
    use nokv_consensus::keys::hard_state_key;
    use protobuf::Message as _;
    let local = RegionLocalState {
        region: Some(region.clone()),
        state: PeerState::Normal as i32,
        merge_state: None,
        applying_snapshot: None,
    };
    wb.put_cf(
        cf(db, CF_META)?,
        region_state_key(region.id),
        local.encode_to_vec(),
    );
    let apply = ApplyState {
        applied_index: RAFT_INIT_LOG_INDEX,
        applied_term: RAFT_INIT_LOG_TERM,
        truncated_state: Some(RaftTruncatedState {
            index: RAFT_INIT_LOG_INDEX,
            term: RAFT_INIT_LOG_TERM,
        }),
    };
    wb.put_cf(
        cf(db, CF_META)?,
        apply_state_key(region.id),
        apply.encode_to_vec(),
    );
    let existing = db
        .get_cf(cf(db, CF_RAFT)?, hard_state_key(region.id))?
        .and_then(|b| raft::prelude::HardState::parse_from_bytes(&b).ok());
    let hs = match existing {
        Some(hs) if hs.term > RAFT_INIT_LOG_TERM => raft::prelude::HardState {
            commit: hs.commit.max(RAFT_INIT_LOG_INDEX),
            ..hs
        },
        _ => raft::prelude::HardState {
            term: RAFT_INIT_LOG_TERM,
            commit: RAFT_INIT_LOG_INDEX,
            ..Default::default()
        },
    };
    let hs = hs
        .write_to_bytes()
        .map_err(|e| crate::Error::Corrupted(format!("hard state: {e}")))?;
    wb.put_cf(cf(db, CF_RAFT)?, hard_state_key(region.id), hs);
    Ok(())
}

/// Writes `state` as the apply state of `region_id` into `wb` (with the
/// data it covers: every apply write puts it last).
pub fn write_apply_state(
    db: &DB,
    region_id: u64,
    state: &ApplyState,
    wb: &mut WriteBatch,
) -> Result<()> {
    wb.put_cf(
        cf(db, CF_META)?,
        apply_state_key(region_id),
        state.encode_to_vec(),
    );
    Ok(())
}

/// A follower whose matched index is this far behind the commit index is
/// reported as pending (not caught up).
const PENDING_LAG_ENTRIES: u64 = 100;

/// A source replica absorbed by a CommitMerge applied on this store.
#[derive(Debug, Clone, Copy)]
pub struct MergedSource {
    /// The source region.
    pub region_id: u64,
    /// The diagnostics transition of the merge, on the store that planned it.
    pub transition: Option<u64>,
}

/// Data entries of one region handed to the apply pool and not reported
/// back yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applying {
    /// Tasks in flight.
    pub tasks: usize,
    /// Entries in those tasks.
    pub entries: usize,
    /// Index and term of the last entry handed over.
    pub last: (u64, u64),
}

/// One region replica.
pub struct Peer {
    /// The region as this replica has applied it. Empty peers and range
    /// mean the replica is not initialized yet (waiting for a snapshot).
    pub region: Region,
    /// This replica's own peer record.
    pub meta: metapb::Peer,
    /// The raft driver; proposals answer with `RaftCmdResponse`.
    pub raft: RaftPeer<RaftCmdResponse>,
    /// Applied and truncated indexes, persisted with applied data.
    pub apply_state: ApplyState,
    /// Store ids of peers learned from incoming messages (an uninitialized
    /// replica knows no region peers yet).
    pub peer_stores: HashMap<u64, u64>,
    /// Set when a conf change removed this replica.
    pub pending_destroy: bool,
    /// Regions created by a split this replica just applied; the raftstore
    /// opens their replicas on this store.
    pub pending_splits: Vec<Region>,
    /// Ticks since the last log GC check.
    pub ticks_since_log_gc: u64,
    /// Ticks since the last split check.
    pub ticks_since_split_check: u64,
    /// Data was written since the last split check.
    pub written_since_split_check: bool,
    /// Keys in the region, as last counted.
    pub approximate_keys: u64,
    /// Bytes in the region, as last counted.
    pub approximate_size_bytes: u64,
    /// The counts above were measured while this replica leads; until
    /// then the coordinator must not take the region for empty.
    pub size_measured: bool,
    /// Bytes and keys of data this replica applied since the raftstore
    /// last took them (it counts them as region flow while leading).
    pub written: crate::flow::FlowCount,
    /// Writes received this round, proposed as one entry when it ends.
    pub proposal_batch: crate::raftstore::peer::batch::ProposalBatch,
    /// Leadership as of the previous round, to notice changes.
    pub was_leader: bool,
    /// Ticks since the last region heartbeat.
    pub ticks_since_heartbeat: u64,
    /// Send a region heartbeat at the next opportunity.
    pub heartbeat_due: bool,
    /// Peers the last region heartbeat reported as not caught up; while
    /// some are, a change is reported at once (the coordinator promotes a
    /// learner, or moves on, as soon as it hears).
    pub reported_pending: usize,
    /// Peers the last region heartbeat reported as down; a change is
    /// reported at once.
    pub reported_down: usize,
    /// Set from the PrepareMerge that froze this region (as a merge
    /// source) until the merge commits or rolls back.
    pub merge_state: Option<MergeState>,
    /// Committed entries not handed to apply yet, in log order: behind an
    /// admin entry that waits for the apply pool to finish this region's
    /// data entries, or from a CommitMerge that waits for its source
    /// replica on this store (retried every tick).
    pub unapplied: Vec<Entry>,
    /// Data entries in the apply pool, not reported back yet.
    pub applying: Applying,
    /// Ticks since this merge source leader last pushed its merge on.
    pub ticks_since_merge_step: u64,
    /// Source replicas a CommitMerge just absorbed, for the raftstore to
    /// record.
    pub merged_sources: Vec<MergedSource>,
    /// The diagnostics transition of the merge this replica proposed.
    pub merge_transition: Option<u64>,
    /// A RollbackMerge was just applied (the raftstore records it).
    pub merge_rolled_back: bool,
    /// Whether the replica sleeps (stops ticking) while idle.
    pub hibernation: crate::raftstore::peer::hibernation::Hibernation,
    /// The region's client sessions (exactly-once raw writes), shared with
    /// the apply thread that applies its data entries.
    pub sessions: crate::raftstore::session::SharedSessions,
}

impl Peer {
    /// Opens a replica of `region` with peer id `peer_id` on `store_id`,
    /// loading its apply state (zero for a replica that is new here).
    pub fn open(
        db: Arc<DB>,
        store_id: u64,
        region: Region,
        peer_id: u64,
        cfg: &RaftConfig,
        snapshots: Arc<dyn SnapshotSource>,
    ) -> Result<Peer> {
        let apply_state = match db.get_cf(cf(&db, CF_META)?, apply_state_key(region.id))? {
            Some(b) => ApplyState::decode(b.as_slice())?,
            None => ApplyState::default(),
        };
        let merge_state = match db.get_cf(cf(&db, CF_META)?, region_state_key(region.id))? {
            Some(b) => {
                let local = RegionLocalState::decode(b.as_slice())?;
                (local.state() == PeerState::Merging)
                    .then_some(local.merge_state)
                    .flatten()
            }
            None => None,
        };
        let sessions = crate::raftstore::session::SharedSessions::new(
            crate::raftstore::session::SessionTable::load(&db, region.id)?,
        );
        let truncated = apply_state
            .truncated_state
            .as_ref()
            .map(|t| (t.index, t.term))
            .unwrap_or((0, 0));
        let log = RocksRaftLog::open(
            db,
            region.id,
            conf_state_of(&region),
            truncated,
            Some(snapshots),
        )?;
        let mut raft_cfg = RaftPeerConfig::new(peer_id, apply_state.applied_index);
        let timing = cfg
            .timing()
            .map_err(|e| crate::Error::Config(format!("raft: {e}")))?;
        timing.configure(&mut raft_cfg);
        raft_cfg.lease = cfg.lease_reads.then(|| timing.lease());
        let logger = nokv_consensus::logging::raft_logger(region.id);
        let mut raft = RaftPeer::new(raft_cfg, log, &logger)?;
        // A region whose only voter is this peer would otherwise wait a
        // whole election timeout before serving.
        let voters: Vec<u64> = region
            .peers
            .iter()
            .filter(|p| p.role() == metapb::PeerRole::Voter)
            .map(|p| p.id)
            .collect();
        if voters == [peer_id] {
            raft.campaign()?;
        }
        let peer_stores = region.peers.iter().map(|p| (p.id, p.store_id)).collect();
        Ok(Peer {
            meta: metapb::Peer {
                id: peer_id,
                store_id,
                role: region
                    .peers
                    .iter()
                    .find(|p| p.id == peer_id)
                    .map(|p| p.role)
                    .unwrap_or(metapb::PeerRole::Learner as i32),
            },
            region,
            raft,
            apply_state,
            peer_stores,
            pending_destroy: false,
            pending_splits: Vec::new(),
            ticks_since_log_gc: 0,
            ticks_since_split_check: 0,
            written_since_split_check: true,
            approximate_keys: 0,
            approximate_size_bytes: 0,
            size_measured: false,
            proposal_batch: Default::default(),
            written: Default::default(),
            was_leader: false,
            ticks_since_heartbeat: 0,
            heartbeat_due: true,
            reported_pending: 0,
            reported_down: 0,
            merge_state,
            unapplied: Vec::new(),
            applying: Applying::default(),
            ticks_since_merge_step: 0,
            merged_sources: Vec::new(),
            merge_transition: None,
            merge_rolled_back: false,
            hibernation: Default::default(),
            sessions,
        })
    }

    /// Region id.
    pub fn region_id(&self) -> u64 {
        self.region.id
    }

    /// Whether the replica has a region (range and peers) yet.
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// The peer record of the current leader, if known.
    pub fn leader_peer(&self) -> Option<metapb::Peer> {
        let id = self.raft.leader_id();
        self.region.peers.iter().find(|p| p.id == id).cloned()
    }

    /// The store hosting peer `peer_id`, if known.
    pub fn store_of(&self, peer_id: u64) -> Option<u64> {
        self.region
            .peers
            .iter()
            .find(|p| p.id == peer_id)
            .map(|p| p.store_id)
            .or_else(|| self.peer_stores.get(&peer_id).copied())
    }

    /// Writes the region local state into `wb`. A live region frozen by a
    /// merge is recorded `Merging` with its merge state, so a restart keeps
    /// it frozen.
    pub fn persist_region(&self, db: &DB, state: PeerState, wb: &mut WriteBatch) -> Result<()> {
        let merging = state == PeerState::Normal && self.merge_state.is_some();
        let local = RegionLocalState {
            region: Some(self.region.clone()),
            state: if merging { PeerState::Merging } else { state } as i32,
            merge_state: if merging {
                self.merge_state.clone()
            } else {
                None
            },
            applying_snapshot: None,
        };
        wb.put_cf(
            cf(db, CF_META)?,
            region_state_key(self.region.id),
            local.encode_to_vec(),
        );
        Ok(())
    }

    /// Writes the apply state into `wb`.
    pub fn persist_apply_state(&self, db: &DB, wb: &mut WriteBatch) -> Result<()> {
        write_apply_state(db, self.region.id, &self.apply_state, wb)
    }

    /// The apply state the next entry handed to apply starts from: the
    /// applied state once the apply pool finishes what it holds.
    pub fn dispatch_apply_state(&self) -> ApplyState {
        let mut state = self.apply_state;
        if self.applying.tasks > 0 {
            (state.applied_index, state.applied_term) = self.applying.last;
        }
        state
    }

    /// The truncated index (the log starts right after it).
    pub fn truncated_index(&self) -> u64 {
        self.apply_state
            .truncated_state
            .as_ref()
            .map(|t| t.index)
            .unwrap_or(0)
    }

    /// Peers the leader considers not caught up.
    pub fn pending_peers(&self) -> Vec<metapb::Peer> {
        if !self.raft.is_leader() {
            return Vec::new();
        }
        let committed = self.raft.committed();
        let truncated = self.truncated_index();
        self.region
            .peers
            .iter()
            .filter(|p| p.id != self.meta.id)
            .filter(|p| match self.raft.matched(p.id) {
                None => true,
                Some(matched) => {
                    matched < truncated || matched + PENDING_LAG_ENTRIES < committed || matched == 0
                }
            })
            .cloned()
            .collect()
    }

    /// This replica's status for the admin API.
    pub fn status(&self) -> RegionStatus {
        let progress = if self.raft.is_leader() {
            self.raft
                .progress()
                .filter(|(id, _)| *id != self.meta.id)
                .map(|(id, pr)| PeerProgress {
                    peer_id: id,
                    store_id: self.store_of(id).unwrap_or(0),
                    matched: pr.matched,
                    next_index: pr.next_idx,
                    state: format!("{:?}", pr.state),
                    recent_active: pr.recent_active,
                })
                .collect()
        } else {
            Vec::new()
        };
        RegionStatus {
            region: Some(self.region.clone()),
            peer: Some(self.meta),
            leader_peer_id: self.raft.leader_id(),
            is_leader: self.raft.is_leader(),
            term: self.raft.term(),
            commit_index: self.raft.committed(),
            applied_index: self.apply_state.applied_index,
            truncated_index: self.truncated_index(),
            last_index: self.raft.last_index(),
            progress,
            pending_peers: self.pending_peers(),
            approximate_size_bytes: self.approximate_size_bytes,
            approximate_keys: self.approximate_keys,
            merging_into: self
                .merge_state
                .as_ref()
                .and_then(|m| m.target.as_ref())
                .map_or(0, |t| t.id),
            blocked_entries: self.unapplied.len() as u64,
            asleep: self.hibernation.asleep,
            sessions: self.sessions.lock().len() as u64,
        }
    }

    /// The region heartbeat this leader sends to the coordinator.
    pub fn heartbeat(&self) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            region: Some(self.region.clone()),
            leader: Some(self.meta),
            term: self.raft.term(),
            pending_peers: self.pending_peers(),
            approximate_size_bytes: self.approximate_size_bytes,
            approximate_keys: self.approximate_keys,
            size_measured: self.size_measured,
            ..Default::default()
        }
    }

    /// Sets the apply state after installing a snapshot at `(index, term)`.
    pub fn reset_apply_state(&mut self, index: u64, term: u64) {
        self.apply_state = ApplyState {
            applied_index: index,
            applied_term: term,
            truncated_state: Some(RaftTruncatedState { index, term }),
        };
    }
}
