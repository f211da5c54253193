//! Errors of the store node.

use thiserror::Error;

/// What can fail inside the node (outside of per-request region errors,
/// which are values, not failures).
#[derive(Debug, Error)]
pub enum Error {
    /// Raft machinery or raft storage failed.
    #[error(transparent)]
    Consensus(#[from] nokv_consensus::Error),
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Engine(#[from] rocksdb::Error),
    /// Talking to the coordinator failed.
    #[error("coordinator: {0}")]
    Coordinator(#[from] nokv_client::Error),
    /// Persisted state did not decode.
    #[error("corrupted {0}")]
    Corrupted(String),
    /// The configuration is invalid.
    #[error("invalid config: {0}")]
    Config(String),
    /// I/O failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The store's persisted identity does not match the cluster.
    #[error("store identity mismatch: {0}")]
    Identity(String),
    /// The raftstore stopped because the store can no longer keep its
    /// state (a write of raft state or applied data failed, or its thread
    /// panicked). The process must stop; the binary exits with code 70
    /// (docs/deploy.md), and an operator looks at the disk before a
    /// restart.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl From<crate::mvcc::MvccError> for Error {
    fn from(e: crate::mvcc::MvccError) -> Self {
        match e {
            crate::mvcc::MvccError::Engine(e) => Error::Engine(e),
            other => Error::Corrupted(other.to_string()),
        }
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Corrupted(e.to_string())
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// How an error from [`crate::run`] ends `nokv-node` (docs/deploy.md: a
/// storage failure exits 70). Every variant is listed, so a new one
/// has to be placed here: [`Error::Fatal`] is the storage failure.
impl nokv_consensus::process::RunError for Error {
    fn is_storage_failure(&self) -> bool {
        match self {
            Error::Consensus(_)
            | Error::Engine(_)
            | Error::Coordinator(_)
            | Error::Corrupted(_)
            | Error::Config(_)
            | Error::Io(_)
            | Error::Identity(_) => false,
            Error::Fatal(_) => true,
        }
    }
}
