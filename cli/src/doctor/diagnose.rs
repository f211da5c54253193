//! [`diagnose`]: runs every check family over one [`Survey`] and orders
//! their findings: problems first, then notes, each group in the order of
//! [`CHECKS`].

use std::collections::HashMap;

use super::report::{CheckResult, Report, Severity, Thresholds, CHECKS};
use super::{capacity, key_space, liveness, operators, replication};
use crate::survey::Survey;

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
