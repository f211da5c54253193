//! Automatic split: the raftstore hands leaders of regions that took writes
//! to this task every `split_check_ticks`; it counts the region's keys and
//! bytes off the raft thread (a scan bounded by twice the thresholds),
//! reports the counts back for region heartbeats, and splits at the middle
//! key when the region is over `region_split_keys` or
//! `region_split_size_bytes`. It also runs the coordinator's split orders
//! (operator steps), which split whatever the size.

use std::sync::Arc;

use nokv_proto::metapb::{Peer, Region};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, info};

use crate::engine::DbHandle;
use crate::raftstore::msg::StoreMsg;
use crate::worker::region_size::scan_region;
use crate::worker::split::{SplitDriver, SplitFailure};

/// One region to check.
#[derive(Debug, Clone)]
pub struct SplitCheck {
    /// The region as its leader sees it.
    pub region: Region,
    /// The leader's peer.
    pub peer: Peer,
    /// A coordinator order to split whatever the size: at its key, or in
    /// half when it has none.
    pub order: Option<nokv_proto::coordinatorpb::SplitRegion>,
}

/// Thresholds; 0 disables a dimension.
#[derive(Debug, Clone, Copy)]
pub struct SplitThresholds {
    /// Split above this many keys.
    pub keys: u64,
    /// Split above this many bytes.
    pub bytes: u64,
}

/// Runs split checks until the sender side closes.
pub fn spawn(
    db: Arc<DbHandle>,
    driver: SplitDriver,
    mut rx: UnboundedReceiver<SplitCheck>,
    limits: SplitThresholds,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cap = |v: u64| {
            if v == 0 {
                u64::MAX
            } else {
                v.saturating_mul(2)
            }
        };
        while let Some(check) = rx.recv().await {
            let Some(db) = db.get() else { return };
            if let Some(order) = check.order.clone() {
                run_order(&db, &driver, check, order).await;
                continue;
            }
            let region = check.region.clone();
            let scan = tokio::task::spawn_blocking(move || {
                scan_region(&db, &region, cap(limits.keys), cap(limits.bytes))
            })
            .await;
            let scan = match scan {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(region_id = check.region.id, error = %e, "split check scan failed");
                    continue;
                }
                Err(_) => continue,
            };
            let _ = driver.router.send(StoreMsg::RegionStats {
                region_id: check.region.id,
                approximate_keys: scan.keys,
                approximate_size_bytes: scan.bytes,
                version: check.region.epoch.map_or(0, |e| e.version),
            });
            let over = (limits.keys > 0 && scan.keys > limits.keys)
                || (limits.bytes > 0 && scan.bytes > limits.bytes);
            let Some(key) = scan.middle.filter(|_| over) else {
                continue;
            };
            match driver
                .split(check.region.clone(), Some(check.peer), key, "size check")
                .await
            {
                Ok(regions) => info!(
                    region_id = check.region.id,
                    keys = scan.keys,
                    bytes = scan.bytes,
                    into = regions.len(),
                    "region split automatically"
                ),
                Err(SplitFailure::Region(e)) => {
                    debug!(region_id = check.region.id, error = %e.message, "automatic split refused")
                }
                Err(e) => debug!(region_id = check.region.id, error = ?e, "automatic split failed"),
            }
        }
    })
}

/// Runs a coordinator split order: at its key, or at the middle key.
async fn run_order(
    db: &Arc<rocksdb::DB>,
    driver: &SplitDriver,
    check: SplitCheck,
    order: nokv_proto::coordinatorpb::SplitRegion,
) {
    let region_id = check.region.id;
    let key = if !order.half && !order.split_key.is_empty() {
        Some(order.split_key)
    } else {
        let db = db.clone();
        let region = check.region.clone();
        match tokio::task::spawn_blocking(move || {
            crate::worker::region_size::middle_key(&db, &region)
        })
        .await
        {
            Ok(Ok(k)) => k,
            Ok(Err(e)) => {
                debug!(region_id, error = %e, "middle key scan failed");
                None
            }
            Err(_) => None,
        }
    };
    let Some(key) = key else {
        debug!(region_id, "split order skipped: no key to split at");
        return;
    };
    match driver
        .split(check.region, Some(check.peer), key, "coordinator operator")
        .await
    {
        Ok(regions) => info!(
            region_id,
            into = regions.len(),
            "region split by coordinator order"
        ),
        Err(SplitFailure::Region(e)) => {
            debug!(region_id, error = %e.message, "split order refused")
        }
        Err(e) => debug!(region_id, error = ?e, "split order failed"),
    }
}
