//! Retried transactional commands are idempotent by start_ts.
//!
//! A client whose request's outcome is unknown (the leader died after
//! proposing, the connection broke, the deadline passed) sends it again,
//! and both copies may be committed to the raft log and applied, possibly
//! with other transactions' commands in between. Each test here applies a
//! command, then optionally other commands, then the same command again,
//! and checks that the second copy writes nothing (its buffered changes are
//! empty), leaves the transaction's fate as it was, and answers what the
//! client (`client/src/txn.rs`) needs to hear. docs/decisions.md, "Retried
//! transactional commands are idempotent by start_ts", gives the reasoning
//! per command.
//!
//! Timestamps are TSO-shaped ([`compose_ts`] of milliseconds) because lock
//! TTLs are judged on their physical part. T1, the transaction under test,
//! starts at [`T1`]; T2 is a later one touching the same keys.

use nokv_proto::kvrpcpb::*;
use nokv_proto::raft_cmdpb::{txn_request, txn_response, TxnRequest};

use super::fixture::MvccFixture;
use super::reader::TxnCommitRecord;
use super::{compose_ts, WriteKind, SHORT_VALUE_MAX, TSO_LOGICAL_BITS};
use crate::engine::CF_WRITE;

/// Lock TTL of every prewrite here, in milliseconds.
const TTL_MS: u64 = 3000;

/// A TSO timestamp at `ms` physical milliseconds.
fn ts(ms: u64) -> u64 {
    compose_ts(ms, 0)
}

/// Start ts of the transaction under test.
const T1: u64 = 100 << TSO_LOGICAL_BITS;
/// Start ts of a later transaction on the same keys.
const T2: u64 = 120 << TSO_LOGICAL_BITS;

/// A current_ts at which T1's locks are alive.
fn alive() -> u64 {
    ts(200)
}

/// A current_ts at which T1's locks have expired.
fn expired() -> u64 {
    ts(100 + TTL_MS + 1)
}

/// A value too long to inline, so it lives in the default CF.
fn long() -> Vec<u8> {
    vec![7; SHORT_VALUE_MAX + 1]
}

fn put(key: &[u8], value: &[u8]) -> Mutation {
    Mutation {
        op: Op::Put as i32,
        key: key.to_vec(),
        value: value.to_vec(),
        assertion: Assertion::None as i32,
    }
}

fn check_not_exists(key: &[u8]) -> Mutation {
    Mutation {
        op: Op::CheckNotExists as i32,
        key: key.to_vec(),
        value: vec![],
        assertion: Assertion::None as i32,
    }
}

fn cmd(c: txn_request::Cmd) -> TxnRequest {
    TxnRequest {
        cmd: Some(c),
        one_pc_commit_ts: 0,
    }
}

fn keys(ks: &[&[u8]]) -> Vec<Vec<u8>> {
    ks.iter().map(|k| k.to_vec()).collect()
}

/// A two-phase prewrite, primary `a`.
fn prewrite(start_ts: u64, mutations: Vec<Mutation>) -> TxnRequest {
    cmd(txn_request::Cmd::Prewrite(KvPrewriteRequest {
        mutations,
        primary_lock: b"a".to_vec(),
        start_version: start_ts,
        lock_ttl: TTL_MS,
        txn_size: 2,
        ..Default::default()
    }))
}

/// A one-phase prewrite as the service proposes it: the client asked for
/// one phase and the leader chose `commit_ts` (0: it fell back to two).
fn one_pc(start_ts: u64, mutations: Vec<Mutation>, commit_ts: u64) -> TxnRequest {
    let mut req = prewrite(start_ts, mutations);
    if let Some(txn_request::Cmd::Prewrite(p)) = &mut req.cmd {
        p.try_one_pc = true;
    }
    req.one_pc_commit_ts = commit_ts;
    req
}

fn commit(start_ts: u64, commit_ts: u64, ks: &[&[u8]]) -> TxnRequest {
    cmd(txn_request::Cmd::Commit(KvCommitRequest {
        start_version: start_ts,
        keys: keys(ks),
        commit_version: commit_ts,
        ..Default::default()
    }))
}

