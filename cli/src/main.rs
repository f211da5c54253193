//! `nokv`: the NoKV operator CLI.
//!
//! Commands talk to the coordinator named by `--coordinator` (or
//! `NOKV_COORDINATOR`); every call is bounded by `--timeout`. Failures print
//! one line on stderr and exit non-zero (see docs/cli.md for exit codes).
//!
//! - [`cluster`]: local clusters of real processes.
//! - [`inspect`]: stores and regions.
//! - [`raw`]: the raw KV API.
//! - [`bench`]: the load generator.
//! - [`output`]: tables, JSON and YAML.

mod bench;
mod cluster;
mod inspect;
mod output;
mod raw;

use std::time::Duration;

use clap::{Parser, Subcommand};
use nokv_client::{CoordinatorClient, RawClient};

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
    /// Closed-loop load generator.
    Bench(bench::BenchArgs),
}

/// Exit code for failures (usage errors exit 2, from clap).
const EXIT_FAILURE: i32 = 1;

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            EXIT_FAILURE
        }
    };
    std::process::exit(code);
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
            Command::Raw(cmd) => {
                raw::run(
                    &RawClient::with_coordinator(coordinator()?),
                    cmd,
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
        }
    })
}
