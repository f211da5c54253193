//! Background workers of a store: async tasks that watch the raftstore and
//! ask it for work through the [`crate::raftstore::Router`].
//!
//! # Layout
//! - [`split_check`]: automatic split of regions over the size thresholds.
//! - [`region_size`]: how big a region is and where its middle lies.
//! - [`split`]: the driver that asks the coordinator for ids and proposes
//!   a split.
//! - [`gc`]: MVCC garbage collection below the coordinator's safe point.
//! - [`heartbeat`]: store and region heartbeats to the coordinator.

pub mod gc;
pub mod heartbeat;
pub mod region_size;
pub mod split;
pub mod split_check;
