//! The coordinator's replicated state machine. Every member applies the
//! same commands in the same order; the in-memory [`ClusterState`] mirrors
//! the `state` column family and is rebuilt from it on start.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nokv_proto::coordinatorpb::{coordinator_command::Cmd, CoordinatorCommand, RegionInfo};
use nokv_proto::metapb::{Region, RegionEpoch, Store, StoreState};
use prost::Message;
use rocksdb::{WriteBatch, DB};

use nokv_consensus::engine::cf;

use crate::Result;

/// Column family of the coordinator's state machine.
pub const CF_STATE: &str = "state";

const CLUSTER_KEY: &[u8] = b"cluster_id";
const ID_HIGH_KEY: &[u8] = b"id_high";
const TSO_HIGH_KEY: &[u8] = b"tso_high_ms";
const GC_SAFE_POINT_KEY: &[u8] = b"gc_safe_point";
const STORE_PREFIX: &[u8] = b"store/";
const REGION_PREFIX: &[u8] = b"region/";
const PAUSED_PREFIX: &[u8] = b"scheduler_paused/";

/// Outcome of applying one command, handed back to its proposer.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyResult {
    /// Applied.
    Ok,
    /// Bootstrap refused: the cluster already exists.
    AlreadyBootstrapped,
    /// Region update refused: the stored region has a newer epoch.
    StaleRegion,
    /// Store update refused: the store is a tombstone.
    StoreTombstone,
}

/// Everything the coordinator group agrees on.
#[derive(Debug, Default, Clone)]
pub struct ClusterState {
    /// 0 until bootstrapped.
    pub cluster_id: u64,
    /// Registered stores by id.
    pub stores: BTreeMap<u64, Store>,
    /// Regions by id, with the leader last reported.
    pub regions: HashMap<u64, RegionInfo>,
    /// Region ids by start key, for key lookups and range scans.
    pub ranges: BTreeMap<Vec<u8>, u64>,
    /// Every id below this may have been handed out.
    pub id_high: u64,
    /// No timestamp with a physical part at or above this was handed out.
    pub tso_high_ms: u64,
    /// Term of the last leader barrier applied.
    pub barrier_term: u64,
    /// MVCC versions no reader at or above this timestamp needs may be
    /// dropped by the stores.
    pub gc_safe_point: u64,
    /// Checkers and schedulers an operator paused, by name.
    pub paused_schedulers: BTreeSet<String>,
}

impl ClusterState {
    /// Whether a cluster has been bootstrapped.
    pub fn bootstrapped(&self) -> bool {
        self.cluster_id != 0
    }

