//! Admin commands: what changes a region itself (range, epoch, membership,
//! frozen state, log), proposed by the leader and applied by every replica
//! on the raftstore thread.
//!
//! # Layout
//! - [`merge`]: PrepareMerge, CommitMerge and RollbackMerge: the commands
//!   and how they apply.
//! - `merge_driver`: the store pushing a merge from proposal to commit.
//! - `conf_change`: membership changes, validated and proposed.
//! - `transfer_leader`: leader transfers.
//! - `compact_log`: raft log GC proposals.

mod compact_log;
mod conf_change;
pub mod merge;
mod merge_driver;
mod transfer_leader;
