//! The `Coordinator` gRPC service. Each handler reads like: validate, check
//! leadership where the call is leader-only, act (read applied state or
//! replicate a command), answer with a typed header error on failure.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nokv_consensus::metrics::observe_grpc;
use nokv_proto::coordinatorpb::coordinator_server::Coordinator;
use nokv_proto::coordinatorpb::*;
use nokv_proto::metapb::{Member, Peer, Region, Store, StoreState};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use crate::config::{CoordinatorConfig, MemberConfig};
use crate::id_alloc::IdAllocator;
use crate::invariant;
use crate::metrics;
use crate::operator::Operators;
use crate::raft_loop::RaftHandle;
use crate::scheduler;
use crate::state::ApplyResult;
use crate::tso::Tso;
use crate::Error;

pub(crate) struct Liveness {
    last_heartbeat: Instant,
    last_heartbeat_ms: u64,
    stats: StoreStats,
}

pub(crate) struct RegionLoad {
    pub(crate) pending_peers: Vec<Peer>,
    pub(crate) down_peers: Vec<Peer>,
    pub(crate) approximate_size_bytes: u64,
    pub(crate) approximate_keys: u64,
    /// The leader counted the size above in its current term.
    pub(crate) size_measured: bool,
    term: u64,
    /// Bytes and keys read and written over the leader's last heartbeat
    /// interval, as sent.
    flow: Flow,
}

/// A region leader's read and write flow over one heartbeat interval.
#[derive(Clone, Copy, Default)]
struct Flow {
    bytes_written: u64,
    keys_written: u64,
    bytes_read: u64,
    keys_read: u64,
    interval_ms: u64,
}

/// A region's range as this leader last saw it, and since when it has not
/// shrunk (split): the merge checker leaves fresh splits alone.
pub(crate) struct RangeAge {
    start: Vec<u8>,
    end: Vec<u8>,
    pub(crate) since: Instant,
}

impl RangeAge {
    /// Notes `region`'s range as of now: a range that shrank (a split) or
    /// is new restarts the clock; one that grew (a merge) keeps it.
    pub(crate) fn observe(ages: &mut HashMap<u64, RangeAge>, region: &Region, now: Instant) {
        let fresh = || RangeAge {
            start: region.start_key.clone(),
            end: region.end_key.clone(),
            since: now,
        };
        match ages.get_mut(&region.id) {
            None => {
                ages.insert(region.id, fresh());
            }
            Some(a) if a.start != region.start_key || a.end != region.end_key => {
                let unbounded = |k: &[u8]| k.is_empty();
                let grew = region.start_key <= a.start
                    && (unbounded(&region.end_key)
                        || (!unbounded(&a.end) && region.end_key >= a.end));
                let since = a.since;
                *a = fresh();
                if grew {
                    a.since = since;
                }
            }
            Some(_) => {}
        }
    }
}

/// Gaps in the routing table, when first seen, and whether counted.
pub(crate) type SeenGaps = (Vec<(Vec<u8>, Vec<u8>)>, Instant, bool);

/// The coordinator service of one member.
pub struct CoordinatorService {
    pub(crate) raft: RaftHandle,
    tso: Tso,
    pub(crate) ids: IdAllocator,
    members: Vec<MemberConfig>,
    self_id: u64,
    pub(crate) config: CoordinatorConfig,
    liveness: Mutex<HashMap<u64, Liveness>>,
    pub(crate) region_load: Mutex<HashMap<u64, RegionLoad>>,
    /// Since when each region's range has not shrunk (leader only).
    pub(crate) range_ages: Mutex<HashMap<u64, RangeAge>>,
    /// Operators in flight and recent history (leader only, in memory).
    pub(crate) operators: Operators,
    /// A gap in the routing table and when it was first seen (and whether
    /// it was already counted as a violation).
    pub(crate) hole: Mutex<Option<SeenGaps>>,
    /// Term in which this member last became leader and when.
    leader_since: Mutex<(u64, Instant)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn member_pb(m: &MemberConfig) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        address: m.address.clone(),
        status_address: m.status_address.clone(),
    }
}

pub(crate) fn err(kind: ErrorType, message: impl Into<String>) -> Error_ {
    Error_ {
        r#type: kind as i32,
        message: message.into(),
        leader: None,
    }
}

type Error_ = nokv_proto::coordinatorpb::Error;

