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

use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use nokv_consensus::metrics::RAFT_APPLY_SECONDS;
use nokv_consensus::peer::ProposalCallback;
use nokv_proto::metapb::Region;
use nokv_proto::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use nokv_proto::raft_serverpb::ApplyState;
use raft::prelude::Entry;
use rocksdb::{WriteBatch, DB};
use tracing::error;

use super::data::{apply_data, put_apply_state, DataOutcome, DataScope};
use super::{apply_entries, AdminEntry, ApplyTarget};
use crate::raftstore::session::{SessionTable, SharedSessions};
use crate::{Error, Result};

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
    /// The region's client sessions, updated as the writes apply.
    pub sessions: SharedSessions,
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

/// An apply task as the target of the apply loop: data entries only.
struct PoolTarget<'a> {
    region: &'a Region,
    frozen: bool,
    term: u64,
    sessions: MutexGuard<'a, SessionTable>,
    state: &'a mut ApplyState,
    outcome: &'a mut DataOutcome,
    callbacks: std::iter::Peekable<std::vec::IntoIter<(u64, ProposalCallback<RaftCmdResponse>)>>,
}

impl ApplyTarget for PoolTarget<'_> {
    fn apply_state(&self) -> &ApplyState {
        self.state
    }

    fn set_applied(&mut self, index: u64, term: u64) {
        self.state.applied_index = index;
        self.state.applied_term = term;
    }

    fn apply_data(
        &mut self,
        db: &DB,
        cmd: RaftCmdRequest,
        wb: &mut WriteBatch,
    ) -> Result<RaftCmdResponse> {
        let mut scope = DataScope {
            region: self.region,
            frozen: self.frozen,
            term: self.term,
            sessions: &mut self.sessions,
        };
        apply_data(db, &mut scope, cmd, self.state, wb, self.outcome)
    }

    fn apply_admin(
        &mut self,
        _db: &DB,
        _entry: AdminEntry,
        index: u64,
        _wb: &mut WriteBatch,
    ) -> Result<Option<RaftCmdResponse>> {
        Err(Error::Corrupted(format!(
            "admin entry {index} of region {} was handed to the apply pool",
            self.region.id
        )))
    }

    fn proposer(&mut self, index: u64, _term: u64) -> Option<ProposalCallback<RaftCmdResponse>> {
        // The raftstore took exactly the callbacks of these entries.
        if self.callbacks.peek().is_some_and(|(i, _)| *i == index) {
            self.callbacks.next().map(|(_, cb)| cb)
        } else {
            None
        }
    }

    fn persist(&mut self, db: &DB, wb: &mut WriteBatch) -> Result<()> {
        put_apply_state(db, self.region.id, self.state, &mut self.sessions, wb)
    }
}

