//! End-to-end: Percolator transactions over real processes. A bank
//! workload keeps its total through leader transfers and a kill -9; clients
//! that die between the commit phases leave locks that later readers roll
//! back or forward.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_client::{Prewrite, RawClient, TxnClient, TxnOptions};
use nokv_tests::{json, runtime, LocalCluster};
use rand::{Rng, SeedableRng};

const ACCOUNTS: usize = 10;
const INITIAL: u64 = 1000;

fn account(i: usize) -> Vec<u8> {
    format!("bank/{i:02}").into_bytes()
}

fn txn_client(c: &LocalCluster, opts: TxnOptions) -> TxnClient {
    let raw = RawClient::new(c.coordinators.clone(), Duration::from_secs(30)).expect("client");
    TxnClient::with_raw(raw, opts)
}

fn parse_balance(v: Option<Vec<u8>>) -> u64 {
    let v = v.expect("account exists");
    String::from_utf8(v)
        .expect("utf8")
        .parse()
        .expect("balance is a number")
}

#[test]
fn bank_transfers_keep_the_total_through_leader_moves_and_a_node_crash() {
    let seed = nokv_tests::harness::seed_from_env();
    println!("NOKV_SEED={seed}");
    let secs: u64 = std::env::var("NOKV_BANK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let c = LocalCluster::start(1, 3, "");
    let rt = runtime();
    let client = txn_client(&c, TxnOptions::default());
    rt.block_on(async {
        let mut txn = client.begin().await.expect("begin");
        for i in 0..ACCOUNTS {
            txn.put(account(i), INITIAL.to_string());
        }
        txn.commit().await.expect("seed accounts");
    });
    // Accounts spread over at least four regions.
    for i in [2, 5, 8] {
        c.split_at(&String::from_utf8(account(i)).expect("utf8 account"));
    }
    let regions = json(&c.nokv_ok(&["regions", "-o", "json"]));
    assert!(regions.as_array().expect("regions").len() >= 4);

    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let audits = Arc::new(AtomicU64::new(0));
    let total = INITIAL * ACCOUNTS as u64;
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let client = client.clone();
            let (stop, transfers, conflicts) = (stop.clone(), transfers.clone(), conflicts.clone());
            rt.spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (w + 1));
                while !stop.load(Ordering::Relaxed) {
                    let a = rng.random_range(0..ACCOUNTS);
                    let b = (a + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                    let r: nokv_client::Result<()> = async {
                        let mut txn = client.begin().await?;
                        let ba = parse_balance(txn.get(&account(a)).await?);
                        let bb = parse_balance(txn.get(&account(b)).await?);
                        let amount = rng.random_range(0..=ba.min(50));
                        txn.put(account(a), (ba - amount).to_string());
                        txn.put(account(b), (bb + amount).to_string());
                        txn.commit().await?;
                        Ok(())
                    }
                    .await;
                    match r {
                        Ok(()) => {
                            transfers.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.is_retryable() => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        // Unavailability while a node restarts: the
                        // transfer may or may not have happened, which the
                        // audit checks either way.
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    let auditor = {
        let client = client.clone();
        let (stop, audits) = (stop.clone(), audits.clone());
        rt.spawn(async move {
            let keys: Vec<Vec<u8>> = (0..ACCOUNTS).map(account).collect();
            while !stop.load(Ordering::Relaxed) {
                let Ok(txn) = client.begin().await else {
                    continue;
                };
                let Ok(pairs) = txn.batch_get(&keys).await else {
                    continue;
                };
                assert_eq!(pairs.len(), ACCOUNTS, "an account vanished");
                let sum: u64 = pairs.into_iter().map(|(_, v)| parse_balance(Some(v))).sum();
                assert_eq!(
                    sum,
                    total,
                    "snapshot at {} sees a broken total",
                    txn.start_ts()
                );
                audits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The chaos timeline, relative to the run's length.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let at = |fraction: f64| Duration::from_secs_f64(secs as f64 * fraction);
    let pause_until = |t: Duration| {
        if let Some(d) = t.checked_sub(started.elapsed()) {
            std::thread::sleep(d);
        }
    };
    let mut moved = 0;
    pause_until(at(0.15));
    let mut pick = |stores: &[u64]| stores[rng.random_range(0..stores.len())];
    moved += c.transfer_leaders(&mut pick);
    pause_until(at(0.3));
    c.kill9("node-2");
    pause_until(at(0.55));
    c.restart("node-2");
    pause_until(at(0.75));
    moved += c.transfer_leaders(&mut pick);
    pause_until(at(1.0));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in workers {
            w.await.expect("worker");
        }
        auditor.await.expect("auditor saw a broken total");
    });
    println!(
        "transfers {} conflicts {} audits {} leader moves {moved}",
        transfers.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed),
        audits.load(Ordering::Relaxed)
    );
    assert!(
        transfers.load(Ordering::Relaxed) > 0,
        "no transfer committed"
    );
    assert!(audits.load(Ordering::Relaxed) > 0, "no audit completed");
    assert!(moved > 0, "no leader transfer was accepted");

    rt.block_on(async {
        // Final audit, then no lock may remain once decided transactions
        // are resolved (live ones expire within their TTL).
        let txn = client.begin().await.expect("begin");
        let keys: Vec<Vec<u8>> = (0..ACCOUNTS).map(account).collect();
        let sum: u64 = txn
            .batch_get(&keys)
            .await
            .expect("final audit")
            .into_iter()
            .map(|(_, v)| parse_balance(Some(v)))
            .sum();
        assert_eq!(sum, total);
        nokv_tests::wait_until_async("every lock resolved", Duration::from_secs(30), || async {
            match client.resolve_locks_in_range(b"", b"").await {
                Ok(0) => Some(()),
                _ => None,
            }
        })
        .await;
        let now = client.current_ts().await.expect("ts");
        let locks = client.scan_locks(b"", b"", now).await.expect("scan locks");
        assert!(locks.is_empty(), "locks left behind: {locks:?}");
    });
    c.assert_no_panics();
}

/// Two keys in different regions so the commit is two-phase.
async fn two_region_txn(c: &LocalCluster, client: &TxnClient) -> (Vec<u8>, Vec<u8>) {
    let (primary, secondary) = (b"crash/a".to_vec(), b"crash/z".to_vec());
    c.split_at("crash/m");
    let mut txn = client.begin().await.expect("begin");
    txn.put(primary.clone(), "old");
    txn.put(secondary.clone(), "old");
    txn.commit().await.expect("seed");
    (primary, secondary)
}

#[test]
fn a_client_that_dies_after_prewrite_is_rolled_back_by_a_later_reader() {
    let c = LocalCluster::start(1, 3, "");
    let rt = runtime();
    let client = txn_client(
        &c,
        TxnOptions {
            lock_ttl_ms: 1500,
            try_one_pc: false,
            ..TxnOptions::default()
        },
    );
    rt.block_on(async {
        let (primary, secondary) = two_region_txn(&c, &client).await;
        let mut txn = client.begin().await.expect("begin");
        txn.put(primary.clone(), "new");
        txn.put(secondary.clone(), "new");
        let Prewrite::TwoPc(prewritten) = txn.prewrite().await.expect("prewrite") else {
            panic!("keys in two regions must commit in two phases");
        };
        let dead_start = prewritten.start_ts();
        // The client dies: no commit, no more heartbeats.
        drop(prewritten);
        let now = client.current_ts().await.expect("ts");
        assert_eq!(
            client
                .scan_locks(b"crash/", b"crash0", now)
                .await
                .expect("locks")
                .len(),
            2,
            "both keys are locked by the dead transaction"
        );
        // A reader waits for the TTL, then rolls the transaction back.
        let reader = client.begin().await.expect("begin");
        assert_eq!(
            reader.get(&secondary).await.expect("read"),
            Some(b"old".to_vec())
        );
        assert_eq!(
            reader.get(&primary).await.expect("read"),
            Some(b"old".to_vec())
        );
        let now = client.current_ts().await.expect("ts");
        assert!(client
            .scan_locks(b"crash/", b"crash0", now)
            .await
            .expect("locks")
            .is_empty());
        // The dead transaction can no longer commit.
        let mut late = client.begin().await.expect("begin");
        late.put(b"crash/other".to_vec(), "x");
        let later = client.snapshot_get(&primary, now).await.expect("read");
        assert_eq!(later, Some(b"old".to_vec()));
        assert!(dead_start < now);
    });
    c.assert_no_panics();
}

#[test]
fn a_client_that_dies_after_committing_the_primary_is_rolled_forward_by_a_later_reader() {
    let c = LocalCluster::start(1, 3, "");
    let rt = runtime();
    let client = txn_client(
        &c,
        TxnOptions {
            lock_ttl_ms: 1500,
            try_one_pc: false,
            ..TxnOptions::default()
        },
    );
    rt.block_on(async {
        let (primary, secondary) = two_region_txn(&c, &client).await;
        let mut txn = client.begin().await.expect("begin");
        txn.put(primary.clone(), "new");
        txn.put(secondary.clone(), "new");
        let Prewrite::TwoPc(prewritten) = txn.prewrite().await.expect("prewrite") else {
            panic!("keys in two regions must commit in two phases");
        };
        let committed = prewritten.commit_primary().await.expect("commit primary");
        let commit_ts = committed.commit_ts;
        // The client dies before committing the secondary.
        drop(committed);
        let now = client.current_ts().await.expect("ts");
        let locks = client
            .scan_locks(b"crash/", b"crash0", now)
            .await
            .expect("locks");
        assert_eq!(locks.len(), 1, "only the secondary is still locked");
        assert_eq!(locks[0].key, secondary);
        // A reader resolves the secondary from the primary's commit record.
        let reader = client.begin().await.expect("begin");
        assert!(reader.start_ts() > commit_ts);
        assert_eq!(
            reader.get(&secondary).await.expect("read"),
            Some(b"new".to_vec())
        );
        assert_eq!(
            reader.get(&primary).await.expect("read"),
            Some(b"new".to_vec())
        );
        let now = client.current_ts().await.expect("ts");
        assert!(client
            .scan_locks(b"crash/", b"crash0", now)
            .await
            .expect("locks")
            .is_empty());
        // Reads below the commit ts still see the old values.
        assert_eq!(
            client
                .snapshot_get(&secondary, commit_ts - 1)
                .await
                .expect("read"),
            Some(b"old".to_vec())
        );
    });
    c.assert_no_panics();
}

#[test]
fn conflicting_transactions_get_a_typed_retryable_error_and_leave_no_trace() {
    let c = LocalCluster::start(1, 3, "");
    let rt = runtime();
    let client = txn_client(&c, TxnOptions::default());
    rt.block_on(async {
        let mut t1 = client.begin().await.expect("begin");
        let mut t2 = client.begin().await.expect("begin");
        t1.put(b"conflict/k".to_vec(), "one");
        t2.put(b"conflict/k".to_vec(), "two");
        t2.commit().await.expect("second-started commits first");
        let err = t1.commit().await.expect_err("older writer must conflict");
        assert!(
            matches!(err, nokv_client::Error::WriteConflict { .. }),
            "{err}"
        );
        assert!(err.is_retryable());
        let now = client.current_ts().await.expect("ts");
        assert_eq!(
            client.snapshot_get(b"conflict/k", now).await.expect("read"),
            Some(b"two".to_vec())
        );
        assert!(client
            .scan_locks(b"", b"", now)
            .await
            .expect("locks")
            .is_empty());
        // Raw and transactional data never see each other.
        client
            .raw()
            .put(b"conflict/k", b"raw")
            .await
            .expect("raw put");
        assert_eq!(
            client.raw().get(b"conflict/k").await.expect("raw get"),
            Some(b"raw".to_vec())
        );
        let now = client.current_ts().await.expect("ts");
        assert_eq!(
            client.snapshot_get(b"conflict/k", now).await.expect("read"),
            Some(b"two".to_vec())
        );
        client
            .raw()
            .delete(b"conflict/k")
            .await
            .expect("raw delete");
        let fresh = client.begin().await.expect("begin");
        assert_eq!(
            fresh.get(b"conflict/k").await.expect("read"),
            Some(b"two".to_vec())
        );
    });
    // The CLI's transactional commands.
    c.nokv_ok(&["put", "cli/key", "v1"]);
    assert_eq!(c.nokv_ok(&["get", "cli/key"]).trim(), "v1");
    let scanned = json(&c.nokv_ok(&["scan", "--start", "cli/", "-o", "json"]));
    assert_eq!(scanned[0]["value"], "v1");
    c.nokv_ok(&["delete", "cli/key"]);
    let out = c.nokv(&["get", "cli/key"]);
    assert_eq!(out.status.code(), Some(3), "missing key exits 3");
    c.assert_no_panics();
}
