//! Unit tests of the session table: dedup, expiry, eviction, merging,
//! spans, and the table on disk.

use nokv_proto::raft_cmdpb::{response, CompareAndSwapResponse};

use super::*;
use crate::engine::ALL_CFS;

const POLICY: SessionPolicy = SessionPolicy {
    idle_ms: 1_000,
    max_sessions: 3,
};

/// A session id (TSO timestamp) started at `ms`.
fn session(ms: u64, logical: u64) -> u64 {
    crate::mvcc::compose_ts(ms, logical)
}

fn cas_answer(ok: bool) -> Vec<Response> {
    vec![Response {
        cmd: Some(response::Cmd::CompareAndSwap(CompareAndSwapResponse {
            succeed: ok,
            ..Default::default()
        })),
        ..Default::default()
    }]
}

#[test]
fn a_repeat_is_seen_with_its_answer_and_a_lower_sequence_is_stale() {
    let mut t = SessionTable::default();
    let s = session(10_000, 1);
    t.advance(10_000, POLICY);
    assert!(matches!(t.check(s, 1), Check::Fresh));
    t.record(s, 1, KeySpan::point(b"k"), cas_answer(true), POLICY);
    match t.check(s, 1) {
        Check::Seen(pieces) => {
            assert_eq!(pieces.len(), 1);
            assert!(pieces[0].span.contains(&KeySpan::point(b"k")));
            assert_eq!(pieces[0].responses, cas_answer(true));
        }
        other => panic!("expected the recorded write, got {other:?}"),
    }
    assert!(matches!(t.check(s, 2), Check::Fresh));
    t.record(s, 2, KeySpan::point(b"k"), Vec::new(), POLICY);
    match t.check(s, 1) {
        Check::Refused(e) => assert!(matches!(e.kind, Some(Kind::SequenceStale(_)))),
        other => panic!("a lower sequence must be refused, got {other:?}"),
    }
    // Empty answers are not stored.
    let Check::Seen(pieces) = t.check(s, 2) else {
        panic!("sequence 2 applied");
    };
    assert!(pieces[0].responses.is_empty());
}

#[test]
fn a_session_idle_past_the_timeout_is_forgotten_and_then_refused() {
    let mut t = SessionTable::default();
    let old = session(10_000, 1);
    t.advance(10_000, POLICY);
    t.record(old, 1, KeySpan::point(b"a"), Vec::new(), POLICY);
    // Still known just inside the timeout.
    t.advance(10_999, POLICY);
    assert_eq!(t.len(), 1);
    t.advance(11_001, POLICY);
    assert_eq!(t.len(), 0, "idle longer than the timeout");
    // Its next write (a new sequence) and a repeat are both refused:
    // the table cannot tell which sequences applied.
    for seq in [1, 2] {
        match t.check(old, seq) {
            Check::Refused(e) => assert!(matches!(e.kind, Some(Kind::SessionExpired(_)))),
            other => panic!("an expired session must be refused, got {other:?}"),
        }
    }
    // A session that started after the floor is new.
    assert!(matches!(t.check(session(10_500, 0), 1), Check::Fresh));
}

#[test]
fn a_full_table_evicts_the_least_recently_active_and_refuses_it_after() {
    let mut t = SessionTable::default();
    let ids: Vec<u64> = (0..4).map(|i| session(9_990 + i, 0)).collect();
    for (i, id) in ids.iter().enumerate() {
        t.advance(10_000 + i as u64, POLICY);
        t.record(*id, 1, KeySpan::point(b"k"), Vec::new(), POLICY);
    }
    assert_eq!(t.len(), 3, "bounded by max_sessions");
    assert!(
        matches!(t.check(ids[0], 1), Check::Refused(_)),
        "the evicted session's repeat is refused, not applied again"
    );
    assert!(matches!(t.check(ids[3], 1), Check::Seen(_)));
    assert!(t.floor_ms() > 10_000);
}

#[test]
fn the_same_commands_leave_every_replica_with_the_same_table() {
    let run = || {
        let mut t = SessionTable::default();
        for i in 0..200u64 {
            t.advance(10_000 + i * 37, POLICY);
            let s = session(10_000 + (i % 7) * 100, i % 5);
            if let Check::Fresh = t.check(s, i) {
                t.record(s, i, KeySpan::point(&i.to_be_bytes()), Vec::new(), POLICY);
            }
        }
        t.dirty.clear();
        t.state_dirty = false;
        t
    };
    assert_eq!(run(), run());
}

#[test]
fn absorbing_a_merge_source_keeps_the_higher_sequence_and_adds_up_pieces() {
    let (a, b, c) = (session(1_000, 1), session(1_000, 2), session(1_000, 3));
    let mut target = SessionTable::default();
    target.advance(2_000, POLICY);
    target.record(a, 5, KeySpan::point(b"x"), Vec::new(), POLICY);
    target.record(b, 3, KeySpan::point(b"t"), Vec::new(), POLICY);
    let mut source = SessionTable::default();
    source.advance(2_500, POLICY);
    source.record(a, 4, KeySpan::point(b"y"), Vec::new(), POLICY);
    source.record(b, 3, KeySpan::point(b"s"), Vec::new(), POLICY);
    source.record(c, 1, KeySpan::point(b"s"), Vec::new(), POLICY);
    target.absorb(&source);
    assert_eq!(target.clock_ms(), 2_500);
    assert!(matches!(target.check(a, 4), Check::Refused(_)));
    let Check::Seen(pieces) = target.check(b, 3) else {
        panic!("b's sequence 3 applied on both sides");
    };
    assert_eq!(pieces.len(), 2, "one piece from each side");
    assert!(matches!(target.check(c, 1), Check::Seen(_)));
}

