//! The raftstore: every region replica of this store, driven by one thread.
//! Async code (the gRPC services and the workers) reaches it only through
//! the [`Router`].
//!
//! # Layout
//! - [`msg`]: the messages the raftstore takes (requests, raft traffic,
//!   answers of async tasks) and the callbacks that answer them.
//! - [`router`]: [`Router`], a bounded mailbox per region and the store
//!   inbox; the one door into the raftstore.
//! - `inbox`: draining the store inbox and the woken mailboxes, fairly.
//! - `store`: the loop: messages, ticks, ready rounds, sending.
//! - `admission`: whether a request may go on to raft, and proposing it.
//! - `raft_message`: stepping raft traffic from other stores.
//! - `lifecycle`: replicas created, told they were removed, destroyed.
//! - `coordinator`: region heartbeats and the orders their answers carry.
//! - `hibernate`: idle regions sleeping across the store; store pings.
//! - [`peer`]: one replica: its raft driver, region, apply state, proposal
//!   batch, hibernation state.
//! - [`apply`]: applying committed entries: one entry loop for data and
//!   admin entries, the apply pool, the apply state written in one place.
//! - [`admin`]: the admin commands (split, merge, membership, log
//!   compaction), what proposes them and what applies them.
//! - [`session`]: client-session tables, so a raw write applies exactly
//!   once (replicated state, applied with the data).
//! - [`snapshot`]: building and installing region snapshots.
#![allow(clippy::module_inception)]

pub mod admin;
mod admission;
pub mod apply;
mod coordinator;
mod hibernate;
mod inbox;
mod lifecycle;
pub mod msg;
pub mod peer;
mod raft_message;
pub mod router;
pub mod session;
pub mod snapshot;
mod store;

pub use router::Router;
pub use store::{spawn, RaftstoreParts, StoreCounters};
