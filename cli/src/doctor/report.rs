//! What the doctor reports: findings, each check's outcome, the whole
//! report, and the thresholds the checks apply.

use serde::Serialize;

/// The thresholds the checks apply.
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
