//! `nokv cluster`: a local cluster of real processes for trying NoKV and
//! for end-to-end tests.
//!
//! - [`topology`]: what to start and on which ports.
//! - [`process`]: starting, tracking and stopping the processes.
//! - [`certs`]: the throwaway CA and certificates of `cluster up --tls`.

pub mod certs;
pub mod process;
pub mod topology;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use nokv_client::CoordinatorClient;
use nokv_proto::metapb::{PeerRole, StoreState};
use serde::Serialize;

use crate::output::{self, Format};
use process::{alive, find_binary, start, state_path, stop_all, ClusterState, ProcessRecord};
use topology::Topology;

/// `nokv cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Start a local cluster and wait until it is healthy.
    Up(UpArgs),
    /// Show the processes of a local cluster and whether they serve.
    Status(DirArgs),
    /// Stop every process of a local cluster.
    Down(DownArgs),
    /// Start one stopped process of the cluster again (same data and ports).
    Restart(OneArgs),
    /// Stop one process of the cluster (SIGTERM, or SIGKILL with --kill).
    Stop(StopArgs),
}

/// Where the cluster lives.
#[derive(Debug, Args)]
pub struct DirArgs {
    /// Data directory of the cluster.
    #[arg(long, default_value = "nokv-cluster", env = "NOKV_CLUSTER_DIR")]
    pub data_dir: PathBuf,
}

/// `cluster up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Topology file (YAML); flags override it.
    #[arg(short = 'f', long = "topology")]
    pub topology: Option<PathBuf>,
    /// Data directory of the cluster [default: nokv-cluster].
    #[arg(long, env = "NOKV_CLUSTER_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Coordinator members: 1, 3 or 5 [default: 3].
    #[arg(long)]
    pub coordinators: Option<usize>,
    /// Store nodes [default: 3].
    #[arg(long)]
    pub nodes: Option<usize>,
    /// First port of the 40-port range the cluster uses [default: 23700].
    #[arg(long)]
    pub port_base: Option<u16>,
    /// Return once healthy and leave the cluster running.
    #[arg(long)]
    pub detach: bool,
    /// Directory holding nokv-node and nokv-coordinator [default: next to nokv].
    #[arg(long, env = "NOKV_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Seconds to wait for the cluster to become healthy.
    #[arg(long, default_value_t = 60)]
    pub wait_timeout: u64,
    /// Mutual TLS everywhere, from a throwaway CA and certificates created
    /// in <data-dir>/tls; the CLI then uses the admin certificate for this
    /// cluster.
    #[arg(long)]
    pub tls: bool,
}

/// `cluster down` flags.
#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Also delete the data directory.
    #[arg(long)]
    purge: bool,
}

/// Names one process.
#[derive(Debug, Args)]
pub struct OneArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Process name, e.g. `node-2` or `coordinator-1`.
    name: String,
}

/// `cluster stop` flags.
#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    one: OneArgs,
    /// SIGKILL instead of a clean stop.
    #[arg(long)]
    kill: bool,
}

/// Runs a `cluster` subcommand.
pub async fn run(cmd: ClusterCmd, format: Format) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Up(a) => up(a, format).await,
        ClusterCmd::Status(a) => status(a, format).await,
        ClusterCmd::Down(a) => down(a),
        ClusterCmd::Restart(a) => restart(a),
        ClusterCmd::Stop(a) => stop_one(a),
    }
}

#[derive(Serialize)]
struct EndpointRow {
    name: String,
    kind: String,
    grpc: String,
    status: String,
    pid: u32,
    dir: String,
}

fn endpoints(state: &ClusterState) -> Vec<EndpointRow> {
    state
        .processes
        .iter()
        .map(|p| EndpointRow {
            name: p.plan.name.clone(),
            kind: p.plan.kind.clone(),
            grpc: p.plan.grpc.clone(),
            status: p.plan.status.clone(),
            pid: p.pid,
            dir: p.plan.dir.display().to_string(),
        })
        .collect()
}

