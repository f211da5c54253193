//! End-to-end tests over real processes started by `nokv cluster up`:
//! basic service, leader crash, full restart, bad input, metrics, bench.

use std::time::{Duration, Instant};

use nokv_client::RawClient;
use nokv_proto::kvrpcpb::kv_client::KvClient;
use nokv_proto::kvrpcpb::{Context, RawGetRequest, RawPutRequest};
use nokv_tests::{
    applied_index, http_get, json, runtime, wait_until, wait_until_async, LocalCluster,
};
use serde_json::Value;

/// The first region and its leader's store, from `nokv regions -o json`.
fn first_region(c: &LocalCluster) -> Value {
    let regions = json(&c.nokv_ok(&["regions", "-o", "json"]));
    regions
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("at least one region")
}

#[test]
fn cluster_up_serves_put_get_and_shows_stores_and_regions() {
    let c = LocalCluster::start(3, 3, "");
    assert_eq!(c.nokv_ok(&["raw", "put", "k", "v"]).trim(), "OK");
    assert_eq!(c.nokv_ok(&["raw", "get", "k"]).trim(), "v");

    let region = first_region(&c);
    assert_eq!(region["id"], 1, "the first region is region 1");
    let peers = region["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|p| p["role"] == "voter"));
    let stores_of: std::collections::HashSet<u64> = peers
        .iter()
        .map(|p| p["store_id"].as_u64().unwrap())
        .collect();
    assert_eq!(stores_of.len(), 3, "replicas on three different stores");
    assert_ne!(region["leader_store_id"], 0, "region has a leader");

    let stores = json(&c.nokv_ok(&["stores", "-o", "json"]));
    let stores = stores.as_array().expect("stores");
    assert_eq!(stores.len(), 3);
    assert!(stores.iter().all(|s| s["state"] == "Up"), "{stores:?}");

    // The table forms render too.
    let table = c.nokv_ok(&["regions"]);
    assert!(table.contains("+inf"), "{table}");
    let missing = c.nokv(&["raw", "get", "no-such-key"]);
    assert_eq!(missing.status.code(), Some(3), "missing key exits 3");
    c.assert_no_panics();
}

#[test]
fn leader_crash_loses_no_acknowledged_write_and_restarted_node_catches_up() {
    let c = LocalCluster::start(3, 3, "");
    let rt = runtime();
    let client = RawClient::new(c.coordinators.clone(), Duration::from_secs(20)).expect("client");
    rt.block_on(async {
        let mut tasks = Vec::new();
        let client = std::sync::Arc::new(client);
        for t in 0..8u32 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..1000).step_by(8) {
                    let k = format!("key-{i:04}");
                    client
                        .put(k.as_bytes(), format!("value-{i}").as_bytes())
                        .await
                        .expect("put");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
    });

    let region = first_region(&c);
    let region_id = region["id"].as_u64().unwrap();
    let leader_store = region["leader_store_id"].as_u64().unwrap();
    let victim = c.node_of_store(leader_store);

    c.kill9(&victim.name);
    let killed_at = Instant::now();
    let client = RawClient::new(c.coordinators.clone(), Duration::from_secs(2)).expect("client");
    rt.block_on(async {
        wait_until_async(
            "a write to succeed after the leader crash",
            Duration::from_secs(60),
            || async { client.put(b"after-crash", b"1").await.ok() },
        )
        .await;
    });
    let unavailable = killed_at.elapsed();
    println!(
        "measured unavailability after leader kill -9: {:.2}s",
        unavailable.as_secs_f64()
    );

    let client = RawClient::new(c.coordinators.clone(), Duration::from_secs(20)).expect("client");
    rt.block_on(async {
        let pairs = client
            .scan(b"key-", b"key-~", 2000, Default::default())
            .await
            .expect("scan");
        assert_eq!(pairs.len(), 1000, "every acknowledged key survives");
        for (i, p) in pairs.iter().enumerate() {
            assert_eq!(p.key, format!("key-{i:04}").into_bytes());
            assert_eq!(p.value, format!("value-{i}").into_bytes());
        }
        assert_eq!(
            client.get(b"key-0777").await.expect("get"),
            Some(b"value-777".to_vec())
        );
    });

    c.restart(&victim.name);
    let new_leader = wait_until(
        "a new leader to be reported",
        Duration::from_secs(30),
        || {
            let r = first_region(&c);
            let s = r["leader_store_id"].as_u64()?;
            (s != 0 && s != leader_store).then_some(s)
        },
    );
    let leader_addr = json(&c.nokv_ok(&["stores", "-o", "json"]))
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_u64() == Some(new_leader))
        .and_then(|s| s["address"].as_str().map(String::from))
        .expect("leader address");
    rt.block_on(async {
        let target = applied_index(&leader_addr, region_id)
            .await
            .expect("leader applied index");
        let caught_up = wait_until_async(
            "the restarted node to catch up",
            Duration::from_secs(60),
            || async {
                let a = applied_index(&victim.grpc, region_id).await?;
                (a >= target).then_some(a)
            },
        )
        .await;
        println!("restarted node applied index {caught_up} >= leader's {target}");
    });
    c.assert_no_panics();
}

