//! The TinyKV raftstore scenario matrix, ported by name and parameters
//! (clients, unreliable, crash, partitions, log limit, conf change, split,
//! merge)
//! onto the in-process harness. Every scenario checks each client's appends
//! (exactly once, in order) and the linearizability of the shared register
//! histories. `NOKV_SCENARIO_ROUNDS` (default 1) and `NOKV_SCENARIO_SECS`
//! (default 3) make the runs longer; `NOKV_SEED` replays the harness's
//! random choices.
//!
//! The merge scenarios are NoKV's own additions in the same style; OneMerge
//! is hand-written in `scenarios_merge.rs`.

use nokv_tests::scenario::{run, Scenario};

const LOG_LIMIT: u64 = 100;

fn s() -> Scenario {
    Scenario {
        clients: 1,
        ..Default::default()
    }
}

#[test]
fn basic() {
    run(s());
}

#[test]
fn concurrent() {
    run(Scenario { clients: 5, ..s() });
}

#[test]
fn unreliable() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        ..s()
    });
}

#[test]
fn many_partitions_one_client() {
    run(Scenario {
        partitions: true,
        ..s()
    });
}

#[test]
fn many_partitions_many_clients() {
    run(Scenario {
        clients: 5,
        partitions: true,
        ..s()
    });
}

#[test]
fn persist_one_client() {
    run(Scenario { crash: true, ..s() });
}

#[test]
fn persist_concurrent() {
    run(Scenario {
        clients: 5,
        crash: true,
        ..s()
    });
}

#[test]
fn persist_concurrent_unreliable() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        ..s()
    });
}

#[test]
fn persist_partition() {
    run(Scenario {
        clients: 5,
        crash: true,
        partitions: true,
        ..s()
    });
}

#[test]
fn persist_partition_unreliable() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        ..s()
    });
}

#[test]
fn snapshot_recover() {
    run(Scenario {
        crash: true,
        log_limit: Some(LOG_LIMIT),
        ..s()
    });
}

#[test]
fn snapshot_recover_many_clients() {
    run(Scenario {
        clients: 20,
        crash: true,
        log_limit: Some(LOG_LIMIT),
        ..s()
    });
}

#[test]
fn snapshot_unreliable() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        log_limit: Some(LOG_LIMIT),
        ..s()
    });
}

#[test]
fn snapshot_unreliable_recover() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        log_limit: Some(LOG_LIMIT),
        ..s()
    });
}

#[test]
fn snapshot_unreliable_recover_concurrent_partition() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        log_limit: Some(LOG_LIMIT),
        ..s()
    });
}

#[test]
fn conf_change_recover() {
    run(Scenario {
        crash: true,
        confchange: true,
        ..s()
    });
}

#[test]
fn conf_change_recover_many_clients() {
    run(Scenario {
        clients: 20,
        crash: true,
        confchange: true,
        ..s()
    });
}

#[test]
fn conf_change_unreliable() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        confchange: true,
        ..s()
    });
}

#[test]
fn conf_change_unreliable_recover() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        confchange: true,
        ..s()
    });
}

#[test]
fn conf_change_snapshot_unreliable_recover() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        log_limit: Some(LOG_LIMIT),
        confchange: true,
        ..s()
    });
}

#[test]
fn conf_change_snapshot_unreliable_recover_concurrent_partition() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        log_limit: Some(LOG_LIMIT),
        confchange: true,
        ..s()
    });
}

#[test]
fn split_recover() {
    run(Scenario {
        crash: true,
        split: true,
        ..s()
    });
}

#[test]
fn split_recover_many_clients() {
    run(Scenario {
        clients: 20,
        crash: true,
        split: true,
        ..s()
    });
}

#[test]
fn split_unreliable() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        split: true,
        ..s()
    });
}

#[test]
fn split_unreliable_recover() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        split: true,
        ..s()
    });
}

#[test]
fn split_conf_change_snapshot_unreliable_recover() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        log_limit: Some(LOG_LIMIT),
        confchange: true,
        split: true,
        ..s()
    });
}

#[test]
fn split_conf_change_snapshot_unreliable_recover_concurrent_partition() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        log_limit: Some(LOG_LIMIT),
        confchange: true,
        split: true,
        ..s()
    });
}

#[test]
fn merge_recover() {
    run(Scenario {
        clients: 5,
        crash: true,
        split: true,
        merge: true,
        ..s()
    });
}

#[test]
fn merge_unreliable_recover() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        split: true,
        merge: true,
        ..s()
    });
}

#[test]
fn split_merge_conf_change_unreliable_recover_concurrent_partition() {
    run(Scenario {
        clients: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        log_limit: Some(LOG_LIMIT),
        confchange: true,
        split: true,
        merge: true,
    });
}
