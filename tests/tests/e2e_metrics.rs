//! Issue 6, acceptance 4 and 5, over real processes: every node and
//! coordinator serves the metrics the issue names and its counters move
//! under load; `/ready` waits for the node's registration; region and store
//! heartbeats carry read/write flow into `nokv regions` and `nokv stores`;
//! the Grafana dashboard in `deploy/grafana/nokv.json` imports as it is and
//! queries only metrics a live cluster serves.

use std::collections::{BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nokv_client::CoordinatorClient;
use nokv_tests::{bin_dir, free_port_base, http_get, json, runtime, wait_until, LocalCluster};
use prometheus_parse::{Scrape, Value};

/// Metrics every process serves (shared raft and gRPC ones).
const SHARED: &[&str] = &[
    "nokv_grpc_requests_total",
    "nokv_grpc_request_duration_seconds",
    "nokv_raft_proposals_total",
    "nokv_raft_committed_entries_total",
    "nokv_raft_applied_entries_total",
    "nokv_raft_ready_total",
    "nokv_raft_ready_batch_size",
    "nokv_raft_persist_duration_seconds",
    "nokv_raft_apply_duration_seconds",
    "nokv_raft_leader_changes_total",
    "nokv_raft_log_lag_entries",
    "nokv_raft_snapshots_total",
    "nokv_raft_snapshot_bytes_total",
    "nokv_raft_applied_index",
    "nokv_raft_messages_total",
];

/// Metrics every node serves besides [`SHARED`].
const NODE: &[&str] = &[
    "nokv_store_regions",
    "nokv_raftstore_apply_queue_entries",
    "nokv_raftstore_apply_batch_entries",
    "nokv_store_leaders",
    "nokv_store_pending_peers",
    "nokv_store_hibernating_regions",
    "nokv_store_leadership_changes_total",
    "nokv_store_flow_bytes_total",
    "nokv_store_flow_keys_total",
    "nokv_raft_snapshots_generated_total",
    "nokv_raft_snapshots_applied_total",
    "nokv_engine_size_bytes",
    "nokv_engine_pending_compaction_bytes",
    "nokv_engine_memtable_bytes",
    "nokv_engine_write_stopped",
    "nokv_engine_delayed_write_rate_bytes_per_second",
];

/// Metrics every coordinator member serves besides [`SHARED`].
const COORDINATOR: &[&str] = &[
    "nokv_coordinator_tso_requests_total",
    "nokv_coordinator_tso_timestamps_total",
    "nokv_coordinator_id_requests_total",
    "nokv_coordinator_ids_allocated_total",
    "nokv_coordinator_stores",
    "nokv_coordinator_regions",
    "nokv_coordinator_store_leaders",
    "nokv_coordinator_is_leader",
    "nokv_coordinator_invariant_violations_total",
    "nokv_coordinator_stale_heartbeats_total",
];

/// Metrics only the coordinator leader has once operators ran.
const COORDINATOR_LEADER: &[&str] = &["nokv_coordinator_operators_total"];

fn scrape(addr: &str) -> Scrape {
    let (code, body) = http_get(addr, "/metrics").expect("metrics endpoint answers");
    assert_eq!(code, 200, "/metrics of {addr}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text")
}

fn names(s: &Scrape) -> HashSet<String> {
    s.samples.iter().map(|x| x.metric.clone()).collect()
}

/// Sum of metric `name`'s samples whose labels include `label`: counter
/// and gauge values, a histogram's observation count.
fn total(s: &Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

fn coordinator_client(c: &LocalCluster) -> CoordinatorClient {
    CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(5)).expect("client")
}

/// Raw puts and gets, a transaction, and ids from the coordinator.
fn load(c: &LocalCluster, round: u32) {
    for i in 0..10 {
        c.nokv_ok(&["raw", "put", &format!("load-{round}-{i}"), "value"]);
    }
    c.nokv_ok(&["raw", "get", &format!("load-{round}-0")]);
    c.nokv_ok(&["raw", "scan", "--start", "load-", "--end", "load-~"]);
    c.nokv_ok(&["put", &format!("txn-{round}"), "v"]);
    c.nokv_ok(&["get", &format!("txn-{round}")]);
    let rt = runtime();
    rt.block_on(coordinator_client(c).alloc_id(3))
        .expect("alloc ids");
}

/// The coordinator member whose scrape says it leads.
fn leader_of(scrapes: &[(String, String, Scrape)]) -> Option<String> {
    scrapes
        .iter()
        .find(|(_, kind, s)| {
            kind == "coordinator" && total(s, "nokv_coordinator_is_leader", None) == 1.0
        })
        .map(|(name, _, _)| name.clone())
}

fn scrape_all(c: &LocalCluster) -> Vec<(String, String, Scrape)> {
    c.processes()
        .into_iter()
        .map(|p| {
            let s = scrape(&p.status);
            (p.name, p.kind, s)
        })
        .collect()
}

fn sum_over(
    scrapes: &[(String, String, Scrape)],
    kind: &str,
    name: &str,
    label: Option<(&str, &str)>,
) -> f64 {
    scrapes
        .iter()
        .filter(|(_, k, _)| k == kind)
        .map(|(_, _, s)| total(s, name, label))
        .sum()
}

/// Metric names an expression queries: identifiers starting with `nokv_`,
/// with a histogram's `_bucket`, `_sum` or `_count` suffix removed.
fn queried_metrics(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("nokv_") {
        let start = i + at;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(base.to_string());
        }
        i = end;
    }
    out
}

