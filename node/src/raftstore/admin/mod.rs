//! Admin commands: what changes a region itself (range, epoch, membership,
//! frozen state, log), proposed by the leader and applied by every replica
//! on the raftstore thread.
//!
//! # Layout
//! - [`merge`]: PrepareMerge, CommitMerge and RollbackMerge.

pub mod merge;
