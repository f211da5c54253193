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

use nokv_consensus::metrics::RAFT_PERSIST_SECONDS;
use nokv_consensus::peer::{PendingReady, ProposeError};
use nokv_consensus::transport::encode_message;
use nokv_consensus::Transport;
use nokv_proto::coordinatorpb::RegionHeartbeatRequest;
use nokv_proto::metapb::{self};
use nokv_proto::raft_serverpb::RaftMessage;
use prost::Message as _;
use raft::prelude::{Message, MessageType};
use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, info, warn};

use crate::config::RaftConfig;
use crate::metrics;
use crate::raftstore::apply::pool::{ApplyPool, ApplyResult};
use crate::raftstore::msg::StoreMsg;
use crate::raftstore::peer::Peer;
use crate::raftstore::snapshot::{install, RegionSnapshotSource};
use crate::{Error, Result};

use crate::raftstore::router::Router;
use crate::raftstore::router::{MailboxReceiver, RouterInbox};

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
                    Err(Error::Fatal(format!(
                        "the raftstore thread panicked: {what}"
                    )))
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
                p.wake();
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
}
