//! The per-store `Admin` service: region status, store stats, and manual
//! split, merge, leader transfer and peer changes, and execution
//! diagnostics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_client::CoordinatorClient;
use nokv_consensus::metrics::observe_grpc;
use nokv_proto::adminpb::admin_server::Admin;
use nokv_proto::adminpb::*;
use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb::{Peer, PeerRole};
use nokv_proto::raft_cmdpb::{admin_response, ChangePeerRequest as CmdChangePeer, ConfChangeType};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::diagnostics::Diagnostics;
use crate::engine::{DbHandle, ALL_CFS};
use crate::raftstore::msg::StoreMsg;
use crate::raftstore::{Router, StoreCounters};
use crate::region::timeout;
use crate::worker::heartbeat::disk_space;

const WAIT: Duration = Duration::from_secs(10);
/// How long a MergeRegion call waits for the merge to commit or roll back.
const MERGE_WAIT: Duration = Duration::from_secs(30);

/// The admin service of one store.
pub struct AdminService {
    router: Router,
    store_id: u64,
    db: Arc<DbHandle>,
    data_dir: std::path::PathBuf,
    counters: Arc<StoreCounters>,
    coordinator: CoordinatorClient,
    started: Instant,
    diagnostics: Arc<Diagnostics>,
}

impl AdminService {
    /// Creates the service.
    pub fn new(
        router: Router,
        store_id: u64,
        db: Arc<DbHandle>,
        data_dir: std::path::PathBuf,
        counters: Arc<StoreCounters>,
        coordinator: CoordinatorClient,
        diagnostics: Arc<Diagnostics>,
    ) -> Self {
        AdminService {
            router,
            store_id,
            db,
            data_dir,
            counters,
            coordinator,
            started: Instant::now(),
            diagnostics,
        }
    }

