//! The NoKV coordinator: the cluster's control plane, replicated by one raft
//! group of 1, 3 or 5 members.
//!
//! # Layout
//! - [`config`]: the member's YAML configuration and its defaults.
//! - [`state`]: the replicated state machine (stores, regions, id and TSO
//!   high-water marks) and how each command applies to it.
//! - [`raft_loop`]: the thread that drives the raft group and applies.
//! - [`persisted_window`]: values the leader hands out below a high-water
//!   mark persisted through raft (shared by the TSO and the ID allocator).
//! - [`tso`]: the timestamp oracle (leader only).
//! - [`id_alloc`]: the ID allocator (leader only).
//! - [`cluster_view`]: what the leader learned from heartbeats (store
//!   liveness, region loads, range ages, gaps) and its operators.
//! - [`operator`]: operators in flight and their recent history.
//! - [`checker`]: the replica checker run on region heartbeats.
//! - [`balance`]: the balance schedulers, balance-leader and
//!   balance-region.
//! - [`merge_checker`]: merges small adjacent regions, aligning their
//!   replicas first.
//! - [`scheduling`]: the leader's scheduling: operators from the checkers,
//!   the balance schedulers and by hand, delivered on region heartbeats.
//! - [`invariant`]: live checks of what heartbeats claim (tiling, epochs,
//!   one replica per store).
//! - [`service`]: the `Coordinator` gRPC service, by area.
//! - [`server`]: wiring: open storage, start raft, serve gRPC and HTTP.
//! - [`metrics`]: coordinator-specific metrics.
//! - [`error`]: the crate's error type.
#![deny(missing_docs)]

pub mod balance;
pub mod checker;
pub mod cluster_view;
pub mod config;
pub mod error;
pub mod id_alloc;
pub mod invariant;
pub mod merge_checker;
pub mod metrics;
pub mod operator;
pub mod persisted_window;
pub mod raft_loop;
pub mod scheduling;
pub mod server;
pub mod service;
pub mod state;
pub mod tso;

pub use config::CoordinatorConfig;
pub use error::{Error, Result};
pub use server::run;