impl CoordinatorService {
    /// Creates the service over a running raft loop.
    pub fn new(raft: RaftHandle, config: CoordinatorConfig, members: Vec<MemberConfig>) -> Self {
        CoordinatorService {
            tso: Tso::new(raft.clone(), config.tso_save_window_ms),
            ids: IdAllocator::new(raft.clone(), config.id_window),
            operators: Operators::new(Duration::from_millis(config.operator_step_timeout_ms)),
            raft,
            self_id: config.id,
            members,
            config,
            liveness: Mutex::new(HashMap::new()),
            region_load: Mutex::new(HashMap::new()),
            range_ages: Mutex::new(HashMap::new()),
            hole: Mutex::new(None),
            leader_since: Mutex::new((0, Instant::now())),
        }
    }

    pub(crate) fn header(&self, error: Option<Error_>) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.raft.read_state(|s| s.cluster_id),
            error,
        })
    }

    fn leader_member(&self, leader_id: u64) -> Option<Member> {
        self.members
            .iter()
            .find(|m| m.id == leader_id)
            .map(member_pb)
    }

    /// `None` when this member is the ready leader, else the NOT_LEADER
    /// error to answer with.
    /// Raises the GC safe point to `wanted` (never lowers it); returns the
    /// safe point in force.
    pub async fn raise_gc_safe_point(&self, wanted: u64) -> Result<u64, Error> {
        if wanted > self.raft.read_state(|s| s.gc_safe_point) {
            self.raft
                .propose(CoordinatorCommand {
                    cmd: Some(coordinator_command::Cmd::RaiseGcSafePoint(wanted)),
                })
                .await?;
        }
        Ok(self.raft.read_state(|s| s.gc_safe_point))
    }

    /// On the leader, moves the GC safe point to now minus the configured
    /// life time.
    pub async fn advance_gc_safe_point(&self) {
        let life_ms = self.config.gc_life_time_secs.saturating_mul(1000);
        if life_ms == 0 || !self.raft.leadership().ready_leader {
            return;
        }
        let Some(physical) = crate::tso::now_ms().checked_sub(life_ms) else {
            return;
        };
        if let Err(e) = self.raise_gc_safe_point(physical << 18).await {
            tracing::debug!(error = %e, "GC safe point not advanced");
        }
    }

    pub(crate) fn check_leader(&self) -> Option<Error_> {
        let l = self.raft.leadership();
        if l.ready_leader {
            let mut since = self.leader_since.lock().unwrap_or_else(|p| p.into_inner());
            if since.0 != l.term {
                // Heartbeats seen by earlier leaders are unknown here: count
                // every store as alive from now on.
                *since = (l.term, Instant::now());
                self.liveness
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                // Operators of an earlier term may have been overtaken.
                self.operators.cancel_all("the coordinator leader changed");
                // Splits seen by earlier leaders are unknown here too: the
                // merge checker waits a full interval for every region.
                self.range_ages
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
            return None;
        }
        Some(self.not_leader_error(l.leader_id))
    }

    fn not_leader_error(&self, leader_id: u64) -> Error_ {
        let leader = if leader_id == self.self_id {
            // We lead but have not caught up yet: report no leader so the
            // client retries shortly.
            None
        } else {
            self.leader_member(leader_id)
        };
        Error_ {
            r#type: ErrorType::NotLeader as i32,
            message: format!("member {} is not the coordinator leader", self.self_id),
            leader,
        }
    }

    pub(crate) fn error_from(&self, e: Error) -> Error_ {
        match e {
            Error::NotLeader { leader_id } => self.not_leader_error(leader_id),
            other => err(ErrorType::Unknown, other.to_string()),
        }
    }

    pub(crate) fn live_state(&self, store: &Store) -> (StoreState, u64) {
        let state = store.state();
        if matches!(state, StoreState::Offline | StoreState::Tombstone) {
            return (state, 0);
        }
        if !self.raft.leadership().ready_leader {
            return (state, 0);
        }
        let liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        let (since, last_ms) = match liveness.get(&store.id) {
            Some(l) => (l.last_heartbeat, l.last_heartbeat_ms),
            None => (
                self.leader_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .1,
                0,
            ),
        };
        let elapsed = since.elapsed().as_millis() as u64;
        let live = if elapsed > self.config.max_store_down_time_ms {
            StoreState::Down
        } else if elapsed > self.config.store_disconnect_ms {
            StoreState::Disconnected
        } else {
            StoreState::Up
        };
        (live, last_ms)
    }

    fn store_info(&self, store: &Store) -> StoreInfo {
        let (state, last_ms) = self.live_state(store);
        let mut store = store.clone();
        store.state = state as i32;
        store.last_heartbeat_ms = last_ms;
        let stats = self
            .liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&store.id)
            .map(|l| l.stats);
        StoreInfo {
            store: Some(store),
            stats,
        }
    }

    fn region_info(&self, mut info: RegionInfo) -> RegionInfo {
        let id = info.region.as_ref().map(|r| r.id).unwrap_or(0);
        if let Some(load) = self
            .region_load
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            info.pending_peers = load.pending_peers.clone();
            info.down_peers = load.down_peers.clone();
            info.approximate_size_bytes = load.approximate_size_bytes;
            info.approximate_keys = load.approximate_keys;
            info.term = load.term;
            info.bytes_written = load.flow.bytes_written;
            info.keys_written = load.flow.keys_written;
            info.bytes_read = load.flow.bytes_read;
            info.keys_read = load.flow.keys_read;
            info.interval_ms = load.flow.interval_ms;
        }
        info
    }

    /// Refreshes gauges from the applied state; called periodically.
    pub fn refresh_metrics(&self) {
        let lead = self.raft.leadership();
        metrics::IS_LEADER.set(i64::from(lead.ready_leader));
        let (regions, stores) = self.raft.read_state(|s| {
            (
                s.regions.values().cloned().collect::<Vec<_>>(),
                s.stores.values().cloned().collect::<Vec<_>>(),
            )
        });
        metrics::REGIONS.set(regions.len() as i64);
        let mut leaders: HashMap<u64, i64> = HashMap::new();
        for r in &regions {
            if let Some(l) = &r.leader {
                *leaders.entry(l.store_id).or_default() += 1;
            }
        }
        for s in &stores {
            metrics::LEADERS_PER_STORE
                .with_label_values(&[&s.id.to_string()])
                .set(leaders.get(&s.id).copied().unwrap_or(0));
        }
        let mut by_state: HashMap<&'static str, i64> = HashMap::new();
        for s in &stores {
            *by_state
                .entry(self.live_state(s).0.as_str_name())
                .or_default() += 1;
        }
        for st in ["Up", "Disconnected", "Down", "Offline", "Tombstone"] {
            metrics::STORES
                .with_label_values(&[st])
                .set(by_state.get(st).copied().unwrap_or(0));
        }
    }
}

