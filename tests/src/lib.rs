//! Multi-node test support. [`LocalCluster`] runs a real cluster of
//! `nokv-coordinator` and `nokv-node` processes through `nokv cluster up`,
//! each test on its own port range and data directory, and stops every
//! process when dropped (also when the test panics).
//!
//! Binaries are taken from `NOKV_BIN_DIR` or the cargo target directory the
//! test binary runs from; `make test` builds them first.
//!
//! - [`harness`]: an in-process cluster with a fault layer ([`chaos`]).
//! - [`linearizability`]: a Wing–Gong–Lowe checker for register histories.
//! - [`list_append`]: an Elle-style checker for list-append transaction
//!   histories under snapshot isolation.
//! - [`pinned_wheel`]: tools from PyPI (Helm, BuildKit's Dockerfile parser)
//!   for the deployment checks, pinned by version and hash.
//! - [`scenario`]: the TinyKV raftstore scenario driver.
#![deny(missing_docs)]

pub mod chaos;
pub mod harness;
pub mod linearizability;
pub mod list_append;
pub mod pinned_wheel;
pub mod scenario;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::RegionStatusRequest;
use serde::Deserialize;

/// One process of the cluster, as `cluster.json` records it.
#[derive(Debug, Clone, Deserialize)]
pub struct Process {
    /// `coordinator-N` or `node-N`.
    pub name: String,
    /// `coordinator` or `node`.
    pub kind: String,
    /// gRPC address.
    pub grpc: String,
    /// HTTP status address.
    pub status: String,
    /// OS pid.
    pub pid: u32,
}

#[derive(Debug, Deserialize)]
struct StateFile {
    processes: Vec<Process>,
}

/// Directory holding the `nokv*` binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("NOKV_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    for b in ["nokv", "nokv-node", "nokv-coordinator"] {
        assert!(
            dir.join(b).is_file(),
            "{b} not found in {}: run `cargo build --bins` first (make test does)",
            dir.display()
        );
    }
    dir
}

/// Finds a base port with 40 free ports above it.
pub fn free_port_base() -> u16 {
    for _ in 0..200 {
        let base: u16 = rand::random_range(20_000..60_000);
        if (0..40).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free range of 40 ports found");
}

/// A local cluster of real processes.
pub struct LocalCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Coordinator gRPC addresses.
    pub coordinators: Vec<String>,
    /// Base of the cluster's port range.
    pub port_base: u16,
    topology: PathBuf,
    up_args: Vec<String>,
}

impl LocalCluster {
    /// Starts `coordinators` + `nodes` processes and waits until healthy.
    /// `extra_topology` is YAML appended to the topology file (for
    /// `coordinator_config:` / `node_config:` overrides).
    pub fn start(coordinators: usize, nodes: usize, extra_topology: &str) -> LocalCluster {
        Self::start_with_args(coordinators, nodes, extra_topology, &[])
    }

