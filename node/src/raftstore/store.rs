//! The raftstore loop: one dedicated thread drives every region replica of
//! the store. Each round it takes messages and requests from its inbox,
//! ticks the peers on time, collects every peer's Ready into one batch
//! written with one fsync (group commit), sends messages and hands
//! committed entries to the apply pool, which answers the proposers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use nokv_consensus::engine::{cf, CF_META};
use nokv_consensus::keys::{apply_state_key, region_state_key};
use nokv_consensus::metrics::RAFT_PERSIST_SECONDS;
use nokv_consensus::peer::{PendingReady, ProposeError};
use nokv_consensus::transport::{decode_message, encode_message};
use nokv_consensus::Transport;
use nokv_proto::coordinatorpb::{change_peer, RegionHeartbeatRequest, RegionHeartbeatResponse};
use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb::{self, Region};
use nokv_proto::raft_cmdpb::{
    admin_request, request, AdminRequest, ChangePeerRequest, ConfChangeType, RaftCmdRequest,
    RaftRequestHeader,
};
use nokv_proto::raft_serverpb::{HibernateSignal, PeerState, RaftMessage, RegionLocalState};
use prost::Message as _;
use raft::prelude::{ConfChange, Message, MessageType};
use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, info, warn};

use crate::config::RaftConfig;
use crate::metrics;
use crate::raftstore::apply::pool::{ApplyPool, ApplyResult};
use crate::raftstore::msg::{CmdCallback, ReadCallback, ReadGrant, StoreMsg};
use crate::raftstore::peer::Peer;
use crate::raftstore::snapshot::{clear_range, install, RegionSnapshotSource};
use crate::region::{
    check_epoch, check_key, check_range, not_leader, overlaps, region_not_found, stale_command,
    store_not_match, timeout,
};
use crate::{Error, Result};

use crate::raftstore::router::Router;
use crate::raftstore::router::{MailboxReceiver, RouterInbox};

/// Which epoch check a request needs.
pub(super) enum EpochCheck<'a> {
    /// Operator and coordinator orders act on the current region.
    Skip,
    /// Data requests: the key range (`version`) must match.
    Data(Option<&'a metapb::RegionEpoch>),
    /// Admin commands: `version` and `conf_ver` must match.
    Admin(Option<&'a metapb::RegionEpoch>),
}

/// Region and leader counts, shared with heartbeats and metrics.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Initialized regions on the store.
    pub regions: AtomicU64,
    /// Regions this store leads.
    pub leaders: AtomicU64,
    /// Bytes and keys its leaders read and wrote, taken by heartbeats.
    pub flows: crate::flow::RegionFlows,
}

fn map_propose_error(region_id: u64, peers: &[metapb::Peer], e: ProposeError) -> RegionError {
    match e {
        ProposeError::NotLeader { leader_id } => {
            not_leader(region_id, peers.iter().find(|p| p.id == leader_id).cloned())
        }
        ProposeError::Stale => stale_command(),
        ProposeError::TimedOut => timeout(region_id),
        ProposeError::Dropped(why) => RegionError {
            message: format!("proposal dropped: {why}"),
            kind: Some(nokv_proto::errorpb::region_error::Kind::StaleCommand(
                nokv_proto::errorpb::StaleCommand {},
            )),
        },
    }
}

/// Checks a membership change makes sense for `region`: one replica per
/// store, learners are added fresh, and voters are not demoted.
fn validate_change(
    region: &Region,
    change: ConfChangeType,
    target: &metapb::Peer,
) -> std::result::Result<(), String> {
    let existing = region.peers.iter().find(|p| p.id == target.id);
    let same_store = region
        .peers
        .iter()
        .find(|p| p.store_id == target.store_id && p.id != target.id);
    match change {
        ConfChangeType::AddLearnerNode | ConfChangeType::AddNode if same_store.is_some() => {
            Err(format!(
                "store {} already holds replica {} of region {}",
                target.store_id,
                same_store.map(|p| p.id).unwrap_or(0),
                region.id
            ))
        }
        ConfChangeType::AddLearnerNode if existing.is_some() => Err(format!(
            "peer {} is already a member; demotion is not supported",
            target.id
        )),
        ConfChangeType::RemoveNode if existing.is_none() => Err(format!(
            "peer {} is not a member of region {}",
            target.id, region.id
        )),
        _ => Ok(()),
    }
}

/// Everything the raftstore thread needs at start.
pub struct RaftstoreParts {
    /// This store's id.
    pub store_id: u64,
    /// The node's RocksDB.
    pub db: Arc<DB>,
    /// Replicas recovered from disk.
    pub peers: Vec<Peer>,
    /// Outgoing raft traffic.
    pub transport: Transport,
    /// Region heartbeats go here (sent by an async task).
    pub heartbeats: UnboundedSender<RegionHeartbeatRequest>,
    /// Raft timing.
    pub config: RaftConfig,
    /// Snapshot builder shared by all peers.
    pub snapshots: Arc<RegionSnapshotSource>,
    /// Counters to publish.
    pub counters: Arc<StoreCounters>,
    /// Where topology transitions are recorded.
    pub diagnostics: Arc<crate::diagnostics::Diagnostics>,
    /// Regions due for a split check go here.
    pub split_checks: UnboundedSender<crate::worker::split_check::SplitCheck>,
    /// Told when the raftstore stops on a fatal failure (storage it can no
    /// longer write, or a panic), so the process stops too.
    pub fatal: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Starts the raftstore thread.
pub fn spawn(parts: RaftstoreParts) -> Result<(Router, JoinHandle<Result<()>>)> {
    let (router, inbox) = Router::new(
        parts.config.inbox_capacity,
        parts.config.region_mailbox_capacity,
    );
    let stopped = router.stopped.clone();
    let (applied_tx, applied_rx) = crossbeam_channel::unbounded();
    let apply_pool = ApplyPool::spawn(
        parts.db.clone(),
        parts.config.apply_pool_size,
        applied_tx.clone(),
    )?;
    let mut store = Raftstore {
        store_id: parts.store_id,
        db: parts.db,
        peers: parts
            .peers
            .into_iter()
            .map(|p| (p.region_id(), p))
            .collect(),
        transport: parts.transport,
        heartbeats: parts.heartbeats,
        tick: Duration::from_millis(parts.config.tick_interval_ms.max(1)),
        config: parts.config,
        snapshots: parts.snapshots,
        counters: parts.counters,
        diagnostics: parts.diagnostics,
        split_checks: parts.split_checks,
        self_router: router.clone(),
        snapshot_dirs_to_remove: Vec::new(),
        reads_to_flush: Vec::new(),
        store_seen: HashMap::new(),
        started: Instant::now(),
        ticks: 0,
        inbox,
        mailboxes: HashMap::new(),
        requeued: Vec::new(),
        stopping: false,
        batched: Vec::new(),
        apply_pool: Some(apply_pool),
        applied_rx,
        _applied_tx: applied_tx,
        apply_queue_entries: 0,
    };
    let recovered: Vec<u64> = store.peers.keys().copied().collect();
    for id in recovered {
        store.open_mailbox(id);
    }
    let fatal = parts.fatal;
    let join = std::thread::Builder::new()
        .name("raftstore".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.run()))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(Error::Fatal(format!("the raftstore thread panicked: {what}")))
                });
            stopped.store(true, Ordering::Release);
            if let Err(e) = &result {
                error!(error = %e, "raftstore stopped: this store can no longer keep its state");
                if let Some(fatal) = fatal {
                    let _ = fatal.send(());
                }
            }
            result.map_err(|e| match e {
                Error::Fatal(_) => e,
                other => Error::Fatal(other.to_string()),
            })
        })?;
    Ok((router, join))
}