type TsoStream = Pin<Box<dyn Stream<Item = Result<TsoResponse, Status>> + Send>>;

/// The tonic-facing handle of a [`CoordinatorService`] (streams need an
/// owned, cloneable service).
#[derive(Clone)]
pub struct CoordinatorGrpc(pub Arc<CoordinatorService>);

impl std::ops::Deref for CoordinatorGrpc {
    type Target = CoordinatorService;
    fn deref(&self) -> &CoordinatorService {
        &self.0
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorGrpc {
    async fn get_members(
        &self,
        _request: Request<GetMembersRequest>,
    ) -> Result<Response<GetMembersResponse>, Status> {
        observe_grpc("GetMembers", async {
            let l = self.raft.leadership();
            let leader = if l.leader_id == self.self_id && !l.ready_leader {
                None
            } else {
                self.leader_member(l.leader_id)
            };
            Ok(Response::new(GetMembersResponse {
                header: self.header(None),
                members: self.members.iter().map(member_pb).collect(),
                leader,
                responder: self.leader_member(self.self_id),
            }))
        })
        .await
    }

    async fn bootstrap(
        &self,
        request: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        observe_grpc("Bootstrap", async {
            let req = request.into_inner();
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(BootstrapResponse {
                    header: self.header(Some(e)),
                }));
            }
            let (Some(store), Some(region)) = (&req.store, &req.region) else {
                return Err(Status::invalid_argument(
                    "bootstrap needs a store and a region",
                ));
            };
            if store.id == 0 || region.id == 0 || region.peers.is_empty() {
                return Err(Status::invalid_argument(
                    "bootstrap store, region and peer ids must be non-zero",
                ));
            }
            if self.raft.read_state(|s| s.bootstrapped()) {
                return Ok(Response::new(BootstrapResponse {
                    header: self.header(Some(err(
                        ErrorType::AlreadyBootstrapped,
                        "cluster is already bootstrapped",
                    ))),
                }));
            }
            let cluster_id = loop {
                let id = rand::random::<u64>() >> 1;
                if id != 0 {
                    break id;
                }
            };
            let mut cmd = req.clone();
            cmd.header = Some(RequestHeader {
                cluster_id,
                sender_id: store.id,
            });
            let res = self
                .raft
                .propose(CoordinatorCommand {
                    cmd: Some(coordinator_command::Cmd::Bootstrap(cmd)),
                })
                .await;
            let error = match res {
                Ok(ApplyResult::Ok) => {
                    info!(
                        cluster_id,
                        store_id = store.id,
                        region_id = region.id,
                        "cluster bootstrapped"
                    );
                    None
                }
                Ok(ApplyResult::AlreadyBootstrapped) => Some(err(
                    ErrorType::AlreadyBootstrapped,
                    "cluster is already bootstrapped",
                )),
                Ok(other) => Some(err(ErrorType::Unknown, format!("{other:?}"))),
                Err(e) => Some(self.error_from(e)),
            };
            Ok(Response::new(BootstrapResponse {
                header: self.header(error),
            }))
        })
        .await
    }

