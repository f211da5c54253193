//! The ID allocator for stores, regions and peers. The leader reserves a
//! window of ids by persisting a raised high-water mark through raft before
//! handing any of them out, so a failover may skip ids but never repeats one.

use nokv_proto::coordinatorpb::{coordinator_command::Cmd, CoordinatorCommand};
use tokio::sync::Mutex;

use crate::raft_loop::RaftHandle;
use crate::{Error, Result};

/// The first id the allocator hands out (see [`IdAllocator::alloc`]).
pub const FIRST_ALLOCATED_ID: u64 = 2;

#[derive(Default)]
struct Window {
    term: u64,
    next: u64,
    high: u64,
}

/// Leader-only ID allocation.
pub struct IdAllocator {
    raft: RaftHandle,
    window_size: u64,
    window: Mutex<Window>,
}

impl IdAllocator {
    /// Creates the allocator with windows of `window_size` ids.
    pub fn new(raft: RaftHandle, window_size: u64) -> Self {
        IdAllocator {
            raft,
            window_size: window_size.max(1),
            window: Mutex::new(Window::default()),
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
        let mut w = self.window.lock().await;
        let lead = self.raft.leadership();
        if !lead.ready_leader {
            return Err(Error::NotLeader {
                leader_id: lead.leader_id,
            });
        }
        if w.term != lead.term {
            // Ids below the persisted mark may have been handed out by an
            // earlier leader: start above it.
            let persisted = self.raft.read_state(|s| s.id_high).max(FIRST_ALLOCATED_ID);
            w.term = lead.term;
            w.next = persisted;
            w.high = persisted;
        }
        if w.next + count > w.high {
            let new_high = w.next + count + self.window_size;
            let res = self
                .raft
                .propose(CoordinatorCommand {
                    cmd: Some(Cmd::RaiseIdHigh(new_high)),
                })
                .await;
            if let Err(e) = res {
                w.term = 0;
                return Err(e);
            }
            w.high = new_high;
        }
        let first = w.next;
        w.next += count;
        Ok(first)
    }
}
