//! End-to-end: the coordinator group keeps TSO and ID allocation correct
//! across kill -9 of its leader, twice in a row, printing the measured
//! unavailability of each failover.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_client::CoordinatorClient;
use nokv_tests::{wait_until, LocalCluster};

#[test]
fn coordinator_leader_crash_never_repeats_timestamps_or_ids() {
    let c = LocalCluster::start(3, 1, "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    // Successful calls across the workers, to wait for progress.
    let served = Arc::new(AtomicU64::new(0));
    let progress = |what: &str| {
        let from = served.load(Ordering::Relaxed);
        wait_until(what, Duration::from_secs(30), || {
            (served.load(Ordering::Relaxed) >= from + 40).then_some(())
        });
    };
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client =
            CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(2)).expect("client");
        let (stop, served) = (stop.clone(), served.clone());
        workers.push(rt.spawn(async move {
            let mut ts = Vec::new();
            let mut ids = Vec::new();
            let mut failures = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match client.get_timestamp(3).await {
                    Ok(first) => {
                        ts.push(first);
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => failures += 1,
                }
                match client.alloc_id(2).await {
                    Ok(first) => {
                        ids.extend([first, first + 1]);
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => failures += 1,
                }
            }
            (ts, ids, failures)
        }));
    }
    progress("the workers to run against the first leader");
    // Kill the leader twice in a row: the second time the leader elected
    // after the first kill, once the first victim is back.
    let mut victims = Vec::new();
    for failover in 1..=2 {
        let leader = wait_until("a coordinator leader", Duration::from_secs(30), || {
            rt.block_on(async {
                CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(2))
                    .ok()?
                    .members()
                    .await
                    .ok()?
                    .leader
                    .map(|l| l.address)
            })
        });
        let victim = c.node_by_address(&leader);
        c.kill9(&victim.name);
        let killed_at = Instant::now();
        let probe = CoordinatorClient::new(
            c.coordinators
                .iter()
                .filter(|a| **a != leader)
                .cloned()
                .collect(),
            Duration::from_secs(1),
        )
        .expect("probe client");
        wait_until(
            "a new coordinator leader to serve TSO",
            Duration::from_secs(30),
            || rt.block_on(probe.get_timestamp(1)).ok(),
        );
        println!(
            "failover {failover}: measured coordinator unavailability {:.2}s (leader {} killed)",
            killed_at.elapsed().as_secs_f64(),
            victim.name
        );
        // Bring the victim back so the group has a quorum for the next kill.
        c.restart(&victim.name);
        c.wait_ready(&victim.name, Duration::from_secs(30));
        victims.push(victim.name);
        progress("the workers to run with the member back");
    }
    assert_eq!(victims.len(), 2);
    stop.store(true, Ordering::Relaxed);

    let mut all_ts = HashSet::new();
    let mut all_ids = HashSet::new();
    let mut total = 0;
    for w in workers {
        let (ts, ids, _failures) = rt.block_on(w).expect("worker");
        assert!(ts.len() > 2, "worker got timestamps");
        for pair in ts.windows(2) {
            // Each request took 3 timestamps: [first, first + 3).
            assert!(
                pair[1] >= pair[0] + 3,
                "timestamps went back or overlapped: {} then {}",
                pair[0],
                pair[1]
            );
        }
        for t in &ts {
            for k in 0..3 {
                assert!(all_ts.insert(t + k), "timestamp {} handed out twice", t + k);
            }
        }
        for id in ids {
            assert!(all_ids.insert(id), "id {id} handed out twice");
            total += 1;
        }
    }
    assert!(total > 0);
    // No invariant was violated on the members still running.
    let violations: Vec<f64> = c
        .processes()
        .iter()
        .filter(|p| p.kind == "coordinator")
        .filter_map(|p| nokv_tests::http_get(&p.status, "/metrics"))
        .map(|(_, body)| {
            nokv_tests::metric(&body, "nokv_coordinator_invariant_violations_total", None)
        })
        .collect();
    assert!(!violations.is_empty(), "a coordinator answered /metrics");
    assert!(violations.iter().all(|v| *v == 0.0), "{violations:?}");
}

#[test]
fn coordinator_log_is_compacted_and_members_restart_on_it() {
    let c = LocalCluster::start(
        3,
        1,
        "coordinator_config:\n  log_gc_threshold: 50\n  log_gc_interval_ticks: 5\n  id_window: 1\n",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt
        .block_on(async { CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(10)) })
        .expect("client");
    // With a one-id window every allocation is a raft entry.
    let mut ids = HashSet::new();
    for _ in 0..300 {
        assert!(ids.insert(rt.block_on(client.alloc_id(1)).expect("alloc")));
    }
    let coordinators: Vec<_> = c
        .processes()
        .into_iter()
        .filter(|p| p.kind == "coordinator")
        .collect();
    let status = |addr: &str| -> Option<(u64, u64)> {
        let (_, body) = nokv_tests::http_get(addr, "/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some((v["applied_index"].as_u64()?, v["truncated_index"].as_u64()?))
    };
    for p in &coordinators {
        let (applied, truncated) = wait_until(
            "the coordinator log to be compacted",
            Duration::from_secs(30),
            || status(&p.status).filter(|(a, t)| *t > 0 && a - t <= 200),
        );
        println!("{}: applied {applied}, truncated {truncated}", p.name);
    }
    // A member restarts on its compacted log and the group keeps serving.
    let victim = &coordinators[0];
    c.kill9(&victim.name);
    c.restart(&victim.name);
    wait_until(
        "the restarted member to serve its status",
        Duration::from_secs(30),
        || status(&victim.status),
    );
    for _ in 0..20 {
        assert!(
            ids.insert(
                rt.block_on(client.alloc_id(1))
                    .expect("alloc after restart")
            ),
            "ids never repeat"
        );
    }
    assert!(rt.block_on(client.get_timestamp(1)).is_ok());
    wait_until(
        "the restarted member to catch up",
        Duration::from_secs(30),
        || {
            let leader_applied = coordinators[1..]
                .iter()
                .filter_map(|p| status(&p.status))
                .map(|s| s.0)
                .max()?;
            status(&victim.status).filter(|(a, _)| *a + 5 >= leader_applied)
        },
    );
}
