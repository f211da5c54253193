//! What the owner of a replica may ask of raft-rs besides the driver
//! protocol (tick, step, propose, Ready): log positions and entries, the
//! leader's view of its followers, and the few actions taken outside Ready
//! handling (campaign, the election timer, membership, log compaction,
//! clearing the log). Everything else of raft-rs stays inside this crate.

use raft::prelude::{ConfChange, Entry, Snapshot};
use raft::{GetEntriesContext, Progress};
use rocksdb::WriteBatch;

use super::RaftPeer;
use crate::Result;

impl<R> RaftPeer<R> {
    /// The index of the last log entry and its term.
    pub fn last_log(&self) -> (u64, u64) {
        let log = &self.raw.raft.raft_log;
        let last = log.last_index();
        (last, log.term(last).unwrap_or(0))
    }

    /// The first index the log still holds (one past the truncated index).
    pub fn first_index(&self) -> u64 {
        self.raw.raft.raft_log.first_index()
    }

    /// The index of the last log entry.
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// The commit index.
    pub fn committed(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The term of entry `index`, if the log still holds it.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        self.raw.raft.raft_log.term(index).ok()
    }

    /// Log entries `[low, high)` (half-open).
    ///
    /// # Errors
    /// When part of the range is compacted away or past the last index.
    pub fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>> {
        Ok(self
            .raw
            .raft
            .raft_log
            .slice(low, high, None, GetEntriesContext::empty(false))?)
    }

    /// Leader: how far `peer_id`'s log is known to match this one.
    pub fn matched(&self, peer_id: u64) -> Option<u64> {
        self.raw.raft.prs().get(peer_id).map(|p| p.matched)
    }

    /// Leader: the replication progress of every member, this peer
    /// included.
    pub fn progress(&self) -> impl Iterator<Item = (u64, &Progress)> {
        self.raw.raft.prs().iter().map(|(id, p)| (*id, p))
    }

    /// The peer a leader transfer is under way to.
    pub fn lead_transferee(&self) -> Option<u64> {
        self.raw.raft.lead_transferee
    }

    /// The index of the last membership change proposed; above the applied
    /// index while one is in flight.
    pub fn pending_conf_index(&self) -> u64 {
        self.raw.raft.pending_conf_index
    }

    /// A snapshot raft-rs received and has not handed over in a Ready yet.
    pub fn pending_snapshot(&self) -> Option<&Snapshot> {
        self.raw.raft.raft_log.unstable.snapshot.as_ref()
    }

    /// Starts an election now (a new region's only voter, or the replicas
    /// a split creates on the leader's store).
    pub fn campaign(&mut self) -> Result<()> {
        Ok(self.raw.campaign()?)
    }

    /// Restarts the election timer: a leader waking from hibernation gets a
    /// full election timeout before check-quorum judges followers that may
    /// still be asleep.
    pub fn reset_election_timer(&mut self) {
        self.raw.raft.election_elapsed = 0;
    }

    /// Applies a committed membership change to raft-rs and records the
    /// resulting membership in the log storage.
    ///
    /// # Errors
    /// raft-rs's refusal; nothing changed then.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> raft::Result<()> {
        let cs = self.raw.apply_conf_change(cc)?;
        self.raw.mut_store().set_conf_state(cs);
        Ok(())
    }

    /// Drops log entries up to `index` (of `term`) into `wb`: a CompactLog
    /// applied.
    pub fn compact_log_to(&mut self, index: u64, term: u64, wb: &mut WriteBatch) -> Result<()> {
        self.raw.mut_store().compact_to(index, term, wb)
    }

    /// Deletes this group's whole raft state into `wb`: the replica goes
    /// away.
    pub fn clear_log(&mut self, wb: &mut WriteBatch) -> Result<()> {
        self.raw.mut_store().clear(wb)
    }
}
