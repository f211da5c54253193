//! The Percolator actions on one key (or one transaction's primary). Each
//! reads through an [`MvccReader`] and buffers its changes in an
//! [`MvccTxn`]; the caller writes the buffer only when the whole command
//! succeeded.

use nokv_proto::kvrpcpb::{Action, Assertion, LockInfo, Mutation, Op};

use super::error::{MvccError, MvccResult};
use super::lock::{Lock, LockKind};
use super::reader::{MvccReader, TxnCommitRecord};
use super::txn::MvccTxn;
use super::write::{Write, WriteKind};
use super::SHORT_VALUE_MAX;

/// The transaction-wide part of a prewrite.
#[derive(Debug, Clone)]
pub struct PrewriteParams<'a> {
    /// The transaction's primary key.
    pub primary: &'a [u8],
    /// The transaction's start timestamp.
    pub start_ts: u64,
    /// Lock TTL in physical milliseconds.
    pub lock_ttl: u64,
    /// Keys in the whole transaction.
    pub txn_size: u64,
    /// Smallest commit ts allowed (0: start_ts + 1).
    pub min_commit_ts: u64,
    /// Commit in one phase at this timestamp instead of locking.
    pub one_pc_commit_ts: Option<u64>,
}

/// What [`prewrite`] did with a mutation it did not refuse.
///
/// A client may send the same prewrite twice and both copies may apply
/// (docs/decisions.md, "Retried transactional commands are idempotent by
/// start_ts"); the two `Already*` outcomes are how a copy recognises that
/// its transaction got there first, so that it writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prewritten {
    /// Checked and buffered: the key is locked (two phases), its version
    /// written (one phase), or only checked (`CheckNotExists`).
    Done,
    /// The key already holds this transaction's lock: a retried prewrite.
    /// Nothing is buffered (the lock may carry a TTL or min_commit_ts
    /// pushed since, which must not be reset).
    AlreadyLocked,
    /// The key holds this transaction's commit record, at this commit ts:
    /// a retried prewrite of a transaction that has committed. Nothing is
    /// buffered, and the transaction is committed on every key.
    AlreadyCommitted(u64),
}

/// Prewrites one mutation: checks for conflicts, then locks the key (or,
/// for one-phase commit, writes the committed version directly).
pub fn prewrite(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    p: &PrewriteParams,
    m: &Mutation,
) -> MvccResult<Prewritten> {
    let key = m.key.as_slice();
    if let Some(lock) = reader.load_lock(key)? {
        if lock.start_ts == p.start_ts {
            return Ok(Prewritten::AlreadyLocked);
        }
        // A later transaction may have locked the key after ours committed
        // on it: that lock must not hide our own commit from a retry.
        if let TxnCommitRecord::Committed(commit_ts) = reader.txn_commit_record(key, p.start_ts)? {
            return Ok(Prewritten::AlreadyCommitted(commit_ts));
        }
        return Err(MvccError::Locked(lock.info(key)));
    }
    if let Some((commit_ts, w)) = reader.seek_write(key, u64::MAX)? {
        if commit_ts >= p.start_ts {
            return match reader.txn_commit_record(key, p.start_ts)? {
                // A late duplicate of a prewrite whose transaction has
                // already committed (newer versions may sit above ours).
                TxnCommitRecord::Committed(commit_ts) => {
                    Ok(Prewritten::AlreadyCommitted(commit_ts))
                }
                // Our own rollback record, or another transaction's newer
                // version: either way this transaction cannot commit.
                _ => Err(MvccError::WriteConflict {
                    start_ts: p.start_ts,
                    conflict_start_ts: w.start_ts,
                    conflict_commit_ts: commit_ts,
                    key: key.to_vec(),
                    primary: p.primary.to_vec(),
                }),
            };
        }
    }
    let op = Op::try_from(m.op).unwrap_or(Op::Put);
    let assertion = Assertion::try_from(m.assertion).unwrap_or(Assertion::None);
    if op == Op::CheckNotExists || assertion != Assertion::None {
        let existing = match reader.seek_data_write(key, u64::MAX)? {
            Some((commit_ts, w)) if w.kind == WriteKind::Put => Some((commit_ts, w.start_ts)),
            _ => None,
        };
        if op == Op::CheckNotExists {
            return match existing {
                Some(_) => Err(MvccError::AlreadyExist { key: key.to_vec() }),
                None => Ok(Prewritten::Done),
            };
        }
        let failed = match assertion {
            Assertion::NotExist => existing.is_some(),
            Assertion::Exist => existing.is_none(),
            Assertion::None => false,
        };
        if failed {
            let (existing_commit_ts, existing_start_ts) = existing.unwrap_or((0, 0));
            return Err(MvccError::AssertionFailed {
                start_ts: p.start_ts,
                key: key.to_vec(),
                assertion,
                existing_start_ts,
                existing_commit_ts,
            });
        }
    }
    let kind = match op {
        Op::Put => LockKind::Put,
        Op::Del => LockKind::Delete,
        Op::Lock => LockKind::Lock,
        // Rolling back through prewrite is not a thing; CheckNotExists was
        // handled above.
        Op::Rollback | Op::CheckNotExists => return Ok(Prewritten::Done),
    };
    let (short_value, long_value) = match kind {
        LockKind::Put if m.value.len() <= SHORT_VALUE_MAX => (Some(m.value.clone()), None),
        LockKind::Put => (None, Some(m.value.clone())),
        _ => (None, None),
    };
    if let Some(v) = long_value {
        txn.put_value(key, p.start_ts, v);
    }
    match p.one_pc_commit_ts {
        Some(commit_ts) => {
            let write = Write {
                kind: WriteKind::from_lock(kind),
                start_ts: p.start_ts,
                short_value,
                overlapped_rollback: false,
            };
            txn.put_write(key, commit_ts, &write);
        }
        None => {
            let lock = Lock {
                kind,
                primary: p.primary.to_vec(),
                start_ts: p.start_ts,
                ttl: p.lock_ttl,
                min_commit_ts: p.min_commit_ts.max(p.start_ts + 1),
                txn_size: p.txn_size,
                short_value,
            };
            txn.put_lock(key, &lock);
        }
    }
    Ok(Prewritten::Done)
}

