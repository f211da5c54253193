//! Splitting a region from outside the raftstore: where to cut (the middle
//! key, a bounded scan of the region's size), and the driver that asks the
//! coordinator for new ids and proposes the split through the router. The
//! split itself is a `BatchSplit` command every replica applies
//! (`raftstore::admin::split`).

use nokv_proto::metapb::{Peer, Region};
use nokv_proto::raft_cmdpb::BatchSplitRequest;
use rocksdb::{Direction, IteratorMode, ReadOptions, DB};

use crate::engine::{cf, CF_RAW, CF_WRITE};
use crate::keys::{data_range, decode_bytes};
use crate::Result;

/// The user key in the middle of the region's data (by key count), or
/// `None` when the region holds fewer than two keys. It reads the raw
/// column family and, for transactional data, the decoded keys of the
/// `write` column family; both are scanned, so this costs a pass over the
/// region (an estimate from SST properties is the planned replacement).
pub fn middle_key(db: &DB, region: &Region) -> Result<Option<Vec<u8>>> {
    let mut keys = user_keys(db, region, CF_RAW, u64::MAX, u64::MAX)?.keys;
    if keys.len() < 2 {
        keys = user_keys(db, region, CF_WRITE, u64::MAX, u64::MAX)?.keys;
    }
    if keys.len() < 2 {
        return Ok(None);
    }
    let mid = keys.swap_remove(keys.len() / 2);
    Ok((mid > region.start_key).then_some(mid))
}

/// User keys read from one column family of a region.
struct UserKeys {
    /// Distinct user keys, in order.
    keys: Vec<Vec<u8>>,
    /// Bytes of stored keys and values read.
    bytes: u64,
    /// A limit stopped the read.
    capped: bool,
}

/// Reads the distinct user keys of column family `name` in `region` (raw
/// keys as they are, versioned MVCC keys decoded), stopping once
/// `max_keys` keys or `max_bytes` bytes were read.
fn user_keys(
    db: &DB,
    region: &Region,
    name: &str,
    max_keys: u64,
    max_bytes: u64,
) -> Result<UserKeys> {
    let handle = cf(db, name)?;
    let (lower, upper) = data_range(name, &region.start_key, &region.end_key);
    let mut opts = ReadOptions::default();
    if let Some(u) = upper {
        opts.set_iterate_upper_bound(u);
    }
    let mut out = UserKeys {
        keys: Vec::new(),
        bytes: 0,
        capped: false,
    };
    for item in db.iterator_cf_opt(handle, opts, IteratorMode::From(&lower, Direction::Forward)) {
        let (k, v) = item?;
        out.bytes += (k.len() + v.len()) as u64;
        let user = if name == CF_RAW {
            k.to_vec()
        } else {
            match decode_bytes(&k) {
                Some((u, _)) => u,
                None => continue,
            }
        };
        if out.keys.last() != Some(&user) {
            out.keys.push(user);
        }
        if out.keys.len() as u64 >= max_keys || out.bytes >= max_bytes {
            out.capped = true;
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::metapb::RegionEpoch;

    fn region() -> Region {
        Region {
            id: 1,
            epoch: Some(RegionEpoch {
                conf_ver: 3,
                version: 4,
            }),
            ..Default::default()
        }
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

/// Key count and bytes of a region's data, counted up to `max_keys`, with
/// the key in the middle of what was counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RegionScan {
    /// Keys counted (stops at the cap).
    pub keys: u64,
    /// Bytes of keys and values counted.
    pub bytes: u64,
    /// Whether the cap stopped the count.
    pub capped: bool,
    /// The middle counted key.
    pub middle: Option<Vec<u8>>,
}

/// Counts the raw and transactional user keys of `region`, stopping after
/// `max_keys` keys or `max_bytes` bytes, so a check costs at most that.
pub fn scan_region(db: &DB, region: &Region, max_keys: u64, max_bytes: u64) -> Result<RegionScan> {
    let raw = user_keys(db, region, CF_RAW, max_keys, max_bytes)?;
    let (mut keys, mut bytes, mut capped) = (raw.keys, raw.bytes, raw.capped);
    if !capped {
        let txn = user_keys(
            db,
            region,
            CF_WRITE,
            max_keys.saturating_sub(keys.len() as u64),
            max_bytes.saturating_sub(bytes),
        )?;
        keys.extend(txn.keys);
        bytes += txn.bytes;
        capped = txn.capped;
    }
    keys.sort();
    keys.dedup();
    let middle = (keys.len() >= 2).then(|| keys[keys.len() / 2].clone());
    Ok(RegionScan {
        keys: keys.len() as u64,
        bytes,
        capped,
        middle: middle.filter(|m| *m > region.start_key),
    })
}
