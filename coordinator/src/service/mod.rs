//! The `Coordinator` gRPC service. Every handler reads the same way:
//! validate the request (a malformed one is answered with an
//! `INVALID_ARGUMENT` status), check leadership where the call is
//! leader-only, act (read the applied state, replicate a command, ask the
//! leader's view or its scheduling), and answer. A request that does not
//! fit the cluster now (not the leader, not found, a tombstone) is answered
//! with a typed error in the response header.
//!
//! The service keeps no state of its own: the applied state is behind the
//! [`RaftHandle`], what the leader learned from heartbeats in the
//! [`ClusterView`], operators are started by [`Scheduling`].
//!
//! # Layout
//! - `mod.rs`: [`CoordinatorService`], what every handler shares
//!   (leadership check, header errors, the answer), and the tonic trait
//!   impl, one line per method into the handler of its area.
//! - `cluster.rs`: members and bootstrap.
//! - `tso.rs`: timestamps and id allocation.
//! - `stores.rs`: store registration, heartbeats, lookup, decommission.
//! - `regions.rs`: region heartbeats, routing lookups, split ids and
//!   split reports.
//! - `scheduling.rs`: operators and schedulers.
//! - `gc.rs`: the GC safe point.

mod cluster;
mod gc;
mod regions;
mod scheduling;
mod stores;
mod tso;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_consensus::metrics::observe_grpc;
use nokv_proto::coordinatorpb::coordinator_server::Coordinator;
use nokv_proto::coordinatorpb::*;
use nokv_proto::metapb::Member;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster_view::ClusterView;
use crate::config::{CoordinatorConfig, MemberConfig};
use crate::id_alloc::IdAllocator;
use crate::metrics;
use crate::raft_loop::RaftHandle;
use crate::scheduling::Scheduling;
use crate::tso::Tso;
use crate::Error;

/// The coordinator service of one member.
pub struct CoordinatorService {
    /// Applied state, leadership, and replication of commands.
    raft: RaftHandle,
    /// Timestamps (leader only).
    tso: Tso,
    /// Ids for stores, regions, peers and operators (leader only).
    ids: Arc<IdAllocator>,
    /// Every member of the group, for `GetMembers` and leader hints.
    members: Vec<MemberConfig>,
    /// This member's id.
    self_id: u64,
    /// Limits the handlers check requests against.
    config: CoordinatorConfig,
    /// What this leader learned from heartbeats, operators included.
    view: Arc<ClusterView>,
    /// Operators from checkers, schedulers and by hand.
    scheduling: Scheduling,
}

/// The error a response header carries (the proto's `Error`, not the
/// crate's).
type HeaderError = nokv_proto::coordinatorpb::Error;

/// Why a request was not served, and how the answer says so.
enum Refused {
    /// A malformed request: a gRPC status (`INVALID_ARGUMENT`) instead of a
    /// response.
    Status(Status),
    /// A request that does not fit the cluster now: an otherwise empty
    /// response whose header carries the error.
    Header(HeaderError),
}

impl From<Status> for Refused {
    fn from(s: Status) -> Self {
        Refused::Status(s)
    }
}

/// What a handler answers: the response, or why there is none.
type Answer<T> = Result<T, Refused>;

/// A header error of `kind`.
fn refused(kind: ErrorType, message: impl Into<String>) -> Refused {
    Refused::Header(HeaderError {
        r#type: kind as i32,
        message: message.into(),
        leader: None,
    })
}

/// A Coordinator response: every one carries a `ResponseHeader`.
trait Headed: Default {
    /// The response's header.
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! headed {
    ($($response:ty),+ $(,)?) => {
        $(impl Headed for $response {
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        })+
    };
}

nokv_proto::coordinator_responses!(headed);

fn member_pb(m: &MemberConfig) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        address: m.address.clone(),
        status_address: m.status_address.clone(),
    }
}

impl CoordinatorService {
    /// Creates the service over a running raft loop.
    pub fn new(raft: RaftHandle, config: CoordinatorConfig, members: Vec<MemberConfig>) -> Self {
        let ids = Arc::new(IdAllocator::new(raft.clone(), config.id_window));
        let view = Arc::new(ClusterView::new(
            config.store_disconnect_ms,
            config.max_store_down_time_ms,
            Duration::from_millis(config.operator_step_timeout_ms),
        ));
        CoordinatorService {
            tso: Tso::new(raft.clone(), config.tso_save_window_ms),
            scheduling: Scheduling::new(raft.clone(), ids.clone(), view.clone(), config.clone()),
            ids,
            view,
            raft,
            self_id: config.id,
            members,
            config,
        }
    }

    /// One scheduling round on the leader; does nothing on a follower.
    pub async fn schedule_round(&self) {
        self.scheduling.round().await;
    }