#[test]
fn spans_contain_and_subtract() {
    let span = |a: &str, b: &str| KeySpan {
        start: a.as_bytes().to_vec(),
        end: b.as_bytes().to_vec(),
    };
    assert!(span("a", "m").contains(&span("b", "c")));
    assert!(!span("a", "m").contains(&span("b", "z")));
    assert!(span("a", "").contains(&span("b", "")));
    assert!(!span("a", "m").contains(&span("b", "")));
    assert!(KeySpan::point(b"k").contains_key(b"k"));
    assert!(!KeySpan::point(b"k").contains_key(b"k\0"));
    assert_eq!(
        span("a", "z").minus(&[span("c", "e"), span("m", "p")]),
        vec![span("a", "c"), span("e", "m"), span("p", "z")]
    );
    assert_eq!(span("a", "z").minus(&[span("", "")]), vec![]);
    assert_eq!(span("c", "").minus(&[span("a", "d")]), vec![span("d", "")]);
    assert_eq!(
        span("c", "f").minus(&[span("x", "y")]),
        vec![span("c", "f")]
    );
    let mut hull = KeySpan::point(b"m");
    hull.cover(&KeySpan::point(b"c"));
    assert!(hull.contains_key(b"c") && hull.contains_key(b"m") && !hull.contains_key(b"n"));
}

#[test]
fn a_table_written_to_rocksdb_loads_back_the_same() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = nokv_consensus::engine::open(dir.path(), &ALL_CFS).expect("db");
    let mut t = SessionTable::default();
    t.advance(50_000, POLICY);
    let (a, b) = (session(49_000, 1), session(49_500, 2));
    t.record(a, 3, KeySpan::point(b"k"), cas_answer(false), POLICY);
    t.record(
        b,
        1,
        KeySpan {
            start: b"a".to_vec(),
            end: Vec::new(),
        },
        Vec::new(),
        POLICY,
    );
    let mut wb = WriteBatch::default();
    t.write_changes(&db, 7, &mut wb).expect("write");
    db.write(wb).expect("commit");
    let loaded = SessionTable::load(&db, 7).expect("load");
    t.dirty.clear();
    t.state_dirty = false;
    assert_eq!(loaded, t);
    assert!(SessionTable::load(&db, 8).expect("load").is_empty());
    // Forgetting a session deletes its record.
    t.advance(50_000 + POLICY.idle_ms + 1, POLICY);
    assert_eq!(t.len(), 0);
    let mut wb = WriteBatch::default();
    t.write_changes(&db, 7, &mut wb).expect("write");
    db.write(wb).expect("commit");
    assert!(SessionTable::load(&db, 7).expect("load").is_empty());
    let mut wb = WriteBatch::default();
    clear(&db, 7, &mut wb).expect("clear");
    db.write(wb).expect("commit");
    assert_eq!(
        SessionTable::load(&db, 7).expect("load"),
        SessionTable::default()
    );
}

#[test]
fn deltas_fold_into_records_and_every_layout_loads_the_same_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = nokv_consensus::engine::open(dir.path(), &ALL_CFS).expect("db");
    let policy = SessionPolicy {
        idle_ms: 50,
        max_sessions: 8,
    };
    let keys_on_disk = |db: &DB| {
        let (lower, upper) = key_range(7);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper);
        db.iterator_cf_opt(
            cf(db, CF_SESSION).expect("cf"),
            opts,
            IteratorMode::From(&lower, Direction::Forward),
        )
        .count()
    };
    let mut t = SessionTable::default();
    let mut most_keys = 0;
    for batch in 0..(3 * FOLD_AFTER_DELTAS + 5) {
        let now = 10_000 + batch * 10;
        t.advance(now, policy);
        for i in 0..3 {
            let s = session(now - i, i);
            if let Check::Fresh = t.check(s, 1) {
                t.record(
                    s,
                    1,
                    KeySpan::point(&batch.to_be_bytes()),
                    Vec::new(),
                    policy,
                );
            }
        }
        let mut wb = WriteBatch::default();
        t.write_changes(&db, 7, &mut wb).expect("write");
        db.write(wb).expect("commit");
        let loaded = SessionTable::load(&db, 7).expect("load");
        assert_eq!(loaded, t, "after batch {batch}");
        most_keys = most_keys.max(keys_on_disk(&db));
    }
    // Bounded by the deltas between folds plus the records of the
    // sessions the table holds, not by the writes ever made.
    assert!(
        most_keys as u64 <= FOLD_AFTER_DELTAS + 1 + 3 * 8,
        "{most_keys} keys on disk"
    );
    // A whole-table write leaves no deltas.
    let mut wb = WriteBatch::default();
    t.write_all(&db, 7, &mut wb).expect("write");
    db.write(wb).expect("commit");
    assert_eq!(keys_on_disk(&db), 1 + t.len());
    assert_eq!(SessionTable::load(&db, 7).expect("load"), t);
}
