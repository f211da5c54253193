//! The coordinator's raft loop: one dedicated thread owns the raft group,
//! persists each Ready with one synced write, applies committed commands to
//! [`ClusterState`] and answers proposers. Async code talks to it only
//! through [`RaftHandle`].

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nokv_consensus::engine::{cf, CF_META};
use nokv_consensus::keys::apply_state_key;
use nokv_consensus::metrics::{
    RAFT_APPLIED_ENTRIES, RAFT_APPLIED_INDEX, RAFT_APPLY_SECONDS, RAFT_PERSIST_SECONDS,
};
use nokv_consensus::peer::{oneshot_callback, ProposalCallback, ProposeError};
use nokv_consensus::service::RaftMessageSink;
use nokv_consensus::transport::{decode_message, encode_message};
use nokv_consensus::{RaftPeer, RaftPeerConfig, RocksRaftLog, Transport};
use nokv_proto::coordinatorpb::{coordinator_command::Cmd, CoordinatorCommand};
use nokv_proto::metapb::Peer;
use nokv_proto::raft_serverpb::{ApplyState, RaftMessage, RaftTruncatedState};
use prost::Message as _;
use raft::prelude::{ConfState, EntryType, Message};
use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::state::{ApplyResult, ClusterState};
use crate::{Error, Result};
use nokv_proto::poison::RwLockExt;

#[cfg(test)]
pub(crate) mod in_memory;

/// The coordinator group's id in raft envelopes and metrics.
pub const COORDINATOR_GROUP: u64 = 0;

const INBOX_CAPACITY: usize = 8192;

enum LoopMsg {
    Raft(RaftMessage),
    Propose(CoordinatorCommand, ProposalCallback<ApplyResult>),
}

/// Who leads the group, as of the raft loop's last round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leadership {
    /// Known leader, 0 if none.
    pub leader_id: u64,
    /// Current term.
    pub term: u64,
    /// This member leads and has applied a barrier of its own term, so its
    /// state reflects everything committed before it became leader.
    pub ready_leader: bool,
}

/// Handle to the raft loop for async code. Cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    tx: SyncSender<LoopMsg>,
    /// The applied state, readable by any task.
    pub state: Arc<RwLock<ClusterState>>,
    leadership: Arc<RwLock<Leadership>>,
    log_state: Arc<RwLock<(u64, u64)>>,
}

impl RaftHandle {
    /// `(applied index, truncated index)` of this member's raft log.
    pub fn log_state(&self) -> (u64, u64) {
        *self.log_state.read_unpoisoned()
    }

    /// Replicates `cmd` and returns its apply result.
    ///
    /// # Errors
    /// `NotLeader` when this member does not lead; `Proposal` when the
    /// command was dropped, superseded or timed out.
    pub async fn propose(&self, cmd: Cmd) -> Result<ApplyResult> {
        let cmd = CoordinatorCommand { cmd: Some(cmd) };
        let (tx, rx) = oneshot::channel();
        match self
            .tx
            .try_send(LoopMsg::Propose(cmd, oneshot_callback(tx)))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Error::Proposal("raft inbox full".into())),
            Err(TrySendError::Disconnected(_)) => return Err(Error::Stopped),
        }
        match rx.await {
            Ok(res) => Ok(res?),
            Err(_) => Err(Error::Stopped),
        }
    }

    /// The leadership as of the last raft round.
    pub fn leadership(&self) -> Leadership {
        match self.leadership.read() {
            Ok(l) => *l,
            Err(p) => *p.into_inner(),
        }
    }

    /// Reads the applied state.
    pub fn read_state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        match self.state.read() {
            Ok(s) => f(&s),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// A sink the raft transport service delivers into.
    pub fn sink(&self) -> Arc<LoopSink> {
        Arc::new(LoopSink {
            tx: self.tx.clone(),
        })
    }
}

/// Delivers received raft messages into the loop's inbox.
pub struct LoopSink {
    tx: SyncSender<LoopMsg>,
}

impl RaftMessageSink for LoopSink {
    fn deliver(&self, msg: RaftMessage) {
        if self.tx.try_send(LoopMsg::Raft(msg)).is_err() {
            nokv_consensus::metrics::RAFT_MESSAGES
                .with_label_values(&["inbox_full"])
                .inc();
        }
    }
}