    async fn is_bootstrapped(
        &self,
        _request: Request<IsBootstrappedRequest>,
    ) -> Result<Response<IsBootstrappedResponse>, Status> {
        observe_grpc("IsBootstrapped", async {
            Ok(Response::new(IsBootstrappedResponse {
                header: self.header(None),
                bootstrapped: self.raft.read_state(|s| s.bootstrapped()),
            }))
        })
        .await
    }

    async fn alloc_id(
        &self,
        request: Request<AllocIdRequest>,
    ) -> Result<Response<AllocIdResponse>, Status> {
        observe_grpc("AllocId", async {
            let count = request.into_inner().count.max(1);
            if count > 10_000 {
                return Err(Status::invalid_argument("at most 10000 ids per request"));
            }
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(AllocIdResponse {
                    header: self.header(Some(e)),
                    id: 0,
                    count: 0,
                }));
            }
            match self.ids.alloc(count).await {
                Ok(id) => {
                    metrics::ID_REQUESTS.inc();
                    metrics::IDS_ALLOCATED.inc_by(u64::from(count));
                    Ok(Response::new(AllocIdResponse {
                        header: self.header(None),
                        id,
                        count,
                    }))
                }
                Err(e) => Ok(Response::new(AllocIdResponse {
                    header: self.header(Some(self.error_from(e))),
                    id: 0,
                    count: 0,
                })),
            }
        })
        .await
    }

    async fn get_timestamp(
        &self,
        request: Request<TsoRequest>,
    ) -> Result<Response<TsoResponse>, Status> {
        observe_grpc("GetTimestamp", async {
            Ok(Response::new(
                self.serve_tso(request.into_inner().count).await,
            ))
        })
        .await
    }

    type TsoStream = TsoStream;

    async fn tso(
        &self,
        request: Request<Streaming<TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                let resp = this.serve_tso(req.count).await;
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn put_store(
        &self,
        request: Request<PutStoreRequest>,
    ) -> Result<Response<PutStoreResponse>, Status> {
        observe_grpc("PutStore", async {
            let Some(mut store) = request.into_inner().store else {
                return Err(Status::invalid_argument("missing store"));
            };
            if store.id == 0 || store.address.is_empty() {
                return Err(Status::invalid_argument(
                    "store id and address are required",
                ));
            }
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(PutStoreResponse {
                    header: self.header(Some(e)),
                }));
            }
            let conflict = self.raft.read_state(|s| {
                s.stores.values().any(|o| {
                    o.id != store.id
                        && o.address == store.address
                        && o.state() != StoreState::Tombstone
                })
            });
            if conflict {
                return Ok(Response::new(PutStoreResponse {
                    header: self.header(Some(err(
                        ErrorType::InvalidArgument,
                        format!("address {} is used by another store", store.address),
                    ))),
                }));
            }
            // A store being decommissioned stays Offline when it restarts.
            let offline = self.raft.read_state(|s| {
                s.stores
                    .get(&store.id)
                    .is_some_and(|o| o.state() == StoreState::Offline)
            });
            store.state = if offline {
                StoreState::Offline
            } else {
                StoreState::Up
            } as i32;
            store.last_heartbeat_ms = 0;
            let id = store.id;
            let res = self
                .raft
                .propose(CoordinatorCommand {
                    cmd: Some(coordinator_command::Cmd::PutStore(store)),
                })
                .await;
            let error = match res {
                Ok(ApplyResult::Ok) => {
                    self.touch_store(id, None);
                    None
                }
                Ok(ApplyResult::StoreTombstone) => Some(err(
                    ErrorType::StoreTombstone,
                    format!("store {id} is a tombstone"),
                )),
                Ok(other) => Some(err(ErrorType::Unknown, format!("{other:?}"))),
                Err(e) => Some(self.error_from(e)),
            };
            Ok(Response::new(PutStoreResponse {
                header: self.header(error),
            }))
        })
        .await
    }

    async fn get_store(
        &self,
        request: Request<GetStoreRequest>,
    ) -> Result<Response<GetStoreResponse>, Status> {
        observe_grpc("GetStore", async {
            let id = request.into_inner().store_id;
            let store = self.raft.read_state(|s| s.stores.get(&id).cloned());
            Ok(Response::new(match store {
                Some(store) => {
                    let info = self.store_info(&store);
                    GetStoreResponse {
                        header: self.header(None),
                        store: info.store,
                        stats: info.stats,
                    }
                }
                None => GetStoreResponse {
                    header: self.header(Some(err(
                        ErrorType::NotFound,
                        format!("store {id} not found"),
                    ))),
                    store: None,
                    stats: None,
                },
            }))
        })
        .await
    }

    async fn get_all_stores(
        &self,
        request: Request<GetAllStoresRequest>,
    ) -> Result<Response<GetAllStoresResponse>, Status> {
        observe_grpc("GetAllStores", async {
            let exclude = request.into_inner().exclude_tombstone;
            let stores = self
                .raft
                .read_state(|s| s.stores.values().cloned().collect::<Vec<_>>());
            let stores = stores
                .iter()
                .filter(|s| !(exclude && s.state() == StoreState::Tombstone))
                .map(|s| self.store_info(s))
                .collect();
            Ok(Response::new(GetAllStoresResponse {
                header: self.header(None),
                stores,
            }))
        })
        .await
    }

    async fn store_heartbeat(
        &self,
        request: Request<StoreHeartbeatRequest>,
    ) -> Result<Response<StoreHeartbeatResponse>, Status> {
        observe_grpc("StoreHeartbeat", async {
            let stats = request.into_inner().stats.unwrap_or_default();
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(StoreHeartbeatResponse {
                    header: self.header(Some(e)),
                }));
            }
            let known = self
                .raft
                .read_state(|s| s.stores.get(&stats.store_id).map(|s| s.state()));
            let error = match known {
                None => Some(err(
                    ErrorType::NotFound,
                    format!("store {} is not registered", stats.store_id),
                )),
                Some(StoreState::Tombstone) => Some(err(
                    ErrorType::StoreTombstone,
                    format!("store {} is a tombstone", stats.store_id),
                )),
                Some(_) => {
                    self.touch_store(stats.store_id, Some(stats));
                    None
                }
            };
            Ok(Response::new(StoreHeartbeatResponse {
                header: self.header(error),
            }))
        })
        .await
    }

    async fn region_heartbeat(
        &self,
        request: Request<RegionHeartbeatRequest>,
    ) -> Result<Response<RegionHeartbeatResponse>, Status> {
        observe_grpc("RegionHeartbeat", async {
            let hb = request.into_inner();
            let Some(region) = hb.region.clone() else {
                return Err(Status::invalid_argument("missing region"));
            };
            let mut resp = RegionHeartbeatResponse {
                header: None,
                region_id: region.id,
                region_epoch: region.epoch,
                ..Default::default()
            };
            if let Some(e) = self.check_leader() {
                resp.header = self.header(Some(e));
                return Ok(Response::new(resp));
            }
            let (verdict, changed) = self.raft.read_state(|s| {
                let verdict = invariant::admit_heartbeat(s, &region);
                let changed = match s.regions.get(&region.id) {
                    Some(known) => {
                        known.region.as_ref() != Some(&region) || known.leader != hb.leader
                    }
                    None => true,
                };
                (verdict, changed)
            });
            if let Err(why) = verdict {
                debug!(region_id = region.id, reason = %why, "region heartbeat refused");
                resp.header = self.header(Some(err(ErrorType::StaleRegion, why.to_string())));
                return Ok(Response::new(resp));
            }
            self.region_load
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    region.id,
                    RegionLoad {
                        pending_peers: hb.pending_peers.clone(),
                        down_peers: hb.down_peers.clone(),
                        approximate_size_bytes: hb.approximate_size_bytes,
                        approximate_keys: hb.approximate_keys,
                        size_measured: hb.size_measured,
                        term: hb.term,
                        flow: Flow {
                            bytes_written: hb.bytes_written,
                            keys_written: hb.keys_written,
                            bytes_read: hb.bytes_read,
                            keys_read: hb.keys_read,
                            interval_ms: hb.interval_ms,
                        },
                    },
                );
            if changed {
                let info = RegionInfo {
                    region: Some(region.clone()),
                    leader: hb.leader,
                    term: hb.term,
                    ..Default::default()
                };
                match self
                    .raft
                    .propose(CoordinatorCommand {
                        cmd: Some(coordinator_command::Cmd::PutRegion(info)),
                    })
                    .await
                {
                    Ok(ApplyResult::StaleRegion) => {
                        resp.header =
                            self.header(Some(err(ErrorType::StaleRegion, "region epoch is stale")));
                        return Ok(Response::new(resp));
                    }
                    Ok(_) => debug!(region_id = region.id, "region metadata updated"),
                    Err(e) => {
                        resp.header = self.header(Some(self.error_from(e)));
                        return Ok(Response::new(resp));
                    }
                }
            }
            RangeAge::observe(
                &mut self.range_ages.lock().unwrap_or_else(|p| p.into_inner()),
                &region,
                Instant::now(),
            );
            if let Some((operator_id, order)) = self.next_order(&hb).await {
                order.fill(operator_id, &mut resp);
            }
            resp.header = self.header(None);
            Ok(Response::new(resp))
        })
        .await
    }

    async fn get_region(
        &self,
        request: Request<GetRegionRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        observe_grpc("GetRegion", async {
            let key = request.into_inner().key;
            let info = self.raft.read_state(|s| s.region_by_key(&key).cloned());
            Ok(Response::new(self.region_response(info, || {
                format!("no region contains key {key:?}")
            })))
        })
        .await
    }

    async fn get_region_by_id(
        &self,
        request: Request<GetRegionByIdRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        observe_grpc("GetRegionById", async {
            let id = request.into_inner().region_id;
            let info = self.raft.read_state(|s| s.regions.get(&id).cloned());
            Ok(Response::new(self.region_response(info, || {
                format!("region {id} not found")
            })))
        })
        .await
    }

    async fn scan_regions(
        &self,
        request: Request<ScanRegionsRequest>,
    ) -> Result<Response<ScanRegionsResponse>, Status> {
        observe_grpc("ScanRegions", async {
            let req = request.into_inner();
            if !req.end_key.is_empty() && req.end_key < req.start_key {
                return Err(Status::invalid_argument(
                    "end_key must not be below start_key",
                ));
            }
            let regions = self
                .raft
                .read_state(|s| s.scan(&req.start_key, &req.end_key, req.limit as usize));
            Ok(Response::new(ScanRegionsResponse {
                header: self.header(None),
                regions: regions.into_iter().map(|r| self.region_info(r)).collect(),
            }))
        })
        .await
    }

    async fn ask_batch_split(
        &self,
        request: Request<AskBatchSplitRequest>,
    ) -> Result<Response<AskBatchSplitResponse>, Status> {
        observe_grpc("AskBatchSplit", async {
            let req = request.into_inner();
            let Some(region) = req.region else {
                return Err(Status::invalid_argument("missing region"));
            };
            if req.split_count == 0 || req.split_count > 1000 {
                return Err(Status::invalid_argument("split_count must be 1..=1000"));
            }
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(AskBatchSplitResponse {
                    header: self.header(Some(e)),
                    ids: vec![],
                }));
            }
            let per_split = 1 + region.peers.len() as u32;
            let first = match self.ids.alloc(per_split * req.split_count).await {
                Ok(id) => id,
                Err(e) => {
                    return Ok(Response::new(AskBatchSplitResponse {
                        header: self.header(Some(self.error_from(e))),
                        ids: vec![],
                    }))
                }
            };
            let ids = (0..u64::from(req.split_count))
                .map(|i| {
                    let base = first + i * u64::from(per_split);
                    SplitId {
                        new_region_id: base,
                        new_peer_ids: (1..u64::from(per_split)).map(|j| base + j).collect(),
                    }
                })
                .collect();
            Ok(Response::new(AskBatchSplitResponse {
                header: self.header(None),
                ids,
            }))
        })
        .await
    }

    async fn report_batch_split(
        &self,
        request: Request<ReportBatchSplitRequest>,
    ) -> Result<Response<ReportBatchSplitResponse>, Status> {
        observe_grpc("ReportBatchSplit", async {
            let req = request.into_inner();
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(ReportBatchSplitResponse {
                    header: self.header(Some(e)),
                }));
            }
            for region in req.regions {
                // Keep the leader we know if it is still a member; the new
                // regions' leaders arrive with their first heartbeats.
                let (leader, term) = self.raft.read_state(|s| {
                    let known = s.regions.get(&region.id);
                    let leader = known
                        .and_then(|i| i.leader)
                        .filter(|l| region.peers.iter().any(|p| p.id == l.id));
                    (leader, known.map(|i| i.term).unwrap_or(0))
                });
                let info = RegionInfo {
                    region: Some(region),
                    leader,
                    term,
                    ..Default::default()
                };
                if let Err(e) = self
                    .raft
                    .propose(CoordinatorCommand {
                        cmd: Some(coordinator_command::Cmd::PutRegion(info)),
                    })
                    .await
                {
                    return Ok(Response::new(ReportBatchSplitResponse {
                        header: self.header(Some(self.error_from(e))),
                    }));
                }
            }
            Ok(Response::new(ReportBatchSplitResponse {
                header: self.header(None),
            }))
        })
        .await
    }

    async fn get_operators(
        &self,
        request: Request<GetOperatorsRequest>,
    ) -> Result<Response<GetOperatorsResponse>, Status> {
        observe_grpc("GetOperators", async {
            let req = request.into_inner();
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(GetOperatorsResponse {
                    header: self.header(Some(e)),
                    operators: vec![],
                }));
            }
            Ok(Response::new(GetOperatorsResponse {
                header: self.header(None),
                operators: self.operators.list(req.region_id, req.include_history),
            }))
        })
        .await
    }

    async fn add_operator(
        &self,
        request: Request<AddOperatorRequest>,
    ) -> Result<Response<AddOperatorResponse>, Status> {
        observe_grpc("AddOperator", async {
            match self.add_manual_operator(request.into_inner()).await {
                Ok(op) => Ok(Response::new(AddOperatorResponse {
                    header: self.header(None),
                    operator: Some(op),
                })),
                Err(e) => Ok(Response::new(AddOperatorResponse {
                    header: self.header(Some(e)),
                    operator: None,
                })),
            }
        })
        .await
    }

    async fn cancel_operator(
        &self,
        request: Request<CancelOperatorRequest>,
    ) -> Result<Response<CancelOperatorResponse>, Status> {
        observe_grpc("CancelOperator", async {
            let id = request.into_inner().operator_id;
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(CancelOperatorResponse {
                    header: self.header(Some(e)),
                }));
            }
            let error = match self.operators.cancel(id, "cancelled by request") {
                Some(_) => None,
                None => Some(err(
                    ErrorType::NotFound,
                    format!("operator {id} is not in flight"),
                )),
            };
            Ok(Response::new(CancelOperatorResponse {
                header: self.header(error),
            }))
        })
        .await
    }

    async fn get_schedulers(
        &self,
        _request: Request<GetSchedulersRequest>,
    ) -> Result<Response<GetSchedulersResponse>, Status> {
        observe_grpc("GetSchedulers", async {
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(GetSchedulersResponse {
                    header: self.header(Some(e)),
                    schedulers: vec![],
                }));
            }
            let paused = self.raft.read_state(|s| s.paused_schedulers.clone());
            let schedulers = scheduler::ALL
                .iter()
                .map(|name| Scheduler {
                    name: name.to_string(),
                    paused: paused.contains(*name),
                    rate_limit_per_min: 0,
                    max_in_flight: self.limit_of(name),
                    in_flight: self.operators.in_flight(name) as u32,
                })
                .collect();
            Ok(Response::new(GetSchedulersResponse {
                header: self.header(None),
                schedulers,
            }))
        })
        .await
    }

    async fn pause_scheduler(
        &self,
        request: Request<PauseSchedulerRequest>,
    ) -> Result<Response<PauseSchedulerResponse>, Status> {
        observe_grpc("PauseScheduler", async {
            let req = request.into_inner();
            if !scheduler::ALL.contains(&req.name.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "unknown scheduler {:?}; known: {}",
                    req.name,
                    scheduler::ALL.join(", ")
                )));
            }
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(PauseSchedulerResponse {
                    header: self.header(Some(e)),
                }));
            }
            let name = req.name.clone();
            let error = match self
                .raft
                .propose(CoordinatorCommand {
                    cmd: Some(coordinator_command::Cmd::PauseScheduler(req.clone())),
                })
                .await
            {
                Ok(_) => {
                    info!(scheduler = %name, paused = req.pause, "scheduler pause changed");
                    None
                }
                Err(e) => Some(self.error_from(e)),
            };
            Ok(Response::new(PauseSchedulerResponse {
                header: self.header(error),
            }))
        })
        .await
    }

    async fn delete_store(
        &self,
        request: Request<DeleteStoreRequest>,
    ) -> Result<Response<DeleteStoreResponse>, Status> {
        observe_grpc("DeleteStore", async {
            let id = request.into_inner().store_id;
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(DeleteStoreResponse {
                    header: self.header(Some(e)),
                }));
            }
            let (store, others) = self.raft.read_state(|s| {
                let others = s
                    .stores
                    .values()
                    .filter(|o| o.id != id)
                    .filter(|o| !matches!(o.state(), StoreState::Offline | StoreState::Tombstone))
                    .count();
                (s.stores.get(&id).cloned(), others)
            });
            let refuse = |kind, msg: String| {
                Ok(Response::new(DeleteStoreResponse {
                    header: self.header(Some(err(kind, msg))),
                }))
            };
            let Some(mut store) = store else {
                return refuse(ErrorType::NotFound, format!("store {id} not found"));
            };
            match store.state() {
                StoreState::Tombstone => {
                    return refuse(
                        ErrorType::StoreTombstone,
                        format!("store {id} is already a tombstone"),
                    )
                }
                // Already being decommissioned.
                StoreState::Offline => {
                    return Ok(Response::new(DeleteStoreResponse {
                        header: self.header(None),
                    }))
                }
                _ => {}
            }
            if others < self.config.max_replicas {
                return refuse(
                    ErrorType::InvalidArgument,
                    format!(
                        "deleting store {id} would leave {others} stores for {} replicas per region",
                        self.config.max_replicas
                    ),
                );
            }
            store.state = StoreState::Offline as i32;
            let error = match self
                .raft
                .propose(CoordinatorCommand {
                    cmd: Some(coordinator_command::Cmd::PutStore(store)),
                })
                .await
            {
                Ok(ApplyResult::Ok) => {
                    info!(store_id = id, "store is offline: moving its replicas away");
                    None
                }
                Ok(other) => Some(err(ErrorType::Unknown, format!("{other:?}"))),
                Err(e) => Some(self.error_from(e)),
            };
            Ok(Response::new(DeleteStoreResponse {
                header: self.header(error),
            }))
        })
        .await
    }

    async fn get_gc_safe_point(
        &self,
        _request: Request<GetGcSafePointRequest>,
    ) -> Result<Response<GetGcSafePointResponse>, Status> {
        observe_grpc("GetGcSafePoint", async {
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(GetGcSafePointResponse {
                    header: self.header(Some(e)),
                    safe_point: 0,
                }));
            }
            Ok(Response::new(GetGcSafePointResponse {
                header: self.header(None),
                safe_point: self.raft.read_state(|s| s.gc_safe_point),
            }))
        })
        .await
    }

    async fn update_gc_safe_point(
        &self,
        request: Request<UpdateGcSafePointRequest>,
    ) -> Result<Response<UpdateGcSafePointResponse>, Status> {
        observe_grpc("UpdateGcSafePoint", async {
            let wanted = request.into_inner().safe_point;
            if wanted >> 18 > crate::tso::now_ms() {
                return Err(Status::invalid_argument(
                    "safe point is in the future: versions live transactions read would be dropped",
                ));
            }
            if let Some(e) = self.check_leader() {
                return Ok(Response::new(UpdateGcSafePointResponse {
                    header: self.header(Some(e)),
                    new_safe_point: 0,
                }));
            }
            match self.raise_gc_safe_point(wanted).await {
                Ok(sp) => Ok(Response::new(UpdateGcSafePointResponse {
                    header: self.header(None),
                    new_safe_point: sp,
                })),
                Err(e) => Ok(Response::new(UpdateGcSafePointResponse {
                    header: self.header(Some(self.error_from(e))),
                    new_safe_point: 0,
                })),
            }
        })
        .await
    }
}

