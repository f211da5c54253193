//! Regions: heartbeats from region leaders (judged against the routing
//! table, recorded, answered with the next operator step), routing lookups,
//! and the ids and reports of splits.

use std::time::Instant;

use nokv_proto::coordinatorpb::coordinator_command::Cmd;
use nokv_proto::coordinatorpb::{
    AskBatchSplitRequest, AskBatchSplitResponse, ErrorType, GetRegionByIdRequest, GetRegionRequest,
    GetRegionResponse, RegionHeartbeatRequest, RegionHeartbeatResponse, RegionInfo,
    ReportBatchSplitRequest, ReportBatchSplitResponse, ScanRegionsRequest, ScanRegionsResponse,
    SplitId,
};
use tonic::Status;
use tracing::debug;

use super::{refused, Answer, CoordinatorService, Refused};
use crate::invariant;
use crate::state::ApplyResult;

impl CoordinatorService {
    /// `RegionHeartbeat` (leader only): admits the leader's report against
    /// the routing table, records the region's load, replicates a changed
    /// range, peer set or leader, and answers with the step the leader
    /// should run next. A refusal still names the region and its epoch.
    pub(super) async fn region_heartbeat(
        &self,
        hb: RegionHeartbeatRequest,
    ) -> Answer<RegionHeartbeatResponse> {
        let Some(region) = hb.region.clone() else {
            return Err(Status::invalid_argument("missing region").into());
        };
        let mut resp = RegionHeartbeatResponse {
            header: None,
            region_id: region.id,
            region_epoch: region.epoch,
            ..Default::default()
        };
        let refuse = |mut resp: RegionHeartbeatResponse, why: Refused| match why {
            Refused::Header(e) => {
                resp.header = self.header(Some(e));
                Ok(resp)
            }
            status => Err(status),
        };
        if let Err(e) = self.require_leader() {
            return refuse(resp, e);
        }
        let (verdict, changed) = self.raft.read_state(|s| {
            let verdict = invariant::admit_heartbeat(s, &region);
            let changed = match s.regions.get(&region.id) {
                Some(known) => known.region.as_ref() != Some(&region) || known.leader != hb.leader,
                None => true,
            };
            (verdict, changed)
        });
        if let Err(why) = verdict {
            debug!(region_id = region.id, reason = %why, "region heartbeat refused");
            return refuse(resp, refused(ErrorType::StaleRegion, why.to_string()));
        }
        self.view.record_region(&hb);
        if changed {
            let info = RegionInfo {
                region: Some(region.clone()),
                leader: hb.leader,
                term: hb.term,
                ..Default::default()
            };
            match self.raft.propose(Cmd::PutRegion(info)).await {
                Ok(ApplyResult::StaleRegion) => {
                    return refuse(
                        resp,
                        refused(ErrorType::StaleRegion, "region epoch is stale"),
                    );
                }
                Ok(_) => debug!(region_id = region.id, "region metadata updated"),
                Err(e) => return refuse(resp, self.error(e)),
            }
        }
        self.view.observe_range(&region, Instant::now());
        if let Some((operator_id, order)) = self.scheduling.next_order(&hb).await {
            order.fill(operator_id, &mut resp);
        }
        Ok(resp)
    }

    /// `GetRegion`: the region containing a key.
    pub(super) async fn get_region(&self, req: GetRegionRequest) -> Answer<GetRegionResponse> {
        let key = req.key;
        let info = self.raft.read_state(|s| s.region_by_key(&key).cloned());
        region_response(info, || format!("no region contains key {key:?}"))
    }

    /// `GetRegionById`: one region by id.
    pub(super) async fn get_region_by_id(
        &self,
        req: GetRegionByIdRequest,
    ) -> Answer<GetRegionResponse> {
        let id = req.region_id;
        let info = self.raft.read_state(|s| s.regions.get(&id).cloned());
        region_response(info, || format!("region {id} not found"))
    }

    /// `ScanRegions`: the regions overlapping a key range, in key order,
    /// with what their leaders last reported.
    pub(super) async fn scan_regions(
        &self,
        req: ScanRegionsRequest,
    ) -> Answer<ScanRegionsResponse> {
        if !req.end_key.is_empty() && req.end_key < req.start_key {
            return Err(Status::invalid_argument("end_key must not be below start_key").into());
        }
        let regions = self
            .raft
            .read_state(|s| s.scan(&req.start_key, &req.end_key, req.limit as usize));
        Ok(ScanRegionsResponse {
            header: None,
            regions: regions
                .into_iter()
                .map(|r| self.view.region_info(r))
                .collect(),
        })
    }

    /// `AskBatchSplit` (leader only): ids for the new regions of a split
    /// and for their peers, one per replica.
    pub(super) async fn ask_batch_split(
        &self,
        req: AskBatchSplitRequest,
    ) -> Answer<AskBatchSplitResponse> {
        let Some(region) = req.region else {
            return Err(Status::invalid_argument("missing region").into());
        };
        if req.split_count == 0 || req.split_count > 1000 {
            return Err(Status::invalid_argument("split_count must be 1..=1000").into());
        }
        self.require_leader()?;
        let per_split = 1 + region.peers.len() as u32;
        let first = self
            .ids
            .alloc(per_split * req.split_count)
            .await
            .map_err(|e| self.error(e))?;
        let ids = (0..u64::from(req.split_count))
            .map(|i| {
                let base = first + i * u64::from(per_split);
                SplitId {
                    new_region_id: base,
                    new_peer_ids: (1..u64::from(per_split)).map(|j| base + j).collect(),
                }
            })
            .collect();
        Ok(AskBatchSplitResponse { header: None, ids })
    }

    /// `ReportBatchSplit` (leader only): records the regions a split made,
    /// keeping the known leader where it is still a member.
    pub(super) async fn report_batch_split(
        &self,
        req: ReportBatchSplitRequest,
    ) -> Answer<ReportBatchSplitResponse> {
        self.require_leader()?;
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
            self.raft
                .propose(Cmd::PutRegion(info))
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(ReportBatchSplitResponse::default())
    }
}

/// A region lookup's answer: the region and its leader, or NOT_FOUND with
/// the `missing` message.
fn region_response(
    info: Option<RegionInfo>,
    missing: impl FnOnce() -> String,
) -> Answer<GetRegionResponse> {
    let Some(info) = info else {
        return Err(refused(ErrorType::NotFound, missing()));
    };
    Ok(GetRegionResponse {
        header: None,
        region: info.region,
        leader: info.leader,
    })
}
