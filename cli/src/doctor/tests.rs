//! The doctor's checks, run through [`diagnose`] over the survey fixture.

use std::collections::HashMap;

use nokv_proto::metapb::{PeerRole, StoreState};

use super::diagnose::diagnose;
use super::report::{Finding, Report, Severity, Thresholds};
use crate::survey::{fixture, Operator, Operators, Survey};

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
