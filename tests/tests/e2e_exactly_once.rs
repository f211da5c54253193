//! End-to-end: raw writes take effect exactly once across region leaders
//! killed with -9 (real processes).
//!
//! Eight clients put, get and compare-and-swap unique values on six keys
//! in three regions, with a short per-attempt timeout so that attempts are
//! often abandoned and retried while the first copy still commits, while
//! the leader of a random region is killed and restarted in a loop. Every
//! operation is recorded with its invoke and completion time (an
//! undetermined write as such) and each key's history goes through the
//! linearizability checker. With client sessions the histories pass; the
//! same run with sessions switched off in the client fails the checker,
//! which shows the test sees the duplicated writes sessions prevent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nokv_client::{CoordinatorClient, Error, RawClient, RawOptions};
use nokv_tests::linearizability::{is_linearizable, Operation, RegisterOp};
use nokv_tests::{json, metric, runtime, LocalCluster};
use rand::{Rng, SeedableRng};

const KEYS: usize = 6;
const CLIENTS: usize = 8;

fn key(i: usize) -> Vec<u8> {
    format!("eo/{i}").into_bytes()
}

/// Every key's operations so far, and the clock they are timed on.
struct History {
    start: Instant,
    state: Mutex<Ops>,
}

#[derive(Default)]
struct Ops {
    /// Completed (or undetermined) operations by key.
    done: HashMap<usize, Vec<Operation>>,
    /// The operation each client is running: its key and the operation as
    /// it stands at invocation.
    running: HashMap<usize, (usize, Operation)>,
}

impl History {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ops> {
        self.state.lock().expect("history lock")
    }

    /// Notes that `op` (with its invoke time) started on `key`.
    fn invoke(&self, key: usize, op: Operation) {
        self.lock().running.insert(op.client, (key, op));
    }

    /// Records how client `client`'s running operation ended: `None` when
    /// it failed for certain (it did not happen).
    fn complete(&self, client: usize, op: Option<Operation>) {
        let mut s = self.lock();
        let Some((key, _)) = s.running.remove(&client) else {
            return;
        };
        if let Some(op) = op {
            s.done.entry(key).or_default().push(op);
        }
    }

    /// The keys whose history up to now is not linearizable, and how many
    /// operations it holds. Operations still running are cut soundly: a
    /// running get is left out (it changed nothing), and a running put or
    /// compare-and-swap counts as one whose outcome is unknown.
    fn violations(&self) -> (Vec<usize>, usize) {
        let mut by_key = {
            let s = self.lock();
            let mut by_key = s.done.clone();
            for (key, op) in s.running.values() {
                let op = match &op.op {
                    RegisterOp::Get(_) => continue,
                    RegisterOp::Put(_) => op.clone(),
                    RegisterOp::Cas { expected, new, .. } => Operation {
                        op: RegisterOp::Cas {
                            expected: expected.clone(),
                            new: new.clone(),
                            outcome: None,
                        },
                        ..op.clone()
                    },
                };
                by_key.entry(*key).or_default().push(Operation {
                    complete: u64::MAX,
                    ..op
                });
            }
            by_key
        };
        let mut bad = Vec::new();
        let mut total = 0;
        for (k, h) in by_key.drain() {
            total += h.len();
            if !is_linearizable(&h) {
                bad.push(k);
            }
        }
        bad.sort_unstable();
        (bad, total)
    }
}

