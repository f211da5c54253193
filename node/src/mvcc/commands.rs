//! Whole transactional commands: one [`TxnRequest`] evaluated against the
//! region's state, producing the response and the buffered changes. Per-key
//! failures go into the response as `KeyError`s; only storage failures are
//! errors here. A command that fails writes nothing, except where the
//! protocol says otherwise (a rollback record is its own effect).

use std::collections::HashMap;

use nokv_proto::kvrpcpb::*;
use nokv_proto::raft_cmdpb::{txn_request, txn_response, GcResponse, TxnRequest, TxnResponse};

use super::actions::{self, PrewriteParams, Prewritten};
use super::error::{MvccError, MvccResult};
use super::gc::gc_range;
use super::reader::MvccReader;
use super::txn::MvccTxn;

/// The key range of the region a command runs in (empty end = unbounded).
#[derive(Debug, Clone, Copy)]
pub struct RegionRange<'a> {
    /// Inclusive start.
    pub start: &'a [u8],
    /// Exclusive end.
    pub end: &'a [u8],
}

/// Splits an action's result into "carry on" or a client-facing error;
/// storage failures propagate.
fn key_error(e: MvccError) -> MvccResult<KeyError> {
    match e.to_key_error() {
        Some(k) => Ok(k),
        None => Err(e),
    }
}

