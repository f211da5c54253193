//! Splitting a region from outside the raftstore: the driver that asks the
//! coordinator for new ids and proposes the split through the router. Where
//! to cut is `region_size`'s; the split itself is a `BatchSplit` command
//! every replica applies (`raftstore::admin::split`).

use nokv_proto::metapb::{Peer, Region};
use nokv_proto::raft_cmdpb::BatchSplitRequest;

/// Why a split did not happen.
#[derive(Debug)]
pub enum SplitFailure {
    /// The region refused it (not leader, stale epoch, ...).
    Region(nokv_proto::errorpb::RegionError),
    /// The coordinator could not hand out ids.
    Unavailable(String),
    /// The split applied but produced no regions (a bug).
    Internal(String),
}

/// Runs a split of `region` at `key` on this store (its leader): asks the
/// coordinator for ids, proposes `BatchSplit`, waits for it to apply, and
/// reports the result. Every stage is recorded as a transition.
pub struct SplitDriver {
    /// The raftstore.
    pub router: crate::raftstore::Router,
    /// The coordinator.
    pub coordinator: nokv_client::CoordinatorClient,
    /// Where the transition is recorded.
    pub diagnostics: std::sync::Arc<crate::diagnostics::Diagnostics>,
}

impl SplitDriver {
    /// Splits `region` (as this leader's `peer` sees it) at `key`.
    pub async fn split(
        &self,
        region: Region,
        peer: Option<Peer>,
        key: Vec<u8>,
        why: &str,
    ) -> std::result::Result<Vec<Region>, SplitFailure> {
        use nokv_proto::adminpb::{RequestClass, TransitionStage};
        use nokv_proto::raft_cmdpb::{
            admin_request, admin_response, AdminRequest, RaftCmdRequest, RaftRequestHeader,
            SplitRequest,
        };
        let t = self.diagnostics.plan(
            region.id,
            "split",
            format!("{why} at key {:?}", String::from_utf8_lossy(&key)),
        );
        let ids = match self.coordinator.ask_batch_split(region.clone(), 1).await {
            Ok(ids) => ids,
            Err(e) => {
                let msg = format!("asking the coordinator for split ids: {e}");
                self.diagnostics.fail(t, msg.clone());
                return Err(SplitFailure::Unavailable(msg));
            }
        };
        let Some(id) = ids.into_iter().next() else {
            self.diagnostics
                .fail(t, "coordinator returned no split ids");
            return Err(SplitFailure::Unavailable(
                "coordinator returned no split ids".into(),
            ));
        };
        let cmd = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: region.id,
                peer,
                region_epoch: region.epoch,
                ..Default::default()
            }),
            requests: Vec::new(),
            admin_request: Some(AdminRequest {
                cmd: Some(admin_request::Cmd::BatchSplit(BatchSplitRequest {
                    requests: vec![SplitRequest {
                        split_key: key,
                        new_region_id: id.new_region_id,
                        new_peer_ids: id.new_peer_ids,
                    }],
                    right_derive: false,
                })),
            }),
            ..Default::default()
        };
        self.diagnostics.advance(t, TransitionStage::Proposed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = crate::raftstore::msg::StoreMsg::Command {
            cmd,
            cb: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        let resp = if let Err(busy) = self.router.send(msg) {
            Err(busy.0)
        } else {
            match tokio::time::timeout(std::time::Duration::from_secs(10), rx).await {
                Ok(Ok(r)) => r,
                _ => Err(crate::region::timeout(region.id)),
            }
        }
        .and_then(crate::raftstore::msg::command_result);
        self.diagnostics
            .admit_result(region.id, RequestClass::Topology, &resp);
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.diagnostics.fail(t, e.message.clone());
                return Err(SplitFailure::Region(e));
            }
        };
        self.diagnostics.advance(t, TransitionStage::Applied);
        let regions = match resp.admin_response.and_then(|a| a.cmd) {
            Some(admin_response::Cmd::BatchSplit(b)) => b.regions,
            _ => return Err(SplitFailure::Internal("split produced no regions".into())),
        };
        match self.coordinator.report_batch_split(regions.clone()).await {
            Ok(()) => self.diagnostics.advance(t, TransitionStage::Reported),
            // Heartbeats from the new leaders will tell the coordinator too.
            Err(e) => {
                tracing::warn!(region_id = region.id, error = %e, "reporting the split failed")
            }
        }
        Ok(regions)
    }
}
