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
    #[error("coordinator error ({kind}): {message}")]
    Coordinator {
        /// The `ErrorType` name.
        kind: String,
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
    /// A gRPC call failed with a status the client does not retry.
    #[error("rpc failed: {0}")]
    Rpc(#[from] tonic::Status),
    /// The endpoint string is not a valid address.
    #[error("invalid endpoint {0}")]
    InvalidEndpoint(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
