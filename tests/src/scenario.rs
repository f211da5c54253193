//! The TinyKV raftstore scenario driver (`GenericTest`), ported to NoKV.
//!
//! Each client appends to its own keys (`c<client>-<n>` = `x <client> <n>
//! y`) and checks, by scanning them, that everything it wrote is there
//! exactly once and in order. Clients also read and write a few shared
//! register keys; every such call is recorded with its invoke and complete
//! time and each key's history goes through the Wing–Gong–Lowe checker.
//! Nemeses run during each round: an unreliable network, random partitions,
//! random peer changes and splits; with `crash` every node restarts at the
//! end of each round.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nokv_client::{RawClient, ScanOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{seed_from_env, Harness, HarnessConfig};
use crate::linearizability::{is_linearizable, Operation, RegisterOp};
use nokv_proto::poison::MutexExt;

/// One scenario's parameters, named as in TinyKV.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// Concurrent clients.
    pub clients: usize,
    /// Drop 10% of raft messages and delay the rest by up to 20 ms.
    pub unreliable: bool,
    /// Restart every node at the end of each round.
    pub crash: bool,
    /// Partition the stores at random during each round.
    pub partitions: bool,
    /// Raft log GC count limit (TinyKV's `maxraftstate`).
    pub log_limit: Option<u64>,
    /// Add and remove peers at random during each round.
    pub confchange: bool,
    /// Split regions at random keys during each round.
    pub split: bool,
    /// Merge random adjacent regions during each round (with `split`, so
    /// there are regions to merge).
    pub merge: bool,
}

