//! How the raftstore gets committed entries applied. Runs of data entries
//! go to the apply pool, several batches of one region in flight at once.
//! An admin entry waits until none of its region's batches is in flight
//! and then applies on the raftstore thread: it changes the region (range,
//! epoch, membership, frozen state) that the pool applies data against.

use nokv_consensus::metrics::{RAFT_APPLIED_INDEX, RAFT_APPLY_SECONDS};
use nokv_proto::raft_serverpb::SnapshotMeta;
use prost::Message as _;
use raft::prelude::{Entry, EntryType};

use super::replica::apply_replica_entries;
use crate::metrics;
use crate::raftstore::apply::pool::{ApplyResult, ApplyTask};
use crate::raftstore::peer::Peer;
use crate::raftstore::store::Raftstore;
use crate::region::overlaps;
use crate::{Error, Result};

/// Just enough of a `RaftCmdRequest` to tell an admin command from data:
/// decoding skips the other fields without building them.
#[derive(Clone, PartialEq, prost::Message)]
struct AdminProbe {
    #[prost(bytes = "vec", optional, tag = "3")]
    admin_request: Option<Vec<u8>>,
}

/// Whether `e` only writes data (or is the empty entry a new leader
/// commits), so it may apply in the pool. An entry that does not decode
/// is not: the raftstore's own apply reports it.
pub(super) fn is_data_entry(e: &Entry) -> bool {
    e.get_entry_type() == EntryType::EntryNormal
        && (e.data.is_empty()
            || AdminProbe::decode(e.data.as_ref()).is_ok_and(|p| p.admin_request.is_none()))
}

impl Raftstore {
    /// Hands out what `peer` has committed and not applied: data runs to
    /// the pool, admin entries here once the pool holds nothing of the
    /// region. `peer` is out of the map (a CommitMerge takes its source
    /// replica from the others).
    pub(in crate::raftstore) fn drive_apply(&mut self, peer: &mut Peer) -> Result<()> {
        // A snapshot may have moved the replica past queued entries.
        let applied = peer.dispatch_apply_state().applied_index;
        peer.unapplied.retain(|e| e.index > applied);
        while !peer.unapplied.is_empty() {
            let data = peer
                .unapplied
                .iter()
                .take_while(|e| is_data_entry(e))
                .count();
            if data > 0 {
                let entries: Vec<Entry> = peer.unapplied.drain(..data).collect();
                self.hand_to_pool(peer, entries)?;
                continue;
            }
            if peer.applying.tasks > 0 {
                break;
            }
            let admin = peer
                .unapplied
                .iter()
                .take_while(|e| !is_data_entry(e))
                .count();
            let entries: Vec<Entry> = peer.unapplied.drain(..admin).collect();
            let left = peer.unapplied.len();
            self.apply_now(peer, entries)?;
            if peer.unapplied.len() > left {
                // A CommitMerge waits for its source replica; retried on
                // the next tick.
                break;
            }
        }
        Ok(())
    }

    fn hand_to_pool(&mut self, peer: &mut Peer, entries: Vec<Entry>) -> Result<()> {
        let Some(last) = entries.last().map(|e| (e.index, e.term)) else {
            return Ok(());
        };
        let callbacks = entries
            .iter()
            .filter_map(|e| Some((e.index, peer.raft.take_proposal(e.index, e.term)?)))
            .collect();
        let n = entries.len();
        let task = ApplyTask {
            region: peer.region.clone(),
            frozen: peer.merge_state.is_some(),
            term: peer.raft.term(),
            apply_state: peer.dispatch_apply_state(),
            entries,
            callbacks,
            sessions: peer.sessions.clone(),
        };
        let Some(pool) = &self.apply_pool else {
            return Err(Error::Io(std::io::Error::other(
                "the apply pool is stopped",
            )));
        };
        if pool.send(peer.region.id, task).is_err() {
            return Err(Error::Io(std::io::Error::other("an apply thread exited")));
        }
        peer.applying.tasks += 1;
        peer.applying.entries += n;
        peer.applying.last = last;
        self.apply_queue_entries += n;
        metrics::APPLY_QUEUE_ENTRIES.set(self.apply_queue_entries as i64);
        Ok(())
    }

    /// Takes in what the pool applied for one region, then hands out what
    /// waited behind it.
    pub(in crate::raftstore) fn on_apply_result(&mut self, r: ApplyResult) -> Result<()> {
        if let Some(e) = r.error {
            return Err(e);
        }
        self.apply_queue_entries = self.apply_queue_entries.saturating_sub(r.entries);
        metrics::APPLY_QUEUE_ENTRIES.set(self.apply_queue_entries as i64);
        // Replicas with batches in flight are never destroyed or absorbed.
        let Some(mut peer) = self.peers.remove(&r.region_id) else {
            return Ok(());
        };
        peer.applying.tasks = peer.applying.tasks.saturating_sub(1);
        peer.applying.entries = peer.applying.entries.saturating_sub(r.entries);
        peer.apply_state.applied_index = r.apply_state.applied_index;
        peer.apply_state.applied_term = r.apply_state.applied_term;
        peer.written.merge(r.outcome.written);
        peer.written_since_split_check |= r.outcome.wrote;
        self.after_apply(&mut peer);
        let driven = self.drive_apply(&mut peer);
        self.settle(peer)?;
        driven
    }

