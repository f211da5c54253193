//! 1000 regions, made by splits, on a 3-node cluster of real processes:
//! every region serves a write and a read, and once idle every replica
//! hibernates. The test prints each node's CPU use over an idle window
//! (docs/benchmarks.md records the figures).
//!
//! `NOKV_REGIONS` changes the region count, `NOKV_IDLE_SECS` the idle
//! window (default 5 s); `NOKV_HIBERNATE=0` starts the nodes with
//! hibernation off, to measure the difference by hand (then nothing is
//! asserted about sleeping replicas).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_client::{CoordinatorClient, RawClient};
use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::{RegionStatusRequest, SplitRegionRequest};
use nokv_tests::{runtime, LocalCluster};
use tokio::sync::Semaphore;

fn key(i: usize) -> String {
    format!("r{i:05}")
}

/// Splits the region holding `key` at `key`, retrying until a region
/// starts there.
async fn split(coordinator: &CoordinatorClient, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "split at {key} never happened");
        let Ok(r) = coordinator.get_region(key.as_bytes()).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (Some(region), Some(leader)) = (r.region, r.leader.filter(|l| l.store_id != 0)) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if region.start_key == key.as_bytes() {
            return;
        }
        let Ok(store) = coordinator.get_store(leader.store_id).await else {
            continue;
        };
        let Some(addr) = store.store.map(|s| s.address) else {
            continue;
        };
        if let Ok(mut admin) = AdminClient::connect(format!("http://{addr}")).await {
            let _ = admin
                .split_region(SplitRegionRequest {
                    region_id: region.id,
                    split_key: key.as_bytes().to_vec(),
                    half: false,
                })
                .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// User CPU + system CPU of `pid` in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

#[test]
fn a_thousand_regions_serve_and_hibernate_when_idle() {
    let regions: usize = std::env::var("NOKV_REGIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let idle_secs: u64 = std::env::var("NOKV_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let hibernate = std::env::var("NOKV_HIBERNATE").map_or(true, |v| v != "0");
    let extra = if hibernate {
        String::new()
    } else {
        "node_config:\n  raft:\n    hibernate_regions: false\n".to_string()
    };
    let c = LocalCluster::start(1, 3, &extra);
    let rt = runtime();
    let coordinator = {
        let _g = rt.enter();
        Arc::new(
            CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(10))
                .expect("client"),
        )
    };

    // Split by bisection: every split of a level cuts a different region,
    // so a level's splits run concurrently.
    let started = Instant::now();
    let mut level = vec![(0usize, regions)];
    while !level.is_empty() {
        let gate = Arc::new(Semaphore::new(16));
        let mut next = Vec::new();
        let mut tasks = Vec::new();
        for (lo, hi) in level {
            if hi - lo < 2 {
                continue;
            }
            let mid = (lo + hi) / 2;
            next.push((lo, mid));
            next.push((mid, hi));
            let (coordinator, gate) = (coordinator.clone(), gate.clone());
            tasks.push(rt.spawn(async move {
                let _permit = gate.acquire().await.expect("semaphore");
                split(&coordinator, &key(mid)).await;
            }));
        }
        for t in tasks {
            rt.block_on(t).expect("split task");
        }
        level = next;
    }
    let count = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let infos = coordinator
                .scan_regions(b"", b"", 0)
                .await
                .unwrap_or_default();
            let led = infos.iter().filter(|i| i.leader.is_some()).count();
            if infos.len() == regions && led == regions {
                return infos.len();
            }
            assert!(
                Instant::now() < deadline,
                "{} regions, {led} with leaders, after the splits",
                infos.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    println!(
        "{count} regions made by splits in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Every region takes a write and reads it back.
    let client = {
        let _g = rt.enter();
        Arc::new(RawClient::new(c.coordinators.clone(), Duration::from_secs(30)).expect("client"))
    };
    let started = Instant::now();
    rt.block_on(async {
        let gate = Arc::new(Semaphore::new(32));
        let mut tasks = Vec::new();
        for i in 0..regions {
            let (client, gate) = (client.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("semaphore");
                let k = format!("{}-x", key(i));
                client.put(k.as_bytes(), k.as_bytes()).await.expect("put");
                let got = client.get(k.as_bytes()).await.expect("get");
                assert_eq!(got.as_deref(), Some(k.as_bytes()), "read back {k}");
            }));
        }
        for t in tasks {
            t.await.expect("region task");
        }
    });
    println!(
        "{regions} regions each served a write and a read in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Idle: every replica hibernates.
    let nodes: Vec<_> = c
        .processes()
        .into_iter()
        .filter(|p| p.kind == "node")
        .collect();
    let replicas = |rt: &tokio::runtime::Runtime| -> (usize, usize) {
        rt.block_on(async {
            let mut asleep = 0;
            let mut total = 0;
            for n in &nodes {
                let Ok(mut a) = AdminClient::connect(format!("http://{}", n.grpc)).await else {
                    continue;
                };
                if let Ok(r) = a.region_status(RegionStatusRequest { region_id: 0 }).await {
                    for s in r.into_inner().regions {
                        total += 1;
                        asleep += s.asleep as usize;
                    }
                }
            }
            (asleep, total)
        })
    };
    if hibernate {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (asleep, total) = replicas(&rt);
            if total == 3 * regions && asleep == total {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{asleep} of {total} replicas hibernate ({} expected)",
                3 * regions
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let before: Vec<f64> = nodes.iter().map(|n| cpu_seconds(n.pid)).collect();
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let elapsed = window.elapsed().as_secs_f64();
    let after: Vec<f64> = nodes.iter().map(|n| cpu_seconds(n.pid)).collect();
    let (asleep, total) = replicas(&rt);
    let usage: Vec<String> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| format!("{:.1}%", 100.0 * (a - b) / elapsed))
        .collect();
    println!(
        "idle CPU per node over {elapsed:.1} s with {regions} regions ({total} replicas, {asleep} hibernating, hibernation {}): {}",
        if hibernate { "on" } else { "off" },
        usage.join(", ")
    );
    if hibernate {
        assert_eq!(asleep, total, "replicas woke up while idle");
    }
    c.assert_no_panics();
}
