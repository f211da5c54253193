//! End-to-end: a follower cut off while more than 50 MB is written catches
//! up by a chunked snapshot, and neither the sender nor the receiver ever
//! holds the snapshot in memory (their peak RSS is printed and bounded).

use std::time::Duration;

use nokv_client::RawClient;
use nokv_tests::{applied_index, http_get, json, metric, runtime, wait_until_async, LocalCluster};

/// Peak resident set size of a process, in bytes (Linux `VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM line")
}

#[test]
fn a_follower_behind_50mb_catches_up_by_a_chunked_snapshot_with_bounded_memory() {
    let c = LocalCluster::start(
        1,
        3,
        "node_config:\n  raft:\n    log_gc_interval_ticks: 5\n    log_gc_threshold: 20\n    log_gc_count_limit: 50\n    split_check_ticks: 0\n",
    );
    let rt = runtime();
    let client = RawClient::new(c.coordinators.clone(), Duration::from_secs(30)).expect("client");
    let regions = json(&c.nokv_ok(&["regions", "-o", "json"]));
    let leader_store = regions[0]["leader_store_id"].as_u64().expect("leader");
    let stores = json(&c.nokv_ok(&["stores", "-o", "json"]));
    let leader_addr = stores
        .as_array()
        .expect("stores")
        .iter()
        .find(|s| s["id"].as_u64() == Some(leader_store))
        .and_then(|s| s["address"].as_str())
        .expect("leader address")
        .to_string();
    let nodes: Vec<_> = c
        .processes()
        .into_iter()
        .filter(|p| p.kind == "node")
        .collect();
    let leader = nodes
        .iter()
        .find(|p| p.grpc == leader_addr)
        .expect("leader")
        .clone();
    let follower = nodes
        .iter()
        .find(|p| p.grpc != leader_addr)
        .expect("follower")
        .clone();

    c.kill9(&follower.name);
    // 100 MB of incompressible values, 256 KiB each, in batches of 4.
    let value_size = 256 * 1024;
    let count = 400u32;
    rt.block_on(async {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for batch in 0..count / 4 {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
                .map(|j| {
                    let i = batch * 4 + j;
                    let mut v = vec![0u8; value_size];
                    for b in v.iter_mut() {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        *b = seed as u8;
                    }
                    (format!("big{i:04}").into_bytes(), v)
                })
                .collect();
            client.batch_put(&pairs).await.expect("batch put");
        }
    });
    c.restart(&follower.name);
    let follower = c.process(&follower.name);
    rt.block_on(async {
        let target = applied_index(&leader.grpc, 1)
            .await
            .expect("leader applied");
        wait_until_async(
            "the restarted follower to catch up",
            Duration::from_secs(120),
            || async {
                let a = applied_index(&follower.grpc, 1).await?;
                (a >= target).then_some(())
            },
        )
        .await;
    });
    let (_, received) = http_get(&follower.status, "/metrics").expect("metrics");
    let (_, sent) = http_get(&leader.status, "/metrics").expect("metrics");
    let snapshot_bytes = |body: &str, direction| {
        metric(
            body,
            "nokv_raft_snapshot_bytes_total",
            Some(("direction", direction)),
        )
    };
    let received_bytes = snapshot_bytes(&received, "received");
    let sent_bytes = snapshot_bytes(&sent, "sent");
    let data = f64::from(count) * value_size as f64;
    assert!(
        received_bytes >= 50.0 * 1024.0 * 1024.0,
        "the follower caught up by snapshot: {received_bytes} bytes received"
    );
    assert!(sent_bytes >= received_bytes, "{sent_bytes} sent");
    let (leader_rss, follower_rss) = (peak_rss(leader.pid), peak_rss(follower.pid));
    println!(
        "snapshot: {:.1} MB received; peak RSS: sender {:.1} MB, receiver {:.1} MB",
        received_bytes / 1e6,
        leader_rss as f64 / 1e6,
        follower_rss as f64 / 1e6
    );
    // The receiver started after the writes: it saw only the snapshot. A
    // process that held the snapshot whole would peak above its size.
    assert!(
        (follower_rss as f64) < data,
        "receiver peak RSS {follower_rss} is not below the {data}-byte snapshot"
    );
    rt.block_on(async {
        let v = client.get(b"big0123").await.expect("get").expect("present");
        assert_eq!(v.len(), value_size);
    });
    c.assert_no_panics();
}