    /// Follows a started leader transfer for a few seconds and records
    /// whether leadership moved.
    fn watch_transfer(&self, transition: u64, region_id: u64, target_peer: u64) {
        let router = self.router.clone();
        let diagnostics = self.diagnostics.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let (tx, rx) = oneshot::channel();
                let msg = StoreMsg::Status {
                    region_id: Some(region_id),
                    cb: Box::new(move |s| {
                        let _ = tx.send(s);
                    }),
                };
                if router.send(msg).is_ok() {
                    if let Ok(s) = rx.await {
                        if s.first().is_some_and(|s| s.leader_peer_id == target_peer) {
                            diagnostics.advance(transition, TransitionStage::Applied);
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            diagnostics.fail(transition, "leadership did not move within 5 s");
        });
    }

    /// Waits until the frozen `source` is gone from this store (merged:
    /// answers the grown target) or unfrozen (rolled back: the error).
    async fn wait_merge(
        &self,
        source: u64,
        target: u64,
    ) -> Result<Result<nokv_proto::metapb::Region, RegionError>, Status> {
        let deadline = Instant::now() + MERGE_WAIT;
        loop {
            let src = self
                .ask(source, |cb| StoreMsg::Status {
                    region_id: Some(source),
                    cb,
                })
                .await
                .map_err(|e| Status::unavailable(e.message))?;
            match src.first() {
                None => {
                    let tgt = self
                        .ask(target, |cb| StoreMsg::Status {
                            region_id: Some(target),
                            cb,
                        })
                        .await
                        .map_err(|e| Status::unavailable(e.message))?;
                    return match tgt.into_iter().next().and_then(|s| s.region) {
                        Some(r) => Ok(Ok(r)),
                        None => Ok(Err(crate::region::region_not_found(target))),
                    };
                }
                Some(s) if s.merging_into == 0 => {
                    return Ok(Err(RegionError {
                        message: format!(
                            "merge of region {source} into {target} rolled back: the target changed"
                        ),
                        kind: None,
                    }))
                }
                Some(_) => {}
            }
            if Instant::now() > deadline {
                return Err(Status::deadline_exceeded(format!(
                    "region {source} is frozen for the merge but it has not committed within {} s; \
                     it goes on in the background (see `nokv execution --region {source}`)",
                    MERGE_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Marks the merge transition reported once the coordinator routes by
    /// the grown target region.
    fn watch_report(&self, transition: u64, merged: nokv_proto::metapb::Region) {
        let coordinator = self.coordinator.clone();
        let diagnostics = self.diagnostics.clone();
        tokio::spawn(async move {
            let want = merged.epoch.map_or(0, |e| e.version);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(r) = coordinator.get_region_by_id(merged.id).await {
                    if r.region
                        .and_then(|r| r.epoch)
                        .is_some_and(|e| e.version >= want)
                    {
                        diagnostics.advance(transition, TransitionStage::Reported);
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// The status of `region_id` if this store leads it, else the region
    /// error to answer with.
    async fn leader_status(
        &self,
        region_id: u64,
    ) -> Result<Result<RegionStatus, RegionError>, Status> {
        let statuses = self
            .ask(region_id, |cb| StoreMsg::Status {
                region_id: Some(region_id),
                cb,
            })
            .await
            .map_err(|e| Status::unavailable(e.message))?;
        let Some(status) = statuses.into_iter().next() else {
            return Ok(Err(crate::region::region_not_found(region_id)));
        };
        if !status.is_leader {
            let leader = status.region.as_ref().and_then(|r| {
                r.peers
                    .iter()
                    .find(|p| p.id == status.leader_peer_id)
                    .copied()
            });
            return Ok(Err(crate::region::not_leader(region_id, leader)));
        }
        Ok(Ok(status))
    }

    async fn ask<T: Send + 'static>(
        &self,
        region_id: u64,
        make: impl FnOnce(Box<dyn FnOnce(T) + Send>) -> StoreMsg,
    ) -> Result<T, RegionError> {
        let (tx, rx) = oneshot::channel();
        let msg = make(Box::new(move |v| {
            let _ = tx.send(v);
        }));
        if let Err(busy) = self.router.send(msg) {
            return Err(busy.0);
        }
        match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(timeout(region_id)),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn region_status(
        &self,
        request: Request<RegionStatusRequest>,
    ) -> Result<Response<RegionStatusResponse>, Status> {
        observe_grpc("RegionStatus", async {
            let id = request.into_inner().region_id;
            let filter = (id != 0).then_some(id);
            let regions = self
                .ask(id, |cb| StoreMsg::Status {
                    region_id: filter,
                    cb,
                })
                .await
                .map_err(|e| Status::unavailable(e.message))?;
            Ok(Response::new(RegionStatusResponse {
                store_id: self.store_id,
                regions,
            }))
        })
        .await
    }

    async fn execution_status(
        &self,
        request: Request<ExecutionStatusRequest>,
    ) -> Result<Response<ExecutionStatusResponse>, Status> {
        observe_grpc("ExecutionStatus", async {
            let req = request.into_inner();
            let (regions, transitions, restart) =
                self.diagnostics.report(req.region_id, req.transition_id);
            Ok(Response::new(ExecutionStatusResponse {
                store_id: self.store_id,
                regions,
                transitions,
                restart: Some(restart),
            }))
        })
        .await
    }

    async fn split_region(
        &self,
        request: Request<SplitRegionRequest>,
    ) -> Result<Response<SplitRegionResponse>, Status> {
        observe_grpc("SplitRegion", async {
            let req = request.into_inner();
            if req.region_id == 0 {
                return Err(Status::invalid_argument("region_id is required"));
            }
            if req.half != req.split_key.is_empty() {
                return Err(Status::invalid_argument(
                    "give exactly one of split_key and half",
                ));
            }
            let status = self.leader_status(req.region_id).await?;
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    return Ok(Response::new(SplitRegionResponse {
                        region_error: Some(e),
                        regions: vec![],
                    }))
                }
            };
            let region = status.region.clone().unwrap_or_default();
            let key = if req.half {
                let db = self
                    .db
                    .get()
                    .ok_or_else(|| Status::unavailable("store is stopping"))?;
                let r = region.clone();
                tokio::task::spawn_blocking(move || crate::worker::region_size::middle_key(&db, &r))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(|e| Status::internal(e.to_string()))?
                    .ok_or_else(|| {
                        Status::failed_precondition("region holds too few keys to split in half")
                    })?
            } else {
                req.split_key
            };
            if key <= region.start_key || (!region.end_key.is_empty() && key >= region.end_key) {
                return Err(Status::invalid_argument(
                    "split key must lie strictly inside the region",
                ));
            }
            let driver = crate::worker::split::SplitDriver {
                router: self.router.clone(),
                coordinator: self.coordinator.clone(),
                diagnostics: self.diagnostics.clone(),
            };
            let regions = match driver.split(region, status.peer, key, "operator").await {
                Ok(r) => r,
                Err(crate::worker::split::SplitFailure::Region(e)) => {
                    return Ok(Response::new(SplitRegionResponse {
                        region_error: Some(e),
                        regions: vec![],
                    }))
                }
                Err(crate::worker::split::SplitFailure::Unavailable(why)) => {
                    return Err(Status::unavailable(why))
                }
                Err(crate::worker::split::SplitFailure::Internal(why)) => {
                    return Err(Status::internal(why))
                }
            };
            Ok(Response::new(SplitRegionResponse {
                region_error: None,
                regions,
            }))
        })
        .await
    }

    async fn merge_region(
        &self,
        request: Request<MergeRegionRequest>,
    ) -> Result<Response<MergeRegionResponse>, Status> {
        observe_grpc("MergeRegion", async {
            let req = request.into_inner();
            let (source, target) = (req.source_region_id, req.target_region_id);
            if source == 0 || target == 0 || source == target {
                return Err(Status::invalid_argument(
                    "source_region_id and target_region_id are required and must differ",
                ));
            }
            let refused = |e: RegionError| {
                Ok(Response::new(MergeRegionResponse {
                    region_error: Some(e),
                    region: None,
                }))
            };
            let t = self.diagnostics.plan(
                source,
                "merge",
                format!("operator: merge region {source} into region {target}"),
            );
            let prepared = self
                .ask(source, |cb| StoreMsg::PrepareMerge {
                    source,
                    target,
                    transition: Some(t),
                    cb: Box::new(move |r| cb(r.and_then(crate::raftstore::msg::command_result))),
                })
                .await
                .and_then(|r| r);
            self.diagnostics
                .topology_result(source, t, &prepared, TransitionStage::Proposed);
            if let Err(e) = prepared {
                return refused(e);
            }
            let merged = match self.wait_merge(source, target).await? {
                Ok(region) => region,
                Err(e) => return refused(e),
            };
            self.watch_report(t, merged.clone());
            Ok(Response::new(MergeRegionResponse {
                region_error: None,
                region: Some(merged),
            }))
        })
        .await
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        observe_grpc("TransferLeader", async {
            let req = request.into_inner();
            if req.region_id == 0 || req.to_store_id == 0 {
                return Err(Status::invalid_argument(
                    "region_id and to_store_id are required",
                ));
            }
            let t = self.diagnostics.plan(
                req.region_id,
                "transfer_leader",
                format!("to store {}", req.to_store_id),
            );
            let result = self
                .ask(req.region_id, |cb| StoreMsg::TransferLeader {
                    region_id: req.region_id,
                    to_store: req.to_store_id,
                    cb,
                })
                .await
                .and_then(|r| r);
            self.diagnostics
                .topology_result(req.region_id, t, &result, TransitionStage::Proposed);
            if let Ok(target) = &result {
                self.watch_transfer(t, req.region_id, target.id);
            }
            Ok(Response::new(match result {
                Ok(leader) => TransferLeaderResponse {
                    region_error: None,
                    leader: Some(leader),
                },
                Err(e) => TransferLeaderResponse {
                    region_error: Some(e),
                    leader: None,
                },
            }))
        })
        .await
    }

    async fn change_peer(
        &self,
        request: Request<ChangePeerRequest>,
    ) -> Result<Response<ChangePeerResponse>, Status> {
        observe_grpc("ChangePeer", async {
            let req = request.into_inner();
            if req.region_id == 0 || req.store_id == 0 {
                return Err(Status::invalid_argument(
                    "region_id and store_id are required",
                ));
            }
            let (change_type, role) = match req.change() {
                PeerChange::AddVoter => (ConfChangeType::AddNode, PeerRole::Voter),
                PeerChange::AddLearner => (ConfChangeType::AddLearnerNode, PeerRole::Learner),
                PeerChange::Remove => (ConfChangeType::RemoveNode, PeerRole::Voter),
            };
            let mut peer_id = req.peer_id;
            if peer_id == 0 && req.change() != PeerChange::Remove {
                peer_id = self
                    .coordinator
                    .alloc_id(1)
                    .await
                    .map_err(|e| Status::unavailable(format!("allocating a peer id: {e}")))?;
            }
            let status = self
                .ask(req.region_id, |cb| StoreMsg::Status {
                    region_id: Some(req.region_id),
                    cb,
                })
                .await
                .map_err(|e| Status::unavailable(e.message))?;
            let region = status
                .first()
                .and_then(|s| s.region.clone())
                .ok_or_else(|| {
                    Status::not_found(format!("region {} is not on this store", req.region_id))
                })?;
            if req.change() == PeerChange::Remove
                && status.first().is_some_and(|s| {
                    s.is_leader && s.peer.is_some_and(|p| p.store_id == req.store_id)
                })
            {
                return Err(Status::failed_precondition(
                    "the peer to remove leads the region; transfer leadership away first",
                ));
            }
            if req.change() == PeerChange::Remove {
                peer_id = region
                    .peers
                    .iter()
                    .find(|p| p.store_id == req.store_id)
                    .map(|p| p.id)
                    .ok_or_else(|| {
                        Status::failed_precondition(format!(
                            "region {} has no peer on store {}",
                            req.region_id, req.store_id
                        ))
                    })?;
            }
            let change = CmdChangePeer {
                change_type: change_type as i32,
                peer: Some(Peer {
                    id: peer_id,
                    store_id: req.store_id,
                    role: role as i32,
                }),
            };
            let t = self.diagnostics.plan(
                req.region_id,
                "change_peer",
                format!(
                    "{:?} peer {peer_id} on store {}",
                    req.change(),
                    req.store_id
                ),
            );
            self.diagnostics.advance(t, TransitionStage::Proposed);
            let result = self
                .ask(req.region_id, |cb| StoreMsg::ChangePeer {
                    region_id: req.region_id,
                    change,
                    cb,
                })
                .await
                .and_then(|r| r)
                .and_then(crate::raftstore::msg::command_result);
            self.diagnostics
                .topology_result(req.region_id, t, &result, TransitionStage::Applied);
            Ok(Response::new(match result {
                Ok(resp) => ChangePeerResponse {
                    region_error: None,
                    region: resp.admin_response.and_then(|a| match a.cmd {
                        Some(admin_response::Cmd::ChangePeer(c)) => c.region,
                        _ => None,
                    }),
                },
                Err(e) => ChangePeerResponse {
                    region_error: Some(e),
                    region: None,
                },
            }))
        })
        .await
    }

    async fn store_stats(
        &self,
        _request: Request<StoreStatsRequest>,
    ) -> Result<Response<StoreStatsResponse>, Status> {
        observe_grpc("StoreStats", async {
            let db = self
                .db
                .get()
                .ok_or_else(|| Status::unavailable("store is stopping"))?;
            let dir = self.data_dir.clone();
            let (cap, avail, per_cf) = tokio::task::spawn_blocking(move || {
                let (cap, avail) = disk_space(&dir);
                let per_cf = ALL_CFS
                    .iter()
                    .filter_map(|name| {
                        let h = db.cf_handle(name)?;
                        let v = db
                            .property_int_value_cf(h, "rocksdb.total-sst-files-size")
                            .ok()
                            .flatten()?;
                        Some((name.to_string(), v))
                    })
                    .collect::<std::collections::HashMap<_, _>>();
                (cap, avail, per_cf)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(StoreStatsResponse {
                store_id: self.store_id,
                region_count: self.counters.regions.load(Ordering::Relaxed),
                leader_count: self.counters.leaders.load(Ordering::Relaxed),
                capacity_bytes: cap,
                used_bytes: per_cf.values().sum(),
                available_bytes: avail,
                uptime_ms: self.started.elapsed().as_millis() as u64,
                column_family_bytes: per_cf,
            }))
        })
        .await
    }
}
