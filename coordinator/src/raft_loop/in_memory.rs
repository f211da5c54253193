//! An in-memory stand-in for the raft loop, for unit tests of leader-side
//! code (allocators, service handlers, scheduling) without a raft group.
//!
//! It leaves out everything raft does: there is no log, no election and no
//! replication, and nothing survives the test. A proposal is applied to the
//! [`ClusterState`] at once, on a thread of its own, with its write batch
//! written to a scratch RocksDB. The leadership is whatever the test sets
//! ([`InMemoryRaft::lead`], [`InMemoryRaft::follow`]); a new handle leads
//! term 1 and is ready. [`InMemoryRaft::refuse_proposals`] makes every
//! proposal fail, as a raft group that lost its quorum would.
//!
//! Dropping the stand-in stops its thread and waits for it, so the scratch
//! RocksDB is closed before the test's process exits: a DB closed on a
//! detached thread races RocksDB's own teardown at exit and can crash the
//! process after the test has passed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use nokv_consensus::peer::ProposeError;
use rocksdb::WriteBatch;

use nokv_proto::raft_serverpb::RaftMessage;

use super::{Leadership, LoopMsg, RaftHandle};
use crate::state::{ClusterState, CF_STATE};
use nokv_proto::poison::RwLockExt;

/// A [`RaftHandle`] served by the in-memory stand-in.
pub(crate) struct InMemoryRaft {
    /// The handle the code under test uses.
    pub(crate) handle: RaftHandle,
    refuse: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    apply: Option<JoinHandle<()>>,
}

impl InMemoryRaft {
    /// A stand-in that leads term 1, with an empty state machine.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let db = nokv_consensus::engine::open(dir.path(), &[CF_STATE]).expect("a scratch db");
        let (tx, rx) = sync_channel::<LoopMsg>(64);
        let state = Arc::new(RwLock::new(ClusterState::default()));
        let refuse = Arc::new(AtomicBool::new(false));
        let handle = RaftHandle {
            tx,
            state: state.clone(),
            leadership: Arc::new(RwLock::new(Leadership::default())),
            log_state: Arc::new(RwLock::new((0, 0))),
        };
        let refusing = refuse.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let apply = std::thread::spawn(move || {
            // Keeps the scratch directory until the thread ends.
            let _dir = dir;
            while let Ok(msg) = rx.recv() {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                let LoopMsg::Propose(cmd, cb) = msg else {
                    continue;
                };
                if refusing.load(Ordering::Acquire) {
                    cb(Err(ProposeError::Dropped("refused by the test".into())));
                    continue;
                }
                let mut wb = WriteBatch::default();
                let applied = state.write_unpoisoned().apply(&db, cmd, &mut wb);
                let result = applied
                    .and_then(|r| db.write(wb).map(|()| r).map_err(Into::into))
                    .map_err(|e| ProposeError::Dropped(e.to_string()));
                cb(result);
            }
        });
        let raft = InMemoryRaft {
            handle,
            refuse,
            stop,
            apply: Some(apply),
        };
        raft.lead(1);
        raft
    }

    /// Makes this member the ready leader of `term`.
    pub(crate) fn lead(&self, term: u64) {
        self.set(Leadership {
            leader_id: 1,
            term,
            ready_leader: true,
        });
    }

    /// Makes this member a follower of `leader_id` (0: no known leader).
    pub(crate) fn follow(&self, leader_id: u64) {
        let term = self.handle.leadership().term;
        self.set(Leadership {
            leader_id,
            term,
            ready_leader: false,
        });
    }

    /// While `refuse` is set, every proposal fails as dropped.
    pub(crate) fn refuse_proposals(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::Release);
    }

    fn set(&self, leadership: Leadership) {
        *self.handle.leadership.write_unpoisoned() = leadership;
    }
}

impl Drop for InMemoryRaft {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Any message wakes the thread; it sees the flag and ends.
        let _ = self.handle.tx.send(LoopMsg::Raft(RaftMessage::default()));
        if let Some(apply) = self.apply.take() {
            let _ = apply.join();
        }
    }
}