/// What one client does until `stop`: random operations on random keys.
async fn client_loop(
    id: usize,
    client: Arc<RawClient>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(id as u64));
    let mut seen: HashMap<usize, Option<Vec<u8>>> = HashMap::new();
    let mut n = 0usize;
    let mut undetermined = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let k = rng.random_range(0..KEYS);
        let value = format!("c{id}-{n}").into_bytes();
        let invoke = history.now();
        let op = |op| Operation {
            client: id,
            op,
            invoke,
            complete: u64::MAX,
        };
        match rng.random_range(0..10) {
            0..=3 => {
                history.invoke(k, op(RegisterOp::Put(value.clone())));
                let r = client.put(&key(k), &value).await;
                let complete = match &r {
                    Ok(()) => Some(history.now()),
                    Err(Error::Undetermined(_)) => {
                        undetermined += 1;
                        Some(u64::MAX)
                    }
                    // A definite failure did not happen at all.
                    Err(_) => None,
                };
                history.complete(
                    id,
                    complete.map(|complete| Operation {
                        complete,
                        ..op(RegisterOp::Put(value))
                    }),
                );
            }
            4..=6 => {
                history.invoke(k, op(RegisterOp::Get(None)));
                let got = client.get(&key(k)).await.ok();
                let complete = history.now();
                history.complete(
                    id,
                    got.map(|got| {
                        seen.insert(k, got.clone());
                        Operation {
                            complete,
                            ..op(RegisterOp::Get(got))
                        }
                    }),
                );
            }
            _ => {
                let expected = seen.get(&k).cloned().flatten();
                let cas = |outcome| RegisterOp::Cas {
                    expected: expected.clone(),
                    new: value.clone(),
                    outcome,
                };
                history.invoke(k, op(cas(None)));
                let r = client
                    .compare_and_swap(&key(k), expected.as_deref(), &value)
                    .await;
                let done = match r {
                    Ok((swapped, found)) => {
                        seen.insert(
                            k,
                            if swapped {
                                Some(value.clone())
                            } else {
                                found.clone()
                            },
                        );
                        Some(Operation {
                            complete: history.now(),
                            ..op(cas(Some((swapped, found))))
                        })
                    }
                    Err(Error::Undetermined(_)) => {
                        undetermined += 1;
                        Some(op(cas(None)))
                    }
                    Err(_) => None,
                };
                history.complete(id, done);
            }
        }
    }
    undetermined
}

/// The node process leading a random region, by the coordinator's view.
fn a_region_leader(c: &LocalCluster, rng: &mut impl Rng) -> Option<String> {
    let regions = json(&c.nokv_ok(&["regions", "-o", "json"]));
    let regions = regions.as_array()?.clone();
    let r = &regions[rng.random_range(0..regions.len())];
    let store = r["leader_store_id"].as_u64().filter(|s| *s != 0)?;
    Some(c.node_of_store(store).name)
}

/// Sum of the session-duplicate counters of the running nodes.
fn duplicates(c: &LocalCluster, node: &str) -> f64 {
    let p = c.process(node);
    c.status_get(&p.status, "/metrics")
        .map(|(_, body)| metric(&body, "nokv_session_duplicates_total", None))
        .unwrap_or(0.0)
}

struct Run {
    violations: Vec<usize>,
    ops: usize,
    undetermined: usize,
    kills: usize,
    duplicates: f64,
}

