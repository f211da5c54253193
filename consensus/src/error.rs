//! Errors of the consensus crate.

use thiserror::Error;

/// What can go wrong below a raft group. Storage errors make the group
/// inoperable; the owner decides whether to stop the process.
#[derive(Debug, Error)]
pub enum Error {
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Engine(#[from] rocksdb::Error),
    /// raft-rs refused or failed an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// Persisted bytes did not decode; the data directory is damaged.
    #[error("corrupted {what}: {detail}")]
    Corrupted {
        /// Which record.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// A column family the caller asked for does not exist.
    #[error("column family {0} not found")]
    MissingColumnFamily(String),
    /// TLS material (the `security` section) could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] nokv_proto::tls::TlsError),
    /// Any other I/O failure (binding a port, creating a directory).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Corrupted {
            what: "protobuf record",
            detail: e.to_string(),
        }
    }
}

impl From<Error> for raft::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Raft(r) => r,
            other => raft::Error::Store(raft::StorageError::Other(Box::new(other))),
        }
    }
}
