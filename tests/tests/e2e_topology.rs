//! End-to-end: manual topology control through the CLI (split by key and
//! in half, leader transfer, adding and removing peers) and raft log GC with
//! snapshot catch-up, over real processes.

use std::time::Duration;

use nokv_client::{RawClient, ScanOptions};
use nokv_tests::{
    applied_index, http_get, json, runtime, wait_until, wait_until_async, LocalCluster,
};
use serde_json::Value;

fn regions(c: &LocalCluster) -> Vec<Value> {
    json(&c.nokv_ok(&["regions", "-o", "json"]))
        .as_array()
        .cloned()
        .expect("regions")
}

/// Regions tile the key space: sorted, adjacent, from "" to "".
fn assert_tiles(rs: &[Value]) {
    assert_eq!(rs.first().unwrap()["start_key_hex"], "");
    assert_eq!(rs.last().unwrap()["end_key_hex"], "");
    for w in rs.windows(2) {
        assert_eq!(
            w[0]["end_key_hex"], w[1]["start_key_hex"],
            "hole or overlap between {} and {}",
            w[0]["id"], w[1]["id"]
        );
    }
}

fn peer_stores(r: &Value) -> Vec<u64> {
    let mut s: Vec<u64> = r["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["store_id"].as_u64().unwrap())
        .collect();
    s.sort();
    s
}

#[test]
fn split_transfer_and_peer_changes_through_the_cli() {
    let c = LocalCluster::start(1, 4, "");
    // The replica checker removes a fourth replica and balance-region moves
    // replicas: membership here is the test's (and the CLI's) alone.
    c.nokv_ok(&["scheduler", "pause", "replica-checker"]);
    c.nokv_ok(&["scheduler", "pause", "balance-region"]);
    let rt = runtime();
    let client = rt
        .block_on(async { RawClient::new(c.coordinators.clone(), Duration::from_secs(20)) })
        .expect("client");
    rt.block_on(async {
        for i in 0..200u32 {
            client
                .put(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes())
                .await
                .expect("put");
        }
    });

    // Split by key: two regions that tile the key space.
    let split_store = regions(&c)[0]["leader_store_id"].as_u64().unwrap();
    let out = json(&c.nokv_ok(&["split", "--region", "1", "--key", "k100", "-o", "json"]));
    assert_eq!(out.as_array().unwrap().len(), 2, "{out}");
    let rs = wait_until(
        "the split to reach the coordinator",
        Duration::from_secs(20),
        || {
            let rs = regions(&c);
            (rs.len() == 2 && rs.iter().all(|r| r["leader_store_id"] != 0)).then_some(rs)
        },
    );
    assert_tiles(&rs);
    assert_eq!(rs[0]["end_key"], "k100");
    let right = rs[1]["id"].as_u64().unwrap();

    // Split in half: the middle of k100..k199.
    c.nokv_ok(&["split", "--region", &right.to_string(), "--half"]);
    let rs = wait_until("three regions", Duration::from_secs(20), || {
        let rs = regions(&c);
        (rs.len() == 3).then_some(rs)
    });
    assert_tiles(&rs);
    assert_eq!(rs[1]["start_key"], "k100");
    let mid = rs[2]["start_key"].as_str().unwrap().to_string();
    assert!(
        mid.as_str() > "k130" && mid.as_str() < "k170",
        "half split near the middle, got {mid}"
    );

    // Data spans regions: scans, reverse scans and delete range cross boundaries.
    rt.block_on(async {
        let all = client
            .scan(b"k", b"l", 1000, ScanOptions::default())
            .await
            .expect("scan");
        assert_eq!(all.len(), 200);
        let rev = client
            .scan(
                b"k150",
                b"k050",
                1000,
                ScanOptions {
                    reverse: true,
                    key_only: false,
                },
            )
            .await
            .expect("reverse scan");
        let keys: Vec<String> = rev
            .iter()
            .map(|p| String::from_utf8_lossy(&p.key).to_string())
            .collect();
        assert_eq!(keys.len(), 100);
        assert_eq!(keys.first().unwrap(), "k149");
        assert_eq!(keys.last().unwrap(), "k050");
        client
            .delete_range(b"k090", b"k160")
            .await
            .expect("delete range");
        let left = client
            .scan(b"k", b"l", 1000, ScanOptions::default())
            .await
            .expect("scan");
        assert_eq!(left.len(), 130);
        assert_eq!(client.get(b"k089").await.unwrap(), Some(b"v89".to_vec()));
        assert_eq!(client.get(b"k100").await.unwrap(), None);
        assert_eq!(client.get(b"k160").await.unwrap(), Some(b"v160".to_vec()));
    });

    // Leader transfer moves the leader.
    let r = &regions(&c)[0];
    let region_id = r["id"].as_u64().unwrap();
    let from = r["leader_store_id"].as_u64().unwrap();
    let to = *peer_stores(r).iter().find(|s| **s != from).unwrap();
    let out = json(&c.nokv_ok(&[
        "transfer-leader",
        "--region",
        &region_id.to_string(),
        "--to-store",
        &to.to_string(),
        "-o",
        "json",
    ]));
    assert_eq!(out["leader_store_id"], to);
    assert_eq!(regions(&c)[0]["leader_store_id"], to);

    // Add a peer on the fourth store, then remove another one.
    let stores: Vec<u64> = json(&c.nokv_ok(&["stores", "-o", "json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    let before = peer_stores(&regions(&c)[0]);
    let spare = *stores
        .iter()
        .find(|s| !before.contains(s))
        .expect("a store without the region");
    c.nokv_ok(&[
        "add-peer",
        "--region",
        &region_id.to_string(),
        "--store",
        &spare.to_string(),
    ]);
    let r = wait_until("the added voter", Duration::from_secs(20), || {
        let r = regions(&c)[0].clone();
        (peer_stores(&r).contains(&spare)
            && r["peers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["role"] == "voter"))
        .then_some(r)
    });
    assert_eq!(peer_stores(&r).len(), 4);
    // Removing the leader is refused; removing a follower works.
    let refused = c.nokv(&[
        "remove-peer",
        "--region",
        &region_id.to_string(),
        "--store",
        &to.to_string(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("transfer leadership away"));
    let victim = *peer_stores(&r)
        .iter()
        .find(|s| **s != to && **s != spare)
        .unwrap();
    c.nokv_ok(&[
        "remove-peer",
        "--region",
        &region_id.to_string(),
        "--store",
        &victim.to_string(),
    ]);
    wait_until(
        "the removed peer to leave the region",
        Duration::from_secs(20),
        || {
            let r = regions(&c)[0].clone();
            (!peer_stores(&r).contains(&victim) && peer_stores(&r).len() == 3).then_some(())
        },
    );
    rt.block_on(async {
        assert_eq!(
            client.get(b"k010").await.unwrap(),
            Some(b"v10".to_vec()),
            "data intact after peer changes"
        );
    });

    // `nokv execution` shows the transitions and admissions these caused.
    let transitions = |store: u64| -> Vec<Value> {
        json(&c.nokv_ok(&["execution", "--store", &store.to_string(), "-o", "json"]))["transitions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let has = |ts: &[Value], kind: &str, stage: &str| {
        ts.iter().any(|t| t["kind"] == kind && t["stage"] == stage)
    };
    let at_split = transitions(split_store);
    assert!(has(&at_split, "split", "reported"), "{at_split:?}");
    let at_from = transitions(from);
    assert!(has(&at_from, "transfer_leader", "applied"), "{at_from:?}");
    let at_to = transitions(to);
    assert!(has(&at_to, "change_peer", "applied"), "{at_to:?}");
    let exec = json(&c.nokv_ok(&[
        "execution",
        "--store",
        &to.to_string(),
        "--region",
        &region_id.to_string(),
        "-o",
        "json",
    ]));
    let admissions = exec["admissions"].as_array().unwrap();
    assert!(
        admissions
            .iter()
            .any(|a| a["class"] == "topology" && a["outcome"] == "accepted"),
        "{admissions:?}"
    );
    // A read sent to a follower is refused, and the follower says why.
    let follower = *peer_stores(&regions(&c)[0])
        .iter()
        .find(|s| **s != to)
        .unwrap();
    let follower_addr = json(&c.nokv_ok(&["stores", "-o", "json"]))
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_u64() == Some(follower))
        .and_then(|s| s["address"].as_str().map(String::from))
        .unwrap();
    let r0 = regions(&c)[0].clone();
    rt.block_on(async {
        let mut kv =
            nokv_proto::kvrpcpb::kv_client::KvClient::connect(format!("http://{follower_addr}"))
                .await
                .unwrap();
        let resp = kv
            .raw_get(nokv_proto::kvrpcpb::RawGetRequest {
                context: Some(nokv_proto::kvrpcpb::Context {
                    region_id,
                    region_epoch: Some(nokv_proto::metapb::RegionEpoch {
                        conf_ver: r0["conf_ver"].as_u64().unwrap(),
                        version: r0["version"].as_u64().unwrap(),
                    }),
                    ..Default::default()
                }),
                key: b"k001".to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(resp.region_error.is_some());
    });
    let exec = json(&c.nokv_ok(&[
        "execution",
        "--store",
        &follower.to_string(),
        "--region",
        &region_id.to_string(),
        "-o",
        "json",
    ]));
    let read = exec["admissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["class"] == "read")
        .cloned()
        .expect("a read admission");
    assert_eq!(read["outcome"], "not_leader", "{read}");
    assert!(read["reason"].as_str().unwrap().contains("not the leader"));
    let table = c.nokv_ok(&["execution", "--store", &split_store.to_string()]);
    assert!(
        table.contains("regions recovered at start") && table.contains("split"),
        "{table}"
    );
    c.assert_no_panics();
}

#[test]
fn log_gc_keeps_the_log_bounded_and_a_lagging_follower_catches_up_by_snapshot() {
    let limit = 100u64;
    let c = LocalCluster::start(
        1,
        3,
        &format!("node_config:\n  raft:\n    log_gc_interval_ticks: 5\n    log_gc_threshold: 20\n    log_gc_count_limit: {limit}\n"),
    );
    let rt = runtime();
    let client = rt
        .block_on(async { RawClient::new(c.coordinators.clone(), Duration::from_secs(20)) })
        .expect("client");
    let nodes: Vec<_> = c
        .processes()
        .into_iter()
        .filter(|p| p.kind == "node")
        .collect();
    let leader_store = json(&c.nokv_ok(&["regions", "-o", "json"]))[0]["leader_store_id"]
        .as_u64()
        .unwrap();
    let leader_addr = c.node_of_store(leader_store).grpc;
    let follower = nodes
        .iter()
        .find(|p| p.grpc != leader_addr)
        .unwrap()
        .clone();

    c.kill9(&follower.name);
    rt.block_on(async {
        for i in 0..600u32 {
            client
                .put(format!("gc{i:04}").as_bytes(), b"x")
                .await
                .expect("put");
        }
    });
    // Every live replica's log is bounded once GC has run.
    rt.block_on(async {
        for n in nodes.iter().filter(|p| p.name != follower.name) {
            wait_until_async(
                "the log to be compacted",
                Duration::from_secs(30),
                || async {
                    let mut admin = nokv_proto::adminpb::admin_client::AdminClient::connect(
                        format!("http://{}", n.grpc),
                    )
                    .await
                    .ok()?;
                    let s = admin
                        .region_status(nokv_proto::adminpb::RegionStatusRequest { region_id: 1 })
                        .await
                        .ok()?
                        .into_inner();
                    let r = s.regions.first()?;
                    println!(
                        "{}: applied {} truncated {}",
                        n.name, r.applied_index, r.truncated_index
                    );
                    (r.truncated_index > 5 && r.applied_index - r.truncated_index <= 2 * limit)
                        .then_some(())
                },
            )
            .await;
        }
    });
    // The follower that missed the compacted entries needs a snapshot.
    c.restart(&follower.name);
    rt.block_on(async {
        let target = applied_index(&leader_addr, 1)
            .await
            .expect("leader applied");
        wait_until_async(
            "the restarted follower to catch up",
            Duration::from_secs(60),
            || async {
                let a = applied_index(&follower.grpc, 1).await?;
                (a >= target).then_some(())
            },
        )
        .await;
    });
    let (_, metrics) = http_get(&follower.status, "/metrics").expect("metrics");
    let applied_snapshots = metrics
        .lines()
        .find(|l| l.starts_with("nokv_raft_snapshots_applied_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        applied_snapshots >= 1.0,
        "the follower caught up by snapshot"
    );
    rt.block_on(async {
        let all = client
            .scan(b"gc", b"gd", 1000, ScanOptions::default())
            .await
            .expect("scan");
        assert_eq!(all.len(), 600);
    });
    c.assert_no_panics();
}

#[test]
fn regions_split_automatically_past_the_key_threshold() {
    let c = LocalCluster::start(
        1,
        3,
        "node_config:\n  raft:\n    split_check_ticks: 5\n    region_split_keys: 40\n",
    );
    let rt = runtime();
    let client = rt
        .block_on(async { RawClient::new(c.coordinators.clone(), Duration::from_secs(20)) })
        .expect("client");
    rt.block_on(async {
        for i in 0..300u32 {
            client
                .put(format!("auto{i:04}").as_bytes(), b"v")
                .await
                .expect("put");
        }
    });
    let rs = wait_until("automatic splits", Duration::from_secs(60), || {
        let rs = regions(&c);
        (rs.len() >= 4 && rs.iter().all(|r| r["leader_store_id"] != 0)).then_some(rs)
    });
    assert_tiles(&rs);
    let sized = wait_until(
        "leaders to report region sizes",
        Duration::from_secs(30),
        || {
            let rs = regions(&c);
            rs.iter()
                .any(|r| r["approximate_keys"].as_u64().unwrap_or(0) > 0)
                .then_some(rs)
        },
    );
    assert_tiles(&sized);
    rt.block_on(async {
        let all = client
            .scan(b"auto", b"autp", 1000, ScanOptions::default())
            .await
            .expect("scan");
        assert_eq!(all.len(), 300);
    });
    c.assert_no_panics();
}
