//! The ID allocator for stores, regions and peers: one id space, handed out
//! by the leader from a window of ids reserved through raft (see
//! [`crate::persisted_window`]), so a failover may skip ids but never
//! repeats one.

use nokv_proto::coordinatorpb::coordinator_command::Cmd;

use crate::persisted_window::PersistedWindow;
use crate::raft_loop::RaftHandle;
use crate::Result;

/// The first id the allocator hands out (see [`IdAllocator::alloc`]).
pub const FIRST_ALLOCATED_ID: u64 = 2;

/// Leader-only ID allocation.
pub struct IdAllocator {
    /// Ids reserved per raise of the persisted mark.
    window_size: u64,
    /// The cursor is the next id to hand out.
    window: PersistedWindow<u64>,
}

impl IdAllocator {
    /// Creates the allocator with windows of `window_size` ids.
    pub fn new(raft: RaftHandle, window_size: u64) -> Self {
        IdAllocator {
            window_size: window_size.max(1),
            window: PersistedWindow::new(
                raft,
                |s| s.id_high.max(FIRST_ALLOCATED_ID),
                Cmd::RaiseIdHigh,
            ),
        }
    }

    /// Allocates `count` consecutive ids; returns the first. Ids start at 2:
    /// id 1 is reserved for the first region, which the bootstrapping
    /// store creates before it can talk to anyone.
    ///
    /// # Errors
    /// `NotLeader` when this member does not lead; `Proposal` when the new
    /// window could not be persisted.
    pub async fn alloc(&self, count: u32) -> Result<u64> {
        let count = u64::from(count.max(1));
        let mut next = self.window.lock(|persisted, _| persisted).await?;
        let first = *next;
        if first + count > next.high() {
            next.raise(first + count + self.window_size).await?;
        }
        *next = first + count;
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_loop::in_memory::InMemoryRaft;
    use crate::Error;

    #[tokio::test]
    async fn ids_start_at_two_and_follow_each_other() {
        let raft = InMemoryRaft::new();
        let ids = IdAllocator::new(raft.handle.clone(), 10);
        assert_eq!(ids.alloc(1).await.expect("id"), FIRST_ALLOCATED_ID);
        assert_eq!(ids.alloc(3).await.expect("ids"), 3);
        assert_eq!(ids.alloc(0).await.expect("one id"), 6);
        // The window of 10 past what was asked is persisted.
        assert_eq!(raft.handle.read_state(|s| s.id_high), 13);
        assert_eq!(ids.alloc(20).await.expect("ids"), 7);
        assert_eq!(raft.handle.read_state(|s| s.id_high), 37);
    }

    #[tokio::test]
    async fn a_new_leader_skips_the_old_window_and_never_repeats() {
        let raft = InMemoryRaft::new();
        let old = IdAllocator::new(raft.handle.clone(), 10);
        assert_eq!(old.alloc(1).await.expect("id"), 2);
        // Another member's allocator takes over in term 2.
        raft.lead(2);
        let new = IdAllocator::new(raft.handle.clone(), 10);
        assert_eq!(new.alloc(1).await.expect("id"), 13);
        raft.follow(0);
        assert!(matches!(
            new.alloc(1).await,
            Err(Error::NotLeader { leader_id: 0 })
        ));
    }

    #[tokio::test]
    async fn ids_are_not_handed_out_when_the_window_cannot_be_persisted() {
        let raft = InMemoryRaft::new();
        let ids = IdAllocator::new(raft.handle.clone(), 1);
        assert_eq!(ids.alloc(1).await.expect("id"), 2);
        raft.refuse_proposals(true);
        assert!(ids.alloc(5).await.is_err());
        raft.refuse_proposals(false);
        assert_eq!(ids.alloc(1).await.expect("id"), 4, "starts at the mark");
    }
}
