//! How requests and raft messages reach the raftstore. Every region
//! replica has its own bounded mailbox, so a flood of requests to one
//! region fills that region's mailbox (and is refused with
//! `ServerIsBusy`) while every other region keeps being served. The
//! raftstore is woken with the id of a region whose mailbox went from idle
//! to non-empty, and drains mailboxes round-robin with a budget per region.
//! Messages for a region without a mailbox (not created here yet, or
//! store-wide requests) go to the store's own inbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nokv_consensus::service::RaftMessageSink;
use nokv_proto::errorpb::RegionError;
use nokv_proto::raft_serverpb::RaftMessage;

use crate::raftstore::msg::StoreMsg;
use nokv_proto::poison::RwLockExt;

/// The raftstore did not take a message; the error says why, for the
/// caller to answer with.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterBusy(pub RegionError);

/// The sending side of one region's mailbox.
struct Mailbox {
    tx: Sender<StoreMsg>,
    /// Set while the region is queued for the raftstore to drain.
    scheduled: Arc<AtomicBool>,
}

/// The raftstore's side of one region's mailbox.
pub(crate) struct MailboxReceiver {
    pub(crate) rx: Receiver<StoreMsg>,
    pub(crate) scheduled: Arc<AtomicBool>,
}

/// Sends requests to the raftstore thread. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    store: Sender<StoreMsg>,
    mailboxes: Arc<RwLock<HashMap<u64, Mailbox>>>,
    /// Regions whose mailbox has messages, in the order they got them.
    wake: Sender<u64>,
    mailbox_capacity: usize,
    /// Set when the raftstore thread has exited.
    pub(crate) stopped: Arc<AtomicBool>,
}

/// What the raftstore reads from.
pub(crate) struct RouterInbox {
    pub(crate) store: Receiver<StoreMsg>,
    pub(crate) wake: Receiver<u64>,
}

