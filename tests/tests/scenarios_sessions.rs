//! Client sessions on the in-process harness, through the real apply path:
//! a write repeated with the same (session, sequence) applies once, after a
//! restart of every node, on both sides of a split, on a replica that
//! caught up by snapshot, and on both sides of a merge; a write of a session
//! the region forgot is refused by every replica alike. Each prints its
//! seed; `NOKV_SEED` replays it.

use std::time::Duration;

use nokv_proto::errorpb::region_error::Kind;
use nokv_proto::kvrpcpb::kv_client::KvClient;
use nokv_proto::kvrpcpb::{Context, KvPair, RawBatchPutRequest, WriteSession};
use nokv_tests::harness::{seed_from_env, Harness, HarnessConfig};

fn start(session_idle_secs: Option<u64>) -> Harness {
    let h = Harness::start(
        HarnessConfig {
            nodes: 3,
            log_gc_limit: Some(40),
            session_idle_secs,
            ..Default::default()
        },
        seed_from_env(),
    );
    // Merges need both regions on the same stores.
    h.pause_scheduler("balance-region", true);
    h
}

/// A new session id, as the SDK opens one: a timestamp from the TSO.
fn open_session(h: &Harness) -> u64 {
    h.rt.block_on(h.coordinator_client().get_timestamp(1))
        .expect("a timestamp")
}

/// Sends `pairs` (all in one region) to that region's leader as the write
/// `(session, sequence)`, retrying routing errors until a definite answer.
/// Returns the session refusal, if the region refused the write.
fn send(h: &Harness, pairs: &[(&str, &str)], session: u64, sequence: u64) -> Option<Kind> {
    let first = pairs[0].0.as_bytes().to_vec();
    h.wait_until(
        "a definite answer to the write",
        Duration::from_secs(30),
        |h| {
            let r =
                h.rt.block_on(h.coordinator_client().get_region(&first))
                    .ok()?;
            let (region, leader) = (r.region?, r.leader?);
            let addr = h.admin_addresses().get(&leader.store_id)?.clone();
            let resp = h.rt.block_on(async {
                let mut kv = KvClient::connect(format!("http://{addr}")).await.ok()?;
                kv.raw_batch_put(RawBatchPutRequest {
                    context: Some(Context {
                        region_id: region.id,
                        region_epoch: region.epoch,
                        peer: Some(leader),
                        ..Default::default()
                    }),
                    pairs: pairs
                        .iter()
                        .map(|(k, v)| KvPair {
                            key: k.as_bytes().to_vec(),
                            value: v.as_bytes().to_vec(),
                            error: None,
                        })
                        .collect(),
                    ttl_seconds: 0,
                    session: Some(WriteSession {
                        session_id: session,
                        sequence,
                    }),
                })
                .await
                .ok()
            })?;
            match resp.into_inner().region_error {
                None => Some(None),
                Some(e) => match e.kind {
                    Some(k @ Kind::SessionExpired(_)) | Some(k @ Kind::SequenceStale(_)) => {
                        Some(Some(k))
                    }
                    // Routing moved on (leader change, split): ask again.
                    _ => None,
                },
            }
        },
    )
}

fn region_id_of(h: &Harness, key: &str) -> u64 {
    h.wait_until("the region of a key", Duration::from_secs(30), |h| {
        let r =
            h.rt.block_on(h.coordinator_client().get_region(key.as_bytes()))
                .ok()?;
        r.leader?;
        Some(r.region?.id)
    })
}

/// Snapshots installed by any node of this process's harness.
fn snapshots_applied() -> u64 {
    nokv_node::metrics::SNAPSHOTS_APPLIED.get()
}

