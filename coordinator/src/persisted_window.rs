//! A window of values the leader may hand out, bounded by a high-water mark
//! persisted through raft: the one piece of code the ID allocator and the
//! TSO share.
//!
//! The leader never hands out a value at or past the mark it last
//! persisted (`id_high`, `tso_high_ms` in [`ClusterState`]). Before it
//! would, it raises the mark with a replicated command and waits until the
//! command applied. A new leader starts at the persisted mark, above
//! anything an earlier leader could have handed out, so a failover may
//! skip values but never repeats one.
//!
//! A window belongs to one leader term. In a term it has not served yet,
//! and after a raise that failed (it may or may not have applied), it is
//! set up again from the applied state before anything is handed out.
//! What moves inside the window (the next id, the last timestamp) is the
//! allocator's own *cursor*; this module keeps it under the same lock as
//! the mark and leaves its meaning to the allocator.

use std::ops::{Deref, DerefMut};

use nokv_proto::coordinatorpb::coordinator_command::Cmd;
use tokio::sync::{Mutex, MutexGuard};

use crate::raft_loop::RaftHandle;
use crate::state::ClusterState;
use crate::{Error, Result};

/// A high-water mark persisted through raft and the window of one leader
/// term below it.
pub struct PersistedWindow<C> {
    raft: RaftHandle,
    /// Reads the persisted mark from the applied state.
    persisted: fn(&ClusterState) -> u64,
    /// The command that raises the mark.
    raise: fn(u64) -> Cmd,
    window: Mutex<Window<C>>,
}

#[derive(Default)]
struct Window<C> {
    /// Term the window was set up in; 0 = never, or forgotten.
    term: u64,
    /// The persisted mark as this leader knows it: nothing at or past it
    /// may be handed out.
    high: u64,
    /// Where the allocator stands inside the window.
    cursor: C,
}

/// The window locked for one allocation; dereferences to the cursor.
pub struct HeldWindow<'a, C> {
    raft: &'a RaftHandle,
    raise: fn(u64) -> Cmd,
    window: MutexGuard<'a, Window<C>>,
}

impl<C: Default> PersistedWindow<C> {
    /// A window over the mark `persisted` reads, raised by the command
    /// `raise` builds. It serves only while this member is the ready
    /// leader.
    pub fn new(
        raft: RaftHandle,
        persisted: fn(&ClusterState) -> u64,
        raise: fn(u64) -> Cmd,
    ) -> Self {
        PersistedWindow {
            raft,
            persisted,
            raise,
            window: Mutex::new(Window::default()),
        }
    }

    /// Locks the window for one allocation. In a term the window has not
    /// served yet, the limit becomes the persisted mark and the cursor
    /// `start(persisted mark, previous cursor)`.
    ///
    /// # Errors
    /// `NotLeader` (with the known leader) when this member is not the
    /// ready leader.
    pub async fn lock(&self, start: impl FnOnce(u64, &C) -> C) -> Result<HeldWindow<'_, C>> {
        let mut window = self.window.lock().await;
        let lead = self.raft.leadership();
        if !lead.ready_leader {
            return Err(Error::NotLeader {
                leader_id: lead.leader_id,
            });
        }
        if window.term != lead.term {
            // Values below the persisted mark may have been handed out by
            // an earlier leader: start at it.
            let persisted = self.raft.read_state(self.persisted);
            window.cursor = start(persisted, &window.cursor);
            window.term = lead.term;
            window.high = persisted;
        }
        Ok(self.held(window))
    }

    /// Locks the window again after the caller let go of it to wait; the
    /// window must still be the one of the current term (leadership is not
    /// asked again: what the window holds stays below the persisted mark).
    ///
    /// # Errors
    /// `NotLeader` without a leader hint when the term changed or the
    /// window was forgotten meanwhile.
    pub async fn relock(&self) -> Result<HeldWindow<'_, C>> {
        let window = self.window.lock().await;
        if self.raft.leadership().term != window.term {
            return Err(Error::NotLeader { leader_id: 0 });
        }
        Ok(self.held(window))
    }

    fn held<'a>(&'a self, window: MutexGuard<'a, Window<C>>) -> HeldWindow<'a, C> {
        HeldWindow {
            raft: &self.raft,
            raise: self.raise,
            window,
        }
    }
}

