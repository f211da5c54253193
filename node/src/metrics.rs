//! Node-specific metrics (raft and gRPC ones are shared, in
//! `nokv_consensus::metrics`).

use std::sync::LazyLock;

use prometheus::{register_int_counter, register_int_gauge, IntCounter, IntGauge};

/// Initialized regions on this store.
pub static REGIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("nokv_store_regions", "Region replicas on this store")
        .expect("metric registers once")
});

/// Regions this store leads.
pub static LEADERS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("nokv_store_leaders", "Region leaders on this store")
        .expect("metric registers once")
});

/// Times a replica on this store gained or lost leadership.
pub static LEADER_CHANGES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "nokv_store_leadership_changes_total",
        "Times a replica on this store gained or lost leadership"
    )
    .expect("metric registers once")
});

/// Region heartbeats sent, and failures.
pub static REGION_HEARTBEATS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "nokv_store_region_heartbeats_total",
        "Region heartbeats sent to the coordinator, by result",
        &["result"]
    )
    .expect("metric registers once")
});

/// Makes every metric visible from the first scrape.
pub fn register() {
    nokv_consensus::metrics::register_shared();
    LazyLock::force(&REGIONS);
    LazyLock::force(&LEADERS);
    LazyLock::force(&LEADER_CHANGES);
    LazyLock::force(&REGION_HEARTBEATS);
}
