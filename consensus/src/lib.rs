//! Raft machinery that the store node and the coordinator share.
//!
//! A raft group is driven in this order, each step owned by one module:
//! 1. **create**: open the group's [`RocksRaftLog`] (hard state and entries in
//!    the `raft` column family) and wrap it in a [`RaftPeer`];
//! 2. **tick**: [`RaftPeer::tick`] from a timer; it also retries ReadIndex
//!    requests that raft-rs dropped;
//! 3. **step / propose**: [`RaftPeer::step`] for messages from the
//!    [`transport`], [`RaftPeer::propose`] and [`RaftPeer::read_index`] for
//!    local requests, each with a completion callback;
//! 4. **Ready**: [`RaftPeer::collect_ready`] writes entries, hard state and
//!    snapshot metadata of every group with a Ready into one `WriteBatch`;
//!    the owner syncs that batch once per round (group commit);
//! 5. **send**: messages that may go before the sync are returned at once,
//!    the rest by [`RaftPeer::finish_ready`] after it;
//! 6. **apply**: the owner applies committed entries with its own state
//!    machine, writing data and apply state in one batch, handing each
//!    applied entry to [`RaftPeer::take_proposal`] so proposers get their
//!    answer;
//! 7. **advance**: [`RaftPeer::advance_apply`] releases ReadIndex waiters
//!    whose read index is now applied.
//!
//! # Layout
//! - [`engine`]: opening RocksDB with column families.
//! - [`keys`]: key layout of raft state in the `raft` column family.
//! - [`logging`]: raft-rs's log records bridged into `tracing`.
//! - [`storage`]: [`RocksRaftLog`], the `raft::Storage` over RocksDB.
//! - [`peer`]: [`RaftPeer`], the driver around `RawNode`.
//! - [`timing`]: [`RaftTiming`], tick length and election/heartbeat ticks,
//!   checked, with their defaults.
//! - [`transport`]: outgoing raft messages, one batching stream per store.
//! - [`snapshot_stream`]: snapshot files streamed in chunks with bounded memory.
//! - [`service`]: the `RaftTransport` gRPC service feeding a [`service::RaftMessageSink`].
//! - [`security`]: the `security` config section and the admin restriction.
//! - [`metrics`]: Prometheus metrics shared by every process.
//! - [`shutdown`]: graceful stop with a bounded drain.
//! - [`status`]: the HTTP status port (`/metrics`, `/health`, `/ready`, `/status`).
//! - [`process`]: the process kit of the two server binaries: shared flags,
//!   config loading, tracing, TLS listeners, exit codes.
//! - [`error`]: the crate's error type.
#![deny(missing_docs)]

mod dial;
pub mod engine;
pub mod error;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod peer;
pub mod process;
pub mod security;
pub mod service;
pub mod shutdown;
pub mod snapshot_stream;
pub mod status;
pub mod storage;
pub mod timing;
pub mod transport;

pub use error::{Error, RaftTimingError, Result};
pub use peer::{ProposeError, RaftPeer, RaftPeerConfig};
pub use storage::{RocksRaftLog, SnapshotSource};
pub use timing::RaftTiming;
pub use transport::{AddressResolver, FilterAction, MessageFilter, Transport, TransportOptions};