pub(super) struct Raftstore {
    pub(super) store_id: u64,
    pub(super) db: Arc<DB>,
    pub(super) peers: HashMap<u64, Peer>,
    pub(super) transport: Transport,
    pub(super) heartbeats: UnboundedSender<RegionHeartbeatRequest>,
    pub(super) tick: Duration,
    pub(super) config: RaftConfig,
    pub(super) snapshots: Arc<RegionSnapshotSource>,
    pub(super) counters: Arc<StoreCounters>,
    pub(super) diagnostics: Arc<crate::diagnostics::Diagnostics>,
    pub(super) split_checks: UnboundedSender<crate::worker::split_check::SplitCheck>,
    /// Its own inbox, for answers from async tasks (snapshot streams).
    pub(super) self_router: Router,
    /// Received snapshots installed this round, deleted once the round's
    /// batch is durable.
    pub(super) snapshot_dirs_to_remove: Vec<std::path::PathBuf>,
    /// Regions with reads waiting to be handed to raft this round.
    pub(super) reads_to_flush: Vec<u64>,
    /// When each other store was last heard from (any message or ping);
    /// hibernating followers wake when their leader's store goes silent.
    pub(super) store_seen: HashMap<u64, Instant>,
    /// When this raftstore started (stores not heard from yet count from
    /// here).
    pub(super) started: Instant,
    /// Ticks since start, to pace store pings.
    pub(super) ticks: u64,
    pub(super) inbox: RouterInbox,
    /// The raftstore's ends of the region mailboxes.
    pub(super) mailboxes: HashMap<u64, MailboxReceiver>,
    /// Messages left in the mailbox of a region that went away, handled
    /// at the start of the next round.
    pub(super) requeued: Vec<StoreMsg>,
    pub(super) stopping: bool,
    /// Regions holding writes to propose at the end of this round.
    pub(super) batched: Vec<u64>,
    /// Applies committed data entries; taken when the raftstore stops.
    pub(super) apply_pool: Option<ApplyPool>,
    /// What the apply pool finished.
    pub(super) applied_rx: Receiver<ApplyResult>,
    /// Keeps `applied_rx` connected even if every apply thread died.
    pub(super) _applied_tx: Sender<ApplyResult>,
    /// Entries handed to the apply pool and not reported back.
    pub(super) apply_queue_entries: usize,
}

/// A hibernating leader reports to the coordinator this many times less
/// often (it still reports, so the coordinator knows it is alive).
const HIBERNATED_HEARTBEAT_FACTOR: u64 = 10;

/// Wakes a hibernating replica. A leader that slept gets a full election
/// timeout before check-quorum judges its followers, who may be asleep.
fn wake(peer: &mut Peer) {
    peer.hibernation.wake();
    if peer.raft.is_leader() {
        peer.raft.raw_mut().raft.election_elapsed = 0;
    }
}

/// Proposes `cmd` on `peer` as one raft entry.
fn propose_command(peer: &mut Peer, cmd: RaftCmdRequest, cb: CmdCallback) {
    let region_id = peer.region.id;
    let peers = peer.region.peers.clone();
    peer.raft.propose(
        cmd.encode_to_vec(),
        Box::new(move |r| cb(r.map_err(|e| map_propose_error(region_id, &peers, e)))),
    );
}

/// Proposes the writes `peer` gathered this round, if any, as one entry.
fn propose_batch(peer: &mut Peer) {
    if let Some((cmd, cb)) = peer.proposal_batch.take() {
        crate::metrics::PROPOSAL_BATCH_COMMANDS.observe(cmd.requests.len() as f64);
        propose_command(peer, cmd, cb);
    }
}

/// Ticks between two pushes of a frozen merge source towards commit or
/// rollback; a duplicate CommitMerge is harmless (it fails its epoch check).
const MERGE_STEP_TICKS: u64 = 5;

impl Raftstore {
    /// Runs rounds until told to stop, or until this store can no longer
    /// keep its state (a failed write of raft state or of applied data):
    /// that error ends the loop, and with it the process.
    pub(in crate::raftstore) fn run(&mut self) -> Result<()> {
        info!(
            store_id = self.store_id,
            regions = self.peers.len(),
            "raftstore started"
        );
        let result = self.rounds();
        self.propose_batches();
        for p in self.peers.values_mut() {
            p.raft
                .fail_all(ProposeError::Dropped("store is stopping".into()));
        }
        // Nothing may write into the database once the raftstore is gone.
        if let Some(pool) = self.apply_pool.take() {
            pool.shutdown();
        }
        result
    }

