//! Reading MVCC state: a key's lock, its versions, the value visible at a
//! timestamp, a transaction's commit record, and range scans. A reader
//! built with [`MvccReader::snapshot`] sees one point in time across every
//! call; [`MvccReader::new`] reads the latest state (the apply path, which
//! is the only writer of its region).

use rocksdb::{DBRawIterator, ReadOptions, Snapshot, DB};

use super::error::{MvccError, MvccResult};
use super::key::{append_ts, encode_key, split_ts, versioned_key};
use super::lock::{Lock, LockKind};
use super::write::{Write, WriteKind};
use crate::engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};

/// What became of a transaction on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnCommitRecord {
    /// Committed at this timestamp.
    Committed(u64),
    /// Rolled back (a rollback record exists).
    RolledBack,
    /// Neither: no record of the transaction on this key.
    None,
}

/// One key of a scan: its value, or why it cannot be read at the scan's
/// timestamp (a blocking lock).
pub type ScanRow = (Vec<u8>, MvccResult<Vec<u8>>);

/// Reads MVCC state from the node's RocksDB.
pub struct MvccReader<'a> {
    db: &'a DB,
    snapshot: Option<Snapshot<'a>>,
}

impl<'a> MvccReader<'a> {
    /// Reads the latest state.
    pub fn new(db: &'a DB) -> Self {
        MvccReader { db, snapshot: None }
    }

    /// Reads one consistent point in time.
    pub fn snapshot(db: &'a DB) -> Self {
        MvccReader {
            db,
            snapshot: Some(db.snapshot()),
        }
    }

    fn opts(&self) -> ReadOptions {
        let mut o = ReadOptions::default();
        if let Some(s) = &self.snapshot {
            o.set_snapshot(s);
        }
        o
    }

