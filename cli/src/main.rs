//! `nokv`: the NoKV operator CLI.
//!
//! Commands talk to the coordinator named by `--coordinator` (or
//! `NOKV_COORDINATOR`); every call is bounded by `--timeout`. Failures print
//! one line on stderr and exit non-zero (see docs/cli.md for exit codes).
//!
//! - [`cluster`]: local clusters of real processes.
//! - [`inspect`]: stores and regions, one region in detail.
//! - [`stats`]: cluster-wide or per-store statistics.
//! - [`config`]: the effective client settings.
//! - [`control`]: split, leader transfer and peer changes.
//! - [`execution`]: a store's execution diagnostics.
//! - [`raw`]: the raw KV API.
//! - [`txn`]: the transactional KV API.
//! - [`kv`]: what the raw and transactional commands share (scan range
//!   flags, printing values and pairs).
//! - [`bench`]: the load generator.
//! - [`top`]: the live terminal dashboard.
//! - [`doctor`]: health checks with suggested commands.
//! - [`schedule`]: members, TSO, operators, schedulers and store
//!   decommission.
//! - [`survey`]: one pass over the cluster (coordinator, stores' Admin
//!   API and metrics), shared by `top` and the inspection commands.
//! - [`status_http`]: GETs against the processes' HTTP status port.
//! - [`output`]: tables, JSON and YAML.
//! - [`tls`]: the `--tls-*` flags and the client certificate they choose.

mod bench;
mod cluster;
mod config;
mod control;
mod doctor;
mod execution;
mod inspect;
mod kv;
mod output;
mod raw;
mod schedule;
mod stats;
mod status_http;
mod survey;
mod tls;
mod top;
mod txn;