/// Commits the transaction at `start_ts` on `key` at `commit_ts`.
/// Committing again is a no-op; committing a rolled-back transaction fails.
pub fn commit(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    key: &[u8],
    start_ts: u64,
    commit_ts: u64,
) -> MvccResult<()> {
    match reader.load_lock(key)? {
        Some(lock) if lock.start_ts == start_ts => {
            if commit_ts < lock.min_commit_ts {
                return Err(MvccError::CommitTsExpired {
                    start_ts,
                    commit_ts,
                    key: key.to_vec(),
                    min_commit_ts: lock.min_commit_ts,
                });
            }
            commit_lock(txn, key, lock, commit_ts);
            Ok(())
        }
        _ => match reader.txn_commit_record(key, start_ts)? {
            TxnCommitRecord::Committed(_) => Ok(()),
            TxnCommitRecord::RolledBack => Err(MvccError::RolledBack {
                start_ts,
                key: key.to_vec(),
            }),
            TxnCommitRecord::None => Err(MvccError::TxnLockNotFound {
                start_ts,
                key: key.to_vec(),
            }),
        },
    }
}

fn commit_lock(txn: &mut MvccTxn, key: &[u8], lock: Lock, commit_ts: u64) {
    let write = Write {
        kind: WriteKind::from_lock(lock.kind),
        start_ts: lock.start_ts,
        short_value: lock.short_value,
        overlapped_rollback: false,
    };
    txn.put_write(key, commit_ts, &write);
    txn.unlock(key);
}

/// Rolls back the transaction at `start_ts` on `key`, leaving a protective
/// rollback record. Fails if it already committed.
pub fn rollback(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    key: &[u8],
    start_ts: u64,
) -> MvccResult<()> {
    if let Some(lock) = reader.load_lock(key)? {
        if lock.start_ts == start_ts {
            rollback_lock(reader, txn, key, &lock)?;
            return Ok(());
        }
    }
    match reader.txn_commit_record(key, start_ts)? {
        TxnCommitRecord::Committed(commit_ts) => Err(MvccError::Committed {
            start_ts,
            commit_ts,
            key: key.to_vec(),
        }),
        TxnCommitRecord::RolledBack => Ok(()),
        TxnCommitRecord::None => put_rollback_record(reader, txn, key, start_ts),
    }
}

fn rollback_lock(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    key: &[u8],
    lock: &Lock,
) -> MvccResult<()> {
    if lock.kind == LockKind::Put && lock.short_value.is_none() {
        txn.delete_value(key, lock.start_ts);
    }
    txn.unlock(key);
    put_rollback_record(reader, txn, key, lock.start_ts)
}

/// Writes the rollback record at `start_ts`. If another transaction
/// committed exactly at that timestamp, its record is kept and marked
/// instead, so neither fact is lost.
fn put_rollback_record(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    key: &[u8],
    start_ts: u64,
) -> MvccResult<()> {
    match reader.seek_write(key, start_ts)? {
        Some((commit_ts, mut w)) if commit_ts == start_ts => {
            if w.start_ts != start_ts && !w.overlapped_rollback {
                w.overlapped_rollback = true;
                txn.put_write(key, commit_ts, &w);
            }
        }
        _ => txn.put_write(key, start_ts, &Write::new(WriteKind::Rollback, start_ts)),
    }
    Ok(())
}