fn rollback(start_ts: u64, ks: &[&[u8]]) -> TxnRequest {
    cmd(txn_request::Cmd::BatchRollback(KvBatchRollbackRequest {
        start_version: start_ts,
        keys: keys(ks),
        ..Default::default()
    }))
}

fn cleanup(key: &[u8], start_ts: u64, current_ts: u64) -> TxnRequest {
    cmd(txn_request::Cmd::Cleanup(KvCleanupRequest {
        key: key.to_vec(),
        start_version: start_ts,
        current_ts,
        ..Default::default()
    }))
}

/// Resolve lock, single form; no keys = every lock in the region.
fn resolve(start_ts: u64, commit_ts: u64, ks: &[&[u8]]) -> TxnRequest {
    cmd(txn_request::Cmd::ResolveLock(KvResolveLockRequest {
        start_version: start_ts,
        commit_version: commit_ts,
        keys: keys(ks),
        ..Default::default()
    }))
}

/// Resolve lock, batched form over the whole region.
fn resolve_batch(fates: &[(u64, u64)]) -> TxnRequest {
    cmd(txn_request::Cmd::ResolveLock(KvResolveLockRequest {
        txn_infos: fates
            .iter()
            .map(|&(txn, status)| TxnInfo { txn, status })
            .collect(),
        ..Default::default()
    }))
}

/// Check txn status of T1 on primary `a`, as a reader at `caller_ts`
/// (the client always asks to roll back a missing lock).
fn check_status(caller_ts: u64, current_ts: u64) -> TxnRequest {
    cmd(txn_request::Cmd::CheckTxnStatus(KvCheckTxnStatusRequest {
        primary_key: b"a".to_vec(),
        lock_ts: T1,
        caller_start_ts: caller_ts,
        current_ts,
        rollback_if_not_exist: true,
        ..Default::default()
    }))
}

fn heartbeat(start_ts: u64, advise_ttl: u64) -> TxnRequest {
    cmd(txn_request::Cmd::TxnHeartBeat(KvTxnHeartBeatRequest {
        primary_lock: b"a".to_vec(),
        start_version: start_ts,
        advise_lock_ttl: advise_ttl,
        ..Default::default()
    }))
}

/// Applies `req` and writes its changes.
fn apply(f: &MvccFixture, req: TxnRequest) -> txn_response::Cmd {
    f.run(req).cmd.expect("every command answers")
}

/// Applies `req` as a retried copy: it must buffer no change at all.
fn retry(f: &MvccFixture, req: TxnRequest) -> txn_response::Cmd {
    let (resp, txn) = f.evaluate(req);
    assert!(
        txn.is_empty(),
        "a retried command must write nothing, it wrote {:?}",
        txn.modifies()
    );
    resp.cmd.expect("every command answers")
}

/// Unwraps a response of the expected kind.
macro_rules! answer {
    ($resp:expr, $variant:ident) => {
        match $resp {
            txn_response::Cmd::$variant(r) => r,
            other => panic!(
                concat!(stringify!($variant), " response expected, got {:?}"),
                other
            ),
        }
    };
}

/// Applies a prewrite that must succeed.
fn prewrite_ok(f: &MvccFixture, req: TxnRequest) -> KvPrewriteResponse {
    let r = answer!(apply(f, req), Prewrite);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r
}

/// Applies a command that must succeed, for the steps between copies.
fn apply_ok(f: &MvccFixture, req: TxnRequest) {
    let error = match apply(f, req) {
        txn_response::Cmd::Prewrite(r) => r.errors.into_iter().next(),
        txn_response::Cmd::Commit(r) => r.error,
        txn_response::Cmd::BatchRollback(r) => r.error,
        txn_response::Cmd::Cleanup(r) => r.error,
        txn_response::Cmd::ResolveLock(r) => r.error,
        txn_response::Cmd::CheckTxnStatus(r) => r.error,
        txn_response::Cmd::TxnHeartBeat(r) => r.error,
        txn_response::Cmd::Gc(_) => None,
    };
    assert_eq!(error, None);
}

