//! [`RocksRaftLog`]: raft-rs `Storage` over the `raft` column family.
//!
//! The log of one group lives at `entry_key(group, index)`; its hard state
//! at `hard_state_key(group)`. The truncated state (the index and term just
//! before the first available entry) belongs to the owner's `ApplyState` and
//! is handed in at open and on every compaction or snapshot, so the two can
//! never disagree. Writes go into a caller-supplied `WriteBatch`: the owner
//! batches every group's Ready into one synced write.

use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use crate::engine::{cf, CF_RAFT};
use crate::keys::{entry_key, hard_state_key, parse_entry_key};
use crate::{Error, Result};

/// Builds snapshots of a group's applied state. The node builds one from a
/// consistent RocksDB snapshot of the region's data; the coordinator from its
/// whole state machine.
pub trait SnapshotSource: Send + Sync {
    /// Returns a snapshot of the group's applied state: the metadata (index,
    /// term and conf state of the last applied entry) and the data bytes.
    ///
    /// # Errors
    /// `raft::Error::Store(SnapshotTemporarilyUnavailable)` asks raft to try
    /// again later; any other error makes the group inoperable.
    /// `request_index`: raft needs a snapshot at or above this index; `to`:
    /// the peer it is for, which must be in the snapshot's membership.
    fn build(&self, group_id: u64, request_index: u64, to: u64) -> raft::Result<Snapshot>;
}

/// A group's raft log and hard state in RocksDB, with the indexes cached in
/// memory. Entries appended through [`RocksRaftLog::append`] are visible to
/// raft-rs as soon as the batch holding them is written.
pub struct RocksRaftLog {
    db: Arc<DB>,
    group_id: u64,
    hard_state: HardState,
    conf_state: ConfState,
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
    snapshots: Option<Arc<dyn SnapshotSource>>,
}

impl RocksRaftLog {
    /// Opens the log of `group_id`. `truncated` is `(index, term)` from the
    /// owner's apply state; `conf_state` is the membership as of the applied
    /// index (from the region or the member list).
    pub fn open(
        db: Arc<DB>,
        group_id: u64,
        conf_state: ConfState,
        truncated: (u64, u64),
        snapshots: Option<Arc<dyn SnapshotSource>>,
    ) -> Result<Self> {
        let hard_state = match db.get_cf(cf(&db, CF_RAFT)?, hard_state_key(group_id))? {
            Some(bytes) => HardState::parse_from_bytes(&bytes).map_err(|e| Error::Corrupted {
                what: "hard state",
                detail: e.to_string(),
            })?,
            None => HardState::default(),
        };
        let mut log = RocksRaftLog {
            db,
            group_id,
            hard_state,
            conf_state,
            truncated_index: truncated.0,
            truncated_term: truncated.1,
            last_index: truncated.0,
            snapshots,
        };
        log.last_index = log.load_last_index()?.unwrap_or(truncated.0);
        Ok(log)
    }

    fn load_last_index(&self) -> Result<Option<u64>> {
        let cf = cf(&self.db, CF_RAFT)?;
        let upper = entry_key(self.group_id, u64::MAX);
        let mut it = self
            .db
            .iterator_cf(cf, IteratorMode::From(&upper, Direction::Reverse));
        match it.next() {
            Some(Ok((k, _))) => {
                Ok(parse_entry_key(self.group_id, &k).filter(|idx| *idx > self.truncated_index))
            }
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// The group this log belongs to.
    pub fn group_id(&self) -> u64 {
        self.group_id
    }

    /// The persisted hard state (as of the last write of a Ready).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// `(index, term)` of the last entry removed from the log.
    pub fn truncated(&self) -> (u64, u64) {
        (self.truncated_index, self.truncated_term)
    }

    /// The membership as of the applied index.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Replaces the membership after a conf change applied.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Index of the last entry in the log (or the truncated index when the
    /// log is empty).
    pub fn last_index_cached(&self) -> u64 {
        self.last_index
    }

    /// Appends `entries` (contiguous, first one at most `last_index + 1`)
    /// into `wb`, deleting any old entries past the new tail.
    pub fn append(&mut self, entries: &[Entry], wb: &mut WriteBatch) -> Result<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let cf = cf(&self.db, CF_RAFT)?;
        for e in entries {
            let bytes = e.write_to_bytes().map_err(|e| Error::Corrupted {
                what: "raft entry",
                detail: e.to_string(),
            })?;
            wb.put_cf(cf, entry_key(self.group_id, e.index), bytes);
        }
        if last.index < self.last_index {
            wb.delete_range_cf(
                cf,
                entry_key(self.group_id, last.index + 1),
                entry_key(self.group_id, self.last_index + 1),
            );
        }
        debug_assert!(first.index <= self.last_index + 1);
        self.last_index = last.index;
        Ok(())
    }

    /// Records a new hard state into `wb`.
    pub fn set_hard_state(&mut self, hs: HardState, wb: &mut WriteBatch) -> Result<()> {
        let bytes = hs.write_to_bytes().map_err(|e| Error::Corrupted {
            what: "hard state",
            detail: e.to_string(),
        })?;
        wb.put_cf(cf(&self.db, CF_RAFT)?, hard_state_key(self.group_id), bytes);
        self.hard_state = hs;
        Ok(())
    }

    /// Records a new commit index into `wb` (it must be written together
    /// with, or before, any apply state at or below it).
    pub fn set_commit(&mut self, commit: u64, wb: &mut WriteBatch) -> Result<()> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(hs, wb)
    }

