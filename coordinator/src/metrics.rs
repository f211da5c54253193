//! Coordinator-specific metrics (the raft and gRPC ones are shared, in
//! `nokv_consensus::metrics`).

use std::collections::HashMap;
use std::sync::LazyLock;

use nokv_proto::coordinatorpb::RegionInfo;
use nokv_proto::metapb::StoreState;

use prometheus::{
    register_int_counter, register_int_gauge, register_int_gauge_vec, IntCounter, IntGauge,
    IntGaugeVec,
};

/// Timestamps handed out.
pub static TSO_TIMESTAMPS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "nokv_coordinator_tso_timestamps_total",
        "Timestamps handed out"
    )
    .expect("metric registers once")
});

/// TSO requests served (a request may carry many timestamps).
pub static TSO_REQUESTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("nokv_coordinator_tso_requests_total", "TSO requests served")
        .expect("metric registers once")
});

/// IDs handed out.
pub static IDS_ALLOCATED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("nokv_coordinator_ids_allocated_total", "IDs handed out")
        .expect("metric registers once")
});

/// AllocId requests served (a request may carry many ids).
pub static ID_REQUESTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "nokv_coordinator_id_requests_total",
        "AllocId requests served"
    )
    .expect("metric registers once")
});

/// Regions known to the coordinator.
pub static REGIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("nokv_coordinator_regions", "Regions in the routing table")
        .expect("metric registers once")
});

/// Region leaders per store, as last reported.
pub static LEADERS_PER_STORE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "nokv_coordinator_store_leaders",
        "Region leaders per store, as last reported by heartbeats",
        &["store_id"]
    )
    .expect("metric registers once")
});

/// Stores by state.
pub static STORES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("nokv_coordinator_stores", "Stores by state", &["state"])
        .expect("metric registers once")
});

/// 1 while this member is the ready leader.
pub static IS_LEADER: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "nokv_coordinator_is_leader",
        "1 while this member leads the group"
    )
    .expect("metric registers once")
});

/// Replica checker steps issued, by kind.
pub static CHECKER_STEPS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "nokv_coordinator_checker_steps_total",
        "Membership steps the replica checker handed to region leaders",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Operators created and finished, by source (checker or scheduler name,
/// `manual` for people's), kind (`add-replica`, `transfer-leader`, …) and
/// event (`created` or the final state: `Succeeded`, `Cancelled`,
/// `TimedOut`, `Failed`). The `created` events of a checker or scheduler
/// are its scheduling actions.
pub static OPERATORS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "nokv_coordinator_operators_total",
        "Operators created and finished, by source, kind and event",
        &["source", "kind", "event"]
    )
    .expect("metric registers once")
});

/// The `kind` label values of [`INVARIANT_VIOLATIONS`]; each series exists
/// from the first scrape. What each kind means is in the `invariant`
/// module, which records them.
pub const INVARIANT_KINDS: [&str; 4] =
    ["overlap", "epoch_conflict", "duplicate_store", "range_hole"];

/// Broken cluster invariants the coordinator saw, by kind: `overlap` (a
/// region overlapping another of the same version), `epoch_conflict` (one
/// epoch, two ranges or peer sets), `duplicate_store` (two replicas of a
/// region on one store), `range_hole` (the routing table left a gap for
/// longer than a split takes to report). Zero in a healthy cluster.
pub static INVARIANT_VIOLATIONS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "nokv_coordinator_invariant_violations_total",
        "Broken cluster invariants seen by the coordinator, by kind",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Region heartbeats refused because their epoch is older than the
/// coordinator's (expected now and then: a heartbeat sent before a split
/// or conf change that arrives after it).
pub static STALE_HEARTBEATS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "nokv_coordinator_stale_heartbeats_total",
        "Region heartbeats refused for an older epoch"
    )
    .expect("metric registers once")
});

/// Makes every metric visible from the first scrape.
pub fn register() {
    nokv_consensus::metrics::register_shared();
    LazyLock::force(&TSO_TIMESTAMPS);
    LazyLock::force(&TSO_REQUESTS);
    LazyLock::force(&IDS_ALLOCATED);
    LazyLock::force(&ID_REQUESTS);
    LazyLock::force(&REGIONS);
    LazyLock::force(&LEADERS_PER_STORE);
    LazyLock::force(&STORES);
    LazyLock::force(&IS_LEADER);
    LazyLock::force(&CHECKER_STEPS);
    LazyLock::force(&OPERATORS);
    LazyLock::force(&INVARIANT_VIOLATIONS);
    LazyLock::force(&STALE_HEARTBEATS);
    for kind in INVARIANT_KINDS {
        INVARIANT_VIOLATIONS.with_label_values(&[kind]);
    }
}

/// Sets the gauges that mirror the cluster: whether this member is the
/// ready leader, the regions in the routing table, leaders per store (as
/// last reported), and stores by live state.
pub fn set_cluster_gauges(
    ready_leader: bool,
    regions: &[RegionInfo],
    stores: &[(u64, StoreState)],
) {
    IS_LEADER.set(i64::from(ready_leader));
    REGIONS.set(regions.len() as i64);
    let mut leaders: HashMap<u64, i64> = HashMap::new();
    for r in regions {
        if let Some(l) = &r.leader {
            *leaders.entry(l.store_id).or_default() += 1;
        }
    }
    for (id, _) in stores {
        LEADERS_PER_STORE
            .with_label_values(&[&id.to_string()])
            .set(leaders.get(id).copied().unwrap_or(0));
    }
    let mut by_state: HashMap<&'static str, i64> = HashMap::new();
    for (_, state) in stores {
        *by_state.entry(state.as_str_name()).or_default() += 1;
    }
    for st in ["Up", "Disconnected", "Down", "Offline", "Tombstone"] {
        STORES
            .with_label_values(&[st])
            .set(by_state.get(st).copied().unwrap_or(0));
    }
}
