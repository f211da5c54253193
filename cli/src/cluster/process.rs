//! Starting, watching and stopping the processes of a local cluster, and
//! the state file (`cluster.json` in the data directory) that lets `status`,
//! `down` and `restart` find them later.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::topology::ProcessPlan;

/// A started process as recorded in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The plan it was started from.
    #[serde(flatten)]
    pub plan: ProcessPlan,
    /// OS process id.
    pub pid: u32,
    /// Binary that runs it.
    pub binary: PathBuf,
    /// Its YAML config.
    pub config: PathBuf,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

/// The state file of a local cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    /// Data directory of the cluster.
    pub data_dir: PathBuf,
    /// Coordinator gRPC addresses (for `--coordinator`).
    pub coordinators: Vec<String>,
    /// Every process.
    pub processes: Vec<ProcessRecord>,
    /// The admin client certificate, when the cluster runs with TLS; the
    /// CLI uses it for commands against this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::certs::ClientFiles>,
}

/// Path of the state file in `data_dir`.
pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.json")
}

impl ClusterState {
    /// Reads the state file of `data_dir`.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = state_path(data_dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no cluster state at {} (is a cluster running there?)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the state file atomically.
    pub fn save(&self) -> anyhow::Result<()> {
        let path = state_path(&self.data_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// Whether a process with `pid` exists (and is not a zombie we own).
pub fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    if !exists {
        return false;
    }
    // A zombie still "exists"; look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => exists,
    }
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: i32) {
    if pid != 0 {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
}

/// Finds `name` next to the running `nokv` binary or in `bin_dir`.
pub fn find_binary(bin_dir: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let dir = match bin_dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .context("cannot locate the nokv binary's directory")?,
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found in {} (build it with `cargo build --bins`, or pass --bin-dir)",
            name,
            dir.display()
        );
    }
    Ok(path)
}

/// Starts one process from its record, in its own process group so a
/// terminal's Ctrl-C reaches only `nokv`, which then stops it cleanly.
pub fn start(binary: &Path, config: &Path, log: &Path) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Stops processes: SIGTERM, then SIGKILL after `grace`. Reaps `children`
/// this process started itself.
pub fn stop_all(pids: &[u32], children: &mut [Child], grace: Duration) {
    for pid in pids {
        signal(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    loop {
        for c in children.iter_mut() {
            let _ = c.try_wait();
        }
        if pids.iter().all(|p| !alive(*p)) {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        if alive(*pid) {
            signal(*pid, libc::SIGKILL);
        }
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
