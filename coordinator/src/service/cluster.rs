//! The cluster as a whole: the coordinator's members, and bootstrapping
//! the cluster's first store and region.

use nokv_proto::coordinatorpb::coordinator_command::Cmd;
use nokv_proto::coordinatorpb::{
    BootstrapRequest, BootstrapResponse, ErrorType, GetMembersResponse, IsBootstrappedResponse,
    RequestHeader,
};
use tonic::Status;
use tracing::info;

use super::{member_pb, refused, Answer, CoordinatorService};
use crate::state::ApplyResult;

impl CoordinatorService {
    /// `GetMembers`: every member, the leader once it is ready, and who
    /// answers.
    pub(super) async fn get_members(&self) -> Answer<GetMembersResponse> {
        let l = self.raft.leadership();
        let leader = if l.leader_id == self.self_id && !l.ready_leader {
            None
        } else {
            self.leader_member(l.leader_id)
        };
        Ok(GetMembersResponse {
            header: None,
            members: self.members.iter().map(member_pb).collect(),
            leader,
            responder: self.leader_member(self.self_id),
        })
    }

    /// `Bootstrap` (leader only): records the first store and region under
    /// a new cluster id, once.
    pub(super) async fn bootstrap(&self, req: BootstrapRequest) -> Answer<BootstrapResponse> {
        self.require_leader()?;
        let (Some(store), Some(region)) = (&req.store, &req.region) else {
            return Err(Status::invalid_argument("bootstrap needs a store and a region").into());
        };
        if store.id == 0 || region.id == 0 || region.peers.is_empty() {
            return Err(Status::invalid_argument(
                "bootstrap store, region and peer ids must be non-zero",
            )
            .into());
        }
        let already = || {
            refused(
                ErrorType::AlreadyBootstrapped,
                "cluster is already bootstrapped",
            )
        };
        if self.raft.read_state(|s| s.bootstrapped()) {
            return Err(already());
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
        let res = self.raft.propose(Cmd::Bootstrap(cmd)).await;
        match res.map_err(|e| self.error(e))? {
            ApplyResult::Ok => {
                info!(
                    cluster_id,
                    store_id = store.id,
                    region_id = region.id,
                    "cluster bootstrapped"
                );
                Ok(BootstrapResponse::default())
            }
            ApplyResult::AlreadyBootstrapped => Err(already()),
            other => Err(refused(ErrorType::Unknown, format!("{other:?}"))),
        }
    }

    /// `IsBootstrapped`: whether the applied state has a cluster id.
    pub(super) async fn is_bootstrapped(&self) -> Answer<IsBootstrappedResponse> {
        Ok(IsBootstrappedResponse {
            header: None,
            bootstrapped: self.raft.read_state(|s| s.bootstrapped()),
        })
    }
}