/// Cleans up the transaction at `start_ts` on `key`: rolls it back unless
/// its lock is alive at `current_ts` (0: roll back regardless). Returns the
/// commit ts if the transaction had already committed.
pub fn cleanup(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    key: &[u8],
    start_ts: u64,
    current_ts: u64,
) -> MvccResult<Option<u64>> {
    if let Some(lock) = reader.load_lock(key)? {
        if lock.start_ts == start_ts {
            if current_ts != 0 && !lock.is_expired(current_ts) {
                return Err(MvccError::Locked(lock.info(key)));
            }
            rollback_lock(reader, txn, key, &lock)?;
            return Ok(None);
        }
    }
    match reader.txn_commit_record(key, start_ts)? {
        TxnCommitRecord::Committed(commit_ts) => Ok(Some(commit_ts)),
        TxnCommitRecord::RolledBack => Ok(None),
        TxnCommitRecord::None => {
            put_rollback_record(reader, txn, key, start_ts)?;
            Ok(None)
        }
    }
}

/// The state of a transaction as judged from its primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnStatus {
    /// Remaining TTL of a live lock (0 otherwise).
    pub lock_ttl: u64,
    /// Commit ts if committed (0 otherwise).
    pub commit_ts: u64,
    /// What the check did.
    pub action: Action,
    /// The live lock.
    pub lock_info: Option<LockInfo>,
}

/// Decides the fate of the transaction at `lock_ts` from its primary key:
/// a live lock answers its TTL (and has its min_commit_ts pushed past
/// `caller_start_ts`, so the caller's read need not wait); an expired lock
/// is rolled back; a missing lock is looked up in the write records and,
/// if absent there too, rolled back when `rollback_if_not_exist`.
pub fn check_txn_status(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    primary: &[u8],
    lock_ts: u64,
    caller_start_ts: u64,
    current_ts: u64,
    rollback_if_not_exist: bool,
) -> MvccResult<TxnStatus> {
    if let Some(mut lock) = reader.load_lock(primary)? {
        if lock.start_ts == lock_ts {
            if lock.is_expired(current_ts) {
                rollback_lock(reader, txn, primary, &lock)?;
                return Ok(TxnStatus {
                    lock_ttl: 0,
                    commit_ts: 0,
                    action: Action::TtlExpireRollback,
                    lock_info: None,
                });
            }
            let mut action = Action::NoAction;
            if caller_start_ts != 0
                && caller_start_ts != u64::MAX
                && lock.min_commit_ts <= caller_start_ts
            {
                lock.min_commit_ts = caller_start_ts + 1;
                txn.put_lock(primary, &lock);
                action = Action::MinCommitTsPushed;
            }
            return Ok(TxnStatus {
                lock_ttl: lock.ttl,
                commit_ts: 0,
                action,
                lock_info: Some(lock.info(primary)),
            });
        }
    }
    match reader.txn_commit_record(primary, lock_ts)? {
        TxnCommitRecord::Committed(commit_ts) => Ok(TxnStatus {
            lock_ttl: 0,
            commit_ts,
            action: Action::NoAction,
            lock_info: None,
        }),
        TxnCommitRecord::RolledBack => Ok(TxnStatus {
            lock_ttl: 0,
            commit_ts: 0,
            action: Action::NoAction,
            lock_info: None,
        }),
        TxnCommitRecord::None if rollback_if_not_exist => {
            put_rollback_record(reader, txn, primary, lock_ts)?;
            Ok(TxnStatus {
                lock_ttl: 0,
                commit_ts: 0,
                action: Action::LockNotExistRollback,
                lock_info: None,
            })
        }
        TxnCommitRecord::None => Err(MvccError::TxnLockNotFound {
            start_ts: lock_ts,
            key: primary.to_vec(),
        }),
    }
}

/// Extends the TTL of a live primary lock to `advise_ttl` (never shortens
/// it). Returns the TTL now in force.
pub fn txn_heartbeat(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    primary: &[u8],
    start_ts: u64,
    advise_ttl: u64,
) -> MvccResult<u64> {
    match reader.load_lock(primary)? {
        Some(mut lock) if lock.start_ts == start_ts => {
            if advise_ttl > lock.ttl {
                lock.ttl = advise_ttl;
                txn.put_lock(primary, &lock);
            }
            Ok(lock.ttl)
        }
        _ => Err(MvccError::TxnLockNotFound {
            start_ts,
            key: primary.to_vec(),
        }),
    }
}

/// Resolves `lock` on `key` to its transaction's fate: commit at
/// `commit_ts`, or roll back when it is 0.
pub fn resolve_lock(
    reader: &MvccReader,
    txn: &mut MvccTxn,
    key: &[u8],
    lock: Lock,
    commit_ts: u64,
) -> MvccResult<()> {
    if commit_ts == 0 {
        rollback_lock(reader, txn, key, &lock)
    } else {
        // The primary already committed: the transaction is committed, so
        // this secondary commits whatever its own min_commit_ts says.
        commit_lock(txn, key, lock, commit_ts);
        Ok(())
    }
}