#[test]
fn a_repeated_write_applies_once_across_restart_split_snapshot_and_merge() {
    let mut h = start(None);
    // One write over two keys, then later writes by others.
    let s = open_session(&h);
    assert_eq!(send(&h, &[("b/1", "x"), ("b/7", "x")], s, 1), None);
    h.put("b/1", "later");
    h.put("b/7", "later");
    assert_eq!(send(&h, &[("b/1", "x"), ("b/7", "x")], s, 1), None);
    assert_eq!(h.get("b/1").as_deref(), Some("later"), "repeat applied");

    // Every node restarts: the tables come back from RocksDB.
    for i in 0..h.node_count() {
        h.restart_node(i);
    }
    assert_eq!(send(&h, &[("b/1", "x"), ("b/7", "x")], s, 1), None);
    assert_eq!(h.get("b/1").as_deref(), Some("later"), "after a restart");

    // A split puts the two keys in two regions; the client resends each
    // region's piece with the same sequence, and neither side applies it.
    h.split("b/5");
    assert_ne!(region_id_of(&h, "b/1"), region_id_of(&h, "b/7"));
    assert_eq!(send(&h, &[("b/1", "x")], s, 1), None);
    assert_eq!(send(&h, &[("b/7", "x")], s, 1), None);
    assert_eq!(h.get("b/1").as_deref(), Some("later"), "left of the split");
    assert_eq!(h.get("b/7").as_deref(), Some("later"), "right of the split");

    // A replica misses a write and catches up by snapshot (the log moved
    // past it), then leads: the snapshot carried the session table.
    let right = region_id_of(&h, "b/7");
    let (_, leader) = h
        .regions()
        .into_iter()
        .find(|(r, _)| r.id == right)
        .expect("right region");
    let lagging = h
        .store_ids()
        .into_iter()
        .find(|s| *s != leader)
        .expect("a follower store");
    let before = snapshots_applied();
    h.chaos.isolate_replica(right, lagging);
    let t = open_session(&h);
    assert_eq!(send(&h, &[("b/8", "y")], t, 1), None);
    h.put("b/8", "later");
    for i in 0..120 {
        h.put(&format!("b/9/{i:03}"), "filler");
    }
    h.chaos.heal();
    h.wait_until(
        "the lagging replica to catch up by snapshot",
        Duration::from_secs(60),
        |_| (snapshots_applied() > before).then_some(()),
    );
    h.wait_until(
        "leadership on the caught-up replica",
        Duration::from_secs(60),
        |h| {
            h.rt.block_on(h.transfer_leader(right, lagging));
            h.regions()
                .into_iter()
                .any(|(r, l)| r.id == right && l == lagging)
                .then_some(())
        },
    );
    assert_eq!(send(&h, &[("b/8", "y")], t, 1), None);
    assert_eq!(h.get("b/8").as_deref(), Some("later"), "after a snapshot");

    // One write on each side of a merge, then the merge: the merged region
    // knows both.
    let (u, v) = (open_session(&h), open_session(&h));
    assert_eq!(send(&h, &[("b/2", "z")], u, 1), None);
    assert_eq!(send(&h, &[("b/6", "z")], v, 1), None);
    h.put("b/2", "later");
    h.put("b/6", "later");
    let left = region_id_of(&h, "b/2");
    h.wait_until("the merge", Duration::from_secs(60), |h| {
        h.rt.block_on(h.merge(right, left)).ok()
    });
    h.wait_until("one region again", Duration::from_secs(30), |h| {
        (region_id_of(h, "b/2") == region_id_of(h, "b/6")).then_some(())
    });
    assert_eq!(send(&h, &[("b/2", "z")], u, 1), None);
    assert_eq!(send(&h, &[("b/6", "z")], v, 1), None);
    assert_eq!(h.get("b/2").as_deref(), Some("later"), "target side");
    assert_eq!(h.get("b/6").as_deref(), Some("later"), "source side");
    // The sessions' next writes still apply.
    assert_eq!(send(&h, &[("b/6", "next")], v, 2), None);
    assert_eq!(h.get("b/6").as_deref(), Some("next"));
}

#[test]
fn a_write_of_a_forgotten_session_is_refused_by_every_replica() {
    let h = start(Some(2));
    let old = open_session(&h);
    assert_eq!(send(&h, &[("k", "old")], old, 1), None);
    h.put("k", "newer");
    // Other sessions' writes move the region clock past the idle timeout.
    h.wait_until(
        "the region to forget the idle session",
        Duration::from_secs(30),
        |h| {
            h.put("clock", "tick");
            match send(h, &[("k", "old")], old, 1) {
                Some(Kind::SessionExpired(_)) => Some(()),
                _ => None,
            }
        },
    );
    assert_eq!(h.get("k").as_deref(), Some("newer"));
    let region = region_id_of(&h, "k");
    for store in h.store_ids() {
        h.wait_until("leadership on each store", Duration::from_secs(60), |h| {
            h.rt.block_on(h.transfer_leader(region, store));
            h.regions()
                .into_iter()
                .any(|(r, l)| r.id == region && l == store)
                .then_some(())
        });
        assert!(
            matches!(
                send(&h, &[("k", "old")], old, 1),
                Some(Kind::SessionExpired(_))
            ),
            "store {store} must refuse the forgotten session too"
        );
        assert_eq!(h.get("k").as_deref(), Some("newer"));
    }
    // Every replica holds the same sessions once it applied as far.
    h.wait_until(
        "every replica to hold the same sessions",
        Duration::from_secs(30),
        |h| {
            let replicas: Vec<(u64, u64)> = h
                .local_regions()
                .into_iter()
                .filter(|(_, r)| r.region.as_ref().is_some_and(|g| g.id == region))
                .map(|(_, r)| (r.applied_index, r.sessions))
                .collect();
            (replicas.len() == 3 && replicas.windows(2).all(|w| w[0] == w[1])).then_some(())
        },
    );
}