    fn handle(&self, name: &str) -> MvccResult<&'a rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| MvccError::Corrupted(format!("column family {name} is missing")))
    }

    fn get_cf(&self, name: &str, key: &[u8]) -> MvccResult<Option<Vec<u8>>> {
        Ok(self.db.get_cf_opt(self.handle(name)?, key, &self.opts())?)
    }

    fn iter(
        &self,
        name: &str,
        lower: Vec<u8>,
        upper: Option<Vec<u8>>,
    ) -> MvccResult<DBRawIterator<'a>> {
        let mut o = self.opts();
        o.set_iterate_lower_bound(lower);
        if let Some(u) = upper {
            o.set_iterate_upper_bound(u);
        }
        Ok(self.db.raw_iterator_cf_opt(self.handle(name)?, o))
    }

    /// A raw iterator over the `write` CF between stored-key bounds.
    pub(crate) fn write_iter(
        &self,
        lower: Vec<u8>,
        upper: Option<Vec<u8>>,
    ) -> MvccResult<DBRawIterator<'a>> {
        self.iter(CF_WRITE, lower, upper)
    }

    /// The lock on `key`, if any.
    pub fn load_lock(&self, key: &[u8]) -> MvccResult<Option<Lock>> {
        self.get_cf(CF_LOCK, &encode_key(key))?
            .map(|b| Lock::parse(&b))
            .transpose()
    }

    /// A value stored in the `default` CF by the transaction at `start_ts`.
    pub fn load_value(&self, key: &[u8], start_ts: u64) -> MvccResult<Option<Vec<u8>>> {
        self.get_cf(CF_DEFAULT, &versioned_key(key, start_ts))
    }

    /// Versions of `key` with commit_ts ≤ `ts`, newest first, as
    /// `(commit_ts, write)`; stops after `limit` (0 = no limit).
    pub fn writes(&self, key: &[u8], ts: u64, limit: usize) -> MvccResult<Vec<(u64, Write)>> {
        let enc = encode_key(key);
        let lower = append_ts(enc.clone(), ts);
        let upper = append_ts(enc.clone(), 0);
        let mut upper_excl = upper.clone();
        upper_excl.push(0);
        let mut it = self.iter(CF_WRITE, lower.clone(), Some(upper_excl))?;
        it.seek(&lower);
        let mut out = Vec::new();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let (user, commit_ts) =
                split_ts(k).ok_or_else(|| MvccError::Corrupted("short write key".into()))?;
            if user != enc.as_slice() {
                break;
            }
            out.push((commit_ts, Write::parse(v)?));
            if limit != 0 && out.len() >= limit {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The newest version of `key` with commit_ts ≤ `ts`.
    pub fn seek_write(&self, key: &[u8], ts: u64) -> MvccResult<Option<(u64, Write)>> {
        Ok(self.writes(key, ts, 1)?.pop())
    }

    /// The newest version that carries data (Put or Delete) at or below
    /// `ts`, skipping Lock and Rollback records.
    pub fn seek_data_write(&self, key: &[u8], ts: u64) -> MvccResult<Option<(u64, Write)>> {
        let mut ts = ts;
        loop {
            let batch = self.writes(key, ts, 16)?;
            let Some(last) = batch.last().map(|(c, _)| *c) else {
                return Ok(None);
            };
            for (commit_ts, w) in batch {
                if matches!(w.kind, WriteKind::Put | WriteKind::Delete) {
                    return Ok(Some((commit_ts, w)));
                }
            }
            if last == 0 {
                return Ok(None);
            }
            ts = last - 1;
        }
    }

    /// The value of `key` visible at `ts`, ignoring locks.
    pub fn get(&self, key: &[u8], ts: u64) -> MvccResult<Option<Vec<u8>>> {
        match self.seek_data_write(key, ts)? {
            Some((_, w)) if w.kind == WriteKind::Put => self.write_value(key, w),
            _ => Ok(None),
        }
    }

    fn write_value(&self, key: &[u8], w: Write) -> MvccResult<Option<Vec<u8>>> {
        match w.short_value {
            Some(v) => Ok(Some(v)),
            None => match self.load_value(key, w.start_ts)? {
                Some(v) => Ok(Some(v)),
                None => Err(MvccError::Corrupted(format!(
                    "write record at start_ts {} has no value",
                    w.start_ts
                ))),
            },
        }
    }

    /// The value of `key` at `ts` for a snapshot reader: a lock of another
    /// transaction that may commit below `ts` makes the read wait.
    pub fn get_checked(&self, key: &[u8], ts: u64) -> MvccResult<Option<Vec<u8>>> {
        if let Some(lock) = self.load_lock(key)? {
            check_lock_for_read(&lock, key, ts)?;
        }
        self.get(key, ts)
    }

    /// What became of the transaction at `start_ts` on `key`.
    pub fn txn_commit_record(&self, key: &[u8], start_ts: u64) -> MvccResult<TxnCommitRecord> {
        let mut ts = u64::MAX;
        loop {
            let batch = self.writes(key, ts, 64)?;
            let Some(last) = batch.last().map(|(c, _)| *c) else {
                return Ok(TxnCommitRecord::None);
            };
            for (commit_ts, w) in batch {
                if commit_ts < start_ts {
                    return Ok(TxnCommitRecord::None);
                }
                if w.start_ts == start_ts {
                    return Ok(if w.kind == WriteKind::Rollback {
                        TxnCommitRecord::RolledBack
                    } else {
                        TxnCommitRecord::Committed(commit_ts)
                    });
                }
                if commit_ts == start_ts && w.overlapped_rollback {
                    return Ok(TxnCommitRecord::RolledBack);
                }
            }
            if last <= start_ts || last == 0 {
                return Ok(TxnCommitRecord::None);
            }
            ts = last - 1;
        }
    }

    /// Key-value pairs visible at `ts` in user range `[start, end)` (empty
    /// `end` = unbounded), at most `limit`, newest key first when
    /// `reverse`. A lock that blocks the read yields an error pair for its
    /// key instead of a value.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        ts: u64,
        limit: usize,
        key_only: bool,
        reverse: bool,
    ) -> MvccResult<Vec<ScanRow>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lower = encode_key(start);
        let upper = (!end.is_empty()).then(|| encode_key(end));
        let mut out: Vec<ScanRow> = Vec::new();
        let mut it = self.iter(CF_WRITE, lower.clone(), upper.clone())?;
        if reverse {
            it.seek_to_last();
        } else {
            it.seek_to_first();
        }
        while it.valid() && out.len() < limit {
            let Some(k) = it.key() else { break };
            let (enc, _) =
                split_ts(k).ok_or_else(|| MvccError::Corrupted("short write key".into()))?;
            let enc = enc.to_vec();
            let user = super::key::decode_key(&enc)
                .ok_or_else(|| MvccError::Corrupted("bad write key".into()))?;
            // Going forward the iterator already sits on this key's
            // versions: walk them in place instead of a fresh lookup.
            let value = if reverse {
                self.get(&user, ts)?
            } else {
                self.visible_in_place(&mut it, &enc, &user, ts)?
            };
            if let Some(v) = value {
                out.push((user, Ok(if key_only { Vec::new() } else { v })));
            }
            if reverse {
                it.seek_for_prev(&enc);
            } else {
                let next = append_ts(enc, 0);
                it.seek(&next);
                if it.valid() && it.key() == Some(next.as_slice()) {
                    it.next();
                }
            }
        }
        it.status()?;
        // Locks up to the last key returned (or the whole range when the
        // scan ran out) decide whether the scan may be served.
        let boundary = if out.len() >= limit {
            out.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let mut locks = Vec::new();
        let mut lit = self.iter(CF_LOCK, lower, upper)?;
        lit.seek_to_first();
        while lit.valid() {
            let (Some(k), Some(v)) = (lit.key(), lit.value()) else {
                break;
            };
            let user = super::key::decode_key(k)
                .ok_or_else(|| MvccError::Corrupted("bad lock key".into()))?;
            let lock = Lock::parse(v)?;
            if let Err(e) = check_lock_for_read(&lock, &user, ts) {
                locks.push((user, e));
            }
            lit.next();
        }
        lit.status()?;
        for (user, e) in locks {
            if let Some(b) = &boundary {
                if (!reverse && &user > b) || (reverse && &user < b) {
                    continue;
                }
            }
            match out.iter().position(|(k, _)| *k == user) {
                Some(i) => out[i].1 = Err(e),
                None => out.push((user, Err(e))),
            }
        }
        if reverse {
            out.sort_by(|a, b| b.0.cmp(&a.0));
        } else {
            out.sort_by(|a, b| a.0.cmp(&b.0));
        }
        out.truncate(limit);
        Ok(out)
    }

    /// The value of `user` (encoded `enc`) visible at `ts`, found by
    /// moving `it` among that key's versions; `it` is left somewhere in
    /// them (or past them).
    fn visible_in_place(
        &self,
        it: &mut DBRawIterator<'a>,
        enc: &[u8],
        user: &[u8],
        ts: u64,
    ) -> MvccResult<Option<Vec<u8>>> {
        it.seek(append_ts(enc.to_vec(), ts));
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if split_ts(k).map(|(e, _)| e) != Some(enc) {
                break;
            }
            let w = Write::parse(v)?;
            match w.kind {
                WriteKind::Put => return self.write_value(user, w),
                WriteKind::Delete => return Ok(None),
                WriteKind::Lock | WriteKind::Rollback => it.next(),
            }
        }
        it.status()?;
        Ok(None)
    }

    /// Locks in user range `[start, end)` with start_ts ≤ `max_ts`, at
    /// most `limit` (0 = no limit), as `(key, lock)`.
    pub fn scan_locks(
        &self,
        start: &[u8],
        end: &[u8],
        max_ts: u64,
        limit: usize,
    ) -> MvccResult<Vec<(Vec<u8>, Lock)>> {
        let lower = encode_key(start);
        let upper = (!end.is_empty()).then(|| encode_key(end));
        let mut it = self.iter(CF_LOCK, lower, upper)?;
        it.seek_to_first();
        let mut out = Vec::new();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let lock = Lock::parse(v)?;
            if lock.start_ts <= max_ts {
                let user = super::key::decode_key(k)
                    .ok_or_else(|| MvccError::Corrupted("bad lock key".into()))?;
                out.push((user, lock));
                if limit != 0 && out.len() >= limit {
                    break;
                }
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}

/// Whether a read at `ts` must wait for `lock` on `key`: a Put or Delete
/// lock of a transaction that started at or before `ts` could commit below
/// it.
pub fn check_lock_for_read(lock: &Lock, key: &[u8], ts: u64) -> MvccResult<()> {
    if lock.kind == LockKind::Lock || lock.start_ts > ts {
        return Ok(());
    }
    if lock.min_commit_ts > ts {
        // The transaction promised to commit above our read.
        return Ok(());
    }
    Err(MvccError::Locked(lock.info(key)))
}
