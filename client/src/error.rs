//! Errors the client surfaces to applications.

use nokv_proto::errorpb::RegionError;
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
    /// assertion failed).
    #[error("transaction aborted: {0}")]
    TxnAborted(String),
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
        matches!(
            self,
            Error::WriteConflict { .. } | Error::TxnRetryable(_) | Error::Locked(_)
        ) || matches!(self, Error::TxnAborted(m) if m.contains("rolled back"))
    }
}

impl From<nokv_proto::tls::TlsError> for Error {
    fn from(e: nokv_proto::tls::TlsError) -> Self {
        Error::Tls(e.to_string())
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
