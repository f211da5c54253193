//! Admin commands: what changes a region itself (range, epoch, membership,
//! frozen state, log), proposed by the leader and applied by every replica
//! on the raftstore thread.
//!
//! # Layout
//! - [`merge`]: PrepareMerge, CommitMerge and RollbackMerge: the commands
//!   and how they apply.
//! - `merge_driver`: the store pushing a merge from proposal to commit.
//! - `conf_change`: membership changes: validated, proposed, applied.
//! - `transfer_leader`: leader transfers.
//! - `compact_log`: raft log GC: proposed by leaders, applied by all.
//! - `split`: the regions a split makes, and applying it.

pub(crate) mod compact_log;
pub(crate) mod conf_change;
pub mod merge;
mod merge_driver;
pub(crate) mod split;
mod transfer_leader;