    /// Like [`LocalCluster::start`], passing `up_args` (such as `--tls`)
    /// to every `nokv cluster up`.
    pub fn start_with_args(
        coordinators: usize,
        nodes: usize,
        extra_topology: &str,
        up_args: &[&str],
    ) -> LocalCluster {
        let dir = tempfile::Builder::new()
            .prefix("nokv-e2e")
            .tempdir()
            .expect("tempdir");
        let topology = dir.path().join("topology.yaml");
        let mut c = LocalCluster {
            dir,
            bin: bin_dir(),
            coordinators: Vec::new(),
            port_base: 0,
            topology,
            up_args: up_args.iter().map(|a| a.to_string()).collect(),
        };
        let mut last = String::new();
        // A port picked as free may be taken before the cluster binds it;
        // then start over on another range.
        for _attempt in 0..3 {
            c.port_base = free_port_base();
            c.coordinators = (0..coordinators)
                .map(|i| format!("127.0.0.1:{}", c.port_base + i as u16))
                .collect();
            let _ = std::fs::remove_dir_all(c.data_dir());
            std::fs::write(
                &c.topology,
                format!(
                    "data_dir: {}\ncoordinators: {coordinators}\nnodes: {nodes}\nport_base: {}\n{extra_topology}",
                    c.data_dir().display(),
                    c.port_base
                ),
            )
            .expect("write topology");
            let out = c.cluster_up();
            if out.status.success() {
                return c;
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            c.kill_all();
        }
        panic!("cluster up failed three times; last output:\n{last}");
    }

    fn cluster_up(&self) -> Output {
        Command::new(self.bin.join("nokv"))
            .args(["cluster", "up", "--detach", "--wait-timeout", "90", "-f"])
            .arg(&self.topology)
            .args(&self.up_args)
            .env("NOKV_BIN_DIR", &self.bin)
            .output()
            .expect("run nokv cluster up")
    }

    /// Starts the cluster again on the same data after [`LocalCluster::down`].
    pub fn up_again(&self) {
        let out = self.cluster_up();
        assert!(
            out.status.success(),
            "cluster up on existing data failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    /// Runs `nokv` with the cluster's coordinators.
    pub fn nokv(&self, args: &[&str]) -> Output {
        self.nokv_command(args).output().expect("run nokv")
    }

    /// The `nokv` command [`LocalCluster::nokv`] runs, for changing its
    /// environment first. `NOKV_CLUSTER_DIR` names this cluster, so
    /// against a TLS cluster the CLI presents its admin certificate.
    pub fn nokv_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("nokv"));
        cmd.args(args)
            .env("NOKV_COORDINATOR", self.coordinators.join(","))
            .env("NOKV_CLUSTER_DIR", self.data_dir())
            .env("NOKV_BIN_DIR", &self.bin);
        cmd
    }

    /// Runs `nokv` and returns stdout, panicking with stderr on failure.
    pub fn nokv_ok(&self, args: &[&str]) -> String {
        let out = self.nokv(args);
        assert!(
            out.status.success(),
            "nokv {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Splits the region holding `key` at `key` through the CLI (nothing
    /// to do if a region already starts there).
    pub fn split_at(&self, key: &str) {
        let region = json(&self.nokv_ok(&["region", "--key", key, "-o", "json"]));
        if region["start_key"].as_str() == Some(key) {
            return;
        }
        let id = region["id"].as_u64().expect("region id");
        self.nokv_ok(&["split", "--region", &id.to_string(), "--key", key]);
    }

    /// Ids of the stores the coordinator knows.
    pub fn store_ids(&self) -> Vec<u64> {
        json(&self.nokv_ok(&["stores", "-o", "json"]))
            .as_array()
            .expect("stores")
            .iter()
            .map(|s| s["id"].as_u64().expect("store id"))
            .collect()
    }

    /// Asks every region's leader to move to a store `pick` chooses among
    /// `store_ids`; returns how many moves the cluster accepted (a target
    /// that lags is refused, which is fine for chaos).
    pub fn transfer_leaders(&self, mut pick: impl FnMut(&[u64]) -> u64) -> usize {
        let stores = self.store_ids();
        let regions = json(&self.nokv_ok(&["regions", "-o", "json"]));
        let mut moved = 0;
        for r in regions.as_array().expect("regions") {
            let to = pick(&stores);
            let out = self.nokv(&[
                "transfer-leader",
                "--region",
                &r["id"].to_string(),
                "--to-store",
                &to.to_string(),
            ]);
            moved += out.status.success() as usize;
        }
        moved
    }

    /// Sum of the samples of metric `name` (whose labels include `label`,
    /// if given) on every node's `/metrics`, one sum per node.
    pub fn node_metric(&self, name: &str, label: Option<(&str, &str)>) -> Vec<f64> {
        self.processes()
            .into_iter()
            .filter(|p| p.kind == "node")
            .map(|p| {
                let (_, body) = self.status_get(&p.status, "/metrics").expect("metrics");
                metric(&body, name, label)
            })
            .collect()
    }

    /// GETs `path` from a status port of this cluster: over HTTPS (trusting
    /// the cluster's CA) when it was started with `--tls`, which sets
    /// `security.status_tls`; else plain HTTP. Returns (status code, body).
    pub fn status_get(&self, addr: &str, path: &str) -> Option<(u16, String)> {
        let tls = self.data_dir().join("tls");
        if !tls.join("ca.crt").exists() {
            return http_get(addr, path);
        }
        let material = nokv_client::TlsConfig::from_pem_files(
            &tls.join("ca.crt"),
            &tls.join("client.crt"),
            &tls.join("client.key"),
        )
        .ok()?;
        runtime().block_on(https_get(addr, path, &material))
    }

    /// The processes as last recorded.
    pub fn processes(&self) -> Vec<Process> {
        let text =
            std::fs::read_to_string(self.data_dir().join("cluster.json")).expect("cluster.json");
        serde_json::from_str::<StateFile>(&text)
            .expect("parse cluster.json")
            .processes
    }

    /// The process with `name`.
    pub fn process(&self, name: &str) -> Process {
        self.processes()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// The node process serving gRPC at `address`.
    pub fn node_by_address(&self, address: &str) -> Process {
        self.processes()
            .into_iter()
            .find(|p| p.grpc == address)
            .unwrap_or_else(|| panic!("no process at {address}"))
    }

    /// The node process serving store `store_id`, by `nokv stores`.
    pub fn node_of_store(&self, store_id: u64) -> Process {
        let stores = json(&self.nokv_ok(&["stores", "-o", "json"]));
        let address = stores
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"].as_u64() == Some(store_id)))
            .and_then(|s| s["address"].as_str())
            .unwrap_or_else(|| panic!("store {store_id} is not listed: {stores}"))
            .to_string();
        self.node_by_address(&address)
    }

    /// kill -9 a process and wait until it is gone.
    pub fn kill9(&self, name: &str) {
        self.nokv_ok(&["cluster", "stop", "--kill", name]);
    }

    /// Starts a stopped process again.
    pub fn restart(&self, name: &str) {
        self.nokv_ok(&["cluster", "restart", name]);
    }

    /// Waits until process `name` answers `/ready` with 200; on timeout the
    /// panic carries the tail of its log.
    pub fn wait_ready(&self, name: &str, timeout: Duration) {
        let status = self.process(name).status;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .status_get(&status, "/ready")
                .is_some_and(|(code, _)| code == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = self.log(name);
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{name} not ready after {timeout:?}; its last log lines:\n{}",
            tail.join("\n")
        );
    }

    /// Stops every process cleanly (data is kept).
    pub fn down(&self) {
        self.nokv_ok(&["cluster", "down"]);
    }

    fn kill_all(&self) {
        if let Ok(text) = std::fs::read_to_string(self.data_dir().join("cluster.json")) {
            if let Ok(state) = serde_json::from_str::<StateFile>(&text) {
                for p in state.processes {
                    // SAFETY: sending a signal has no memory-safety preconditions.
                    unsafe {
                        libc::kill(p.pid as libc::pid_t, libc::SIGKILL);
                    }
                }
            }
        }
    }

    /// Log of a process (for failure messages).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.data_dir().join(name).join("log")).unwrap_or_default()
    }

    /// Fails the test if any process log shows a panic.
    pub fn assert_no_panics(&self) {
        for p in self.processes() {
            let log = self.log(&p.name);
            assert!(!log.contains("panicked"), "{} panicked:\n{log}", p.name);
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("nokv"))
            .args(["cluster", "down"])
            .env("NOKV_CLUSTER_DIR", self.data_dir())
            .output();
        self.kill_all();
    }
}

/// Sum of the samples of metric `name` (with label `label`, if given) in a
/// Prometheus text body.
pub fn metric(body: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Parses `s` as JSON, failing the test with the text when it is not.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A small multi-threaded runtime for driving the client in tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what`
/// after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Async form of [`wait_until`].
pub async fn wait_until_async<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applied index of `region_id` on the node at `address` (None if the node
/// does not answer or has no such region).
pub async fn applied_index(address: &str, region_id: u64) -> Option<u64> {
    let mut c = AdminClient::connect(format!("http://{address}"))
        .await
        .ok()?;
    let resp = c
        .region_status(RegionStatusRequest { region_id })
        .await
        .ok()?
        .into_inner();
    resp.regions.first().map(|r| r.applied_index)
}

/// Fetches `path` over HTTPS from `addr` (`127.0.0.1:port`), trusting
/// `tls`'s CA; returns (status code, body).
pub async fn https_get(
    addr: &str,
    path: &str,
    tls: &nokv_client::TlsConfig,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host).ok()?;
        let connector = tokio_rustls::TlsConnector::from(tls.https_client().ok()?);
        let mut s = connector.connect(name, tcp).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut raw = Vec::new();
        // A peer closing without close_notify after the answer is fine.
        let _ = s.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .ok()
        .flatten()
}

/// Fetches `path` over HTTP from `addr`; returns (status code, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}
