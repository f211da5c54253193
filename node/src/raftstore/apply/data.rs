//! Applying data commands: raw writes, compare-and-swap and transactional
//! commands, each client write checked against its session first. Data,
//! session changes and the new `ApplyState` go to RocksDB in one batch, so
//! a crash never separates applied data from its index. A compare-and-swap
//! or transactional command reads the current state, so the batch is
//! flushed (with the apply state of the entries before it) first.

use nokv_proto::errorpb::region_error;
use nokv_proto::metapb::Region;
use nokv_proto::raft_cmdpb::{
    request, response, CompareAndSwapResponse, DeleteRangeRequest, RaftCmdRequest, RaftCmdResponse,
    RaftResponseHeader, Request, Response, SessionWrite,
};
use nokv_proto::raft_serverpb::ApplyState;
use rocksdb::{WriteBatch, DB};

use crate::engine::{cf, CF_RAW};
use crate::flow::FlowCount;
use crate::keys::unbounded_upper;
use crate::mvcc::commands::{self, RegionRange};
use crate::mvcc::MvccReader;
use crate::raftstore::msg::error_response;
pub use crate::raftstore::peer::write_apply_state;
use crate::raftstore::session::{Check, KeySpan, SessionPolicy, SessionTable};
use crate::region::check_epoch;
use crate::region::merging;
use crate::{raw_value, Result};

/// The region facts a data command is applied against. Admin entries apply
/// only while none of the region's data entries is in flight, so these stay
/// fixed while a batch of data entries applies (here or in the apply pool).
pub struct DataScope<'a> {
    /// The region as applied so far.
    pub region: &'a Region,
    /// Frozen by a merge: every data command fails with `RegionMerging`.
    pub frozen: bool,
    /// The raft term reported in responses.
    pub term: u64,
    /// The region's client sessions, updated as writes apply.
    pub sessions: &'a mut SessionTable,
}

/// What applying data commands changed besides RocksDB.
#[derive(Debug, Default, Clone, Copy)]
pub struct DataOutcome {
    /// Bytes and keys written.
    pub written: FlowCount,
    /// Some command carried writes (the region is due a split check).
    pub wrote: bool,
}

/// Writes what `wb` holds so far, with `state` (the apply state of the
/// entries before the current one) and the session changes made so far, so
/// a command can read what they wrote.
fn flush(
    db: &DB,
    scope: &mut DataScope<'_>,
    state: &ApplyState,
    wb: &mut WriteBatch,
) -> Result<()> {
    if wb.is_empty() {
        return Ok(());
    }
    put_apply_state(db, scope.region.id, state, scope.sessions, wb)?;
    db.write(std::mem::take(wb))?;
    Ok(())
}

/// Puts a region's apply state and its session table's changes into `wb`:
/// what every write of applied entries ends with (the run's write, or the
/// flush before a command that reads), so the applied index, the data and
/// the sessions always reach RocksDB together.
pub fn put_apply_state(
    db: &DB,
    region_id: u64,
    state: &ApplyState,
    sessions: &mut SessionTable,
    wb: &mut WriteBatch,
) -> Result<()> {
    write_apply_state(db, region_id, state, wb)?;
    sessions.write_changes(db, region_id, wb)
}

/// The client writes of `cmd` in order, covering every request: a command
/// without session information is one write without a session.
fn writes_of(cmd: &RaftCmdRequest) -> Vec<SessionWrite> {
    let mut writes = cmd.writes.clone();
    let counted: usize = writes.iter().map(|w| w.requests as usize).sum();
    if counted < cmd.requests.len() {
        writes.push(SessionWrite {
            session_id: 0,
            sequence: 0,
            requests: (cmd.requests.len() - counted) as u32,
        });
    }
    writes
}

/// The keys `req` writes, clipped to `region` as the write applies.
fn request_span(region: &Region, req: &Request) -> KeySpan {
    match &req.cmd {
        Some(request::Cmd::Put(p)) => KeySpan::point(&p.key),
        Some(request::Cmd::Delete(d)) => KeySpan::point(&d.key),
        Some(request::Cmd::CompareAndSwap(c)) => KeySpan::point(&c.key),
        Some(request::Cmd::DeleteRange(d)) => KeySpan {
            start: d.start_key.clone().max(region.start_key.clone()),
            end: crate::keys::min_upper(&d.end_key, &region.end_key),
        },
        // A transactional command is not split by key: its span is the region.
        Some(request::Cmd::Txn(_)) | None => KeySpan {
            start: region.start_key.clone(),
            end: region.end_key.clone(),
        },
    }
}

