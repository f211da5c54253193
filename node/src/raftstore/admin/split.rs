//! Region split: the regions a `BatchSplit` produces, and how every replica
//! applies it (the region shrinks, each new region on this store gets its
//! initial state and a copy of the session table).

use nokv_proto::metapb::{Peer as PeerMeta, Region, RegionEpoch};
use nokv_proto::raft_cmdpb::{
    admin_response, AdminResponse, BatchSplitRequest, RaftCmdResponse, RaftResponseHeader,
};
use nokv_proto::raft_serverpb::PeerState;
use rocksdb::{WriteBatch, DB};
use tracing::{info, warn};

use crate::raftstore::msg::error_response;
use crate::raftstore::peer::Peer;
use crate::Result;

/// The regions a split of `region` produces: first the region itself with
/// its shrunk range, then each new region in key order. All carry the new
/// epoch `version`. Errors say why the request is invalid for this region.
pub fn derive_regions(
    region: &Region,
    req: &BatchSplitRequest,
) -> std::result::Result<Vec<Region>, String> {
    if req.requests.is_empty() {
        return Err("no split keys".into());
    }
    if req.right_derive {
        return Err("right-derived splits are not supported".into());
    }
    let mut prev = region.start_key.clone();
    for (i, s) in req.requests.iter().enumerate() {
        if s.split_key.is_empty() || s.split_key <= prev {
            return Err(format!("split key #{i} is not above the previous bound"));
        }
        if !region.end_key.is_empty() && s.split_key >= region.end_key {
            return Err(format!("split key #{i} is not below the region's end"));
        }
        if s.new_region_id == 0 || s.new_region_id == region.id {
            return Err(format!("split #{i} has an invalid new region id"));
        }
        if s.new_peer_ids.len() != region.peers.len() {
            return Err(format!(
                "split #{i} has {} new peer ids for {} peers",
                s.new_peer_ids.len(),
                region.peers.len()
            ));
        }
        prev = s.split_key.clone();
    }
    let old = region.epoch.unwrap_or_default();
    let epoch = RegionEpoch {
        conf_ver: old.conf_ver,
        version: old.version + req.requests.len() as u64,
    };
    let mut out = Vec::with_capacity(req.requests.len() + 1);
    out.push(Region {
        end_key: req.requests[0].split_key.clone(),
        epoch: Some(epoch),
        ..region.clone()
    });
    for (i, s) in req.requests.iter().enumerate() {
        let end = req
            .requests
            .get(i + 1)
            .map(|n| n.split_key.clone())
            .unwrap_or_else(|| region.end_key.clone());
        out.push(Region {
            id: s.new_region_id,
            start_key: s.split_key.clone(),
            end_key: end,
            epoch: Some(epoch),
            peers: region
                .peers
                .iter()
                .zip(&s.new_peer_ids)
                .map(|(p, id)| PeerMeta {
                    id: *id,
                    store_id: p.store_id,
                    role: p.role,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Applies a split to this replica, in `wb`.
pub(crate) fn apply_batch_split(
    peer: &mut Peer,
    db: &DB,
    req: BatchSplitRequest,
    wb: &mut WriteBatch,
) -> Result<RaftCmdResponse> {
    let regions = match derive_regions(&peer.region, &req) {
        Ok(r) => r,
        Err(why) => {
            warn!(region_id = peer.region.id, %why, "split rejected at apply");
            return Ok(error_response(nokv_proto::errorpb::RegionError {
                message: format!("split rejected: {why}"),
                kind: None,
            }));
        }
    };
    // regions[0] is this region, shrunk; the rest are new.
    peer.region = regions[0].clone();
    peer.persist_region(db, PeerState::Normal, wb)?;
    for r in &regions[1..] {
        if r.peers.iter().any(|p| p.store_id == peer.meta.store_id) {
            crate::raftstore::peer::write_initial_state(db, r, wb)?;
            // A repeat of a write that applied before the split reaches
            // whichever side now holds its keys: both know it.
            let mut sessions = peer.sessions.lock().clone();
            sessions.write_all(db, r.id, wb)?;
            peer.pending_splits.push(r.clone());
        }
    }
    peer.heartbeat_due = true;
    // The old count covered the range before the split.
    peer.size_measured = false;
    peer.written_since_split_check = true;
    info!(
        region_id = peer.region.id,
        new_regions = ?regions[1..].iter().map(|r| r.id).collect::<Vec<_>>(),
        "split applied"
    );
    Ok(RaftCmdResponse {
        header: Some(RaftResponseHeader::default()),
        responses: Vec::new(),
        admin_response: Some(AdminResponse {
            cmd: Some(admin_response::Cmd::BatchSplit(
                nokv_proto::raft_cmdpb::BatchSplitResponse { regions },
            )),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::raft_cmdpb::SplitRequest;

    fn region() -> Region {
        Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"y".to_vec(),
            epoch: Some(RegionEpoch {
                conf_ver: 3,
                version: 4,
            }),
            peers: vec![
                PeerMeta {
                    id: 10,
                    store_id: 1,
                    role: 0,
                },
                PeerMeta {
                    id: 11,
                    store_id: 2,
                    role: 1,
                },
            ],
        }
    }

    fn split(key: &[u8], id: u64) -> SplitRequest {
        SplitRequest {
            split_key: key.to_vec(),
            new_region_id: id,
            new_peer_ids: vec![id * 10, id * 10 + 1],
        }
    }

    #[test]
    fn two_splits_tile_the_original_range_with_a_new_version() {
        let req = BatchSplitRequest {
            requests: vec![split(b"g", 5), split(b"p", 6)],
            right_derive: false,
        };
        let rs = derive_regions(&region(), &req).expect("valid");
        let ranges: Vec<(&[u8], &[u8])> = rs
            .iter()
            .map(|r| (&r.start_key[..], &r.end_key[..]))
            .collect();
        assert_eq!(
            ranges,
            vec![(&b"b"[..], &b"g"[..]), (b"g", b"p"), (b"p", b"y")]
        );
        assert!(rs.iter().all(|r| r.epoch
            == Some(RegionEpoch {
                conf_ver: 3,
                version: 6
            })));
        assert_eq!(
            rs[1].peers[1],
            PeerMeta {
                id: 51,
                store_id: 2,
                role: 1
            },
            "same stores and roles"
        );
        assert_eq!(rs[0].id, 1);
    }

    #[test]
    fn invalid_splits_are_rejected() {
        let bad = |reqs: Vec<SplitRequest>| {
            derive_regions(
                &region(),
                &BatchSplitRequest {
                    requests: reqs,
                    right_derive: false,
                },
            )
        };
        assert!(bad(vec![]).is_err());
        assert!(bad(vec![split(b"b", 5)]).is_err(), "at the start key");
        assert!(bad(vec![split(b"z", 5)]).is_err(), "past the end");
        assert!(
            bad(vec![split(b"p", 5), split(b"g", 6)]).is_err(),
            "unordered"
        );
        let mut short = split(b"g", 5);
        short.new_peer_ids.pop();
        assert!(bad(vec![short]).is_err(), "missing peer id");
    }
}
