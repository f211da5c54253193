//! The NoKV Rust client SDK.
//!
//! # Layout
//! - [`coordinator`]: [`CoordinatorClient`], leader discovery and failover
//!   over the coordinator members, with typed header errors.
//! - [`region_cache`]: [`RegionCache`], key → region + leader, refreshed on
//!   region errors.
//! - [`raw`]: [`RawClient`], the raw KV API routed by region with retries
//!   under one overall deadline per call; the request path (`raw/retry.rs`),
//!   batches split by region (`raw/batch.rs`) and ranges walked region by
//!   region (`raw/range.rs`) that the transactional client shares.
//! - [`txn`]: [`TxnClient`] and [`Transaction`], Percolator transactions:
//!   the write buffer (`txn/transaction.rs`), snapshot reads
//!   (`txn/read.rs`), lock resolution (`txn/locks.rs`), two-phase and
//!   one-phase commit (`txn/commit.rs`).
//! - [`session`]: client sessions, so a retried raw write applies exactly
//!   once; [`RawOptions`].
//! - [`tso`]: [`TsoBatcher`], timestamps batched across callers.
//! - [`backoff`]: jittered exponential backoff.
//! - [`error`]: the client's error type; a store's transactional answer
//!   becomes an [`Error`] there, an abort with its typed [`AbortReason`].
//!
//! Against a cluster running with TLS, load a [`TlsConfig`] (the cluster's
//! CA, and a client certificate and key it signed) and hand it to the
//! coordinator client every other client is built on:
//! `RawClient::with_coordinator(CoordinatorClient::new(endpoints,
//! timeout)?.with_tls(TlsConfig::from_pem_files(ca, cert, key)?))`.
#![deny(missing_docs)]

pub mod backoff;
pub mod coordinator;
pub mod error;
pub mod raw;
pub mod region_cache;
pub mod session;
pub mod tso;
pub mod txn;

pub use coordinator::CoordinatorClient;
pub use error::{AbortReason, Error, Result, TxnAbort};
pub use nokv_proto::tls::{TlsConfig, TlsError};
pub use raw::{RawClient, ScanOptions};
pub use region_cache::{RegionCache, RegionRoute};
pub use session::RawOptions;
pub use tso::TsoBatcher;
pub use txn::{CommittedPrimary, Prewrite, Prewritten, Transaction, TxnClient, TxnOptions};
