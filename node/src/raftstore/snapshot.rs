//! Region snapshots as files. A snapshot is generated off the raftstore
//! thread from one consistent RocksDB snapshot: the region's local and
//! apply state, one SST file per data column family holding the region's
//! keys, and one of its client-session table. The raft message carries only a [`SnapshotMeta`] (region,
//! id, file sizes and CRC32s); the files stream separately in chunks (see
//! `nokv_consensus::snapshot_stream`), so neither side ever holds a
//! snapshot in memory.
//!
//! Installing is crash-safe in three steps: (1) one synced batch clears the
//! old and new ranges and records the region as `Applying` this snapshot;
//! (2) the SST files are ingested; (3) the raftstore's ready batch records
//! the region `Normal` with its new apply and raft state. The received
//! files stay until (3) is durable; a restart that finds a region still
//! `Applying` repeats (2) and (3) from them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nokv_consensus::engine::{cf, CF_META};
use nokv_consensus::keys::{apply_state_key, parse_region_state_key, region_state_key};
use nokv_consensus::snapshot_stream::{file_crc32, file_path, SnapshotReceiver};
use nokv_consensus::storage::RocksRaftLog;
use nokv_consensus::SnapshotSource;
use nokv_proto::raft_serverpb::{
    ApplyState, PeerState, RaftTruncatedState, RegionLocalState, SnapshotFileMeta, SnapshotHeader,
    SnapshotMeta,
};
use prost::Message as _;
use raft::prelude::{Snapshot, SnapshotMetadata};
use raft::StorageError;
use rocksdb::{
    Direction, IteratorMode, Options, ReadOptions, SstFileWriter, WriteBatch, WriteOptions, DB,
};
use tracing::{info, warn};

use crate::engine::{CF_SESSION, DATA_CFS};
use crate::keys::{data_range, unbounded_upper};
use crate::raftstore::peer::Peer;
use crate::region::conf_state_of;
use crate::{Error, Result};
use nokv_proto::poison::MutexExt;

enum Generation {
    Running,
    Ready(Snapshot),
}

/// Generates region snapshots into `<snap dir>/gen` and receives them into
/// `<snap dir>/recv`.
pub struct RegionSnapshotSource {
    db: Arc<DB>,
    dir: PathBuf,
    generations: Arc<Mutex<HashMap<u64, Generation>>>,
}

/// Snapshot ids name directories: keep them to safe characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() < 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
}

