//! Hibernation on the in-process harness: idle regions stop all raft
//! traffic, a request wakes only its region, and when a leader's node dies
//! while everything sleeps, its followers notice (store pings stop), wake
//! up and elect a new leader. Prints its seed; `NOKV_SEED` replays it.

use std::time::{Duration, Instant};

use nokv_tests::harness::{seed_from_env, Harness, HarnessConfig};

const REGIONS: usize = 8;

fn key(i: usize) -> String {
    format!("h{i:02}")
}

/// (asleep, total) initialized replicas over every running store.
fn sleepers(h: &Harness) -> (usize, usize) {
    let all = h.local_regions();
    let live: Vec<_> = all
        .iter()
        .filter(|(_, s)| s.region.as_ref().is_some_and(|r| !r.peers.is_empty()))
        .collect();
    (live.iter().filter(|(_, s)| s.asleep).count(), live.len())
}

fn wait_all_asleep(h: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (asleep, total) = sleepers(h);
        if total > 0 && asleep == total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {asleep} of {total} replicas hibernate after 60 s (seed {})\n{}",
            h.seed,
            h.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idle_regions_hibernate_wake_on_demand_and_survive_a_dead_leader() {
    let mut h = Harness::start(
        HarnessConfig {
            nodes: 5,
            ..Default::default()
        },
        seed_from_env(),
    );
    // Placement stays put, so nothing but the test wakes a region.
    h.pause_scheduler("balance-region", true);
    h.pause_scheduler("balance-leader", true);
    for i in 1..REGIONS {
        h.wait_until("a split", Duration::from_secs(30), |h| {
            h.rt.block_on(h.split_at(key(i).as_bytes())).then_some(())
        });
    }
    for i in 0..REGIONS {
        h.put(&key(i), "v0");
    }
    h.wait_until(
        "every region to have a leader",
        Duration::from_secs(30),
        |h| {
            let rs = h.regions();
            (rs.len() == REGIONS && rs.iter().all(|(_, l)| *l != 0)).then_some(())
        },
    );

    // Idle: every replica hibernates and no region traffic flows while
    // they sleep (only store pings do).
    wait_all_asleep(&h);
    let before = h.chaos.region_messages();
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        let (asleep, total) = sleepers(&h);
        assert_eq!(asleep, total, "a replica woke with nothing to do");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        h.chaos.region_messages(),
        before,
        "hibernating regions sent raft messages"
    );

    // A write wakes its own region only, and is served.
    h.put(&key(3), "v1");
    assert_eq!(h.get(&key(3)).as_deref(), Some("v1"));
    let woken =
        h.rt.block_on(h.coordinator_client().get_region(key(3).as_bytes()));
    let woken_id = woken
        .ok()
        .and_then(|r| r.region)
        .map(|r| r.id)
        .expect("region");
    let others_asleep = h
        .local_regions()
        .iter()
        .filter(|(_, s)| s.region.as_ref().is_some_and(|r| r.id != woken_id))
        .all(|(_, s)| s.asleep);
    assert!(others_asleep, "a write woke other regions\n{}", h.dump());
    wait_all_asleep(&h);

    // The node leading the most regions dies while everything sleeps: the
    // followers stop hearing its store, wake up and elect new leaders.
    let regions = h.regions();
    let victim_store = (0..h.node_count())
        .map(|i| h.store_id(i))
        .max_by_key(|s| regions.iter().filter(|(_, l)| l == s).count())
        .expect("a store");
    let victim = (0..h.node_count())
        .find(|i| h.store_id(*i) == victim_store)
        .expect("victim node");
    let led: Vec<u64> = regions
        .iter()
        .filter(|(_, l)| *l == victim_store)
        .map(|(r, _)| r.id)
        .collect();
    assert!(!led.is_empty(), "the victim leads a region");
    h.stop_node(victim);
    for i in 0..REGIONS {
        h.put(&key(i), "v2");
    }
    for i in 0..REGIONS {
        assert_eq!(h.get(&key(i)).as_deref(), Some("v2"), "key {}", key(i));
    }
    println!(
        "store {victim_store} led {} regions; all {REGIONS} served again without it",
        led.len()
    );
    h.start_node(victim);
    wait_all_asleep(&h);
}
