//! `nokv doctor`: checks the cluster and explains each problem in plain
//! words with a command to run next.
//!
//! The checks are pure functions of one [`Survey`] (see [`diagnose`]), so
//! each is tested on a fixed cluster; `run` only surveys, diagnoses and
//! prints. A check that cannot run (the coordinator does not list
//! operators today) is reported as unavailable and does not count as a
//! problem.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use clap::Args;
use nokv_client::CoordinatorClient;
use nokv_proto::metapb::{PeerRole, StoreState};
use serde::Serialize;

use crate::output::{self, Format};
use crate::survey::{self, Operators, Region, Scope, Survey};

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

/// The thresholds [`diagnose`] applies.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Voters every region should have.
    pub max_replicas: usize,
    /// Entries a peer may trail before it is reported.
    pub lag_threshold: u64,
    /// Disk use percent from which a store is near full.
    pub full_percent: u8,
    /// Age in ms from which a running operator without step timeouts is
    /// stuck.
    pub operator_timeout_ms: u64,
}

/// Names of the checks, in the order they run and are printed.
pub const CHECKS: [&str; 8] = [
    "coordinator",
    "stores",
    "key-space",
    "leaders",
    "replicas",
    "lag",
    "capacity",
    "operators",
];

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something is wrong; the exit code is non-zero.
    Problem,
    /// Worth knowing; does not change the exit code.
    Note,
}

/// One thing the doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check that found it (one of [`CHECKS`]).
    pub check: &'static str,
    /// Problem or note.
    pub severity: Severity,
    /// What it is about: `store 3`, `region 7`, `cluster`.
    pub subject: String,
    /// What is wrong, in plain words.
    pub message: String,
    /// A command (or action) to take next.
    pub suggestion: String,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The check (one of [`CHECKS`]).
    pub name: &'static str,
    /// `ok`, `problem` or `unavailable`.
    pub status: &'static str,
}

/// Everything `nokv doctor` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// No problem found.
    pub healthy: bool,
    /// Number of findings with severity `problem`.
    pub problems: usize,
    /// Every check and its outcome.
    pub checks: Vec<CheckResult>,
    /// Problems first, then notes.
    pub findings: Vec<Finding>,
}

/// Runs every check over `survey`. `process_names` maps a store's gRPC
/// address to its local-cluster process name, for suggestions.
pub fn diagnose(
    survey: &Survey,
    t: &Thresholds,
    process_names: &HashMap<String, String>,
) -> Report {
    let mut f = Vec::new();
    check_coordinator(survey, &mut f);
    check_stores(survey, process_names, &mut f);
    check_key_space(survey, &mut f);
    check_leaders(survey, &mut f);
    check_replicas(survey, t, &mut f);
    check_lag(survey, t, &mut f);
    check_capacity(survey, t, &mut f);
    let operators_available = check_operators(survey, t, &mut f);
    f.sort_by_key(|x| (x.severity != Severity::Problem, check_index(x.check)));
    let checks = CHECKS
        .iter()
        .map(|&name| CheckResult {
            name,
            status: if f
                .iter()
                .any(|x| x.check == name && x.severity == Severity::Problem)
            {
                "problem"
            } else if name == "operators" && !operators_available {
                "unavailable"
            } else {
                "ok"
            },
        })
        .collect();
    let problems = f.iter().filter(|x| x.severity == Severity::Problem).count();
    Report {
        healthy: problems == 0,
        problems,
        checks,
        findings: f,
    }
}

fn check_index(name: &str) -> usize {
    CHECKS
        .iter()
        .position(|c| *c == name)
        .unwrap_or(CHECKS.len())
}

fn problem(check: &'static str, subject: String, message: String, suggestion: String) -> Finding {
    Finding {
        check,
        severity: Severity::Problem,
        subject,
        message,
        suggestion,
    }
}