    /// Loads the state from the `state` column family.
    pub fn load(db: &DB) -> Result<Self> {
        let cf = cf(db, CF_STATE)?;
        let mut s = ClusterState::default();
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            if k.as_ref() == CLUSTER_KEY {
                s.cluster_id = decode_u64(&v);
            } else if k.as_ref() == ID_HIGH_KEY {
                s.id_high = decode_u64(&v);
            } else if k.as_ref() == TSO_HIGH_KEY {
                s.tso_high_ms = decode_u64(&v);
            } else if k.as_ref() == GC_SAFE_POINT_KEY {
                s.gc_safe_point = decode_u64(&v);
            } else if let Some(name) = k.strip_prefix(PAUSED_PREFIX) {
                s.paused_schedulers
                    .insert(String::from_utf8_lossy(name).into_owned());
            } else if k.starts_with(STORE_PREFIX) {
                let store = Store::decode(v.as_ref()).map_err(nokv_consensus::Error::from)?;
                s.stores.insert(store.id, store);
            } else if k.starts_with(REGION_PREFIX) {
                let info = RegionInfo::decode(v.as_ref()).map_err(nokv_consensus::Error::from)?;
                if let Some(r) = &info.region {
                    s.ranges.insert(r.start_key.clone(), r.id);
                    s.regions.insert(r.id, info);
                }
            }
        }
        Ok(s)
    }

    /// Applies one command, recording its effect in `wb`.
    pub fn apply(
        &mut self,
        db: &DB,
        cmd: CoordinatorCommand,
        wb: &mut WriteBatch,
    ) -> Result<ApplyResult> {
        let cf = cf(db, CF_STATE)?;
        let Some(cmd) = cmd.cmd else {
            return Ok(ApplyResult::Ok);
        };
        match cmd {
            Cmd::Bootstrap(b) => {
                if self.bootstrapped() {
                    return Ok(ApplyResult::AlreadyBootstrapped);
                }
                let cluster_id = b.header.as_ref().map(|h| h.cluster_id).unwrap_or(1).max(1);
                self.cluster_id = cluster_id;
                wb.put_cf(cf, CLUSTER_KEY, cluster_id.to_be_bytes());
                if let Some(store) = b.store {
                    self.put_store(cf, store, wb);
                }
                if let Some(region) = b.region {
                    // No leader until the region's first heartbeat says so.
                    self.put_region(
                        cf,
                        RegionInfo {
                            region: Some(region),
                            ..Default::default()
                        },
                        wb,
                    );
                }
                Ok(ApplyResult::Ok)
            }
            Cmd::PutStore(store) => {
                if self
                    .stores
                    .get(&store.id)
                    .is_some_and(|s| s.state() == StoreState::Tombstone)
                {
                    return Ok(ApplyResult::StoreTombstone);
                }
                self.put_store(cf, store, wb);
                Ok(ApplyResult::Ok)
            }
            Cmd::RaiseIdHigh(high) => {
                if high > self.id_high {
                    self.id_high = high;
                    wb.put_cf(cf, ID_HIGH_KEY, high.to_be_bytes());
                }
                Ok(ApplyResult::Ok)
            }
            Cmd::RaiseGcSafePoint(sp) => {
                if sp > self.gc_safe_point {
                    self.gc_safe_point = sp;
                    wb.put_cf(cf, GC_SAFE_POINT_KEY, sp.to_be_bytes());
                }
                Ok(ApplyResult::Ok)
            }
            Cmd::RaiseTsoHigh(high) => {
                if high > self.tso_high_ms {
                    self.tso_high_ms = high;
                    wb.put_cf(cf, TSO_HIGH_KEY, high.to_be_bytes());
                }
                Ok(ApplyResult::Ok)
            }
            Cmd::PutRegion(info) => {
                let Some(region) = &info.region else {
                    return Ok(ApplyResult::Ok);
                };
                if self.is_stale(region) {
                    return Ok(ApplyResult::StaleRegion);
                }
                self.put_region(cf, info, wb);
                Ok(ApplyResult::Ok)
            }
            Cmd::LeaderBarrier(term) => {
                self.barrier_term = self.barrier_term.max(term);
                Ok(ApplyResult::Ok)
            }
            Cmd::PauseScheduler(p) => {
                let mut key = PAUSED_PREFIX.to_vec();
                key.extend_from_slice(p.name.as_bytes());
                if p.pause {
                    wb.put_cf(cf, key, []);
                    self.paused_schedulers.insert(p.name);
                } else {
                    wb.delete_cf(cf, key);
                    self.paused_schedulers.remove(&p.name);
                }
                Ok(ApplyResult::Ok)
            }
            // Raft log compaction touches the raft log, not this state; the
            // raft loop applies it.
            Cmd::CompactLog(_) => Ok(ApplyResult::Ok),
        }
    }

    /// Whether `region` is older than what the state knows, either for the
    /// same region id or for an overlapping region with a version at least
    /// as new.
    pub fn is_stale(&self, region: &Region) -> bool {
        let new = region.epoch.unwrap_or_default();
        if let Some(old) = self.regions.get(&region.id).and_then(|i| i.region.as_ref()) {
            let old = old.epoch.unwrap_or_default();
            if epoch_older(&new, &old) {
                return true;
            }
        }
        self.overlapping(region)
            .into_iter()
            .filter(|id| *id != region.id)
            .filter_map(|id| self.regions.get(&id)?.region.as_ref())
            // An overlapping region at the same version is a second truth
            // for the same keys; refuse it too (see `invariant`).
            .any(|r| r.epoch.unwrap_or_default().version >= new.version)
    }

    /// Ids of the regions whose range overlaps `region`'s.
    pub fn overlapping(&self, region: &Region) -> Vec<u64> {
        let mut out = Vec::new();
        // The region starting at or before start_key may cover it.
        if let Some((_, id)) = self.ranges.range(..=region.start_key.clone()).next_back() {
            out.push(*id);
        }
        for (start, id) in self.ranges.range(region.start_key.clone()..) {
            if !region.end_key.is_empty() && start.as_slice() >= region.end_key.as_slice() {
                break;
            }
            out.push(*id);
        }
        out.sort_unstable();
        out.dedup();
        out.retain(|id| {
            self.regions
                .get(id)
                .and_then(|i| i.region.as_ref())
                .is_some_and(|r| ranges_overlap(r, region))
        });
        out
    }

    /// The region containing `key`, if any.
    pub fn region_by_key(&self, key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) = self.ranges.range(..=key.to_vec()).next_back()?;
        let info = self.regions.get(id)?;
        let r = info.region.as_ref()?;
        (r.end_key.is_empty() || key < r.end_key.as_slice()).then_some(info)
    }

    /// Regions overlapping `[start, end)` in key order, at most `limit`
    /// (0 = no limit).
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<RegionInfo> {
        let mut out = Vec::new();
        let first = self
            .ranges
            .range(..=start.to_vec())
            .next_back()
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        for (s, id) in self.ranges.range(first..) {
            if !end.is_empty() && s.as_slice() >= end {
                break;
            }
            if let Some(info) = self.regions.get(id) {
                if info
                    .region
                    .as_ref()
                    .is_some_and(|r| r.end_key.is_empty() || r.end_key.as_slice() > start)
                {
                    out.push(info.clone());
                }
            }
            if limit != 0 && out.len() >= limit {
                break;
            }
        }
        out
    }

    fn put_store(&mut self, cf: &rocksdb::ColumnFamily, store: Store, wb: &mut WriteBatch) {
        let mut key = STORE_PREFIX.to_vec();
        key.extend_from_slice(&store.id.to_be_bytes());
        wb.put_cf(cf, key, store.encode_to_vec());
        self.stores.insert(store.id, store);
    }

    fn put_region(&mut self, cf: &rocksdb::ColumnFamily, info: RegionInfo, wb: &mut WriteBatch) {
        let Some(region) = info.region.clone() else {
            return;
        };
        for id in self.overlapping(&region) {
            if id == region.id {
                continue;
            }
            if let Some(old) = self.regions.remove(&id) {
                if let Some(r) = old.region {
                    self.ranges.remove(&r.start_key);
                }
                wb.delete_cf(cf, region_key(id));
            }
        }
        if let Some(old) = self.regions.get(&region.id).and_then(|i| i.region.as_ref()) {
            let old_start = old.start_key.clone();
            self.ranges.remove(&old_start);
        }
        self.ranges.insert(region.start_key.clone(), region.id);
        wb.put_cf(cf, region_key(region.id), info.encode_to_vec());
        self.regions.insert(region.id, info);
    }
}

