//! How the raftstore takes messages in: the store inbox, then every region
//! whose mailbox woke, each drained up to a budget so one busy region
//! cannot crowd out the others within a round.

use std::sync::atomic::Ordering;

use crate::raftstore::msg::StoreMsg;
use crate::raftstore::store::Raftstore;

/// Most store-inbox messages handled per round before persisting, so a
/// flood of requests cannot starve Ready handling.
const MAX_STORE_MSGS_PER_ROUND: usize = 4096;

/// Most messages taken from one region's mailbox per round; a region with
/// more is queued again behind the others.
const MAX_REGION_MSGS_PER_ROUND: usize = 256;

impl Raftstore {
    /// Takes in what arrived since the last round.
    pub(in crate::raftstore) fn drain_inbox(&mut self) {
        for m in std::mem::take(&mut self.requeued) {
            self.handle(m);
        }
        for _ in 0..MAX_STORE_MSGS_PER_ROUND {
            match self.inbox.store.try_recv() {
                Ok(m) => self.handle_from_store(m),
                Err(_) => break,
            }
        }
        let woken: Vec<u64> = self.inbox.wake.try_iter().collect();
        for id in woken {
            self.drain_mailbox(id);
        }
    }

    /// Handles a message that came through the store inbox; a region that
    /// exists after it gets a mailbox for its next messages.
    pub(in crate::raftstore) fn handle_from_store(&mut self, m: StoreMsg) {
        let region = m.region_id();
        self.handle(m);
        if let Some(id) = region {
            if self.peers.contains_key(&id) && !self.mailboxes.contains_key(&id) {
                self.open_mailbox(id);
            }
        }
    }

    /// Gives region `id` its own mailbox.
    pub(in crate::raftstore) fn open_mailbox(&mut self, id: u64) {
        if let Some(rx) = self.self_router.register(id) {
            self.mailboxes.insert(id, rx);
        }
    }

    /// Handles up to a budget of region `id`'s mailbox.
    pub(in crate::raftstore) fn drain_mailbox(&mut self, id: u64) {
        let Some(mailbox) = self.mailboxes.get(&id) else {
            // Closed since it woke; what it held was requeued.
            return;
        };
        // Cleared before draining: a message sent from here on wakes the
        // region again, so none is left behind unseen.
        mailbox.scheduled.store(false, Ordering::Release);
        let msgs: Vec<StoreMsg> = mailbox
            .rx
            .try_iter()
            .take(MAX_REGION_MSGS_PER_ROUND)
            .collect();
        if !mailbox.rx.is_empty() && !mailbox.scheduled.swap(true, Ordering::AcqRel) {
            self.self_router.reschedule(id);
        }
        for m in msgs {
            self.handle(m);
        }
    }

    /// Closes region `id`'s mailbox when its replica goes away; what was
    /// queued is handled next round like any message for a missing region.
    pub(in crate::raftstore) fn close_mailbox(&mut self, id: u64) {
        self.self_router.unregister(id);
        if let Some(mailbox) = self.mailboxes.remove(&id) {
            self.requeued.extend(mailbox.rx.try_iter());
        }
    }
}
