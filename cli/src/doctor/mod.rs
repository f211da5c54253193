//! `nokv doctor`: checks the cluster and explains each problem in plain
//! words with a command to run next.
//!
//! The checks are pure functions of one [`Survey`](crate::survey::Survey)
//! (see [`diagnose`]), so each is tested on a fixed cluster; `run` only
//! surveys, diagnoses and prints. A check that cannot run (the coordinator
//! does not list operators today) is reported as unavailable and does not
//! count as a problem.
//!
//! # Layout
//! - this file: the `nokv doctor` flags, and `run`: survey, diagnose, print.
//! - `report.rs`: findings, the report, and the thresholds.
//! - `diagnose.rs`: [`diagnose`], every check over one survey.
//! - one file per check family: `liveness.rs` (coordinator, stores),
//!   `key_space.rs`, `replication.rs` (leaders, replicas, lag),
//!   `capacity.rs`, `operators.rs`.

mod capacity;
mod diagnose;
mod key_space;
mod liveness;
mod operators;
mod replication;
mod report;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use nokv_client::CoordinatorClient;

use crate::output::{self, Format};
use crate::survey::{self, Scope};

use diagnose::diagnose;
use report::{Severity, Thresholds};

/// Exit code when the doctor found at least one problem.
pub const EXIT_PROBLEMS: i32 = 4;

/// `nokv doctor` flags.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Voters every region should have.
    ///
    /// The coordinator does not expose its `max_replicas` over RPC, so the
    /// doctor cannot read it: give the value your coordinators run with.
    /// Default 3, the coordinator's default.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_replicas: u64,
    /// Log entries a peer may trail its leader before it is reported.
    ///
    /// Lag is the leader's last index minus the peer's matched index (or
    /// commit minus applied when the leader did not answer). A peer that
    /// needs a snapshot is reported whatever its lag. Default 1000.
    #[arg(long, value_name = "ENTRIES", default_value_t = 1000)]
    pub lag_threshold: u64,
    /// Disk use, in percent of capacity, from which a store is near full.
    ///
    /// Capacity and free space come from the store's last heartbeat.
    /// Default 90.
    #[arg(long, value_name = "PERCENT", default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub full_percent: u8,
    /// Running operators older than this are stuck when they carry no
    /// step timeouts of their own.
    ///
    /// Seconds. Default 600.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub operator_timeout: u64,
    /// Local cluster directory, used only to name processes in suggestions
    /// (`nokv cluster restart node-2`).
    ///
    /// Default `nokv-cluster` (env `NOKV_CLUSTER_DIR`); ignored when it
    /// holds no cluster.
    #[arg(
        long,
        value_name = "DIR",
        env = "NOKV_CLUSTER_DIR",
        default_value = "nokv-cluster"
    )]
    pub data_dir: PathBuf,
}

/// Store gRPC address → process name in the local cluster at `dir`, if a
/// cluster state file is there.
fn process_names(dir: &std::path::Path) -> HashMap<String, String> {
    crate::cluster::process::ClusterState::load(dir)
        .map(|st| {
            st.processes
                .into_iter()
                .map(|p| (p.plan.grpc, p.plan.name))
                .collect()
        })
        .unwrap_or_default()
}

/// `nokv doctor`: surveys, diagnoses and prints. Returns the exit code:
/// 0 when healthy, [`EXIT_PROBLEMS`] otherwise.
pub async fn run(
    client: &CoordinatorClient,
    args: DoctorArgs,
    format: Format,
) -> anyhow::Result<i32> {
    let survey = survey::collect(
        client,
        Scope {
            region_status: true,
            metrics: false,
            operators: true,
        },
    )
    .await?;
    let report = diagnose(
        &survey,
        &Thresholds {
            max_replicas: args.max_replicas as usize,
            lag_threshold: args.lag_threshold,
            full_percent: args.full_percent,
            operator_timeout_ms: args.operator_timeout.saturating_mul(1000),
        },
        &process_names(&args.data_dir),
    );
    output::emit(format, &report, || {
        let mut t = output::table(&["CHECK", "SUBJECT", "FINDING", "TRY"]);
        for x in &report.findings {
            let check = match x.severity {
                Severity::Problem => x.check.to_string(),
                Severity::Note => format!("{} (note)", x.check),
            };
            t.add_row(vec![
                check,
                x.subject.clone(),
                x.message.clone(),
                x.suggestion.clone(),
            ]);
        }
        t
    })?;
    if format == Format::Table {
        let ok = report.checks.iter().filter(|c| c.status == "ok").count();
        let unavailable: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == "unavailable")
            .map(|c| c.name)
            .collect();
        let skipped = if unavailable.is_empty() {
            String::new()
        } else {
            format!("; could not check: {}", unavailable.join(", "))
        };
        if report.healthy {
            println!(
                "healthy: {ok} of {} checks passed{skipped}",
                report.checks.len()
            );
        } else {
            println!(
                "{} problem(s) found; {ok} of {} checks passed{skipped}",
                report.problems,
                report.checks.len()
            );
        }
    }
    Ok(if report.healthy { 0 } else { EXIT_PROBLEMS })
}