/// Applies the task's entries in one write and answers their proposers.
fn apply_task(
    db: &DB,
    task: ApplyTask,
    state: &mut ApplyState,
    outcome: &mut DataOutcome,
) -> Result<()> {
    let mut target = PoolTarget {
        region: &task.region,
        frozen: task.frozen,
        term: task.term,
        sessions: task.sessions.lock(),
        state,
        outcome,
        callbacks: task.callbacks.into_iter().peekable(),
    };
    let applied = apply_entries(db, &mut target, task.entries)?;
    drop(target);
    for (cb, resp) in applied.answers {
        cb(Ok(resp));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use nokv_proto::errorpb::region_error::Kind;
    use nokv_proto::metapb::{Peer as PeerMeta, RegionEpoch};
    use nokv_proto::raft_cmdpb::{
        request, response, CompareAndSwapRequest, PutRequest, RaftRequestHeader, Request,
    };
    use prost::Message as _;

    use super::*;
    use crate::engine::{cf, ALL_CFS, CF_META, CF_RAW};

    fn region() -> Region {
        Region {
            id: 7,
            start_key: b"a".to_vec(),
            end_key: b"z".to_vec(),
            epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 3,
            }),
            peers: vec![PeerMeta {
                id: 8,
                store_id: 1,
                role: 0,
            }],
        }
    }

    fn entry(index: u64, requests: Vec<request::Cmd>, version: u64) -> Entry {
        let cmd = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: 7,
                region_epoch: Some(RegionEpoch {
                    conf_ver: 1,
                    version,
                }),
                ..Default::default()
            }),
            requests: requests
                .into_iter()
                .map(|c| Request { cmd: Some(c) })
                .collect(),
            admin_request: None,
            ..Default::default()
        };
        Entry {
            index,
            term: 2,
            data: cmd.encode_to_vec().into(),
            ..Default::default()
        }
    }

    fn put(key: &[u8], value: &[u8]) -> request::Cmd {
        request::Cmd::Put(PutRequest {
            cf: CF_RAW.into(),
            key: key.to_vec(),
            value: crate::raw_value::encode(value, 0),
        })
    }

    type Answer = (u64, std::result::Result<RaftCmdResponse, String>, u64);
    type Answers = mpsc::Receiver<Answer>;

    /// A callback that reports its answer and the applied index stored in
    /// RocksDB when it ran: proposers hear back only after the batch's
    /// write, which carries the batch's apply state.
    fn callback(
        index: u64,
        db: Arc<DB>,
        tx: mpsc::Sender<Answer>,
    ) -> (u64, ProposalCallback<RaftCmdResponse>) {
        let cb: ProposalCallback<RaftCmdResponse> = Box::new(move |r| {
            let _ = tx.send((index, r.map_err(|e| e.to_string()), stored_applied(&db)));
        });
        (index, cb)
    }

    fn stored_applied(db: &DB) -> u64 {
        let meta = cf(db, CF_META).expect("cf");
        db.get_cf(meta, nokv_consensus::keys::apply_state_key(7))
            .expect("get")
            .map(|b| {
                ApplyState::decode(b.as_slice())
                    .expect("decode")
                    .applied_index
            })
            .unwrap_or(0)
    }

    fn setup() -> (tempfile::TempDir, Arc<DB>, ApplyPool, Receiver<ApplyResult>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = nokv_consensus::engine::open(dir.path(), &ALL_CFS).expect("db");
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = ApplyPool::spawn(db.clone(), 2, tx).expect("pool");
        (dir, db, pool, rx)
    }

    fn task(
        entries: Vec<Entry>,
        callbacks: Vec<(u64, ProposalCallback<RaftCmdResponse>)>,
    ) -> ApplyTask {
        ApplyTask {
            region: region(),
            frozen: false,
            term: 2,
            apply_state: ApplyState {
                applied_index: 10,
                applied_term: 2,
                truncated_state: None,
            },
            entries,
            callbacks,
            sessions: Default::default(),
        }
    }

    fn recv(answers: &Answers) -> Answer {
        answers
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("an answer")
    }

    #[test]
    fn a_batch_writes_data_and_apply_state_together_and_answers_after_the_write() {
        let (_dir, db, pool, results) = setup();
        let (tx, answers) = mpsc::channel();
        let empty = Entry {
            index: 12,
            term: 2,
            ..Default::default()
        };
        let entries = vec![
            entry(11, vec![put(b"k1", b"v1")], 3),
            empty,
            entry(
                13,
                vec![request::Cmd::CompareAndSwap(CompareAndSwapRequest {
                    cf: CF_RAW.into(),
                    key: b"k1".to_vec(),
                    value: crate::raw_value::encode(b"v2", 0),
                    previous_value: b"v1".to_vec(),
                    previous_not_exist: false,
                    evaluated_at_secs: crate::raw_value::now_secs(),
                })],
                3,
            ),
            // Proposed under an older epoch (before a split): refused at
            // apply, but the entry still counts as applied.
            entry(14, vec![put(b"k2", b"v")], 2),
        ];
        let callbacks = vec![
            callback(11, db.clone(), tx.clone()),
            callback(13, db.clone(), tx.clone()),
            callback(14, db.clone(), tx),
        ];
        pool.send(7, task(entries, callbacks)).expect("queued");

        let r = results
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a result");
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!((r.region_id, r.entries), (7, 4));
        assert_eq!(
            (r.apply_state.applied_index, r.apply_state.applied_term),
            (14, 2)
        );
        assert!(r.outcome.wrote);
        assert_eq!(r.outcome.written.keys, 2, "the put and the CAS");

        let (i, put_answer, stored) = recv(&answers);
        assert_eq!(i, 11);
        assert_eq!(stored, 14, "answered before the batch was written");
        assert!(put_answer
            .expect("ok")
            .header
            .unwrap_or_default()
            .error
            .is_none());
        let (i, cas_answer, stored) = recv(&answers);
        assert_eq!((i, stored), (13, 14));
        let cas = match cas_answer.expect("ok").responses[0].cmd.clone() {
            Some(response::Cmd::CompareAndSwap(c)) => c,
            other => panic!("not a CAS answer: {other:?}"),
        };
        assert!(cas.succeed, "the put before it in the batch was visible");
        assert_eq!(cas.previous_value, b"v1");
        let (i, stale, stored) = recv(&answers);
        assert_eq!((i, stored), (14, 14));
        let err = stale.expect("ok").header.unwrap_or_default().error;
        assert!(
            matches!(err.and_then(|e| e.kind), Some(Kind::EpochNotMatch(_))),
            "a stale epoch is refused at apply"
        );

        let raw = cf(&db, CF_RAW).expect("cf");
        let stored = db.get_cf(raw, b"k1").expect("get").expect("k1");
        assert_eq!(crate::raw_value::decode(&stored, 0), Some(&b"v2"[..]));
        assert!(db.get_cf(raw, b"k2").expect("get").is_none());
        assert_eq!(stored_applied(&db), 14);
        pool.shutdown();
    }

    #[test]
    fn a_frozen_region_refuses_writes_and_batches_of_a_region_apply_in_order() {
        let (_dir, db, pool, results) = setup();
        let (tx, answers) = mpsc::channel();
        let first = task(
            vec![entry(11, vec![put(b"k1", b"one")], 3)],
            vec![callback(11, db.clone(), tx.clone())],
        );
        let mut second = task(
            vec![entry(12, vec![put(b"k1", b"two")], 3)],
            vec![callback(12, db.clone(), tx.clone())],
        );
        second.apply_state.applied_index = 11;
        let mut frozen = task(
            vec![entry(13, vec![put(b"k1", b"three")], 3)],
            vec![callback(13, db.clone(), tx)],
        );
        frozen.apply_state.applied_index = 12;
        frozen.frozen = true;
        for t in [first, second, frozen] {
            pool.send(7, t).expect("queued");
        }
        let applied: Vec<u64> = (0..3)
            .map(|_| {
                results
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .expect("a result")
                    .apply_state
                    .applied_index
            })
            .collect();
        assert_eq!(applied, vec![11, 12, 13], "one region's batches in order");
        let answered: Vec<u64> = (0..3).map(|_| recv(&answers).0).collect();
        assert_eq!(answered, vec![11, 12, 13]);
        let raw = cf(&db, CF_RAW).expect("cf");
        let stored = db.get_cf(raw, b"k1").expect("get").expect("k1");
        assert_eq!(
            crate::raw_value::decode(&stored, 0),
            Some(&b"two"[..]),
            "the frozen region's write was refused"
        );
        pool.shutdown();
    }
}