fn dashboard() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/nokv.json");
    let text = std::fs::read_to_string(path).expect("deploy/grafana/nokv.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every query panel of the dashboard, flattened out of rows.
fn dashboard_panels(d: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(p.clone());
        }
    }
    out
}

#[test]
fn queried_metric_names_are_extracted_from_promql() {
    let q = queried_metrics(
        "histogram_quantile(0.99, sum by (le) (rate(nokv_grpc_request_duration_seconds_bucket[5m]))) \
         / sum(rate(nokv_raft_ready_batch_size_count[5m])) + nokv_store_regions * xnokv_not",
    );
    assert_eq!(
        q.into_iter().collect::<Vec<_>>(),
        [
            "nokv_grpc_request_duration_seconds",
            "nokv_raft_ready_batch_size",
            "nokv_store_regions"
        ]
    );
}

#[test]
fn the_grafana_dashboard_imports_as_it_is() {
    let d = dashboard();
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "a Prometheus datasource input named DS_PROMETHEUS"
    );
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let panels = dashboard_panels(&d);
    assert!(panels.len() >= 20, "{} panels", panels.len());
    let mut ids = HashSet::new();
    for p in &panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id at {title}"
        );
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} queries nothing");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            assert!(!queried_metrics(expr).is_empty(), "{title}: {expr}");
        }
    }
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    for section in [
        "Cluster overview",
        "gRPC",
        "Raft",
        "RocksDB",
        "Coordinator",
        "Region flow",
    ] {
        assert!(titles.contains(&section), "row {section} in {titles:?}");
    }
}

