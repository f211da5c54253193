//! Applying committed entries of one region. Data and the new
//! `ApplyState` are written in one batch, so a crash never separates
//! applied data from its index. A compare-and-swap reads the current value,
//! so the batch is flushed (with the apply state of the entries before it)
//! first.

use std::collections::HashMap;

use nokv_consensus::keys::apply_state_key;
use nokv_consensus::metrics::RAFT_APPLIED_ENTRIES;
use nokv_consensus::peer::ProposalCallback;
use nokv_proto::metapb::{Peer as PeerMeta, PeerRole, Region};
use nokv_proto::raft_cmdpb::{
    admin_request, admin_response, request, response, AdminResponse, ChangePeerResponse,
    CompareAndSwapResponse, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader, Request, Response,
};
use nokv_proto::raft_serverpb::{ApplyState, PeerState};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, Entry, EntryType};
use rocksdb::{WriteBatch, DB};
use tracing::{info, warn};

use crate::engine::{cf, CF_META, CF_RAW};
use crate::flow::FlowCount;
use crate::keys::unbounded_upper;
use crate::mvcc::commands::{self, RegionRange};
use crate::mvcc::MvccReader;
use crate::peer::Peer;
use crate::region::check_epoch;
use crate::{raw_value, Error, Result};

/// Proposers to answer once the apply batch is written.
pub type Answers = Vec<(ProposalCallback<RaftCmdResponse>, RaftCmdResponse)>;

/// The `RegionMerging` error of a region frozen by a merge.
pub fn merging(region_id: u64) -> nokv_proto::errorpb::RegionError {
    nokv_proto::errorpb::RegionError {
        message: format!("region {region_id} is frozen by a merge in progress"),
        kind: Some(nokv_proto::errorpb::region_error::Kind::RegionMerging(
            nokv_proto::errorpb::RegionMerging { region_id },
        )),
    }
}

pub(crate) fn admin_ok(cmd: admin_response::Cmd) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(RaftResponseHeader::default()),
        responses: Vec::new(),
        admin_response: Some(AdminResponse { cmd: Some(cmd) }),
    }
}

