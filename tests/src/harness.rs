//! An in-process cluster: one coordinator and N store nodes running in this
//! test process on real gRPC over loopback (ports from 127.0.0.1:0), each
//! node on its own RocksDB, all raft traffic passing through one [`Chaos`]
//! fault layer. Nodes can be stopped and restarted on their own data.
//!
//! Every random choice comes from one seed, printed at start; set
//! `NOKV_SEED` to replay it. (Thread scheduling still varies between runs,
//! so a replay repeats the harness's choices, not every interleaving.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_client::{CoordinatorClient, RawClient};
use nokv_coordinator::CoordinatorConfig;
use nokv_node::{NodeConfig, NodeHooks};
use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::{
    ChangePeerRequest, PeerChange, RegionStatusRequest, SplitRegionRequest, TransferLeaderRequest,
};
use nokv_proto::metapb::{PeerRole, Region};
use tokio::sync::oneshot;

use crate::chaos::Chaos;

/// Knobs of an in-process cluster.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// Store nodes.
    pub nodes: usize,
    /// Raft tick in milliseconds.
    pub tick_ms: u64,
    /// Raft log GC count limit (`None`: defaults).
    pub log_gc_limit: Option<u64>,
    /// Seconds a region keeps an idle client session (`None`: defaults).
    pub session_idle_secs: Option<u64>,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        HarnessConfig {
            nodes: 5,
            tick_ms: 50,
            log_gc_limit: None,
            session_idle_secs: None,
        }
    }
}

struct NodeSlot {
    config: NodeConfig,
    store_id: u64,
    address: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<nokv_node::Result<()>>>,
}

/// A running in-process cluster.
pub struct Harness {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// The fault layer on raft traffic.
    pub chaos: Arc<Chaos>,
    /// The runtime everything runs on.
    pub rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    coordinator: String,
    coordinator_stop: Option<oneshot::Sender<()>>,
    nodes: Vec<NodeSlot>,
}

