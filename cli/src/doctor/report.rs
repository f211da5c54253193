//! What the doctor reports, and [`diagnose`], which runs every check
//! family over one [`Survey`] and orders their findings: problems first,
//! then notes, each group in the order of [`CHECKS`].

use std::collections::HashMap;

use serde::Serialize;

use super::{capacity, key_space, liveness, operators, replication};
use crate::survey::Survey;

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

impl Finding {
    /// A problem `check` found about `subject`.
    pub(super) fn problem(
        check: &'static str,
        subject: String,
        message: String,
        suggestion: String,
    ) -> Self {
        Finding {
            check,
            severity: Severity::Problem,
            subject,
            message,
            suggestion,
        }
    }
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
    liveness::check_coordinator(survey, &mut f);
    liveness::check_stores(survey, process_names, &mut f);
    key_space::check_key_space(survey, &mut f);
    replication::check_leaders(survey, &mut f);
    replication::check_replicas(survey, t, &mut f);
    replication::check_lag(survey, t, &mut f);
    capacity::check_capacity(survey, t, &mut f);
    let operators_available = operators::check_operators(survey, t, &mut f);
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