fn check_coordinator(s: &Survey, f: &mut Vec<Finding>) {
    if s.leader_member_id.is_none() {
        f.push(problem(
            "coordinator",
            "cluster".into(),
            format!(
                "no coordinator member leads ({} members known); routing, ids and timestamps \
                 stop until one is elected",
                s.members.len()
            ),
            "nokv cluster status (are a majority of coordinators running?)".into(),
        ));
    }
    if s.cluster_id == 0 {
        f.push(problem(
            "coordinator",
            "cluster".into(),
            "the cluster is not bootstrapped: no store has registered its first region".into(),
            "start a nokv-node pointed at these coordinators".into(),
        ));
    }
}

fn restart_hint(address: &str, names: &HashMap<String, String>) -> String {
    match names.get(address) {
        Some(name) => format!("nokv cluster restart {name}"),
        None => format!("restart the nokv-node serving {address}, then nokv stores"),
    }
}

fn check_stores(s: &Survey, names: &HashMap<String, String>, f: &mut Vec<Finding>) {
    if s.stores.is_empty() {
        f.push(problem(
            "stores",
            "cluster".into(),
            "no store is registered".into(),
            "start a nokv-node pointed at these coordinators".into(),
        ));
    }
    for st in &s.stores {
        let subject = format!("store {}", st.id);
        let silent = match st.last_heartbeat_ms {
            0 => String::new(),
            ms => format!(
                " (last heartbeat {} s ago)",
                s.taken_at_ms.saturating_sub(ms) / 1000
            ),
        };
        let message = match st.state {
            StoreState::Up | StoreState::Tombstone => None,
            StoreState::Disconnected => Some(format!(
                "store {} at {} is Disconnected: the coordinator has not heard its heartbeat for \
                 longer than store_disconnect_ms{silent}; its replicas are not serving",
                st.id, st.address
            )),
            StoreState::Down => Some(format!(
                "store {} at {} is Down: no heartbeat for longer than max_store_down_time_ms{silent}",
                st.id, st.address
            )),
            StoreState::Offline => Some(format!(
                "store {} at {} is Offline (being decommissioned)",
                st.id, st.address
            )),
        };
        if let Some(message) = message {
            f.push(problem(
                "stores",
                subject,
                message,
                restart_hint(&st.address, names),
            ));
        } else if st.state == StoreState::Up {
            if let Some(e) = &st.admin_error {
                f.push(problem(
                    "stores",
                    subject,
                    format!(
                        "store {} at {} is Up for the coordinator but its Admin API does not \
                         answer: {e}",
                        st.id, st.address
                    ),
                    restart_hint(&st.address, names),
                ));
            }
        }
    }
}

fn key(k: &[u8], empty: &str) -> String {
    output::key(k, empty)
}

fn check_key_space(s: &Survey, f: &mut Vec<Finding>) {
    let mut regions: Vec<&Region> = s.regions.iter().collect();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    let suggestion = "nokv regions (compare the ranges; the coordinator learns them from \
                      region heartbeats and split reports)";
    let Some(first) = regions.first() else {
        if s.cluster_id != 0 {
            f.push(problem(
                "key-space",
                "cluster".into(),
                "the coordinator knows no region: no key can be served".into(),
                suggestion.into(),
            ));
        }
        return;
    };
    if !first.start_key.is_empty() {
        f.push(problem(
            "key-space",
            format!("region {}", first.id),
            format!(
                "no region covers keys below {}: the first region starts there",
                key(&first.start_key, "-inf")
            ),
            suggestion.into(),
        ));
    }
    for w in regions.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.end_key.is_empty() || a.end_key > b.start_key {
            f.push(problem(
                "key-space",
                format!("regions {} and {}", a.id, b.id),
                format!(
                    "regions {} [{}, {}) and {} [{}, {}) overlap",
                    a.id,
                    key(&a.start_key, "-inf"),
                    key(&a.end_key, "+inf"),
                    b.id,
                    key(&b.start_key, "-inf"),
                    key(&b.end_key, "+inf")
                ),
                suggestion.into(),
            ));
        } else if a.end_key < b.start_key {
            f.push(problem(
                "key-space",
                format!("regions {} and {}", a.id, b.id),
                format!(
                    "no region covers [{}, {}), between regions {} and {}",
                    key(&a.end_key, "-inf"),
                    key(&b.start_key, "+inf"),
                    a.id,
                    b.id
                ),
                suggestion.into(),
            ));
        }
    }
    if let Some(last) = regions.last().filter(|r| !r.end_key.is_empty()) {
        f.push(problem(
            "key-space",
            format!("region {}", last.id),
            format!(
                "no region covers keys from {}: the last region ends there",
                key(&last.end_key, "+inf")
            ),
            suggestion.into(),
        ));
    }
}

