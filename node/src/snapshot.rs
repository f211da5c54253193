//! Region snapshots. A snapshot is built from one consistent RocksDB
//! snapshot: the region's local state, its apply state and every key of its
//! range in every data column family. It currently travels inline in the
//! raft message (chunked streaming is planned; see docs/protocol.md).
//! Installing one clears the range and writes the data in the same batch
//! as the new raft, region and apply state.

use std::sync::Arc;

use nokv_consensus::engine::{cf, CF_META};
use nokv_consensus::keys::{apply_state_key, region_state_key};
use nokv_consensus::SnapshotSource;
use nokv_proto::raft_serverpb::{
    ApplyState, PeerState, RegionLocalState, RegionSnapshotData, SnapshotCfData,
};
use prost::Message as _;
use raft::prelude::Snapshot;
use raft::StorageError;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use crate::engine::DATA_CFS;
use crate::keys::{data_range, unbounded_upper};
use crate::peer::Peer;
use crate::region::conf_state_of;
use crate::{Error, Result};

/// Builds region snapshots from the node's RocksDB.
pub struct RegionSnapshotSource {
    db: Arc<DB>,
}

impl RegionSnapshotSource {
    /// A source over `db`.
    pub fn new(db: Arc<DB>) -> Self {
        RegionSnapshotSource { db }
    }

    fn build_inner(&self, region_id: u64) -> Result<Snapshot> {
        let snap = self.db.snapshot();
        let meta = cf(&self.db, CF_META)?;
        let local = snap
            .get_cf(meta, region_state_key(region_id))?
            .map(|b| RegionLocalState::decode(b.as_slice()))
            .transpose()?
            .ok_or_else(|| Error::Corrupted(format!("region {region_id} has no local state")))?;
        let apply = snap
            .get_cf(meta, apply_state_key(region_id))?
            .map(|b| ApplyState::decode(b.as_slice()))
            .transpose()?
            .unwrap_or_default();
        let region = local.region.unwrap_or_default();
        let mut data = RegionSnapshotData {
            region: Some(region.clone()),
            cfs: Vec::new(),
        };
        for name in DATA_CFS {
            let handle = cf(&self.db, name)?;
            let (lower, upper) = data_range(name, &region.start_key, &region.end_key);
            let mut opts = ReadOptions::default();
            if let Some(u) = upper {
                opts.set_iterate_upper_bound(u);
            }
            let mut cf_data = SnapshotCfData {
                cf: name.to_string(),
                keys: Vec::new(),
                values: Vec::new(),
            };
            for item in
                snap.iterator_cf_opt(handle, opts, IteratorMode::From(&lower, Direction::Forward))
            {
                let (k, v) = item?;
                cf_data.keys.push(k.to_vec());
                cf_data.values.push(v.to_vec());
            }
            data.cfs.push(cf_data);
        }
        let mut s = Snapshot {
            data: data.encode_to_vec().into(),
            ..Default::default()
        };
        let m = s.mut_metadata();
        m.index = apply.applied_index;
        m.term = apply.applied_term;
        m.set_conf_state(conf_state_of(&region));
        crate::metrics::SNAPSHOTS_GENERATED.inc();
        Ok(s)
    }
}

impl SnapshotSource for RegionSnapshotSource {
    fn build(&self, region_id: u64) -> raft::Result<Snapshot> {
        self.build_inner(region_id).map_err(|e| {
            tracing::warn!(region_id, error = %e, "snapshot generation failed");
            raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
        })
    }
}

/// Deletes every stored key of user range `[start, end)` in every data
/// column family into `wb`.
pub fn clear_range(db: &DB, start: &[u8], end: &[u8], wb: &mut WriteBatch) -> Result<()> {
    for name in DATA_CFS {
        let handle = cf(db, name)?;
        let (lower, upper) = data_range(name, start, end);
        match upper {
            Some(u) => wb.delete_range_cf(handle, lower, u),
            None => {
                let bound = unbounded_upper();
                wb.delete_range_cf(handle, &lower, &bound);
                // Keys sorting above the bound (very long 0xFF keys).
                for item in db.iterator_cf(handle, IteratorMode::From(&bound, Direction::Forward)) {
                    let (k, _) = item?;
                    wb.delete_cf(handle, k);
                }
            }
        }
    }
    Ok(())
}

/// Installs `snap` into `peer`: clears its old and new ranges, writes the
/// snapshot's data and the new region and apply state into `wb`.
pub fn install(db: &DB, peer: &mut Peer, snap: &Snapshot, wb: &mut WriteBatch) -> Result<()> {
    let data = RegionSnapshotData::decode(snap.data.as_ref())?;
    let region = data
        .region
        .ok_or_else(|| Error::Corrupted("snapshot without region".into()))?;
    if peer.is_initialized() {
        clear_range(db, &peer.region.start_key, &peer.region.end_key, wb)?;
    }
    clear_range(db, &region.start_key, &region.end_key, wb)?;
    for c in data.cfs {
        let handle = cf(db, &c.cf)?;
        for (k, v) in c.keys.into_iter().zip(c.values) {
            wb.put_cf(handle, k, v);
        }
    }
    let meta = snap.get_metadata();
    peer.region = region;
    for p in &peer.region.peers {
        peer.peer_stores.insert(p.id, p.store_id);
    }
    if let Some(me) = peer.region.peers.iter().find(|p| p.id == peer.meta.id) {
        peer.meta.role = me.role;
    }
    peer.reset_apply_state(meta.index, meta.term);
    peer.persist_region(db, PeerState::Normal, wb)?;
    peer.persist_apply_state(db, wb)?;
    peer.heartbeat_due = true;
    crate::metrics::SNAPSHOTS_APPLIED.inc();
    Ok(())
}
