//! The `key-space` check: the regions the coordinator knows cover the
//! whole key space once, with no gap and no overlap.

use super::report::Finding;
use crate::output::key;
use crate::survey::{Region, Survey};

/// What every key-space finding suggests.
const SUGGESTION: &str = "nokv regions (compare the ranges; the coordinator learns them from \
                          region heartbeats and split reports)";

pub(super) fn check_key_space(s: &Survey, f: &mut Vec<Finding>) {
    let mut found = |subject: String, message: String| {
        f.push(Finding::problem(
            "key-space",
            subject,
            message,
            SUGGESTION.into(),
        ))
    };
    let mut regions: Vec<&Region> = s.regions.iter().collect();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    let Some(first) = regions.first() else {
        if s.cluster_id != 0 {
            found(
                "cluster".into(),
                "the coordinator knows no region: no key can be served".into(),
            );
        }
        return;
    };
    if !first.start_key.is_empty() {
        found(
            format!("region {}", first.id),
            format!(
                "no region covers keys below {}: the first region starts there",
                key(&first.start_key, "-inf")
            ),
        );
    }
    for w in regions.windows(2) {
        let (a, b) = (w[0], w[1]);
        let subject = format!("regions {} and {}", a.id, b.id);
        if a.end_key.is_empty() || a.end_key > b.start_key {
            found(
                subject,
                format!(
                    "regions {} [{}, {}) and {} [{}, {}) overlap",
                    a.id,
                    key(&a.start_key, "-inf"),
                    key(&a.end_key, "+inf"),
                    b.id,
                    key(&b.start_key, "-inf"),
                    key(&b.end_key, "+inf")
                ),
            );
        } else if a.end_key < b.start_key {
            found(
                subject,
                format!(
                    "no region covers [{}, {}), between regions {} and {}",
                    key(&a.end_key, "-inf"),
                    key(&b.start_key, "+inf"),
                    a.id,
                    b.id
                ),
            );
        }
    }
    if let Some(last) = regions.last().filter(|r| !r.end_key.is_empty()) {
        found(
            format!("region {}", last.id),
            format!(
                "no region covers keys from {}: the last region ends there",
                key(&last.end_key, "+inf")
            ),
        );
    }
}
