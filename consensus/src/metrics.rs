//! Prometheus metrics shared by the node and the coordinator, registered in
//! the process's default registry. Names carry the `nokv_` prefix and units.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge_vec, Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, TextEncoder,
};

fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.00005, 2.0, 20).expect("valid bucket parameters")
}

/// Raft proposals by kind (normal, conf_change, read_index).
pub static RAFT_PROPOSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "nokv_raft_proposals_total",
        "Raft proposals by kind",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Raft groups whose Readies went to disk in one write batch and one
/// sync: the group commit that amortises fsyncs across regions (always 1
/// on a coordinator, which runs one group).
pub static RAFT_READY_BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "nokv_raft_ready_batch_size",
        "Raft groups persisted together in one write batch and sync",
        prometheus::exponential_buckets(1.0, 2.0, 12).expect("valid bucket parameters")
    )
    .expect("metric registers once")
});

/// Entries raft reported committed, counted once per process as its
/// Readies hand them over for applying.
pub static RAFT_COMMITTED_ENTRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "nokv_raft_committed_entries_total",
        "Raft entries handed over as committed"
    )
    .expect("metric registers once")
});

/// How far replication trails, in log entries: on each group this process
/// leads, its last index minus the lowest index a follower (or learner) has
/// matched; the gauge is the largest over those groups (0 when it leads
/// none).
pub static RAFT_LOG_LAG: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "nokv_raft_log_lag_entries",
        "Largest gap between a led group's last index and its slowest follower's matched index"
    )
    .expect("metric registers once")
});

/// Readies handled.
pub static RAFT_READY_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("nokv_raft_ready_total", "Raft Ready rounds handled")
        .expect("metric registers once")
});

/// Role changes seen in Readies.
pub static RAFT_LEADER_CHANGES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "nokv_raft_leader_changes_total",
        "Soft state (role or leader) changes observed"
    )
    .expect("metric registers once")
});

/// Time to write and sync one round's raft batch.
pub static RAFT_PERSIST_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "nokv_raft_persist_duration_seconds",
        "Time to write and fsync one round of raft log and hard state",
        latency_buckets()
    )
    .expect("metric registers once")
});

/// Time to apply one round of committed entries.
pub static RAFT_APPLY_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "nokv_raft_apply_duration_seconds",
        "Time to apply one round of committed entries",
        latency_buckets()
    )
    .expect("metric registers once")
});

/// Committed entries applied.
pub static RAFT_APPLIED_ENTRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "nokv_raft_applied_entries_total",
        "Committed entries applied"
    )
    .expect("metric registers once")
});

/// Applied index per raft group (`coordinator` or a region id).
pub static RAFT_APPLIED_INDEX: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "nokv_raft_applied_index",
        "Index of the last applied raft entry, per group",
        &["group"]
    )
    .expect("metric registers once")
});

/// Raft messages sent, by result (sent, dropped).
pub static RAFT_MESSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "nokv_raft_messages_total",
        "Raft messages handed to the transport, by result",
        &["result"]
    )
    .expect("metric registers once")
});

/// Snapshot bytes streamed, by direction (sent, received).
pub static SNAPSHOT_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "nokv_raft_snapshot_bytes_total",
        "Region snapshot bytes streamed, by direction",
        &["direction"]
    )
    .expect("metric registers once")
});

/// Region snapshots streamed, by direction (sent, received); counted when
/// the whole stream went through.
pub static SNAPSHOTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "nokv_raft_snapshots_total",
        "Region snapshots streamed completely, by direction",
        &["direction"]
    )
    .expect("metric registers once")
});

/// gRPC requests by method and status code.
pub static GRPC_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "nokv_grpc_requests_total",
        "gRPC requests served, by method and status code",
        &["method", "code"]
    )
    .expect("metric registers once")
});

/// gRPC request latency by method.
pub static GRPC_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "nokv_grpc_request_duration_seconds",
        "gRPC request latency, by method",
        &["method"],
        latency_buckets()
    )
    .expect("metric registers once")
});

/// Runs a gRPC handler body, counting it by method and resulting code and
/// timing it.
pub async fn observe_grpc<T, F>(method: &'static str, fut: F) -> Result<T, tonic::Status>
where
    F: Future<Output = Result<T, tonic::Status>>,
{
    let start = Instant::now();
    let res = fut.await;
    let code = match &res {
        Ok(_) => "OK".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    GRPC_REQUESTS.with_label_values(&[method, &code]).inc();
    GRPC_SECONDS
        .with_label_values(&[method])
        .observe(start.elapsed().as_secs_f64());
    res
}

/// Touches every shared metric so it appears in the first scrape, even
/// before the event it counts has happened.
pub fn register_shared() {
    for kind in ["normal", "conf_change", "read_index", "lease_read"] {
        RAFT_PROPOSALS.with_label_values(&[kind]);
    }
    for result in ["sent", "dropped", "inbox_full", "filtered"] {
        RAFT_MESSAGES.with_label_values(&[result]);
    }
    for direction in ["sent", "received"] {
        SNAPSHOT_BYTES.with_label_values(&[direction]);
        SNAPSHOTS.with_label_values(&[direction]);
    }
    LazyLock::force(&RAFT_READY_BATCH_SIZE);
    LazyLock::force(&RAFT_COMMITTED_ENTRIES);
    LazyLock::force(&RAFT_LOG_LAG);
    LazyLock::force(&RAFT_READY_TOTAL);
    LazyLock::force(&RAFT_LEADER_CHANGES);
    LazyLock::force(&RAFT_PERSIST_SECONDS);
    LazyLock::force(&RAFT_APPLY_SECONDS);
    LazyLock::force(&RAFT_APPLIED_ENTRIES);
    LazyLock::force(&RAFT_MESSAGES);
    LazyLock::force(&RAFT_APPLIED_INDEX);
    LazyLock::force(&GRPC_REQUESTS);
    LazyLock::force(&GRPC_SECONDS);
}

/// The default registry in Prometheus text exposition format.
pub fn render() -> String {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if encoder.encode(&prometheus::gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
