//! The store side of a merge: the source leader proposes PrepareMerge
//! (from the Admin API or a coordinator order), then pushes the frozen
//! source towards CommitMerge on the target (or RollbackMerge) every few
//! ticks; snapshots of a target absorb the sources they cover.

use crate::metrics;
use crate::raftstore::admission::EpochCheck;
use crate::raftstore::msg::CmdCallback;
use crate::raftstore::store::Raftstore;
use crate::region::{overlaps, region_not_found};
use crate::Result;
use nokv_consensus::engine::{cf, CF_META};
use nokv_consensus::keys::{apply_state_key, region_state_key};
use nokv_consensus::peer::ProposeError;
use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb::Region;
use nokv_proto::raft_serverpb::{PeerState, RegionLocalState};
use prost::Message as _;
use rocksdb::WriteBatch;
use tracing::{debug, info, warn};

/// Ticks between two pushes of a frozen merge source towards commit or
/// rollback; a duplicate CommitMerge is harmless (it fails its epoch check).
const MERGE_STEP_TICKS: u64 = 5;

impl Raftstore {
    /// Runs the coordinator's order to merge `source` into another region:
    /// the same PrepareMerge an operator's `nokv merge` starts, tracked as
    /// a transition in the execution diagnostics.
    pub(in crate::raftstore) fn run_merge_order(
        &mut self,
        source: u64,
        operator_id: u64,
        order: nokv_proto::coordinatorpb::MergeRegion,
    ) {
        let target = order.target.map_or(0, |t| t.id);
        // Not leading, or already frozen by this merge (the coordinator
        // resends the step until the source is gone): nothing to start.
        if !self
            .peers
            .get(&source)
            .is_some_and(|p| p.raft.is_leader() && p.merge_state.is_none())
        {
            return;
        }
        info!(
            source,
            target, operator_id, "running coordinator order: merge"
        );
        let diagnostics = self.diagnostics.clone();
        let t = diagnostics.plan(
            source,
            "merge",
            format!("coordinator order: merge region {source} into {target}"),
        );
        diagnostics.advance(t, nokv_proto::adminpb::TransitionStage::Proposed);
        self.on_prepare_merge(
            source,
            target,
            Some(t),
            Box::new(move |r| {
                if let Err(e) = r.and_then(crate::raftstore::msg::command_result) {
                    debug!(source, target, error = %e.message, "coordinator merge refused");
                    diagnostics.fail(t, e.message);
                }
            }),
        );
    }

    /// Starts merging `source` into `target`: checks both as this store
    /// sees them and proposes the PrepareMerge. `cb` answers once it
    /// applied; the merge driver takes it from there.
    pub(in crate::raftstore) fn on_prepare_merge(
        &mut self,
        source: u64,
        target: u64,
        transition: Option<u64>,
        cb: CmdCallback,
    ) {
        if let Err(e) = self.admit(source, None, EpochCheck::Skip) {
            return cb(Err(e));
        }
        let refuse = |why: String| RegionError {
            message: format!("merge refused: {why}"),
            kind: None,
        };
        let Some(tgt) = self.peers.get(&target) else {
            return cb(Err(refuse(format!(
                "no replica of target region {target} on this store"
            ))));
        };
        let Some(src) = self.peers.get(&source) else {
            return cb(Err(region_not_found(source)));
        };
        let min_index = match crate::raftstore::admin::merge::check_prepare(src, tgt) {
            Ok(i) => i,
            Err(why) => return cb(Err(refuse(why))),
        };
        let cmd = crate::raftstore::admin::merge::prepare_command(src, &tgt.region, min_index);
        let Some(src) = self.peers.get_mut(&source) else {
            return cb(Err(region_not_found(source)));
        };
        // Writes that arrived earlier this round go first (they would fail
        // against the frozen region otherwise).
        src.propose_batch();
        src.merge_transition = transition;
        src.ticks_since_merge_step = 0;
        let peers = src.region.peers.clone();
        info!(source, target, min_index, "proposing prepare merge");
        src.raft.propose(
            cmd.encode_to_vec(),
            Box::new(move |r| {
                cb(r.map_err(|e| {
                    crate::raftstore::peer::propose::map_propose_error(source, &peers, e)
                }))
            }),
        );
    }