pub(crate) fn error_response(e: nokv_proto::errorpb::RegionError) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(RaftResponseHeader {
            error: Some(e),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Peer {
    /// Applies `entries` (in order) into `wb` and writes it with the new
    /// apply state, on the calling thread. Returns the proposers to answer.
    /// `others` are the other replicas on this store: a CommitMerge absorbs
    /// its source replica from them. Entries from a CommitMerge whose
    /// source replica is not ready onward go back to the front of
    /// `unapplied` for a later call.
    pub fn apply_entries(
        &mut self,
        db: &DB,
        entries: Vec<Entry>,
        mut wb: WriteBatch,
        others: &mut HashMap<u64, Peer>,
    ) -> Result<Answers> {
        let mut answers = Vec::new();
        let mut entries = entries.into_iter();
        while let Some(e) = entries.next() {
            if e.index <= self.apply_state.applied_index {
                continue;
            }
            let resp = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => None,
                EntryType::EntryNormal => {
                    let cmd = RaftCmdRequest::decode(e.data.as_ref())?;
                    match self.apply_command(db, cmd, e.index, &mut wb, others)? {
                        Some(resp) => Some(resp),
                        None => {
                            let rest: Vec<Entry> = std::iter::once(e).chain(entries).collect();
                            self.unapplied.splice(0..0, rest);
                            break;
                        }
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data)
                        .map_err(|err| Error::Corrupted(format!("conf change: {err}")))?;
                    Some(self.apply_conf_change(db, &cc, &mut wb)?)
                }
                EntryType::EntryConfChangeV2 => {
                    warn!(
                        region_id = self.region.id,
                        "joint conf change is not supported yet; ignored"
                    );
                    None
                }
            };
            self.apply_state.applied_index = e.index;
            self.apply_state.applied_term = e.term;
            RAFT_APPLIED_ENTRIES.inc();
            if let Some(cb) = self.raft.take_proposal(e.index, e.term) {
                answers.push((cb, resp.unwrap_or_default()));
            }
        }
        self.persist_apply_state(db, &mut wb)?;
        db.write(wb)?;
        Ok(answers)
    }

    /// Applies one command. `None` means it cannot apply yet (a CommitMerge
    /// waiting for its source replica) and nothing was changed.
    fn apply_command(
        &mut self,
        db: &DB,
        cmd: RaftCmdRequest,
        index: u64,
        wb: &mut WriteBatch,
        others: &mut HashMap<u64, Peer>,
    ) -> Result<Option<RaftCmdResponse>> {
        let header = cmd.header.unwrap_or_default();
        if let Some(admin) = cmd.admin_request.and_then(|a| a.cmd) {
            if let Err(e) = check_epoch(&self.region, header.region_epoch.as_ref(), true) {
                return Ok(Some(error_response(e)));
            }
            let frozen = self.merge_state.is_some()
                && !matches!(admin, admin_request::Cmd::RollbackMerge(_));
            if frozen {
                return Ok(Some(error_response(merging(self.region.id))));
            }
            let name = match admin {
                admin_request::Cmd::CompactLog(c) => {
                    return self.apply_compact_log(db, c, wb).map(Some)
                }
                admin_request::Cmd::BatchSplit(s) => {
                    return self.apply_batch_split(db, s, wb).map(Some)
                }
                admin_request::Cmd::PrepareMerge(p) => {
                    return self.apply_prepare_merge(db, p, index, wb).map(Some)
                }
                admin_request::Cmd::CommitMerge(c) => {
                    return self.apply_commit_merge(db, c, wb, others)
                }
                admin_request::Cmd::RollbackMerge(r) => {
                    return self.apply_rollback_merge(db, r, wb).map(Some)
                }
                admin_request::Cmd::ChangePeer(_) | admin_request::Cmd::ChangePeerV2(_) => {
                    "ChangePeer"
                }
                admin_request::Cmd::TransferLeader(_) => "TransferLeader",
            };
            warn!(
                region_id = self.region.id,
                command = name,
                "admin command is not implemented yet; skipped"
            );
            return Ok(Some(error_response(nokv_proto::errorpb::RegionError {
                message: format!("admin command {name} is not applied through the log"),
                kind: None,
            })));
        }
        let scope = DataScope {
            region: &self.region,
            frozen: self.merge_state.is_some(),
            term: self.raft.term(),
        };
        let mut outcome = DataOutcome::default();
        let cmd = RaftCmdRequest {
            header: Some(header),
            admin_request: None,
            requests: cmd.requests,
        };
        let resp = apply_data(db, &scope, cmd, &self.apply_state, wb, &mut outcome)?;
        self.written.merge(outcome.written);
        self.written_since_split_check |= outcome.wrote;
        Ok(Some(resp))
    }

    fn apply_compact_log(
        &mut self,
        _db: &DB,
        c: nokv_proto::raft_cmdpb::CompactLogRequest,
        wb: &mut WriteBatch,
    ) -> Result<RaftCmdResponse> {
        let truncated = self.truncated_index();
        // Entries up to the applied index are the only ones safe to drop;
        // the proposer picked the index, every replica applies the same.
        if c.compact_index <= truncated || c.compact_index > self.apply_state.applied_index {
            return Ok(RaftCmdResponse::default());
        }
        self.raft
            .raw_mut()
            .mut_store()
            .compact_to(c.compact_index, c.compact_term, wb)?;
        self.apply_state.truncated_state = Some(nokv_proto::raft_serverpb::RaftTruncatedState {
            index: c.compact_index,
            term: c.compact_term,
        });
        crate::metrics::LOG_COMPACTIONS.inc();
        Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader::default()),
            responses: Vec::new(),
            admin_response: Some(AdminResponse {
                cmd: Some(admin_response::Cmd::CompactLog(Default::default())),
            }),
        })
    }

    fn apply_batch_split(
        &mut self,
        db: &DB,
        req: nokv_proto::raft_cmdpb::BatchSplitRequest,
        wb: &mut WriteBatch,
    ) -> Result<RaftCmdResponse> {
        let regions = match crate::split::derive_regions(&self.region, &req) {
            Ok(r) => r,
            Err(why) => {
                warn!(region_id = self.region.id, %why, "split rejected at apply");
                return Ok(error_response(nokv_proto::errorpb::RegionError {
                    message: format!("split rejected: {why}"),
                    kind: None,
                }));
            }
        };
        // regions[0] is this region, shrunk; the rest are new.
        self.region = regions[0].clone();
        self.persist_region(db, PeerState::Normal, wb)?;
        for r in &regions[1..] {
            if r.peers.iter().any(|p| p.store_id == self.meta.store_id) {
                crate::peer::write_initial_state(db, r, wb)?;
                self.pending_splits.push(r.clone());
            }
        }
        self.heartbeat_due = true;
        // The old count covered the range before the split.
        self.size_measured = false;
        self.written_since_split_check = true;
        info!(
            region_id = self.region.id,
            new_regions = ?regions[1..].iter().map(|r| r.id).collect::<Vec<_>>(),
            "split applied"
        );
        Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader::default()),
            responses: Vec::new(),
            admin_response: Some(AdminResponse {
                cmd: Some(admin_response::Cmd::BatchSplit(
                    nokv_proto::raft_cmdpb::BatchSplitResponse { regions },
                )),
            }),
        })
    }

    fn apply_conf_change(
        &mut self,
        db: &DB,
        cc: &ConfChange,
        wb: &mut WriteBatch,
    ) -> Result<RaftCmdResponse> {
        let ctx = RaftCmdRequest::decode(cc.context.as_ref())?;
        // A membership change proposed before a split, merge or another
        // change applied is stale; a frozen merge source takes none. raft-rs
        // is not told, so both memberships stay as they were.
        let header = ctx.header.unwrap_or_default();
        if let Err(e) = check_epoch(&self.region, header.region_epoch.as_ref(), true) {
            return Ok(error_response(e));
        }
        if self.merge_state.is_some() {
            return Ok(error_response(merging(self.region.id)));
        }
        let change = ctx.admin_request.and_then(|a| a.cmd).and_then(|c| match c {
            admin_request::Cmd::ChangePeer(c) => Some(c),
            _ => None,
        });
        let target = change.as_ref().and_then(|c| c.peer).unwrap_or(PeerMeta {
            id: cc.node_id,
            store_id: 0,
            role: 0,
        });
        // raft-rs decides first; the region follows only what raft accepted,
        // so the two memberships can never disagree.
        match self.raft.raw_mut().apply_conf_change(cc) {
            Ok(cs) => self.raft.raw_mut().mut_store().set_conf_state(cs),
            Err(e) => {
                warn!(region_id = self.region.id, error = %e, "raft rejected conf change; region unchanged");
                return Ok(error_response(nokv_proto::errorpb::RegionError {
                    message: format!("conf change rejected: {e}"),
                    kind: None,
                }));
            }
        }
        let mut changed = true;
        match cc.get_change_type() {
            raft::prelude::ConfChangeType::AddNode => {
                match self.region.peers.iter_mut().find(|p| p.id == cc.node_id) {
                    Some(p) if p.role() == PeerRole::Voter => changed = false,
                    Some(p) => p.role = PeerRole::Voter as i32,
                    None => self.region.peers.push(PeerMeta {
                        role: PeerRole::Voter as i32,
                        ..target
                    }),
                }
            }
            raft::prelude::ConfChangeType::AddLearnerNode => {
                if self.region.peers.iter().any(|p| p.id == cc.node_id) {
                    changed = false;
                } else {
                    self.region.peers.push(PeerMeta {
                        role: PeerRole::Learner as i32,
                        ..target
                    });
                }
            }
            raft::prelude::ConfChangeType::RemoveNode => {
                let before = self.region.peers.len();
                self.region.peers.retain(|p| p.id != cc.node_id);
                changed = before != self.region.peers.len();
            }
        }
        if changed {
            let epoch = self.region.epoch.get_or_insert_with(Default::default);
            epoch.conf_ver += 1;
            if let Some(me) = self.region.peers.iter().find(|p| p.id == self.meta.id) {
                self.meta.role = me.role;
            }
            self.persist_region(db, PeerState::Normal, wb)?;
            for p in &self.region.peers {
                self.peer_stores.insert(p.id, p.store_id);
            }
            self.heartbeat_due = true;
            info!(
                region_id = self.region.id,
                change = ?cc.get_change_type(),
                peer_id = cc.node_id,
                conf_ver = self.region.epoch.as_ref().map(|e| e.conf_ver).unwrap_or(0),
                "conf change applied"
            );
        }
        if cc.node_id == self.meta.id {
            // A later entry of the same batch may add this peer back (a
            // re-used peer id): only the last change decides.
            self.pending_destroy =
                cc.get_change_type() == raft::prelude::ConfChangeType::RemoveNode;
        }
        Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader::default()),
            responses: Vec::new(),
            admin_response: Some(AdminResponse {
                cmd: Some(admin_response::Cmd::ChangePeer(ChangePeerResponse {
                    region: Some(self.region.clone()),
                })),
            }),
        })
    }
}

