//! Every `nokv` command against one real cluster, with `-o json` (or YAML)
//! parsed and checked against what the cluster is: a split adds a region
//! that `nokv region --key` then finds (and a merge removes it again, with
//! its transition in `nokv execution`), a transfer moves the leader that
//! `nokv region` reports, `nokv stats` counts what `stores` and `regions`
//! list, `config show` names where each setting came from. `nokv top` needs
//! a terminal and has its own test (e2e_cli_top.rs); `add-peer` and
//! `remove-peer` are exercised in e2e_topology.rs.

use std::time::Duration;

use nokv_tests::{json, wait_until, LocalCluster};
use serde_json::Value;

fn ok_json(c: &LocalCluster, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["-o", "json"]);
    json(&c.nokv_ok(&a))
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x["id"].as_u64().expect("id"))
        .collect()
}

#[test]
fn every_command_answers_with_output_that_reflects_the_cluster() {
    let c = LocalCluster::start(1, 3, "");

    // Local cluster processes.
    let procs = ok_json(&c, &["cluster", "status"]);
    let procs = procs.as_array().expect("processes");
    assert_eq!(procs.len(), 4);
    assert!(procs
        .iter()
        .all(|p| p["alive"] == true && p["ready"] == true));

    // Inventory: stores, regions, one region in detail, stats.
    let stores = ok_json(&c, &["stores"]);
    let store_ids = ids(&stores);
    assert_eq!(store_ids.len(), 3);
    let regions = ok_json(&c, &["regions"]);
    assert_eq!(ids(&regions), [1]);

    let r1 = ok_json(&c, &["region", "1"]);
    assert_eq!(r1["id"], 1);
    assert_eq!(r1["start_key"], "");
    let progress = r1["progress"].as_array().expect("progress");
    assert_eq!(progress.len(), 3, "{r1:#}");
    assert_eq!(
        progress.iter().filter(|p| p["is_leader"] == true).count(),
        1
    );
    assert!(
        progress
            .iter()
            .all(|p| p["applied_index"].as_u64().is_some() && p["error"].is_null()),
        "every store answered: {r1:#}"
    );
    assert_eq!(ok_json(&c, &["region", "--key", "anything"])["id"], 1);
    let missing = c.nokv(&["region", "999999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let table = c.nokv_ok(&["region", "1"]);
    assert!(
        table.contains("APPLIED") && table.contains("leader"),
        "{table}"
    );

    let stats = ok_json(&c, &["stats"]);
    assert_eq!(stats["stores"], 3);
    assert_eq!(stats["stores_by_state"]["Up"], 3);
    assert_eq!(stats["regions"], 1);
    assert_eq!(stats["peers"], 3);
    assert_eq!(stats["regions_without_leader"], 0);
    assert_eq!(stats["coordinator_leader"], "coordinator-1");
    assert!(
        stats["capacity_bytes"].as_u64().unwrap_or(0) > 0,
        "{stats:#}"
    );
    let one = store_ids[0].to_string();
    let s1 = ok_json(&c, &["stats", "--store", &one]);
    assert_eq!(s1["store_id"], store_ids[0]);
    assert_eq!(s1["state"], "Up");
    assert_eq!(s1["region_count"], 1);
    assert!(
        s1["column_family_bytes"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "{s1:#}"
    );

    // Settings: the coordinators come from NOKV_COORDINATOR, the timeout
    // from the flag, the output from the flag.
    let cfg = ok_json(&c, &["config", "show", "--timeout", "7"]);
    assert_eq!(
        cfg["coordinators"],
        serde_json::json!(c.coordinators),
        "{cfg:#}"
    );
    assert_eq!(cfg["timeout_seconds"], 7.0);
    assert_eq!(cfg["sources"]["coordinators"], "env");
    assert_eq!(cfg["sources"]["timeout_seconds"], "flag");
    assert_eq!(cfg["sources"]["output"], "flag");
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&c.nokv_ok(&["config", "show", "-o", "yaml"])).expect("yaml");
    assert_eq!(yaml["sources"]["timeout_seconds"].as_str(), Some("default"));
    let with_store = ok_json(&c, &["config", "show", "--store", &one]);
    assert_eq!(with_store["store"]["id"], store_ids[0]);
    assert_eq!(with_store["store"]["status"]["component"], "node");
    assert_eq!(with_store["store"]["status"]["store_id"], store_ids[0]);

    // Completion scripts.
    assert!(c.nokv_ok(&["completion", "bash"]).contains("nokv"));
    assert!(c
        .nokv_ok(&["completion", "zsh"])
        .starts_with("#compdef nokv"));
    assert_eq!(c.nokv(&["completion", "tcsh"]).status.code(), Some(2));

    // Raw and transactional data.
    assert_eq!(c.nokv_ok(&["raw", "put", "a", "1"]).trim(), "OK");
    assert_eq!(c.nokv_ok(&["raw", "put", "b", "2"]).trim(), "OK");
    assert_eq!(ok_json(&c, &["raw", "get", "a"])["value"], "1");
    let scanned = ok_json(&c, &["raw", "scan"]);
    assert_eq!(scanned.as_array().map(Vec::len), Some(2), "{scanned}");
    assert_eq!(c.nokv_ok(&["raw", "delete", "a"]).trim(), "OK");
    assert_eq!(c.nokv(&["raw", "get", "a"]).status.code(), Some(3));
    assert_eq!(c.nokv_ok(&["raw", "delete-range", "b"]).trim(), "OK");
    assert_eq!(
        ok_json(&c, &["raw", "scan"]).as_array().map(Vec::len),
        Some(0)
    );
    let put = ok_json(&c, &["put", "t", "x"]);
    assert!(
        put["commit_ts"].as_u64() > put["start_ts"].as_u64(),
        "{put}"
    );
    assert_eq!(ok_json(&c, &["get", "t"])["value"], "x");
    assert_eq!(ok_json(&c, &["scan"]).as_array().map(Vec::len), Some(1));
    ok_json(&c, &["delete", "t"]);
    assert_eq!(c.nokv(&["get", "t"]).status.code(), Some(3));

    // A split adds a region that the inventory commands all see.
    let split = ok_json(&c, &["split", "--region", "1", "--key", "m"]);
    let new_id = ids(&split)[1];
    wait_until("two regions", Duration::from_secs(20), || {
        (ids(&ok_json(&c, &["regions"])).len() == 2).then_some(())
    });
    let right = ok_json(&c, &["region", "--key", "z"]);
    assert_eq!(right["id"], new_id);
    assert_eq!(right["start_key"], "m");
    assert_eq!(ok_json(&c, &["region", "--key", "a"])["id"], 1);
    assert_eq!(ok_json(&c, &["stats"])["regions"], 2);
    let transitions = ok_json(
        &c,
        &[
            "execution",
            "--store",
            &split[0]["leader_store_id"].to_string(),
        ],
    );
    assert!(
        transitions["transitions"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x["kind"] == "split")),
        "{transitions:#}"
    );

    // A transfer moves the leader that `region` reports.
    let leader = ok_json(&c, &["region", "1"])["leader_store_id"]
        .as_u64()
        .expect("leader");
    let to = *store_ids
        .iter()
        .find(|s| **s != leader)
        .expect("another store");
    let moved = ok_json(
        &c,
        &[
            "transfer-leader",
            "--region",
            "1",
            "--to-store",
            &to.to_string(),
        ],
    );
    assert_eq!(moved["leader_store_id"], to);
    let r1 = wait_until(
        "region 1 led from the new store",
        Duration::from_secs(20),
        || {
            let r = ok_json(&c, &["region", "1"]);
            let leads = r["progress"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|x| x["is_leader"] == true && x["store_id"] == to)
            });
            (r["leader_store_id"] == to && leads).then_some(r)
        },
    );
    assert_eq!(r1["id"], 1);

    // A merge folds the split-off region back: one region covers it all,
    // and the source leader's store shows the merge transition.
    let source_store = ok_json(&c, &["region", &new_id.to_string()])["leader_store_id"]
        .as_u64()
        .expect("source leader");
    let merged = ok_json(
        &c,
        &["merge", "--source", &new_id.to_string(), "--target", "1"],
    );
    assert_eq!(ids(&merged), vec![1], "{merged:#}");
    assert_eq!(merged[0]["start_key"], "");
    assert_eq!(merged[0]["end_key"], "");
    wait_until("one region again", Duration::from_secs(20), || {
        (ids(&ok_json(&c, &["regions"])) == vec![1]).then_some(())
    });
    let execution = ok_json(
        &c,
        &[
            "execution",
            "--store",
            &source_store.to_string(),
            "--region",
            &new_id.to_string(),
        ],
    );
    assert!(
        execution["transitions"].as_array().is_some_and(|t| t
            .iter()
            .any(|x| x["kind"] == "merge" && x["stage"] != "failed")),
        "{execution:#}"
    );
    let bad = c.nokv(&["merge", "--source", "1", "--target", "1"]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("different regions"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Load, and a clean bill of health afterwards.
    let bench = ok_json(
        &c,
        &[
            "bench",
            "--workload",
            "put",
            "--clients",
            "2",
            "--duration",
            "1",
            "--keys",
            "100",
        ],
    );
    assert!(bench["ops"].as_u64().unwrap_or(0) > 0, "{bench:#}");
    let healthy = wait_until(
        "doctor to find the cluster healthy",
        Duration::from_secs(30),
        || {
            let out = c.nokv(&["doctor", "-o", "json"]);
            (out.status.code() == Some(0)).then(|| json(&String::from_utf8_lossy(&out.stdout)))
        },
    );
    assert_eq!(healthy["healthy"], true);

    // One process stopped and started again through the launcher.
    c.nokv_ok(&["cluster", "stop", "node-3"]);
    let stopped = c.nokv(&["cluster", "status", "-o", "json"]);
    assert_eq!(
        stopped.status.code(),
        Some(1),
        "a stopped process is not ready"
    );
    let procs = json(&String::from_utf8_lossy(&stopped.stdout));
    let node3 = procs
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "node-3"))
        .cloned()
        .expect("node-3 listed");
    assert_eq!(node3["alive"], false);
    c.nokv_ok(&["cluster", "restart", "node-3"]);
    wait_until("every process ready again", Duration::from_secs(30), || {
        let out = c.nokv(&["cluster", "status", "-o", "json"]);
        out.status.success().then_some(())
    });
    c.assert_no_panics();
}