impl CoordinatorService {
    async fn serve_tso(&self, count: u32) -> TsoResponse {
        if let Some(e) = self.check_leader() {
            return TsoResponse {
                header: self.header(Some(e)),
                first: 0,
                count: 0,
            };
        }
        metrics::TSO_REQUESTS.inc();
        let count = count.clamp(1, crate::tso::MAX_BATCH);
        match self.tso.next(count).await {
            Ok(first) => {
                metrics::TSO_TIMESTAMPS.inc_by(u64::from(count));
                TsoResponse {
                    header: self.header(None),
                    first,
                    count,
                }
            }
            Err(e) => TsoResponse {
                header: self.header(Some(self.error_from(e))),
                first: 0,
                count: 0,
            },
        }
    }

    fn touch_store(&self, store_id: u64, stats: Option<StoreStats>) {
        let mut l = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        let entry = l.entry(store_id).or_insert_with(|| Liveness {
            last_heartbeat: Instant::now(),
            last_heartbeat_ms: now_ms(),
            stats: StoreStats {
                store_id,
                ..Default::default()
            },
        });
        entry.last_heartbeat = Instant::now();
        entry.last_heartbeat_ms = now_ms();
        if let Some(s) = stats {
            entry.stats = s;
        }
    }

    fn region_response(
        &self,
        info: Option<RegionInfo>,
        missing: impl FnOnce() -> String,
    ) -> GetRegionResponse {
        match info {
            Some(info) => GetRegionResponse {
                header: self.header(None),
                region: info.region,
                leader: info.leader,
            },
            None => GetRegionResponse {
                header: self.header(Some(err(ErrorType::NotFound, missing()))),
                region: None,
                leader: None,
            },
        }
    }
}
