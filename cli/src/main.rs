//! `nokv`: the NoKV operator CLI.
//!
//! Commands talk to the coordinator named by `--coordinator` (or
//! `NOKV_COORDINATOR`); every call is bounded by `--timeout`. Failures print
//! one line on stderr and exit non-zero (see docs/cli.md for exit codes).
//!
//! - [`cluster`]: local clusters of real processes.
//! - [`inspect`]: stores and regions.
//! - [`control`]: split, leader transfer and peer changes.
//! - [`execution`]: a store's execution diagnostics.
//! - [`raw`]: the raw KV API.
//! - [`txn`]: the transactional KV API.
//! - [`bench`]: the load generator.
//! - [`top`]: the live terminal dashboard.
//! - [`doctor`]: health checks with suggested commands.
//! - [`survey`]: one pass over the cluster (coordinator, stores' Admin
//!   API and metrics), shared by `top` and the inspection commands.
//! - [`status_http`]: GETs against the processes' HTTP status port.
//! - [`output`]: tables, JSON and YAML.

mod bench;
mod cluster;
mod control;
mod doctor;
mod execution;
mod inspect;
mod output;
mod raw;
mod status_http;
mod survey;
mod top;
mod txn;

use std::time::Duration;

use clap::{Parser, Subcommand};
use nokv_client::{CoordinatorClient, RawClient, TxnClient, TxnOptions};

use output::Format;

/// NoKV operator CLI.
#[derive(Debug, Parser)]
#[command(name = "nokv", version, about, propagate_version = true)]
struct Cli {
    /// Coordinator addresses, comma separated.
    #[arg(
        long,
        global = true,
        env = "NOKV_COORDINATOR",
        default_value = "127.0.0.1:23700",
        value_delimiter = ','
    )]
    coordinator: Vec<String>,
    /// Overall deadline of each call, in seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value = "table"
    )]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, inspect and stop a local cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// List stores with state and load.
    Stores,
    /// List regions with range, epoch, peers and leader.
    Regions {
        /// Only regions overlapping keys from here.
        #[arg(long, default_value = "")]
        start: String,
        /// Only regions overlapping keys below this.
        #[arg(long, default_value = "")]
        end: String,
        /// Most regions to list (0 = all).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Raw key-value operations.
    #[command(subcommand)]
    Raw(raw::RawCmd),
    /// Read KEY in a transaction (exit code 3 if absent).
    Get {
        /// The key.
        key: String,
    },
    /// Set KEY to VALUE in a transaction.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete KEY in a transaction.
    Delete {
        /// The key.
        key: String,
    },
    /// List pairs in [START, END) at a fresh snapshot.
    Scan {
        /// First key (inclusive); empty = beginning. With --reverse, the
        /// exclusive upper bound; empty = end.
        #[arg(long, default_value = "")]
        start: String,
        /// Last key (exclusive); empty = end. With --reverse, the inclusive
        /// lower bound.
        #[arg(long, default_value = "")]
        end: String,
        /// Most pairs to return.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Descending order.
        #[arg(long)]
        reverse: bool,
    },
    /// A store's execution diagnostics: admissions, transitions, restart.
    Execution {
        /// Store to ask.
        #[arg(long)]
        store: u64,
        /// Only this region.
        #[arg(long, default_value_t = 0)]
        region: u64,
        /// Only this transition.
        #[arg(long, default_value_t = 0)]
        transition: u64,
    },
    /// Split a region at a key or in half.
    Split {
        /// Region to split.
        #[arg(long)]
        region: u64,
        /// Split key (the new region starts here).
        #[arg(long, conflicts_with = "half")]
        key: Option<String>,
        /// Split at the middle key of the region's data.
        #[arg(long)]
        half: bool,
    },
    /// Move a region's leadership to the peer on another store.
    TransferLeader {
        /// Region.
        #[arg(long)]
        region: u64,
        /// Store that should lead.
        #[arg(long)]
        to_store: u64,
    },
    /// Add a replica of a region on a store (learner, then voter).
    AddPeer {
        /// Region.
        #[arg(long)]
        region: u64,
        /// Store to place the replica on.
        #[arg(long)]
        store: u64,
        /// Stop after adding the learner (the coordinator's replica checker
        /// may still promote it once it has caught up).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a region's replica from a store.
    RemovePeer {
        /// Region.
        #[arg(long)]
        region: u64,
        /// Store whose replica goes.
        #[arg(long)]
        store: u64,
    },
    /// Closed-loop load generator.
    Bench(bench::BenchArgs),
    /// Live dashboard: stores, regions, raft progress, operators, events.
    Top(top::TopArgs),
    /// Check the cluster and explain each problem with a command to run
    /// (exit code 4 when a problem is found).
    Doctor(doctor::DoctorArgs),
}

/// Exit code for failures (usage errors exit 2, from clap).
const EXIT_FAILURE: i32 = 1;

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            EXIT_FAILURE
        }
    };
    std::process::exit(code);
}

