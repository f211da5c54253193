//! End-to-end: raw KV semantics over real processes: compare-and-swap
//! under contention, TTL expiry, and range operations across region
//! boundaries.

use std::sync::Arc;
use std::time::Duration;

use nokv_client::{CoordinatorClient, RawClient, ScanOptions};
use nokv_tests::{runtime, wait_until_async, LocalCluster};

fn key(i: u32) -> Vec<u8> {
    format!("r/{i:03}").into_bytes()
}

#[test]
fn compare_and_swap_has_exactly_one_winner_per_round_under_16_clients() {
    let c = LocalCluster::start(1, 3, "");
    let rt = runtime();
    let client =
        Arc::new(RawClient::new(c.coordinators.clone(), Duration::from_secs(20)).expect("client"));
    rt.block_on(async {
        for round in 0..20u32 {
            let k = format!("cas/{round}").into_bytes();
            let tasks: Vec<_> = (0..16u32)
                .map(|id| {
                    let (client, k) = (client.clone(), k.clone());
                    tokio::spawn(async move {
                        let (swapped, _) = client
                            .compare_and_swap(&k, None, format!("client-{id}").as_bytes())
                            .await
                            .expect("cas");
                        swapped.then_some(id)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for t in tasks {
                if let Some(id) = t.await.expect("task") {
                    winners.push(id);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            let stored = client.get(&k).await.expect("get");
            assert_eq!(stored, Some(format!("client-{}", winners[0]).into_bytes()));
            // A CAS against the winner's value succeeds, against anything
            // else fails and reports the current value.
            let (ok, prev) = client
                .compare_and_swap(&k, Some(b"wrong"), b"x")
                .await
                .expect("cas");
            assert!(!ok);
            assert_eq!(prev, stored);
            let (ok, _) = client
                .compare_and_swap(&k, stored.as_deref(), b"next")
                .await
                .expect("cas");
            assert!(ok);
        }
    });
    c.assert_no_panics();
}

#[test]
fn ttl_keys_expire_and_ranges_work_across_region_boundaries() {
    let c = LocalCluster::start(1, 3, "");
    let rt = runtime();
    let client = RawClient::new(c.coordinators.clone(), Duration::from_secs(20)).expect("client");
    let coord =
        CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(10)).expect("coord");
    rt.block_on(async {
        // TTL: visible at first, gone after it; a key without TTL stays.
        client
            .put_with_ttl(b"ttl/short", b"v", 1)
            .await
            .expect("put");
        client.put(b"ttl/forever", b"v").await.expect("put");
        assert_eq!(
            client.get(b"ttl/short").await.expect("get"),
            Some(b"v".to_vec())
        );
        wait_until_async("the TTL key expires", Duration::from_secs(10), || async {
            matches!(client.get(b"ttl/short").await, Ok(None)).then_some(())
        })
        .await;
        let scanned = client
            .scan(b"ttl/", b"ttl0", 10, ScanOptions::default())
            .await
            .expect("scan");
        assert_eq!(scanned.len(), 1, "expired keys are not scanned");
        assert_eq!(
            client.get(b"ttl/forever").await.expect("get"),
            Some(b"v".to_vec())
        );

        for i in 0..100 {
            client
                .put(&key(i), format!("{i}").as_bytes())
                .await
                .expect("put");
        }
    });
    for at in [30, 60] {
        c.split_at(std::str::from_utf8(&key(at)).expect("utf8"));
    }
    rt.block_on(async {
        let regions = coord
            .scan_regions(&key(0), &key(99), 0)
            .await
            .expect("regions");
        assert!(regions.len() >= 3, "the keys span three regions");
        let rev = |start: &[u8], end: &[u8], limit| {
            let client = &client;
            let (start, end) = (start.to_vec(), end.to_vec());
            async move {
                client
                    .scan(
                        &start,
                        &end,
                        limit,
                        ScanOptions {
                            key_only: false,
                            reverse: true,
                        },
                    )
                    .await
                    .expect("reverse scan")
                    .into_iter()
                    .map(|p| p.key)
                    .collect::<Vec<_>>()
            }
        };
        // Reverse scan of [r/010, r/090) from the top, across both
        // boundaries.
        let got = rev(&key(90), &key(10), 100).await;
        let want: Vec<Vec<u8>> = (10..90).rev().map(key).collect();
        assert_eq!(got, want);
        let got = rev(&key(65), &key(0), 10).await;
        let want: Vec<Vec<u8>> = (55..65).rev().map(key).collect();
        assert_eq!(got, want, "a limited reverse scan crosses r/060");

        // Delete a range spanning all three regions.
        client
            .delete_range(&key(20), &key(70))
            .await
            .expect("delete range");
        let left = client
            .scan(&key(0), &key(100), 1000, ScanOptions::default())
            .await
            .expect("scan");
        let want: Vec<Vec<u8>> = (0..20).chain(70..100).map(key).collect();
        assert_eq!(left.into_iter().map(|p| p.key).collect::<Vec<_>>(), want);
        let got = rev(&key(100), &key(0), 1000).await;
        let want: Vec<Vec<u8>> = (0..20).chain(70..100).rev().map(key).collect();
        assert_eq!(got, want);
    });
    c.assert_no_panics();
}