    /// Refreshes gauges from the applied state; called periodically.
    pub fn refresh_metrics(&self) {
        let ready = self.raft.leadership().ready_leader;
        let (regions, stores) = self.raft.read_state(|s| {
            (
                s.regions.values().cloned().collect::<Vec<_>>(),
                s.stores.values().cloned().collect::<Vec<_>>(),
            )
        });
        let now = Instant::now();
        let states: Vec<_> = stores
            .iter()
            .map(|s| (s.id, self.view.live_state(s, ready, now).0))
            .collect();
        metrics::set_cluster_gauges(ready, &regions, &states);
    }

    fn header(&self, error: Option<HeaderError>) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.raft.read_state(|s| s.cluster_id),
            error,
        })
    }

    /// `Ok` when this member is the ready leader (the first check of a term
    /// resets the leader's view), else the NOT_LEADER answer.
    fn require_leader(&self) -> Answer<()> {
        let l = self.raft.leadership();
        if self.view.lead(l, Instant::now()) {
            return Ok(());
        }
        Err(Refused::Header(self.not_leader_error(l.leader_id)))
    }

    fn leader_member(&self, leader_id: u64) -> Option<Member> {
        self.members
            .iter()
            .find(|m| m.id == leader_id)
            .map(member_pb)
    }

    fn not_leader_error(&self, leader_id: u64) -> HeaderError {
        let leader = if leader_id == self.self_id {
            // We lead but have not caught up yet: report no leader so the
            // client retries shortly.
            None
        } else {
            self.leader_member(leader_id)
        };
        HeaderError {
            r#type: ErrorType::NotLeader as i32,
            message: format!("member {} is not the coordinator leader", self.self_id),
            leader,
        }
    }

    /// The crate's error as a header error: NOT_LEADER with the leader's
    /// address, anything else UNKNOWN.
    fn error(&self, e: Error) -> Refused {
        match e {
            Error::NotLeader { leader_id } => Refused::Header(self.not_leader_error(leader_id)),
            other => refused(ErrorType::Unknown, other.to_string()),
        }
    }

    /// Turns a handler's answer into the response: a response without a
    /// header gets a clean one; a header refusal becomes an otherwise
    /// empty response carrying the error.
    fn respond<T: Headed>(&self, answer: Answer<T>) -> Result<T, Status> {
        match answer {
            Ok(mut response) => {
                if response.header_mut().is_none() {
                    *response.header_mut() = self.header(None);
                }
                Ok(response)
            }
            Err(Refused::Header(e)) => {
                let mut response = T::default();
                *response.header_mut() = self.header(Some(e));
                Ok(response)
            }
            Err(Refused::Status(s)) => Err(s),
        }
    }
}

/// The tonic-facing handle of a [`CoordinatorService`] (streams need an
/// owned, cloneable service).
#[derive(Clone)]
pub struct CoordinatorGrpc(pub Arc<CoordinatorService>);

