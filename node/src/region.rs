//! Checks every region-addressed request passes, and the typed
//! `RegionError`s they answer with.

use nokv_proto::errorpb::{self, region_error::Kind, RegionError};
use nokv_proto::metapb::{Peer, PeerRole, Region, RegionEpoch};
use raft::prelude::ConfState;

/// A `NotLeader` error with the best leader hint available.
pub fn not_leader(region_id: u64, leader: Option<Peer>) -> RegionError {
    RegionError {
        message: format!("peer is not the leader of region {region_id}"),
        kind: Some(Kind::NotLeader(errorpb::NotLeader { region_id, leader })),
    }
}

/// A `RegionNotFound` error.
pub fn region_not_found(region_id: u64) -> RegionError {
    RegionError {
        message: format!("region {region_id} is not on this store"),
        kind: Some(Kind::RegionNotFound(errorpb::RegionNotFound { region_id })),
    }
}

/// An `EpochNotMatch` error carrying the current region.
pub fn epoch_not_match(current: &Region) -> RegionError {
    RegionError {
        message: format!("region {} epoch does not match", current.id),
        kind: Some(Kind::EpochNotMatch(errorpb::EpochNotMatch {
            current_regions: vec![current.clone()],
        })),
    }
}

/// A `ServerIsBusy` error.
pub fn server_is_busy(reason: &str) -> RegionError {
    RegionError {
        message: format!("server is busy: {reason}"),
        kind: Some(Kind::ServerIsBusy(errorpb::ServerIsBusy {
            reason: reason.to_string(),
            backoff_ms: 50,
        })),
    }
}

/// A `StaleCommand` error.
pub fn stale_command() -> RegionError {
    RegionError {
        message: "stale command: superseded by a newer leader".into(),
        kind: Some(Kind::StaleCommand(errorpb::StaleCommand {})),
    }
}

/// A `Timeout` error.
pub fn timeout(region_id: u64) -> RegionError {
    RegionError {
        message: format!("request to region {region_id} timed out inside the store"),
        kind: Some(Kind::Timeout(errorpb::Timeout { region_id })),
    }
}

/// The `RegionMerging` error of a region frozen by a merge.
pub fn merging(region_id: u64) -> RegionError {
    RegionError {
        message: format!("region {region_id} is frozen by a merge in progress"),
        kind: Some(Kind::RegionMerging(errorpb::RegionMerging { region_id })),
    }
}

/// A `StoreNotMatch` error.
pub fn store_not_match(requested: u64, actual: u64) -> RegionError {
    RegionError {
        message: format!("request for store {requested} reached store {actual}"),
        kind: Some(Kind::StoreNotMatch(errorpb::StoreNotMatch {
            request_store_id: requested,
            actual_store_id: actual,
        })),
    }
}

/// Checks the request's epoch. Data requests compare `version` (the key
/// range); admin requests compare `conf_ver` as well.
pub fn check_epoch(
    region: &Region,
    req: Option<&RegionEpoch>,
    check_conf_ver: bool,
) -> Result<(), RegionError> {
    let current = region.epoch.unwrap_or_default();
    let req = req.cloned().unwrap_or_default();
    if req.version != current.version || (check_conf_ver && req.conf_ver != current.conf_ver) {
        return Err(epoch_not_match(region));
    }
    Ok(())
}

/// Checks `key` is in `[start_key, end_key)`.
pub fn check_key(region: &Region, key: &[u8]) -> Result<(), RegionError> {
    if key < region.start_key.as_slice()
        || (!region.end_key.is_empty() && key >= region.end_key.as_slice())
    {
        return Err(RegionError {
            message: format!("key is not in region {}", region.id),
            kind: Some(Kind::KeyNotInRegion(errorpb::KeyNotInRegion {
                key: key.to_vec(),
                region_id: region.id,
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
            })),
        });
    }
    Ok(())
}

/// Checks `[start, end)` lies inside the region. An empty `start` means
/// the region's start and an empty `end` the region's end.
pub fn check_range(region: &Region, start: &[u8], end: &[u8]) -> Result<(), RegionError> {
    let start = if start.is_empty() {
        region.start_key.as_slice()
    } else {
        start
    };
    check_key(region, start)?;
    if !end.is_empty() && !region.end_key.is_empty() && end > region.end_key.as_slice() {
        return check_key(region, end);
    }
    Ok(())
}

/// The raft membership a region's peer list describes.
pub fn conf_state_of(region: &Region) -> ConfState {
    let mut cs = ConfState::default();
    for p in &region.peers {
        match p.role() {
            PeerRole::Learner => cs.learners.push(p.id),
            _ => cs.voters.push(p.id),
        }
    }
    cs
}

/// Whether two regions' ranges overlap.
pub fn overlaps(a: &Region, b: &Region) -> bool {
    (b.end_key.is_empty() || a.start_key < b.end_key)
        && (a.end_key.is_empty() || b.start_key < a.end_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: &[u8], end: &[u8]) -> Region {
        Region {
            id: 9,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: Some(RegionEpoch {
                conf_ver: 2,
                version: 3,
            }),
            peers: vec![
                Peer {
                    id: 1,
                    store_id: 1,
                    role: PeerRole::Voter as i32,
                },
                Peer {
                    id: 2,
                    store_id: 2,
                    role: PeerRole::Learner as i32,
                },
            ],
        }
    }

    #[test]
    fn epoch_checks_version_always_and_conf_ver_for_admin() {
        let r = region(b"", b"");
        let same = RegionEpoch {
            conf_ver: 2,
            version: 3,
        };
        let old_conf = RegionEpoch {
            conf_ver: 1,
            version: 3,
        };
        assert!(check_epoch(&r, Some(&same), true).is_ok());
        assert!(check_epoch(&r, Some(&old_conf), false).is_ok());
        let e = check_epoch(&r, Some(&old_conf), true).unwrap_err();
        assert!(matches!(e.kind, Some(Kind::EpochNotMatch(_))));
        assert!(check_epoch(&r, None, false).is_err());
    }

    #[test]
    fn key_and_range_bounds() {
        let r = region(b"b", b"m");
        assert!(check_key(&r, b"b").is_ok());
        assert!(check_key(&r, b"m").is_err());
        assert!(check_key(&r, b"a").is_err());
        assert!(check_range(&r, b"c", b"m").is_ok());
        assert!(check_range(&r, b"c", b"n").is_err());
        assert!(
            check_range(&r, b"c", b"").is_ok(),
            "empty end means the region's end"
        );
        assert!(
            check_range(&r, b"", b"c").is_ok(),
            "empty start means the region's start"
        );
        assert!(check_range(&region(b"", b""), b"", b"").is_ok());
    }

    #[test]
    fn conf_state_splits_voters_and_learners() {
        let cs = conf_state_of(&region(b"", b""));
        assert_eq!(cs.voters, vec![1]);
        assert_eq!(cs.learners, vec![2]);
    }
}
