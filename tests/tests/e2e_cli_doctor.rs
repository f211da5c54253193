//! `nokv doctor` end to end: exit 0 on a healthy cluster; each problem it
//! can see on a real cluster induced and reported with exit code 4 — too
//! few replicas for the configured count and a near-full disk (through
//! the thresholds), a killed store (unreachable, then Disconnected), a peer
//! lagging behind the writes it missed, and a region left without a
//! working leader once a majority of its stores is gone.

use std::time::Duration;

use nokv_client::RawClient;
use nokv_tests::{json, runtime, wait_until, LocalCluster};
use serde_json::Value;

/// Exit code of `nokv doctor` when it finds a problem.
const EXIT_PROBLEMS: i32 = 4;

/// Runs `nokv doctor -o json` with `extra` flags; returns the exit code
/// and the parsed report.
fn doctor(c: &LocalCluster, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["doctor", "-o", "json"];
    args.extend_from_slice(extra);
    let out = c.nokv(&args);
    let code = out.status.code().expect("exit code");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        code == 0 || code == EXIT_PROBLEMS,
        "doctor failed ({code}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, json(&stdout))
}

/// Problem findings of `check`.
fn problems(report: &Value, check: &str) -> Vec<Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == check && f["severity"] == "problem")
        .cloned()
        .collect()
}

fn messages(findings: &[Value]) -> String {
    findings
        .iter()
        .map(|f| f["message"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn doctor_is_quiet_on_a_healthy_cluster_and_reports_each_induced_problem() {
    // Stores count as Disconnected after 2 s without a heartbeat.
    let c = LocalCluster::start(1, 3, "coordinator_config:\n  store_disconnect_ms: 2000\n");

    // Healthy: exit 0, every check ok except the operator check, which
    // cannot run (GetOperators is UNIMPLEMENTED) and says so.
    let (code, report) = doctor(&c, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["healthy"], true);
    assert_eq!(report["problems"], 0);
    for check in report["checks"].as_array().expect("checks") {
        assert_eq!(check["status"], "ok", "{check}");
    }
    let table = c.nokv(&["doctor"]);
    assert_eq!(table.status.code(), Some(0));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("healthy: 8 of 8 checks passed"), "{text}");

    // Fewer voters than configured, and a disk "near full" at 1 % use.
    let (code, report) = doctor(&c, &["--max-replicas", "5", "--full-percent", "1"]);
    assert_eq!(code, EXIT_PROBLEMS);
    assert_eq!(report["healthy"], false);
    let replicas = problems(&report, "replicas");
    assert!(
        messages(&replicas).contains("region 1 has 3 voter(s); 5 configured"),
        "{report:#}"
    );
    assert_eq!(problems(&report, "capacity").len(), 3, "{report:#}");

    // Kill a follower's store and keep writing: the store stops
    // answering, turns Disconnected, and its peer falls behind.
    let regions = json(&c.nokv_ok(&["regions", "-o", "json"]));
    let leader_store = regions[0]["leader_store_id"].as_u64().expect("leader");
    let stores = json(&c.nokv_ok(&["stores", "-o", "json"]));
    let store_of = |id: u64| -> (String, u64) {
        let s = stores
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            .expect("store");
        let addr = s["address"].as_str().expect("address").to_string();
        (c.node_by_address(&addr).name, id)
    };
    let follower = stores
        .as_array()
        .expect("stores")
        .iter()
        .map(|s| s["id"].as_u64().expect("id"))
        .find(|id| *id != leader_store)
        .expect("a follower store");
    let (follower_name, follower_id) = store_of(follower);
    c.kill9(&follower_name);

    let rt = runtime();
    let client = RawClient::new(c.coordinators.clone(), Duration::from_secs(20)).expect("client");
    rt.block_on(async {
        for i in 0..40 {
            client
                .put(format!("doctor-{i}").as_bytes(), b"v")
                .await
                .expect("write with one store down");
        }
    });

    let report = wait_until(
        "doctor to report the killed store Disconnected and its lagging peer",
        Duration::from_secs(60),
        || {
            let (code, report) = doctor(&c, &["--lag-threshold", "10"]);
            let stores = messages(&problems(&report, "stores"));
            let lag = messages(&problems(&report, "lag"));
            (code == EXIT_PROBLEMS
                && stores.contains(&format!("store {follower_id} at"))
                && stores.contains("is Disconnected")
                && lag.contains(&format!("on store {follower_id} is")))
            .then_some(report)
        },
    );
    let store_finding = &problems(&report, "stores")[0];
    assert_eq!(
        store_finding["suggestion"],
        format!("nokv cluster restart {follower_name}"),
        "the suggestion names the local process"
    );
    assert!(
        messages(&problems(&report, "lag")).contains("its store is not serving"),
        "{report:#}"
    );
    // The table form explains the same in words, with the command to run.
    let table = c.nokv(&["doctor", "--lag-threshold", "10"]);
    assert_eq!(table.status.code(), Some(EXIT_PROBLEMS));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("Disconnected"), "{text}");
    assert!(text.contains("problem(s) found"), "{text}");

    // Kill the leader's store too: two of three replicas are gone, no
    // leader can serve region 1.
    let (leader_name, _) = store_of(leader_store);
    c.kill9(&leader_name);
    let report = wait_until(
        "doctor to report region 1 without a working leader",
        Duration::from_secs(30),
        || {
            let (code, report) = doctor(&c, &[]);
            let leaders = messages(&problems(&report, "leaders"));
            (code == EXIT_PROBLEMS && leaders.contains("region 1")).then_some(report)
        },
    );
    assert_eq!(report["healthy"], false);
    assert!(
        problems(&report, "leaders")[0]["suggestion"]
            .as_str()
            .is_some_and(|s| s.starts_with("nokv region 1")),
        "{report:#}"
    );
}

#[test]
fn doctor_without_a_coordinator_fails_with_one_line() {
    let out = std::process::Command::new(nokv_tests::bin_dir().join("nokv"))
        .args(["doctor", "--coordinator", "127.0.0.1:1", "--timeout", "1"])
        .output()
        .expect("run nokv doctor");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
}
