//! Errors the client surfaces to applications, and how a store's answer
//! becomes one: a transaction's [`KeyError`] is turned into an [`crate::Error`]
//! here and nowhere else (`From<KeyError>`), including why a transaction
//! was aborted ([`AbortReason`], from the store's typed
//! `KeyError.abort_reason`), so no caller ever reads an error's text.

use nokv_proto::errorpb::RegionError;
use nokv_proto::kvrpcpb::KeyError;
use thiserror::Error;

/// A failed client call. Region errors are retried internally; what
/// reaches the caller is either final (bad input) or the last failure seen
/// before the deadline.
#[derive(Debug, Error)]
pub enum Error {
    /// The request was malformed (empty key, value too large, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No coordinator member could be reached or none leads.
    #[error("coordinator unavailable: {0}")]
    CoordinatorUnavailable(String),
    /// The coordinator answered with an error.
    #[error("coordinator error ({}): {message}", kind.as_str_name())]
    Coordinator {
        /// What kind of refusal it was.
        kind: nokv_proto::coordinatorpb::ErrorType,
        /// Its explanation.
        message: String,
    },
    /// A region error persisted until the deadline.
    #[error("region error: {}", .0.message)]
    Region(Box<RegionError>),
    /// A store could not be reached or failed.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// The overall deadline passed; `last` is the last failure seen.
    #[error("deadline exceeded after {attempts} attempts; last error: {last}")]
    DeadlineExceeded {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A write's outcome is unknown: some attempt may have applied, and it
    /// can no longer be told whether one did (the deadline passed, or the
    /// region forgot the write's session). It applied at most once; read
    /// the keys to find out.
    #[error("write outcome undetermined: it may or may not have applied; last error: {0}")]
    Undetermined(String),
    /// A gRPC call failed with a status the client does not retry.
    #[error("rpc failed: {0}")]
    Rpc(#[from] tonic::Status),
    /// A transaction met a newer write on `key`: nothing of it was
    /// committed, and it may be retried from the start.
    #[error("write conflict on key {key:?}: start_ts {start_ts}, conflicting commit_ts {conflict_commit_ts}")]
    WriteConflict {
        /// The failed transaction.
        start_ts: u64,
        /// The conflicting transaction.
        conflict_start_ts: u64,
        /// Its commit ts.
        conflict_commit_ts: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// A key asserted absent exists.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: Vec<u8>,
    },
    /// A key is locked by another transaction that could not be resolved.
    #[error("key locked by transaction {}", .0.lock_version)]
    Locked(Box<nokv_proto::kvrpcpb::LockInfo>),
    /// The transaction cannot commit (rolled back by a resolver, or an
    /// assertion failed); [`TxnAbort::reason`] says why.
    #[error("transaction aborted: {0}")]
    TxnAborted(TxnAbort),
    /// The store asked the transaction to retry.
    #[error("transaction must retry: {0}")]
    TxnRetryable(String),
    /// TLS material could not be loaded or was refused.
    #[error("tls: {0}")]
    Tls(String),
    /// The endpoint string is not a valid address.
    #[error("invalid endpoint {0}")]
    InvalidEndpoint(String),
}

impl Error {
    /// Whether retrying the whole transaction (with a new start_ts) may
    /// succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::WriteConflict { .. } | Error::TxnRetryable(_) | Error::Locked(_) => true,
            Error::TxnAborted(a) => a.reason.is_retryable(),
            _ => false,
        }
    }
}

/// Why a store refused to let a transaction go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// A reader met the transaction's expired lock and rolled it back;
    /// the transaction may be retried from the start.
    RolledBack,
    /// The transaction is already committed, so it cannot be rolled back.
    AlreadyCommitted,
    /// Its lock is gone and it left no commit record (never prewritten
    /// there, or cleaned up).
    TxnNotFound,
    /// The commit timestamp is below the lock's `min_commit_ts`.
    CommitTsExpired,
    /// An assertion on a key's existence failed.
    AssertionFailed,
    /// Another reason, told only in words (for example a read below the GC
    /// safe point, or a commit timestamp not above the start timestamp).
    Other,
}

impl AbortReason {
    /// Whether retrying the whole transaction may succeed.
    pub fn is_retryable(self) -> bool {
        self == AbortReason::RolledBack
    }

    /// The reason the store typed into `KeyError.abort_reason`.
    fn of_store(reason: nokv_proto::kvrpcpb::AbortReason) -> Self {
        use nokv_proto::kvrpcpb::AbortReason as Store;
        match reason {
            Store::RolledBack => AbortReason::RolledBack,
            Store::AlreadyCommitted => AbortReason::AlreadyCommitted,
            Store::ReadBelowSafePoint | Store::InvalidCommitVersion | Store::AbortUnspecified => {
                AbortReason::Other
            }
        }
    }
}

/// A transaction abort: why, and what the store said.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct TxnAbort {
    /// Why, for deciding what to do.
    pub reason: AbortReason,
    /// The explanation, for people.
    pub message: String,
}

/// The abort error for `reason`, told in `message`.
fn aborted(reason: AbortReason, message: impl Into<String>) -> Error {
    Error::TxnAborted(TxnAbort {
        reason,
        message: message.into(),
    })
}