/// The seed from `NOKV_SEED`, or a fresh one.
pub fn seed_from_env() -> u64 {
    std::env::var("NOKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Harness {
    /// Starts the cluster and waits until region 1 has three voters and a
    /// leader.
    pub fn start(cfg: HarnessConfig, seed: u64) -> Harness {
        // NOKV_TEST_LOG=<filter> (e.g. `info` or `nokv_node=debug`) shows
        // the in-process nodes' logs with the test's output.
        if let Ok(filter) = std::env::var("NOKV_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        println!("harness seed = {seed} (replay with NOKV_SEED={seed})");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::Builder::new()
            .prefix("nokv-harness")
            .tempdir()
            .expect("tempdir");
        let chaos = Arc::new(Chaos::new(seed));
        let port = free_port();
        let coordinator = format!("127.0.0.1:{port}");
        let ccfg = CoordinatorConfig {
            id: 1,
            data_dir: dir.path().join("coordinator"),
            listen: coordinator.clone(),
            status_listen: "127.0.0.1:0".into(),
            tick_interval_ms: cfg.tick_ms,
            ..Default::default()
        };
        let (ctx, crx) = oneshot::channel::<()>();
        rt.spawn(async move {
            if let Err(e) = nokv_coordinator::run(ccfg, async {
                let _ = crx.await;
            })
            .await
            {
                eprintln!("coordinator failed: {e}");
            }
        });
        let mut h = Harness {
            seed,
            chaos,
            rt,
            _dir: dir,
            coordinator,
            coordinator_stop: Some(ctx),
            nodes: Vec::new(),
        };
        for i in 0..cfg.nodes {
            let mut config = NodeConfig {
                data_dir: h._dir.path().join(format!("node-{i}")),
                listen: "127.0.0.1:0".into(),
                status_listen: "127.0.0.1:0".into(),
                coordinators: vec![h.coordinator.clone()],
                store_heartbeat_interval_ms: 500,
                shutdown_grace_ms: 100,
                log_level: String::new(),
                ..Default::default()
            };
            config.raft.tick_interval_ms = cfg.tick_ms;
            config.raft.region_heartbeat_ticks = 10;
            if let Some(secs) = cfg.session_idle_secs {
                config.sessions.idle_timeout_secs = secs;
            }
            if let Some(limit) = cfg.log_gc_limit {
                config.raft.log_gc_interval_ticks = 5;
                config.raft.log_gc_threshold = limit / 2;
                config.raft.log_gc_count_limit = limit;
            }
            h.nodes.push(NodeSlot {
                config,
                store_id: 0,
                address: String::new(),
                stop: None,
                task: None,
            });
            h.start_node(i);
        }
        let want = cfg.nodes.min(3);
        h.wait_until(
            "region 1 to have its voters and a leader",
            Duration::from_secs(60),
            |h| {
                let r =
                    h.rt.block_on(h.coordinator_client().get_region_by_id(1))
                        .ok()?;
                let region = r.region?;
                let voters = region
                    .peers
                    .iter()
                    .filter(|p| p.role() == PeerRole::Voter)
                    .count();
                (voters >= want && r.leader.is_some()).then_some(())
            },
        );
        h
    }

    /// A coordinator client.
    pub fn coordinator_client(&self) -> CoordinatorClient {
        let _g = self.rt.enter();
        CoordinatorClient::new(vec![self.coordinator.clone()], Duration::from_secs(5))
            .expect("client")
    }

    /// Pauses (or resumes) a coordinator checker or scheduler by name, for
    /// scenarios that need a stable placement (e.g. merges need both
    /// regions on the same stores while balance-region spreads them).
    pub fn pause_scheduler(&self, name: &str, pause: bool) {
        use nokv_proto::coordinatorpb::coordinator_client::CoordinatorClient as Grpc;
        let addr = self.coordinator.clone();
        let r = self.rt.block_on(async move {
            let mut c = Grpc::connect(format!("http://{addr}"))
                .await
                .map_err(|e| e.to_string())?;
            let resp = c
                .pause_scheduler(nokv_proto::coordinatorpb::PauseSchedulerRequest {
                    header: None,
                    name: name.to_string(),
                    pause,
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            match resp.header.and_then(|h| h.error) {
                Some(e) => Err(e.message),
                None => Ok(()),
            }
        });
        if let Err(e) = r {
            panic!("pausing scheduler {name}: {e}");
        }
    }

    /// A raw client whose calls give up after `timeout`.
    pub fn raw_client(&self, timeout: Duration) -> RawClient {
        let _g = self.rt.enter();
        RawClient::new(vec![self.coordinator.clone()], timeout).expect("client")
    }

    /// Writes `key` = `value` through the SDK, failing the test (with the
    /// seed and every replica's view) if it cannot.
    pub fn put(&self, key: &str, value: &str) {
        let c = self.raw_client(Duration::from_secs(30));
        self.rt
            .block_on(c.put(key.as_bytes(), value.as_bytes()))
            .unwrap_or_else(|e| panic!("put {key}: {e} (seed {})\n{}", self.seed, self.dump()));
    }

    /// Reads `key` through the SDK, failing the test if it cannot.
    pub fn get(&self, key: &str) -> Option<String> {
        let c = self.raw_client(Duration::from_secs(30));
        self.rt
            .block_on(c.get(key.as_bytes()))
            .unwrap_or_else(|e| panic!("get {key}: {e} (seed {})\n{}", self.seed, self.dump()))
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// The region holding `key` and its leader's store, once it has one.
    pub fn region_of(&self, key: &[u8]) -> (Region, u64) {
        self.wait_until(
            "the region to have a leader",
            Duration::from_secs(30),
            |h| {
                let r = h.rt.block_on(h.coordinator_client().get_region(key)).ok()?;
                let leader = r.leader.map(|l| l.store_id).filter(|s| *s != 0)?;
                Some((r.region?, leader))
            },
        )
    }

    /// The store leading region `region_id`, once one does.
    pub fn leader_of(&self, region_id: u64) -> u64 {
        self.wait_until("a leader", Duration::from_secs(30), |h| {
            let r =
                h.rt.block_on(h.coordinator_client().get_region_by_id(region_id))
                    .ok()?;
            r.leader.map(|l| l.store_id).filter(|s| *s != 0)
        })
    }

    /// Splits the region holding `key` at `key` and waits until the new
    /// region is routed with a leader.
    pub fn split(&self, key: &str) {
        self.wait_until("the split", Duration::from_secs(30), |h| {
            h.rt.block_on(h.split_at(key.as_bytes())).then_some(())
        });
        self.wait_until(
            "the split regions to have leaders",
            Duration::from_secs(30),
            |h| {
                let r =
                    h.rt.block_on(h.coordinator_client().get_region(key.as_bytes()))
                        .ok()?;
                (r.region?.start_key == key.as_bytes() && r.leader.is_some()).then_some(())
            },
        );
    }

    /// Number of node slots.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Store id of node `i` (known once it has started once).
    pub fn store_id(&self, i: usize) -> u64 {
        self.nodes[i].store_id
    }

    /// Every store id.
    pub fn store_ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.store_id).collect()
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].task.is_some()
    }

    /// Starts node `i` on its data directory.
    pub fn start_node(&mut self, i: usize) {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel();
        let hooks = NodeHooks {
            message_filter: Some(self.chaos.clone()),
            started: Some(started_tx),
        };
        let config = self.nodes[i].config.clone();
        let task = self.rt.spawn(nokv_node::run_with(
            config,
            async move {
                let _ = stop_rx.await;
            },
            hooks,
        ));
        let started = match self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), started_rx).await })
            .expect("node started in time")
        {
            Ok(s) => s,
            Err(_) => {
                let err = self.rt.block_on(task);
                panic!("node {i} failed to start: {err:?}");
            }
        };
        let slot = &mut self.nodes[i];
        slot.store_id = started.store_id;
        slot.address = started.address;
        slot.stop = Some(stop_tx);
        slot.task = Some(task);
    }

    /// Stops node `i` (its data stays).
    pub fn stop_node(&mut self, i: usize) {
        let slot = &mut self.nodes[i];
        if let Some(stop) = slot.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = slot.task.take() {
            match self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
            {
                Ok(Ok(Ok(()))) => {}
                other => panic!("node {i} did not stop cleanly: {other:?}"),
            }
        }
    }

    /// Stops and starts node `i` again on the same data.
    pub fn restart_node(&mut self, i: usize) {
        self.stop_node(i);
        self.start_node(i);
    }

    /// Polls `f` every 50 ms until it returns `Some`, or panics.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what} (seed {})",
                self.seed
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn node_index(&self, store_id: u64) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.store_id == store_id && n.task.is_some())
    }

    /// Admin client of the running node with `store_id`.
    pub async fn admin(&self, store_id: u64) -> Option<AdminClient<tonic::transport::Channel>> {
        let i = self.node_index(store_id)?;
        AdminClient::connect(format!("http://{}", self.nodes[i].address))
            .await
            .ok()
    }

    /// Every region with its leader's store (0 when unknown).
    pub fn regions(&self) -> Vec<(Region, u64)> {
        self.rt
            .block_on(self.coordinator_client().scan_regions(b"", b"", 0))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| Some((i.region?, i.leader.map(|l| l.store_id).unwrap_or(0))))
            .collect()
    }

    /// Applied and truncated index of a region on every running replica.
    pub fn replica_logs(&self, region_id: u64) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        for n in self.nodes.iter().filter(|n| n.task.is_some()) {
            let status = self.rt.block_on(async {
                let mut a = AdminClient::connect(format!("http://{}", n.address))
                    .await
                    .ok()?;
                a.region_status(RegionStatusRequest { region_id })
                    .await
                    .ok()
            });
            if let Some(r) = status.and_then(|s| s.into_inner().regions.into_iter().next()) {
                out.push((n.store_id, r.applied_index, r.truncated_index));
            }
        }
        out
    }

    /// Every replica's view of every region, for failure messages.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (store_id, r) in self.local_regions() {
            {
                let region = r.region.unwrap_or_default();
                let peers: Vec<String> = region
                    .peers
                    .iter()
                    .map(|p| {
                        format!(
                            "{}@{}{}",
                            p.id,
                            p.store_id,
                            if p.role() == PeerRole::Learner {
                                "L"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "store {} region {} [{:?}, {:?}) peer {} epoch {:?} peers [{}] leader {} term {} commit {} applied {} truncated {} last {} merging_into {} blocked {}\n",
                    store_id,
                    region.id,
                    String::from_utf8_lossy(&region.start_key),
                    String::from_utf8_lossy(&region.end_key),
                    r.peer.map(|p| p.id).unwrap_or(0),
                    region.epoch.map(|e| (e.conf_ver, e.version)),
                    peers.join(" "),
                    r.leader_peer_id,
                    r.term,
                    r.commit_index,
                    r.applied_index,
                    r.truncated_index,
                    r.last_index,
                    r.merging_into,
                    r.blocked_entries
                ));
            }
        }
        out
    }

    /// Best effort: splits the region holding `key` at `key`.
    pub async fn split_at(&self, key: &[u8]) -> bool {
        let Ok(r) = self.coordinator_client().get_region(key).await else {
            return false;
        };
        let (Some(region), Some(leader)) = (r.region, r.leader) else {
            return false;
        };
        if region.start_key == key {
            return false;
        }
        let Some(mut admin) = self.admin(leader.store_id).await else {
            return false;
        };
        admin
            .split_region(SplitRegionRequest {
                region_id: region.id,
                split_key: key.to_vec(),
                half: false,
            })
            .await
            .map(|r| r.into_inner().region_error.is_none())
            .unwrap_or(false)
    }

    /// Best effort: moves the leadership of `region_id` to `to_store`.
    pub async fn transfer_leader(&self, region_id: u64, to_store: u64) -> bool {
        let Ok(r) = self.coordinator_client().get_region_by_id(region_id).await else {
            return false;
        };
        let Some(leader) = r.leader else { return false };
        let Some(mut admin) = self.admin(leader.store_id).await else {
            return false;
        };
        admin
            .transfer_leader(TransferLeaderRequest {
                region_id,
                to_store_id: to_store,
            })
            .await
            .map(|r| r.into_inner().region_error.is_none())
            .unwrap_or(false)
    }

    /// Best effort: adds (learner, the checker promotes it) or removes the
    /// replica of `region_id` on `store_id`.
    pub async fn change_peer(&self, region_id: u64, store_id: u64, add: bool) -> bool {
        let Ok(r) = self.coordinator_client().get_region_by_id(region_id).await else {
            return false;
        };
        let Some(leader) = r.leader else { return false };
        let Some(mut admin) = self.admin(leader.store_id).await else {
            return false;
        };
        let change = if add {
            PeerChange::AddLearner
        } else {
            PeerChange::Remove
        };
        admin
            .change_peer(ChangePeerRequest {
                region_id,
                change: change as i32,
                store_id,
                peer_id: 0,
            })
            .await
            .map(|r| r.into_inner().region_error.is_none())
            .unwrap_or(false)
    }

    /// Merges `source` into `target` through the source leader's store;
    /// the grown target, or why it did not happen.
    pub async fn merge(&self, source: u64, target: u64) -> Result<Region, String> {
        let r = self
            .coordinator_client()
            .get_region_by_id(source)
            .await
            .map_err(|e| e.to_string())?;
        let leader = r.leader.ok_or("source has no leader")?;
        let mut admin = self
            .admin(leader.store_id)
            .await
            .ok_or("source leader's store is down")?;
        let resp = admin
            .merge_region(nokv_proto::adminpb::MergeRegionRequest {
                source_region_id: source,
                target_region_id: target,
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        match resp.region_error {
            Some(e) => Err(e.message),
            None => resp.region.ok_or_else(|| "no region in the answer".into()),
        }
    }

    /// Every region replica on every running store: (store, status).
    pub fn local_regions(&self) -> Vec<(u64, nokv_proto::adminpb::RegionStatus)> {
        let mut out = Vec::new();
        for n in self.nodes.iter().filter(|n| n.task.is_some()) {
            let status = self.rt.block_on(async {
                let mut a = AdminClient::connect(format!("http://{}", n.address))
                    .await
                    .ok()?;
                a.region_status(RegionStatusRequest { region_id: 0 })
                    .await
                    .ok()
            });
            for r in status.map(|s| s.into_inner().regions).unwrap_or_default() {
                out.push((n.store_id, r));
            }
        }
        out
    }

    /// Panics unless the coordinator's regions tile the whole key space
    /// (no gap, no overlap) and no store holds overlapping replicas.
    pub fn assert_regions_tile(&self) {
        let mut regions: Vec<Region> = self.regions().into_iter().map(|(r, _)| r).collect();
        regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        let mut expect_start: Vec<u8> = Vec::new();
        for (i, r) in regions.iter().enumerate() {
            assert_eq!(
                r.start_key, expect_start,
                "region {} does not start where the previous ended (seed {}): {regions:?}",
                r.id, self.seed
            );
            if r.end_key.is_empty() {
                assert_eq!(i, regions.len() - 1, "only the last region is unbounded");
            }
            expect_start = r.end_key.clone();
        }
        assert!(
            regions.last().is_some_and(|r| r.end_key.is_empty()),
            "the last region must reach the end of the key space: {regions:?}"
        );
        let local = self.local_regions();
        for store in self.store_ids() {
            let mine: Vec<&Region> = local
                .iter()
                .filter(|(s, st)| {
                    *s == store && st.region.as_ref().is_some_and(|r| !r.peers.is_empty())
                })
                .filter_map(|(_, st)| st.region.as_ref())
                .collect();
            for (i, a) in mine.iter().enumerate() {
                for b in &mine[i + 1..] {
                    let overlap = (b.end_key.is_empty() || a.start_key < b.end_key)
                        && (a.end_key.is_empty() || b.start_key < a.end_key);
                    assert!(
                        !overlap,
                        "store {store} holds overlapping regions {} and {} (seed {})",
                        a.id, b.id, self.seed
                    );
                }
            }
        }
    }

    /// Best effort: promotes the learner of `region_id` on `store_id`.
    pub async fn promote(&self, region_id: u64, store_id: u64) -> bool {
        let Ok(r) = self.coordinator_client().get_region_by_id(region_id).await else {
            return false;
        };
        let Some(leader) = r.leader else { return false };
        let Some(learner) = r
            .region
            .and_then(|r| r.peers.into_iter().find(|p| p.store_id == store_id))
        else {
            return false;
        };
        let Some(mut admin) = self.admin(leader.store_id).await else {
            return false;
        };
        admin
            .change_peer(ChangePeerRequest {
                region_id,
                change: PeerChange::AddVoter as i32,
                store_id,
                peer_id: learner.id,
            })
            .await
            .map(|r| r.into_inner().region_error.is_none())
            .unwrap_or(false)
    }

    /// gRPC addresses of the running nodes by store id.
    pub fn admin_addresses(&self) -> std::collections::HashMap<u64, String> {
        self.nodes
            .iter()
            .filter(|n| n.task.is_some())
            .map(|n| (n.store_id, n.address.clone()))
            .collect()
    }

    /// Data directory of node `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].config.data_dir.clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(stop) = self.nodes[i].stop.take() {
                let _ = stop.send(());
            }
            if let Some(task) = self.nodes[i].task.take() {
                let _ = self
                    .rt
                    .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
            }
        }
        if let Some(stop) = self.coordinator_stop.take() {
            let _ = stop.send(());
        }
    }
}