fn dedup(keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    keys.into_iter()
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

/// Evaluates `req` and returns its response and changes.
pub fn execute(
    reader: &MvccReader,
    range: RegionRange,
    req: TxnRequest,
) -> MvccResult<(TxnResponse, MvccTxn)> {
    let mut txn = MvccTxn::new();
    let one_pc = (req.one_pc_commit_ts != 0).then_some(req.one_pc_commit_ts);
    let resp = match req.cmd {
        None => return Ok((TxnResponse { cmd: None }, txn)),
        Some(txn_request::Cmd::Prewrite(r)) => {
            txn_response::Cmd::Prewrite(prewrite(reader, &mut txn, r, one_pc)?)
        }
        Some(txn_request::Cmd::Commit(r)) => {
            txn_response::Cmd::Commit(commit(reader, &mut txn, r)?)
        }
        Some(txn_request::Cmd::BatchRollback(r)) => {
            txn_response::Cmd::BatchRollback(batch_rollback(reader, &mut txn, r)?)
        }
        Some(txn_request::Cmd::Cleanup(r)) => {
            txn_response::Cmd::Cleanup(cleanup(reader, &mut txn, r)?)
        }
        Some(txn_request::Cmd::ResolveLock(r)) => {
            txn_response::Cmd::ResolveLock(resolve_lock(reader, &mut txn, range, r)?)
        }
        Some(txn_request::Cmd::CheckTxnStatus(r)) => {
            txn_response::Cmd::CheckTxnStatus(check_txn_status(reader, &mut txn, r)?)
        }
        Some(txn_request::Cmd::TxnHeartBeat(r)) => {
            txn_response::Cmd::TxnHeartBeat(heartbeat(reader, &mut txn, r)?)
        }
        Some(txn_request::Cmd::Gc(r)) => {
            let start = r.start_key.as_slice().max(range.start);
            let end = match (r.end_key.is_empty(), range.end.is_empty()) {
                (true, _) => range.end,
                (false, true) => r.end_key.as_slice(),
                (false, false) => r.end_key.as_slice().min(range.end),
            };
            let limit = (r.key_limit as usize).max(1);
            let p = gc_range(reader, &mut txn, start, end, r.safe_point, limit)?;
            txn_response::Cmd::Gc(GcResponse {
                keys: p.keys as u64,
                versions_deleted: p.versions_deleted as u64,
                done: p.next_key.is_none(),
                next_key: p.next_key.unwrap_or_default(),
            })
        }
    };
    Ok((TxnResponse { cmd: Some(resp) }, txn))
}

/// Calls `f` on every key `req` touches, and on its range for GC, so the
/// store can check they lie in the region before proposing.
pub fn check_keys<E>(
    req: &TxnRequest,
    mut key: impl FnMut(&[u8]) -> Result<(), E>,
    range: impl FnOnce(&[u8], &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    match &req.cmd {
        None => Ok(()),
        Some(txn_request::Cmd::Prewrite(r)) => r.mutations.iter().try_for_each(|m| key(&m.key)),
        Some(txn_request::Cmd::Commit(r)) => r.keys.iter().try_for_each(|k| key(k)),
        Some(txn_request::Cmd::BatchRollback(r)) => r.keys.iter().try_for_each(|k| key(k)),
        Some(txn_request::Cmd::Cleanup(r)) => key(&r.key),
        Some(txn_request::Cmd::ResolveLock(r)) => r.keys.iter().try_for_each(|k| key(k)),
        Some(txn_request::Cmd::CheckTxnStatus(r)) => key(&r.primary_key),
        Some(txn_request::Cmd::TxnHeartBeat(r)) => key(&r.primary_lock),
        Some(txn_request::Cmd::Gc(r)) => range(&r.start_key, &r.end_key),
    }
}

/// Prewrite: every mutation is checked; if any fails, nothing is written
/// and every failure is reported.
///
/// A retried prewrite (docs/decisions.md, "Retried transactional commands
/// are idempotent by start_ts") is recognised key by key, and two findings
/// decide for the whole command:
/// - a key holding this transaction's commit record means the transaction
///   has committed. Nothing is written and no error is reported, whatever
///   the other keys look like by now (a later transaction may have locked
///   or overwritten them), and a request that asked for one phase is
///   answered with the commit ts found, not the one proposed with this
///   copy: each retry through the service takes a fresh one;
/// - a key holding this transaction's lock in a one-phase command (an
///   earlier two-phase copy, sent before the region layout changed, locked
///   it) makes the whole command a two-phase prewrite: committing the
///   other keys while that lock stays would split the transaction.
pub fn prewrite(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    r: KvPrewriteRequest,
    one_pc_commit_ts: Option<u64>,
) -> MvccResult<KvPrewriteResponse> {
    let mut p = PrewriteParams {
        primary: &r.primary_lock,
        start_ts: r.start_version,
        lock_ttl: r.lock_ttl,
        txn_size: r.txn_size,
        min_commit_ts: r.min_commit_ts,
        one_pc_commit_ts,
    };
    // A key named more than once takes its last mutation: that is the
    // transaction's final intent for the key.
    let mut seen = std::collections::HashSet::new();
    let mut mutations: Vec<&Mutation> = r
        .mutations
        .iter()
        .rev()
        .filter(|m| seen.insert(m.key.as_slice()))
        .collect();
    mutations.reverse();
    let mut checked = prewrite_mutations(reader, txn, &p, &mutations)?;
    // One phase over a key this transaction already locked: evaluate it
    // again as two phases, so that every key ends up locked.
    if p.one_pc_commit_ts.is_some()
        && checked.already_locked
        && checked.committed_at.is_none()
        && checked.errors.is_empty()
    {
        *txn = MvccTxn::new();
        p.one_pc_commit_ts = None;
        checked = prewrite_mutations(reader, txn, &p, &mutations)?;
    }
    // The transaction has committed: nothing to write, nothing to refuse.
    if let Some(commit_ts) = checked.committed_at {
        *txn = MvccTxn::new();
        let one_phase = r.try_one_pc || one_pc_commit_ts.is_some();
        return Ok(KvPrewriteResponse {
            region_error: None,
            errors: Vec::new(),
            min_commit_ts: 0,
            one_pc_commit_ts: if one_phase { commit_ts } else { 0 },
        });
    }
    let errors = checked.errors;
    if !errors.is_empty() {
        *txn = MvccTxn::new();
    }
    let ok = errors.is_empty();
    Ok(KvPrewriteResponse {
        region_error: None,
        errors,
        min_commit_ts: if ok && p.one_pc_commit_ts.is_none() {
            r.min_commit_ts.max(r.start_version + 1)
        } else {
            0
        },
        one_pc_commit_ts: if ok {
            p.one_pc_commit_ts.unwrap_or(0)
        } else {
            0
        },
    })
}

/// What the mutations of one prewrite found, key by key.
#[derive(Debug, Default)]
struct PrewriteChecks {
    /// Keys refused, as the client sees them.
    errors: Vec<KeyError>,
    /// Some key already holds this transaction's lock.
    already_locked: bool,
    /// Some key holds this transaction's commit record, at this ts.
    committed_at: Option<u64>,
}

/// Runs [`actions::prewrite`] on every mutation, buffering into `txn`.
fn prewrite_mutations(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    p: &PrewriteParams,
    mutations: &[&Mutation],
) -> MvccResult<PrewriteChecks> {
    let mut checks = PrewriteChecks::default();
    for m in mutations {
        match actions::prewrite(reader, txn, p, m) {
            Ok(Prewritten::Done) => {}
            Ok(Prewritten::AlreadyLocked) => checks.already_locked = true,
            Ok(Prewritten::AlreadyCommitted(commit_ts)) => checks.committed_at = Some(commit_ts),
            Err(e) => checks.errors.push(key_error(e)?),
        }
    }
    Ok(checks)
}

/// Commit: all keys or none.
pub fn commit(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    r: KvCommitRequest,
) -> MvccResult<KvCommitResponse> {
    if r.commit_version <= r.start_version {
        return Ok(KvCommitResponse {
            region_error: None,
            error: Some(KeyError {
                abort: format!(
                    "commit_version {} must be above start_version {}",
                    r.commit_version, r.start_version
                ),
                abort_reason: AbortReason::InvalidCommitVersion as i32,
                ..Default::default()
            }),
            commit_version: 0,
        });
    }
    for key in dedup(r.keys) {
        if let Err(e) = actions::commit(reader, txn, &key, r.start_version, r.commit_version) {
            *txn = MvccTxn::new();
            return Ok(KvCommitResponse {
                region_error: None,
                error: Some(key_error(e)?),
                commit_version: 0,
            });
        }
    }
    Ok(KvCommitResponse {
        region_error: None,
        error: None,
        commit_version: r.commit_version,
    })
}

/// Batch rollback: all keys or none (a committed key aborts it).
pub fn batch_rollback(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    r: KvBatchRollbackRequest,
) -> MvccResult<KvBatchRollbackResponse> {
    for key in dedup(r.keys) {
        if let Err(e) = actions::rollback(reader, txn, &key, r.start_version) {
            *txn = MvccTxn::new();
            return Ok(KvBatchRollbackResponse {
                region_error: None,
                error: Some(key_error(e)?),
            });
        }
    }
    Ok(KvBatchRollbackResponse::default())
}

/// Cleanup of one key.
pub fn cleanup(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    r: KvCleanupRequest,
) -> MvccResult<KvCleanupResponse> {
    match actions::cleanup(reader, txn, &r.key, r.start_version, r.current_ts) {
        Ok(commit) => Ok(KvCleanupResponse {
            region_error: None,
            error: None,
            commit_version: commit.unwrap_or(0),
        }),
        Err(e) => Ok(KvCleanupResponse {
            region_error: None,
            error: Some(key_error(e)?),
            commit_version: 0,
        }),
    }
}

/// Resolve lock: commits or rolls back the locks of one or many
/// transactions in the region (or only on the given keys).
pub fn resolve_lock(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    range: RegionRange,
    r: KvResolveLockRequest,
) -> MvccResult<KvResolveLockResponse> {
    let fates: HashMap<u64, u64> = if r.txn_infos.is_empty() {
        HashMap::from([(r.start_version, r.commit_version)])
    } else {
        r.txn_infos.iter().map(|t| (t.txn, t.status)).collect()
    };
    let locks = if r.keys.is_empty() {
        reader.scan_locks(range.start, range.end, u64::MAX, 0)?
    } else {
        let mut out = Vec::new();
        for key in dedup(r.keys) {
            if let Some(lock) = reader.load_lock(&key)? {
                out.push((key, lock));
            }
        }
        out
    };
    for (key, lock) in locks {
        let Some(&commit_ts) = fates.get(&lock.start_ts) else {
            continue;
        };
        if let Err(e) = actions::resolve_lock(reader, txn, &key, lock, commit_ts) {
            *txn = MvccTxn::new();
            return Ok(KvResolveLockResponse {
                region_error: None,
                error: Some(key_error(e)?),
            });
        }
    }
    Ok(KvResolveLockResponse::default())
}

/// Check txn status on the primary.
pub fn check_txn_status(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    r: KvCheckTxnStatusRequest,
) -> MvccResult<KvCheckTxnStatusResponse> {
    match actions::check_txn_status(
        reader,
        txn,
        &r.primary_key,
        r.lock_ts,
        r.caller_start_ts,
        r.current_ts,
        r.rollback_if_not_exist,
    ) {
        Ok(s) => Ok(KvCheckTxnStatusResponse {
            region_error: None,
            error: None,
            lock_ttl: s.lock_ttl,
            commit_version: s.commit_ts,
            action: s.action as i32,
            lock_info: s.lock_info,
        }),
        Err(e) => Ok(KvCheckTxnStatusResponse {
            error: Some(key_error(e)?),
            ..Default::default()
        }),
    }
}

/// Heartbeat on the primary.
pub fn heartbeat(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    r: KvTxnHeartBeatRequest,
) -> MvccResult<KvTxnHeartBeatResponse> {
    match actions::txn_heartbeat(
        reader,
        txn,
        &r.primary_lock,
        r.start_version,
        r.advise_lock_ttl,
    ) {
        Ok(ttl) => Ok(KvTxnHeartBeatResponse {
            region_error: None,
            error: None,
            lock_ttl: ttl,
        }),
        Err(e) => Ok(KvTxnHeartBeatResponse {
            error: Some(key_error(e)?),
            ..Default::default()
        }),
    }
}