impl<C> HeldWindow<'_, C> {
    /// The limit: nothing at or past it may be handed out.
    pub fn high(&self) -> u64 {
        self.window.high
    }

    /// Persists `new_high` as the mark and waits until it applied; values
    /// below it may be handed out from then on.
    ///
    /// # Errors
    /// The proposal's error (`NotLeader`, `Proposal`, `Stopped`). The
    /// window is then forgotten: whoever locks it next sets it up again
    /// from the applied state.
    pub async fn raise(&mut self, new_high: u64) -> Result<()> {
        if let Err(e) = self.raft.propose((self.raise)(new_high)).await {
            self.window.term = 0;
            return Err(e);
        }
        self.window.high = new_high;
        Ok(())
    }
}

impl<C> Deref for HeldWindow<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.window.cursor
    }
}

impl<C> DerefMut for HeldWindow<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.window.cursor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_loop::in_memory::InMemoryRaft;

    fn window(raft: &InMemoryRaft) -> PersistedWindow<u64> {
        PersistedWindow::new(raft.handle.clone(), |s| s.id_high, Cmd::RaiseIdHigh)
    }

    #[tokio::test]
    async fn a_raise_is_persisted_before_the_limit_moves() {
        let raft = InMemoryRaft::new();
        let w = window(&raft);
        let mut held = w.lock(|persisted, _| persisted).await.expect("leader");
        assert_eq!((*held, held.high()), (0, 0));
        held.raise(100).await.expect("raised");
        assert_eq!(held.high(), 100);
        assert_eq!(raft.handle.read_state(|s| s.id_high), 100);
        *held = 40;
        drop(held);
        // Same term: the window and its cursor carry on.
        let held = w
            .lock(|_, _| unreachable!("same term"))
            .await
            .expect("leader");
        assert_eq!((*held, held.high()), (40, 100));
    }

    #[tokio::test]
    async fn a_new_term_starts_at_the_persisted_mark() {
        let raft = InMemoryRaft::new();
        let w = window(&raft);
        let mut held = w.lock(|persisted, _| persisted).await.expect("leader");
        held.raise(100).await.expect("raised");
        *held = 40;
        drop(held);
        raft.lead(2);
        let held = w
            .lock(|persisted, previous| {
                assert_eq!((persisted, *previous), (100, 40));
                persisted
            })
            .await
            .expect("leader");
        assert_eq!((*held, held.high()), (100, 100));
    }

    #[tokio::test]
    async fn a_failed_raise_forgets_the_window() {
        let raft = InMemoryRaft::new();
        let w = window(&raft);
        let mut held = w.lock(|persisted, _| persisted).await.expect("leader");
        held.raise(100).await.expect("raised");
        raft.refuse_proposals(true);
        assert!(matches!(held.raise(200).await, Err(Error::Proposal(_))));
        assert_eq!(held.high(), 100, "the limit stays where it was persisted");
        drop(held);
        assert!(matches!(
            w.relock().await,
            Err(Error::NotLeader { leader_id: 0 })
        ));
        raft.refuse_proposals(false);
        // Same term, but the window is set up again from the applied state.
        let mut started = false;
        let held = w
            .lock(|persisted, _| {
                started = true;
                persisted
            })
            .await
            .expect("leader");
        assert!(started);
        assert_eq!(held.high(), 100);
    }

    #[tokio::test]
    async fn only_the_ready_leader_locks() {
        let raft = InMemoryRaft::new();
        let w = window(&raft);
        drop(w.lock(|p, _| p).await.expect("leader"));
        raft.follow(3);
        assert!(matches!(
            w.lock(|p, _| p).await,
            Err(Error::NotLeader { leader_id: 3 })
        ));
        // Relocking asks only that the term did not change: what the window
        // holds is still below the persisted mark.
        assert!(w.relock().await.is_ok());
        raft.lead(4);
        assert!(matches!(
            w.relock().await,
            Err(Error::NotLeader { leader_id: 0 })
        ));
    }
}