use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
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
    #[command(flatten)]
    tls: tls::TlsFlags,
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
    /// One region in detail: range, epoch, leader, peers' raft progress.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "key"])))]
    Region {
        /// Region id.
        #[arg(value_name = "ID")]
        id: Option<u64>,
        /// Show the region holding this key instead.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Cluster-wide statistics, or one store's with --store.
    Stats {
        /// Ask this store's Admin API for its own statistics.
        #[arg(long, value_name = "STORE_ID")]
        store: Option<u64>,
    },
    /// Show the CLI's effective settings.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Print a shell completion script to stdout.
    Completion {
        /// Shell to complete for.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
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
        #[command(flatten)]
        range: kv::ScanRange,
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
    /// Merge a region into an adjacent region whose replicas are on the same stores.
    Merge {
        /// Region that is folded in and disappears.
        #[arg(long)]
        source: u64,
        /// Adjacent region that takes over the source's key range.
        #[arg(long)]
        target: u64,
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
    /// Coordinator members, the leader marked.
    Members,
    /// A fresh timestamp from the coordinator's TSO.
    Tso,
    /// Scheduling operators: list, show, add by hand, cancel.
    #[command(subcommand)]
    Operator(schedule::OperatorCmd),
    /// Checkers and schedulers: list, pause, resume.
    #[command(subcommand)]
    Scheduler(schedule::SchedulerCmd),
    /// Store lifecycle: decommission.
    #[command(subcommand)]
    Store(schedule::StoreCmd),
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
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sources = Sources {
        coordinator: matches.value_source("coordinator"),
        timeout: matches.value_source("timeout"),
        output: matches.value_source("output"),
    };
    let code = match run(cli, sources) {
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

/// Where each global setting came from, for `nokv config show`.
struct Sources {
    coordinator: Option<clap::parser::ValueSource>,
    timeout: Option<clap::parser::ValueSource>,
    output: Option<clap::parser::ValueSource>,
}

fn run(cli: Cli, sources: Sources) -> anyhow::Result<i32> {
    if !(cli.timeout > 0.0 && cli.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let timeout = Duration::from_secs_f64(cli.timeout);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let coordinator = || -> anyhow::Result<CoordinatorClient> {
            let client = CoordinatorClient::new(cli.coordinator.clone(), timeout)?;
            Ok(match cli.tls.load(&cli.coordinator)? {
                Some(tls) => client.with_tls(tls),
                None => client,
            })
        };
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
            Command::Merge { source, target } => {
                control::merge(&coordinator()?, source, target, cli.output)
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
            Command::Region { id, key } => {
                let which = match (id, key) {
                    (Some(id), _) => inspect::RegionSelector::Id(id),
                    (None, Some(k)) => inspect::RegionSelector::Key(k.into_bytes()),
                    (None, None) => anyhow::bail!("give a region id or --key"),
                };
                inspect::region(&coordinator()?, which, cli.output)
                    .await
                    .map(|_| 0)
            }
            Command::Stats { store } => stats::run(&coordinator()?, store, cli.output)
                .await
                .map(|_| 0),
            Command::Config(cmd) => {
                let effective = config::Effective {
                    coordinators: cli.coordinator.clone(),
                    coordinators_source: sources.coordinator,
                    timeout,
                    timeout_source: sources.timeout,
                    output: cli.output,
                    output_source: sources.output,
                    tls: cli.tls.clone(),
                };
                config::run(cmd, &effective).await.map(|_| 0)
            }
            Command::Completion { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "nokv", &mut std::io::stdout());
                Ok(0)
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
            Command::Scan { range } => {
                txn::scan(&txn_client(coordinator()?), range, cli.output).await
            }
            Command::Bench(args) => bench::run(
                RawClient::with_coordinator(coordinator()?),
                args,
                cli.output,
            )
            .await
            .map(|_| 0),
            Command::Members => schedule::members(&coordinator()?, cli.output)
                .await
                .map(|_| 0),
            Command::Tso => schedule::tso(&coordinator()?, cli.output).await.map(|_| 0),
            Command::Operator(cmd) => schedule::operator(&coordinator()?, cmd, cli.output)
                .await
                .map(|_| 0),
            Command::Scheduler(cmd) => schedule::scheduler(&coordinator()?, cmd, cli.output)
                .await
                .map(|_| 0),
            Command::Store(cmd) => schedule::store(&coordinator()?, cmd, cli.output)
                .await
                .map(|_| 0),
            Command::Top(args) => top::run(coordinator()?, args).await.map(|_| 0),
            Command::Doctor(args) => doctor::run(&coordinator()?, args, cli.output).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::parser::ValueSource;

    /// The command-line reference this binary must match.
    const CLI_MD: &str = include_str!("../../docs/cli.md");

    /// Every subcommand path (`cluster up`, `raw get`, …) with its long
    /// flags.
    fn commands(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            path.push(sub.get_name().to_string());
            let flags = sub
                .get_arguments()
                .filter(|a| !a.is_global_set())
                .filter_map(|a| a.get_long())
                .filter(|l| !matches!(*l, "help" | "version"))
                .map(|l| format!("--{l}"))
                .collect();
            out.push((path.join(" "), flags));
            commands(sub, path, out);
            path.pop();
        }
    }

    fn documents_flag(flag: &str) -> bool {
        CLI_MD.contains(&format!("{flag}`")) || CLI_MD.contains(&format!("{flag} <"))
    }

    /// Every command has a row in the command table of docs/cli.md
    /// (`| `nokv <path>` |`), and every flag, global ones included, is
    /// written there in code style.
    #[test]
    fn every_command_and_flag_is_in_docs_cli_md() {
        let mut all = Vec::new();
        commands(&Cli::command(), &mut Vec::new(), &mut all);
        assert!(all.len() > 30, "the walk found the command tree");
        let mut missing = Vec::new();
        for (path, flags) in &all {
            if !CLI_MD.contains(&format!("| `nokv {path}` |")) {
                missing.push(format!("no row `nokv {path}` in the command table"));
            }
            for f in flags {
                if !documents_flag(f) {
                    missing.push(format!("flag {f} of nokv {path}"));
                }
            }
        }
        for a in Cli::command().get_arguments() {
            if let Some(l) = a.get_long().filter(|l| !matches!(*l, "help" | "version")) {
                if !documents_flag(&format!("--{l}")) {
                    missing.push(format!("global flag --{l}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/cli.md lacks:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn value_sources_of_global_flags_are_seen_after_the_subcommand() {
        let m = Cli::command()
            .try_get_matches_from(["nokv", "config", "show", "--timeout", "3"])
            .expect("parse");
        assert_eq!(m.value_source("timeout"), Some(ValueSource::CommandLine));
        assert_eq!(m.value_source("output"), Some(ValueSource::DefaultValue));
    }

    #[test]
    fn tls_flags_are_global_and_leave_key_arguments_alone() {
        let cli = Cli::try_parse_from([
            "nokv",
            "region",
            "--key",
            "k",
            "--tls-ca",
            "ca.crt",
            "--tls-cert",
            "admin.crt",
            "--tls-key",
            "admin.key",
        ])
        .expect("parse");
        assert_eq!(cli.tls.key, Some("admin.key".into()));
        assert!(matches!(cli.command, Command::Region { key: Some(k), .. } if k == "k"));
        assert!(Cli::try_parse_from(["nokv", "get", "k", "--tls-ca", "ca.crt"]).is_ok());
    }

    #[test]
    fn region_takes_an_id_or_a_key_but_not_both_or_neither() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&["nokv", "region", "7"]).is_ok());
        assert!(parse(&["nokv", "region", "--key", "k"]).is_ok());
        assert!(parse(&["nokv", "region"]).is_err());
        assert!(parse(&["nokv", "region", "7", "--key", "k"]).is_err());
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        let mut buf = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "nokv",
            &mut buf,
        );
        let script = String::from_utf8(buf).expect("utf-8");
        for word in ["top", "doctor", "region", "completion", "transfer-leader"] {
            assert!(
                script.contains(word),
                "{word} missing from the bash completion"
            );
        }
    }

    #[test]
    fn doctor_flags_are_validated() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&["nokv", "doctor", "--full-percent", "0"]).is_err());
        assert!(parse(&["nokv", "doctor", "--full-percent", "101"]).is_err());
        assert!(parse(&["nokv", "doctor", "--max-replicas", "0"]).is_err());
        assert!(parse(&[
            "nokv",
            "doctor",
            "--max-replicas",
            "5",
            "--lag-threshold",
            "10"
        ])
        .is_ok());
    }
}
