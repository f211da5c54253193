//! [`RaftPeer`]: one raft group's driver around `RawNode`.
//!
//! It tracks who asked for what: proposals wait for their entry to apply,
//! ReadIndex requests wait for their read index to apply. It never touches
//! the owner's state machine; the owner applies committed entries and hands
//! each applied entry back through [`RaftPeer::take_proposal`].

use std::collections::VecDeque;

use raft::prelude::{ConfChange, Entry, Message, Snapshot};
use raft::{RawNode, Ready, StateRole};
use rocksdb::WriteBatch;
use tokio::sync::oneshot;

mod log;

use crate::metrics;
use crate::storage::RocksRaftLog;
use crate::Result;

/// Why a proposal or read did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This peer is not the leader; `leader_id` is 0 when unknown.
    #[error("not leader (leader hint: {leader_id})")]
    NotLeader {
        /// The leader this peer knows of, 0 if none.
        leader_id: u64,
    },
    /// raft-rs refused the proposal (for example a conf change while
    /// another is pending, or a leader transfer in progress).
    #[error("proposal dropped: {0}")]
    Dropped(String),
    /// The proposal's log position was taken by another entry (leader
    /// change); it did not apply.
    #[error("stale command: superseded by a newer leader")]
    Stale,
    /// No outcome within the deadline; the command may still apply later.
    #[error("timed out")]
    TimedOut,
}

/// Completion of a proposal: the owner's apply result. Called exactly once.
pub type ProposalCallback<R> = Box<dyn FnOnce(std::result::Result<R, ProposeError>) + Send>;
/// Completion of a ReadIndex: the applied index at which reading is
/// linearizable. Called exactly once.
pub type ReadCallback = Box<dyn FnOnce(std::result::Result<u64, ProposeError>) + Send>;

/// Adapts a oneshot sender into a callback (a dropped receiver is fine).
pub fn oneshot_callback<T: Send + 'static>(
    tx: oneshot::Sender<std::result::Result<T, ProposeError>>,
) -> Box<dyn FnOnce(std::result::Result<T, ProposeError>) + Send> {
    Box::new(move |r| {
        let _ = tx.send(r);
    })
}

/// Timing and flow-control knobs of one group, in logical ticks.
#[derive(Debug, Clone)]
pub struct RaftPeerConfig {
    /// This peer's raft id.
    pub id: u64,
    /// Index of the last applied entry, so raft-rs does not hand it back.
    pub applied: u64,
    /// Ticks without a leader before an election.
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Largest append message in bytes.
    pub max_size_per_msg: u64,
    /// In-flight append messages per follower.
    pub max_inflight_msgs: usize,
    /// Re-issue a ReadIndex that got no answer after this many ticks.
    pub read_retry_ticks: u64,
    /// Fail a ReadIndex or proposal with `TimedOut` after this many ticks.
    pub request_timeout_ticks: u64,
    /// How long a ReadIndex round that confirmed leadership lets the leader
    /// serve reads without another round (the leader lease), counted from
    /// when the round was sent. `None` disables lease reads. It must stay
    /// below the election timeout: no other peer can be elected sooner.
    pub lease: Option<std::time::Duration>,
}

impl RaftPeerConfig {
    /// Defaults: election after 10 ticks, heartbeat every 2 (100 ms ticks).
    pub fn new(id: u64, applied: u64) -> Self {
        RaftPeerConfig {
            id,
            applied,
            election_tick: 10,
            heartbeat_tick: 2,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            read_retry_ticks: 5,
            request_timeout_ticks: 100,
            lease: None,
        }
    }
}

struct Proposal<R> {
    index: u64,
    term: u64,
    proposed_at_tick: u64,
    cb: ProposalCallback<R>,
}

struct ReadWaiter {
    id: u64,
    read_index: Option<u64>,
    issued_at_tick: u64,
    last_try_tick: u64,
    cb: Option<ReadCallback>,
}