    /// Resets the log to start after an incoming snapshot: every entry is
    /// deleted and the truncated state becomes the snapshot's index/term.
    /// The owner writes its data and apply state in the same batch.
    pub fn apply_snapshot_meta(
        &mut self,
        meta: &SnapshotMetadata,
        wb: &mut WriteBatch,
    ) -> Result<()> {
        let cf = cf(&self.db, CF_RAFT)?;
        wb.delete_range_cf(
            cf,
            entry_key(self.group_id, 0),
            entry_key(self.group_id, u64::MAX),
        );
        self.truncated_index = meta.index;
        self.truncated_term = meta.term;
        self.last_index = meta.index;
        self.conf_state = meta.get_conf_state().clone();
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.set_hard_state(hs, wb)
    }

    /// Deletes entries up to and including `index` (whose term is `term`)
    /// into `wb`; the owner records the new truncated state in its apply
    /// state in the same batch.
    pub fn compact_to(&mut self, index: u64, term: u64, wb: &mut WriteBatch) -> Result<()> {
        if index <= self.truncated_index {
            return Ok(());
        }
        let cf = cf(&self.db, CF_RAFT)?;
        wb.delete_range_cf(
            cf,
            entry_key(self.group_id, self.truncated_index),
            entry_key(self.group_id, index + 1),
        );
        self.truncated_index = index;
        self.truncated_term = term;
        self.last_index = self.last_index.max(index);
        Ok(())
    }

    /// Deletes every raft record of this group into `wb` (peer destroyed).
    pub fn clear(&mut self, wb: &mut WriteBatch) -> Result<()> {
        let cf = cf(&self.db, CF_RAFT)?;
        wb.delete_range_cf(
            cf,
            entry_key(self.group_id, 0),
            entry_key(self.group_id, u64::MAX),
        );
        wb.delete_cf(cf, hard_state_key(self.group_id));
        Ok(())
    }

