//! The NoKV Rust client SDK.
//!
//! # Layout
//! - [`coordinator`]: [`CoordinatorClient`], leader discovery and failover
//!   over the coordinator members, with typed header errors.
//! - [`region_cache`]: [`RegionCache`], key → region + leader, refreshed on
//!   region errors.
//! - [`raw`]: [`RawClient`], the raw KV API routed by region with retries
//!   under one overall deadline per call.
//! - [`txn`]: [`TxnClient`] and [`Transaction`], Percolator transactions
//!   with lock resolution, two-phase and one-phase commit.
//! - [`session`]: client sessions, so a retried raw write applies exactly
//!   once; [`RawOptions`].
//! - [`tso`]: [`TsoBatcher`], timestamps batched across callers.
//! - [`backoff`]: jittered exponential backoff.
//!
//! Against a cluster running with TLS, load a [`TlsConfig`] (the cluster's
//! CA, and a client certificate and key it signed) and hand it to the
//! coordinator client every other client is built on:
//! `RawClient::with_coordinator(CoordinatorClient::new(endpoints,
//! timeout)?.with_tls(TlsConfig::from_pem_files(ca, cert, key)?))`.
//! - [`error`]: the client's error type.
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
pub use error::{Error, Result};
pub use nokv_proto::tls::{TlsConfig, TlsError};
pub use raw::{RawClient, ScanOptions};
pub use region_cache::{RegionCache, RegionRoute};
pub use session::RawOptions;
pub use tso::TsoBatcher;
pub use txn::{CommittedPrimary, Prewrite, Prewritten, Transaction, TxnClient, TxnOptions};
