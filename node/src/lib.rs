//! The NoKV store node: many region replicas (multi-Raft) over one RocksDB,
//! serving the raw and transactional KV API, the per-store admin API and
//! raft traffic over gRPC.
//!
//! One write's path, hop by hop:
//! [`service::kv`] (decode, validate) → [`raftstore::Router`] (region id
//! to the raftstore thread) → [`raftstore`] (epoch check, propose) →
//! Ready (persist with one synced write per round, send) →
//! [`apply`] (data plus `ApplyState` in one batch) → callback → response.
//!
//! # Layout
//! - [`config`]: the node's YAML configuration, limits and defaults.
//! - [`diagnostics`]: admission outcomes, topology transitions, restart posture.
//! - [`engine`]: the node's column families.
//! - [`keys`]: data key encodings (raw and memcomparable MVCC keys).
//! - [`raw_value`]: raw values with optional TTL.
//! - [`region`]: epoch and key-range checks, typed region errors.
//! - [`msg`]: messages into the raftstore thread.
//! - [`mvcc`]: Percolator transactions over the lock, write and default CFs.
//! - [`peer`]: one region replica: raft driver plus region and apply state.
//! - [`apply`]: applying committed commands to RocksDB.
//! - [`session`]: client-session tables, so a raw write applies exactly once.
//! - [`snapshot`]: building and installing region snapshots.
//! - [`split`]: where to split a region and what regions a split produces.
//! - [`split_check`]: automatic split of regions over the size thresholds.
//! - [`raftstore`]: the thread that drives every peer.
//! - [`batch`]: a region's writes of one raftstore round, proposed as one entry.
//! - [`bootstrap`]: store identity and first-region bootstrap.
//! - [`gc_worker`]: MVCC garbage collection below the coordinator's safe point.
//! - [`heartbeat`]: store and region heartbeats to the coordinator.
//! - [`flow`]: bytes and keys each region's leader reads and writes, per heartbeat.
//! - [`service`]: the `Kv` and `Admin` gRPC services.
//! - [`server`]: wiring everything together.
//! - [`metrics`]: node-specific metrics.
//! - [`error`]: the crate's error type.
#![deny(missing_docs)]

pub mod apply;
pub mod apply_pool;
pub mod batch;
pub mod bootstrap;
pub mod config;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod flow;
pub mod gc_worker;
pub mod heartbeat;
pub mod hibernate;
pub mod keys;
pub mod merge;
pub mod metrics;
pub mod msg;
pub mod mvcc;
pub mod peer;
pub mod raftstore;
pub mod raw_value;
pub mod region;
pub mod router;
pub mod server;
pub mod service;
pub mod session;
pub mod snapshot;
pub mod split;
pub mod split_check;

pub use config::NodeConfig;
pub use error::{Error, Result};
pub use server::{run, run_with, NodeHooks, NodeStarted};