/// The keys a whole write covers.
fn write_span(region: &Region, reqs: &[Request]) -> KeySpan {
    let mut spans = reqs.iter().map(|r| request_span(region, r));
    let Some(mut span) = spans.next() else {
        return KeySpan::point(&region.start_key);
    };
    for s in spans {
        span.cover(&s);
    }
    span
}

/// What of each request of `reqs` pieces covering `covered` have not
/// applied: the request itself (a key write outside them), nothing (inside
/// them; its answer is empty), or the uncovered parts of a range delete.
fn uncovered(region: &Region, reqs: Vec<Request>, covered: &[KeySpan]) -> Vec<Vec<Request>> {
    reqs.into_iter()
        .map(|req| match &req.cmd {
            Some(request::Cmd::DeleteRange(d)) => {
                let cf = d.cf.clone();
                request_span(region, &req)
                    .minus(covered)
                    .into_iter()
                    .map(|s| Request {
                        cmd: Some(request::Cmd::DeleteRange(DeleteRangeRequest {
                            cf: cf.clone(),
                            start_key: s.start,
                            end_key: s.end,
                        })),
                    })
                    .collect()
            }
            Some(request::Cmd::Txn(_)) | None => vec![req],
            Some(_) => {
                let key = request_span(region, &req).start;
                if covered.iter().any(|c| c.contains_key(&key)) {
                    Vec::new()
                } else {
                    vec![req]
                }
            }
        })
        .collect()
}

/// Applies one data command (no admin request) at the current position of
/// `state` into `wb`. Each client write in it is checked against its
/// session first: a repeat is answered from the session table, a refused
/// write gets its error in its first response. Errors found here (epoch
/// moved, region frozen) are the response's; `Err` is a storage or
/// decoding failure.
pub fn apply_data(
    db: &DB,
    scope: &mut DataScope<'_>,
    cmd: RaftCmdRequest,
    state: &ApplyState,
    wb: &mut WriteBatch,
    outcome: &mut DataOutcome,
) -> Result<RaftCmdResponse> {
    let header = cmd.header.unwrap_or_default();
    // The epoch may have moved between proposal and apply.
    if let Err(e) = check_epoch(scope.region, header.region_epoch.as_ref(), false) {
        return Ok(error_response(e));
    }
    if scope.frozen {
        return Ok(error_response(merging(scope.region.id)));
    }
    if !cmd.requests.is_empty() {
        outcome.wrote = true;
    }
    let policy = SessionPolicy::of(&cmd);
    if cmd.stamp_ms > 0 {
        scope.sessions.advance(cmd.stamp_ms, policy);
    }
    let writes = writes_of(&cmd);
    let mut requests = cmd.requests.into_iter();
    let mut responses = Vec::new();
    for w in writes {
        let reqs: Vec<Request> = requests.by_ref().take(w.requests as usize).collect();
        if w.session_id == 0 {
            for r in reqs {
                responses.push(apply_request(db, scope, r, state, wb, outcome)?);
            }
            continue;
        }
        if reqs.is_empty() {
            continue;
        }
        let span = write_span(scope.region, &reqs);
        let todo: Vec<Vec<Request>> = match scope.sessions.check(w.session_id, w.sequence) {
            Check::Refused(e) => {
                let reason = match e.kind {
                    Some(region_error::Kind::SequenceStale(_)) => "stale",
                    _ => "expired",
                };
                crate::metrics::SESSION_REFUSED
                    .with_label_values(&[reason])
                    .inc();
                responses.push(Response {
                    write_error: Some(e),
                    ..Default::default()
                });
                responses.extend((1..reqs.len()).map(|_| Response::default()));
                continue;
            }
            Check::Seen(pieces) => {
                if let Some(p) = pieces.iter().find(|p| p.span.contains(&span)) {
                    crate::metrics::SESSION_DUPLICATES.inc();
                    if p.responses.len() == reqs.len() {
                        responses.extend(p.responses.iter().cloned());
                    } else {
                        responses.extend(reqs.iter().map(|_| Response::default()));
                    }
                    continue;
                }
                let covered: Vec<KeySpan> = pieces.iter().map(|p| p.span.clone()).collect();
                uncovered(scope.region, reqs, &covered)
            }
            Check::Fresh => reqs.into_iter().map(|r| vec![r]).collect(),
        };
        // One answer per request: a range delete split around what applied
        // before answers with its first part.
        let mut answers = Vec::with_capacity(todo.len());
        for parts in todo {
            let mut answer = None;
            for r in parts {
                let a = apply_request(db, scope, r, state, wb, outcome)?;
                answer.get_or_insert(a);
            }
            answers.push(answer.unwrap_or_default());
        }
        // Only non-empty answers (compare-and-swap results) are kept.
        let kept = if answers.iter().all(|a| *a == Response::default()) {
            Vec::new()
        } else {
            answers.clone()
        };
        scope
            .sessions
            .record(w.session_id, w.sequence, span, kept, policy);
        responses.extend(answers);
    }
    // Requests past what the writes account for (a malformed command).
    for r in requests {
        responses.push(apply_request(db, scope, r, state, wb, outcome)?);
    }
    Ok(RaftCmdResponse {
        header: Some(RaftResponseHeader {
            request_id: header.request_id,
            current_term: scope.term,
            error: None,
        }),
        responses,
        admin_response: None,
    })
}

