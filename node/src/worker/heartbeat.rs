//! Heartbeats to the coordinator: store liveness and load (with the
//! store's read and write flow, see [`crate::flow`]) on a timer, and
//! region heartbeats from leaders as the raftstore emits them. A region
//! heartbeat's answer may carry an order (a membership step), which goes
//! back to the raftstore.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nokv_client::CoordinatorClient;
use nokv_proto::coordinatorpb::{RegionHeartbeatRequest, StoreStats};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::metrics::REGION_HEARTBEATS;
use crate::raftstore::msg::StoreMsg;
use crate::raftstore::{Router, StoreCounters};

/// Capacity and free bytes of the filesystem holding `path`.
pub fn disk_space(path: &std::path::Path) -> (u64, u64) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return (0, 0);
    };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out
    // pointer for the duration of the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (0, 0);
    }
    let frsize = st.f_frsize as u64;
    (st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize)
}

/// Sends store heartbeats every `interval` until the task is dropped.
pub fn spawn_store_heartbeats(
    coordinator: CoordinatorClient,
    store_id: u64,
    counters: Arc<StoreCounters>,
    db: Arc<rocksdb::DB>,
    data_dir: PathBuf,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        loop {
            every.tick().await;
            let dir = data_dir.clone();
            let db = db.clone();
            // RocksDB properties are read on a blocking thread; the same
            // pass refreshes the `nokv_engine_*` gauges.
            let (capacity, available, used) = tokio::task::spawn_blocking(move || {
                let (cap, avail) = disk_space(&dir);
                let used = crate::metrics::refresh_engine_gauges(&db);
                (cap, avail, used)
            })
            .await
            .unwrap_or((0, 0, 0));
            let mut stats = StoreStats {
                store_id,
                capacity_bytes: capacity,
                used_bytes: used,
                available_bytes: available,
                region_count: counters.regions.load(Ordering::Relaxed),
                leader_count: counters.leaders.load(Ordering::Relaxed),
                ..Default::default()
            };
            counters.flows.fill_store_stats(&mut stats);
            if let Err(e) = coordinator.store_heartbeat(stats).await {
                debug!(store_id, error = %e, "store heartbeat failed");
            }
        }
    })
}

/// Forwards region heartbeats to the coordinator (a few at a time) and
/// routes any order in the answers back to the raftstore.
pub fn spawn_region_heartbeats(
    coordinator: CoordinatorClient,
    mut rx: UnboundedReceiver<RegionHeartbeatRequest>,
    router: Router,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let limit = Arc::new(Semaphore::new(16));
        while let Some(hb) = rx.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let coordinator = coordinator.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let region_id = hb.region.as_ref().map(|r| r.id).unwrap_or(0);
                match coordinator.region_heartbeat(hb).await {
                    Ok(resp) => {
                        REGION_HEARTBEATS.with_label_values(&["ok"]).inc();
                        let has_order = resp.change_peer.is_some()
                            || resp.transfer_leader.is_some()
                            || resp.split_region.is_some()
                            || resp.merge.is_some();
                        if has_order && router.send(StoreMsg::HeartbeatResponse(resp)).is_err() {
                            debug!(region_id, "raftstore busy; coordinator order dropped");
                        }
                    }
                    Err(e) => {
                        REGION_HEARTBEATS.with_label_values(&["error"]).inc();
                        debug!(region_id, error = %e, "region heartbeat failed");
                    }
                }
                drop(permit);
            });
        }
    })
}