impl From<KeyError> for Error {
    /// The error a transactional answer's `KeyError` stands for. Typed
    /// fields win over text: a conflict, an existing key, a lock, then the
    /// abort reasons.
    fn from(e: KeyError) -> Self {
        if let Some(c) = e.conflict {
            return Error::WriteConflict {
                start_ts: c.start_ts,
                conflict_start_ts: c.conflict_ts,
                conflict_commit_ts: c.conflict_commit_ts,
                key: c.key,
            };
        }
        if let Some(a) = e.already_exist {
            return Error::AlreadyExists { key: a.key };
        }
        if let Some(l) = e.locked {
            return Error::Locked(Box::new(l));
        }
        if e.commit_ts_expired.is_some() {
            let message = format!("commit ts expired: {e:?}");
            return aborted(AbortReason::CommitTsExpired, message);
        }
        if let Some(a) = e.assertion_failed {
            let message = format!("assertion failed on key {:?}", a.key);
            return aborted(AbortReason::AssertionFailed, message);
        }
        if !e.abort.is_empty() {
            let reason = match e.txn_not_found {
                Some(_) => AbortReason::TxnNotFound,
                None => AbortReason::of_store(e.abort_reason()),
            };
            return aborted(reason, e.abort);
        }
        if e.txn_not_found.is_some() {
            return aborted(AbortReason::TxnNotFound, "transaction not found");
        }
        if !e.retryable.is_empty() {
            return Error::TxnRetryable(e.retryable);
        }
        aborted(AbortReason::Other, format!("{e:?}"))
    }
}

impl From<nokv_proto::tls::TlsError> for Error {
    fn from(e: nokv_proto::tls::TlsError) -> Self {
        Error::Tls(e.to_string())
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use nokv_proto::kvrpcpb::{
        AssertionFailed, CommitTsExpired, LockInfo, TxnNotFound, WriteConflict,
    };

    use super::*;

    fn abort(e: Error) -> TxnAbort {
        match e {
            Error::TxnAborted(a) => a,
            other => panic!("not an abort: {other:?}"),
        }
    }

    #[test]
    fn typed_key_errors_become_their_variants() {
        let conflict = Error::from(KeyError {
            conflict: Some(WriteConflict {
                start_ts: 5,
                conflict_ts: 6,
                conflict_commit_ts: 7,
                key: b"k".to_vec(),
                ..Default::default()
            }),
            retryable: "write conflict".into(),
            ..Default::default()
        });
        assert!(matches!(
            conflict,
            Error::WriteConflict {
                start_ts: 5,
                conflict_start_ts: 6,
                conflict_commit_ts: 7,
                ..
            }
        ));
        assert!(conflict.is_retryable());
        let locked = Error::from(KeyError {
            locked: Some(LockInfo::default()),
            ..Default::default()
        });
        assert!(matches!(locked, Error::Locked(_)) && locked.is_retryable());
        let retry = Error::from(KeyError {
            retryable: "try again".into(),
            ..Default::default()
        });
        assert!(matches!(&retry, Error::TxnRetryable(m) if m == "try again"));
        assert!(retry.is_retryable());
    }

    #[test]
    fn a_rolled_back_transaction_is_retryable_and_other_aborts_are_not() {
        let rolled = Error::from(KeyError {
            abort: "transaction 7 was rolled back".into(),
            abort_reason: nokv_proto::kvrpcpb::AbortReason::RolledBack as i32,
            ..Default::default()
        });
        assert!(rolled.is_retryable());
        assert_eq!(
            rolled.to_string(),
            "transaction aborted: transaction 7 was rolled back"
        );
        assert_eq!(abort(rolled).reason, AbortReason::RolledBack);

        let committed = Error::from(KeyError {
            abort: "transaction 7 is already committed at 9".into(),
            abort_reason: nokv_proto::kvrpcpb::AbortReason::AlreadyCommitted as i32,
            ..Default::default()
        });
        assert!(!committed.is_retryable());
        assert_eq!(abort(committed).reason, AbortReason::AlreadyCommitted);

        let safe_point = abort(Error::from(KeyError {
            abort: "read timestamp 3 is below the GC safe point 5".into(),
            abort_reason: nokv_proto::kvrpcpb::AbortReason::ReadBelowSafePoint as i32,
            ..Default::default()
        }));
        // The words alone decide nothing.
        let words_only = abort(Error::from(KeyError {
            abort: "transaction 7 was rolled back".into(),
            ..Default::default()
        }));
        assert_eq!(words_only.reason, AbortReason::Other);
        assert_eq!(safe_point.reason, AbortReason::Other);
    }

    #[test]
    fn typed_abort_fields_decide_the_reason_and_keep_the_words() {
        let not_found = abort(Error::from(KeyError {
            txn_not_found: Some(TxnNotFound::default()),
            abort: "transaction 7 has no lock and no commit record on the key".into(),
            ..Default::default()
        }));
        assert_eq!(not_found.reason, AbortReason::TxnNotFound);
        assert_eq!(
            not_found.message,
            "transaction 7 has no lock and no commit record on the key"
        );
        let bare = abort(Error::from(KeyError {
            txn_not_found: Some(TxnNotFound::default()),
            ..Default::default()
        }));
        assert_eq!(bare.message, "transaction not found");
        let expired = abort(Error::from(KeyError {
            commit_ts_expired: Some(CommitTsExpired::default()),
            ..Default::default()
        }));
        assert_eq!(expired.reason, AbortReason::CommitTsExpired);
        assert!(expired.message.starts_with("commit ts expired: "));
        let assertion = abort(Error::from(KeyError {
            assertion_failed: Some(AssertionFailed {
                key: b"k".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }));
        assert_eq!(assertion.reason, AbortReason::AssertionFailed);
        assert_eq!(assertion.message, "assertion failed on key [107]");
        assert_eq!(
            abort(Error::from(KeyError::default())).reason,
            AbortReason::Other
        );
    }
}