/// T2 locks `key` (and only that key).
fn t2_locks(f: &MvccFixture, key: &[u8]) {
    prewrite_ok(f, prewrite(T2, vec![put(key, b"t2")]));
}

/// T2 writes `key` and commits at ts(130).
fn t2_overwrites(f: &MvccFixture, key: &[u8]) {
    t2_locks(f, key);
    apply_ok(f, commit(T2, ts(130), &[key]));
}

fn fate(f: &MvccFixture, key: &[u8], start_ts: u64) -> TxnCommitRecord {
    f.reader()
        .txn_commit_record(key, start_ts)
        .expect("read records")
}

/// T1's two-phase prewrite of `a` (short value, primary) and `b` (long).
fn t1_prewrite() -> TxnRequest {
    prewrite(T1, vec![put(b"a", b"1"), put(b"b", &long())])
}

// ---------------------------------------------------------------------------
// Prewrite, two phases.

#[test]
fn prewrite_retried_at_once_keeps_the_lock_as_it_was_pushed() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    // Between the copies the primary's TTL is extended and a reader pushes
    // its min_commit_ts; rewriting the lock would undo both.
    apply_ok(&f, heartbeat(T1, 9000));
    apply_ok(&f, check_status(ts(150), alive()));
    let r = answer!(retry(&f, t1_prewrite()), Prewrite);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let lock = f.lock(b"a").expect("still locked");
    assert_eq!((lock.ttl, lock.min_commit_ts), (9000, ts(150) + 1));
    assert_eq!(f.lens(), (1, 2, 0));
}

#[test]
fn prewrite_retried_after_commit_relocks_nothing() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, commit(T1, ts(110), &[b"a", b"b"]));
    let r = answer!(retry(&f, t1_prewrite()), Prewrite);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.one_pc_commit_ts, 0, "a two-phase request gets no 1PC ts");
    assert_eq!(f.lens(), (1, 0, 2));
}

#[test]
fn prewrite_retried_after_commit_and_a_newer_version_is_no_conflict() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, commit(T1, ts(110), &[b"a", b"b"]));
    t2_overwrites(&f, b"a");
    let r = answer!(retry(&f, t1_prewrite()), Prewrite);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        f.reader().get(b"a", u64::MAX).expect("read"),
        Some(b"t2".to_vec())
    );
}

#[test]
fn prewrite_retried_after_commit_sees_past_a_later_lock() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, commit(T1, ts(110), &[b"a", b"b"]));
    t2_locks(&f, b"a");
    // T2's lock must not hide that T1 committed: a `locked` answer would
    // make the client wait for T2 (or give up at its deadline) although
    // its own transaction is done.
    let r = answer!(retry(&f, t1_prewrite()), Prewrite);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(f.lock(b"a").expect("T2 keeps its lock").start_ts, T2);
}