#[test]
fn every_process_serves_the_issue_metrics_counters_move_and_the_dashboard_queries_exist() {
    let c = LocalCluster::start(3, 3, "");
    load(&c, 0);
    // One operator, so operators by kind and result have samples.
    c.nokv_ok(&["operator", "add", "--region", "1", "split:load-0-5"]);
    // Gauges refreshed on store heartbeats (RocksDB properties) and by the
    // coordinator leader's periodic refresh.
    wait_until(
        "memtable bytes on every node",
        Duration::from_secs(30),
        || {
            let s = scrape_all(&c);
            let all = s
                .iter()
                .filter(|(_, k, _)| k == "node")
                .all(|(_, _, s)| total(s, "nokv_engine_memtable_bytes", None) > 0.0);
            all.then_some(())
        },
    );
    wait_until(
        "the coordinator leader counts 3 Up stores",
        Duration::from_secs(30),
        || {
            let s = scrape_all(&c);
            let leader = leader_of(&s)?;
            let (_, _, ls) = s.iter().find(|(n, _, _)| *n == leader)?;
            (total(ls, "nokv_coordinator_stores", Some(("state", "Up"))) == 3.0).then_some(())
        },
    );
    wait_until(
        "the split operator finished",
        Duration::from_secs(30),
        || {
            let s = scrape_all(&c);
            let leader = leader_of(&s)?;
            let (_, _, ls) = s.iter().find(|(n, _, _)| *n == leader)?;
            (total(
                ls,
                "nokv_coordinator_operators_total",
                Some(("event", "Succeeded")),
            ) >= 1.0)
                .then_some(())
        },
    );

    let first = scrape_all(&c);
    load(&c, 1);
    let second = scrape_all(&c);

    for (name, kind, s) in &second {
        let have = names(s);
        let own = if kind == "node" { NODE } else { COORDINATOR };
        for m in SHARED.iter().chain(own) {
            assert!(have.contains(*m), "{name} lacks {m}");
        }
        for h in [
            "nokv_grpc_request_duration_seconds",
            "nokv_raft_ready_batch_size",
            "nokv_raft_persist_duration_seconds",
            "nokv_raft_apply_duration_seconds",
        ] {
            let sample = s.samples.iter().find(|x| x.metric == h).expect("sample");
            assert!(
                matches!(sample.value, Value::Histogram(_)),
                "{name}: {h} is a histogram"
            );
        }
    }
    let leader = leader_of(&second).expect("a coordinator leads");
    assert_eq!(
        leader_of(&first).as_deref(),
        Some(leader.as_str()),
        "no leader change"
    );
    let leader_scrape = |scrapes: &[(String, String, Scrape)]| {
        scrapes
            .iter()
            .find(|(n, _, _)| *n == leader)
            .map(|(_, _, s)| s)
            .expect("leader scrape")
            .clone()
    };
    let (l1, l2) = (leader_scrape(&first), leader_scrape(&second));
    for m in COORDINATOR_LEADER {
        assert!(names(&l2).contains(*m), "the coordinator leader lacks {m}");
    }
    let op = l2
        .samples
        .iter()
        .find(|x| x.metric == "nokv_coordinator_operators_total")
        .expect("operator sample");
    for label in ["source", "kind", "event"] {
        assert!(
            op.labels.get(label).is_some(),
            "operators by {label}: {:?}",
            op.labels
        );
    }

    // Counters the load must move: on the nodes together, on every node
    // (each holds a replica, so each applies), and on the coordinator
    // leader (TSO for the transaction, AllocId).
    for (m, label) in [
        ("nokv_grpc_requests_total", None),
        ("nokv_grpc_request_duration_seconds", None),
        ("nokv_raft_proposals_total", Some(("kind", "normal"))),
        ("nokv_raft_committed_entries_total", None),
        ("nokv_raft_ready_batch_size", None),
        ("nokv_raft_persist_duration_seconds", None),
        ("nokv_store_flow_bytes_total", Some(("type", "write"))),
        ("nokv_store_flow_keys_total", Some(("type", "write"))),
        ("nokv_store_flow_bytes_total", Some(("type", "read"))),
        ("nokv_store_flow_keys_total", Some(("type", "read"))),
    ] {
        let (a, b) = (
            sum_over(&first, "node", m, label),
            sum_over(&second, "node", m, label),
        );
        assert!(b > a, "{m} {label:?} on the nodes: {a} then {b}");
    }
    for (name, kind, s) in &second {
        if kind != "node" {
            continue;
        }
        let (_, _, before) = first
            .iter()
            .find(|(n, _, _)| n == name)
            .expect("same processes");
        for m in [
            "nokv_raft_applied_entries_total",
            "nokv_raft_ready_total",
            "nokv_raft_apply_duration_seconds",
            // Writes apply in the apply pool, on every replica.
            "nokv_raftstore_apply_batch_entries",
        ] {
            let (a, b) = (total(before, m, None), total(s, m, None));
            assert!(b > a, "{m} on {name}: {a} then {b}");
        }
    }
    for m in [
        "nokv_grpc_requests_total",
        "nokv_coordinator_tso_requests_total",
        "nokv_coordinator_tso_timestamps_total",
        "nokv_coordinator_id_requests_total",
        "nokv_coordinator_ids_allocated_total",
    ] {
        let (a, b) = (total(&l1, m, None), total(&l2, m, None));
        assert!(
            b > a,
            "{m} on the coordinator leader {leader}: {a} then {b}"
        );
    }
    assert_eq!(
        sum_over(
            &second,
            "coordinator",
            "nokv_coordinator_invariant_violations_total",
            None
        ),
        0.0,
        "a healthy cluster breaks no invariant"
    );

    // Acceptance 5: every metric a dashboard panel queries is served by a
    // node or by the coordinator leader.
    let mut served: HashSet<String> = names(&l2);
    for (_, kind, s) in &second {
        if kind == "node" {
            served.extend(names(s));
        }
    }
    let d = dashboard();
    for p in dashboard_panels(&d) {
        for t in p["targets"].as_array().cloned().unwrap_or_default() {
            let expr = t["expr"].as_str().unwrap_or_default();
            for m in queried_metrics(expr) {
                assert!(
                    served.contains(&m),
                    "panel {:?} queries {m}, which no process serves ({expr})",
                    p["title"]
                );
            }
        }
    }
    c.assert_no_panics();
}

