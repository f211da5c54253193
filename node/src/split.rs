//! Region split: where to cut, and what regions a split produces. The
//! split itself is a raft command (`BatchSplit`) applied by every replica
//! (see `apply.rs`); this module holds the pure parts.

use nokv_proto::metapb::{Peer, Region, RegionEpoch};
use nokv_proto::raft_cmdpb::BatchSplitRequest;
use rocksdb::{Direction, IteratorMode, ReadOptions, DB};

use crate::engine::{cf, CF_RAW, CF_WRITE};
use crate::keys::{data_range, decode_bytes};
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
                .map(|(p, id)| Peer {
                    id: *id,
                    store_id: p.store_id,
                    role: p.role,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// The user key in the middle of the region's data (by key count), or
/// `None` when the region holds fewer than two keys. It reads the raw
/// column family and, for transactional data, the decoded keys of the
/// `write` column family; both are scanned, so this costs a pass over the
/// region (an estimate from SST properties is the planned replacement).
pub fn middle_key(db: &DB, region: &Region) -> Result<Option<Vec<u8>>> {
    let mut keys = user_keys(db, region, CF_RAW)?;
    if keys.len() < 2 {
        keys = user_keys(db, region, CF_WRITE)?;
    }
    if keys.len() < 2 {
        return Ok(None);
    }
    let mid = keys.swap_remove(keys.len() / 2);
    Ok((mid > region.start_key).then_some(mid))
}

fn user_keys(db: &DB, region: &Region, name: &str) -> Result<Vec<Vec<u8>>> {
    let handle = cf(db, name)?;
    let (lower, upper) = data_range(name, &region.start_key, &region.end_key);
    let mut opts = ReadOptions::default();
    if let Some(u) = upper {
        opts.set_iterate_upper_bound(u);
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for item in db.iterator_cf_opt(handle, opts, IteratorMode::From(&lower, Direction::Forward)) {
        let (k, _) = item?;
        let user = if name == CF_RAW {
            k.to_vec()
        } else {
            match decode_bytes(&k) {
                Some((u, _)) => u,
                None => continue,
            }
        };
        if out.last() != Some(&user) {
            out.push(user);
        }
    }
    Ok(out)
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
                Peer {
                    id: 10,
                    store_id: 1,
                    role: 0,
                },
                Peer {
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
            Peer {
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

    #[test]
    fn middle_key_of_raw_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = nokv_consensus::engine::open(dir.path(), &crate::engine::ALL_CFS).unwrap();
        let r = Region {
            start_key: vec![],
            end_key: vec![],
            ..region()
        };
        assert_eq!(middle_key(&db, &r).unwrap(), None);
        for k in [b"a", b"b", b"c", b"d", b"e"] {
            db.put_cf(db.cf_handle(CF_RAW).unwrap(), k, b"v").unwrap();
        }
        assert_eq!(middle_key(&db, &r).unwrap(), Some(b"c".to_vec()));
    }
}
