//! End-to-end: a list-append transaction workload over real processes,
//! checked for snapshot isolation by `nokv_tests::list_append`. Keys live in
//! three regions, so transactions mix one-phase and two-phase commits;
//! leaders move and a node is killed with -9 while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nokv_client::{Error, Prewrite, RawClient, TxnClient, TxnOptions};
use nokv_tests::list_append::{check, Op, Outcome, Txn};
use nokv_tests::{harness::seed_from_env, runtime, LocalCluster};
use rand::{Rng, SeedableRng};

const KEYS: u64 = 9;

fn key(k: u64) -> Vec<u8> {
    format!("la/{k}").into_bytes()
}

fn parse(v: Option<Vec<u8>>) -> Vec<u64> {
    let Some(v) = v else { return Vec::new() };
    let s = String::from_utf8(v).expect("utf8 list");
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().expect("list element"))
        .collect()
}

fn render(list: &[u64]) -> String {
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether an error proves the transaction did not commit.
fn definitely_failed(e: &Error) -> bool {
    matches!(
        e,
        Error::WriteConflict { .. }
            | Error::AlreadyExists { .. }
            | Error::TxnAborted(_)
            | Error::Locked(_)
            | Error::InvalidArgument(_)
    )
}

/// Runs one random transaction; returns its ops and outcome.
async fn run_txn(client: &TxnClient, rng: &mut rand::rngs::StdRng, next: &AtomicU64) -> Txn {
    let mut ops = Vec::new();
    let plan: Vec<(bool, u64)> = (0..rng.random_range(1..=4))
        .map(|_| (rng.random_bool(0.5), rng.random_range(0..KEYS)))
        .collect();
    let outcome = async {
        let mut txn = match client.begin().await {
            Ok(t) => t,
            Err(_) => return Outcome::Aborted,
        };
        for (append, k) in plan {
            let mut list = match txn.get(&key(k)).await {
                Ok(v) => parse(v),
                // Nothing was written yet: the transaction simply ends.
                Err(_) => return Outcome::Aborted,
            };
            if append {
                let value = next.fetch_add(1, Ordering::Relaxed);
                list.push(value);
                txn.put(key(k), render(&list));
                ops.push(Op::Append { key: k, value });
            } else {
                ops.push(Op::Read {
                    key: k,
                    value: list,
                });
            }
        }
        let prewritten = match txn.prewrite().await {
            Ok(Prewrite::OnePc(_)) => return Outcome::Committed,
            Ok(Prewrite::TwoPc(p)) => p,
            // A one-phase commit may have applied before a timeout.
            Err(e) if definitely_failed(&e) => return Outcome::Aborted,
            Err(_) => return Outcome::Unknown,
        };
        match prewritten.commit_primary().await {
            Ok(committed) => {
                committed.commit_secondaries().await;
                Outcome::Committed
            }
            Err(e) if definitely_failed(&e) => Outcome::Aborted,
            Err(_) => Outcome::Unknown,
        }
    }
    .await;
    Txn {
        id: 0,
        ops,
        outcome,
    }
}

#[test]
fn list_append_history_is_snapshot_isolated_through_leader_moves_and_a_crash() {
    let seed = seed_from_env();
    println!("NOKV_SEED={seed}");
    let secs: u64 = std::env::var("NOKV_LIST_APPEND_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let c = LocalCluster::start(1, 3, "");
    let rt = runtime();
    let raw = RawClient::new(c.coordinators.clone(), Duration::from_secs(15)).expect("client");
    let client = TxnClient::with_raw(
        raw,
        TxnOptions {
            lock_ttl_ms: 1000,
            ..TxnOptions::default()
        },
    );
    for split in ["la/3", "la/6"] {
        c.split_at(split);
    }

    let history = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let workers: Vec<_> = (0..6u64)
        .map(|w| {
            let (client, history, stop, next) =
                (client.clone(), history.clone(), stop.clone(), next.clone());
            rt.spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (w + 1));
                while !stop.load(Ordering::Relaxed) {
                    let txn = run_txn(&client, &mut rng, &next).await;
                    history.lock().expect("history").push(txn);
                }
            })
        })
        .collect();

    let started = Instant::now();
    let pause_until = |fraction: f64| {
        let t = Duration::from_secs_f64(secs as f64 * fraction);
        if let Some(d) = t.checked_sub(started.elapsed()) {
            std::thread::sleep(d);
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pick = |stores: &[u64]| stores[rng.random_range(0..stores.len())];
    pause_until(0.2);
    c.transfer_leaders(&mut pick);
    pause_until(0.4);
    c.kill9("node-3");
    pause_until(0.6);
    c.restart("node-3");
    pause_until(0.8);
    c.transfer_leaders(&mut pick);
    pause_until(1.0);
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in workers {
            w.await.expect("worker");
        }
    });

    // Final lists, read once every lock is resolved.
    let finals: BTreeMap<u64, Vec<u64>> = rt.block_on(async {
        nokv_tests::wait_until_async("locks resolved", Duration::from_secs(30), || async {
            matches!(client.resolve_locks_in_range(b"la/", b"la0").await, Ok(0)).then_some(())
        })
        .await;
        let ts = client.current_ts().await.expect("ts");
        let mut finals = BTreeMap::new();
        for k in 0..KEYS {
            let v = client.snapshot_get(&key(k), ts).await.expect("final read");
            finals.insert(k, parse(v));
        }
        finals
    });
    let mut history = std::mem::take(&mut *history.lock().expect("history"));
    for (i, t) in history.iter_mut().enumerate() {
        t.id = i;
    }
    match check(&history, &finals) {
        Ok(summary) => {
            println!("{summary:?}");
            assert!(summary.committed > 50, "too few committed transactions");
            assert!(summary.nonempty_reads > 20, "too few reads saw data");
        }
        Err(anomalies) => {
            for a in anomalies.iter().take(20) {
                println!("{a}");
            }
            panic!("{} anomalies (seed {seed})", anomalies.len());
        }
    }
    c.assert_no_panics();
}
