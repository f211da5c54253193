//! A replica applying committed entries on the raftstore thread: admin
//! entries (membership, split, merge steps, log compaction) and whatever
//! waits behind them, and a merge source's log tail a CommitMerge catches
//! it up with. Data entries go through the same loop as in the apply pool.

use std::collections::HashMap;

use nokv_consensus::peer::ProposalCallback;
use nokv_proto::raft_cmdpb::{admin_request, RaftCmdRequest, RaftCmdResponse};
use nokv_proto::raft_serverpb::ApplyState;
use raft::prelude::Entry;
use rocksdb::{WriteBatch, DB};
use tracing::warn;

use super::data::{apply_data, put_apply_state, DataOutcome, DataScope};
use super::{apply_entries, AdminEntry, ApplyTarget};
use crate::raftstore::admin::{compact_log, conf_change, merge, split};
use crate::raftstore::msg::{error_response, Answers};
use crate::raftstore::peer::Peer;
use crate::region::{check_epoch, merging};
use crate::Result;

/// A replica of this store as an apply target. `others` are the other
/// replicas on the store: a CommitMerge absorbs its source from them.
pub(crate) struct ReplicaApply<'a> {
    /// The replica the entries belong to.
    pub peer: &'a mut Peer,
    /// Every other replica on this store.
    pub others: &'a mut HashMap<u64, Peer>,
}

/// Applies `entries` to `peer` on this thread and returns the proposers to
/// answer; entries from one that cannot apply yet on go back to the front
/// of `peer.unapplied`.
pub(crate) fn apply_replica_entries(
    db: &DB,
    peer: &mut Peer,
    entries: Vec<Entry>,
    others: &mut HashMap<u64, Peer>,
) -> Result<Answers> {
    let applied = apply_entries(db, &mut ReplicaApply { peer, others }, entries)?;
    peer.unapplied.splice(0..0, applied.waiting);
    Ok(applied.answers)
}

impl ReplicaApply<'_> {
    /// Applies one admin command, after the checks every admin command
    /// passes. `None` means it cannot apply yet (a CommitMerge waiting for
    /// its source replica) and nothing was changed.
    fn apply_command(
        &mut self,
        db: &DB,
        cmd: RaftCmdRequest,
        index: u64,
        wb: &mut WriteBatch,
    ) -> Result<Option<RaftCmdResponse>> {
        let mut cmd = cmd;
        let header = cmd.header.unwrap_or_default();
        if let Some(admin) = cmd.admin_request.take().and_then(|a| a.cmd) {
            if let Err(e) = check_epoch(&self.peer.region, header.region_epoch.as_ref(), true) {
                return Ok(Some(error_response(e)));
            }
            let frozen = self.peer.merge_state.is_some()
                && !matches!(admin, admin_request::Cmd::RollbackMerge(_));
            if frozen {
                return Ok(Some(error_response(merging(self.peer.region.id))));
            }
            let name = match admin {
                admin_request::Cmd::CompactLog(c) => {
                    return compact_log::apply_compact_log(self.peer, db, c, wb).map(Some)
                }
                admin_request::Cmd::BatchSplit(s) => {
                    return split::apply_batch_split(self.peer, db, s, wb).map(Some)
                }
                admin_request::Cmd::PrepareMerge(p) => {
                    return merge::apply_prepare_merge(self.peer, db, p, index, wb).map(Some)
                }
                admin_request::Cmd::CommitMerge(c) => {
                    return merge::apply_commit_merge(
                        self.peer,
                        db,
                        c,
                        wb,
                        self.others,
                        apply_replica_entries,
                    )
                }
                admin_request::Cmd::RollbackMerge(r) => {
                    return merge::apply_rollback_merge(self.peer, db, r, wb).map(Some)
                }
                admin_request::Cmd::ChangePeer(_) | admin_request::Cmd::ChangePeerV2(_) => {
                    "ChangePeer"
                }
                admin_request::Cmd::TransferLeader(_) => "TransferLeader",
            };
            warn!(
                region_id = self.peer.region.id,
                command = name,
                "admin command is not implemented yet; skipped"
            );
            return Ok(Some(error_response(nokv_proto::errorpb::RegionError {
                message: format!("admin command {name} is not applied through the log"),
                kind: None,
            })));
        }
        self.apply_data(db, cmd, wb).map(Some)
    }
}

impl ApplyTarget for ReplicaApply<'_> {
    fn apply_state(&self) -> &ApplyState {
        &self.peer.apply_state
    }

    fn set_applied(&mut self, index: u64, term: u64) {
        self.peer.apply_state.applied_index = index;
        self.peer.apply_state.applied_term = term;
    }

    fn apply_data(
        &mut self,
        db: &DB,
        cmd: RaftCmdRequest,
        wb: &mut WriteBatch,
    ) -> Result<RaftCmdResponse> {
        let peer = &mut *self.peer;
        let mut sessions = peer.sessions.lock();
        let mut scope = DataScope {
            region: &peer.region,
            frozen: peer.merge_state.is_some(),
            term: peer.raft.term(),
            sessions: &mut sessions,
        };
        let mut outcome = DataOutcome::default();
        let resp = apply_data(db, &mut scope, cmd, &peer.apply_state, wb, &mut outcome)?;
        drop(sessions);
        peer.written.merge(outcome.written);
        peer.written_since_split_check |= outcome.wrote;
        Ok(resp)
    }

    fn apply_admin(
        &mut self,
        db: &DB,
        entry: AdminEntry,
        index: u64,
        wb: &mut WriteBatch,
    ) -> Result<Option<RaftCmdResponse>> {
        match entry {
            AdminEntry::Command(cmd) => self.apply_command(db, cmd, index, wb),
            AdminEntry::ConfChange(cc) => {
                conf_change::apply_conf_change(self.peer, db, &cc, wb).map(Some)
            }
            AdminEntry::ConfChangeV2 => {
                warn!(
                    region_id = self.peer.region.id,
                    "joint conf change is not supported yet; ignored"
                );
                Ok(Some(RaftCmdResponse::default()))
            }
        }
    }

    fn proposer(&mut self, index: u64, term: u64) -> Option<ProposalCallback<RaftCmdResponse>> {
        self.peer.raft.take_proposal(index, term)
    }

    fn persist(&mut self, db: &DB, wb: &mut WriteBatch) -> Result<()> {
        let peer = &mut *self.peer;
        put_apply_state(
            db,
            peer.region.id,
            &peer.apply_state,
            &mut peer.sessions.lock(),
            wb,
        )
    }
}