/// A Ready taken from raft-rs whose persistence is in the caller's batch.
pub struct PendingReady {
    ready: Ready,
    /// A snapshot to install: the owner writes its data (and apply state)
    /// into the same batch before syncing it.
    pub snapshot: Option<Snapshot>,
}

/// What to do once a Ready is durable.
pub struct ReadyOutput {
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed: Vec<Entry>,
}

/// Driver of one raft group. `R` is the owner's apply result type.
pub struct RaftPeer<R> {
    raw: RawNode<RocksRaftLog>,
    cfg: RaftPeerConfig,
    proposals: VecDeque<Proposal<R>>,
    reads: VecDeque<ReadWaiter>,
    next_read_id: u64,
    unsent_read_batch: Option<u64>,
    ticks: u64,
    /// When each ReadIndex batch in flight was handed to raft.
    read_sent_at: std::collections::HashMap<u64, std::time::Instant>,
    /// Until when this leader may serve lease reads (in its current term).
    lease_until: Option<(u64, std::time::Instant)>,
    /// The term in which this leader last started a leader transfer. No
    /// read round grants a lease for the rest of that term: the target may
    /// win a forced election at any time, even after the transfer was given
    /// up here (raft-rs also drops a transfer when the target leaves).
    transfer_term: Option<u64>,
    /// The last applied index the owner reported.
    applied: u64,
}

