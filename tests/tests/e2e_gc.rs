//! End-to-end: MVCC garbage collection. After many overwrites and a safe
//! point advance, old versions are gone (exactly the overwritten ones, so
//! the newest version at or below the safe point survives), the MVCC
//! column families shrink, reads at or above the safe point are unchanged,
//! and reads below it are refused.

use std::time::Duration;

use nokv_client::{CoordinatorClient, RawClient, TxnClient, TxnOptions};
use nokv_tests::{runtime, wait_until, LocalCluster};

const KEYS: usize = 20;
const VERSIONS: usize = 30;

fn metric_values(c: &LocalCluster, name: &str, cf: Option<&str>) -> Vec<f64> {
    c.node_metric(name, cf.map(|cf| ("cf", cf)))
}

fn value(k: usize, version: usize) -> Vec<u8> {
    // Odd keys carry long values, which live in the default CF.
    let len = if k % 2 == 1 { 400 } else { 8 };
    let mut v = format!("{k}:{version}:").into_bytes();
    v.resize(len, b'x');
    v
}

#[test]
fn gc_drops_overwritten_versions_below_the_safe_point_and_keeps_reads_above_it() {
    let c = LocalCluster::start(
        1,
        3,
        "coordinator_config:\n  gc_life_time_secs: 0\nnode_config:\n  gc_interval_ms: 200\n",
    );
    let rt = runtime();
    let raw = RawClient::new(c.coordinators.clone(), Duration::from_secs(20)).expect("client");
    let client = TxnClient::with_raw(raw, TxnOptions::default());
    let coord =
        CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(10)).expect("coord");
    let key = |k: usize| format!("gc/{k:02}").into_bytes();
    let before_all = rt.block_on(async {
        let before_all = client.current_ts().await.expect("ts");
        for version in 0..VERSIONS {
            let mut txn = client.begin().await.expect("begin");
            for k in 0..KEYS {
                txn.put(key(k), value(k, version));
            }
            txn.commit().await.expect("commit");
        }
        before_all
    });
    // Every version is stored: the write CF holds at least one record per
    // version on some replica.
    let written = wait_until("engine gauges refresh", Duration::from_secs(20), || {
        let max = metric_values(&c, "nokv_engine_estimated_keys", Some("write"))
            .into_iter()
            .fold(0.0, f64::max);
        (max >= (KEYS * VERSIONS) as f64).then_some(max)
    });
    assert_eq!(
        metric_values(&c, "nokv_gc_versions_deleted_total", None)
            .iter()
            .sum::<f64>(),
        0.0,
        "nothing is collected before the safe point moves"
    );

    let safe_point = rt.block_on(async {
        let sp = client.current_ts().await.expect("ts");
        let in_force = coord
            .update_gc_safe_point(sp)
            .await
            .expect("update safe point");
        assert_eq!(in_force, sp);
        // It never moves back.
        assert_eq!(
            coord.update_gc_safe_point(sp - 1).await.expect("update"),
            sp
        );
        sp
    });
    let overwritten = (KEYS * (VERSIONS - 1)) as f64;
    wait_until(
        "GC collects the overwritten versions",
        Duration::from_secs(30),
        || {
            let n: f64 = metric_values(&c, "nokv_gc_versions_deleted_total", None)
                .iter()
                .sum();
            (n >= overwritten).then_some(())
        },
    );
    let deleted: f64 = metric_values(&c, "nokv_gc_versions_deleted_total", None)
        .iter()
        .sum();
    assert_eq!(deleted, overwritten, "exactly the overwritten versions go");
    let shrunk = wait_until("the write CF shrinks", Duration::from_secs(20), || {
        let min = metric_values(&c, "nokv_engine_estimated_keys", Some("write"))
            .into_iter()
            .fold(f64::MAX, f64::min);
        (min <= (KEYS * 2) as f64).then_some(min)
    });
    println!("write CF estimated keys: {written} before GC, {shrunk} after");

    rt.block_on(async {
        // Reads at and above the safe point are unchanged.
        let now = client.current_ts().await.expect("ts");
        for ts in [safe_point, now] {
            for k in 0..KEYS {
                let got = client.snapshot_get(&key(k), ts).await.expect("read");
                assert_eq!(got, Some(value(k, VERSIONS - 1)), "key {k} at {ts}");
            }
        }
        let scanned = client
            .snapshot_scan(b"gc/", b"gc0", 100, false, now)
            .await
            .expect("scan");
        assert_eq!(scanned.len(), KEYS);
        // A read below the safe point is refused, not answered wrongly.
        let err = client
            .snapshot_get(&key(0), before_all)
            .await
            .expect_err("below the safe point");
        assert!(err.to_string().contains("safe point"), "{err}");
        // Writes keep working on top of the collected keys.
        let mut txn = client.begin().await.expect("begin");
        txn.put(key(0), "after-gc");
        txn.commit().await.expect("commit");
        let fresh = client.begin().await.expect("begin");
        assert_eq!(
            fresh.get(&key(0)).await.expect("read"),
            Some(b"after-gc".to_vec())
        );
    });
    c.assert_no_panics();
}
