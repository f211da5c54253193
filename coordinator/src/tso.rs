//! The timestamp oracle. Timestamps are `physical_ms << 18 | logical` and
//! strictly increase across leaders: the leader persists (through raft) a
//! physical high-water mark a few seconds ahead of its clock and never
//! hands out a timestamp at or past it; a new leader starts above the
//! persisted mark.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nokv_proto::coordinatorpb::{coordinator_command::Cmd, CoordinatorCommand};
use tokio::sync::Mutex;

use crate::raft_loop::RaftHandle;
use crate::{Error, Result};

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

#[derive(Default)]
struct Window {
    /// Term this window was set up in; 0 = never.
    term: u64,
    physical: u64,
    logical: u64,
    /// Persisted limit: physical must stay below it.
    high_ms: u64,
}

/// Leader-only timestamp allocation.
pub struct Tso {
    raft: RaftHandle,
    save_window_ms: u64,
    window: Mutex<Window>,
}

impl Tso {
    /// Creates the oracle; it serves only while this member leads.
    pub fn new(raft: RaftHandle, save_window_ms: u64) -> Self {
        Tso {
            raft,
            save_window_ms: save_window_ms.max(100),
            window: Mutex::new(Window::default()),
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
        let mut w = self.window.lock().await;
        let lead = self.raft.leadership();
        if !lead.ready_leader {
            return Err(Error::NotLeader {
                leader_id: lead.leader_id,
            });
        }
        if w.term != lead.term {
            // Start above everything any earlier leader could have handed
            // out, then persist a new limit before serving.
            let persisted = self.raft.read_state(|s| s.tso_high_ms);
            w.term = lead.term;
            w.physical = persisted.max(w.physical);
            w.logical = MAX_BATCH as u64; // force a fresh millisecond
            w.high_ms = persisted;
        }
        let now = now_ms();
        let (physical, logical) = if now > w.physical {
            (now, 0)
        } else if w.logical + count <= MAX_BATCH as u64 {
            (w.physical, w.logical)
        } else {
            // The logical counter is spent for this millisecond: wait,
            // then move to a later millisecond. The physical part may
            // run ahead of the clock (after a failover it starts above
            // the persisted mark) but never past the persisted limit.
            drop(w);
            tokio::time::sleep(Duration::from_millis(1)).await;
            w = self.window.lock().await;
            if self.raft.leadership().term != w.term {
                return Err(Error::NotLeader { leader_id: 0 });
            }
            (now_ms().max(w.physical + 1), 0)
        };
        if physical + self.save_window_ms / 3 >= w.high_ms {
            let new_high = physical.max(w.high_ms) + self.save_window_ms;
            let res = self
                .raft
                .propose(CoordinatorCommand {
                    cmd: Some(Cmd::RaiseTsoHigh(new_high)),
                })
                .await;
            if let Err(e) = res {
                // Forget the window: whoever serves next must re-read
                // the persisted mark.
                w.term = 0;
                return Err(e);
            }
            w.high_ms = new_high;
        }
        w.physical = physical;
        w.logical = logical + count;
        Ok(compose(physical, logical))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_orders_by_physical_then_logical() {
        assert!(compose(5, MAX_BATCH as u64 - 1) < compose(6, 0));
        assert_eq!(split(compose(123, 45)), (123, 45));
    }
}
