//! MVCC garbage collection driver. Every round it fetches the safe point
//! from the coordinator and, for each region this store leads that has not
//! been collected at that safe point, proposes GC commands over the
//! region's range in key-bounded steps. The deletions travel through raft,
//! so every replica drops the same versions; the leader then compacts the
//! collected range so the space really comes back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nokv_client::CoordinatorClient;
use nokv_proto::adminpb::RegionStatus;
use nokv_proto::raft_cmdpb::{
    request, response, txn_request, txn_response, GcRequest, RaftCmdRequest, RaftRequestHeader,
    Request as CmdRequest, TxnRequest, TxnResponse,
};
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::engine::{DbHandle, CF_DEFAULT, CF_LOCK, CF_WRITE};
use crate::metrics::{ENGINE_ESTIMATED_KEYS, GC_SAFE_POINT, GC_VERSIONS_DELETED};
use crate::mvcc::key::encode_key;
use crate::raftstore::msg::StoreMsg;
use crate::raftstore::Router;

/// The safe point this store last saw; reads below it are refused because
/// the versions they need may be gone.
#[derive(Debug, Default)]
pub struct SafePoint(AtomicU64);

impl SafePoint {
    /// The last safe point fetched (0 before the first).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn raise(&self, sp: u64) {
        self.0.fetch_max(sp, Ordering::AcqRel);
    }
}

/// Runs GC rounds every `interval` until the process stops.
pub fn spawn(
    coordinator: CoordinatorClient,
    router: Router,
    db: Arc<DbHandle>,
    safe_point: Arc<SafePoint>,
    interval: Duration,
    batch_keys: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut done: HashMap<u64, u64> = HashMap::new();
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            refresh_engine_gauges(&db).await;
            let sp = match coordinator.get_gc_safe_point().await {
                Ok(sp) => sp,
                Err(e) => {
                    debug!(error = %e, "GC safe point unavailable");
                    continue;
                }
            };
            safe_point.raise(sp);
            GC_SAFE_POINT.set(sp as i64);
            if sp == 0 {
                continue;
            }
            for status in leader_regions(&router).await {
                let Some(region) = status.region.as_ref() else {
                    continue;
                };
                if done.get(&region.id).is_some_and(|d| *d >= sp) {
                    continue;
                }
                match collect_region(&router, &status, sp, batch_keys).await {
                    Ok(deleted) => {
                        done.insert(region.id, sp);
                        if deleted > 0 {
                            info!(region_id = region.id, deleted, safe_point = sp, "MVCC GC");
                            compact(&db, &region.start_key, &region.end_key).await;
                        }
                    }
                    Err(e) => debug!(region_id = region.id, error = %e, "MVCC GC round failed"),
                }
            }
        }
    })
}

async fn leader_regions(router: &Router) -> Vec<RegionStatus> {
    let (tx, rx) = oneshot::channel();
    let msg = StoreMsg::Status {
        region_id: None,
        cb: Box::new(move |s| {
            let _ = tx.send(s);
        }),
    };
    if router.send(msg).is_err() {
        return Vec::new();
    }
    rx.await
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.is_leader)
        .collect()
}

/// Proposes GC commands over the region until its range is done; returns
/// the versions deleted.
async fn collect_region(
    router: &Router,
    status: &RegionStatus,
    safe_point: u64,
    batch_keys: u32,
) -> Result<u64, String> {
    let region = status.region.clone().unwrap_or_default();
    let mut cursor = region.start_key.clone();
    let mut deleted = 0;
    loop {
        let cmd = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: region.id,
                peer: status.peer,
                region_epoch: region.epoch,
                ..Default::default()
            }),
            requests: vec![CmdRequest {
                cmd: Some(request::Cmd::Txn(TxnRequest {
                    cmd: Some(txn_request::Cmd::Gc(GcRequest {
                        start_key: cursor.clone(),
                        end_key: region.end_key.clone(),
                        safe_point,
                        key_limit: batch_keys.max(1),
                    })),
                    one_pc_commit_ts: 0,
                })),
            }],
            admin_request: None,
            ..Default::default()
        };
        let resp = router
            .command(cmd, Duration::from_secs(10))
            .await
            .map_err(|e| e.message)?;
        let gc = resp.responses.into_iter().find_map(|r| match r.cmd {
            Some(response::Cmd::Txn(TxnResponse {
                cmd: Some(txn_response::Cmd::Gc(g)),
            })) => Some(g),
            _ => None,
        });
        let gc = gc.ok_or_else(|| "GC command produced no result".to_string())?;
        deleted += gc.versions_deleted;
        GC_VERSIONS_DELETED.inc_by(gc.versions_deleted);
        if gc.done {
            return Ok(deleted);
        }
        cursor = gc.next_key;
    }
}

/// Compacts the MVCC column families over a user range.
async fn compact(db: &DbHandle, start: &[u8], end: &[u8]) {
    let Some(db) = db.get() else { return };
    let lower = encode_key(start);
    let upper = (!end.is_empty()).then(|| encode_key(end));
    let _ = tokio::task::spawn_blocking(move || {
        for name in [CF_WRITE, CF_DEFAULT] {
            if let Some(cf) = db.cf_handle(name) {
                db.compact_range_cf(cf, Some(lower.as_slice()), upper.as_deref());
            }
        }
    })
    .await;
}

async fn refresh_engine_gauges(db: &DbHandle) {
    let Some(db) = db.get() else { return };
    let _ = tokio::task::spawn_blocking(move || {
        for name in [CF_DEFAULT, CF_LOCK, CF_WRITE, crate::engine::CF_RAW] {
            if let Some(cf) = db.cf_handle(name) {
                if let Ok(Some(n)) = db.property_int_value_cf(cf, "rocksdb.estimate-num-keys") {
                    ENGINE_ESTIMATED_KEYS
                        .with_label_values(&[name])
                        .set(n as i64);
                }
            }
        }
    })
    .await;
}