#[test]
fn prewrite_retried_after_commit_succeeds_though_a_check_now_fails() {
    let f = MvccFixture::new();
    let req = prewrite(T1, vec![put(b"a", b"1"), check_not_exists(b"c")]);
    prewrite_ok(&f, req.clone());
    apply_ok(&f, commit(T1, ts(110), &[b"a"]));
    // T2 creates `c` after T1 committed. Re-checking `c` finds a newer
    // version, but T1's fate is decided: a conflict answer would tell the
    // client to abort (and retry from the start) a committed transaction.
    t2_overwrites(&f, b"c");
    let r = answer!(retry(&f, req), Prewrite);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn prewrite_retried_after_rollback_is_a_conflict_and_locks_nothing() {
    type RollBack = fn(&MvccFixture);
    let ways: [(&str, RollBack); 4] = [
        ("batch rollback", |f: &MvccFixture| {
            apply_ok(f, rollback(T1, &[b"a", b"b"]))
        }),
        ("cleanup", |f: &MvccFixture| {
            apply_ok(f, cleanup(b"a", T1, 0));
            apply_ok(f, cleanup(b"b", T1, 0));
        }),
        ("expired primary, then resolve", |f: &MvccFixture| {
            apply_ok(f, check_status(ts(150), expired()));
            apply_ok(f, resolve(T1, 0, &[b"b"]));
        }),
        ("resolve over the region", |f: &MvccFixture| {
            apply_ok(f, resolve(T1, 0, &[]))
        }),
    ];
    for (how, roll_back) in ways {
        let f = MvccFixture::new();
        prewrite_ok(&f, t1_prewrite());
        roll_back(&f);
        let r = answer!(retry(&f, t1_prewrite()), Prewrite);
        // A conflict is what the client turns into "aborted, retry".
        assert_eq!(r.errors.len(), 2, "{how}: {:?}", r.errors);
        assert!(r.errors.iter().all(|e| e.conflict.is_some()), "{how}");
        assert_eq!(f.lens(), (0, 0, 2), "{how}: two rollback records");
    }
}

#[test]
fn prewrite_retried_after_rollback_meets_the_next_transaction() {
    let f = MvccFixture::new();
    let req = prewrite(T1, vec![put(b"a", b"1")]);
    prewrite_ok(&f, req.clone());
    apply_ok(&f, rollback(T1, &[b"a"]));
    t2_locks(&f, b"a");
    let r = answer!(retry(&f, req.clone()), Prewrite);
    let locked = r.errors[0].locked.as_ref().expect("T2's lock is reported");
    assert_eq!(locked.lock_version, T2);
    apply_ok(&f, commit(T2, ts(130), &[b"a"]));
    let r = answer!(retry(&f, req), Prewrite);
    assert!(r.errors[0].conflict.is_some(), "{:?}", r.errors);
    assert_eq!(fate(&f, b"a", T1), TxnCommitRecord::RolledBack);
}

// ---------------------------------------------------------------------------
// Prewrite, one phase.

fn t1_one_pc(commit_ts: u64) -> TxnRequest {
    one_pc(T1, vec![put(b"a", b"1"), put(b"b", &long())], commit_ts)
}

#[test]
fn one_pc_prewrite_retried_reports_the_commit_ts_that_applied() {
    let f = MvccFixture::new();
    let r = prewrite_ok(&f, t1_one_pc(ts(105)));
    assert_eq!(r.one_pc_commit_ts, ts(105));
    // The same entry applied twice, a retry through a leader that took a
    // fresh commit ts, and a retry whose leader fell back to two phases:
    // each must report the version that exists, at ts(105).
    for again in [t1_one_pc(ts(105)), t1_one_pc(ts(140)), t1_one_pc(0)] {
        let r = answer!(retry(&f, again), Prewrite);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.one_pc_commit_ts, ts(105));
    }
    assert_eq!(f.lens(), (1, 0, 2));
    assert!(f.write_at(b"a", ts(140)).is_none());
}

#[test]
fn one_pc_prewrite_retried_after_a_newer_version_reports_its_own() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_one_pc(ts(105)));
    t2_overwrites(&f, b"a");
    let r = answer!(retry(&f, t1_one_pc(ts(140))), Prewrite);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.one_pc_commit_ts, ts(105));
    assert_eq!(
        f.reader().get(b"a", u64::MAX).expect("read"),
        Some(b"t2".to_vec())
    );
    assert_eq!(
        f.reader().get(b"a", ts(129)).expect("read"),
        Some(b"1".to_vec())
    );
}

#[test]
fn one_pc_prewrite_retried_sees_past_a_later_lock() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_one_pc(ts(105)));
    t2_locks(&f, b"b");
    let r = answer!(retry(&f, t1_one_pc(ts(140))), Prewrite);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.one_pc_commit_ts, ts(105));
    assert_eq!(f.lock(b"b").expect("T2 keeps its lock").start_ts, T2);
}

