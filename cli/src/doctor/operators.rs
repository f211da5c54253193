//! The `operators` check: no running scheduling operator is past its
//! timeout (its steps' own, else the doctor's). When the coordinator
//! cannot list operators the check is unavailable, a note and not a
//! problem.

use super::report::{Finding, Severity, Thresholds};
use crate::survey::{Operators, Survey};

/// Returns whether the operator list was available.
pub(super) fn check_operators(s: &Survey, t: &Thresholds, f: &mut Vec<Finding>) -> bool {
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
                    f.push(Finding::problem(
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