fn check_leaders(s: &Survey, f: &mut Vec<Finding>) {
    let stores: BTreeMap<u64, &survey::Store> = s.stores.iter().map(|x| (x.id, x)).collect();
    for r in &s.regions {
        let subject = format!("region {}", r.id);
        let suggestion = format!(
            "nokv region {} (are a majority of its peers' stores up?)",
            r.id
        );
        if r.leader_store_id == 0 {
            f.push(problem(
                "leaders",
                subject,
                format!(
                    "region {} has no leader: its keys can be neither read nor written",
                    r.id
                ),
                suggestion,
            ));
            continue;
        }
        let Some(store) = stores.get(&r.leader_store_id) else {
            continue;
        };
        if store.admin_error.is_some() || store.state != StoreState::Up {
            f.push(problem(
                "leaders",
                subject,
                format!(
                    "region {} has no working leader: the coordinator last saw it led from \
                     store {}, which is {}",
                    r.id,
                    store.id,
                    if store.state == StoreState::Up {
                        "not answering".to_string()
                    } else {
                        store.state.as_str_name().to_string()
                    }
                ),
                suggestion,
            ));
        } else if r.leader_last_index.is_none() {
            f.push(problem(
                "leaders",
                subject,
                format!(
                    "region {}: the coordinator names store {} as leader but that store does not \
                     lead it (a new leader has not reported yet, or none is elected)",
                    r.id, store.id
                ),
                suggestion,
            ));
        }
    }
}