#[test]
fn one_pc_prewrite_after_a_two_phase_copy_locked_a_key_stays_two_phase() {
    let f = MvccFixture::new();
    // A two-phase copy for part of the keys (sent while they spanned two
    // regions) applied; after a merge the retry covers every key in one
    // phase. Committing `b` at once would leave `a` locked, and the client,
    // told "committed in one phase", would never commit `a`.
    prewrite_ok(&f, prewrite(T1, vec![put(b"a", b"1")]));
    let r = prewrite_ok(&f, t1_one_pc(ts(105)));
    assert_eq!(
        r.one_pc_commit_ts, 0,
        "the client must commit in two phases"
    );
    assert_eq!(r.min_commit_ts, T1 + 1);
    assert_eq!(f.lock(b"b").expect("b is locked too").start_ts, T1);
    assert_eq!(f.len(CF_WRITE), 0);
    apply_ok(&f, commit(T1, ts(110), &[b"a"]));
    apply_ok(&f, commit(T1, ts(110), &[b"b"]));
    assert_eq!(f.reader().get(b"b", ts(110)).expect("read"), Some(long()));
}

// ---------------------------------------------------------------------------
// Commit.

#[test]
fn commit_retried_at_once_succeeds_with_one_version() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, commit(T1, ts(110), &[b"a", b"b"]));
    let r = answer!(retry(&f, commit(T1, ts(110), &[b"a", b"b"])), Commit);
    assert_eq!(r.error, None, "an error here would abort a committed txn");
    assert_eq!(r.commit_version, ts(110));
    assert_eq!(f.lens(), (1, 0, 2));
}

#[test]
fn commit_retried_after_a_later_lock_or_version_succeeds() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, commit(T1, ts(110), &[b"a"]));
    t2_locks(&f, b"a");
    let r = answer!(retry(&f, commit(T1, ts(110), &[b"a"])), Commit);
    assert_eq!(r.error, None);
    apply_ok(&f, commit(T2, ts(130), &[b"a"]));
    let r = answer!(retry(&f, commit(T1, ts(110), &[b"a"])), Commit);
    assert_eq!(r.error, None);
    assert_eq!(
        f.write_at(b"a", ts(110)).expect("T1's version").start_ts,
        T1
    );
}

#[test]
fn commit_retried_on_secondaries_a_resolver_committed_succeeds() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, commit(T1, ts(110), &[b"a"]));
    apply_ok(&f, resolve(T1, ts(110), &[b"b"]));
    let r = answer!(retry(&f, commit(T1, ts(110), &[b"b"])), Commit);
    assert_eq!(r.error, None);
    assert_eq!(f.lens(), (1, 0, 2));
}

#[test]
fn commit_retried_after_rollback_still_aborts() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    // The first copy is refused: a reader pushed min_commit_ts past it.
    apply_ok(&f, check_status(ts(150), alive()));
    let first = answer!(apply(&f, commit(T1, ts(110), &[b"a"])), Commit);
    assert!(first.error.expect("refused").commit_ts_expired.is_some());
    apply_ok(&f, check_status(ts(150), expired()));
    let r = answer!(retry(&f, commit(T1, ts(110), &[b"a"])), Commit);
    assert!(!r.error.expect("refused").abort.is_empty());
    assert_eq!(fate(&f, b"a", T1), TxnCommitRecord::RolledBack);
}

// ---------------------------------------------------------------------------
// Batch rollback.

#[test]
fn batch_rollback_retried_at_once_writes_nothing() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, rollback(T1, &[b"a", b"b"]));
    let r = answer!(retry(&f, rollback(T1, &[b"a", b"b"])), BatchRollback);
    assert_eq!(r.error, None);
    assert_eq!(f.lens(), (0, 0, 2));
}

#[test]
fn batch_rollback_retried_after_a_later_lock_or_version_leaves_them() {
    let f = MvccFixture::new();
    // The rollback arrives before the prewrite: it leaves a protective
    // record, which must keep protecting.
    apply_ok(&f, rollback(T1, &[b"a"]));
    t2_locks(&f, b"a");
    let r = answer!(retry(&f, rollback(T1, &[b"a"])), BatchRollback);
    assert_eq!(r.error, None);
    apply_ok(&f, commit(T2, ts(130), &[b"a"]));
    let r = answer!(retry(&f, rollback(T1, &[b"a"])), BatchRollback);
    assert_eq!(r.error, None);
    assert_eq!(fate(&f, b"a", T1), TxnCommitRecord::RolledBack);
    let late = answer!(retry(&f, t1_prewrite()), Prewrite);
    assert!(late.errors[0].conflict.is_some(), "{:?}", late.errors);
}