    fn rounds(&mut self) -> Result<()> {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.inbox.store) -> m => match m {
                    Ok(m) => self.handle_from_store(m),
                    Err(_) => return Ok(()),
                },
                recv(self.inbox.wake) -> id => {
                    if let Ok(id) = id {
                        self.drain_mailbox(id);
                    }
                }
                recv(self.applied_rx) -> r => {
                    if let Ok(r) = r {
                        self.on_apply_result(r)?;
                    }
                }
                default(wait) => {}
            }
            while let Ok(r) = self.applied_rx.try_recv() {
                self.on_apply_result(r)?;
            }
            self.drain_inbox();
            self.propose_batches();
            if Instant::now() >= next_tick {
                self.on_tick()?;
                next_tick = Instant::now() + self.tick;
            }
            // Losing the ability to persist raft state means we can no
            // longer keep promises made to other replicas: stop.
            self.on_ready_round()?;
            if self.stopping {
                return Ok(());
            }
        }
    }

    pub(in crate::raftstore) fn handle(&mut self, msg: StoreMsg) {
        match msg {
            StoreMsg::Raft(env) => self.on_raft_message(env),
            StoreMsg::Command { cmd, cb } => self.on_command(cmd, cb),
            StoreMsg::Read {
                region_id,
                epoch,
                peer,
                keys,
                ranges,
                cb,
            } => self.on_read(region_id, epoch, peer, keys, ranges, cb),
            StoreMsg::ChangePeer {
                region_id,
                change,
                cb,
            } => self.on_change_peer(region_id, change, cb),
            StoreMsg::TransferLeader {
                region_id,
                to_store,
                cb,
            } => {
                cb(self.on_transfer_leader(region_id, to_store));
            }
            StoreMsg::Status { region_id, cb } => {
                let mut out: Vec<_> = self
                    .peers
                    .values()
                    .filter(|p| region_id.is_none_or(|id| id == p.region_id()))
                    .map(|p| p.status())
                    .collect();
                out.sort_by_key(|s| s.region.as_ref().map(|r| r.id).unwrap_or(0));
                cb(out);
            }
            StoreMsg::HeartbeatResponse(resp) => self.on_heartbeat_response(resp),
            StoreMsg::Stop => self.stopping = true,
            StoreMsg::SnapshotReport {
                region_id,
                to_peer,
                sent,
            } => self.report_snapshots(vec![(region_id, to_peer, sent)]),
            StoreMsg::PrepareMerge {
                source,
                target,
                transition,
                cb,
            } => self.on_prepare_merge(source, target, transition, cb),
            StoreMsg::RegionStats {
                region_id,
                approximate_keys,
                approximate_size_bytes,
                version,
            } => {
                let current = |p: &&mut Peer| p.region.epoch.map_or(0, |e| e.version) == version;
                if let Some(p) = self.peers.get_mut(&region_id).filter(current) {
                    let measured = p.raft.is_leader();
                    // Tell the coordinator now rather than at the next
                    // interval (10× longer when asleep): its merge checker
                    // acts on these counts.
                    p.heartbeat_due |= measured
                        && (!p.size_measured
                            || p.approximate_keys != approximate_keys
                            || p.approximate_size_bytes != approximate_size_bytes);
                    p.approximate_keys = approximate_keys;
                    p.approximate_size_bytes = approximate_size_bytes;
                    p.size_measured = measured;
                }
            }
        }
    }

    pub(in crate::raftstore) fn on_raft_message(&mut self, env: RaftMessage) {
        let Some(to) = env.to_peer else {
            return;
        };
        if to.store_id != self.store_id {
            debug!(
                store_id = self.store_id,
                to_store = to.store_id,
                "raft message for another store dropped"
            );
            return;
        }
        if let Some(from) = &env.from_peer {
            self.store_seen.insert(from.store_id, Instant::now());
        }
        if env.store_ping {
            return;
        }
        if env.hibernate() != HibernateSignal::HibernateNone {
            self.on_hibernate_signal(&env);
            return;
        }
        if env.is_tombstone {
            self.on_tombstone(&env, to.id);
            return;
        }
        let msg = match decode_message(&env.message) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "undecodable raft message dropped");
                return;
            }
        };
        // Peer ids only grow: a message for a newer peer of a region we hold
        // means our replica was removed without learning it (it missed the
        // entry). Make way for the new replica.
        if let Some(old) = self.peers.get(&env.region_id).filter(|p| to.id > p.meta.id) {
            if old.applying.tasks > 0 {
                // Destroyed once the pool is done with it; the leader
                // retries this message.
                return;
            }
            info!(
                region_id = env.region_id,
                new_peer = to.id,
                "replica superseded by a newer peer; destroying it"
            );
            if let Err(e) = self.destroy_peer(env.region_id) {
                warn!(region_id = env.region_id, error = %e, "destroying a superseded replica failed");
                return;
            }
        }
        if !self.peers.contains_key(&env.region_id) && !self.maybe_create_peer(&env, &msg) {
            return;
        }
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if let Some(from) = env.from_peer.filter(|_| peer.is_initialized()) {
            let theirs = env.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
            let ours = peer.region.epoch.map(|e| e.conf_ver).unwrap_or(0);
            if !peer.region.peers.iter().any(|p| p.id == from.id) && theirs < ours {
                // A removed replica still talking: tell it so it can go.
                let tombstone = RaftMessage {
                    region_id: env.region_id,
                    from_peer: Some(peer.meta),
                    to_peer: Some(from),
                    region_epoch: peer.region.epoch,
                    is_tombstone: true,
                    ..Default::default()
                };
                self.transport.send(from.store_id, tombstone);
                return;
            }
        }
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if peer.meta.id != to.id {
            debug!(
                region_id = env.region_id,
                peer_id = peer.meta.id,
                to_peer = to.id,
                "message for another peer id dropped"
            );
            return;
        }
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            let region =
                nokv_proto::raft_serverpb::SnapshotMeta::decode(msg.get_snapshot().get_data())
                    .ok()
                    .and_then(|m| m.region)
                    .unwrap_or_default();
            if !self.snapshot_fits(&region) {
                debug!(
                    region_id = env.region_id,
                    "snapshot overlaps another live region here; dropped"
                );
                return;
            }
        }
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if let Some(from) = &env.from_peer {
            peer.peer_stores.insert(from.id, from.store_id);
        }
        // A replica that just started forgets which leader it heard from,
        // and raft-rs would grant votes at once; the old leader may still
        // hold a read lease counted from this replica's acknowledgement. So
        // for one election timeout after start, votes are refused, as if
        // the leader had just been heard (transfer campaigns excepted).
        let vote = matches!(
            msg.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && msg.get_context() != raft::CAMPAIGN_TRANSFER;
        if vote
            && self.config.lease_reads
            && self.started.elapsed()
                < self.tick * u32::try_from(self.config.election_ticks).unwrap_or(u32::MAX)
        {
            debug!(
                region_id = env.region_id,
                "vote request dropped: this store started less than an election timeout ago"
            );
            return;
        }
        // Heartbeats of the current term keep a sleeping region asleep;
        // anything else means there is work.
        let quiet = matches!(
            msg.get_msg_type(),
            MessageType::MsgHeartbeat | MessageType::MsgHeartbeatResponse
        ) && msg.term == peer.raft.term();
        if !quiet && peer.hibernation.asleep {
            wake(peer);
        }
        if let Err(e) = peer.raft.step(msg) {
            debug!(region_id = env.region_id, error = %e, "raft step failed");
        }
    }

    /// A member told this replica it was removed: destroy it if the sender's
    /// membership is newer than ours.
    pub(in crate::raftstore) fn on_tombstone(&mut self, env: &RaftMessage, to_peer: u64) {
        let Some(peer) = self.peers.get(&env.region_id) else {
            return;
        };
        let theirs = env.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        let ours = peer.region.epoch.map(|e| e.conf_ver).unwrap_or(0);
        if peer.meta.id != to_peer || (peer.is_initialized() && theirs <= ours) {
            return;
        }
        info!(
            region_id = env.region_id,
            peer_id = to_peer,
            "told by a member that this replica was removed"
        );
        if let Err(e) = self.destroy_peer(env.region_id) {
            warn!(region_id = env.region_id, error = %e, "destroying a removed replica failed");
        }
    }

    /// Creates an uninitialized replica for a region this store has never
    /// seen, when a leader reaches out to it. Returns whether it exists now.
    pub(in crate::raftstore) fn maybe_create_peer(
        &mut self,
        env: &RaftMessage,
        msg: &Message,
    ) -> bool {
        if !matches!(
            msg.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        ) {
            return false;
        }
        let Some(to) = &env.to_peer else {
            return false;
        };
        // A tombstone means this replica was removed: never resurrect it
        // from an old message.
        match self.load_region_state(env.region_id) {
            Ok(Some(local)) if local.state() == PeerState::Tombstone => {
                let local_epoch = local.region.and_then(|r| r.epoch).unwrap_or_default();
                let msg_epoch = env.region_epoch.unwrap_or_default();
                if msg_epoch.conf_ver <= local_epoch.conf_ver {
                    debug!(
                        region_id = env.region_id,
                        "message for a destroyed peer dropped"
                    );
                    return false;
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(region_id = env.region_id, error = %e, "cannot read region state");
                return false;
            }
        }
        let probe = Region {
            id: env.region_id,
            start_key: env.start_key.clone(),
            end_key: env.end_key.clone(),
            ..Default::default()
        };
        if self
            .peers
            .values()
            .any(|p| p.is_initialized() && overlaps(&p.region, &probe))
        {
            debug!(
                region_id = env.region_id,
                "new peer would overlap an existing region; dropped"
            );
            return false;
        }
        let region = Region {
            id: env.region_id,
            ..Default::default()
        };
        match Peer::open(
            self.db.clone(),
            self.store_id,
            region,
            to.id,
            &self.config,
            self.snapshots.clone(),
        ) {
            Ok(p) => {
                info!(
                    region_id = env.region_id,
                    peer_id = to.id,
                    "created peer from raft message"
                );
                self.peers.insert(env.region_id, p);
                true
            }
            Err(e) => {
                warn!(region_id = env.region_id, error = %e, "failed to create peer");
                false
            }
        }
    }

    pub(in crate::raftstore) fn load_region_state(
        &self,
        region_id: u64,
    ) -> Result<Option<RegionLocalState>> {
        let b = self
            .db
            .get_cf(cf(&self.db, CF_META)?, region_state_key(region_id))?;
        Ok(b.map(|b| RegionLocalState::decode(b.as_slice()))
            .transpose()?)
    }

    /// Common admission checks; returns the peer when the request may go on.
    pub(in crate::raftstore) fn admit(
        &mut self,
        region_id: u64,
        req_peer: Option<&metapb::Peer>,
        epoch: EpochCheck<'_>,
    ) -> std::result::Result<&mut Peer, RegionError> {
        let store_id = self.store_id;
        let max_inflight = self.config.max_inflight_requests.max(1);
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return Err(region_not_found(region_id));
        };
        if let Some(p) = req_peer {
            if p.store_id != 0 && p.store_id != store_id {
                return Err(store_not_match(p.store_id, store_id));
            }
        }
        if !peer.is_initialized() {
            return Err(region_not_found(region_id));
        }
        if !peer.raft.is_leader() {
            return Err(not_leader(region_id, peer.leader_peer()));
        }
        if peer.hibernation.asleep {
            wake(peer);
        }
        let waiting =
            peer.raft.pending_requests() + peer.proposal_batch.len() + peer.applying.entries;
        if waiting >= max_inflight {
            return Err(crate::region::server_is_busy(
                "too many requests waiting for raft in this region",
            ));
        }
        match epoch {
            EpochCheck::Skip => {}
            EpochCheck::Data(e) => check_epoch(&peer.region, e, false)?,
            EpochCheck::Admin(e) => check_epoch(&peer.region, e, true)?,
        }
        Ok(peer)
    }

    pub(in crate::raftstore) fn on_command(&mut self, cmd: RaftCmdRequest, cb: CmdCallback) {
        let header = cmd.header.unwrap_or_default();
        let check = if cmd.admin_request.is_some() {
            EpochCheck::Admin(header.region_epoch.as_ref())
        } else {
            EpochCheck::Data(header.region_epoch.as_ref())
        };
        if cmd.admin_request.is_none()
            && self.apply_queue_entries >= self.config.max_apply_queue_entries.max(1)
        {
            return cb(Err(crate::region::server_is_busy(
                "the apply queue is full; writes wait until it drains",
            )));
        }
        let peer = match self.admit(header.region_id, header.peer.as_ref(), check) {
            Ok(p) => p,
            Err(e) => return cb(Err(e)),
        };
        let rollback = matches!(
            cmd.admin_request.as_ref().and_then(|a| a.cmd.as_ref()),
            Some(admin_request::Cmd::RollbackMerge(_))
        );
        if peer.merge_state.is_some() && !rollback {
            return cb(Err(crate::raftstore::apply::merging(peer.region.id)));
        }
        for r in &cmd.requests {
            let check = match &r.cmd {
                Some(request::Cmd::Put(p)) => check_key(&peer.region, &p.key),
                Some(request::Cmd::Delete(d)) => check_key(&peer.region, &d.key),
                Some(request::Cmd::CompareAndSwap(c)) => check_key(&peer.region, &c.key),
                Some(request::Cmd::DeleteRange(d)) => {
                    check_range(&peer.region, &d.start_key, &d.end_key)
                }
                Some(request::Cmd::Txn(t)) => crate::mvcc::commands::check_keys(
                    t,
                    |k| check_key(&peer.region, k),
                    |s, e| check_range(&peer.region, s, e),
                ),
                None => Ok(()),
            };
            if let Err(e) = check {
                return cb(Err(e));
            }
        }
        let region_id = peer.region.id;
        if cmd.admin_request.is_some() {
            // Writes that arrived earlier this round go first.
            propose_batch(peer);
            propose_command(peer, cmd, cb);
            return;
        }
        if !peer.proposal_batch.fits(&cmd) {
            propose_batch(peer);
        }
        let first = peer.proposal_batch.is_empty();
        peer.proposal_batch.push(cmd, cb);
        if first {
            self.batched.push(region_id);
        }
    }

    /// Proposes every region's writes gathered this round.
    pub(in crate::raftstore) fn propose_batches(&mut self) {
        for id in std::mem::take(&mut self.batched) {
            if let Some(p) = self.peers.get_mut(&id) {
                propose_batch(p);
            }
        }
    }

    pub(in crate::raftstore) fn on_read(
        &mut self,
        region_id: u64,
        epoch: Option<metapb::RegionEpoch>,
        req_peer: Option<metapb::Peer>,
        keys: Vec<Vec<u8>>,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
        cb: ReadCallback,
    ) {
        let peer = match self.admit(
            region_id,
            req_peer.as_ref(),
            EpochCheck::Data(epoch.as_ref()),
        ) {
            Ok(p) => p,
            Err(e) => return cb(Err(e)),
        };
        // A frozen source may already be part of its target on some store,
        // which takes writes for its range: reading here could miss them.
        if peer.merge_state.is_some() {
            return cb(Err(crate::raftstore::apply::merging(region_id)));
        }
        let checks = keys
            .iter()
            .map(|k| check_key(&peer.region, k))
            .chain(ranges.iter().map(|(s, e)| check_range(&peer.region, s, e)));
        for check in checks {
            if let Err(e) = check {
                return cb(Err(e));
            }
        }
        let peers = peer.region.peers.clone();
        let (start_key, end_key) = (peer.region.start_key.clone(), peer.region.end_key.clone());
        let cb: nokv_consensus::peer::ReadCallback = Box::new(move |r| {
            cb(r.map(|applied_index| ReadGrant {
                applied_index,
                start_key,
                end_key,
            })
            .map_err(|e| map_propose_error(region_id, &peers, e)))
        });
        // The leader lease answers at once; otherwise a ReadIndex round
        // (batched with the round's other reads) confirms leadership.
        if let Some(cb) = peer.raft.try_lease_read(cb) {
            peer.raft.read_index(cb);
            self.reads_to_flush.push(region_id);
        }
    }

    pub(in crate::raftstore) fn on_change_peer(
        &mut self,
        region_id: u64,
        change: ChangePeerRequest,
        cb: CmdCallback,
    ) {
        let peer = match self.admit(region_id, None, EpochCheck::Skip) {
            Ok(p) => p,
            Err(e) => return cb(Err(e)),
        };
        if peer.merge_state.is_some() {
            return cb(Err(crate::raftstore::apply::merging(region_id)));
        }
        let Some(target) = change.peer else {
            return cb(Err(RegionError {
                message: "change peer without a peer".into(),
                kind: None,
            }));
        };
        if let Err(why) = validate_change(&peer.region, change.change_type(), &target) {
            return cb(Err(RegionError {
                message: why,
                kind: None,
            }));
        }
        let mut cc = ConfChange {
            node_id: target.id,
            ..Default::default()
        };
        cc.set_change_type(match change.change_type() {
            ConfChangeType::AddNode => raft::prelude::ConfChangeType::AddNode,
            ConfChangeType::AddLearnerNode => raft::prelude::ConfChangeType::AddLearnerNode,
            ConfChangeType::RemoveNode => raft::prelude::ConfChangeType::RemoveNode,
        });
        let ctx = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id,
                region_epoch: peer.region.epoch,
                ..Default::default()
            }),
            requests: Vec::new(),
            admin_request: Some(AdminRequest {
                cmd: Some(admin_request::Cmd::ChangePeer(change)),
            }),
            ..Default::default()
        };
        cc.context = ctx.encode_to_vec().into();
        peer.peer_stores.insert(target.id, target.store_id);
        let peers = peer.region.peers.clone();
        peer.raft.propose_conf_change(
            Vec::new(),
            cc,
            Box::new(move |r| cb(r.map_err(|e| map_propose_error(region_id, &peers, e)))),
        );
    }

    pub(in crate::raftstore) fn on_transfer_leader(
        &mut self,
        region_id: u64,
        to_store: u64,
    ) -> std::result::Result<metapb::Peer, RegionError> {
        let peer = self.admit(region_id, None, EpochCheck::Skip)?;
        let Some(target) = peer
            .region
            .peers
            .iter()
            .find(|p| p.store_id == to_store)
            .cloned()
        else {
            return Err(RegionError {
                message: format!("region {region_id} has no peer on store {to_store}"),
                kind: None,
            });
        };
        if target.id == peer.meta.id {
            return Ok(target);
        }
        if target.role() == metapb::PeerRole::Learner {
            return Err(RegionError {
                message: format!(
                    "transfer refused: peer {} on store {to_store} is a learner",
                    target.id
                ),
                kind: None,
            });
        }
        let raft = &peer.raft.raw().raft;
        let last = raft.raft_log.last_index();
        let matched = raft.prs().get(target.id).map(|p| p.matched).unwrap_or(0);
        if matched + 100 < last {
            return Err(RegionError {
                message: format!(
                    "transfer refused: peer {} lags {} entries behind",
                    target.id,
                    last - matched
                ),
                kind: None,
            });
        }
        peer.raft.transfer_leader(target.id);
        Ok(target)
    }

    pub(in crate::raftstore) fn on_heartbeat_response(&mut self, resp: RegionHeartbeatResponse) {
        let region_id = resp.region_id;
        if let Some(t) = resp.transfer_leader {
            let to_store = t.peer.map(|p| p.store_id).unwrap_or(0);
            match self.on_transfer_leader(region_id, to_store) {
                Ok(_) => info!(
                    region_id,
                    to_store,
                    operator_id = resp.operator_id,
                    "running coordinator order: transfer leader"
                ),
                Err(e) => debug!(region_id, error = %e.message, "coordinator transfer refused"),
            }
            return;
        }
        if let Some(split) = resp.split_region {
            // The split-check worker has the engine and the split driver;
            // it runs the split off this thread.
            let Some(p) = self.peers.get(&region_id).filter(|p| p.raft.is_leader()) else {
                return;
            };
            info!(
                region_id,
                operator_id = resp.operator_id,
                "running coordinator order: split"
            );
            let _ = self
                .split_checks
                .send(crate::worker::split_check::SplitCheck {
                    region: p.region.clone(),
                    peer: p.meta,
                    order: Some(split),
                });
            return;
        }
        if let Some(merge) = resp.merge {
            self.run_merge_order(region_id, resp.operator_id, merge);
            return;
        }
        let Some(order) = resp.change_peer else {
            return;
        };
        let Some(target) = order.peer else {
            return;
        };
        let change_type = match order.kind() {
            change_peer::Kind::AddVoter => ConfChangeType::AddNode,
            change_peer::Kind::AddLearner => ConfChangeType::AddLearnerNode,
            change_peer::Kind::Remove => ConfChangeType::RemoveNode,
        };
        let change = ChangePeerRequest {
            change_type: change_type as i32,
            peer: Some(target),
        };
        info!(region_id, change = ?change_type, "running coordinator order");
        let diagnostics = self.diagnostics.clone();
        let target = change.peer.unwrap_or_default();
        let t = diagnostics.plan(
            region_id,
            "change_peer",
            format!(
                "coordinator order: {change_type:?} peer {} on store {}",
                target.id, target.store_id
            ),
        );
        diagnostics.advance(t, nokv_proto::adminpb::TransitionStage::Proposed);
        self.on_change_peer(
            region_id,
            change,
            Box::new(move |r| match r {
                Ok(resp) if resp.header.as_ref().is_none_or(|h| h.error.is_none()) => {
                    diagnostics.advance(t, nokv_proto::adminpb::TransitionStage::Applied)
                }
                Ok(resp) => diagnostics.fail(
                    t,
                    resp.header
                        .and_then(|h| h.error)
                        .map(|e| e.message)
                        .unwrap_or_default(),
                ),
                Err(e) => {
                    debug!(region_id, error = %e.message, "coordinator order failed");
                    diagnostics.fail(t, e.message);
                }
            }),
        );
    }

    pub(in crate::raftstore) fn on_tick(&mut self) -> Result<()> {
        let mut leaders = 0;
        let mut regions = 0;
        let mut asleep = 0;
        let mut sleep_requests = Vec::new();
        self.ticks += 1;
        // Pending peers and replication lag walk raft progress: refreshed
        // once a heartbeat interval, not every tick.
        let gauge_round = self
            .ticks
            .is_multiple_of(self.config.heartbeat_ticks.max(1) as u64);
        let (mut pending_peers, mut log_lag, mut sessions) = (0, 0, 0);
        let silent_after = self.tick * self.config.election_ticks.max(1) as u32;
        let now = Instant::now();
        for p in self.peers.values_mut() {
            if p.is_initialized() {
                regions += 1;
            }
            if gauge_round {
                sessions += p.sessions.lock().len() as i64;
            }
            if p.raft.is_leader() {
                leaders += 1;
                if gauge_round {
                    pending_peers += p.pending_peers().len() as i64;
                    log_lag = log_lag.max(p.raft.replication_lag());
                }
            }
            if p.hibernation.asleep {
                let leader_store = p.store_of(p.raft.leader_id()).unwrap_or(0);
                let seen = self
                    .store_seen
                    .get(&leader_store)
                    .copied()
                    .unwrap_or(self.started);
                let leader_gone = !p.raft.is_leader()
                    && leader_store != self.store_id
                    && now.duration_since(seen) > silent_after;
                if !leader_gone {
                    asleep += 1;
                    p.ticks_since_heartbeat += 1;
                    continue;
                }
                info!(
                    region_id = p.region.id,
                    leader_store, "leader's store went silent; waking up"
                );
                wake(p);
            }
            p.raft.tick();
            if self.config.hibernate_regions && p.idle_leader() {
                p.hibernation.idle_ticks += 1;
                let every = self.config.heartbeat_ticks.max(1) as u64;
                if p.hibernation.idle_ticks >= self.config.hibernate_after_ticks
                    && p.hibernation.idle_ticks.is_multiple_of(every)
                {
                    sleep_requests.push(p.region.id);
                }
            } else {
                p.hibernation.idle_ticks = 0;
            }
            p.ticks_since_heartbeat += 1;
            p.ticks_since_log_gc += 1;
            if p.ticks_since_log_gc >= self.config.log_gc_interval_ticks.max(1) {
                p.ticks_since_log_gc = 0;
                Self::maybe_compact_log(&self.config, p);
            }
            p.ticks_since_split_check += 1;
            if self.config.split_check_ticks > 0
                && p.ticks_since_split_check >= self.config.split_check_ticks
                && p.written_since_split_check
                && p.raft.is_leader()
                && p.is_initialized()
            {
                p.ticks_since_split_check = 0;
                p.written_since_split_check = false;
                let _ = self
                    .split_checks
                    .send(crate::worker::split_check::SplitCheck {
                        region: p.region.clone(),
                        peer: p.meta,
                        order: None,
                    });
            }
        }
        for id in sleep_requests {
            self.request_hibernation(id);
        }
        if self
            .ticks
            .is_multiple_of(self.config.heartbeat_ticks.max(1) as u64)
        {
            self.ping_stores();
        }
        metrics::HIBERNATING.set(asleep);
        // Leadership changes and due heartbeats are looked at once a tick,
        // not on every loop iteration: it walks every peer.
        self.heartbeat_round();
        self.drive_merges();
        self.retry_unapplied()?;
        self.counters.regions.store(regions, Ordering::Relaxed);
        self.counters.leaders.store(leaders, Ordering::Relaxed);
        metrics::REGIONS.set(regions as i64);
        metrics::LEADERS.set(leaders as i64);
        if gauge_round {
            metrics::PENDING_PEERS.set(pending_peers);
            metrics::SESSIONS.set(sessions);
            nokv_consensus::metrics::RAFT_LOG_LAG.set(log_lag as i64);
        }
        Ok(())
    }

    /// Sends `msgs`; returns, for each snapshot among them, the target
    /// peer and whether the transport took it. raft-rs must hear about
    /// every snapshot (see [`Self::report_snapshots`]).
    pub(in crate::raftstore) fn send_messages(
        &self,
        peer: &Peer,
        msgs: Vec<Message>,
    ) -> Vec<(u64, u64, bool)> {
        let mut snapshots = Vec::new();
        for m in msgs {
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let to = m.to;
            let Some(store) = peer.store_of(m.to) else {
                debug!(
                    region_id = peer.region.id,
                    to = m.to,
                    "no store known for peer; message dropped"
                );
                if is_snapshot {
                    snapshots.push((peer.region.id, to, false));
                }
                continue;
            };
            let env = RaftMessage {
                region_id: peer.region.id,
                from_peer: Some(peer.meta),
                to_peer: Some(metapb::Peer {
                    id: m.to,
                    store_id: store,
                    role: 0,
                }),
                region_epoch: peer.region.epoch,
                message: encode_message(&m),
                start_key: peer.region.start_key.clone(),
                end_key: peer.region.end_key.clone(),
                ..Default::default()
            };
            if is_snapshot {
                // The snapshot's files stream separately; raft hears the
                // outcome when the stream ends.
                if !self.stream_snapshot(store, env, &m) {
                    snapshots.push((peer.region.id, to, false));
                }
                continue;
            }
            self.transport.send(store, env);
        }
        snapshots
    }

    /// Starts streaming the snapshot in `m`; false if it cannot be sent.
    pub(in crate::raftstore) fn stream_snapshot(
        &self,
        store: u64,
        env: RaftMessage,
        m: &Message,
    ) -> bool {
        let Ok(meta) = nokv_proto::raft_serverpb::SnapshotMeta::decode(m.get_snapshot().get_data())
        else {
            return false;
        };
        let (region_id, to) = (env.region_id, m.to);
        let Some((header, dir)) = self.snapshots.stream_header(env, &meta) else {
            return false;
        };
        let router = self.self_router.clone();
        self.transport.send_snapshot(
            store,
            header,
            dir,
            Box::new(move |sent| {
                let _ = router.send(StoreMsg::SnapshotReport {
                    region_id,
                    to_peer: to,
                    sent,
                });
            }),
        );
        true
    }

    /// Tells raft-rs what became of the snapshots sent this round. A
    /// leader keeps a follower in snapshot state (sending it nothing) until
    /// it hears: `Failure` retries at once; `Finish` (the transport took
    /// it) probes the follower, which asks for another snapshot if this one
    /// was lost on the way.
    pub(in crate::raftstore) fn report_snapshots(&mut self, reports: Vec<(u64, u64, bool)>) {
        for (region_id, to, sent) in reports {
            if let Some(p) = self.peers.get_mut(&region_id) {
                p.raft.report_snapshot(to, sent);
            }
        }
    }

    pub(in crate::raftstore) fn on_ready_round(&mut self) -> Result<()> {
        for id in std::mem::take(&mut self.reads_to_flush) {
            if let Some(p) = self.peers.get_mut(&id) {
                p.raft.flush_reads();
            }
        }
        let mut wb = WriteBatch::default();
        let mut pending: Vec<(u64, PendingReady, bool)> = Vec::new();
        let mut snapshot_reports = Vec::new();
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in &ids {
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            if !peer.raft.has_ready() {
                continue;
            }
            if self.snapshot_waits_for_apply(*id) {
                continue;
            }
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            let Some((ready, msgs)) = peer.raft.collect_ready(&mut wb)? else {
                continue;
            };
            if let Some(snap) = &ready.snapshot {
                let region = nokv_proto::raft_serverpb::SnapshotMeta::decode(snap.get_data())?
                    .region
                    .unwrap_or_default();
                self.absorb_sources_by_snapshot(&region, &mut wb)?;
                let Some(peer) = self.peers.get_mut(id) else {
                    continue;
                };
                let dir = install(&self.db, &self.snapshots, peer, snap, &mut wb)?;
                self.snapshot_dirs_to_remove.push(dir);
                info!(
                    region_id = id,
                    index = snap.get_metadata().index,
                    "installing snapshot"
                );
            }
            let peer = &self.peers[id];
            snapshot_reports.extend(self.send_messages(peer, msgs));
            let installed = ready.snapshot.is_some();
            pending.push((*id, ready, installed));
        }
        if pending.is_empty() {
            self.report_snapshots(snapshot_reports);
            return Ok(());
        }
        let start = Instant::now();
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts)?;
        RAFT_PERSIST_SECONDS.observe(start.elapsed().as_secs_f64());
        nokv_consensus::metrics::RAFT_READY_BATCH_SIZE.observe(pending.len() as f64);
        for dir in self.snapshot_dirs_to_remove.drain(..) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), error = %e, "removing an installed snapshot failed");
            }
        }

        // The commit indexes these Readies advanced go first: an apply
        // state must never be ahead of the commit index on disk, and
        // RocksDB recovers its write-ahead log in order.
        let mut commit_wb = WriteBatch::default();
        let mut finished = Vec::with_capacity(pending.len());
        for (id, ready, installed) in pending {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            finished.push((
                id,
                peer.raft.finish_ready(ready, &mut commit_wb)?,
                installed,
            ));
        }
        if !commit_wb.is_empty() {
            self.db.write(commit_wb)?;
        }
        for (id, out, installed) in finished {
            // Out of the map while it applies: a CommitMerge takes its
            // source replica from the others.
            let Some(mut peer) = self.peers.remove(&id) else {
                continue;
            };
            if installed {
                // The snapshot is the applied state now.
                self.after_apply(&mut peer);
            }
            peer.unapplied.extend(out.committed);
            let driven = self.drive_apply(&mut peer);
            snapshot_reports.extend(self.send_messages(&peer, out.messages));
            self.settle(peer)?;
            driven?;
        }
        self.report_snapshots(snapshot_reports);
        Ok(())
    }

    /// Asks the followers of idle leader `region_id` to hibernate.
    pub(in crate::raftstore) fn request_hibernation(&mut self, region_id: u64) {
        let Some(p) = self.peers.get(&region_id) else {
            return;
        };
        let (index, term) = p.last_log();
        for other in p.region.peers.iter().filter(|o| o.id != p.meta.id) {
            let env = RaftMessage {
                region_id,
                from_peer: Some(p.meta),
                to_peer: Some(*other),
                region_epoch: p.region.epoch,
                hibernate: HibernateSignal::HibernateRequest as i32,
                hibernate_index: index,
                hibernate_term: term,
                ..Default::default()
            };
            self.transport.send(other.store_id, env);
        }
    }

    /// A follower asked to sleep, or a leader hearing a follower agreed.
    pub(in crate::raftstore) fn on_hibernate_signal(&mut self, env: &RaftMessage) {
        let (Some(from), Some(to)) = (env.from_peer, env.to_peer) else {
            return;
        };
        let Some(p) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if p.meta.id != to.id || !self.config.hibernate_regions {
            return;
        }
        let (index, term) = (env.hibernate_index, env.hibernate_term);
        match env.hibernate() {
            HibernateSignal::HibernateRequest => {
                if !p.may_sleep_for(from.id, term, index, term) {
                    return;
                }
                p.hibernation.asleep = true;
                let ack = RaftMessage {
                    region_id: env.region_id,
                    from_peer: Some(p.meta),
                    to_peer: Some(from),
                    region_epoch: p.region.epoch,
                    hibernate: HibernateSignal::HibernateAck as i32,
                    hibernate_index: index,
                    hibernate_term: term,
                    ..Default::default()
                };
                self.transport.send(from.store_id, ack);
            }
            HibernateSignal::HibernateAck => {
                if !p.idle_leader() || p.last_log() != (index, term) || p.raft.term() != term {
                    return;
                }
                if p.hibernation.acked_at != (term, index) {
                    p.hibernation.acks.clear();
                    p.hibernation.acked_at = (term, index);
                }
                p.hibernation.acks.insert(from.id);
                let all = p
                    .region
                    .peers
                    .iter()
                    .filter(|o| o.id != p.meta.id)
                    .all(|o| p.hibernation.acks.contains(&o.id));
                if all {
                    p.hibernation.asleep = true;
                    debug!(region_id = env.region_id, "region hibernates");
                }
            }
            HibernateSignal::HibernateNone => {}
        }
    }

    /// Tells every store this one shares a region with that it is alive.
    pub(in crate::raftstore) fn ping_stores(&self) {
        let mut stores: std::collections::HashSet<u64> = std::collections::HashSet::new();
        for p in self.peers.values() {
            stores.extend(p.region.peers.iter().map(|o| o.store_id));
        }
        stores.remove(&self.store_id);
        for store in stores {
            let ping = RaftMessage {
                from_peer: Some(metapb::Peer {
                    id: 0,
                    store_id: self.store_id,
                    role: 0,
                }),
                to_peer: Some(metapb::Peer {
                    id: 0,
                    store_id: store,
                    role: 0,
                }),
                store_ping: true,
                ..Default::default()
            };
            self.transport.send(store, ping);
        }
    }

    /// Runs the coordinator's order to merge `source` into another region:
    /// the same PrepareMerge an operator's `nokv merge` starts, tracked as
    /// a transition in the execution diagnostics.
    pub(in crate::raftstore) fn run_merge_order(
        &mut self,
        source: u64,
        operator_id: u64,
        order: nokv_proto::coordinatorpb::MergeRegion,
    ) {
        let target = order.target.map_or(0, |t| t.id);
        // Not leading, or already frozen by this merge (the coordinator
        // resends the step until the source is gone): nothing to start.
        if !self
            .peers
            .get(&source)
            .is_some_and(|p| p.raft.is_leader() && p.merge_state.is_none())
        {
            return;
        }
        info!(
            source,
            target, operator_id, "running coordinator order: merge"
        );
        let diagnostics = self.diagnostics.clone();
        let t = diagnostics.plan(
            source,
            "merge",
            format!("coordinator order: merge region {source} into {target}"),
        );
        diagnostics.advance(t, nokv_proto::adminpb::TransitionStage::Proposed);
        self.on_prepare_merge(
            source,
            target,
            Some(t),
            Box::new(move |r| {
                if let Err(e) = r.and_then(crate::raftstore::msg::command_result) {
                    debug!(source, target, error = %e.message, "coordinator merge refused");
                    diagnostics.fail(t, e.message);
                }
            }),
        );
    }

    /// Starts merging `source` into `target`: checks both as this store
    /// sees them and proposes the PrepareMerge. `cb` answers once it
    /// applied; the merge driver takes it from there.
    pub(in crate::raftstore) fn on_prepare_merge(
        &mut self,
        source: u64,
        target: u64,
        transition: Option<u64>,
        cb: CmdCallback,
    ) {
        if let Err(e) = self.admit(source, None, EpochCheck::Skip) {
            return cb(Err(e));
        }
        let refuse = |why: String| RegionError {
            message: format!("merge refused: {why}"),
            kind: None,
        };
        let Some(tgt) = self.peers.get(&target) else {
            return cb(Err(refuse(format!(
                "no replica of target region {target} on this store"
            ))));
        };
        let Some(src) = self.peers.get(&source) else {
            return cb(Err(region_not_found(source)));
        };
        let min_index = match crate::raftstore::admin::merge::check_prepare(src, tgt) {
            Ok(i) => i,
            Err(why) => return cb(Err(refuse(why))),
        };
        let cmd = crate::raftstore::admin::merge::prepare_command(src, &tgt.region, min_index);
        let Some(src) = self.peers.get_mut(&source) else {
            return cb(Err(region_not_found(source)));
        };
        // Writes that arrived earlier this round go first (they would fail
        // against the frozen region otherwise).
        propose_batch(src);
        src.merge_transition = transition;
        src.ticks_since_merge_step = 0;
        let peers = src.region.peers.clone();
        info!(source, target, min_index, "proposing prepare merge");
        src.raft.propose(
            cmd.encode_to_vec(),
            Box::new(move |r| cb(r.map_err(|e| map_propose_error(source, &peers, e)))),
        );
    }

    /// Pushes every merge this store's source leaders froze towards commit
    /// or rollback (see `merge.rs`).
    pub(in crate::raftstore) fn drive_merges(&mut self) {
        let due: Vec<u64> = self
            .peers
            .values_mut()
            .filter(|p| p.merge_state.is_some() && p.raft.is_leader())
            .filter_map(|p| {
                p.ticks_since_merge_step += 1;
                (p.ticks_since_merge_step >= MERGE_STEP_TICKS).then(|| {
                    p.ticks_since_merge_step = 0;
                    p.region.id
                })
            })
            .collect();
        for source in due {
            self.drive_merge(source);
        }
    }

    pub(in crate::raftstore) fn drive_merge(&mut self, source: u64) {
        let Some(src) = self.peers.get(&source) else {
            return;
        };
        let Some(state) = src.merge_state.clone() else {
            return;
        };
        let target = state.target.as_ref().map_or(0, |t| t.id);
        let tgt = self.peers.get(&target);
        match crate::raftstore::admin::merge::next_step(&state, tgt) {
            crate::raftstore::admin::merge::MergeStep::Wait => {
                debug!(source, target, "merge waits for the local target replica");
            }
            crate::raftstore::admin::merge::MergeStep::Commit => {
                let Some(tgt) = tgt else { return };
                let cmd = match crate::raftstore::admin::merge::commit_command(src, tgt) {
                    Ok(c) => c,
                    Err(why) => {
                        warn!(source, target, %why, "cannot build commit merge");
                        return;
                    }
                };
                debug!(source, target, "proposing commit merge");
                self.on_command(
                    cmd,
                    Box::new(move |r| {
                        if let Err(e) = r.and_then(crate::raftstore::msg::command_result) {
                            debug!(source, target, error = %e.message, "commit merge not applied");
                        }
                    }),
                );
            }
            crate::raftstore::admin::merge::MergeStep::FollowTargetLeader(store) => {
                debug!(
                    source,
                    target, store, "moving source leadership to the target leader's store"
                );
                let _ = self.on_transfer_leader(source, store);
            }
            crate::raftstore::admin::merge::MergeStep::Rollback => {
                info!(source, target, "target changed; rolling the merge back");
                let cmd = crate::raftstore::admin::merge::rollback_command(src, state.commit);
                self.on_command(cmd, Box::new(|_| {}));
            }
        }
    }

    /// Whether a snapshot for `region` may be installed next to the
    /// replicas on this store: everything it overlaps must be a frozen
    /// merge source of that region, which the snapshot already contains.
    pub(in crate::raftstore) fn snapshot_fits(&self, region: &Region) -> bool {
        self.peers.values().all(|p| {
            p.region.id == region.id
                || !p.is_initialized()
                || !overlaps(&p.region, region)
                || p.merge_state
                    .as_ref()
                    .and_then(|m| m.target.as_ref())
                    .is_some_and(|t| t.id == region.id)
        })
    }

    /// Turns the merge sources a snapshot of `region` covers into
    /// tombstones (their data is part of the snapshot), into `wb`.
    pub(in crate::raftstore) fn absorb_sources_by_snapshot(
        &mut self,
        region: &Region,
        wb: &mut WriteBatch,
    ) -> Result<()> {
        let covered: Vec<u64> = self
            .peers
            .values()
            .filter(|p| {
                p.region.id != region.id && p.is_initialized() && overlaps(&p.region, region)
            })
            .map(|p| p.region.id)
            .collect();
        for id in covered {
            let Some(mut src) = self.peers.remove(&id) else {
                continue;
            };
            self.close_mailbox(id);
            src.raft.raw_mut().mut_store().clear(wb)?;
            crate::raftstore::apply::session::clear(&self.db, id, wb)?;
            let tombstone = RegionLocalState {
                region: Some(src.region.clone()),
                state: PeerState::Tombstone as i32,
                merge_state: src.merge_state.clone(),
                applying_snapshot: None,
            };
            wb.put_cf(
                cf(&self.db, CF_META)?,
                region_state_key(id),
                tombstone.encode_to_vec(),
            );
            wb.delete_cf(cf(&self.db, CF_META)?, apply_state_key(id));
            src.raft
                .fail_all(ProposeError::Dropped("region merged".into()));
            if let Some(t) = src.merge_transition {
                self.diagnostics
                    .advance(t, nokv_proto::adminpb::TransitionStage::Applied);
            }
            metrics::MERGES.inc();
            info!(
                region_id = id,
                target = region.id,
                "merge source absorbed by a snapshot of its target"
            );
        }
        Ok(())
    }

    /// Opens this store's replicas of the regions a split of `parent` just
    /// created. When the parent's replica here leads, the new replicas
    /// campaign at once so the new regions serve without an election
    /// timeout.
    pub(in crate::raftstore) fn open_split_regions(&mut self, parent: u64) -> Result<()> {
        let Some(p) = self.peers.get_mut(&parent) else {
            return Ok(());
        };
        let regions: Vec<Region> = p.pending_splits.drain(..).collect();
        let lead = p.raft.is_leader();
        for region in regions {
            match self.peers.get(&region.id) {
                Some(existing) if existing.is_initialized() => {
                    warn!(
                        region_id = region.id,
                        "split target already initialized here; kept"
                    );
                    continue;
                }
                Some(_) => {
                    // An uninitialized replica created by an early message
                    // from the new region's leader: the split supersedes it.
                    self.peers.remove(&region.id);
                }
                None => {}
            }
            let Some(me) = region.peers.iter().find(|p| p.store_id == self.store_id) else {
                continue;
            };
            let mut peer = Peer::open(
                self.db.clone(),
                self.store_id,
                region.clone(),
                me.id,
                &self.config,
                self.snapshots.clone(),
            )?;
            if lead && me.role() == metapb::PeerRole::Voter {
                peer.raft
                    .raw_mut()
                    .campaign()
                    .map_err(nokv_consensus::Error::from)?;
            }
            info!(
                region_id = region.id,
                peer_id = me.id,
                "replica created by split"
            );
            self.peers.insert(region.id, peer);
        }
        Ok(())
    }

    /// Proposes a `CompactLog` for a leader whose log holds enough applied
    /// entries, keeping what lagging followers still need unless they lag
    /// beyond the count limit (they will get a snapshot instead).
    pub(in crate::raftstore) fn maybe_compact_log(cfg: &RaftConfig, peer: &mut Peer) {
        // A frozen merge source keeps its log: the CommitMerge carries its
        // tail to lagging replicas.
        if !peer.raft.is_leader() || !peer.is_initialized() || peer.merge_state.is_some() {
            return;
        }
        let applied = peer.apply_state.applied_index;
        let truncated = peer.truncated_index();
        if applied.saturating_sub(truncated) < cfg.log_gc_threshold {
            return;
        }
        let raft = &peer.raft.raw().raft;
        let min_matched = raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != peer.meta.id)
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(applied);
        let target = if applied.saturating_sub(min_matched) > cfg.log_gc_count_limit {
            applied
        } else {
            min_matched.min(applied)
        };
        if target <= truncated {
            return;
        }
        let Ok(term) = raft.raft_log.term(target) else {
            return;
        };
        let cmd = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: peer.region.id,
                region_epoch: peer.region.epoch,
                ..Default::default()
            }),
            requests: Vec::new(),
            admin_request: Some(AdminRequest {
                cmd: Some(admin_request::Cmd::CompactLog(
                    nokv_proto::raft_cmdpb::CompactLogRequest {
                        compact_index: target,
                        compact_term: term,
                    },
                )),
            }),
            ..Default::default()
        };
        debug!(
            region_id = peer.region.id,
            compact_index = target,
            "proposing log compaction"
        );
        peer.raft.propose(cmd.encode_to_vec(), Box::new(|_| {}));
    }

    /// Sends region heartbeats for leaders whose interval passed or whose
    /// region or leadership changed.
    pub(in crate::raftstore) fn heartbeat_round(&mut self) {
        let every = self.config.region_heartbeat_ticks.max(1);
        let now = Instant::now();
        let down_after = Duration::from_secs(self.config.max_peer_down_secs);
        let (store_seen, started, self_store) = (&self.store_seen, self.started, self.store_id);
        // A peer is down when nothing from its store (raft traffic or the
        // store pings every store sends, asleep or not) arrived for
        // `max_peer_down_secs`.
        let down_peers = |p: &Peer| -> Vec<metapb::Peer> {
            p.region
                .peers
                .iter()
                .filter(|q| q.store_id != self_store)
                .filter(|q| {
                    let seen = store_seen.get(&q.store_id).copied().unwrap_or(started);
                    now.saturating_duration_since(seen) > down_after
                })
                .copied()
                .collect()
        };
        for p in self.peers.values_mut() {
            let leader = p.raft.is_leader();
            if leader != p.was_leader {
                p.was_leader = leader;
                p.heartbeat_due = true;
                metrics::LEADER_CHANGES.inc();
                // Counts from an earlier term may be stale: measure again
                // before the coordinator's merge checker relies on them.
                p.size_measured = false;
                p.written_since_split_check = true;
                if !leader {
                    self.counters.flows.forget(p.region.id);
                }
            }
            if !leader || !p.is_initialized() {
                continue;
            }
            let every = if p.hibernation.asleep {
                every * HIBERNATED_HEARTBEAT_FACTOR
            } else {
                every
            };
            if p.reported_pending > 0 && p.pending_peers().len() != p.reported_pending {
                p.heartbeat_due = true;
            }
            let down = down_peers(p);
            if down.len() != p.reported_down {
                p.heartbeat_due = true;
            }
            if p.heartbeat_due || p.ticks_since_heartbeat >= every {
                p.heartbeat_due = false;
                p.ticks_since_heartbeat = 0;
                let mut hb = p.heartbeat();
                p.reported_pending = hb.pending_peers.len();
                p.reported_down = down.len();
                hb.down_peers = down;
                self.counters.flows.fill_region_heartbeat(&mut hb);
                let _ = self.heartbeats.send(hb);
            }
        }
    }

    pub(in crate::raftstore) fn destroy_peer(&mut self, region_id: u64) -> Result<()> {
        if let Some(p) = self.peers.get_mut(&region_id) {
            if p.applying.tasks > 0 {
                // The pool still writes into the range: destroyed when it
                // reports back.
                p.pending_destroy = true;
                return Ok(());
            }
        }
        let Some(mut peer) = self.peers.remove(&region_id) else {
            return Ok(());
        };
        self.close_mailbox(region_id);
        let mut wb = WriteBatch::default();
        peer.raft.raw_mut().mut_store().clear(&mut wb)?;
        crate::raftstore::apply::session::clear(&self.db, region_id, &mut wb)?;
        let still_owned = self
            .peers
            .values()
            .any(|p| p.is_initialized() && overlaps(&p.region, &peer.region));
        if !still_owned {
            clear_range(
                &self.db,
                &peer.region.start_key,
                &peer.region.end_key,
                &mut wb,
            )?;
        }
        peer.persist_region(&self.db, PeerState::Tombstone, &mut wb)?;
        wb.delete_cf(cf(&self.db, CF_META)?, apply_state_key(region_id));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts).map_err(Error::from)?;
        peer.raft
            .fail_all(ProposeError::Dropped("peer removed".into()));
        self.counters.flows.forget(region_id);
        info!(region_id, peer_id = peer.meta.id, "peer destroyed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(in crate::raftstore) fn peer(
        id: u64,
        store_id: u64,
        role: metapb::PeerRole,
    ) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            role: role as i32,
        }
    }

    #[test]
    pub(in crate::raftstore) fn membership_changes_are_validated() {
        let region = Region {
            id: 1,
            peers: vec![
                peer(1, 1, metapb::PeerRole::Voter),
                peer(2, 2, metapb::PeerRole::Learner),
            ],
            ..Default::default()
        };
        use metapb::PeerRole::{Learner, Voter};
        // A second replica on a store that has one.
        assert!(validate_change(
            &region,
            ConfChangeType::AddLearnerNode,
            &peer(9, 1, Learner)
        )
        .is_err());
        assert!(validate_change(&region, ConfChangeType::AddNode, &peer(9, 2, Voter)).is_err());
        // Demoting a voter through AddLearner.
        assert!(validate_change(
            &region,
            ConfChangeType::AddLearnerNode,
            &peer(1, 1, Learner)
        )
        .is_err());
        // Removing a stranger.
        assert!(validate_change(&region, ConfChangeType::RemoveNode, &peer(7, 3, Voter)).is_err());
        // Fine: a new learner elsewhere, promoting the learner, removing a member.
        assert!(validate_change(
            &region,
            ConfChangeType::AddLearnerNode,
            &peer(9, 3, Learner)
        )
        .is_ok());
        assert!(validate_change(&region, ConfChangeType::AddNode, &peer(2, 2, Voter)).is_ok());
        assert!(validate_change(&region, ConfChangeType::RemoveNode, &peer(2, 2, Learner)).is_ok());
    }
}
