//! The apply pool: threads that write committed data entries into RocksDB
//! off the raftstore thread. The raftstore persists raft state for every
//! region in one synced batch per round; applying the data is the other
//! half of the work, and doing it here lets the next round's Readies be
//! collected, persisted and replicated while this round's entries apply.
//!
//! Only data entries come here. Admin entries (splits, merges, membership
//! changes, log compaction) change the region itself, so the raftstore
//! applies them on its own thread once nothing of that region is in
//! flight. While a batch of data entries applies, the region it was
//! handed with is therefore the region it is applied against.
//!
//! A region always goes to the same thread, so its batches apply in the
//! order they were committed. Each batch is one RocksDB write carrying the
//! data and the new apply state, and its proposers are answered only after
//! that write.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use nokv_consensus::metrics::{RAFT_APPLIED_ENTRIES, RAFT_APPLY_SECONDS};
use nokv_consensus::peer::ProposalCallback;
use nokv_proto::metapb::Region;
use nokv_proto::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use nokv_proto::raft_serverpb::ApplyState;
use prost::Message as _;
use raft::prelude::Entry;
use rocksdb::{WriteBatch, DB};
use tracing::error;

use crate::apply::{apply_data, write_apply_state, DataOutcome, DataScope};
use crate::Result;

/// Committed data entries of one region, handed to the pool.
pub struct ApplyTask {
    /// The region as the raftstore holds it; no admin entry applies while
    /// this task is in flight, so it stays right for every entry here.
    pub region: Region,
    /// The region is frozen by a merge: data commands fail.
    pub frozen: bool,
    /// The raft term reported in responses.
    pub term: u64,
    /// The apply state as of the entry before the first one here.
    pub apply_state: ApplyState,
    /// The entries, in log order, all data (or empty) entries.
    pub entries: Vec<Entry>,
    /// Proposers on this replica to answer, by entry index.
    pub callbacks: Vec<(u64, ProposalCallback<RaftCmdResponse>)>,
}

/// What one task did, sent back to the raftstore.
pub struct ApplyResult {
    /// The region the task belonged to.
    pub region_id: u64,
    /// The apply state now durable (in RocksDB's WAL order) with the data.
    pub apply_state: ApplyState,
    /// Bytes and keys written, and whether any data was.
    pub outcome: DataOutcome,
    /// Entries the task held.
    pub entries: usize,
    /// A storage or decoding failure: the raftstore stops the process, as
    /// it does for any failure to keep its own state.
    pub error: Option<crate::Error>,
}

/// An apply thread is gone, so the task was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyPoolStopped;

/// The apply threads.
pub struct ApplyPool {
    workers: Vec<Sender<ApplyTask>>,
    joins: Vec<JoinHandle<()>>,
}

impl ApplyPool {
    /// Starts `threads` (at least one) apply threads writing into `db`;
    /// each finished task is reported on `results`.
    pub fn spawn(db: Arc<DB>, threads: usize, results: Sender<ApplyResult>) -> Result<ApplyPool> {
        let mut workers = Vec::new();
        let mut joins = Vec::new();
        for i in 0..threads.max(1) {
            // Unbounded: the raftstore bounds what is in flight by refusing
            // new writes (ServerIsBusy) when the apply queue is long.
            let (tx, rx) = crossbeam_channel::unbounded();
            let (db, results) = (db.clone(), results.clone());
            let join = std::thread::Builder::new()
                .name(format!("apply-{i}"))
                .spawn(move || run(&db, rx, results))?;
            workers.push(tx);
            joins.push(join);
        }
        Ok(ApplyPool { workers, joins })
    }

    /// Queues `task` on its region's thread. Fails only if that thread
    /// is gone (it exits when the pool shuts down, or by a panic).
    pub fn send(
        &self,
        region_id: u64,
        task: ApplyTask,
    ) -> std::result::Result<(), ApplyPoolStopped> {
        let worker = &self.workers[(region_id % self.workers.len() as u64) as usize];
        worker.send(task).map_err(|_| ApplyPoolStopped)
    }

    /// Lets every thread finish what it was given, then joins them, so no
    /// write into the database happens after this returns.
    pub fn shutdown(self) {
        drop(self.workers);
        for j in self.joins {
            let _ = j.join();
        }
    }
}

fn run(db: &DB, tasks: Receiver<ApplyTask>, results: Sender<ApplyResult>) {
    for task in tasks {
        let region_id = task.region.id;
        let entries = task.entries.len();
        let mut apply_state = task.apply_state;
        let mut outcome = DataOutcome::default();
        let start = std::time::Instant::now();
        let error = apply_task(db, task, &mut apply_state, &mut outcome).err();
        RAFT_APPLY_SECONDS.observe(start.elapsed().as_secs_f64());
        crate::metrics::APPLY_BATCH_ENTRIES.observe(entries as f64);
        if let Some(e) = &error {
            error!(region_id, error = %e, "applying committed entries failed");
        }
        let result = ApplyResult {
            region_id,
            apply_state,
            outcome,
            entries,
            error,
        };
        if results.send(result).is_err() {
            // The raftstore is gone; nobody waits for applies any more.
            return;
        }
    }
}

/// Applies the task's entries in one write and answers their proposers.
fn apply_task(
    db: &DB,
    task: ApplyTask,
    state: &mut ApplyState,
    outcome: &mut DataOutcome,
) -> Result<()> {
    let scope = DataScope {
        region: &task.region,
        frozen: task.frozen,
        term: task.term,
    };
    let mut wb = WriteBatch::default();
    let mut callbacks = task.callbacks.into_iter().peekable();
    let mut answers = Vec::new();
    for e in task.entries {
        if e.index <= state.applied_index {
            continue;
        }
        let resp = if e.data.is_empty() {
            RaftCmdResponse::default()
        } else {
            let cmd = RaftCmdRequest::decode(e.data.as_ref())?;
            apply_data(db, &scope, cmd, state, &mut wb, outcome)?
        };
        state.applied_index = e.index;
        state.applied_term = e.term;
        RAFT_APPLIED_ENTRIES.inc();
        // The raftstore took exactly the callbacks of these entries.
        if callbacks.peek().is_some_and(|(index, _)| *index == e.index) {
            if let Some((_, cb)) = callbacks.next() {
                answers.push((cb, resp));
            }
        }
    }
    write_apply_state(db, task.region.id, state, &mut wb)?;
    db.write(wb)?;
    for (cb, resp) in answers {
        cb(Ok(resp));
    }
    Ok(())
}
