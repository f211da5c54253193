//! Store identity and cluster bootstrap.
//!
//! A node gets its store id from the coordinator once and persists it. The
//! first node of a new cluster creates region 1 over the whole key space:
//! it writes the region locally with a "prepare bootstrap" marker, asks the
//! coordinator to bootstrap, and removes the marker (or, if another node won
//! the race, the region too). A crash in between is resolved at the next
//! start by asking again.

use std::sync::Arc;
use std::time::Duration;

use nokv_client::CoordinatorClient;
use nokv_consensus::engine::{cf, CF_META, CF_RAFT};
use nokv_consensus::keys::{
    apply_state_key, hard_state_key, parse_region_state_key, region_state_key,
    PREPARE_BOOTSTRAP_KEY, STORE_IDENT_KEY,
};
use nokv_consensus::SnapshotSource;
use nokv_proto::metapb::{Peer as PeerMeta, PeerRole, Region, RegionEpoch, Store};
use nokv_proto::raft_serverpb::{PeerState, RegionLocalState, StoreIdent};
use prost::Message as _;
use rocksdb::{WriteBatch, WriteOptions, DB};
use tracing::{info, warn};

use crate::config::RaftConfig;
use crate::raftstore::peer::{write_initial_state, Peer};
use crate::{Error, Result};
use nokv_proto::coordinatorpb::ErrorType;

/// Id of the region a new cluster starts with. The allocator never hands
/// it out, so the bootstrapping store can name it before it has any id.
pub const FIRST_REGION_ID: u64 = 1;

fn synced(db: &DB, wb: WriteBatch) -> Result<()> {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(wb, &opts)?;
    Ok(())
}

