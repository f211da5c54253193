//! MVCC garbage collection: versions no reader at or above the safe point
//! can see are dropped. For each key, the newest Put at or below the safe
//! point stays (reads at the safe point still find it); everything older,
//! and every Lock or Rollback record at or below it, goes. A Delete at or
//! below the safe point goes too, with everything older: a reader at the
//! safe point sees no value either way.

use super::error::{MvccError, MvccResult};
use super::key::{append_ts, decode_key, encode_key, split_ts};
use super::reader::MvccReader;
use super::txn::MvccTxn;
use super::write::WriteKind;

/// Where a GC pass over a range stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcProgress {
    /// Keys examined.
    pub keys: usize,
    /// Versions deleted.
    pub versions_deleted: usize,
    /// The user key to continue from, or `None` when the range is done.
    pub next_key: Option<Vec<u8>>,
}

/// Collects in `txn` the deletions GC at `safe_point` makes for up to
/// `key_limit` keys of user range `[start, end)` (empty end = unbounded).
pub fn gc_range(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    start: &[u8],
    end: &[u8],
    safe_point: u64,
    key_limit: usize,
) -> MvccResult<GcProgress> {
    let mut progress = GcProgress::default();
    let mut next = start.to_vec();
    loop {
        let Some(key) = reader.next_write_key(&next, end)? else {
            return Ok(progress);
        };
        if progress.keys >= key_limit {
            progress.next_key = Some(key);
            return Ok(progress);
        }
        progress.keys += 1;
        progress.versions_deleted += gc_key(reader, txn, &key, safe_point)?;
        next = key;
        next.push(0);
    }
}

/// GC of one key; returns the versions deleted.
pub fn gc_key(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    key: &[u8],
    safe_point: u64,
) -> MvccResult<usize> {
    let mut deleted = 0;
    let mut kept_newest = false;
    for (commit_ts, w) in reader.writes(key, safe_point, 0)? {
        let drop = match w.kind {
            WriteKind::Put if !kept_newest => {
                kept_newest = true;
                false
            }
            WriteKind::Delete if !kept_newest => {
                kept_newest = true;
                true
            }
            _ => true,
        };
        if drop {
            if w.kind == WriteKind::Put && w.short_value.is_none() {
                txn.delete_value(key, w.start_ts);
            }
            txn.delete_write(key, commit_ts);
            deleted += 1;
        }
    }
    Ok(deleted)
}

impl MvccReader<'_> {
    /// The first user key at or after `from` (below `end`, empty =
    /// unbounded) that has any version.
    pub fn next_write_key(&self, from: &[u8], end: &[u8]) -> MvccResult<Option<Vec<u8>>> {
        let lower = append_ts(encode_key(from), u64::MAX);
        let upper = (!end.is_empty()).then(|| encode_key(end));
        let mut it = self.write_iter(lower.clone(), upper)?;
        it.seek(&lower);
        if !it.valid() {
            it.status()?;
            return Ok(None);
        }
        let Some(k) = it.key() else { return Ok(None) };
        let (enc, _) = split_ts(k).ok_or_else(|| MvccError::Corrupted("short write key".into()))?;
        decode_key(enc)
            .map(Some)
            .ok_or_else(|| MvccError::Corrupted("bad write key".into()))
    }
}