/// Applies one request of a data command into `wb`.
fn apply_request(
    db: &DB,
    scope: &mut DataScope<'_>,
    req: Request,
    state: &ApplyState,
    wb: &mut WriteBatch,
    outcome: &mut DataOutcome,
) -> Result<Response> {
    let mut out = Response::default();
    match req.cmd {
        Some(request::Cmd::Put(p)) => {
            outcome.written.add(p.key.len() + p.value.len());
            wb.put_cf(cf(db, &p.cf)?, p.key, p.value)
        }
        Some(request::Cmd::Delete(d)) => {
            outcome.written.add(d.key.len());
            wb.delete_cf(cf(db, &d.cf)?, d.key)
        }
        Some(request::Cmd::DeleteRange(d)) => {
            outcome.written.add(d.start_key.len() + d.end_key.len());
            let start = if d.start_key.is_empty() {
                scope.region.start_key.clone()
            } else {
                d.start_key.max(scope.region.start_key.clone())
            };
            let end = if d.end_key.is_empty() {
                if scope.region.end_key.is_empty() {
                    unbounded_upper()
                } else {
                    scope.region.end_key.clone()
                }
            } else {
                d.end_key
            };
            wb.delete_range_cf(cf(db, &d.cf)?, start, end);
        }
        Some(request::Cmd::CompareAndSwap(c)) => {
            flush(db, scope, state, wb)?;
            // Judge expiry at the proposer's time, never the local
            // clock: every replica must reach the same outcome.
            let current = db.get_cf(cf(db, CF_RAW)?, &c.key)?;
            let current = current
                .as_deref()
                .and_then(|v| raw_value::decode(v, c.evaluated_at_secs))
                .map(|v| v.to_vec());
            let succeed = match &current {
                None => c.previous_not_exist,
                Some(v) => !c.previous_not_exist && *v == c.previous_value,
            };
            if succeed {
                outcome.written.add(c.key.len() + c.value.len());
                wb.put_cf(cf(db, &c.cf)?, &c.key, c.value);
            }
            out.cmd = Some(response::Cmd::CompareAndSwap(CompareAndSwapResponse {
                succeed,
                previous_not_exist: current.is_none(),
                previous_value: current.unwrap_or_default(),
            }));
        }
        Some(request::Cmd::Txn(t)) => {
            // Evaluate against everything applied before it.
            flush(db, scope, state, wb)?;
            let reader = MvccReader::new(db);
            let range = RegionRange {
                start: &scope.region.start_key,
                end: &scope.region.end_key,
            };
            let (resp, txn) = commands::execute(&reader, range, t)?;
            // The batch is empty after the flush: what is in it
            // now is this command's writes (locks, data, records).
            let empty = WriteBatch::default().size_in_bytes();
            txn.write_to(db, wb)?;
            outcome.written.bytes += wb.size_in_bytes().saturating_sub(empty) as u64;
            outcome.written.keys += wb.len() as u64;
            out.cmd = Some(response::Cmd::Txn(resp));
        }
        None => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use nokv_proto::metapb::RegionEpoch;
    use nokv_proto::raft_cmdpb::PutRequest;
    use rocksdb::WriteBatch;

    use super::*;
    use crate::engine::ALL_CFS;
    use crate::raftstore::session::session_start_ms;

    const IDLE_MS: u64 = 60_000;

    fn region() -> Region {
        Region {
            id: 3,
            start_key: b"a".to_vec(),
            end_key: b"z".to_vec(),
            epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: Vec::new(),
        }
    }

    fn put(key: &str, value: &str) -> Request {
        Request {
            cmd: Some(request::Cmd::Put(PutRequest {
                cf: CF_RAW.into(),
                key: key.as_bytes().to_vec(),
                value: raw_value::encode(value.as_bytes(), 0),
            })),
        }
    }

    fn delete_range(start: &str, end: &str) -> Request {
        Request {
            cmd: Some(request::Cmd::DeleteRange(DeleteRangeRequest {
                cf: CF_RAW.into(),
                start_key: start.as_bytes().to_vec(),
                end_key: end.as_bytes().to_vec(),
            })),
        }
    }

    /// A command of one write, as the service proposes it.
    fn write(session: u64, sequence: u64, stamp_ms: u64, requests: Vec<Request>) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(nokv_proto::raft_cmdpb::RaftRequestHeader {
                region_id: 3,
                region_epoch: region().epoch,
                ..Default::default()
            }),
            writes: vec![SessionWrite {
                session_id: session,
                sequence,
                requests: requests.len() as u32,
            }],
            requests,
            stamp_ms,
            session_idle_ms: IDLE_MS,
            max_sessions: 100,
            ..Default::default()
        }
    }

    /// A region replica's applied state: its database and session table.
    struct Replica {
        _dir: tempfile::TempDir,
        db: std::sync::Arc<DB>,
        sessions: SessionTable,
        index: u64,
    }

    impl Replica {
        fn new() -> Replica {
            let dir = tempfile::tempdir().expect("tmp");
            let db = nokv_consensus::engine::open(dir.path(), &ALL_CFS).expect("db");
            Replica {
                _dir: dir,
                db,
                sessions: SessionTable::default(),
                index: 10,
            }
        }

        /// Applies `cmd` as the next entry, as the apply pool does: data,
        /// apply state and session changes in one write.
        fn apply(&mut self, cmd: RaftCmdRequest) -> RaftCmdResponse {
            let region = region();
            let state = ApplyState {
                applied_index: self.index,
                ..Default::default()
            };
            let mut wb = WriteBatch::default();
            let mut scope = DataScope {
                region: &region,
                frozen: false,
                term: 1,
                sessions: &mut self.sessions,
            };
            let resp = apply_data(
                &self.db,
                &mut scope,
                cmd,
                &state,
                &mut wb,
                &mut DataOutcome::default(),
            )
            .expect("apply");
            self.index += 1;
            write_apply_state(
                &self.db,
                3,
                &ApplyState {
                    applied_index: self.index,
                    ..Default::default()
                },
                &mut wb,
            )
            .expect("apply state");
            self.sessions
                .write_changes(&self.db, 3, &mut wb)
                .expect("sessions");
            self.db.write(wb).expect("write");
            resp
        }

        fn get(&self, key: &str) -> Option<String> {
            let v = self
                .db
                .get_cf(cf(&self.db, CF_RAW).expect("cf"), key.as_bytes())
                .expect("get")?;
            raw_value::decode(&v, 0).map(|v| String::from_utf8_lossy(v).into_owned())
        }

        /// Closes and reopens: the table comes back from RocksDB.
        fn restart(&mut self) {
            self.sessions = SessionTable::load(&self.db, 3).expect("load");
        }
    }

    fn refusal(resp: &RaftCmdResponse) -> Option<region_error::Kind> {
        resp.responses
            .iter()
            .find_map(|r| r.write_error.clone())
            .and_then(|e| e.kind)
    }

    #[test]
    fn a_repeated_write_is_answered_without_applying_again_also_after_a_restart() {
        let mut r = Replica::new();
        let now = 1_000_000;
        let s = crate::mvcc::compose_ts(now, 1);
        r.apply(write(s, 1, now, vec![put("k", "v1")]));
        // Another client's later write.
        r.apply(write(0, 0, now + 1, vec![put("k", "v2")]));
        let resp = r.apply(write(s, 1, now + 2, vec![put("k", "v1")]));
        assert_eq!(refusal(&resp), None, "a repeat is answered, not refused");
        assert_eq!(
            r.get("k").as_deref(),
            Some("v2"),
            "the repeat changed nothing"
        );
        r.restart();
        r.apply(write(s, 1, now + 3, vec![put("k", "v1")]));
        assert_eq!(r.get("k").as_deref(), Some("v2"), "also after a restart");
        // The session's next write applies; its earlier one is now stale.
        r.apply(write(s, 2, now + 4, vec![put("k", "v3")]));
        assert_eq!(r.get("k").as_deref(), Some("v3"));
        let resp = r.apply(write(s, 1, now + 5, vec![put("k", "v1")]));
        assert!(matches!(
            refusal(&resp),
            Some(region_error::Kind::SequenceStale(_))
        ));
        assert_eq!(r.get("k").as_deref(), Some("v3"));
    }

    #[test]
    fn a_repeated_compare_and_swap_reports_the_first_outcome() {
        let mut r = Replica::new();
        let now = 1_000_000;
        let s = crate::mvcc::compose_ts(now, 1);
        let cas = |value: &str| Request {
            cmd: Some(request::Cmd::CompareAndSwap(
                nokv_proto::raft_cmdpb::CompareAndSwapRequest {
                    cf: CF_RAW.into(),
                    key: b"k".to_vec(),
                    value: raw_value::encode(value.as_bytes(), 0),
                    previous_not_exist: true,
                    evaluated_at_secs: now / 1000,
                    ..Default::default()
                },
            )),
        };
        let first = r.apply(write(s, 1, now, vec![cas("mine")]));
        let again = r.apply(write(s, 1, now + 1, vec![cas("mine")]));
        let swapped = |resp: &RaftCmdResponse| match &resp.responses[0].cmd {
            Some(response::Cmd::CompareAndSwap(c)) => c.succeed,
            other => panic!("no compare-and-swap answer: {other:?}"),
        };
        assert!(swapped(&first));
        assert!(swapped(&again), "the repeat reports the swap as done");
        assert_eq!(r.get("k").as_deref(), Some("mine"));
    }

    #[test]
    fn a_piece_seen_before_is_skipped_and_only_the_rest_applies() {
        let mut r = Replica::new();
        let now = 1_000_000;
        let s = crate::mvcc::compose_ts(now, 1);
        // One piece of a batch applied (keys b and c), then others wrote.
        r.apply(write(s, 1, now, vec![put("b", "1"), put("c", "1")]));
        r.apply(write(0, 0, now, vec![put("b", "other"), put("e", "keep")]));
        // After a merge the client resends the whole batch as one piece.
        r.apply(write(
            s,
            1,
            now,
            vec![put("b", "1"), put("c", "1"), put("d", "1")],
        ));
        assert_eq!(r.get("b").as_deref(), Some("other"), "b applied once");
        assert_eq!(r.get("d").as_deref(), Some("1"), "d was never applied");
        // A range delete repeated over a larger range deletes only what the
        // first copy did not cover.
        let t = crate::mvcc::compose_ts(now, 2);
        r.apply(write(t, 1, now, vec![delete_range("a", "c")]));
        r.apply(write(0, 0, now, vec![put("b", "rewritten")]));
        r.apply(write(t, 1, now, vec![delete_range("a", "f")]));
        assert_eq!(r.get("b").as_deref(), Some("rewritten"));
        assert_eq!(r.get("e"), None, "the uncovered part was deleted");
    }

    #[test]
    fn an_expired_session_is_refused_alike_by_replicas_that_forgot_it_at_different_times() {
        let now = 1_000_000;
        let old = crate::mvcc::compose_ts(now, 1);
        let other = |ms: u64| crate::mvcc::compose_ts(ms, 9);
        let mut a = Replica::new();
        let mut b = Replica::new();
        for r in [&mut a, &mut b] {
            r.apply(write(old, 1, now, vec![put("k", "old")]));
            r.apply(write(0, 0, now, vec![put("k", "newer")]));
        }
        // A write past the idle timeout makes both forget the session; one
        // replica then restarts.
        let later = now + IDLE_MS + 1;
        for r in [&mut a, &mut b] {
            r.apply(write(other(later), 1, later, vec![put("x", "1")]));
        }
        b.restart();
        for r in [&mut a, &mut b] {
            let resp = r.apply(write(old, 1, later + 1, vec![put("k", "old")]));
            assert!(matches!(
                refusal(&resp),
                Some(region_error::Kind::SessionExpired(_))
            ));
            assert_eq!(r.get("k").as_deref(), Some("newer"), "not applied twice");
        }
        assert_eq!(
            SessionTable::load(&a.db, 3).expect("load"),
            SessionTable::load(&b.db, 3).expect("load"),
            "both replicas keep the same sessions"
        );
        assert!(session_start_ms(other(later)) >= a.sessions.floor_ms());
    }
}