/// The region facts a data command is applied against. Admin entries apply
/// only while none of the region's data entries is in flight, so these stay
/// fixed while a batch of data entries applies (here or in the apply pool).
pub struct DataScope<'a> {
    /// The region as applied so far.
    pub region: &'a Region,
    /// Frozen by a merge: every data command fails with `RegionMerging`.
    pub frozen: bool,
    /// The raft term reported in responses.
    pub term: u64,
}

/// What applying data commands changed besides RocksDB.
#[derive(Debug, Default, Clone, Copy)]
pub struct DataOutcome {
    /// Bytes and keys written.
    pub written: FlowCount,
    /// Some command carried writes (the region is due a split check).
    pub wrote: bool,
}

/// Writes `state` as the apply state of `region_id` into `wb`.
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

/// Writes what `wb` holds so far, with `state` (the apply state of the
/// entries before the current one), so a command can read what they wrote.
fn flush(db: &DB, region_id: u64, state: &ApplyState, wb: &mut WriteBatch) -> Result<()> {
    if wb.is_empty() {
        return Ok(());
    }
    write_apply_state(db, region_id, state, wb)?;
    db.write(std::mem::take(wb))?;
    Ok(())
}

/// Applies one data command (no admin request) at the current position of
/// `state` into `wb`. Errors found here (epoch moved, region frozen) are
/// the response's; `Err` is a storage or decoding failure.
pub fn apply_data(
    db: &DB,
    scope: &DataScope<'_>,
    cmd: RaftCmdRequest,
    state: &ApplyState,
    wb: &mut WriteBatch,
    outcome: &mut DataOutcome,
) -> Result<RaftCmdResponse> {
    let header = cmd.header.unwrap_or_default();
    // The epoch may have moved between proposal and apply.
    if let Err(e) = check_epoch(scope.region, header.region_epoch.as_ref(), false) {
        return Ok(error_response(e));
    }
    if scope.frozen {
        return Ok(error_response(merging(scope.region.id)));
    }
    let raw = cf(db, CF_RAW)?;
    if !cmd.requests.is_empty() {
        outcome.wrote = true;
    }
    let mut responses = Vec::with_capacity(cmd.requests.len());
    for Request { cmd } in cmd.requests {
        let mut out = Response::default();
        match cmd {
            Some(request::Cmd::Put(p)) => {
                outcome.written.add(p.key.len() + p.value.len());
                wb.put_cf(cf(db, &p.cf)?, p.key, p.value)
            }
            Some(request::Cmd::Delete(d)) => {
                outcome.written.add(d.key.len());
                wb.delete_cf(cf(db, &d.cf)?, d.key)
            }
            Some(request::Cmd::DeleteRange(d)) => {
                outcome.written.add(d.start_key.len() + d.end_key.len());
                let start = if d.start_key.is_empty() {
                    scope.region.start_key.clone()
                } else {
                    d.start_key.max(scope.region.start_key.clone())
                };
                let end = if d.end_key.is_empty() {
                    if scope.region.end_key.is_empty() {
                        unbounded_upper()
                    } else {
                        scope.region.end_key.clone()
                    }
                } else {
                    d.end_key
                };
                wb.delete_range_cf(cf(db, &d.cf)?, start, end);
            }
            Some(request::Cmd::CompareAndSwap(c)) => {
                flush(db, scope.region.id, state, wb)?;
                // Judge expiry at the proposer's time, never the local
                // clock: every replica must reach the same outcome.
                let current = db.get_cf(raw, &c.key)?;
                let current = current
                    .as_deref()
                    .and_then(|v| raw_value::decode(v, c.evaluated_at_secs))
                    .map(|v| v.to_vec());
                let succeed = match &current {
                    None => c.previous_not_exist,
                    Some(v) => !c.previous_not_exist && *v == c.previous_value,
                };
                if succeed {
                    outcome.written.add(c.key.len() + c.value.len());
                    wb.put_cf(cf(db, &c.cf)?, &c.key, c.value);
                }
                out.cmd = Some(response::Cmd::CompareAndSwap(CompareAndSwapResponse {
                    succeed,
                    previous_not_exist: current.is_none(),
                    previous_value: current.unwrap_or_default(),
                }));
            }
            Some(request::Cmd::Txn(t)) => {
                // Evaluate against everything applied before it.
                flush(db, scope.region.id, state, wb)?;
                let reader = MvccReader::new(db);
                let range = RegionRange {
                    start: &scope.region.start_key,
                    end: &scope.region.end_key,
                };
                let (resp, txn) = commands::execute(&reader, range, t)?;
                // The batch is empty after the flush: what is in it
                // now is this command's writes (locks, data, records).
                let empty = WriteBatch::default().size_in_bytes();
                txn.write_to(db, wb)?;
                outcome.written.bytes += wb.size_in_bytes().saturating_sub(empty) as u64;
                outcome.written.keys += wb.len() as u64;
                out.cmd = Some(response::Cmd::Txn(resp));
            }
            None => {}
        }
        responses.push(out);
    }
    Ok(RaftCmdResponse {
        header: Some(RaftResponseHeader {
            request_id: header.request_id,
            current_term: scope.term,
            error: None,
        }),
        responses,
        admin_response: None,
    })
}
