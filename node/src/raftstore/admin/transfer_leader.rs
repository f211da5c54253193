//! Leader transfer: handed to raft-rs directly (not through the log),
//! refused when the target store holds no voter or lags.

use crate::raftstore::admission::EpochCheck;
use crate::raftstore::store::Raftstore;
use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb::{self};

impl Raftstore {
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
        let last = peer.raft.last_index();
        let matched = peer.raft.matched(target.id).unwrap_or(0);
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
}