    /// Pushes every merge this store's source leaders froze towards commit
    /// or rollback (see `merge.rs`).
    pub(in crate::raftstore) fn drive_merges(&mut self) {
        let due: Vec<u64> = self
            .peers
            .values_mut()
            .filter(|p| p.merge_state.is_some() && p.raft.is_leader())
            .filter_map(|p| {
                p.ticks_since_merge_step += 1;
                (p.ticks_since_merge_step >= MERGE_STEP_TICKS).then(|| {
                    p.ticks_since_merge_step = 0;
                    p.region.id
                })
            })
            .collect();
        for source in due {
            self.drive_merge(source);
        }
    }

    pub(in crate::raftstore) fn drive_merge(&mut self, source: u64) {
        let Some(src) = self.peers.get(&source) else {
            return;
        };
        let Some(state) = src.merge_state.clone() else {
            return;
        };
        let target = state.target.as_ref().map_or(0, |t| t.id);
        let tgt = self.peers.get(&target);
        match crate::raftstore::admin::merge::next_step(&state, tgt) {
            crate::raftstore::admin::merge::MergeStep::Wait => {
                debug!(source, target, "merge waits for the local target replica");
            }
            crate::raftstore::admin::merge::MergeStep::Commit => {
                let Some(tgt) = tgt else { return };
                let cmd = match crate::raftstore::admin::merge::commit_command(src, tgt) {
                    Ok(c) => c,
                    Err(why) => {
                        warn!(source, target, %why, "cannot build commit merge");
                        return;
                    }
                };
                debug!(source, target, "proposing commit merge");
                self.on_command(
                    cmd,
                    Box::new(move |r| {
                        if let Err(e) = r.and_then(crate::raftstore::msg::command_result) {
                            debug!(source, target, error = %e.message, "commit merge not applied");
                        }
                    }),
                );
            }
            crate::raftstore::admin::merge::MergeStep::FollowTargetLeader(store) => {
                debug!(
                    source,
                    target, store, "moving source leadership to the target leader's store"
                );
                let _ = self.on_transfer_leader(source, store);
            }
            crate::raftstore::admin::merge::MergeStep::Rollback => {
                info!(source, target, "target changed; rolling the merge back");
                let cmd = crate::raftstore::admin::merge::rollback_command(src, state.commit);
                self.on_command(cmd, Box::new(|_| {}));
            }
        }
    }

    /// Whether a snapshot for `region` may be installed next to the
    /// replicas on this store: everything it overlaps must be a frozen
    /// merge source of that region, which the snapshot already contains.
    pub(in crate::raftstore) fn snapshot_fits(&self, region: &Region) -> bool {
        self.peers.values().all(|p| {
            p.region.id == region.id
                || !p.is_initialized()
                || !overlaps(&p.region, region)
                || p.merge_state
                    .as_ref()
                    .and_then(|m| m.target.as_ref())
                    .is_some_and(|t| t.id == region.id)
        })
    }

    /// Turns the merge sources a snapshot of `region` covers into
    /// tombstones (their data is part of the snapshot), into `wb`.
    pub(in crate::raftstore) fn absorb_sources_by_snapshot(
        &mut self,
        region: &Region,
        wb: &mut WriteBatch,
    ) -> Result<()> {
        let covered: Vec<u64> = self
            .peers
            .values()
            .filter(|p| {
                p.region.id != region.id && p.is_initialized() && overlaps(&p.region, region)
            })
            .map(|p| p.region.id)
            .collect();
        for id in covered {
            let Some(mut src) = self.peers.remove(&id) else {
                continue;
            };
            self.close_mailbox(id);
            src.raft.clear_log(wb)?;
            crate::raftstore::session::clear(&self.db, id, wb)?;
            let tombstone = RegionLocalState {
                region: Some(src.region.clone()),
                state: PeerState::Tombstone as i32,
                merge_state: src.merge_state.clone(),
                applying_snapshot: None,
            };
            wb.put_cf(
                cf(&self.db, CF_META)?,
                region_state_key(id),
                tombstone.encode_to_vec(),
            );
            wb.delete_cf(cf(&self.db, CF_META)?, apply_state_key(id));
            src.raft
                .fail_all(ProposeError::Dropped("region merged".into()));
            if let Some(t) = src.merge_transition {
                self.diagnostics
                    .advance(t, nokv_proto::adminpb::TransitionStage::Applied);
            }
            metrics::MERGES.inc();
            info!(
                region_id = id,
                target = region.id,
                "merge source absorbed by a snapshot of its target"
            );
        }
        Ok(())
    }
}