#[test]
fn batch_rollback_retried_never_rolls_back_a_commit() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, commit(T1, ts(110), &[b"a", b"b"]));
    for _ in 0..2 {
        let r = answer!(retry(&f, rollback(T1, &[b"b", b"a"])), BatchRollback);
        assert!(!r.error.expect("refused").abort.is_empty());
    }
    assert_eq!(fate(&f, b"a", T1), TxnCommitRecord::Committed(ts(110)));
}

// ---------------------------------------------------------------------------
// Cleanup.

#[test]
fn cleanup_retried_after_it_rolled_back_answers_the_same() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    let first = answer!(apply(&f, cleanup(b"a", T1, expired())), Cleanup);
    let again = answer!(retry(&f, cleanup(b"a", T1, expired())), Cleanup);
    assert_eq!((first.error, first.commit_version), (None, 0));
    assert_eq!((again.error, again.commit_version), (None, 0));
    assert_eq!(fate(&f, b"a", T1), TxnCommitRecord::RolledBack);
}

#[test]
fn cleanup_retried_after_commit_reports_the_commit() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    let first = answer!(apply(&f, cleanup(b"a", T1, alive())), Cleanup);
    assert!(first.error.expect("alive").locked.is_some());
    apply_ok(&f, commit(T1, ts(110), &[b"a"]));
    let r = answer!(retry(&f, cleanup(b"a", T1, alive())), Cleanup);
    assert_eq!((r.error, r.commit_version), (None, ts(110)));
}

// ---------------------------------------------------------------------------
// Resolve lock.

#[test]
fn resolve_lock_retried_after_a_later_lock_leaves_it() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, commit(T1, ts(110), &[b"a"]));
    apply_ok(&f, resolve(T1, ts(110), &[b"b"]));
    t2_locks(&f, b"b");
    let r = answer!(retry(&f, resolve(T1, ts(110), &[b"b"])), ResolveLock);
    assert_eq!(r.error, None);
    assert_eq!(f.lock(b"b").expect("T2 keeps its lock").start_ts, T2);
    assert_eq!(fate(&f, b"b", T1), TxnCommitRecord::Committed(ts(110)));
}

#[test]
fn resolve_lock_retried_over_the_region_leaves_later_locks() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, resolve(T1, 0, &[]));
    prewrite_ok(&f, prewrite(T2, vec![put(b"a", b"t2"), put(b"b", b"t2")]));
    let r = answer!(retry(&f, resolve(T1, 0, &[])), ResolveLock);
    assert_eq!(r.error, None);
    assert_eq!(f.lens(), (0, 2, 2), "T2's two locks, T1's two rollbacks");
}

#[test]
fn resolve_lock_batch_retried_leaves_later_locks() {
    let f = MvccFixture::new();
    // T1 committed on its primary `a`, `c` still locked; T0 (before T1)
    // left `b` locked and is to be rolled back.
    let t0 = ts(90);
    prewrite_ok(&f, prewrite(T1, vec![put(b"a", b"1"), put(b"c", b"1")]));
    prewrite_ok(&f, prewrite(t0, vec![put(b"b", b"0")]));
    apply_ok(&f, commit(T1, ts(110), &[b"a"]));
    let fates = [(T1, ts(110)), (t0, 0)];
    apply_ok(&f, resolve_batch(&fates));
    prewrite_ok(&f, prewrite(T2, vec![put(b"b", b"t2"), put(b"c", b"t2")]));
    let r = answer!(retry(&f, resolve_batch(&fates)), ResolveLock);
    assert_eq!(r.error, None);
    assert_eq!(fate(&f, b"c", T1), TxnCommitRecord::Committed(ts(110)));
    assert_eq!(fate(&f, b"b", t0), TxnCommitRecord::RolledBack);
    assert_eq!(f.lock(b"b").expect("T2's lock").start_ts, T2);
    assert_eq!(f.lock(b"c").expect("T2's lock").start_ts, T2);
}

