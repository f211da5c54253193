//! Errors of the coordinator.

use thiserror::Error;

/// What can fail inside the coordinator.
#[derive(Debug, Error)]
pub enum Error {
    /// Raft machinery or storage failed.
    #[error(transparent)]
    Consensus(#[from] nokv_consensus::Error),
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Engine(#[from] rocksdb::Error),
    /// This member is not the leader; the caller should ask `leader_id`.
    #[error("not leader (leader hint: {leader_id})")]
    NotLeader {
        /// Known leader, 0 when none.
        leader_id: u64,
    },
    /// A replicated command did not complete.
    #[error("proposal failed: {0}")]
    Proposal(String),
    /// The configuration is invalid.
    #[error("invalid config: {0}")]
    Config(String),
    /// I/O failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The raft loop stopped.
    #[error("coordinator is shutting down")]
    Stopped,
    /// The raft loop stopped because it could not persist or apply what
    /// raft handed it (the cause is the source), or its thread panicked
    /// (the source is [`Error::Stopped`]). Serving on could answer from
    /// state that is not durable, so [`crate::run`] returns this and the
    /// process must stop: the `nokv-coordinator` binary exits with code 70
    /// (docs/deploy.md), and an operator looks at the disk before a
    /// restart.
    #[error("fatal: the coordinator raft loop stopped")]
    Fatal(#[source] Box<Error>),
}

impl From<nokv_consensus::ProposeError> for Error {
    fn from(e: nokv_consensus::ProposeError) -> Self {
        match e {
            nokv_consensus::ProposeError::NotLeader { leader_id } => Error::NotLeader { leader_id },
            other => Error::Proposal(other.to_string()),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// How an error from [`crate::run`] ends `nokv-coordinator` (docs/deploy.md:
/// a raft storage failure exits 70). Every variant is listed, so a new one
/// has to be placed here: [`Error::Fatal`] is the storage failure.
impl nokv_consensus::process::RunError for Error {
    fn is_storage_failure(&self) -> bool {
        match self {
            Error::Consensus(_)
            | Error::Engine(_)
            | Error::NotLeader { .. }
            | Error::Proposal(_)
            | Error::Config(_)
            | Error::Io(_)
            | Error::Stopped => false,
            Error::Fatal(_) => true,
        }
    }
}
