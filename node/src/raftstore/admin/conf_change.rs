//! Membership changes: validated and proposed as raft conf changes.

use crate::raftstore::admission::EpochCheck;
use crate::raftstore::msg::CmdCallback;
use crate::raftstore::store::Raftstore;
use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb::{self, Region};
use nokv_proto::raft_cmdpb::{
    admin_request, AdminRequest, ChangePeerRequest, ConfChangeType, RaftCmdRequest,
    RaftRequestHeader,
};
use prost::Message as _;
use raft::prelude::ConfChange;

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

impl Raftstore {
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
            Box::new(move |r| {
                cb(r.map_err(|e| {
                    crate::raftstore::peer::propose::map_propose_error(region_id, &peers, e)
                }))
            }),
        );
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