fn check_replicas(s: &Survey, t: &Thresholds, f: &mut Vec<Finding>) {
    let usable: Vec<&survey::Store> = s
        .stores
        .iter()
        .filter(|x| x.state == StoreState::Up && x.admin_error.is_none())
        .collect();
    for r in &s.regions {
        let voters = r.voters();
        let learners = r
            .peers
            .iter()
            .filter(|p| p.role == PeerRole::Learner)
            .count();
        let learner_note = if learners > 0 {
            format!(" and {learners} learner(s) not yet promoted")
        } else {
            String::new()
        };
        if voters < t.max_replicas {
            let free = usable
                .iter()
                .find(|st| !r.peers.iter().any(|p| p.store_id == st.id));
            f.push(problem(
                "replicas",
                format!("region {}", r.id),
                format!(
                    "region {} has {voters} voter(s){learner_note}; {} configured, so it \
                     tolerates fewer failures than intended",
                    r.id, t.max_replicas
                ),
                match free {
                    Some(st) => format!("nokv add-peer --region {} --store {}", r.id, st.id),
                    None => "add a store: every usable store already holds a replica".into(),
                },
            ));
        } else if voters > t.max_replicas {
            let victim = r
                .peers
                .iter()
                .filter(|p| p.id != r.leader_peer_id)
                .max_by_key(|p| usable.iter().all(|st| st.id != p.store_id) as u8);
            f.push(problem(
                "replicas",
                format!("region {}", r.id),
                format!(
                    "region {} has {voters} voters; {} configured",
                    r.id, t.max_replicas
                ),
                match victim {
                    Some(p) => format!("nokv remove-peer --region {} --store {}", r.id, p.store_id),
                    None => format!("nokv region {}", r.id),
                },
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &r.peers {
            if !seen.insert(p.store_id) {
                f.push(problem(
                    "replicas",
                    format!("region {}", r.id),
                    format!(
                        "region {} has two replicas on store {}: one failure takes both",
                        r.id, p.store_id
                    ),
                    format!("nokv remove-peer --region {} --store {}", r.id, p.store_id),
                ));
            }
        }
    }
}

fn check_lag(s: &Survey, t: &Thresholds, f: &mut Vec<Finding>) {
    let stores: BTreeMap<u64, &survey::Store> = s.stores.iter().map(|x| (x.id, x)).collect();
    for r in &s.regions {
        for p in &r.peers {
            if !r.is_lagging(p, t.lag_threshold) {
                continue;
            }
            let how = if p.needs_snapshot() {
                "needs a snapshot to catch up".to_string()
            } else {
                format!(
                    "is {} entries behind its leader (threshold {})",
                    r.lag(p).unwrap_or(0),
                    t.lag_threshold
                )
            };
            let store_down = stores
                .get(&p.store_id)
                .is_some_and(|st| st.state != StoreState::Up || st.admin_error.is_some());
            f.push(problem(
                "lag",
                format!("region {}", r.id),
                format!(
                    "peer {} of region {} on store {} {how}{}",
                    p.id,
                    r.id,
                    p.store_id,
                    if store_down {
                        "; its store is not serving"
                    } else {
                        ""
                    }
                ),
                if store_down {
                    format!(
                        "bring store {} back (see the stores check), then nokv region {}",
                        p.store_id, r.id
                    )
                } else {
                    format!("nokv execution --store {} --region {}", p.store_id, r.id)
                },
            ));
        }
    }
}

fn check_capacity(s: &Survey, t: &Thresholds, f: &mut Vec<Finding>) {
    for st in &s.stores {
        if st.capacity_bytes == 0 || st.state == StoreState::Tombstone {
            continue;
        }
        let used = st.capacity_bytes.saturating_sub(st.available_bytes);
        let percent = used.saturating_mul(100) / st.capacity_bytes;
        if percent >= t.full_percent as u64 {
            f.push(problem(
                "capacity",
                format!("store {}", st.id),
                format!(
                    "store {} is near full: {percent}% of {} used, {} free (threshold {}%)",
                    st.id,
                    output::bytes(st.capacity_bytes),
                    output::bytes(st.available_bytes),
                    t.full_percent
                ),
                format!(
                    "free disk space on the host of {} or add a store; nokv stats --store {}",
                    st.address, st.id
                ),
            ));
        }
    }
}

/// Returns whether the operator list was available.
fn check_operators(s: &Survey, t: &Thresholds, f: &mut Vec<Finding>) -> bool {
    match &s.operators {
        Operators::NotAsked => false,
        Operators::Unavailable(why) => {
            f.push(Finding {
                check: "operators",
                severity: Severity::Note,
                subject: "cluster".into(),
                message: format!(
                    "stuck operators cannot be checked: the coordinator does not list \
                     operators ({why})"
                ),
                suggestion: "none; this check runs once the coordinator serves GetOperators".into(),
            });
            false
        }
        Operators::Listed(ops) => {
            for o in ops.iter().filter(|o| o.state == "Running") {
                let limit = if o.timeout_ms > 0 {
                    o.timeout_ms
                } else {
                    t.operator_timeout_ms
                };
                let age = s.taken_at_ms.saturating_sub(o.created_at_ms);
                if age > limit {
                    let step = o
                        .steps
                        .get(o.current_step as usize)
                        .cloned()
                        .unwrap_or_else(|| "no step".into());
                    f.push(problem(
                        "operators",
                        format!("operator {}", o.id),
                        format!(
                            "operator {} ({}) on region {} has run {} s, past its {} s timeout, \
                             at step {} of {}: {step}",
                            o.id,
                            o.kind,
                            o.region_id,
                            age / 1000,
                            limit / 1000,
                            o.current_step + 1,
                            o.steps.len()
                        ),
                        format!(
                            "nokv region {} (check the stores its step involves)",
                            o.region_id
                        ),
                    ));
                }
            }
            true
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::{fixture, Operator};

    const T: Thresholds = Thresholds {
        max_replicas: 3,
        lag_threshold: 100,
        full_percent: 90,
        operator_timeout_ms: 600_000,
    };

    /// The fixture made healthy: store 3 Up and answering, region 1 with a
    /// third voter, nobody lagging.
    fn healthy() -> Survey {
        let mut s = fixture::survey();
        s.stores[2].state = StoreState::Up;
        s.stores[2].admin_error = None;
        s.regions[0].peers.push(fixture::peer(13, 3, 40, 40));
        s.regions[1].peers[2] = fixture::peer(23, 3, 900, 900);
        s
    }

    fn problems(r: &Report, check: &str) -> Vec<Finding> {
        r.findings
            .iter()
            .filter(|f| f.check == check && f.severity == Severity::Problem)
            .cloned()
            .collect()
    }

    #[test]
    fn a_healthy_cluster_has_no_problem_and_says_operators_are_unchecked() {
        let r = diagnose(&healthy(), &T, &HashMap::new());
        assert!(r.healthy, "{r:#?}");
        assert_eq!(r.problems, 0);
        let ops = r
            .checks
            .iter()
            .find(|c| c.name == "operators")
            .expect("operators");
        assert_eq!(ops.status, "unavailable");
        assert!(r
            .checks
            .iter()
            .filter(|c| c.name != "operators")
            .all(|c| c.status == "ok"));
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].severity, Severity::Note);
        assert!(r.findings[0].message.contains("cannot be checked"));
    }

    #[test]
    fn the_fixture_reports_the_down_store_lag_and_missing_replica() {
        let mut names = HashMap::new();
        names.insert("127.0.0.1:20723".to_string(), "node-3".to_string());
        let r = diagnose(&fixture::survey(), &T, &names);
        assert!(!r.healthy);
        let stores = problems(&r, "stores");
        assert_eq!(stores.len(), 1, "{stores:#?}");
        assert!(stores[0]
            .message
            .contains("store 3 at 127.0.0.1:20723 is Down"));
        assert_eq!(stores[0].suggestion, "nokv cluster restart node-3");
        let lag = problems(&r, "lag");
        assert_eq!(lag.len(), 1, "{lag:#?}");
        assert!(lag[0]
            .message
            .contains("peer 23 of region 2 on store 3 is 500 entries behind"));
        assert!(lag[0].message.contains("its store is not serving"));
        let replicas = problems(&r, "replicas");
        assert_eq!(replicas.len(), 1);
        assert!(replicas[0]
            .message
            .contains("region 1 has 2 voter(s); 3 configured"));
        assert_eq!(
            replicas[0].suggestion,
            "add a store: every usable store already holds a replica"
        );
        assert_eq!(r.problems, 3);
        assert_eq!(
            r.findings[0].severity,
            Severity::Problem,
            "problems come first"
        );
        assert_eq!(r.findings.last().map(|f| f.severity), Some(Severity::Note));
    }

    #[test]
    fn gaps_and_overlaps_in_the_key_space_are_found() {
        let mut s = healthy();
        s.regions[0].end_key = b"k".to_vec();
        let r = diagnose(&s, &T, &HashMap::new());
        let f = problems(&r, "key-space");
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "no region covers [k, m), between regions 1 and 2"
        );

        s.regions[0].end_key = b"p".to_vec();
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "key-space");
        assert_eq!(f[0].message, "regions 1 [-inf, p) and 2 [m, +inf) overlap");

        s.regions[0].end_key = b"m".to_vec();
        s.regions[0].start_key = b"a".to_vec();
        s.regions[1].end_key = b"z".to_vec();
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "key-space");
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f[0].message.contains("below a"));
        assert!(f[1].message.contains("from z"));

        s.regions.clear();
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "key-space");
        assert!(f[0].message.contains("knows no region"));
    }

    #[test]
    fn leaderless_regions_are_found_three_ways() {
        let mut s = healthy();
        s.regions[0].leader_store_id = 0;
        s.regions[0].leader_peer_id = 0;
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "leaders");
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("region 1 has no leader"));
        assert_eq!(
            f[0].suggestion,
            "nokv region 1 (are a majority of its peers' stores up?)"
        );

        let mut s = healthy();
        s.stores[1].admin_error = Some("refused".into());
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "leaders");
        assert!(
            f[0].message.contains("region 2 has no working leader"),
            "{f:#?}"
        );
        assert!(f[0].message.contains("not answering"));

        let mut s = healthy();
        s.regions[1].leader_last_index = None;
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "leaders");
        assert!(f[0].message.contains("does not lead it"), "{f:#?}");
    }

    #[test]
    fn replica_counts_are_compared_with_max_replicas() {
        let s = healthy();
        let five = Thresholds {
            max_replicas: 5,
            ..T
        };
        let f = problems(&diagnose(&s, &five, &HashMap::new()), "replicas");
        assert_eq!(f.len(), 2);
        assert!(f[0].message.contains("3 voter(s); 5 configured"));

        let one = Thresholds {
            max_replicas: 1,
            ..T
        };
        let f = problems(&diagnose(&s, &one, &HashMap::new()), "replicas");
        assert_eq!(f.len(), 2);
        assert!(f[0].message.contains("has 3 voters; 1 configured"));
        assert!(f[0]
            .suggestion
            .starts_with("nokv remove-peer --region 1 --store "));
        assert!(
            !f[0].suggestion.ends_with("--store 1"),
            "never the leader's store"
        );

        let mut s = healthy();
        s.regions[0].peers.pop();
        s.regions[0].peers[1].role = PeerRole::Learner;
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "replicas");
        assert!(f[0]
            .message
            .contains("1 voter(s) and 1 learner(s) not yet promoted"));
        assert_eq!(f[0].suggestion, "nokv add-peer --region 1 --store 3");

        let mut s = healthy();
        s.regions[0].peers[2].store_id = 2;
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "replicas");
        assert!(f[0].message.contains("two replicas on store 2"), "{f:#?}");
    }

    #[test]
    fn disconnected_and_silent_stores_are_problems() {
        let mut s = healthy();
        s.stores[0].state = StoreState::Disconnected;
        s.stores[1].admin_error = Some("Unavailable: refused".into());
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "stores");
        assert_eq!(f.len(), 2);
        assert!(f[0].message.contains("is Disconnected"));
        assert!(f[0].message.contains("last heartbeat 1699999999 s ago"));
        assert_eq!(
            f[0].suggestion,
            "restart the nokv-node serving 127.0.0.1:20721, then nokv stores"
        );
        assert!(f[1]
            .message
            .contains("Admin API does not answer: Unavailable: refused"));
    }

    #[test]
    fn near_full_stores_are_found() {
        let mut s = healthy();
        s.stores[0].available_bytes = s.stores[0].capacity_bytes / 20;
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "capacity");
        assert_eq!(f.len(), 1);
        assert!(f[0]
            .message
            .contains("store 1 is near full: 95% of 100.0 GiB used"));
        assert_eq!(
            problems(
                &diagnose(
                    &s,
                    &Thresholds {
                        full_percent: 96,
                        ..T
                    },
                    &HashMap::new()
                ),
                "capacity"
            )
            .len(),
            0
        );
    }

    #[test]
    fn stuck_operators_are_found_when_listed() {
        let mut s = healthy();
        let op = |id, created_at_ms, timeout_ms, state: &str| Operator {
            id,
            region_id: 2,
            kind: "add-replica".into(),
            steps: vec!["add learner 9@3".into()],
            current_step: 0,
            state: state.into(),
            source: "replica-checker".into(),
            created_at_ms,
            finished_at_ms: 0,
            timeout_ms,
            message: String::new(),
        };
        let now = s.taken_at_ms;
        s.operators = Operators::Listed(vec![
            op(1, now - 20_000, 10_000, "Running"),
            op(2, now - 5_000, 10_000, "Running"),
            op(3, now - 700_000, 0, "Running"),
            op(4, now - 900_000, 0, "Succeeded"),
        ]);
        let r = diagnose(&s, &T, &HashMap::new());
        let f = problems(&r, "operators");
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f[0]
            .message
            .contains("operator 1 (add-replica) on region 2 has run 20 s, past its 10 s timeout"));
        assert!(f[1].message.contains("operator 3"));
        assert_eq!(
            r.checks
                .iter()
                .find(|c| c.name == "operators")
                .map(|c| c.status),
            Some("problem")
        );
    }

    #[test]
    fn no_coordinator_leader_is_a_problem() {
        let mut s = healthy();
        s.leader_member_id = None;
        let f = problems(&diagnose(&s, &T, &HashMap::new()), "coordinator");
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("no coordinator member leads"));
    }
}