impl Router {
    /// A router whose store inbox holds `store_capacity` messages and each
    /// region mailbox `mailbox_capacity`.
    pub(crate) fn new(store_capacity: usize, mailbox_capacity: usize) -> (Router, RouterInbox) {
        let (store, store_rx) = crossbeam_channel::bounded(store_capacity.max(16));
        // Unbounded, but holds each region at most once at a time.
        let (wake, wake_rx) = crossbeam_channel::unbounded();
        let router = Router {
            store,
            mailboxes: Arc::new(RwLock::new(HashMap::new())),
            wake,
            mailbox_capacity: mailbox_capacity.max(16),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let inbox = RouterInbox {
            store: store_rx,
            wake: wake_rx,
        };
        (router, inbox)
    }

    /// Queues `msg` in its region's mailbox, or the store inbox. When that
    /// is full (or the raftstore stopped) the message is dropped unanswered
    /// and the caller answers with the error.
    pub fn send(&self, msg: StoreMsg) -> std::result::Result<(), RouterBusy> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(RouterBusy(crate::region::server_is_busy(
                "the store is stopping",
            )));
        }
        let mailboxes = self.mailboxes.read_unpoisoned();
        let Some((region_id, mailbox)) = msg
            .region_id()
            .and_then(|id| Some((id, mailboxes.get(&id)?)))
        else {
            drop(mailboxes);
            return match self.store.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(RouterBusy(crate::region::server_is_busy(
                    "raftstore inbox is full",
                ))),
                Err(TrySendError::Disconnected(_)) => Err(RouterBusy(
                    crate::region::server_is_busy("the store is stopping"),
                )),
            };
        };
        match mailbox.tx.try_send(msg) {
            Ok(()) => {
                if !mailbox.scheduled.swap(true, Ordering::AcqRel) {
                    let _ = self.wake.send(region_id);
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(RouterBusy(crate::region::server_is_busy(&format!(
                "region {region_id}'s mailbox is full"
            )))),
            Err(TrySendError::Disconnected(_)) => Err(RouterBusy(crate::region::server_is_busy(
                "the store is stopping",
            ))),
        }
    }

    /// Gives region `region_id` a mailbox; the raftstore keeps the other
    /// end. Returns `None` if it has one already.
    pub(crate) fn register(&self, region_id: u64) -> Option<MailboxReceiver> {
        let mut mailboxes = self.mailboxes.write_unpoisoned();
        if mailboxes.contains_key(&region_id) {
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded(self.mailbox_capacity);
        let scheduled = Arc::new(AtomicBool::new(false));
        mailboxes.insert(
            region_id,
            Mailbox {
                tx,
                scheduled: scheduled.clone(),
            },
        );
        Some(MailboxReceiver { rx, scheduled })
    }

    /// Removes region `region_id`'s mailbox: later messages go to the store
    /// inbox. What was queued stays with the receiver.
    pub(crate) fn unregister(&self, region_id: u64) {
        self.mailboxes.write_unpoisoned().remove(&region_id);
    }

    /// Queues region `region_id` to be drained again (its budget ran out
    /// with messages left).
    pub(crate) fn reschedule(&self, region_id: u64) {
        let _ = self.wake.send(region_id);
    }

    /// Replicates `cmd` and waits up to `wait` for its apply result. The
    /// typed region errors cover every way it can fail: a full mailbox or
    /// inbox is `ServerIsBusy`, a dropped callback `RegionNotFound`, the
    /// deadline `Timeout`, and errors found at apply come from the response
    /// header.
    pub async fn command(
        &self,
        cmd: nokv_proto::raft_cmdpb::RaftCmdRequest,
        wait: Duration,
    ) -> std::result::Result<nokv_proto::raft_cmdpb::RaftCmdResponse, RegionError> {
        let region_id = cmd.header.as_ref().map_or(0, |h| h.region_id);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = StoreMsg::Command {
            cmd,
            cb: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        self.send(msg).map_err(|b| b.0)?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r.and_then(crate::raftstore::msg::command_result),
            Ok(Err(_)) => Err(crate::region::region_not_found(region_id)),
            Err(_) => Err(crate::region::timeout(region_id)),
        }
    }
}

impl RaftMessageSink for Router {
    fn deliver(&self, msg: RaftMessage) {
        if self.send(StoreMsg::Raft(msg)).is_err() {
            nokv_consensus::metrics::RAFT_MESSAGES
                .with_label_values(&["inbox_full"])
                .inc();
        }
    }

    fn closed(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::errorpb::region_error::Kind;
    use nokv_proto::raft_cmdpb::{RaftCmdRequest, RaftRequestHeader};

    fn command(region_id: u64) -> StoreMsg {
        StoreMsg::Command {
            cmd: RaftCmdRequest {
                header: Some(RaftRequestHeader {
                    region_id,
                    ..Default::default()
                }),
                ..Default::default()
            },
            cb: Box::new(|_| {}),
        }
    }

    fn busy_reason(r: std::result::Result<(), RouterBusy>) -> String {
        match r {
            Err(RouterBusy(RegionError {
                kind: Some(Kind::ServerIsBusy(b)),
                ..
            })) => b.reason,
            other => panic!("not busy: {other:?}"),
        }
    }

    #[test]
    fn a_full_region_mailbox_refuses_only_that_region() {
        let (router, inbox) = Router::new(16, 16);
        let one = router.register(1).expect("new mailbox");
        assert!(router.register(1).is_none(), "one mailbox per region");
        for _ in 0..16 {
            router.send(command(1)).expect("room in region 1's mailbox");
        }
        let reason = busy_reason(router.send(command(1)));
        assert!(reason.contains("region 1"), "{reason}");
        // Region 2 has no mailbox yet: the store inbox takes it.
        router.send(command(2)).expect("region 2 unaffected");
        assert_eq!(inbox.store.len(), 1);
        // Region 1 was queued for draining once, not once per message.
        assert_eq!(inbox.wake.try_iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(one.rx.len(), 16);

        // Draining clears the flag first; the next message wakes it again.
        one.scheduled.store(false, Ordering::Release);
        while one.rx.try_recv().is_ok() {}
        router.send(command(1)).expect("room again");
        assert_eq!(inbox.wake.try_iter().collect::<Vec<_>>(), vec![1]);

        // Once unregistered, the region's messages go to the store inbox.
        router.unregister(1);
        router.send(command(1)).expect("store inbox");
        assert_eq!(inbox.store.len(), 2);
        assert_eq!(one.rx.len(), 1, "what was queued stays with the receiver");
    }

    #[test]
    fn a_stopped_store_refuses_everything() {
        let (router, _inbox) = Router::new(16, 16);
        router.stopped.store(true, Ordering::Release);
        let reason = busy_reason(router.send(command(1)));
        assert!(reason.contains("stopping"), "{reason}");
    }
}