impl RegionSnapshotSource {
    /// A source over `db` keeping files under `dir`. Generated snapshots
    /// of an earlier run are dropped (raft asks again).
    pub fn new(db: Arc<DB>, dir: PathBuf) -> Result<Self> {
        let gen = dir.join("gen");
        if gen.exists() {
            std::fs::remove_dir_all(&gen)?;
        }
        std::fs::create_dir_all(&gen)?;
        std::fs::create_dir_all(dir.join("recv"))?;
        Ok(RegionSnapshotSource {
            db,
            dir,
            generations: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Directory of a generated snapshot.
    pub fn gen_dir(&self, id: &str) -> PathBuf {
        self.dir.join("gen").join(id)
    }

    /// Directory of a received snapshot.
    pub fn recv_dir(&self, id: &str) -> PathBuf {
        self.dir.join("recv").join(id)
    }

    /// The header announcing a snapshot stream for the raft message `env`
    /// whose snapshot data is `meta`, and the directory of its files.
    pub fn stream_header(
        &self,
        env: nokv_proto::raft_serverpb::RaftMessage,
        meta: &SnapshotMeta,
    ) -> Option<(SnapshotHeader, PathBuf)> {
        if !valid_id(&meta.id) {
            return None;
        }
        Some((
            SnapshotHeader {
                message: Some(env),
                total_bytes: meta.files.iter().map(|f| f.size).sum(),
                id: meta.id.clone(),
                files: meta.files.clone(),
            },
            self.gen_dir(&meta.id),
        ))
    }

    fn generations(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Generation>> {
        self.generations.lock_unpoisoned()
    }
}

impl SnapshotSource for RegionSnapshotSource {
    /// Answers a snapshot generated earlier if it is recent enough;
    /// otherwise starts generating one in the background and asks raft to
    /// try again later (it does, on the follower's next heartbeat reply).
    fn build(&self, region_id: u64, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut gens = self.generations();
        match gens.get(&region_id) {
            Some(Generation::Running) => return Err(unavailable()),
            Some(Generation::Ready(s))
                if s.get_metadata().index >= request_index && includes(s, to) =>
            {
                return Ok(s.clone())
            }
            Some(Generation::Ready(old)) => {
                if let Ok(meta) = SnapshotMeta::decode(old.data.as_ref()) {
                    let _ = std::fs::remove_dir_all(self.gen_dir(&meta.id));
                }
            }
            None => {}
        }
        gens.insert(region_id, Generation::Running);
        drop(gens);
        let (db, gen_dir, generations) = (
            self.db.clone(),
            self.dir.join("gen"),
            self.generations.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("snap-gen-{region_id}"))
            .spawn(move || {
                let result = generate(&db, &gen_dir, region_id);
                let mut gens = generations.lock_unpoisoned();
                match result {
                    Ok(s) => {
                        gens.insert(region_id, Generation::Ready(s));
                    }
                    Err(e) => {
                        warn!(region_id, error = %e, "snapshot generation failed");
                        gens.remove(&region_id);
                    }
                }
            });
        if spawned.is_err() {
            self.generations().remove(&region_id);
        }
        Err(unavailable())
    }
}

/// Whether `peer` is a member in the snapshot's membership (a snapshot
/// taken before a peer was added is useless to it).
fn includes(s: &Snapshot, peer: u64) -> bool {
    let cs = s.get_metadata().get_conf_state();
    cs.voters.contains(&peer) || cs.learners.contains(&peer)
}

/// Where incoming snapshots land. It holds no database handle, so a
/// connection that outlives a stopping node never keeps RocksDB open.
pub struct SnapshotInbox {
    dir: PathBuf,
}

impl RegionSnapshotSource {
    /// The receiving side, for the raft transport service.
    pub fn inbox(&self) -> SnapshotInbox {
        SnapshotInbox {
            dir: self.dir.join("recv"),
        }
    }
}

impl SnapshotReceiver for SnapshotInbox {
    fn dir_for(&self, header: &SnapshotHeader) -> std::io::Result<PathBuf> {
        if !valid_id(&header.id)
            || header
                .files
                .iter()
                .any(|f| !DATA_CFS.contains(&f.cf.as_str()) && f.cf != CF_SESSION)
        {
            return Err(std::io::Error::other("malformed snapshot id or file list"));
        }
        let dir = self.dir.join(&header.id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// Writes one snapshot of `region_id` into a new directory under
/// `gen_dir`.
fn generate(db: &DB, gen_dir: &Path, region_id: u64) -> Result<Snapshot> {
    let snap = db.snapshot();
    let meta_cf = cf(db, CF_META)?;
    let local = snap
        .get_cf(meta_cf, region_state_key(region_id))?
        .map(|b| RegionLocalState::decode(b.as_slice()))
        .transpose()?
        .ok_or_else(|| Error::Corrupted(format!("region {region_id} has no local state")))?;
    let apply = snap
        .get_cf(meta_cf, apply_state_key(region_id))?
        .map(|b| ApplyState::decode(b.as_slice()))
        .transpose()?
        .unwrap_or_default();
    let merge_state = (local.state() == PeerState::Merging)
        .then_some(local.merge_state)
        .flatten();
    let region = local.region.unwrap_or_default();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let id = format!(
        "{region_id}_{}_{}_{nonce}",
        apply.applied_term, apply.applied_index
    );
    let dir = gen_dir.join(&id);
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    for name in DATA_CFS {
        let (lower, upper) = data_range(name, &region.start_key, &region.end_key);
        files.extend(write_sst(db, &snap, &dir, name, &lower, upper)?);
    }
    // The region's client sessions travel with its data, so a repeat of a
    // write that applied before the snapshot is still recognised.
    let (lower, upper) = crate::raftstore::session::key_range(region_id);
    files.extend(write_sst(db, &snap, &dir, CF_SESSION, &lower, Some(upper))?);
    let meta = SnapshotMeta {
        region: Some(region.clone()),
        id,
        files,
        index: apply.applied_index,
        term: apply.applied_term,
        merge_state,
    };
    let mut s = Snapshot {
        data: meta.encode_to_vec().into(),
        ..Default::default()
    };
    let m = s.mut_metadata();
    m.index = apply.applied_index;
    m.term = apply.applied_term;
    m.set_conf_state(conf_state_of(&region));
    crate::metrics::SNAPSHOTS_GENERATED.inc();
    Ok(s)
}

/// Writes the keys of column family `name` in `[lower, upper)` as seen by
/// `snap` into one SST file in `dir`; `None` when there are none.
fn write_sst(
    db: &DB,
    snap: &rocksdb::Snapshot<'_>,
    dir: &Path,
    name: &str,
    lower: &[u8],
    upper: Option<Vec<u8>>,
) -> Result<Option<SnapshotFileMeta>> {
    let handle = cf(db, name)?;
    let mut ropts = ReadOptions::default();
    if let Some(u) = upper {
        ropts.set_iterate_upper_bound(u);
    }
    let mut file = SnapshotFileMeta {
        cf: name.to_string(),
        size: 0,
        crc32: 0,
    };
    let path = file_path(dir, &file);
    let opts = Options::default();
    let mut writer = SstFileWriter::create(&opts);
    let mut opened = false;
    for item in snap.iterator_cf_opt(handle, ropts, IteratorMode::From(lower, Direction::Forward)) {
        let (k, v) = item?;
        if !opened {
            writer.open(&path)?;
            opened = true;
        }
        writer.put(k, v)?;
    }
    if !opened {
        return Ok(None);
    }
    writer.finish()?;
    file.size = std::fs::metadata(&path)?.len();
    file.crc32 = file_crc32(&path)?;
    Ok(Some(file))
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

fn synced(db: &DB, wb: WriteBatch) -> Result<()> {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(wb, &opts)?;
    Ok(())
}

/// Ingests the snapshot's files from `dir`.
fn ingest(db: &DB, dir: &Path, meta: &SnapshotMeta) -> Result<()> {
    for f in &meta.files {
        let path = file_path(dir, f);
        if !path.exists() {
            return Err(Error::Corrupted(format!(
                "snapshot {} lacks its {} file",
                meta.id, f.cf
            )));
        }
        db.ingest_external_file_cf(cf(db, &f.cf)?, vec![path])?;
    }
    Ok(())
}

/// Installs `snap` into `peer` (steps 1 and 2 above) and puts step 3 into
/// `wb`. Returns the directory to delete once `wb` is durable.
pub fn install(
    db: &DB,
    source: &RegionSnapshotSource,
    peer: &mut Peer,
    snap: &Snapshot,
    wb: &mut WriteBatch,
) -> Result<PathBuf> {
    let meta = SnapshotMeta::decode(snap.data.as_ref())?;
    let region = meta
        .region
        .clone()
        .ok_or_else(|| Error::Corrupted("snapshot without region".into()))?;
    if !valid_id(&meta.id) {
        return Err(Error::Corrupted(format!("snapshot id {:?}", meta.id)));
    }
    let dir = source.recv_dir(&meta.id);
    let mut pre = WriteBatch::default();
    if peer.is_initialized() {
        clear_range(db, &peer.region.start_key, &peer.region.end_key, &mut pre)?;
    }
    clear_range(db, &region.start_key, &region.end_key, &mut pre)?;
    crate::raftstore::session::clear(db, region.id, &mut pre)?;
    let applying = RegionLocalState {
        region: Some(region.clone()),
        state: PeerState::Applying as i32,
        merge_state: None,
        applying_snapshot: Some(meta.clone()),
    };
    pre.put_cf(
        cf(db, CF_META)?,
        region_state_key(region.id),
        applying.encode_to_vec(),
    );
    synced(db, pre)?;
    ingest(db, &dir, &meta)?;
    *peer.sessions.lock() = crate::raftstore::session::SessionTable::load(db, region.id)?;
    let m = snap.get_metadata();
    peer.region = region;
    for p in &peer.region.peers {
        peer.peer_stores.insert(p.id, p.store_id);
    }
    if let Some(me) = peer.region.peers.iter().find(|p| p.id == peer.meta.id) {
        peer.meta.role = me.role;
    }
    peer.reset_apply_state(m.index, m.term);
    peer.merge_state = meta.merge_state.clone();
    peer.persist_region(db, PeerState::Normal, wb)?;
    peer.persist_apply_state(db, wb)?;
    peer.heartbeat_due = true;
    crate::metrics::SNAPSHOTS_APPLIED.inc();
    Ok(dir)
}

/// Finishes installs a crash interrupted (regions still `Applying`), then
/// drops received files no install needs. Runs before any peer opens.
pub fn finish_interrupted_installs(db: &Arc<DB>, source: &RegionSnapshotSource) -> Result<()> {
    let meta_cf = cf(db, CF_META)?;
    let mut interrupted = Vec::new();
    for item in db.iterator_cf(meta_cf, IteratorMode::Start) {
        let (k, v) = item?;
        let Some(region_id) = parse_region_state_key(&k) else {
            continue;
        };
        let local = RegionLocalState::decode(v.as_ref())?;
        if local.state() == PeerState::Applying {
            if let Some(meta) = local.applying_snapshot {
                interrupted.push((region_id, meta));
            }
        }
    }
    for (region_id, meta) in interrupted {
        let region = meta.region.clone().unwrap_or_default();
        let dir = source.recv_dir(&meta.id);
        info!(region_id, snapshot = %meta.id, "finishing an interrupted snapshot install");
        let mut wb = WriteBatch::default();
        clear_range(db, &region.start_key, &region.end_key, &mut wb)?;
        crate::raftstore::session::clear(db, region_id, &mut wb)?;
        synced(db, std::mem::take(&mut wb))?;
        ingest(db, &dir, &meta)?;
        let apply = match db.get_cf(meta_cf, apply_state_key(region_id))? {
            Some(b) => ApplyState::decode(b.as_slice())?,
            None => ApplyState::default(),
        };
        let truncated = apply
            .truncated_state
            .as_ref()
            .map(|t| (t.index, t.term))
            .unwrap_or((0, 0));
        let mut log = RocksRaftLog::open(
            db.clone(),
            region_id,
            conf_state_of(&region),
            truncated,
            None,
        )?;
        let mut sm = SnapshotMetadata {
            index: meta.index,
            term: meta.term,
            ..Default::default()
        };
        sm.set_conf_state(conf_state_of(&region));
        log.apply_snapshot_meta(&sm, &mut wb)?;
        let local = RegionLocalState {
            region: Some(region),
            state: if meta.merge_state.is_some() {
                PeerState::Merging
            } else {
                PeerState::Normal
            } as i32,
            merge_state: meta.merge_state.clone(),
            applying_snapshot: None,
        };
        wb.put_cf(meta_cf, region_state_key(region_id), local.encode_to_vec());
        let apply = ApplyState {
            applied_index: meta.index,
            applied_term: meta.term,
            truncated_state: Some(RaftTruncatedState {
                index: meta.index,
                term: meta.term,
            }),
        };
        wb.put_cf(meta_cf, apply_state_key(region_id), apply.encode_to_vec());
        synced(db, wb)?;
    }
    // Everything received is now installed (or was never going to be).
    for entry in std::fs::read_dir(source.dir.join("recv"))? {
        let entry = entry?;
        let _ = std::fs::remove_dir_all(entry.path());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ALL_CFS, CF_RAW, CF_WRITE};
    use nokv_proto::metapb::{Peer as PeerMeta, Region, RegionEpoch};

    fn open(dir: &Path) -> Arc<DB> {
        nokv_consensus::engine::open(dir, &ALL_CFS).expect("open rocksdb")
    }

    fn region() -> Region {
        Region {
            id: 7,
            start_key: b"b".to_vec(),
            end_key: b"y".to_vec(),
            epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![PeerMeta {
                id: 8,
                store_id: 1,
                role: 0,
            }],
        }
    }

    #[test]
    fn generated_files_hold_exactly_the_region_and_ingest_elsewhere() {
        let tmp = tempfile::tempdir().expect("tmp");
        let db = open(&tmp.path().join("a"));
        let raw = cf(&db, CF_RAW).expect("cf");
        for k in [&b"a"[..], b"b", b"m", b"x", b"z"] {
            db.put_cf(raw, k, b"v").expect("put");
        }
        let write = cf(&db, CF_WRITE).expect("cf");
        db.put_cf(write, crate::mvcc::key::versioned_key(b"c", 5), b"w")
            .expect("put");
        let local = RegionLocalState {
            region: Some(region()),
            state: PeerState::Normal as i32,
            merge_state: None,
            applying_snapshot: None,
        };
        let meta_cf = cf(&db, CF_META).expect("cf");
        db.put_cf(meta_cf, region_state_key(7), local.encode_to_vec())
            .expect("put");
        let apply = ApplyState {
            applied_index: 42,
            applied_term: 3,
            truncated_state: None,
        };
        db.put_cf(meta_cf, apply_state_key(7), apply.encode_to_vec())
            .expect("put");

        let source = RegionSnapshotSource::new(db.clone(), tmp.path().join("snap")).expect("src");
        let snap = generate(&db, &tmp.path().join("snap").join("gen"), 7).expect("generate");
        assert_eq!(snap.get_metadata().index, 42);
        let meta = SnapshotMeta::decode(snap.data.as_ref()).expect("meta");
        let cfs: Vec<&str> = meta.files.iter().map(|f| f.cf.as_str()).collect();
        assert_eq!(
            cfs,
            vec!["write", "raw"],
            "only column families with data get a file"
        );
        for f in &meta.files {
            let path = file_path(&source.gen_dir(&meta.id), f);
            assert_eq!(std::fs::metadata(&path).expect("file").len(), f.size);
            assert_eq!(file_crc32(&path).expect("crc"), f.crc32);
        }

        let other = open(&tmp.path().join("b"));
        ingest(&other, &source.gen_dir(&meta.id), &meta).expect("ingest");
        let raw = cf(&other, CF_RAW).expect("cf");
        let keys: Vec<Vec<u8>> = other
            .iterator_cf(raw, IteratorMode::Start)
            .map(|i| i.expect("iter").0.to_vec())
            .collect();
        assert_eq!(keys, vec![b"b".to_vec(), b"m".to_vec(), b"x".to_vec()]);
        let write = cf(&other, CF_WRITE).expect("cf");
        assert_eq!(other.iterator_cf(write, IteratorMode::Start).count(), 1);
    }
}