    fn read_entry(&self, index: u64) -> raft::Result<Entry> {
        let cf = cf(&self.db, CF_RAFT)?;
        match self
            .db
            .get_cf(cf, entry_key(self.group_id, index))
            .map_err(Error::from)?
        {
            Some(bytes) => Entry::parse_from_bytes(&bytes).map_err(|e| {
                Error::Corrupted {
                    what: "raft entry",
                    detail: e.to_string(),
                }
                .into()
            }),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}

impl raft::Storage for RocksRaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let cf = cf(&self.db, CF_RAFT)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(entry_key(self.group_id, high).to_vec());
        let start = entry_key(self.group_id, low);
        let it = self
            .db
            .iterator_cf_opt(cf, opts, IteratorMode::From(&start, Direction::Forward));
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        let mut expect = low;
        for item in it {
            let (k, v) = item.map_err(Error::from)?;
            if parse_entry_key(self.group_id, &k) != Some(expect) {
                return Err(raft::Error::Store(StorageError::Unavailable));
            }
            let e = Entry::parse_from_bytes(&v).map_err(|e| Error::Corrupted {
                what: "raft entry",
                detail: e.to_string(),
            })?;
            size += v.len() as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
            expect += 1;
        }
        if out.is_empty() || (expect != high && size <= max_size) {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.read_entry(idx)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let Some(source) = &self.snapshots else {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        // A snapshot below the truncated index is useless: the entries
        // right after it are gone.
        let snap = source.build(self.group_id, request_index.max(self.truncated_index), to)?;
        if snap.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn open_db() -> (tempfile::TempDir, Arc<DB>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db =
            crate::engine::open(dir.path(), &[CF_RAFT, crate::engine::CF_META]).expect("open db");
        (dir, db)
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 4].into(),
            ..Default::default()
        }
    }

    fn append(log: &mut RocksRaftLog, db: &DB, es: &[Entry]) {
        let mut wb = WriteBatch::default();
        log.append(es, &mut wb).expect("append");
        db.write(wb).expect("write");
    }

    #[test]
    fn empty_log_starts_after_truncated_state() {
        let (_d, db) = open_db();
        let log = RocksRaftLog::open(db, 1, ConfState::default(), (5, 5), None).expect("open");
        assert_eq!(log.first_index().unwrap(), 6);
        assert_eq!(log.last_index().unwrap(), 5);
        assert_eq!(log.term(5).unwrap(), 5);
        assert!(matches!(
            log.term(4),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
    }

    #[test]
    fn append_then_read_back_and_reopen() {
        let (_d, db) = open_db();
        let mut log =
            RocksRaftLog::open(db.clone(), 3, ConfState::default(), (0, 0), None).expect("open");
        append(&mut log, &db, &[entry(1, 1), entry(2, 1), entry(3, 2)]);
        let got = log
            .entries(1, 4, None, GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(log.term(3).unwrap(), 2);
        let hs = HardState {
            term: 2,
            commit: 2,
            ..Default::default()
        };
        let mut wb = WriteBatch::default();
        log.set_hard_state(hs, &mut wb).unwrap();
        db.write(wb).unwrap();
        let reopened = RocksRaftLog::open(db, 3, ConfState::default(), (0, 0), None).expect("open");
        assert_eq!(reopened.last_index().unwrap(), 3);
        assert_eq!(reopened.initial_state().unwrap().hard_state.commit, 2);
    }

    #[test]
    fn append_overwrites_conflicting_tail() {
        let (_d, db) = open_db();
        let mut log =
            RocksRaftLog::open(db.clone(), 1, ConfState::default(), (0, 0), None).expect("open");
        append(
            &mut log,
            &db,
            &[entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)],
        );
        append(&mut log, &db, &[entry(2, 2)]);
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.term(2).unwrap(), 2);
        let reopened = RocksRaftLog::open(db, 1, ConfState::default(), (0, 0), None).expect("open");
        assert_eq!(
            reopened.last_index().unwrap(),
            2,
            "old tail must be gone on disk"
        );
    }

    #[test]
    fn max_size_limits_but_returns_at_least_one() {
        let (_d, db) = open_db();
        let mut log =
            RocksRaftLog::open(db.clone(), 1, ConfState::default(), (0, 0), None).expect("open");
        append(&mut log, &db, &[entry(1, 1), entry(2, 1), entry(3, 1)]);
        let got = log
            .entries(1, 4, Some(1), GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn compaction_moves_first_index_and_keeps_term_of_truncated() {
        let (_d, db) = open_db();
        let mut log =
            RocksRaftLog::open(db.clone(), 1, ConfState::default(), (0, 0), None).expect("open");
        append(&mut log, &db, &[entry(1, 1), entry(2, 1), entry(3, 2)]);
        let mut wb = WriteBatch::default();
        log.compact_to(2, 1, &mut wb).unwrap();
        db.write(wb).unwrap();
        assert_eq!(log.first_index().unwrap(), 3);
        assert_eq!(log.term(2).unwrap(), 1);
        assert!(matches!(
            log.entries(2, 4, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
    }

    #[test]
    fn groups_do_not_see_each_other() {
        let (_d, db) = open_db();
        let mut a =
            RocksRaftLog::open(db.clone(), 1, ConfState::default(), (0, 0), None).expect("open");
        append(&mut a, &db, &[entry(1, 1), entry(2, 1)]);
        let b = RocksRaftLog::open(db, 2, ConfState::default(), (0, 0), None).expect("open");
        assert_eq!(b.last_index().unwrap(), 0);
    }

    #[test]
    fn snapshot_without_source_is_temporarily_unavailable() {
        let (_d, db) = open_db();
        let log = RocksRaftLog::open(db, 1, ConfState::default(), (0, 0), None).expect("open");
        assert!(matches!(
            log.snapshot(1, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
    }
}
