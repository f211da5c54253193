//! Admission: whether a request may go on to raft on this store (the
//! region is here and initialized, this peer leads, the epoch matches, the
//! queues have room, the keys are in the region), then into the region's
//! proposal batch or straight to raft.

use crate::raftstore::msg::{CmdCallback, ReadCallback, ReadGrant};
use crate::raftstore::peer::Peer;
use crate::raftstore::store::Raftstore;
use crate::region::{
    check_epoch, check_key, check_range, not_leader, region_not_found, store_not_match,
};
use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb::{self};
use nokv_proto::raft_cmdpb::{admin_request, request, RaftCmdRequest};

/// Which epoch check a request needs.
pub(super) enum EpochCheck<'a> {
    /// Operator and coordinator orders act on the current region.
    Skip,
    /// Data requests: the key range (`version`) must match.
    Data(Option<&'a metapb::RegionEpoch>),
    /// Admin commands: `version` and `conf_ver` must match.
    Admin(Option<&'a metapb::RegionEpoch>),
}

impl Raftstore {
    /// Common admission checks; returns the peer when the request may go on.
    pub(in crate::raftstore) fn admit(
        &mut self,
        region_id: u64,
        req_peer: Option<&metapb::Peer>,
        epoch: EpochCheck<'_>,
    ) -> std::result::Result<&mut Peer, RegionError> {
        let store_id = self.store_id;
        let max_inflight = self.config.max_inflight_requests.max(1);
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return Err(region_not_found(region_id));
        };
        if let Some(p) = req_peer {
            if p.store_id != 0 && p.store_id != store_id {
                return Err(store_not_match(p.store_id, store_id));
            }
        }
        if !peer.is_initialized() {
            return Err(region_not_found(region_id));
        }
        if !peer.raft.is_leader() {
            return Err(not_leader(region_id, peer.leader_peer()));
        }
        if peer.hibernation.asleep {
            peer.wake();
        }
        let waiting =
            peer.raft.pending_requests() + peer.proposal_batch.len() + peer.applying.entries;
        if waiting >= max_inflight {
            return Err(crate::region::server_is_busy(
                "too many requests waiting for raft in this region",
            ));
        }
        match epoch {
            EpochCheck::Skip => {}
            EpochCheck::Data(e) => check_epoch(&peer.region, e, false)?,
            EpochCheck::Admin(e) => check_epoch(&peer.region, e, true)?,
        }
        Ok(peer)
    }

    pub(in crate::raftstore) fn on_command(&mut self, cmd: RaftCmdRequest, cb: CmdCallback) {
        let header = cmd.header.unwrap_or_default();
        let check = if cmd.admin_request.is_some() {
            EpochCheck::Admin(header.region_epoch.as_ref())
        } else {
            EpochCheck::Data(header.region_epoch.as_ref())
        };
        if cmd.admin_request.is_none()
            && self.apply_queue_entries >= self.config.max_apply_queue_entries.max(1)
        {
            return cb(Err(crate::region::server_is_busy(
                "the apply queue is full; writes wait until it drains",
            )));
        }
        let peer = match self.admit(header.region_id, header.peer.as_ref(), check) {
            Ok(p) => p,
            Err(e) => return cb(Err(e)),
        };
        let rollback = matches!(
            cmd.admin_request.as_ref().and_then(|a| a.cmd.as_ref()),
            Some(admin_request::Cmd::RollbackMerge(_))
        );
        if peer.merge_state.is_some() && !rollback {
            return cb(Err(crate::region::merging(peer.region.id)));
        }
        for r in &cmd.requests {
            let check = match &r.cmd {
                Some(request::Cmd::Put(p)) => check_key(&peer.region, &p.key),
                Some(request::Cmd::Delete(d)) => check_key(&peer.region, &d.key),
                Some(request::Cmd::CompareAndSwap(c)) => check_key(&peer.region, &c.key),
                Some(request::Cmd::DeleteRange(d)) => {
                    check_range(&peer.region, &d.start_key, &d.end_key)
                }
                Some(request::Cmd::Txn(t)) => crate::mvcc::commands::check_keys(
                    t,
                    |k| check_key(&peer.region, k),
                    |s, e| check_range(&peer.region, s, e),
                ),
                None => Ok(()),
            };
            if let Err(e) = check {
                return cb(Err(e));
            }
        }
        let region_id = peer.region.id;
        if cmd.admin_request.is_some() {
            // Writes that arrived earlier this round go first.
            peer.propose_batch();
            peer.propose_command(cmd, cb);
            return;
        }
        if !peer.proposal_batch.fits(&cmd) {
            peer.propose_batch();
        }
        let first = peer.proposal_batch.is_empty();
        peer.proposal_batch.push(cmd, cb);
        if first {
            self.batched.push(region_id);
        }
    }

    /// Proposes every region's writes gathered this round.
    pub(in crate::raftstore) fn propose_batches(&mut self) {
        for id in std::mem::take(&mut self.batched) {
            if let Some(p) = self.peers.get_mut(&id) {
                p.propose_batch();
            }
        }
    }

    pub(in crate::raftstore) fn on_read(
        &mut self,
        region_id: u64,
        epoch: Option<metapb::RegionEpoch>,
        req_peer: Option<metapb::Peer>,
        keys: Vec<Vec<u8>>,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
        cb: ReadCallback,
    ) {
        let peer = match self.admit(
            region_id,
            req_peer.as_ref(),
            EpochCheck::Data(epoch.as_ref()),
        ) {
            Ok(p) => p,
            Err(e) => return cb(Err(e)),
        };
        // A frozen source may already be part of its target on some store,
        // which takes writes for its range: reading here could miss them.
        if peer.merge_state.is_some() {
            return cb(Err(crate::region::merging(region_id)));
        }
        let checks = keys
            .iter()
            .map(|k| check_key(&peer.region, k))
            .chain(ranges.iter().map(|(s, e)| check_range(&peer.region, s, e)));
        for check in checks {
            if let Err(e) = check {
                return cb(Err(e));
            }
        }
        let peers = peer.region.peers.clone();
        let (start_key, end_key) = (peer.region.start_key.clone(), peer.region.end_key.clone());
        let cb: nokv_consensus::peer::ReadCallback = Box::new(move |r| {
            cb(r.map(|applied_index| ReadGrant {
                applied_index,
                start_key,
                end_key,
            })
            .map_err(|e| crate::raftstore::peer::propose::map_propose_error(region_id, &peers, e)))
        });
        // The leader lease answers at once; otherwise a ReadIndex round
        // (batched with the round's other reads) confirms leadership.
        if let Some(cb) = peer.raft.try_lease_read(cb) {
            peer.raft.read_index(cb);
            self.reads_to_flush.push(region_id);
        }
    }
}
