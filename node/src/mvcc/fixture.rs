//! A real RocksDB with the node's column families for MVCC tests: seed
//! records, run whole commands as the apply path does, and inspect every
//! column family afterwards.

use std::sync::Arc;

use nokv_proto::raft_cmdpb::{TxnRequest, TxnResponse};
use rocksdb::{IteratorMode, WriteBatch, DB};
use tempfile::TempDir;

use super::commands::{self, RegionRange};
use super::key::{encode_key, versioned_key};
use super::reader::MvccReader;
use super::{Lock, MvccTxn, Write, WriteKind, SHORT_VALUE_MAX};
use crate::engine::{ALL_CFS, CF_DEFAULT, CF_LOCK, CF_WRITE};

/// A temporary store holding one region that covers every key.
pub struct MvccFixture {
    /// The database.
    pub db: Arc<DB>,
    _dir: TempDir,
}

impl Default for MvccFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl MvccFixture {
    /// Opens an empty store.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = nokv_consensus::engine::open(dir.path(), &ALL_CFS).expect("open rocksdb");
        MvccFixture { db, _dir: dir }
    }

    fn put_cf(&self, cf: &str, key: Vec<u8>, value: Vec<u8>) {
        let h = self.db.cf_handle(cf).expect("cf");
        self.db.put_cf(h, key, value).expect("put");
    }

    /// Seeds a value in the default CF at `start_ts`.
    pub fn put_value(&self, key: &[u8], start_ts: u64, value: &[u8]) {
        self.put_cf(CF_DEFAULT, versioned_key(key, start_ts), value.to_vec());
    }

    /// Seeds a write record at `commit_ts`.
    pub fn put_write(&self, key: &[u8], commit_ts: u64, write: &Write) {
        self.put_cf(CF_WRITE, versioned_key(key, commit_ts), write.to_bytes());
    }

    /// Seeds a committed Put laid out as prewrite and commit leave it:
    /// values up to [`SHORT_VALUE_MAX`] inline in the write record, longer
    /// ones in the default CF at `start_ts`.
    pub fn seed_put(&self, key: &[u8], start_ts: u64, commit_ts: u64, value: &[u8]) {
        let short_value = if value.len() <= SHORT_VALUE_MAX {
            Some(value.to_vec())
        } else {
            self.put_value(key, start_ts, value);
            None
        };
        let write = Write {
            kind: WriteKind::Put,
            start_ts,
            short_value,
            overlapped_rollback: false,
        };
        self.put_write(key, commit_ts, &write);
    }

    /// Seeds a lock.
    pub fn put_lock(&self, key: &[u8], lock: &Lock) {
        self.put_cf(CF_LOCK, encode_key(key), lock.to_bytes());
    }

    /// Evaluates one command against the latest state, as the apply path
    /// does, without writing its changes.
    pub fn evaluate(&self, req: TxnRequest) -> (TxnResponse, MvccTxn) {
        let reader = MvccReader::new(&self.db);
        let range = RegionRange {
            start: &[],
            end: &[],
        };
        commands::execute(&reader, range, req).expect("command runs")
    }

    /// Runs one command as the apply path does and writes its changes.
    pub fn run(&self, req: TxnRequest) -> TxnResponse {
        let (resp, txn) = self.evaluate(req);
        let mut wb = WriteBatch::default();
        txn.write_to(&self.db, &mut wb).expect("buffer writes");
        self.db.write(wb).expect("write");
        resp
    }

    /// A reader of the latest state.
    pub fn reader(&self) -> MvccReader<'_> {
        MvccReader::new(&self.db)
    }

    /// Number of records in `cf`.
    pub fn len(&self, cf: &str) -> usize {
        let h = self.db.cf_handle(cf).expect("cf");
        self.db.iterator_cf(h, IteratorMode::Start).count()
    }

    /// Record counts of (default, lock, write).
    pub fn lens(&self) -> (usize, usize, usize) {
        (self.len(CF_DEFAULT), self.len(CF_LOCK), self.len(CF_WRITE))
    }

    /// The lock on `key`.
    pub fn lock(&self, key: &[u8]) -> Option<Lock> {
        self.reader().load_lock(key).expect("read lock")
    }

    /// The write record of `key` at exactly `commit_ts`.
    pub fn write_at(&self, key: &[u8], commit_ts: u64) -> Option<Write> {
        match self
            .reader()
            .seek_write(key, commit_ts)
            .expect("read write")
        {
            Some((ts, w)) if ts == commit_ts => Some(w),
            _ => None,
        }
    }

    /// The default-CF value of `key` at exactly `start_ts`.
    pub fn value_at(&self, key: &[u8], start_ts: u64) -> Option<Vec<u8>> {
        self.reader().load_value(key, start_ts).expect("read value")
    }
}

#[cfg(test)]
mod tests {
    use nokv_proto::kvrpcpb::*;
    use nokv_proto::raft_cmdpb::{txn_request, txn_response};

    use super::*;
    use crate::mvcc::LockKind;

