//! Errors of the consensus crate.

use std::path::PathBuf;

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
    /// A server's configuration file could not be read.
    #[error("reading {}", path.display())]
    ReadConfig {
        /// The file named by `--config`.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// A server's configuration file is not valid for its config type (an
    /// unknown key, a value of the wrong type, bad YAML).
    #[error("parsing {}", path.display())]
    ParseConfig {
        /// The file named by `--config`.
        path: PathBuf,
        /// What the YAML parser found, with its line and column.
        source: serde_yaml::Error,
    },
    /// The gRPC server refused the loaded TLS material.
    #[error("security: {0}")]
    ServerTls(tonic::transport::Error),
    /// The gRPC server failed while serving.
    #[error("serving gRPC: {0}")]
    Serve(tonic::transport::Error),
    /// The async runtime of a server process could not be started.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Why raft timing values were refused ([`crate::RaftTiming::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RaftTimingError {
    /// A tick of zero milliseconds: nothing would ever time out.
    #[error("tick must be > 0 and election_ticks > heartbeat_ticks (tick_interval_ms is 0)")]
    ZeroTick,
    /// An election timeout not longer than the heartbeat interval: followers
    /// would start elections against a healthy leader.
    #[error(
        "tick must be > 0 and election_ticks > heartbeat_ticks \
         (election_ticks {election_ticks}, heartbeat_ticks {heartbeat_ticks})"
    )]
    ElectionNotAboveHeartbeat {
        /// The configured election ticks.
        election_ticks: usize,
        /// The configured heartbeat ticks.
        heartbeat_ticks: usize,
    },
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