#[test]
fn full_restart_keeps_data_and_ids() {
    let c = LocalCluster::start(3, 3, "");
    for i in 0..50 {
        c.nokv_ok(&["raw", "put", &format!("persist-{i:02}"), &format!("v{i}")]);
    }
    let ids = |c: &LocalCluster| {
        let mut stores: Vec<u64> = json(&c.nokv_ok(&["stores", "-o", "json"]))
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_u64().unwrap())
            .collect();
        stores.sort();
        let mut regions: Vec<u64> = json(&c.nokv_ok(&["regions", "-o", "json"]))
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        regions.sort();
        (stores, regions)
    };
    let before = ids(&c);
    c.down();
    c.up_again();
    assert_eq!(
        ids(&c),
        before,
        "store and region ids survive a full restart"
    );
    let scanned = json(&c.nokv_ok(&[
        "raw",
        "scan",
        "--start",
        "persist-",
        "--end",
        "persist-~",
        "-o",
        "json",
    ]));
    let scanned = scanned.as_array().expect("pairs");
    assert_eq!(scanned.len(), 50);
    assert_eq!(scanned[7]["value"], "v7");
    c.assert_no_panics();
}

#[test]
fn bad_input_gets_typed_errors_and_the_cli_fails_fast() {
    let c = LocalCluster::start(1, 1, "");
    let rt = runtime();
    // Talk to the store directly so the server's own validation is tested,
    // not just the SDK's.
    let region = first_region(&c);
    let store = json(&c.nokv_ok(&["stores", "-o", "json"]))[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let ctx = Context {
        region_id: region["id"].as_u64().unwrap(),
        region_epoch: Some(nokv_proto::metapb::RegionEpoch {
            conf_ver: region["conf_ver"].as_u64().unwrap(),
            version: region["version"].as_u64().unwrap(),
        }),
        ..Default::default()
    };
    rt.block_on(async {
        let mut kv = KvClient::connect(format!("http://{store}"))
            .await
            .expect("connect");
        let err = kv
            .raw_put(RawPutRequest {
                context: Some(ctx),
                key: vec![],
                value: b"v".to_vec(),
                ttl_seconds: 0,
                ..Default::default()
            })
            .await
            .expect_err("empty key");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("empty"), "{}", err.message());

        let err = kv
            .raw_put(RawPutRequest {
                context: Some(ctx),
                key: vec![b'k'; 8 * 1024 + 1],
                value: vec![],
                ttl_seconds: 0,
                ..Default::default()
            })
            .await
            .expect_err("key too large");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("limit"), "{}", err.message());

        let err = kv
            .raw_put(RawPutRequest {
                context: Some(ctx),
                key: b"k".to_vec(),
                value: vec![0u8; 8 * 1024 * 1024 + 1],
                ttl_seconds: 0,
                ..Default::default()
            })
            .await
            .expect_err("value too large");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        let err = kv
            .raw_get(RawGetRequest {
                context: None,
                key: b"k".to_vec(),
            })
            .await
            .expect_err("missing context");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        // A stale epoch is a typed region error, not a failure.
        let mut stale = ctx;
        stale.region_epoch = Some(nokv_proto::metapb::RegionEpoch {
            conf_ver: 0,
            version: 99,
        });
        let resp = kv
            .raw_get(RawGetRequest {
                context: Some(stale),
                key: b"k".to_vec(),
            })
            .await
            .expect("region errors are answers")
            .into_inner();
        assert!(
            matches!(
                resp.region_error.as_ref().and_then(|e| e.kind.as_ref()),
                Some(nokv_proto::errorpb::region_error::Kind::EpochNotMatch(_))
            ),
            "{:?}",
            resp.region_error
        );
    });

    // The CLI: oversized key, empty key.
    let big = "k".repeat(8 * 1024 + 1);
    let out = c.nokv(&["raw", "put", &big, "v"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line on stderr: {err}");
    assert!(err.contains("limit"), "{err}");
    let out = c.nokv(&["raw", "get", ""]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));

    // An unreachable coordinator: one line, non-zero, within the timeout.
    let start = Instant::now();
    let out = std::process::Command::new(nokv_tests::bin_dir().join("nokv"))
        .args([
            "--coordinator",
            "127.0.0.1:1",
            "--timeout",
            "2",
            "raw",
            "get",
            "k",
        ])
        .output()
        .expect("run nokv");
    let took = start.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line on stderr: {err}");
    assert!(took < Duration::from_secs(10), "returned after {took:?}");
    c.assert_no_panics();
}

fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (code, body) = http_get(addr, "/metrics").expect("metrics endpoint answers");
    assert_eq!(code, 200);
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text")
}

#[test]
fn every_process_exposes_prometheus_metrics_and_health() {
    let c = LocalCluster::start(3, 3, "");
    for i in 0..20 {
        c.nokv_ok(&["raw", "put", &format!("m{i}"), "v"]);
    }
    c.nokv_ok(&["raw", "get", "m1"]);
    for p in c.processes() {
        assert_eq!(
            http_get(&p.status, "/health").map(|r| r.0),
            Some(200),
            "{} /health",
            p.name
        );
        assert_eq!(
            http_get(&p.status, "/ready").map(|r| r.0),
            Some(200),
            "{} /ready",
            p.name
        );
        let (_, status) = http_get(&p.status, "/status").expect("/status");
        let status = json(&status);
        assert_eq!(status["component"], p.kind);

        let s = scrape(&p.status);
        let names: std::collections::HashSet<&str> =
            s.samples.iter().map(|x| x.metric.as_str()).collect();
        let mut required = vec![
            "nokv_grpc_requests_total",
            "nokv_grpc_request_duration_seconds",
            "nokv_raft_proposals_total",
            "nokv_raft_applied_index",
            "nokv_raft_persist_duration_seconds",
            "nokv_raft_apply_duration_seconds",
        ];
        if p.kind == "node" {
            required.extend(["nokv_store_regions", "nokv_store_leaders"]);
        } else {
            required.extend([
                "nokv_coordinator_regions",
                "nokv_coordinator_store_leaders",
                "nokv_coordinator_tso_requests_total",
            ]);
        }
        for m in required {
            assert!(names.contains(m), "{} lacks {m}", p.name);
        }
        for h in [
            "nokv_grpc_request_duration_seconds",
            "nokv_raft_persist_duration_seconds",
            "nokv_raft_apply_duration_seconds",
        ] {
            let sample = s
                .samples
                .iter()
                .find(|x| x.metric == h)
                .expect("histogram sample");
            assert!(
                matches!(sample.value, prometheus_parse::Value::Histogram(_)),
                "{h} is a histogram"
            );
        }
        let with_labels = s
            .samples
            .iter()
            .find(|x| x.metric == "nokv_grpc_requests_total")
            .expect("request counter");
        assert!(
            with_labels.labels.get("method").is_some() && with_labels.labels.get("code").is_some()
        );
    }
    // The node that leads counts one leader and one region.
    let leaders: f64 = c
        .processes()
        .iter()
        .filter(|p| p.kind == "node")
        .map(|p| {
            scrape(&p.status)
                .samples
                .iter()
                .find(|x| x.metric == "nokv_store_leaders")
                .map(|x| match x.value {
                    prometheus_parse::Value::Gauge(v) => v,
                    _ => 0.0,
                })
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(leaders, 1.0, "exactly one store leads the one region");
}

#[test]
fn bench_runs_against_the_cluster_and_reports_json() {
    let c = LocalCluster::start(1, 3, "");
    for workload in ["put", "get"] {
        let out = json(&c.nokv_ok(&[
            "bench",
            "--workload",
            workload,
            "--clients",
            "4",
            "--duration",
            "2",
            "--preload",
            "200",
            "-o",
            "json",
        ]));
        assert_eq!(out["workload"], workload);
        assert!(out["ops"].as_u64().unwrap() > 0, "{out}");
        assert_eq!(out["errors"], 0, "{out}");
        assert!(out["p99_ms"].as_f64().unwrap() >= out["p50_ms"].as_f64().unwrap());
    }
}

#[test]
fn scans_page_past_the_per_request_limit() {
    let c = LocalCluster::start(1, 1, "");
    let rt = runtime();
    let client = rt
        .block_on(async { RawClient::new(c.coordinators.clone(), Duration::from_secs(30)) })
        .expect("client");
    rt.block_on(async {
        for chunk in 0..11u32 {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = (chunk * 1000..(chunk + 1) * 1000)
                .map(|i| (format!("p{i:05}").into_bytes(), b"v".to_vec()))
                .collect();
            client.batch_put(&pairs).await.expect("batch put");
        }
        let all = client
            .scan(b"p", b"q", 20_000, Default::default())
            .await
            .expect("scan");
        assert_eq!(
            all.len(),
            11_000,
            "a scan longer than one page returns everything"
        );
        assert!(
            all.windows(2).all(|w| w[0].key < w[1].key),
            "in order, no duplicates"
        );
        let rev = client
            .scan(
                b"q",
                b"p",
                10_500,
                nokv_client::ScanOptions {
                    reverse: true,
                    key_only: true,
                },
            )
            .await
            .expect("reverse scan");
        assert_eq!(rev.len(), 10_500);
        assert!(rev.windows(2).all(|w| w[0].key > w[1].key));
        assert_eq!(rev[0].key, b"p10999".to_vec());
    });
}
