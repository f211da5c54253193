//! End-to-end: a store refuses writes with a typed `ServerIsBusy` when a
//! region has too many requests waiting for raft or the apply pool holds
//! too many entries, instead of queueing without bound; the SDK backs off
//! and retries, so clients only see slower writes; nothing is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_client::RawClient;
use nokv_proto::errorpb::region_error::Kind;
use nokv_proto::kvrpcpb::kv_client::KvClient;
use nokv_proto::kvrpcpb::{Context, RawPutRequest};
use nokv_tests::{json, runtime, LocalCluster};

#[test]
fn writes_past_the_raft_and_apply_queue_limits_are_refused_as_busy_and_nothing_is_lost() {
    // Tiny limits so that a burst of concurrent writes passes them.
    let c = LocalCluster::start(
        1,
        1,
        "node_config:\n  raft:\n    max_inflight_requests: 4\n    max_apply_queue_entries: 1\n",
    );
    let rt = runtime();
    let region = json(&c.nokv_ok(&["regions", "-o", "json"]))[0].clone();
    let store = json(&c.nokv_ok(&["stores", "-o", "json"]))[0]["address"]
        .as_str()
        .expect("store address")
        .to_string();
    let ctx = Context {
        region_id: region["id"].as_u64().expect("region id"),
        region_epoch: Some(nokv_proto::metapb::RegionEpoch {
            conf_ver: region["conf_ver"].as_u64().expect("conf_ver"),
            version: region["version"].as_u64().expect("version"),
        }),
        ..Default::default()
    };

    // Bursts of 64 concurrent puts straight to the store (no SDK retry)
    // until both limits have refused something.
    let mut acknowledged = Vec::new();
    let (mut raft_busy, mut apply_busy) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut burst = 0;
    while (raft_busy == 0 || apply_busy == 0) && Instant::now() < deadline {
        burst += 1;
        let answers = rt.block_on(async {
            let kv = KvClient::connect(format!("http://{store}"))
                .await
                .expect("connect");
            let calls = (0..64).map(|i| {
                let mut kv = kv.clone();
                let key = format!("b{burst:03}-{i:02}").into_bytes();
                async move {
                    let resp = kv
                        .raw_put(RawPutRequest {
                            context: Some(ctx),
                            key: key.clone(),
                            value: key.clone(),
                            ttl_seconds: 0,
                            ..Default::default()
                        })
                        .await
                        .expect("busy is an answer, not a failure")
                        .into_inner();
                    (key, resp)
                }
            });
            futures::future::join_all(calls).await
        });
        for (key, resp) in answers {
            match resp.region_error.and_then(|e| e.kind) {
                None => acknowledged.push(key),
                Some(Kind::ServerIsBusy(b)) => {
                    assert!(b.backoff_ms > 0, "busy carries a backoff hint");
                    if b.reason.contains("apply queue") {
                        apply_busy += 1;
                    } else {
                        assert!(b.reason.contains("waiting for raft"), "{}", b.reason);
                        raft_busy += 1;
                    }
                }
                Some(other) => panic!("unexpected region error {other:?}"),
            }
        }
    }
    println!(
        "{burst} bursts of 64: {} acknowledged, {raft_busy} refused by the region's raft queue, \
         {apply_busy} by the apply queue",
        acknowledged.len()
    );
    assert!(raft_busy > 0, "the per-region limit never refused a write");
    assert!(
        apply_busy > 0,
        "the apply queue limit never refused a write"
    );
    assert!(!acknowledged.is_empty(), "some writes got through");

    // Every acknowledged write is there.
    let client =
        Arc::new(RawClient::new(c.coordinators.clone(), Duration::from_secs(20)).expect("client"));
    rt.block_on(async {
        for key in &acknowledged {
            let got = client.get(key).await.expect("get");
            assert_eq!(
                got.as_deref(),
                Some(key.as_slice()),
                "acknowledged write lost"
            );
        }
    });

    // Through the SDK the same load succeeds: it backs off on busy.
    rt.block_on(async {
        let puts = (0..64).map(|i| {
            let client = client.clone();
            async move {
                let key = format!("sdk-{i:02}");
                client
                    .put(key.as_bytes(), b"v")
                    .await
                    .expect("the SDK retries busy");
            }
        });
        futures::future::join_all(puts).await;
        for i in 0..64 {
            let key = format!("sdk-{i:02}");
            assert_eq!(
                client.get(key.as_bytes()).await.expect("get").as_deref(),
                Some(&b"v"[..])
            );
        }
    });
    c.assert_no_panics();
}