/// Rounds per scenario: 1 in CI, more with `NOKV_SCENARIO_ROUNDS`.
pub fn rounds() -> usize {
    std::env::var("NOKV_SCENARIO_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Seconds of load per round (`NOKV_SCENARIO_SECS`, default 3).
pub fn round_secs() -> u64 {
    std::env::var("NOKV_SCENARIO_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

const REGISTER_KEYS: u64 = 4;

fn key(cli: usize, n: u64) -> Vec<u8> {
    format!("c{cli:02}-{n:08}").into_bytes()
}

fn value(cli: usize, n: u64) -> String {
    format!("x {cli} {n} y")
}

/// Writes until it succeeds (the write is idempotent), like TinyKV's
/// `MustPut`.
async fn must_put(client: &RawClient, k: &[u8], v: &[u8]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match client.put(k, v).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(format!("put never succeeded: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn scan_own(client: &RawClient, cli: usize, n: u64) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .scan(
                &key(cli, 0),
                &key(cli, n),
                (n as u32).max(1),
                ScanOptions::default(),
            )
            .await
        {
            Ok(pairs) => {
                return Ok(pairs
                    .iter()
                    .map(|p| String::from_utf8_lossy(&p.value).to_string())
                    .collect())
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!("scan never succeeded: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

type Histories = Arc<Mutex<HashMap<u64, Vec<Operation>>>>;

struct ClientState {
    written: u64,
    expected: String,
}

/// Runs one scenario; panics (with the seed) on any violation.
pub fn run(s: Scenario) {
    let seed = seed_from_env();
    let mut h = Harness::start(
        HarnessConfig {
            nodes: 5,
            log_gc_limit: s.log_limit,
            ..Default::default()
        },
        seed,
    );
    if s.merge {
        // Merges need both regions on the same stores; balance-region
        // would keep spreading freshly split regions apart.
        h.pause_scheduler("balance-region", true);
    }
    let client = Arc::new(h.raw_client(Duration::from_secs(5)));
    let histories: Histories = Arc::new(Mutex::new(HashMap::new()));
    let epoch = Instant::now();
    let mut states: Vec<ClientState> = (0..s.clients)
        .map(|_| ClientState {
            written: 0,
            expected: String::new(),
        })
        .collect();

    for round in 0..rounds() {
        if s.unreliable {
            h.chaos.unreliable(10, Some(Duration::from_millis(20)));
        }
        let done = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for (cli, st) in states.iter().enumerate() {
            let (client, done, histories) = (client.clone(), done.clone(), histories.clone());
            let (mut n, mut expected) = (st.written, st.expected.clone());
            let mut rng = StdRng::seed_from_u64(seed ^ ((cli as u64) << 32) ^ round as u64);
            clients.push(h.rt.spawn(async move {
                let mut reg_writes = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let dice = rng.random_range(0..100);
                    if dice < 45 {
                        let v = value(cli, n);
                        must_put(&client, &key(cli, n), v.as_bytes()).await?;
                        expected.push_str(&v);
                        n += 1;
                    } else if dice < 75 {
                        let got = scan_own(&client, cli, n).await?;
                        if got != expected {
                            return Err(format!("client {cli}: appends lost or reordered\nwant: {expected}\ngot:  {got}"));
                        }
                    } else {
                        let k = rng.random_range(0..REGISTER_KEYS);
                        let rk = format!("reg-{k}").into_bytes();
                        let invoke = epoch.elapsed().as_nanos() as u64;
                        let op = if dice < 88 {
                            reg_writes += 1;
                            let v = format!("c{cli}-r{round}-{reg_writes}").into_bytes();
                            let res = client.put(&rk, &v).await;
                            let complete = if res.is_ok() { epoch.elapsed().as_nanos() as u64 } else { u64::MAX };
                            Some(Operation { client: cli, op: RegisterOp::Put(v), invoke, complete })
                        } else {
                            client.get(&rk).await.ok().map(|got| Operation {
                                client: cli,
                                op: RegisterOp::Get(got),
                                invoke,
                                complete: epoch.elapsed().as_nanos() as u64,
                            })
                        };
                        if let Some(op) = op {
                            histories.lock_unpoisoned().entry(k).or_default().push(op);
                        }
                    }
                }
                Ok::<_, String>((n, expected))
            }));
        }

        let mut nemeses = Vec::new();
        let merges = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stores = h.store_ids();
        let hh = Arc::new(NemesisView {
            coordinator: h.coordinator_client(),
            stores: stores.clone(),
        });
        if s.partitions {
            let (chaos, done) = (h.chaos.clone(), done.clone());
            let stores = stores.clone();
            nemeses.push(h.rt.spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let cut = chaos.random_range(0..(1 << stores.len()));
                    let (a, b): (Vec<u64>, Vec<u64>) = stores.iter().enumerate().fold(
                        (vec![], vec![]),
                        |(mut a, mut b), (i, s)| {
                            if cut & (1 << i) != 0 {
                                a.push(*s)
                            } else {
                                b.push(*s)
                            }
                            (a, b)
                        },
                    );
                    chaos.partition(&a, &b);
                    tokio::time::sleep(Duration::from_millis(200 + chaos.random_range(0..400)))
                        .await;
                    chaos.heal();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        if s.confchange || s.split || s.merge {
            let (done, view, chaos) = (done.clone(), hh.clone(), h.chaos.clone());
            let (confchange, split, merge) = (s.confchange, s.split, s.merge);
            let (nclients, merges) = (s.clients.max(1), merges.clone());
            let admins = h.admin_addresses();
            nemeses.push(h.rt.spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(200 + chaos.random_range(0..300)))
                        .await;
                    if merge && chaos.random_range(0..3) == 0 {
                        if view.merge_random(&admins, &chaos).await {
                            merges.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if split && chaos.random_range(0..2) == 0 {
                        let k = key(
                            chaos.random_range(0..nclients as u64) as usize,
                            chaos.random_range(0..50),
                        );
                        view.split_at(&admins, &k).await;
                    } else if confchange {
                        let regions = view
                            .coordinator
                            .scan_regions(b"", b"", 0)
                            .await
                            .unwrap_or_default();
                        if regions.is_empty() {
                            continue;
                        }
                        let r = &regions[chaos.random_range(0..regions.len() as u64) as usize];
                        let Some(region) = &r.region else { continue };
                        let store =
                            view.stores[chaos.random_range(0..view.stores.len() as u64) as usize];
                        let has = region.peers.iter().any(|p| p.store_id == store);
                        if has && region.peers.len() <= 2 {
                            continue;
                        }
                        view.change_peer(&admins, region.id, store, !has).await;
                    }
                }
            }));
        }

        std::thread::sleep(Duration::from_secs(round_secs()));
        done.store(true, Ordering::Relaxed);
        for n in nemeses {
            let _ = h.rt.block_on(n);
        }
        h.chaos.clear();
        for (cli, c) in clients.into_iter().enumerate() {
            match h.rt.block_on(c).expect("client task") {
                Ok((n, expected)) => {
                    states[cli] = ClientState {
                        written: n,
                        expected,
                    }
                }
                Err(e) => panic!("{e}\n(seed {seed})"),
            }
        }
        if s.crash {
            for i in 0..h.node_count() {
                h.stop_node(i);
            }
            for i in 0..h.node_count() {
                h.start_node(i);
            }
        }
        // Every append is there exactly once and in order.
        for (cli, st) in states.iter().enumerate() {
            let got =
                h.rt.block_on(scan_own(&client, cli, st.written))
                    .unwrap_or_else(|e| panic!("{e} (seed {seed})\ncluster:\n{}", h.dump()));
            assert_eq!(
                got, st.expected,
                "client {cli} lost or reordered appends after round {round} (seed {seed})"
            );
        }
        if let Some(limit) = s.log_limit {
            h.wait_until(
                "every replica's log to be bounded",
                Duration::from_secs(60),
                |h| {
                    h.regions()
                        .iter()
                        .all(|(r, _)| {
                            h.replica_logs(r.id)
                                .iter()
                                .all(|(_, applied, truncated)| applied - truncated <= 2 * limit)
                        })
                        .then_some(())
                },
            );
        }
        if s.merge || s.split {
            h.assert_regions_tile();
        }
        println!(
            "round {round}: {} regions ({} merged by the nemesis), appends verified",
            h.regions().len(),
            merges.load(Ordering::Relaxed)
        );
    }
    let histories = histories.lock_unpoisoned();
    for (k, ops) in histories.iter() {
        assert!(
            is_linearizable(ops),
            "register reg-{k} history is not linearizable (seed {seed}):\n{ops:#?}"
        );
    }
    println!("{} register histories linearizable", histories.len());
}

/// What background nemeses need, without borrowing the harness.
struct NemesisView {
    coordinator: nokv_client::CoordinatorClient,
    stores: Vec<u64>,
}

impl NemesisView {
    async fn admin(
        admins: &HashMap<u64, String>,
        store: u64,
    ) -> Option<nokv_proto::adminpb::admin_client::AdminClient<tonic::transport::Channel>> {
        let addr = admins.get(&store)?;
        nokv_proto::adminpb::admin_client::AdminClient::connect(format!("http://{addr}"))
            .await
            .ok()
    }

    async fn split_at(&self, admins: &HashMap<u64, String>, key: &[u8]) {
        let Ok(r) = self.coordinator.get_region(key).await else {
            return;
        };
        let (Some(region), Some(leader)) = (r.region, r.leader) else {
            return;
        };
        if region.start_key == key {
            return;
        }
        if let Some(mut a) = Self::admin(admins, leader.store_id).await {
            let _ = a
                .split_region(nokv_proto::adminpb::SplitRegionRequest {
                    region_id: region.id,
                    split_key: key.to_vec(),
                    half: false,
                })
                .await;
        }
    }

    /// Merges a random pair of adjacent regions whose replicas share their
    /// stores; true when a merge committed.
    async fn merge_random(
        &self,
        admins: &HashMap<u64, String>,
        chaos: &crate::chaos::Chaos,
    ) -> bool {
        let mut regions = self
            .coordinator
            .scan_regions(b"", b"", 0)
            .await
            .unwrap_or_default();
        regions.sort_by(|a, b| {
            let key = |i: &nokv_proto::coordinatorpb::RegionInfo| {
                i.region.as_ref().map(|r| r.start_key.clone())
            };
            key(a).cmp(&key(b))
        });
        let stores = |r: &nokv_proto::metapb::Region| {
            let mut v: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
            v.sort_unstable();
            v
        };
        let pairs: Vec<(u64, u64, u64)> = regions
            .windows(2)
            .filter_map(|w| {
                let (a, b) = (w[0].region.as_ref()?, w[1].region.as_ref()?);
                let leader = w[1].leader.filter(|l| l.store_id != 0)?;
                (a.end_key == b.start_key && stores(a) == stores(b)).then_some((
                    b.id,
                    a.id,
                    leader.store_id,
                ))
            })
            .collect();
        if pairs.is_empty() {
            return false;
        }
        let (source, target, store) = pairs[chaos.random_range(0..pairs.len() as u64) as usize];
        let Some(mut a) = Self::admin(admins, store).await else {
            return false;
        };
        let call = a.merge_region(nokv_proto::adminpb::MergeRegionRequest {
            source_region_id: source,
            target_region_id: target,
        });
        matches!(
            tokio::time::timeout(Duration::from_secs(5), call).await,
            Ok(Ok(r)) if r.get_ref().region_error.is_none()
        )
    }

    async fn change_peer(
        &self,
        admins: &HashMap<u64, String>,
        region_id: u64,
        store: u64,
        add: bool,
    ) {
        let Ok(r) = self.coordinator.get_region_by_id(region_id).await else {
            return;
        };
        let Some(leader) = r.leader else { return };
        if let Some(mut a) = Self::admin(admins, leader.store_id).await {
            let change = if add {
                nokv_proto::adminpb::PeerChange::AddLearner
            } else {
                nokv_proto::adminpb::PeerChange::Remove
            };
            let _ = a
                .change_peer(nokv_proto::adminpb::ChangePeerRequest {
                    region_id,
                    change: change as i32,
                    store_id: store,
                    peer_id: 0,
                })
                .await;
        }
    }
}
