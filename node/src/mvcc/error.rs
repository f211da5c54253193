//! Outcomes of MVCC commands that are not plain success. Most are answers
//! for the client (a [`KeyError`]); storage failures and corrupt records are
//! the store's problem.

use nokv_proto::kvrpcpb::{
    AbortReason, AlreadyExist, Assertion, AssertionFailed, CommitTsExpired, KeyError, LockInfo,
    TxnNotFound, WriteConflict,
};

/// Result of an MVCC operation.
pub type MvccResult<T> = std::result::Result<T, MvccError>;

/// Why an MVCC operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// Another transaction holds a lock on the key.
    #[error("key is locked by transaction {}", .0.lock_version)]
    Locked(LockInfo),
    /// A newer write (or our own rollback) exists after our start_ts.
    #[error(
        "write conflict on a key: start_ts {start_ts}, conflicting commit_ts {conflict_commit_ts}"
    )]
    WriteConflict {
        /// Our transaction.
        start_ts: u64,
        /// Start ts of the conflicting write.
        conflict_start_ts: u64,
        /// Commit ts of the conflicting write.
        conflict_commit_ts: u64,
        /// The key.
        key: Vec<u8>,
        /// Our primary.
        primary: Vec<u8>,
    },
    /// `CheckNotExists` or a NotExist assertion met an existing value.
    #[error("key already exists")]
    AlreadyExist {
        /// The key.
        key: Vec<u8>,
    },
    /// An assertion on the key's existence failed.
    #[error("assertion failed on a key")]
    AssertionFailed {
        /// Our transaction.
        start_ts: u64,
        /// The key.
        key: Vec<u8>,
        /// What was asserted.
        assertion: Assertion,
        /// The existing version, if any.
        existing_start_ts: u64,
        /// Its commit ts.
        existing_commit_ts: u64,
    },
    /// Commit below the lock's min_commit_ts.
    #[error("commit_ts {commit_ts} is below the lock's min_commit_ts {min_commit_ts}")]
    CommitTsExpired {
        /// Our transaction.
        start_ts: u64,
        /// The commit ts tried.
        commit_ts: u64,
        /// The key.
        key: Vec<u8>,
        /// The lock's floor.
        min_commit_ts: u64,
    },
    /// The transaction's lock is gone and it left no commit record: it was
    /// never prewritten here, or its lock was cleaned up.
    #[error("transaction {start_ts} has no lock and no commit record on the key")]
    TxnLockNotFound {
        /// Our transaction.
        start_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// The transaction was rolled back; it can no longer commit.
    #[error("transaction {start_ts} was rolled back")]
    RolledBack {
        /// Our transaction.
        start_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// The transaction was committed; it can no longer roll back.
    #[error("transaction {start_ts} is already committed at {commit_ts}")]
    Committed {
        /// Our transaction.
        start_ts: u64,
        /// Its commit ts.
        commit_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// The storage engine failed.
    #[error("storage: {0}")]
    Engine(#[from] rocksdb::Error),
    /// A stored record could not be decoded.
    #[error("corrupted MVCC record: {0}")]
    Corrupted(String),
}

impl MvccError {
    /// The client-facing form, or `None` for the store's own failures.
    pub fn to_key_error(&self) -> Option<KeyError> {
        let mut e = KeyError::default();
        match self {
            MvccError::Locked(info) => e.locked = Some(info.clone()),
            MvccError::WriteConflict {
                start_ts,
                conflict_start_ts,
                conflict_commit_ts,
                key,
                primary,
            } => {
                e.retryable = self.to_string();
                e.conflict = Some(WriteConflict {
                    start_ts: *start_ts,
                    conflict_ts: *conflict_start_ts,
                    key: key.clone(),
                    primary: primary.clone(),
                    conflict_commit_ts: *conflict_commit_ts,
                });
            }
            MvccError::AlreadyExist { key } => {
                e.already_exist = Some(AlreadyExist { key: key.clone() })
            }
            MvccError::AssertionFailed {
                start_ts,
                key,
                assertion,
                existing_start_ts,
                existing_commit_ts,
            } => {
                e.assertion_failed = Some(AssertionFailed {
                    start_ts: *start_ts,
                    key: key.clone(),
                    assertion: *assertion as i32,
                    existing_start_ts: *existing_start_ts,
                    existing_commit_ts: *existing_commit_ts,
                })
            }
            MvccError::CommitTsExpired {
                start_ts,
                commit_ts,
                key,
                min_commit_ts,
            } => {
                e.commit_ts_expired = Some(CommitTsExpired {
                    start_ts: *start_ts,
                    attempted_commit_ts: *commit_ts,
                    key: key.clone(),
                    min_commit_ts: *min_commit_ts,
                })
            }
            MvccError::TxnLockNotFound { start_ts, key } => {
                e.txn_not_found = Some(TxnNotFound {
                    start_ts: *start_ts,
                    primary_key: key.clone(),
                });
                e.abort = self.to_string();
            }
            MvccError::RolledBack { .. } => {
                e.abort = self.to_string();
                e.set_abort_reason(AbortReason::RolledBack);
            }
            MvccError::Committed { .. } => {
                e.abort = self.to_string();
                e.set_abort_reason(AbortReason::AlreadyCommitted);
            }
            MvccError::Engine(_) | MvccError::Corrupted(_) => return None,
        }
        Some(e)
    }
}