impl CoordinatorGrpc {
    /// Runs one unary handler, counted and timed as `method`.
    async fn serve<T: Headed>(
        &self,
        method: &'static str,
        handler: impl Future<Output = Answer<T>>,
    ) -> Result<Response<T>, Status> {
        observe_grpc(method, async {
            self.0.respond(handler.await).map(Response::new)
        })
        .await
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorGrpc {
    async fn get_members(
        &self,
        _request: Request<GetMembersRequest>,
    ) -> Result<Response<GetMembersResponse>, Status> {
        self.serve("GetMembers", self.0.get_members()).await
    }

    async fn bootstrap(
        &self,
        request: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        self.serve("Bootstrap", self.0.bootstrap(request.into_inner()))
            .await
    }

    async fn is_bootstrapped(
        &self,
        _request: Request<IsBootstrappedRequest>,
    ) -> Result<Response<IsBootstrappedResponse>, Status> {
        self.serve("IsBootstrapped", self.0.is_bootstrapped()).await
    }

    async fn alloc_id(
        &self,
        request: Request<AllocIdRequest>,
    ) -> Result<Response<AllocIdResponse>, Status> {
        self.serve("AllocId", self.0.alloc_id(request.into_inner()))
            .await
    }

    async fn get_timestamp(
        &self,
        request: Request<TsoRequest>,
    ) -> Result<Response<TsoResponse>, Status> {
        self.serve("GetTimestamp", self.0.get_timestamp(request.into_inner()))
            .await
    }

    type TsoStream = tso::TsoStream;

    async fn tso(
        &self,
        request: Request<Streaming<TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        Ok(Response::new(
            self.0.clone().tso_stream(request.into_inner()),
        ))
    }

    async fn put_store(
        &self,
        request: Request<PutStoreRequest>,
    ) -> Result<Response<PutStoreResponse>, Status> {
        self.serve("PutStore", self.0.put_store(request.into_inner()))
            .await
    }

    async fn get_store(
        &self,
        request: Request<GetStoreRequest>,
    ) -> Result<Response<GetStoreResponse>, Status> {
        self.serve("GetStore", self.0.get_store(request.into_inner()))
            .await
    }

    async fn get_all_stores(
        &self,
        request: Request<GetAllStoresRequest>,
    ) -> Result<Response<GetAllStoresResponse>, Status> {
        self.serve("GetAllStores", self.0.get_all_stores(request.into_inner()))
            .await
    }

    async fn store_heartbeat(
        &self,
        request: Request<StoreHeartbeatRequest>,
    ) -> Result<Response<StoreHeartbeatResponse>, Status> {
        self.serve(
            "StoreHeartbeat",
            self.0.store_heartbeat(request.into_inner()),
        )
        .await
    }

    async fn region_heartbeat(
        &self,
        request: Request<RegionHeartbeatRequest>,
    ) -> Result<Response<RegionHeartbeatResponse>, Status> {
        self.serve(
            "RegionHeartbeat",
            self.0.region_heartbeat(request.into_inner()),
        )
        .await
    }

    async fn get_region(
        &self,
        request: Request<GetRegionRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        self.serve("GetRegion", self.0.get_region(request.into_inner()))
            .await
    }

    async fn get_region_by_id(
        &self,
        request: Request<GetRegionByIdRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        self.serve(
            "GetRegionById",
            self.0.get_region_by_id(request.into_inner()),
        )
        .await
    }

    async fn scan_regions(
        &self,
        request: Request<ScanRegionsRequest>,
    ) -> Result<Response<ScanRegionsResponse>, Status> {
        self.serve("ScanRegions", self.0.scan_regions(request.into_inner()))
            .await
    }

    async fn ask_batch_split(
        &self,
        request: Request<AskBatchSplitRequest>,
    ) -> Result<Response<AskBatchSplitResponse>, Status> {
        self.serve(
            "AskBatchSplit",
            self.0.ask_batch_split(request.into_inner()),
        )
        .await
    }

    async fn report_batch_split(
        &self,
        request: Request<ReportBatchSplitRequest>,
    ) -> Result<Response<ReportBatchSplitResponse>, Status> {
        self.serve(
            "ReportBatchSplit",
            self.0.report_batch_split(request.into_inner()),
        )
        .await
    }

    async fn get_operators(
        &self,
        request: Request<GetOperatorsRequest>,
    ) -> Result<Response<GetOperatorsResponse>, Status> {
        self.serve("GetOperators", self.0.get_operators(request.into_inner()))
            .await
    }

    async fn add_operator(
        &self,
        request: Request<AddOperatorRequest>,
    ) -> Result<Response<AddOperatorResponse>, Status> {
        self.serve("AddOperator", self.0.add_operator(request.into_inner()))
            .await
    }

    async fn cancel_operator(
        &self,
        request: Request<CancelOperatorRequest>,
    ) -> Result<Response<CancelOperatorResponse>, Status> {
        self.serve(
            "CancelOperator",
            self.0.cancel_operator(request.into_inner()),
        )
        .await
    }

    async fn get_schedulers(
        &self,
        _request: Request<GetSchedulersRequest>,
    ) -> Result<Response<GetSchedulersResponse>, Status> {
        self.serve("GetSchedulers", self.0.get_schedulers()).await
    }

    async fn pause_scheduler(
        &self,
        request: Request<PauseSchedulerRequest>,
    ) -> Result<Response<PauseSchedulerResponse>, Status> {
        self.serve(
            "PauseScheduler",
            self.0.pause_scheduler(request.into_inner()),
        )
        .await
    }

    async fn delete_store(
        &self,
        request: Request<DeleteStoreRequest>,
    ) -> Result<Response<DeleteStoreResponse>, Status> {
        self.serve("DeleteStore", self.0.delete_store(request.into_inner()))
            .await
    }

    async fn get_gc_safe_point(
        &self,
        _request: Request<GetGcSafePointRequest>,
    ) -> Result<Response<GetGcSafePointResponse>, Status> {
        self.serve("GetGcSafePoint", self.0.get_gc_safe_point())
            .await
    }

    async fn update_gc_safe_point(
        &self,
        request: Request<UpdateGcSafePointRequest>,
    ) -> Result<Response<UpdateGcSafePointResponse>, Status> {
        self.serve(
            "UpdateGcSafePoint",
            self.0.update_gc_safe_point(request.into_inner()),
        )
        .await
    }
}

#[cfg(test)]
mod tests;