// ---------------------------------------------------------------------------
// Check txn status.

#[test]
fn check_txn_status_retried_on_a_live_lock_answers_alive_again() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    let first = answer!(apply(&f, check_status(ts(150), alive())), CheckTxnStatus);
    assert_eq!(first.action, Action::MinCommitTsPushed as i32);
    let again = answer!(retry(&f, check_status(ts(150), alive())), CheckTxnStatus);
    // The client reads (lock_ttl, commit_version): alive, wait.
    assert_eq!((again.lock_ttl, again.commit_version), (TTL_MS, 0));
    assert_eq!(again.action, Action::NoAction as i32);
    assert_eq!(f.lock(b"a").expect("locked").min_commit_ts, ts(150) + 1);
}

#[test]
fn check_txn_status_retried_after_expiry_rollback_answers_rolled_back() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    let first = answer!(apply(&f, check_status(ts(150), expired())), CheckTxnStatus);
    assert_eq!(first.action, Action::TtlExpireRollback as i32);
    let again = answer!(retry(&f, check_status(ts(150), expired())), CheckTxnStatus);
    // (0, 0): the client resolves the locks it met by rolling them back.
    assert_eq!(
        (again.error, again.lock_ttl, again.commit_version),
        (None, 0, 0)
    );
}

#[test]
fn check_txn_status_retried_after_commit_answers_committed() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, check_status(ts(150), alive()));
    apply_ok(&f, commit(T1, ts(160), &[b"a"]));
    let again = answer!(retry(&f, check_status(ts(150), alive())), CheckTxnStatus);
    assert_eq!(
        (again.error, again.lock_ttl, again.commit_version),
        (None, 0, ts(160))
    );
}

#[test]
fn check_txn_status_retried_after_rolling_back_a_missing_lock() {
    let f = MvccFixture::new();
    let first = answer!(apply(&f, check_status(ts(150), alive())), CheckTxnStatus);
    assert_eq!(first.action, Action::LockNotExistRollback as i32);
    let again = answer!(retry(&f, check_status(ts(150), alive())), CheckTxnStatus);
    assert_eq!(
        (again.error, again.lock_ttl, again.commit_version),
        (None, 0, 0)
    );
    // T1's prewrite, arriving after both, must not lock the primary.
    let late = answer!(retry(&f, t1_prewrite()), Prewrite);
    assert!(late.errors[0].conflict.is_some(), "{:?}", late.errors);
}

// ---------------------------------------------------------------------------
// Heartbeat.

#[test]
fn heartbeat_retried_late_never_shortens_the_ttl() {
    let f = MvccFixture::new();
    prewrite_ok(&f, t1_prewrite());
    apply_ok(&f, heartbeat(T1, 5000));
    apply_ok(&f, heartbeat(T1, 8000));
    let r = answer!(retry(&f, heartbeat(T1, 5000)), TxnHeartBeat);
    assert_eq!((r.error, r.lock_ttl), (None, 8000));
    assert_eq!(f.lock(b"a").expect("locked").ttl, 8000);
}

#[test]
fn heartbeat_retried_after_the_lock_went_touches_no_other_lock() {
    let f = MvccFixture::new();
    prewrite_ok(&f, prewrite(T1, vec![put(b"a", b"1")]));
    apply_ok(&f, heartbeat(T1, 5000));
    apply_ok(&f, commit(T1, ts(110), &[b"a"]));
    // The client stops heartbeating on any error.
    let r = answer!(retry(&f, heartbeat(T1, 5000)), TxnHeartBeat);
    assert!(r.error.expect("no lock").txn_not_found.is_some());
    t2_locks(&f, b"a");
    let r = answer!(retry(&f, heartbeat(T1, 5000)), TxnHeartBeat);
    assert!(r.error.is_some());
    assert_eq!(f.lock(b"a").expect("T2's lock").ttl, TTL_MS);
    assert_eq!(
        f.write_at(b"a", ts(110)).expect("T1's version").kind,
        WriteKind::Put
    );
}