/// Retries `f` until it succeeds, logging failures: a node started before
/// its coordinators waits for them.
pub async fn retry_forever<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, nokv_client::Error>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Registers `store` with the coordinator, retrying while it is
/// unreachable.
///
/// # Errors
/// The store id is a tombstone: the store was decommissioned and may never
/// rejoin under that id (start it on a fresh data directory instead).
pub async fn register_store(coordinator: &CoordinatorClient, store: &Store) -> Result<()> {
    let mut delay = Duration::from_millis(100);
    loop {
        match coordinator.put_store(store.clone()).await {
            Ok(()) => return Ok(()),
            Err(nokv_client::Error::Coordinator {
                kind: ErrorType::StoreTombstone,
                message,
            }) => {
                return Err(Error::Identity(format!(
                    "{message}: store {} was decommissioned and may not rejoin; \
                     start this node on a fresh data directory",
                    store.id
                )));
            }
            Err(e) => {
                warn!(error = %e, "registering the store failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The persisted store id, allocating and persisting one on first start.
pub async fn ensure_store_id(db: &Arc<DB>, coordinator: &CoordinatorClient) -> Result<u64> {
    if let Some(b) = db.get_cf(cf(db, CF_META)?, STORE_IDENT_KEY)? {
        let ident = StoreIdent::decode(b.as_slice())?;
        if ident.store_id == 0 {
            return Err(Error::Identity("persisted store id is 0".into()));
        }
        return Ok(ident.store_id);
    }
    let store_id = retry_forever("allocating a store id", || coordinator.alloc_id(1)).await;
    let mut wb = WriteBatch::default();
    wb.put_cf(
        cf(db, CF_META)?,
        STORE_IDENT_KEY,
        StoreIdent {
            cluster_id: 0,
            store_id,
        }
        .encode_to_vec(),
    );
    synced(db, wb)?;
    info!(store_id, "store id allocated");
    Ok(store_id)
}

/// What a store finds on disk at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Live regions with this store's peer id in each.
    pub regions: Vec<(Region, u64)>,
    /// Regions whose raft state is missing (damaged or half-written).
    pub missing_raft_state: Vec<u64>,
}

/// Every region replica persisted on this store that is live.
pub fn load_regions(db: &DB, store_id: u64) -> Result<Recovered> {
    let mut live = Vec::new();
    let mut missing_raft_state = Vec::new();
    let meta = cf(db, CF_META)?;
    let raft = cf(db, CF_RAFT)?;
    for item in db.iterator_cf(meta, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let Some(region_id) = parse_region_state_key(&k) else {
            continue;
        };
        let local = RegionLocalState::decode(v.as_ref())?;
        if local.state() == PeerState::Tombstone {
            continue;
        }
        let Some(region) = local.region else { continue };
        let Some(me) = region.peers.iter().find(|p| p.store_id == store_id) else {
            warn!(
                region_id,
                "region state without a peer on this store; skipped"
            );
            continue;
        };
        if db.get_cf(raft, hard_state_key(region_id))?.is_none() {
            missing_raft_state.push(region_id);
        }
        let peer_id = me.id;
        live.push((region, peer_id));
    }
    Ok(Recovered {
        regions: live,
        missing_raft_state,
    })
}

/// Opens a [`Peer`] for each persisted region.
pub fn open_peers(
    db: &Arc<DB>,
    store_id: u64,
    regions: Vec<(Region, u64)>,
    cfg: &RaftConfig,
    snapshots: Arc<dyn SnapshotSource>,
) -> Result<Vec<Peer>> {
    regions
        .into_iter()
        .map(|(region, peer_id)| {
            Peer::open(
                db.clone(),
                store_id,
                region,
                peer_id,
                cfg,
                snapshots.clone(),
            )
        })
        .collect()
}

fn write_initial_region(db: &DB, region: &Region) -> Result<()> {
    let mut wb = WriteBatch::default();
    write_initial_state(db, region, &mut wb)?;
    wb.put_cf(
        cf(db, CF_META)?,
        PREPARE_BOOTSTRAP_KEY,
        region.encode_to_vec(),
    );
    synced(db, wb)
}

fn clear_initial_region(db: &DB, region_id: u64, keep_region: bool) -> Result<()> {
    let mut wb = WriteBatch::default();
    wb.delete_cf(cf(db, CF_META)?, PREPARE_BOOTSTRAP_KEY);
    if !keep_region {
        wb.delete_cf(cf(db, CF_META)?, region_state_key(region_id));
        wb.delete_cf(cf(db, CF_META)?, apply_state_key(region_id));
        wb.delete_cf(cf(db, CF_RAFT)?, hard_state_key(region_id));
    }
    synced(db, wb)
}

/// Bootstraps the cluster with this store's first region if no cluster
/// exists yet. Returns true when this store now holds region 1.
pub async fn bootstrap_if_needed(
    db: &Arc<DB>,
    coordinator: &CoordinatorClient,
    store: &Store,
) -> Result<bool> {
    let prepared = db
        .get_cf(cf(db, CF_META)?, PREPARE_BOOTSTRAP_KEY)?
        .map(|b| Region::decode(b.as_slice()))
        .transpose()?;
    let region = match prepared {
        Some(r) => r,
        None => {
            if retry_forever("checking bootstrap state", || coordinator.is_bootstrapped()).await {
                return Ok(false);
            }
            let peer_id =
                retry_forever("allocating the first peer id", || coordinator.alloc_id(1)).await;
            let region = Region {
                id: FIRST_REGION_ID,
                start_key: Vec::new(),
                end_key: Vec::new(),
                epoch: Some(RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: vec![PeerMeta {
                    id: peer_id,
                    store_id: store.id,
                    role: PeerRole::Voter as i32,
                }],
            };
            write_initial_region(db, &region)?;
            region
        }
    };
    let outcome = loop {
        match coordinator.bootstrap(store.clone(), region.clone()).await {
            Ok(()) => break true,
            Err(nokv_client::Error::Coordinator {
                kind: ErrorType::AlreadyBootstrapped,
                ..
            }) => {
                // Someone bootstrapped: keep our region only if it is theirs
                // (our own earlier attempt that crashed before the marker
                // was removed).
                let our_peer = region.peers.first().map(|p| p.id).unwrap_or(0);
                break first_region_has_peer(coordinator, region.id, our_peer).await;
            }
            Err(e) => {
                warn!(error = %e, "bootstrap failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    clear_initial_region(db, region.id, outcome)?;
    if outcome {
        info!(
            region_id = region.id,
            store_id = store.id,
            "bootstrapped the cluster"
        );
    }
    Ok(outcome)
}

/// Whether the coordinator's region `region_id` includes peer `peer_id`
/// (so the bootstrap that won was ours), retrying transient failures.
async fn first_region_has_peer(
    coordinator: &CoordinatorClient,
    region_id: u64,
    peer_id: u64,
) -> bool {
    loop {
        match coordinator.get_region_by_id(region_id).await {
            Ok(r) => {
                return r
                    .region
                    .is_some_and(|r| r.peers.iter().any(|p| p.id == peer_id))
            }
            Err(nokv_client::Error::Coordinator {
                kind: ErrorType::NotFound,
                ..
            }) => return false,
            Err(e) => {
                warn!(error = %e, "looking up the first region failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
