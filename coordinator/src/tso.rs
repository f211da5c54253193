//! The timestamp oracle. Timestamps are `physical_ms << 18 | logical` and
//! strictly increase across leaders: the leader persists (through raft) a
//! physical high-water mark a few seconds ahead of its clock and never
//! hands out a timestamp at or past it; a new leader starts above the
//! persisted mark (see [`crate::persisted_window`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nokv_proto::coordinatorpb::coordinator_command::Cmd;

use crate::persisted_window::PersistedWindow;
use crate::raft_loop::RaftHandle;
use crate::Result;

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;
/// Largest batch one request may take (all in one physical millisecond).
pub const MAX_BATCH: u32 = 1 << LOGICAL_BITS;

/// Composes a timestamp.
pub fn compose(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << LOGICAL_BITS) | logical
}

/// Splits a timestamp into (physical ms, logical).
pub fn split(ts: u64) -> (u64, u64) {
    (ts >> LOGICAL_BITS, ts & ((1 << LOGICAL_BITS) - 1))
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where the oracle stands inside its window: the physical millisecond of
/// the last batch and the first logical value not handed out in it.
#[derive(Default)]
struct Clock {
    physical: u64,
    logical: u64,
}

/// Leader-only timestamp allocation.
pub struct Tso {
    save_window_ms: u64,
    /// The persisted mark is a physical millisecond.
    window: PersistedWindow<Clock>,
}

impl Tso {
    /// Creates the oracle; it serves only while this member leads.
    pub fn new(raft: RaftHandle, save_window_ms: u64) -> Self {
        Tso {
            save_window_ms: save_window_ms.max(100),
            window: PersistedWindow::new(raft, |s| s.tso_high_ms, Cmd::RaiseTsoHigh),
        }
    }

    /// Hands out `count` consecutive timestamps sharing one physical
    /// millisecond; returns the first.
    ///
    /// # Errors
    /// `NotLeader` when this member does not lead (or has not caught up);
    /// `Proposal` when persisting a new high-water mark failed.
    pub async fn next(&self, count: u32) -> Result<u64> {
        let count = u64::from(count.clamp(1, MAX_BATCH));
        // Start above everything any earlier leader could have handed out;
        // a spent logical counter forces a fresh millisecond.
        let start = |persisted: u64, last: &Clock| Clock {
            physical: persisted.max(last.physical),
            logical: u64::from(MAX_BATCH),
        };
        let mut clock = self.window.lock(start).await?;
        let now = now_ms();
        let (physical, logical) = if now > clock.physical {
            (now, 0)
        } else if clock.logical + count <= u64::from(MAX_BATCH) {
            (clock.physical, clock.logical)
        } else {
            // The logical counter is spent for this millisecond: wait,
            // then move to a later millisecond. The physical part may
            // run ahead of the clock (after a failover it starts above
            // the persisted mark) but never past the persisted limit.
            drop(clock);
            tokio::time::sleep(Duration::from_millis(1)).await;
            clock = self.window.relock().await?;
            (now_ms().max(clock.physical + 1), 0)
        };
        if physical + self.save_window_ms / 3 >= clock.high() {
            let new_high = physical.max(clock.high()) + self.save_window_ms;
            clock.raise(new_high).await?;
        }
        clock.physical = physical;
        clock.logical = logical + count;
        Ok(compose(physical, logical))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_loop::in_memory::InMemoryRaft;
    use crate::Error;

    #[test]
    fn compose_orders_by_physical_then_logical() {
        assert!(compose(5, MAX_BATCH as u64 - 1) < compose(6, 0));
        assert_eq!(split(compose(123, 45)), (123, 45));
    }

    #[tokio::test]
    async fn timestamps_increase_and_stay_below_the_persisted_mark() {
        let raft = InMemoryRaft::new();
        let tso = Tso::new(raft.handle.clone(), 3000);
        let mut last = 0;
        for count in [1, 10, MAX_BATCH, 1, MAX_BATCH / 2, MAX_BATCH / 2 + 1] {
            let first = tso.next(count).await.expect("timestamps");
            assert!(first > last, "{first} after {last}");
            let (physical, logical) = split(first);
            assert!(logical + u64::from(count) <= u64::from(MAX_BATCH));
            assert!(physical < raft.handle.read_state(|s| s.tso_high_ms));
            last = first + u64::from(count) - 1;
        }
    }

    #[tokio::test]
    async fn a_new_leader_starts_above_the_persisted_mark() {
        let raft = InMemoryRaft::new();
        let old = Tso::new(raft.handle.clone(), 3000);
        let before = old.next(1).await.expect("timestamp");
        let mark = raft.handle.read_state(|s| s.tso_high_ms);
        assert!(split(before).0 < mark);
        raft.lead(2);
        let new = Tso::new(raft.handle.clone(), 3000);
        let after = new.next(1).await.expect("timestamp");
        assert!(split(after).0 >= mark, "starts at or above the old mark");
        raft.follow(0);
        assert!(matches!(
            new.next(1).await,
            Err(Error::NotLeader { leader_id: 0 })
        ));
    }

    #[tokio::test]
    async fn no_timestamp_without_a_persisted_mark() {
        let raft = InMemoryRaft::new();
        raft.refuse_proposals(true);
        let tso = Tso::new(raft.handle.clone(), 3000);
        assert!(matches!(tso.next(1).await, Err(Error::Proposal(_))));
        raft.refuse_proposals(false);
        assert!(tso.next(1).await.is_ok());
    }
}
