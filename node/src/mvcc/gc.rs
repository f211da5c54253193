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

#[cfg(test)]
mod tests {
    use nokv_proto::raft_cmdpb::{txn_request, txn_response, GcRequest, GcResponse, TxnRequest};

    use crate::mvcc::fixture::MvccFixture;
    use crate::mvcc::{Lock, LockKind, Write, WriteKind, SHORT_VALUE_MAX};

    /// A value too long to inline, so it lands in the default CF.
    fn long(tag: u8) -> Vec<u8> {
        vec![tag; SHORT_VALUE_MAX + 45]
    }

    fn gc(
        f: &MvccFixture,
        start: &[u8],
        end: &[u8],
        safe_point: u64,
        key_limit: u32,
    ) -> GcResponse {
        let req = GcRequest {
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            safe_point,
            key_limit,
        };
        let resp = f.run(TxnRequest {
            cmd: Some(txn_request::Cmd::Gc(req)),
            one_pc_commit_ts: 0,
        });
        match resp.cmd {
            Some(txn_response::Cmd::Gc(r)) => r,
            other => panic!("gc response expected, got {other:?}"),
        }
    }

    fn commit_ts_of(f: &MvccFixture, key: &[u8]) -> Vec<u64> {
        let versions = f.reader().writes(key, u64::MAX, 0).expect("read");
        versions.into_iter().map(|(ts, _)| ts).collect()
    }

    /// Every read of `key` from `from` to `to` inclusive.
    fn reads(f: &MvccFixture, key: &[u8], from: u64, to: u64) -> Vec<Option<Vec<u8>>> {
        let r = f.reader();
        (from..=to)
            .map(|ts| r.get(key, ts).expect("read"))
            .collect()
    }

    /// Key `k` overwritten many times, with Lock and Rollback records mixed
    /// in on both sides of safe point 75.
    fn overwritten(f: &MvccFixture) {
        f.seed_put(b"k", 10, 15, &long(1));
        f.seed_put(b"k", 20, 25, b"short");
        f.put_write(b"k", 35, &Write::new(WriteKind::Lock, 30));
        f.seed_put(b"k", 40, 45, &long(4));
        f.put_write(b"k", 50, &Write::new(WriteKind::Rollback, 50));
        f.seed_put(b"k", 60, 65, &long(6));
        f.put_write(b"k", 72, &Write::new(WriteKind::Lock, 70));
        f.put_write(b"k", 74, &Write::new(WriteKind::Rollback, 74));
        f.seed_put(b"k", 80, 85, &long(8));
        f.put_write(b"k", 95, &Write::new(WriteKind::Delete, 90));
        f.seed_put(b"k", 100, 105, &long(10));
        f.put_write(b"k", 110, &Write::new(WriteKind::Rollback, 110));
    }

    #[test]
    fn keeps_only_the_newest_put_at_or_below_the_safe_point() {
        let f = MvccFixture::new();
        overwritten(&f);
        assert_eq!(f.lens(), (5, 0, 12));
        let before = reads(&f, b"k", 75, 120);

        let resp = gc(&f, b"", b"", 75, 100);
        assert_eq!((resp.keys, resp.versions_deleted), (1, 7));
        assert!(resp.done);
        assert!(resp.next_key.is_empty());

        // The Put at 65 stays; everything above 75 is untouched.
        assert_eq!(commit_ts_of(&f, b"k"), vec![110, 105, 95, 85, 65]);
        assert_eq!(reads(&f, b"k", 75, 120), before);
        assert_eq!(f.reader().get(b"k", 75).expect("read"), Some(long(6)));
        // The long values of dropped Puts went with them.
        assert_eq!(f.lens(), (3, 0, 5));
        assert_eq!(f.value_at(b"k", 10), None);
        assert_eq!(f.value_at(b"k", 40), None);
        assert_eq!(f.value_at(b"k", 60), Some(long(6)));
        // Below the safe point the history is gone.
        assert_eq!(f.reader().get(b"k", 50).expect("read"), None);

        // A second pass has nothing left to drop.
        assert_eq!(gc(&f, b"", b"", 75, 100).versions_deleted, 0);
        assert_eq!(f.lens(), (3, 0, 5));
    }