    /// Applies `entries` on this thread (admin entries, or the tail of a
    /// CommitMerge that waited) and answers their proposers.
    pub(in crate::raftstore) fn apply_now(
        &mut self,
        peer: &mut Peer,
        entries: Vec<Entry>,
    ) -> Result<()> {
        let start = std::time::Instant::now();
        let answers = apply_replica_entries(&self.db, peer, entries, &mut self.peers)?;
        RAFT_APPLY_SECONDS.observe(start.elapsed().as_secs_f64());
        for (cb, resp) in answers {
            cb(Ok(resp));
        }
        self.after_apply(peer);
        Ok(())
    }

    /// Catches the rest of the raftstore up with `peer`'s applied state:
    /// raft-rs and waiting reads, region flow, merge bookkeeping.
    pub(in crate::raftstore) fn after_apply(&mut self, peer: &mut Peer) {
        let written = std::mem::take(&mut peer.written);
        if peer.raft.is_leader() {
            self.counters.flows.record_write(peer.region.id, written);
        }
        let applied = peer.apply_state.applied_index;
        peer.raft.advance_apply(applied);
        RAFT_APPLIED_INDEX
            .with_label_values(&[&peer.region.id.to_string()])
            .set(applied as i64);
        for merged in std::mem::take(&mut peer.merged_sources) {
            self.close_mailbox(merged.region_id);
            metrics::MERGES.inc();
            if let Some(t) = merged.transition {
                self.diagnostics
                    .advance(t, nokv_proto::adminpb::TransitionStage::Applied);
            }
        }
        if std::mem::take(&mut peer.merge_rolled_back) {
            if let Some(t) = peer.merge_transition.take() {
                self.diagnostics.fail(
                    t,
                    "rolled back: the target region changed before the merge committed",
                );
            }
        }
    }

    /// Puts `peer` back in the map and carries out what its applies asked
    /// for: open the regions a split made, destroy a removed replica once
    /// nothing of it is in the pool.
    pub(in crate::raftstore) fn settle(&mut self, peer: Peer) -> Result<()> {
        let id = peer.region.id;
        let split = !peer.pending_splits.is_empty();
        let destroy = peer.pending_destroy && peer.applying.tasks == 0;
        self.peers.insert(id, peer);
        if split {
            self.open_split_regions(id)?;
        }
        if destroy {
            self.destroy_peer(id)?;
        }
        Ok(())
    }

    /// Retries regions whose CommitMerge waited for its source replica.
    pub(in crate::raftstore) fn retry_unapplied(&mut self) -> Result<()> {
        let waiting: Vec<u64> = self
            .peers
            .values()
            .filter(|p| !p.unapplied.is_empty() && p.applying.tasks == 0)
            .map(|p| p.region.id)
            .collect();
        for id in waiting {
            let Some(mut peer) = self.peers.remove(&id) else {
                continue;
            };
            let driven = self.drive_apply(&mut peer);
            self.settle(peer)?;
            driven?;
        }
        Ok(())
    }

    /// Whether region `id` has a snapshot to install that must wait for the
    /// pool: installing rewrites the range (its own, and merge sources it
    /// covers) that batches in flight still write into.
    pub(in crate::raftstore) fn snapshot_waits_for_apply(&self, id: u64) -> bool {
        let Some(peer) = self.peers.get(&id) else {
            return false;
        };
        let Some(snap) = peer.raft.pending_snapshot() else {
            return false;
        };
        if peer.applying.tasks > 0 {
            return true;
        }
        let Ok(meta) = SnapshotMeta::decode(snap.get_data()) else {
            // Installing reports the bad snapshot.
            return false;
        };
        let region = meta.region.unwrap_or_default();
        self.peers
            .values()
            .any(|p| p.applying.tasks > 0 && p.is_initialized() && overlaps(&p.region, &region))
    }
}

#[cfg(test)]
mod tests {
    use nokv_proto::raft_cmdpb::{
        admin_request, AdminRequest, CompactLogRequest, PutRequest, RaftCmdRequest, Request,
    };
    use raft::prelude::{Entry, EntryType};

    use super::is_data_entry;

    fn normal(cmd: &RaftCmdRequest) -> Entry {
        Entry {
            data: prost::Message::encode_to_vec(cmd).into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_writes_and_empty_entries_go_to_the_pool() {
        let write = RaftCmdRequest {
            requests: vec![Request {
                cmd: Some(nokv_proto::raft_cmdpb::request::Cmd::Put(PutRequest {
                    cf: "raw".into(),
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                })),
            }],
            ..Default::default()
        };
        let admin = RaftCmdRequest {
            admin_request: Some(AdminRequest {
                cmd: Some(admin_request::Cmd::CompactLog(CompactLogRequest {
                    compact_index: 9,
                    compact_term: 2,
                })),
            }),
            ..Default::default()
        };
        assert!(
            is_data_entry(&Entry::default()),
            "a new leader's empty entry"
        );
        assert!(is_data_entry(&normal(&write)));
        assert!(!is_data_entry(&normal(&admin)));
        let mut conf_change = normal(&write);
        conf_change.set_entry_type(EntryType::EntryConfChange);
        assert!(!is_data_entry(&conf_change));
        let garbage = Entry {
            data: vec![0xff, 0xff, 0xff].into(),
            ..Default::default()
        };
        assert!(
            !is_data_entry(&garbage),
            "undecodable: the raftstore reports it"
        );
    }
}
