//! Membership changes: validated and proposed as raft conf changes.

use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb;
use nokv_proto::metapb::{Peer as PeerMeta, PeerRole, Region};
use nokv_proto::raft_cmdpb::{
    admin_request, admin_response, AdminRequest, AdminResponse, ChangePeerRequest,
    ChangePeerResponse, ConfChangeType, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader,
    RaftResponseHeader,
};
use nokv_proto::raft_serverpb::PeerState;
use prost::Message as _;
use raft::prelude::ConfChange;
use rocksdb::{WriteBatch, DB};
use tracing::{info, warn};

use crate::raftstore::admission::EpochCheck;
use crate::raftstore::msg::{error_response, CmdCallback};
use crate::raftstore::peer::Peer;
use crate::raftstore::store::Raftstore;
use crate::region::{check_epoch, merging};
use crate::Result;

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
            return cb(Err(crate::region::merging(region_id)));
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

/// Applies a membership change entry to this replica, in `wb`: raft-rs
/// decides first, and the region follows only what raft accepted.
pub(crate) fn apply_conf_change(
    peer: &mut Peer,
    db: &DB,
    cc: &ConfChange,
    wb: &mut WriteBatch,
) -> Result<RaftCmdResponse> {
    let ctx = RaftCmdRequest::decode(cc.context.as_ref())?;
    // A membership change proposed before a split, merge or another
    // change applied is stale; a frozen merge source takes none. raft-rs
    // is not told, so both memberships stay as they were.
    let header = ctx.header.unwrap_or_default();
    if let Err(e) = check_epoch(&peer.region, header.region_epoch.as_ref(), true) {
        return Ok(error_response(e));
    }
    if peer.merge_state.is_some() {
        return Ok(error_response(merging(peer.region.id)));
    }
    let change = ctx.admin_request.and_then(|a| a.cmd).and_then(|c| match c {
        admin_request::Cmd::ChangePeer(c) => Some(c),
        _ => None,
    });
    let target = change.as_ref().and_then(|c| c.peer).unwrap_or(PeerMeta {
        id: cc.node_id,
        store_id: 0,
        role: 0,
    });
    // raft-rs decides first; the region follows only what raft accepted,
    // so the two memberships can never disagree.
    match peer.raft.apply_conf_change(cc) {
        Ok(()) => {}
        Err(e) => {
            warn!(region_id = peer.region.id, error = %e, "raft rejected conf change; region unchanged");
            return Ok(error_response(nokv_proto::errorpb::RegionError {
                message: format!("conf change rejected: {e}"),
                kind: None,
            }));
        }
    }
    let mut changed = true;
    match cc.get_change_type() {
        raft::prelude::ConfChangeType::AddNode => {
            match peer.region.peers.iter_mut().find(|p| p.id == cc.node_id) {
                Some(p) if p.role() == PeerRole::Voter => changed = false,
                Some(p) => p.role = PeerRole::Voter as i32,
                None => peer.region.peers.push(PeerMeta {
                    role: PeerRole::Voter as i32,
                    ..target
                }),
            }
        }
        raft::prelude::ConfChangeType::AddLearnerNode => {
            if peer.region.peers.iter().any(|p| p.id == cc.node_id) {
                changed = false;
            } else {
                peer.region.peers.push(PeerMeta {
                    role: PeerRole::Learner as i32,
                    ..target
                });
            }
        }
        raft::prelude::ConfChangeType::RemoveNode => {
            let before = peer.region.peers.len();
            peer.region.peers.retain(|p| p.id != cc.node_id);
            changed = before != peer.region.peers.len();
        }
    }
    if changed {
        let epoch = peer.region.epoch.get_or_insert_with(Default::default);
        epoch.conf_ver += 1;
        if let Some(me) = peer.region.peers.iter().find(|p| p.id == peer.meta.id) {
            peer.meta.role = me.role;
        }
        peer.persist_region(db, PeerState::Normal, wb)?;
        for p in &peer.region.peers {
            peer.peer_stores.insert(p.id, p.store_id);
        }
        peer.heartbeat_due = true;
        info!(
            region_id = peer.region.id,
            change = ?cc.get_change_type(),
            peer_id = cc.node_id,
            conf_ver = peer.region.epoch.as_ref().map(|e| e.conf_ver).unwrap_or(0),
            "conf change applied"
        );
    }
    if cc.node_id == peer.meta.id {
        // A later entry of the same batch may add this peer back (a
        // re-used peer id): only the last change decides.
        peer.pending_destroy = cc.get_change_type() == raft::prelude::ConfChangeType::RemoveNode;
    }
    Ok(RaftCmdResponse {
        header: Some(RaftResponseHeader::default()),
        responses: Vec::new(),
        admin_response: Some(AdminResponse {
            cmd: Some(admin_response::Cmd::ChangePeer(ChangePeerResponse {
                region: Some(peer.region.clone()),
            })),
        }),
    })
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