    #[test]
    fn a_delete_at_or_below_the_safe_point_goes_with_everything_older() {
        let f = MvccFixture::new();
        // Deleted below the safe point: the key disappears entirely.
        f.seed_put(b"d", 10, 15, &long(1));
        f.put_write(b"d", 25, &Write::new(WriteKind::Delete, 20));
        // Deleted below, written again above: only the new Put remains.
        f.seed_put(b"e", 10, 15, &long(2));
        f.put_write(b"e", 25, &Write::new(WriteKind::Delete, 20));
        f.seed_put(b"e", 40, 45, &long(3));
        // Only Lock and Rollback records below: all of them go.
        f.put_write(b"l", 12, &Write::new(WriteKind::Lock, 11));
        f.put_write(b"l", 20, &Write::new(WriteKind::Rollback, 20));
        // A pending lock is not GC's business.
        let lock = Lock {
            kind: LockKind::Put,
            primary: b"e".to_vec(),
            start_ts: 28,
            ttl: 3000,
            min_commit_ts: 29,
            txn_size: 1,
            short_value: Some(b"v".to_vec()),
        };
        f.put_lock(b"l", &lock);
        assert_eq!(f.lens(), (3, 1, 7));

        let resp = gc(&f, b"", b"", 30, 100);
        assert_eq!((resp.keys, resp.versions_deleted), (3, 6));
        assert!(resp.done);
        assert_eq!(commit_ts_of(&f, b"d"), Vec::<u64>::new());
        assert_eq!(commit_ts_of(&f, b"e"), vec![45]);
        assert_eq!(commit_ts_of(&f, b"l"), Vec::<u64>::new());
        assert_eq!(f.lens(), (1, 1, 1));
        assert_eq!(f.lock(b"l"), Some(lock));
        let r = f.reader();
        assert_eq!(r.get(b"d", 30).expect("read"), None);
        assert_eq!(r.get(b"e", 30).expect("read"), None);
        assert_eq!(r.get(b"e", 45).expect("read"), Some(long(3)));
    }

    #[test]
    fn key_limit_pages_through_the_range() {
        let f = MvccFixture::new();
        for key in [b"k0", b"k1", b"k2", b"k3", b"k4"] {
            f.seed_put(key, 10, 15, &long(1));
            f.seed_put(key, 20, 25, &long(2));
        }
        assert_eq!(f.lens(), (10, 0, 10));

        let mut from = Vec::new();
        let mut pages = Vec::new();
        loop {
            let resp = gc(&f, &from, b"", 30, 2);
            pages.push((resp.keys, resp.versions_deleted, resp.next_key.clone()));
            if resp.done {
                assert!(resp.next_key.is_empty());
                break;
            }
            from = resp.next_key;
        }
        assert_eq!(
            pages,
            vec![
                (2, 2, b"k2".to_vec()),
                (2, 2, b"k4".to_vec()),
                (1, 1, Vec::new()),
            ]
        );
        assert_eq!(f.lens(), (5, 0, 5));
        for key in [b"k0", b"k1", b"k2", b"k3", b"k4"] {
            assert_eq!(commit_ts_of(&f, key), vec![25]);
            assert_eq!(f.reader().get(key, 30).expect("read"), Some(long(2)));
        }
    }

    #[test]
    fn only_keys_in_the_requested_range_are_collected() {
        let f = MvccFixture::new();
        for key in [b"a", b"b", b"c", b"d"] {
            f.seed_put(key, 10, 15, b"old");
            f.seed_put(key, 20, 25, b"new");
        }
        // key_limit 0 is read as 1.
        let resp = gc(&f, b"b", b"d", 30, 0);
        assert_eq!((resp.keys, resp.versions_deleted), (1, 1));
        assert_eq!(resp.next_key, b"c".to_vec());
        let resp = gc(&f, &resp.next_key, b"d", 30, 0);
        assert_eq!((resp.keys, resp.versions_deleted), (1, 1));
        assert!(resp.done);
        assert_eq!(commit_ts_of(&f, b"a"), vec![25, 15]);
        assert_eq!(commit_ts_of(&f, b"b"), vec![25]);
        assert_eq!(commit_ts_of(&f, b"c"), vec![25]);
        assert_eq!(commit_ts_of(&f, b"d"), vec![25, 15]);
    }
}