impl<R> RaftPeer<R> {
    /// Creates the driver over an opened log.
    pub fn new(cfg: RaftPeerConfig, log: RocksRaftLog, logger: &slog::Logger) -> Result<Self> {
        let raft_cfg = raft::Config {
            id: cfg.id,
            applied: cfg.applied,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            max_size_per_msg: cfg.max_size_per_msg,
            max_inflight_msgs: cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let raw = RawNode::new(&raft_cfg, log, logger)?;
        let applied = cfg.applied;
        Ok(RaftPeer {
            raw,
            cfg,
            proposals: VecDeque::new(),
            reads: VecDeque::new(),
            next_read_id: 1,
            unsent_read_batch: None,
            ticks: 0,
            read_sent_at: std::collections::HashMap::new(),
            lease_until: None,
            transfer_term: None,
            applied,
        })
    }

    /// This peer's raft id.
    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// Whether this peer currently leads its group.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this peer knows of (0 when none).
    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// On a leader, how many entries its slowest follower trails: the last
    /// index minus the lowest matched index among the other peers, learners
    /// included (0 on a follower or a single-peer group).
    pub fn replication_lag(&self) -> u64 {
        if !self.is_leader() {
            return 0;
        }
        let raft = &self.raw.raft;
        let last = raft.raft_log.last_index();
        raft.prs()
            .iter()
            .filter(|(id, _)| **id != self.cfg.id)
            .map(|(_, pr)| last.saturating_sub(pr.matched))
            .max()
            .unwrap_or(0)
    }

    /// Number of proposals and reads waiting for an outcome.
    pub fn pending_requests(&self) -> usize {
        self.proposals.len() + self.reads.len()
    }

    /// Advances the logical clock by one tick. Retries reads raft-rs dropped
    /// and times out requests past their deadline.
    pub fn tick(&mut self) -> bool {
        self.ticks += 1;
        // Send times of read rounds nobody waits for any more.
        let reads = &self.reads;
        self.read_sent_at
            .retain(|id, _| reads.iter().any(|w| w.id == *id));
        let ticked = self.raw.tick();
        let now = self.ticks;
        let leader = self.is_leader();
        let leader_id = self.leader_id();
        let mut retry = Vec::new();
        let unsent = self.unsent_read_batch;
        let timeout = self.cfg.request_timeout_ticks;
        let retry_after = self.cfg.read_retry_ticks;
        self.reads.retain_mut(|w| {
            if w.read_index.is_some() {
                return true;
            }
            if now - w.issued_at_tick >= timeout {
                return !send_read(&mut w.cb, Err(ProposeError::TimedOut));
            }
            if !leader {
                return !send_read(&mut w.cb, Err(ProposeError::NotLeader { leader_id }));
            }
            if now - w.last_try_tick >= retry_after && unsent != Some(w.id) {
                w.last_try_tick = now;
                retry.push(w.id);
            }
            true
        });
        retry.sort_unstable();
        retry.dedup();
        for id in retry {
            // raft-rs credits acknowledgements of the first broadcast to the
            // retry as well, so the lease counts from the first send.
            self.read_sent_at
                .entry(id)
                .or_insert_with(std::time::Instant::now);
            self.raw.read_index(id.to_be_bytes().to_vec());
        }
        while self
            .proposals
            .front()
            .is_some_and(|p| now - p.proposed_at_tick >= timeout)
        {
            if let Some(p) = self.proposals.pop_front() {
                (p.cb)(Err(ProposeError::TimedOut));
            }
        }
        ticked
    }

    /// Reports whether a snapshot sent to `to` left this process; raft-rs
    /// holds the follower in snapshot state until it hears.
    pub fn report_snapshot(&mut self, to: u64, sent: bool) {
        let status = if sent {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(to, status);
    }

    /// Feeds a message from another peer.
    pub fn step(&mut self, msg: Message) -> Result<()> {
        match self.raw.step(msg) {
            // Messages from peers unknown to this configuration and stale
            // responses are expected during membership changes.
            Err(raft::Error::StepPeerNotFound) | Err(raft::Error::StepLocalMsg) => Ok(()),
            other => Ok(other?),
        }
    }

    /// Proposes a normal entry; `cb` gets the owner's result once it applies.
    pub fn propose(&mut self, data: Vec<u8>, cb: ProposalCallback<R>) {
        metrics::RAFT_PROPOSALS.with_label_values(&["normal"]).inc();
        if !self.is_leader() {
            cb(Err(ProposeError::NotLeader {
                leader_id: self.leader_id(),
            }));
            return;
        }
        let before = self.raw.raft.raft_log.last_index();
        let res = self.raw.propose(vec![], data);
        self.track(before, res, cb);
    }

    /// Proposes a membership change; `context` travels with the entry.
    pub fn propose_conf_change(
        &mut self,
        context: Vec<u8>,
        cc: ConfChange,
        cb: ProposalCallback<R>,
    ) {
        metrics::RAFT_PROPOSALS
            .with_label_values(&["conf_change"])
            .inc();
        if !self.is_leader() {
            cb(Err(ProposeError::NotLeader {
                leader_id: self.leader_id(),
            }));
            return;
        }
        let before = self.raw.raft.raft_log.last_index();
        let res = self.raw.propose_conf_change(context, cc);
        self.track(before, res, cb);
    }

    fn track(&mut self, before: u64, res: raft::Result<()>, cb: ProposalCallback<R>) {
        let index = self.raw.raft.raft_log.last_index();
        match res {
            Err(e) => {
                cb(Err(ProposeError::Dropped(e.to_string())));
            }
            Ok(()) if index == before => {
                cb(Err(ProposeError::Dropped(
                    "raft-rs did not append the proposal".into(),
                )));
            }
            Ok(()) => self.proposals.push_back(Proposal {
                index,
                term: self.raw.raft.term,
                proposed_at_tick: self.ticks,
                cb,
            }),
        }
    }

    /// Asks for a linearizable read point. `cb` receives the applied index
    /// at which reading the state machine is linearizable.
    pub fn read_index(&mut self, cb: ReadCallback) {
        metrics::RAFT_PROPOSALS
            .with_label_values(&["read_index"])
            .inc();
        if !self.is_leader() {
            cb(Err(ProposeError::NotLeader {
                leader_id: self.leader_id(),
            }));
            return;
        }
        // Reads arriving before the batch is handed to raft share its read
        // point: raft-rs fixes the point when `read_index` is called, so
        // only a batch not yet handed over may take new members.
        let id = match self.unsent_read_batch {
            Some(id) => id,
            None => {
                let id = self.next_read_id;
                self.next_read_id += 1;
                self.unsent_read_batch = Some(id);
                id
            }
        };
        self.reads.push_back(ReadWaiter {
            id,
            read_index: None,
            issued_at_tick: self.ticks,
            last_try_tick: self.ticks,
            cb: Some(cb),
        });
    }

    /// Serves a read from the leader lease when it is valid: the read point
    /// is the current commit index, and no ReadIndex round is needed.
    /// Gives `cb` back when the lease cannot be used (expired, another
    /// term, a leader transfer under way, or nothing committed in this
    /// term yet).
    pub fn try_lease_read(&mut self, cb: ReadCallback) -> Option<ReadCallback> {
        let raft = &self.raw.raft;
        let valid = self.is_leader()
            && raft.lead_transferee.is_none()
            && self.lease_until.is_some_and(|(term, until)| {
                term == raft.term && std::time::Instant::now() < until
            })
            && raft.raft_log.term(raft.raft_log.committed).ok() == Some(raft.term);
        if !valid {
            return Some(cb);
        }
        metrics::RAFT_PROPOSALS
            .with_label_values(&["lease_read"])
            .inc();
        let read_index = raft.raft_log.committed;
        if read_index <= self.applied {
            cb(Ok(self.applied));
            return None;
        }
        self.reads.push_back(ReadWaiter {
            id: 0,
            read_index: Some(read_index),
            issued_at_tick: self.ticks,
            last_try_tick: self.ticks,
            cb: Some(cb),
        });
        None
    }

    /// Hands leadership to `to`. The lease ends at once: the target
    /// campaigns without waiting for an election timeout.
    pub fn transfer_leader(&mut self, to: u64) {
        self.lease_until = None;
        self.transfer_term = Some(self.raw.raft.term);
        self.raw.transfer_leader(to);
    }

    /// Hands the pending batch of reads to raft as one ReadIndex. The owner
    /// calls it once per round, before handling Readies.
    pub fn flush_reads(&mut self) {
        if let Some(id) = self.unsent_read_batch.take() {
            self.read_sent_at.insert(id, std::time::Instant::now());
            self.raw.read_index(id.to_be_bytes().to_vec());
        }
    }

    /// Whether raft-rs has a Ready to handle.
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// Takes the Ready, puts its persistence (snapshot metadata, entries,
    /// hard state) into `wb`, and returns the messages that may be sent
    /// before `wb` is synced. Returns `None` when there is no Ready.
    pub fn collect_ready(
        &mut self,
        wb: &mut WriteBatch,
    ) -> Result<Option<(PendingReady, Vec<Message>)>> {
        if !self.raw.has_ready() {
            return Ok(None);
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            metrics::RAFT_LEADER_CHANGES.inc();
            if ss.raft_state != StateRole::Leader {
                self.lease_until = None;
                let leader_id = ss.leader_id;
                for mut w in self.reads.drain(..) {
                    send_read(&mut w.cb, Err(ProposeError::NotLeader { leader_id }));
                }
            }
        }
        for rs in rd.take_read_states() {
            if rs.request_ctx.len() == 8 {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rs.request_ctx);
                let id = u64::from_be_bytes(b);
                for w in self.reads.iter_mut().filter(|w| w.id == id) {
                    w.read_index = Some(rs.index);
                }
                if let (Some(sent), Some(lease)) = (self.read_sent_at.remove(&id), self.cfg.lease) {
                    // A quorum acknowledged this leader after `sent`: nobody
                    // else can be elected before an election timeout from
                    // then.
                    let term = self.raw.raft.term;
                    let until = sent + lease;
                    let transferring = self.transfer_term == Some(term);
                    match self.lease_until {
                        _ if transferring => {}
                        Some((t, u)) if t == term && u >= until => {}
                        _ => self.lease_until = Some((term, until)),
                    }
                }
            }
        }
        // Reads whose read index is already applied need no apply to wait
        // for: answer them now.
        let applied = self.applied;
        self.reads.retain_mut(|w| match w.read_index {
            Some(i) if i <= applied => !send_read(&mut w.cb, Ok(applied)),
            _ => true,
        });
        let messages = rd.take_messages();
        let snapshot = if rd.snapshot().is_empty() {
            None
        } else {
            let snap = rd.snapshot().clone();
            self.raw
                .mut_store()
                .apply_snapshot_meta(snap.get_metadata(), wb)?;
            Some(snap)
        };
        self.raw.mut_store().append(rd.entries(), wb)?;
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone(), wb)?;
        }
        metrics::RAFT_READY_TOTAL.inc();
        Ok(Some((
            PendingReady {
                ready: rd,
                snapshot,
            },
            messages,
        )))
    }

    /// Completes a Ready after its batch was synced: returns the messages
    /// to send and the committed entries to apply. A commit index advanced
    /// by this step goes into `apply_wb`, which must be written with (or
    /// before) the apply state of those entries.
    pub fn finish_ready(
        &mut self,
        pending: PendingReady,
        apply_wb: &mut WriteBatch,
    ) -> Result<ReadyOutput> {
        let mut rd = pending.ready;
        let mut messages = rd.take_persisted_messages();
        let mut committed = rd.take_committed_entries();
        // Not `advance`: it would mark this Ready's committed entries
        // applied, and they may apply later (in another thread). The owner
        // reports progress with `advance_apply`.
        let mut light = self.raw.advance_append(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit, apply_wb)?;
        }
        messages.extend(light.take_messages());
        committed.extend(light.take_committed_entries());
        metrics::RAFT_COMMITTED_ENTRIES.inc_by(committed.len() as u64);
        Ok(ReadyOutput {
            messages,
            committed,
        })
    }

    /// Called for every applied entry in order: answers proposals superseded
    /// by it with `Stale` and returns the callback of the proposal it
    /// carries, if this peer proposed it.
    pub fn take_proposal(&mut self, index: u64, term: u64) -> Option<ProposalCallback<R>> {
        while let Some(p) = self.proposals.front() {
            if p.index > index {
                return None;
            }
            let p = self.proposals.pop_front()?;
            if p.index == index && p.term == term {
                return Some(p.cb);
            }
            (p.cb)(Err(ProposeError::Stale));
        }
        None
    }

    /// Tells raft-rs that entries up to `applied` are applied, and releases
    /// the reads whose read index is now applied.
    pub fn advance_apply(&mut self, applied: u64) {
        self.applied = applied;
        self.raw.advance_apply_to(applied);
        self.reads.retain_mut(|w| match w.read_index {
            Some(i) if i <= applied => !send_read(&mut w.cb, Ok(applied)),
            _ => true,
        });
    }

    /// Applies a committed membership entry (either conf change format) to
    /// raft-rs and records the resulting membership in the log storage.
    pub fn apply_conf_change_entry(&mut self, entry: &Entry) -> Result<()> {
        use protobuf::Message as _;
        let corrupted = |e: protobuf::ProtobufError| crate::Error::Corrupted {
            what: "conf change",
            detail: e.to_string(),
        };
        let cs = match entry.get_entry_type() {
            raft::prelude::EntryType::EntryConfChangeV2 => {
                let cc = raft::prelude::ConfChangeV2::parse_from_bytes(&entry.data)
                    .map_err(corrupted)?;
                self.raw.apply_conf_change(&cc)?
            }
            _ => {
                let cc = ConfChange::parse_from_bytes(&entry.data).map_err(corrupted)?;
                self.raw.apply_conf_change(&cc)?
            }
        };
        self.raw.mut_store().set_conf_state(cs);
        Ok(())
    }

    /// Fails every waiting request (the peer is being destroyed or the
    /// process is stopping).
    pub fn fail_all(&mut self, err: ProposeError) {
        for p in self.proposals.drain(..) {
            (p.cb)(Err(err.clone()));
        }
        for mut w in self.reads.drain(..) {
            send_read(&mut w.cb, Err(err.clone()));
        }
    }
}

/// Fires a waiter's callback (once); returns true so `retain` drops it.
fn send_read(cb: &mut Option<ReadCallback>, v: std::result::Result<u64, ProposeError>) -> bool {
    if let Some(cb) = cb.take() {
        cb(v);
    }
    true
}

#[cfg(test)]
mod tests;
