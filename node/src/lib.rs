//! The NoKV store node: many region replicas (multi-Raft) over one RocksDB,
//! serving the raw and transactional KV API, the per-store admin API and
//! raft traffic over gRPC.
//!
//! One write's path, hop by hop:
//! [`service::kv`] (decode, validate, stamp the session) →
//! [`raftstore::Router`] (the region's mailbox) → the raftstore loop
//! (admission, proposal batch, propose) → Ready (persist with one synced
//! write per round, send) → [`raftstore::apply`] (data, session table and
//! `ApplyState` in one batch) → callback → response.
//!
//! # Layout
//! Requests:
//! - [`service`]: the `Kv` and `Admin` gRPC services.
//! - [`server`]: wiring everything together; `run` is the process.
//!
//! Replicas:
//! - [`raftstore`]: every region replica, driven by one thread; its layout
//!   (router, loop, peer, apply, admin commands, snapshots) is in its docs.
//! - [`worker`]: background tasks (split check, GC, heartbeats) that reach
//!   the raftstore through its router.
//! - [`bootstrap`]: store identity, first-region bootstrap, recovery at
//!   start.
//!
//! Data:
//! - [`mvcc`]: Percolator transactions over the lock, write and default CFs.
//! - [`engine`]: the node's column families.
//! - [`keys`]: data key encodings (raw and memcomparable MVCC keys).
//! - [`raw_value`]: raw values with optional TTL.
//!
//! Shared by the above:
//! - [`region`]: epoch and key-range checks, typed region errors.
//! - [`config`]: the node's YAML configuration, limits and defaults.
//! - [`diagnostics`]: admission outcomes, topology transitions, restart posture.
//! - [`flow`]: bytes and keys each region's leader reads and writes, per heartbeat.
//! - [`metrics`]: node-specific metrics.
//! - [`error`]: the crate's error type.
#![deny(missing_docs)]

pub mod bootstrap;
pub mod config;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod flow;
pub mod keys;
pub mod metrics;
pub mod mvcc;
pub mod raftstore;
pub mod raw_value;
pub mod region;
pub mod server;
pub mod service;
pub mod worker;

pub use config::NodeConfig;
pub use error::{Error, Result};
pub use server::{run, run_with, NodeHooks, NodeStarted};