/// Raft timing for the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// This member's id.
    pub id: u64,
    /// All member ids (the voters).
    pub voters: Vec<u64>,
    /// Tick length.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: usize,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// Ticks between log GC checks.
    pub log_gc_interval_ticks: u64,
    /// Applied entries in the log before compacting.
    pub log_gc_threshold: u64,
}

/// The loop's thread, as the member that started it sees it.
pub struct RaftThread {
    fatal: oneshot::Receiver<Error>,
    _thread: JoinHandle<()>,
}

impl RaftThread {
    /// Completes when the loop stopped on a failure it cannot go on from,
    /// with that failure: [`Error::Fatal`]. Never completes while the loop
    /// runs. (The loop also stops, cleanly, once every [`RaftHandle`] is
    /// gone; nobody is left to wait then.)
    pub async fn fatal(&mut self) -> Error {
        match (&mut self.fatal).await {
            Ok(e) => e,
            // The thread ended without a word: it panicked.
            Err(_) => Error::Fatal(Box::new(Error::Stopped)),
        }
    }
}

/// Opens the group's raft state and starts the loop thread.
pub fn spawn(
    cfg: LoopConfig,
    db: Arc<DB>,
    transport: Transport,
) -> Result<(RaftHandle, RaftThread)> {
    let state = ClusterState::load(&db)?;
    let apply_state = load_apply_state(&db)?;
    let truncated = apply_state
        .truncated_state
        .as_ref()
        .map(|t| (t.index, t.term))
        .unwrap_or((0, 0));
    let conf_state = ConfState {
        voters: cfg.voters.clone(),
        ..Default::default()
    };
    let log = RocksRaftLog::open(db.clone(), COORDINATOR_GROUP, conf_state, truncated, None)?;
    let mut peer_cfg = RaftPeerConfig::new(cfg.id, apply_state.applied_index);
    peer_cfg.election_tick = cfg.election_ticks;
    peer_cfg.heartbeat_tick = cfg.heartbeat_ticks;
    let logger = nokv_consensus::logging::raft_logger(COORDINATOR_GROUP);
    let peer = RaftPeer::new(peer_cfg, log, &logger)?;
    let (tx, rx) = sync_channel(INBOX_CAPACITY);
    let handle = RaftHandle {
        tx,
        state: Arc::new(RwLock::new(state)),
        leadership: Arc::new(RwLock::new(Leadership::default())),
        log_state: Arc::new(RwLock::new((apply_state.applied_index, truncated.0))),
    };
    info!(
        member_id = cfg.id,
        applied = apply_state.applied_index,
        "coordinator raft group opened"
    );
    let mut raft_loop = RaftLoop {
        cfg,
        db,
        peer,
        transport,
        rx,
        state: handle.state.clone(),
        leadership: handle.leadership.clone(),
        applied_index: apply_state.applied_index,
        applied_term: apply_state.applied_term,
        truncated,
        barrier_proposed_term: 0,
        ticks_since_log_gc: 0,
        log_state: handle.log_state.clone(),
    };
    let (fatal_tx, fatal) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("coordinator-raft".into())
        .spawn(move || raft_loop.run(fatal_tx))?;
    Ok((
        handle,
        RaftThread {
            fatal,
            _thread: thread,
        },
    ))
}

fn load_apply_state(db: &DB) -> Result<ApplyState> {
    let bytes = db.get_cf(cf(db, CF_META)?, apply_state_key(COORDINATOR_GROUP))?;
    Ok(match bytes {
        Some(b) => ApplyState::decode(b.as_slice()).map_err(nokv_consensus::Error::from)?,
        None => ApplyState::default(),
    })
}

struct RaftLoop {
    cfg: LoopConfig,
    db: Arc<DB>,
    peer: RaftPeer<ApplyResult>,
    transport: Transport,
    rx: Receiver<LoopMsg>,
    state: Arc<RwLock<ClusterState>>,
    leadership: Arc<RwLock<Leadership>>,
    applied_index: u64,
    applied_term: u64,
    truncated: (u64, u64),
    barrier_proposed_term: u64,
    ticks_since_log_gc: u64,
    log_state: Arc<RwLock<(u64, u64)>>,
}

