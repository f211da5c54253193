//! Hibernation: an idle region stops ticking, so it sends no raft
//! heartbeats and costs no CPU.
//!
//! - An awake leader counts idle ticks: nothing to propose, read, apply or
//!   replicate, every peer's log equal to its own. After
//!   `hibernate_after_ticks` it asks each follower to sleep (a
//!   `HibernateRequest` naming its last index and term) and sleeps itself
//!   once all of them acknowledged.
//! - A follower sleeps on a request from its current leader when its log is
//!   exactly the leader's and fully committed, and acknowledges.
//! - Any raft message other than a heartbeat (or its response), any
//!   proposal, read or admin request wakes a sleeping peer. A leader that
//!   wakes resumes ticking and its heartbeats and appends reach the
//!   followers.
//! - A sleeping follower does not notice a dead leader through raft, so
//!   stores ping each other; a follower whose leader's store went silent for
//!   an election timeout wakes up and, ticking again, campaigns.

use std::collections::HashSet;

/// Hibernation bookkeeping of one replica.
#[derive(Debug, Default)]
pub struct Hibernation {
    /// Not ticking.
    pub asleep: bool,
    /// Consecutive idle ticks while awake (leaders).
    pub idle_ticks: u64,
    /// Followers that acknowledged the current request (leaders).
    pub acks: HashSet<u64>,
    /// Term and index the acknowledgements are for.
    pub acked_at: (u64, u64),
}

impl Hibernation {
    /// Wakes up (or stays awake), forgetting idleness and acknowledgements.
    pub fn wake(&mut self) {
        self.asleep = false;
        self.idle_ticks = 0;
        self.acks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waking_forgets_idleness_and_acknowledgements() {
        let mut h = Hibernation {
            asleep: true,
            idle_ticks: 7,
            ..Default::default()
        };
        h.acks.insert(3);
        h.wake();
        assert!(!h.asleep && h.idle_ticks == 0 && h.acks.is_empty());
    }
}