/// One line for an error: gRPC statuses as `Code: message`, the rest with
/// their context chain.
fn describe(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        let status = cause.downcast_ref::<tonic::Status>().or_else(|| {
            match cause.downcast_ref::<nokv_client::Error>() {
                Some(nokv_client::Error::Rpc(s)) => Some(s),
                _ => None,
            }
        });
        if let Some(s) = status {
            return format!("{:?}: {}", s.code(), s.message()).replace('\n', " ");
        }
    }
    format!("{e:#}").replace('\n', " ")
}

fn txn_client(coordinator: CoordinatorClient) -> TxnClient {
    TxnClient::with_raw(
        RawClient::with_coordinator(coordinator),
        TxnOptions::default(),
    )
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    if !(cli.timeout > 0.0 && cli.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let timeout = Duration::from_secs_f64(cli.timeout);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let coordinator = || CoordinatorClient::new(cli.coordinator.clone(), timeout);
        match cli.command {
            Command::Cluster(cmd) => cluster::run(cmd, cli.output).await.map(|_| 0),
            Command::Stores => inspect::stores(&coordinator()?, cli.output)
                .await
                .map(|_| 0),
            Command::Regions { start, end, limit } => inspect::regions(
                &coordinator()?,
                start.as_bytes(),
                end.as_bytes(),
                limit,
                cli.output,
            )
            .await
            .map(|_| 0),
            Command::Execution {
                store,
                region,
                transition,
            } => execution::show(&coordinator()?, store, region, transition, cli.output)
                .await
                .map(|_| 0),
            Command::Split { region, key, half } => {
                control::split(&coordinator()?, region, key, half, cli.output)
                    .await
                    .map(|_| 0)
            }
            Command::TransferLeader { region, to_store } => {
                control::transfer_leader(&coordinator()?, region, to_store, cli.output)
                    .await
                    .map(|_| 0)
            }
            Command::AddPeer {
                region,
                store,
                learner,
            } => control::add_peer(&coordinator()?, region, store, learner, cli.output)
                .await
                .map(|_| 0),
            Command::RemovePeer { region, store } => {
                control::remove_peer(&coordinator()?, region, store, cli.output)
                    .await
                    .map(|_| 0)
            }
            Command::Raw(cmd) => {
                raw::run(
                    &RawClient::with_coordinator(coordinator()?),
                    cmd,
                    cli.output,
                )
                .await
            }
            Command::Get { key } => txn::get(&txn_client(coordinator()?), key, cli.output).await,
            Command::Put { key, value } => {
                txn::write(&txn_client(coordinator()?), key, Some(value), cli.output).await
            }
            Command::Delete { key } => {
                txn::write(&txn_client(coordinator()?), key, None, cli.output).await
            }
            Command::Scan {
                start,
                end,
                limit,
                reverse,
            } => {
                txn::scan(
                    &txn_client(coordinator()?),
                    start,
                    end,
                    limit,
                    reverse,
                    cli.output,
                )
                .await
            }
            Command::Bench(args) => bench::run(
                RawClient::with_coordinator(coordinator()?),
                args,
                cli.output,
            )
            .await
            .map(|_| 0),
            Command::Top(args) => top::run(coordinator()?, args).await.map(|_| 0),
            Command::Doctor(args) => doctor::run(&coordinator()?, args, cli.output).await,
        }
    })
}