    fn prewrite(keys: &[(&[u8], &[u8])], primary: &[u8], start_ts: u64) -> TxnRequest {
        TxnRequest {
            cmd: Some(txn_request::Cmd::Prewrite(KvPrewriteRequest {
                mutations: keys
                    .iter()
                    .map(|(k, v)| Mutation {
                        op: Op::Put as i32,
                        key: k.to_vec(),
                        value: v.to_vec(),
                        assertion: 0,
                    })
                    .collect(),
                primary_lock: primary.to_vec(),
                start_version: start_ts,
                lock_ttl: 3000,
                ..Default::default()
            })),
            one_pc_commit_ts: 0,
        }
    }

    #[test]
    fn prewrite_commit_then_read_at_both_sides_of_commit_ts() {
        let f = MvccFixture::new();
        let long = vec![7u8; 1000];
        let resp = f.run(prewrite(&[(b"a", b"1"), (b"b", &long)], b"a", 10));
        let Some(txn_response::Cmd::Prewrite(p)) = resp.cmd else {
            panic!("prewrite response expected")
        };
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(f.lens(), (1, 2, 0), "long value in default, two locks");
        assert_eq!(f.lock(b"a").expect("locked").kind, LockKind::Put);
        let err = f.reader().get_checked(b"a", 20).expect_err("locked");
        assert!(matches!(err, crate::mvcc::MvccError::Locked(_)));

        let resp = f.run(TxnRequest {
            cmd: Some(txn_request::Cmd::Commit(KvCommitRequest {
                start_version: 10,
                keys: vec![b"a".to_vec(), b"b".to_vec()],
                commit_version: 15,
                ..Default::default()
            })),
            one_pc_commit_ts: 0,
        });
        let Some(txn_response::Cmd::Commit(c)) = resp.cmd else {
            panic!("commit response expected")
        };
        assert!(c.error.is_none(), "{:?}", c.error);
        assert_eq!(f.lens(), (1, 0, 2));
        assert_eq!(f.write_at(b"a", 15).expect("write").kind, WriteKind::Put);
        let r = f.reader();
        assert_eq!(r.get_checked(b"a", 15).expect("read"), Some(b"1".to_vec()));
        assert_eq!(r.get_checked(b"b", 20).expect("read"), Some(long));
        assert_eq!(r.get_checked(b"a", 14).expect("read"), None);
        let scanned = r.scan(b"", b"", 20, 10, false, true).expect("scan");
        let keys: Vec<_> = scanned.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"b".to_vec(), b"a".to_vec()]);
    }

    #[test]
    fn one_phase_commit_writes_no_lock_and_conflicts_write_nothing() {
        let f = MvccFixture::new();
        let mut req = prewrite(&[(b"a", b"1"), (b"b", b"2")], b"a", 10);
        req.one_pc_commit_ts = 12;
        f.run(req);
        assert_eq!(f.lens(), (0, 0, 2));
        // A second transaction that started before 12 conflicts on both
        // keys and leaves nothing behind.
        let resp = f.run(prewrite(&[(b"a", b"x"), (b"c", b"y")], b"a", 11));
        let Some(txn_response::Cmd::Prewrite(p)) = resp.cmd else {
            panic!("prewrite response expected")
        };
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].conflict.is_some());
        assert_eq!(f.lens(), (0, 0, 2));
    }

    #[test]
    fn scans_see_through_rollback_and_lock_records_and_ignore_newer_versions() {
        let f = MvccFixture::new();
        let put = |v: &[u8], start_ts| Write {
            kind: WriteKind::Put,
            start_ts,
            short_value: Some(v.to_vec()),
            overlapped_rollback: false,
        };
        // a: Put@10, Rollback@12, Lock@14 → "a1" at 20.
        f.put_write(b"a", 10, &put(b"a1", 9));
        f.put_write(b"a", 12, &Write::new(WriteKind::Rollback, 12));
        f.put_write(b"a", 14, &Write::new(WriteKind::Lock, 13));
        // b: Put@10, Delete@15 → absent at 20, "b1" at 12.
        f.put_write(b"b", 10, &put(b"b1", 9));
        f.put_write(b"b", 15, &Write::new(WriteKind::Delete, 15));
        // c: Put@30 only → absent at 20.
        f.put_write(b"c", 30, &put(b"c1", 29));
        for reverse in [false, true] {
            let at20 = f
                .reader()
                .scan(b"", b"", 20, 10, false, reverse)
                .expect("scan");
            let at20: Vec<_> = at20
                .into_iter()
                .map(|(k, v)| (k, v.expect("value")))
                .collect();
            assert_eq!(
                at20,
                vec![(b"a".to_vec(), b"a1".to_vec())],
                "reverse {reverse}"
            );
            let at12 = f
                .reader()
                .scan(b"", b"", 12, 10, false, reverse)
                .expect("scan");
            let mut keys: Vec<_> = at12.into_iter().map(|(k, _)| k).collect();
            keys.sort();
            assert_eq!(
                keys,
                vec![b"a".to_vec(), b"b".to_vec()],
                "reverse {reverse}"
            );
        }
    }
}