/// A `nokv-node` started by hand, killed when dropped.
struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ready_only_once_the_node_registered_with_the_coordinator() {
    let c = LocalCluster::start(1, 1, "");
    c.kill9("coordinator-1");
    // A fresh store on its own ports: it must get a store id and register
    // before it is ready, and the coordinator is down.
    let base = free_port_base();
    let (grpc, status) = (
        format!("127.0.0.1:{base}"),
        format!("127.0.0.1:{}", base + 1),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nlisten: {grpc}\nstatus_listen: {status}\ncoordinators: [{}]\n",
            dir.path().join("data").display(),
            c.coordinators[0]
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let _node = NodeProcess(
        Command::new(bin_dir().join("nokv-node"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start nokv-node"),
    );
    wait_until("/health of the new node", Duration::from_secs(30), || {
        (http_get(&status, "/health").map(|r| r.0) == Some(200)).then_some(())
    });
    for _ in 0..3 {
        // The coordinator is down: the node cannot have registered.
        let ready = http_get(&status, "/ready").map(|r| r.0);
        assert!(
            ready.is_some_and(|code| code != 200),
            "/ready answered {ready:?} before registration"
        );
        let (_, body) = http_get(&status, "/status").expect("/status");
        assert_eq!(json(&body)["ready"], false, "{body}");
    }
    c.restart("coordinator-1");
    wait_until("/ready of the new node", Duration::from_secs(60), || {
        (http_get(&status, "/ready").map(|r| r.0) == Some(200)).then_some(())
    });
    let stores = json(&c.nokv_ok(&["stores", "-o", "json"]));
    assert!(
        stores
            .as_array()
            .expect("stores")
            .iter()
            .any(|s| s["address"] == grpc.as_str()),
        "the ready node is registered: {stores}"
    );
}

#[test]
fn region_and_store_heartbeats_carry_read_and_write_flow() {
    let c = LocalCluster::start(1, 3, "");
    for i in 0..20 {
        c.nokv_ok(&["raw", "put", &format!("flow-{i:02}"), "some value"]);
    }
    // Writing and reading on while polling keeps each heartbeat interval
    // busy (a quiet interval reports zero, as it should).
    let mut i = 0;
    let region = wait_until(
        "region flow in nokv regions",
        Duration::from_secs(60),
        || {
            i += 1;
            c.nokv_ok(&["raw", "put", &format!("flow-more-{i}"), "some value"]);
            c.nokv_ok(&["raw", "get", "flow-01"]);
            let r = json(&c.nokv_ok(&["region", "--key", "flow-01", "-o", "json"]));
            let moving = |f: &str| r[f].as_u64().is_some_and(|v| v > 0);
            (moving("write_bytes_per_sec")
                && moving("write_keys_per_sec")
                && moving("read_bytes_per_sec")
                && moving("read_keys_per_sec"))
            .then_some(r)
        },
    );
    let leader = region["leader_store_id"].as_u64().expect("leader store");
    let regions = json(&c.nokv_ok(&["regions", "-o", "json"]));
    for r in regions.as_array().expect("regions") {
        for f in [
            "read_bytes_per_sec",
            "read_keys_per_sec",
            "write_bytes_per_sec",
            "write_keys_per_sec",
        ] {
            assert!(r[f].is_u64(), "nokv regions has {f}: {r}");
        }
    }
    wait_until("store flow in nokv stores", Duration::from_secs(60), || {
        i += 1;
        c.nokv_ok(&["raw", "put", &format!("flow-more-{i}"), "some value"]);
        let stores = json(&c.nokv_ok(&["stores", "-o", "json"]));
        let s = stores
            .as_array()?
            .iter()
            .find(|s| s["id"].as_u64() == Some(leader))?
            .clone();
        (s["write_bytes_per_sec"].as_u64()? > 0 && s["write_keys_per_sec"].as_u64()? > 0)
            .then_some(())
    });
    // Followers do not count the leader's traffic.
    let stores = json(&c.nokv_ok(&["stores", "-o", "json"]));
    for s in stores.as_array().expect("stores") {
        if s["id"].as_u64() != Some(leader) && s["leader_count"].as_u64() == Some(0) {
            assert_eq!(
                s["read_bytes_per_sec"], 0,
                "a store leading nothing reads nothing: {s}"
            );
        }
    }
    c.assert_no_panics();
}