fn region_key(id: u64) -> Vec<u8> {
    let mut key = REGION_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn decode_u64(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if v.len() == 8 {
        b.copy_from_slice(v);
    }
    u64::from_be_bytes(b)
}

/// Whether epoch `a` is strictly older than `b` in either dimension.
pub fn epoch_older(a: &RegionEpoch, b: &RegionEpoch) -> bool {
    a.version < b.version || a.conf_ver < b.conf_ver
}

fn ranges_overlap(a: &Region, b: &Region) -> bool {
    let a_before_b_end = b.end_key.is_empty() || a.start_key < b.end_key;
    let b_before_a_end = a.end_key.is_empty() || b.start_key < a.end_key;
    a_before_b_end && b_before_a_end
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::coordinatorpb::BootstrapRequest;
    use nokv_proto::metapb::Peer;

    fn db() -> (tempfile::TempDir, std::sync::Arc<DB>) {
        let d = tempfile::tempdir().expect("tempdir");
        let db = nokv_consensus::engine::open(d.path(), &[CF_STATE]).expect("db");
        (d, db)
    }

    fn region(id: u64, start: &[u8], end: &[u8], version: u64, conf_ver: u64) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: Some(RegionEpoch { conf_ver, version }),
            peers: vec![Peer {
                id: id * 10,
                store_id: 1,
                role: 0,
            }],
        }
    }

    fn put(s: &mut ClusterState, db: &DB, r: Region) -> ApplyResult {
        let mut wb = WriteBatch::default();
        let res = s
            .apply(
                db,
                CoordinatorCommand {
                    cmd: Some(Cmd::PutRegion(RegionInfo {
                        region: Some(r),
                        ..Default::default()
                    })),
                },
                &mut wb,
            )
            .expect("apply");
        db.write(wb).expect("write");
        res
    }

    #[test]
    fn bootstrap_once_and_reload() {
        let (_d, db) = db();
        let mut s = ClusterState::default();
        let cmd = CoordinatorCommand {
            cmd: Some(Cmd::Bootstrap(BootstrapRequest {
                header: Some(nokv_proto::coordinatorpb::RequestHeader {
                    cluster_id: 77,
                    sender_id: 0,
                }),
                store: Some(Store {
                    id: 1,
                    address: "a".into(),
                    ..Default::default()
                }),
                region: Some(region(2, b"", b"", 1, 1)),
            })),
        };
        let mut wb = WriteBatch::default();
        assert_eq!(s.apply(&db, cmd.clone(), &mut wb).unwrap(), ApplyResult::Ok);
        db.write(wb).unwrap();
        let mut wb = WriteBatch::default();
        assert_eq!(
            s.apply(&db, cmd, &mut wb).unwrap(),
            ApplyResult::AlreadyBootstrapped
        );
        let loaded = ClusterState::load(&db).unwrap();
        assert_eq!(loaded.cluster_id, 77);
        assert_eq!(loaded.stores.len(), 1);
        assert_eq!(
            loaded
                .region_by_key(b"anything")
                .map(|i| i.region.as_ref().unwrap().id),
            Some(2)
        );
    }

    #[test]
    fn stale_epoch_is_rejected_and_split_replaces_parent() {
        let (_d, db) = db();
        let mut s = ClusterState::default();
        assert_eq!(put(&mut s, &db, region(1, b"", b"", 1, 2)), ApplyResult::Ok);
        assert_eq!(
            put(&mut s, &db, region(1, b"", b"", 1, 1)),
            ApplyResult::StaleRegion
        );
        // Split at "m": region 1 keeps [.., m), region 3 gets [m, ..).
        assert_eq!(
            put(&mut s, &db, region(1, b"", b"m", 2, 2)),
            ApplyResult::Ok
        );
        assert_eq!(
            put(&mut s, &db, region(3, b"m", b"", 2, 2)),
            ApplyResult::Ok
        );
        assert_eq!(
            s.region_by_key(b"a").unwrap().region.as_ref().unwrap().id,
            1
        );
        assert_eq!(
            s.region_by_key(b"z").unwrap().region.as_ref().unwrap().id,
            3
        );
        assert_eq!(s.scan(b"", b"", 0).len(), 2);
        assert_eq!(s.scan(b"n", b"", 0).len(), 1);
        // A pre-split heartbeat of region 1 covering everything is stale.
        assert_eq!(
            put(&mut s, &db, region(1, b"", b"", 1, 2)),
            ApplyResult::StaleRegion
        );
        let loaded = ClusterState::load(&db).unwrap();
        assert_eq!(loaded.scan(b"", b"", 0).len(), 2);
    }

    #[test]
    fn high_water_marks_never_go_back() {
        let (_d, db) = db();
        let mut s = ClusterState::default();
        for v in [10u64, 5] {
            let mut wb = WriteBatch::default();
            s.apply(
                &db,
                CoordinatorCommand {
                    cmd: Some(Cmd::RaiseIdHigh(v)),
                },
                &mut wb,
            )
            .unwrap();
            s.apply(
                &db,
                CoordinatorCommand {
                    cmd: Some(Cmd::RaiseTsoHigh(v)),
                },
                &mut wb,
            )
            .unwrap();
            db.write(wb).unwrap();
        }
        let loaded = ClusterState::load(&db).unwrap();
        assert_eq!((loaded.id_high, loaded.tso_high_ms), (10, 10));
    }
}
