//! Percolator MVCC over the `default`, `lock` and `write` column families.
//!
//! Layout (see docs/architecture.md):
//! - `lock`:    `enc(key)` → [`Lock`] (one per key while a transaction holds it);
//! - `write`:   `enc(key) ++ !commit_ts` → [`Write`] (short values inline);
//! - `default`: `enc(key) ++ !start_ts` → value (values too long to inline).
//!
//! Timestamps are stored inverted so the newest version of a key sorts
//! first. Every transactional write command is evaluated against the
//! region's applied state *at apply time* (see [`crate::raftstore::apply`]): the raft
//! log orders commands on the same key, so every replica computes the same
//! result without leader-side latches. Reads run after a ReadIndex against a
//! RocksDB snapshot.
//!
//! - [`key`]: key and timestamp encoding.
//! - [`lock`], [`write`]: the stored records; `record` the byte layout
//!   they share.
//! - [`reader`]: point reads, version lookups and scans.
//! - [`txn`]: the buffered modifications of one command.
//! - [`actions`]: prewrite, commit, rollback, check-txn-status and friends.
//! - [`commands`]: whole requests (many keys) on top of the actions.
//! - [`memory_lock`]: keys of in-flight one-phase commits that readers must
//!   wait for.
//! - [`gc`]: dropping versions below the GC safe point.
//!
//! `tinykv_tests` ports the TinyKV project-4 test cases by name;
//! `retry_tests` checks that every transactional command applied a second
//! time (a client retry whose first copy also applied) changes nothing.

pub mod actions;
pub mod commands;
pub mod error;
#[cfg(test)]
pub mod fixture;
pub mod gc;
pub mod key;
pub mod lock;
pub mod memory_lock;
pub mod reader;
mod record;
#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod tinykv_tests;
pub mod txn;
pub mod write;

pub use error::{MvccError, MvccResult};
pub use lock::{Lock, LockKind};
pub use reader::MvccReader;
pub use txn::{Modify, MvccTxn};
pub use write::{Write, WriteKind};

/// Bits of a timestamp below its physical milliseconds.
pub const TSO_LOGICAL_BITS: u32 = 18;

/// The physical milliseconds of a TSO timestamp.
pub fn physical_ms(ts: u64) -> u64 {
    ts >> TSO_LOGICAL_BITS
}

/// A TSO timestamp from physical milliseconds and a logical counter.
pub fn compose_ts(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << TSO_LOGICAL_BITS) | logical
}

/// Values up to this size live inside the lock and write records instead
/// of the `default` column family.
pub const SHORT_VALUE_MAX: usize = 255;