async fn up(args: UpArgs, format: Format) -> anyhow::Result<()> {
    let mut topo = match &args.topology {
        Some(p) => Topology::load(p)?,
        None => Topology::default(),
    };
    if let Some(v) = args.data_dir {
        topo.data_dir = v;
    }
    if let Some(v) = args.coordinators {
        topo.coordinators = v;
    }
    if let Some(v) = args.nodes {
        topo.nodes = v;
    }
    if let Some(v) = args.port_base {
        topo.port_base = v;
    }
    topo.tls |= args.tls;
    topo.validate()?;
    if let Ok(old) = ClusterState::load(&topo.data_dir) {
        if old.processes.iter().any(|p| alive(p.pid)) {
            bail!(
                "a cluster is already running in {} (stop it with `nokv cluster down --data-dir {}`)",
                topo.data_dir.display(),
                topo.data_dir.display()
            );
        }
    }
    // Handlers go in before anything starts, so a Ctrl-C at any point stops
    // the processes this command started instead of killing it outright.
    let mut stop_signals = StopSignals::install()?;
    let coordinator_bin = find_binary(args.bin_dir.as_deref(), "nokv-coordinator")?;
    let node_bin = find_binary(args.bin_dir.as_deref(), "nokv-node")?;
    std::fs::create_dir_all(&topo.data_dir)
        .with_context(|| format!("creating {}", topo.data_dir.display()))?;
    let tls_files = match topo.tls {
        true => Some(certs::generate(&topo.tls_dir(), &topo.host)?),
        false => None,
    };
    let tls = tls_files.as_ref().map(|f| f.load()).transpose()?;
    let mut state = ClusterState {
        data_dir: topo.data_dir.clone(),
        coordinators: topo.coordinator_addresses(),
        processes: Vec::new(),
        tls: tls_files.clone(),
    };
    let mut children = Vec::new();
    let started = Instant::now();
    for plan in topo.plan() {
        std::fs::create_dir_all(&plan.dir)?;
        let config = plan.dir.join("config.yaml");
        std::fs::write(&config, topo.config_for(&plan)?)?;
        let log = plan.dir.join("log");
        let binary = if plan.kind == "coordinator" {
            &coordinator_bin
        } else {
            &node_bin
        };
        let child = match start(binary, &config, &log) {
            Ok(c) => c,
            Err(e) => {
                let pids: Vec<u32> = state.processes.iter().map(|p| p.pid).collect();
                stop_all(&pids, &mut children, Duration::from_secs(5));
                return Err(e);
            }
        };
        state.processes.push(ProcessRecord {
            plan,
            pid: child.id(),
            binary: binary.clone(),
            config,
            log,
        });
        children.push(child);
        state.save()?;
    }
    let deadline = started + Duration::from_secs(args.wait_timeout);
    let max_replicas = topo
        .coordinator_config
        .get("max_replicas")
        .and_then(|v| v.as_u64())
        .unwrap_or(3) as usize;
    let healthy = tokio::select! {
        r = wait_healthy(&state.coordinators, tls, topo.nodes, topo.nodes.min(max_replicas), deadline) => r,
        _ = stop_signals.wait() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = healthy {
        let pids: Vec<u32> = state.processes.iter().map(|p| p.pid).collect();
        stop_all(&pids, &mut children, Duration::from_secs(5));
        let _ = std::fs::remove_file(state_path(&state.data_dir));
        bail!(
            "cluster did not become healthy within {}s: {e}; logs are in {}/*/log",
            args.wait_timeout,
            state.data_dir.display()
        );
    }
    let rows = endpoints(&state);
    output::emit(format, &rows, || {
        let mut t = output::table(&["NAME", "KIND", "GRPC", "STATUS", "PID", "DATA DIR"]);
        for r in &rows {
            t.add_row(vec![
                r.name.clone(),
                r.kind.clone(),
                r.grpc.clone(),
                r.status.clone(),
                r.pid.to_string(),
                r.dir.clone(),
            ]);
        }
        t
    })?;
    if format == Format::Table {
        println!(
            "cluster healthy in {:.1}s; use: export NOKV_COORDINATOR={}",
            started.elapsed().as_secs_f64(),
            state.coordinators.join(",")
        );
        if let Some(f) = &tls_files {
            println!(
                "TLS on: nokv uses {} for this cluster (found through NOKV_CLUSTER_DIR={}), \
                 or: export NOKV_TLS_CA={} NOKV_TLS_CERT={} NOKV_TLS_KEY={}",
                f.cert.display(),
                state.data_dir.display(),
                f.ca.display(),
                f.cert.display(),
                f.key.display()
            );
        }
    }
    if args.detach {
        return Ok(());
    }
    if format == Format::Table {
        println!("running in the foreground; press Ctrl-C to stop the cluster");
    }
    stop_signals.wait().await;
    eprintln!("stopping the cluster…");
    let mut pids: Vec<u32> = state
        .processes
        .iter()
        .filter(|p| p.plan.kind == "node")
        .map(|p| p.pid)
        .collect();
    stop_all(&pids, &mut children, Duration::from_secs(10));
    pids = state.processes.iter().map(|p| p.pid).collect();
    stop_all(&pids, &mut children, Duration::from_secs(10));
    let _ = std::fs::remove_file(state_path(&state.data_dir));
    Ok(())
}

/// SIGINT and SIGTERM, registered once.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Polls until a coordinator leads, every node is Up and every region has
/// `want_voters` voters and a leader; with `tls`, over mutual TLS.
pub async fn wait_healthy(
    coordinators: &[String],
    tls: Option<nokv_client::TlsConfig>,
    nodes: usize,
    want_voters: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut client = CoordinatorClient::new(coordinators.to_vec(), Duration::from_secs(2))?;
    if let Some(tls) = tls {
        client = client.with_tls(tls);
    }
    let mut last = String::from("not checked yet");
    while Instant::now() < deadline {
        match health_once(&client, nodes, want_voters).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{last}")
}

async fn health_once(
    client: &CoordinatorClient,
    nodes: usize,
    want_voters: usize,
) -> anyhow::Result<()> {
    let members = client.members().await?;
    if members.leader.is_none() {
        bail!("no coordinator leader yet");
    }
    let stores = client.get_all_stores().await?;
    let up = stores
        .iter()
        .filter(|s| {
            s.store
                .as_ref()
                .is_some_and(|s| s.state() == StoreState::Up)
        })
        .count();
    if up < nodes {
        bail!("{up} of {nodes} stores up");
    }
    let regions = client.scan_regions(b"", b"", 0).await?;
    if regions.is_empty() {
        bail!("no region yet");
    }
    for r in &regions {
        let Some(region) = &r.region else {
            bail!("region without metadata")
        };
        let voters = region
            .peers
            .iter()
            .filter(|p| p.role() == PeerRole::Voter)
            .count();
        if voters < want_voters || region.peers.len() != voters {
            bail!("region {} has {voters} of {want_voters} voters", region.id);
        }
        if r.leader.is_none() {
            bail!("region {} has no leader", region.id);
        }
    }
    Ok(())
}

/// GETs `path` from an HTTP status address; returns the status code.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let sock = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Serialize)]
struct StatusRow {
    name: String,
    kind: String,
    pid: u32,
    alive: bool,
    ready: bool,
    grpc: String,
    status: String,
}

async fn status(args: DirArgs, format: Format) -> anyhow::Result<()> {
    let state = ClusterState::load(&args.data_dir)?;
    let rows: Vec<StatusRow> = state
        .processes
        .iter()
        .map(|p| {
            let is_alive = alive(p.pid);
            StatusRow {
                name: p.plan.name.clone(),
                kind: p.plan.kind.clone(),
                pid: p.pid,
                alive: is_alive,
                ready: is_alive && http_status(&p.plan.status, "/ready") == Some(200),
                grpc: p.plan.grpc.clone(),
                status: p.plan.status.clone(),
            }
        })
        .collect();
    output::emit(format, &rows, || {
        let mut t = output::table(&["NAME", "KIND", "PID", "ALIVE", "READY", "GRPC", "STATUS"]);
        for r in &rows {
            t.add_row(vec![
                r.name.clone(),
                r.kind.clone(),
                r.pid.to_string(),
                r.alive.to_string(),
                r.ready.to_string(),
                r.grpc.clone(),
                r.status.clone(),
            ]);
        }
        t
    })?;
    if rows.iter().any(|r| !r.ready) {
        bail!(
            "{} of {} processes are not ready",
            rows.iter().filter(|r| !r.ready).count(),
            rows.len()
        );
    }
    Ok(())
}

fn down(args: DownArgs) -> anyhow::Result<()> {
    let state = ClusterState::load(&args.dir.data_dir)?;
    let nodes: Vec<u32> = state
        .processes
        .iter()
        .filter(|p| p.plan.kind == "node")
        .map(|p| p.pid)
        .collect();
    stop_all(&nodes, &mut [], Duration::from_secs(10));
    let all: Vec<u32> = state.processes.iter().map(|p| p.pid).collect();
    stop_all(&all, &mut [], Duration::from_secs(10));
    std::fs::remove_file(state_path(&state.data_dir))?;
    if args.purge {
        std::fs::remove_dir_all(&state.data_dir)
            .with_context(|| format!("removing {}", state.data_dir.display()))?;
    }
    eprintln!("cluster in {} stopped", state.data_dir.display());
    Ok(())
}

fn restart(args: OneArgs) -> anyhow::Result<()> {
    let mut state = ClusterState::load(&args.dir.data_dir)?;
    let Some(rec) = state
        .processes
        .iter_mut()
        .find(|p| p.plan.name == args.name)
    else {
        bail!("no process named {} in this cluster", args.name);
    };
    if alive(rec.pid) {
        bail!("{} is still running (pid {})", args.name, rec.pid);
    }
    let child = start(&rec.binary, &rec.config, &rec.log)?;
    rec.pid = child.id();
    state.save()?;
    eprintln!("{} started (pid {})", args.name, child.id());
    Ok(())
}

fn stop_one(args: StopArgs) -> anyhow::Result<()> {
    let state = ClusterState::load(&args.one.dir.data_dir)?;
    let Some(rec) = state
        .processes
        .iter()
        .find(|p| p.plan.name == args.one.name)
    else {
        bail!("no process named {} in this cluster", args.one.name);
    };
    if args.kill {
        process::signal(rec.pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(rec.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        stop_all(&[rec.pid], &mut [], Duration::from_secs(10));
    }
    eprintln!("{} stopped", args.one.name);
    Ok(())
}