/// Runs the workload against a fresh cluster for up to `max`, killing a
/// region leader every few seconds. With `stop_at_violation`, the history
/// is checked every few seconds and the run ends at the first key found
/// not linearizable.
fn run(exactly_once: bool, min: Duration, max: Duration, stop_at_violation: bool) -> Run {
    let seed: u64 = std::env::var("NOKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("e2e_exactly_once seed = {seed} (replay with NOKV_SEED={seed}), exactly_once = {exactly_once}");
    let c = LocalCluster::start(1, 3, "");
    c.split_at("eo/2");
    c.split_at("eo/4");
    let rt = runtime();
    let history = Arc::new(History {
        start: Instant::now(),
        state: Mutex::new(Ops::default()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RawOptions {
        exactly_once,
        attempt_timeout: Some(Duration::from_millis(10)),
        ..RawOptions::default()
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let coordinator = rt.block_on(async {
                CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(20))
                    .expect("coordinator client")
            });
            let client = Arc::new(RawClient::with_options(coordinator, opts.clone()));
            rt.spawn(client_loop(id, client, history.clone(), stop.clone(), seed))
        })
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut kills = 0;
    let mut dups = 0.0;
    let mut violations = Vec::new();
    while started.elapsed() < max {
        if let Some(victim) = a_region_leader(&c, &mut rng) {
            dups += duplicates(&c, &victim);
            c.kill9(&victim);
            kills += 1;
            // Down long enough for the region to elect another leader and
            // for clients to retry into it.
            std::thread::sleep(Duration::from_millis(rng.random_range(1000..2500)));
            c.restart(&victim);
            c.wait_ready(&victim, Duration::from_secs(60));
        }
        // Let the restarted node catch up before the next kill.
        std::thread::sleep(Duration::from_millis(rng.random_range(1000..2000)));
        if stop_at_violation && started.elapsed() >= min {
            let (bad, _) = history.violations();
            if !bad.is_empty() {
                violations = bad;
                break;
            }
        }
        if !stop_at_violation && started.elapsed() >= min {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let undetermined: usize = clients
        .into_iter()
        .map(|t| rt.block_on(t).expect("client task"))
        .sum();
    for p in c.processes().into_iter().filter(|p| p.kind == "node") {
        dups += duplicates(&c, &p.name);
    }
    let (bad, ops) = history.violations();
    if violations.is_empty() {
        violations = bad;
    }
    c.assert_no_panics();
    println!(
        "exactly_once = {exactly_once}: {ops} operations, {undetermined} undetermined, {kills} leader kills, {dups} duplicates answered from session tables, keys not linearizable: {violations:?}, {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Run {
        violations,
        ops,
        undetermined,
        kills,
        duplicates: dups,
    }
}

#[test]
fn with_sessions_retried_writes_apply_once_and_histories_stay_linearizable() {
    let r = run(
        true,
        Duration::from_secs(60),
        Duration::from_secs(60),
        false,
    );
    assert!(r.kills >= 10, "the nemesis killed {} leaders", r.kills);
    assert!(r.ops > 1000, "only {} operations completed", r.ops);
    assert!(
        r.duplicates > 0.0,
        "no write was retried after its first copy applied: the test did not exercise dedup"
    );
    assert!(
        r.violations.is_empty(),
        "keys {:?} are not linearizable ({} undetermined writes)",
        r.violations,
        r.undetermined
    );
}

#[test]
fn without_sessions_the_same_run_fails_the_checker() {
    let r = run(
        false,
        Duration::from_secs(10),
        Duration::from_secs(120),
        true,
    );
    assert_eq!(r.duplicates, 0.0, "sessions were off");
    assert!(
        !r.violations.is_empty(),
        "{} operations and {} leader kills without sessions, and every history is linearizable: the test cannot see duplicated writes",
        r.ops,
        r.kills
    );
}

/// Resident set size of a process, in bytes (Linux `VmRSS`).
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .expect("VmRSS line")
        * 1024
}

/// The session count of every replica of the region holding `key`.
fn replica_sessions(c: &LocalCluster, key: &str) -> Vec<u64> {
    let r = json(&c.nokv_ok(&["region", "--key", key, "-o", "json"]));
    r["progress"]
        .as_array()
        .expect("progress")
        .iter()
        .map(|p| p["sessions"].as_u64().expect("sessions reported"))
        .collect()
}

#[test]
fn the_session_table_stays_bounded_under_ten_thousand_short_lived_clients() {
    // Default table size (4096 per region); a short idle timeout so the
    // test also sees idle sessions go.
    let c = LocalCluster::start(
        1,
        3,
        "node_config:\n  sessions:\n    idle_timeout_secs: 5\n",
    );
    let rt = runtime();
    let node = c
        .processes()
        .into_iter()
        .find(|p| p.kind == "node")
        .expect("a node");
    let rss_before = rss(node.pid);
    // 10 000 clients that each write once and go away: one client that
    // opens a new session for every write looks the same to the stores.
    let coordinator = rt.block_on(async {
        CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(30)).expect("client")
    });
    let client = Arc::new(RawClient::with_options(
        coordinator,
        RawOptions {
            session_max_age: Duration::ZERO,
            ..RawOptions::default()
        },
    ));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..64usize {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..10_000).step_by(64) {
                    client
                        .put(format!("short/{i:05}").as_bytes(), b"v")
                        .await
                        .expect("put");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
    });
    let took = started.elapsed();
    let held = replica_sessions(&c, "short/00000");
    let rss_after = rss(node.pid);
    let evicted: f64 = c
        .node_metric("nokv_session_evictions_total", None)
        .iter()
        .sum();
    println!(
        "10000 short-lived sessions in {:.1} s: replicas hold {held:?} sessions, {evicted} evictions over all replicas; one node's RSS {:.1} MB -> {:.1} MB",
        took.as_secs_f64(),
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6
    );
    assert!(
        held.iter().all(|n| *n <= 4096),
        "a replica holds more sessions than the table allows: {held:?}"
    );
    assert!(
        held.iter().any(|n| *n >= 4000),
        "the table should be full after 10 000 sessions: {held:?}"
    );
    assert!(evicted >= 3.0 * (10_000.0 - 4096.0), "every replica evicts");
    // Once the region's clock moves past the idle timeout (any later
    // write moves it), idle sessions are forgotten on every replica. The
    // ticking client keeps one session of its own.
    let ticker = RawClient::with_coordinator(client.coordinator().clone());
    nokv_tests::wait_until(
        "idle sessions to be forgotten",
        Duration::from_secs(60),
        || {
            rt.block_on(ticker.put(b"short/tick", b"v")).ok()?;
            let held = replica_sessions(&c, "short/00000");
            held.iter().all(|n| *n <= 2).then_some(held)
        },
    );
    c.assert_no_panics();
}