impl RaftLoop {
    /// Runs rounds until every [`RaftHandle`] is gone or storage fails;
    /// then fails every pending proposal, stops counting as leader, and
    /// reports a failure on `fatal`.
    fn run(&mut self, fatal: oneshot::Sender<Error>) {
        let stopped = self.rounds();
        self.peer
            .fail_all(ProposeError::Dropped("coordinator stopping".into()));
        *self.leadership.write_unpoisoned() = Leadership::default();
        if let Err(e) = stopped {
            error!(err = %e, "coordinator raft loop stopped");
            let _ = fatal.send(e);
        }
    }

    /// The loop's rounds: inbox, tick, Ready, leadership.
    ///
    /// # Errors
    /// [`Error::Fatal`] when a Ready could not be persisted or applied: the
    /// group cannot make progress safely, and serving on would serve
    /// state that may not be durable.
    fn rounds(&mut self) -> Result<()> {
        let mut next_tick = Instant::now() + self.cfg.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            while let Ok(m) = self.rx.try_recv() {
                self.handle(m);
            }
            if Instant::now() >= next_tick {
                self.peer.tick();
                self.ticks_since_log_gc += 1;
                if self.ticks_since_log_gc >= self.cfg.log_gc_interval_ticks.max(1) {
                    self.ticks_since_log_gc = 0;
                    self.maybe_compact_log();
                }
                next_tick = Instant::now() + self.cfg.tick;
            }
            self.on_ready().map_err(|e| Error::Fatal(Box::new(e)))?;
            self.publish_leadership();
        }
    }

    fn handle(&mut self, msg: LoopMsg) {
        match msg {
            LoopMsg::Raft(env) => match decode_message(&env.message) {
                Ok(m) => {
                    if let Err(e) = self.peer.step(m) {
                        warn!(error = %e, "raft step failed");
                    }
                }
                Err(e) => warn!(error = %e, "undecodable raft message dropped"),
            },
            LoopMsg::Propose(cmd, cb) => self.peer.propose(cmd.encode_to_vec(), cb),
        }
    }

    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let env = RaftMessage {
                region_id: COORDINATOR_GROUP,
                from_peer: Some(Peer {
                    id: self.cfg.id,
                    store_id: self.cfg.id,
                    role: 0,
                }),
                to_peer: Some(Peer {
                    id: to,
                    store_id: to,
                    role: 0,
                }),
                message: encode_message(&m),
                ..Default::default()
            };
            self.transport.send(to, env);
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        let mut wb = WriteBatch::default();
        let Some((pending, msgs)) = self.peer.collect_ready(&mut wb)? else {
            return Ok(());
        };
        self.send(msgs);
        if pending.snapshot.is_some() {
            // The coordinator never compacts its log, so peers never need
            // snapshots; receiving one means a foreign or damaged log.
            warn!("coordinator received a snapshot; ignored");
        }
        let start = Instant::now();
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts)?;
        RAFT_PERSIST_SECONDS.observe(start.elapsed().as_secs_f64());
        // One group: every round persists exactly one Ready.
        nokv_consensus::metrics::RAFT_READY_BATCH_SIZE.observe(1.0);

        let start = Instant::now();
        let mut apply_wb = WriteBatch::default();
        let out = self.peer.finish_ready(pending, &mut apply_wb)?;
        self.send(out.messages);
        let mut done = Vec::new();
        for e in out.committed {
            if e.index <= self.applied_index {
                continue;
            }
            let result = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => ApplyResult::Ok,
                EntryType::EntryNormal => match CoordinatorCommand::decode(e.data.as_ref()) {
                    Ok(CoordinatorCommand {
                        cmd: Some(Cmd::CompactLog(c)),
                    }) => {
                        if c.index > self.truncated.0 && c.index <= self.applied_index {
                            self.peer.compact_log_to(c.index, c.term, &mut apply_wb)?;
                            self.truncated = (c.index, c.term);
                        }
                        ApplyResult::Ok
                    }
                    Ok(cmd) => {
                        let mut state = self.state.write_unpoisoned();
                        state.apply(&self.db, cmd, &mut apply_wb)?
                    }
                    Err(err) => {
                        warn!(index = e.index, error = %err, "undecodable coordinator command skipped");
                        ApplyResult::Ok
                    }
                },
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.peer.apply_conf_change_entry(&e)?;
                    ApplyResult::Ok
                }
            };
            if let Some(cb) = self.peer.take_proposal(e.index, e.term) {
                done.push((cb, result));
            }
            self.applied_index = e.index;
            self.applied_term = e.term;
            RAFT_APPLIED_ENTRIES.inc();
        }
        let apply_state = ApplyState {
            applied_index: self.applied_index,
            applied_term: self.applied_term,
            truncated_state: Some(RaftTruncatedState {
                index: self.truncated.0,
                term: self.truncated.1,
            }),
        };
        apply_wb.put_cf(
            cf(&self.db, CF_META)?,
            apply_state_key(COORDINATOR_GROUP),
            apply_state.encode_to_vec(),
        );
        self.db.write(apply_wb)?;
        for (cb, result) in done {
            cb(Ok(result));
        }
        self.peer.advance_apply(self.applied_index);
        RAFT_APPLY_SECONDS.observe(start.elapsed().as_secs_f64());
        RAFT_APPLIED_INDEX
            .with_label_values(&["coordinator"])
            .set(self.applied_index as i64);
        nokv_consensus::metrics::RAFT_LOG_LAG.set(self.peer.replication_lag() as i64);
        *self.log_state.write_unpoisoned() = (self.applied_index, self.truncated.0);
        Ok(())
    }

    /// On the leader: proposes compacting the log up to what every member
    /// has matched, once enough applied entries pile up. Never past the
    /// slowest member, so no member ever needs a snapshot (the coordinator
    /// has none); a member that is down holds compaction back until it
    /// returns.
    fn maybe_compact_log(&mut self) {
        if !self.peer.is_leader()
            || self.applied_index.saturating_sub(self.truncated.0) < self.cfg.log_gc_threshold
        {
            return;
        }
        let min_matched = self
            .peer
            .progress()
            .map(|(id, pr)| {
                if id == self.cfg.id {
                    self.applied_index
                } else {
                    pr.matched
                }
            })
            .min()
            .unwrap_or(0);
        let target = min_matched.min(self.applied_index);
        if target <= self.truncated.0 {
            return;
        }
        let Some(term) = self.peer.term_of(target) else {
            return;
        };
        let cmd = CoordinatorCommand {
            cmd: Some(Cmd::CompactLog(nokv_proto::coordinatorpb::CompactLog {
                index: target,
                term,
            })),
        };
        self.peer.propose(cmd.encode_to_vec(), Box::new(|_| {}));
    }

    fn publish_leadership(&mut self) {
        let term = self.peer.term();
        let is_leader = self.peer.is_leader();
        if is_leader && self.barrier_proposed_term != term {
            // A new leader's state may lag what earlier leaders committed;
            // applying an entry of its own term proves it has caught up.
            self.barrier_proposed_term = term;
            let cmd = CoordinatorCommand {
                cmd: Some(Cmd::LeaderBarrier(term)),
            };
            self.peer.propose(cmd.encode_to_vec(), Box::new(|_| {}));
            info!(member_id = self.cfg.id, term, "became coordinator leader");
        }
        let barrier_term = self
            .state
            .read()
            .map(|s| s.barrier_term)
            .unwrap_or_else(|p| p.into_inner().barrier_term);
        let now = Leadership {
            leader_id: self.peer.leader_id(),
            term,
            ready_leader: is_leader && barrier_term == term,
        };
        let mut l = self.leadership.write_unpoisoned();
        if *l != now {
            *l = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(body: impl FnOnce(oneshot::Sender<Error>) + Send + 'static) -> RaftThread {
        let (tx, fatal) = oneshot::channel();
        RaftThread {
            fatal,
            _thread: std::thread::spawn(move || body(tx)),
        }
    }

    #[tokio::test]
    async fn a_storage_failure_reaches_the_owner_as_fatal() {
        let mut t = thread(|tx| {
            let cause = Error::Io(std::io::Error::other("disk gone"));
            let _ = tx.send(Error::Fatal(Box::new(cause)));
        });
        let Error::Fatal(cause) = t.fatal().await else {
            panic!("not fatal");
        };
        assert!(matches!(*cause, Error::Io(_)));
    }

    #[tokio::test]
    async fn a_thread_that_ends_without_a_word_is_fatal_too() {
        let mut t = thread(drop);
        assert!(matches!(t.fatal().await, Error::Fatal(cause) if matches!(*cause, Error::Stopped)));
    }
}
