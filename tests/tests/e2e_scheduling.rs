//! End-to-end: the coordinator as a control plane over real processes.
//! Replicas on a Down store are replaced, a deleted store is drained and
//! becomes Tombstone, new stores receive replicas and leaders until counts
//! are even, and operators added by hand are visible, cancellable and time
//! out, all through the CLI. Each test ends with the coordinator's
//! invariant-violation counter at zero.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nokv_client::RawClient;
use nokv_tests::{http_get, json, metric, runtime, wait_until, LocalCluster};
use serde_json::Value;

fn regions(c: &LocalCluster) -> Vec<Value> {
    json(&c.nokv_ok(&["regions", "-o", "json"]))
        .as_array()
        .cloned()
        .expect("regions")
}

fn stores(c: &LocalCluster) -> Vec<Value> {
    json(&c.nokv_ok(&["stores", "-o", "json"]))
        .as_array()
        .cloned()
        .expect("stores")
}

fn store_state(c: &LocalCluster, id: u64) -> String {
    stores(c)
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Store ids of a region's voters (None if it has a learner or a pending
/// peer, or no leader).
fn settled_voters(r: &Value) -> Option<Vec<u64>> {
    let peers = r["peers"].as_array()?;
    if peers.iter().any(|p| p["role"] != "voter")
        || r["leader_store_id"].as_u64().unwrap_or(0) == 0
        || !r["pending_peers"].as_array().is_none_or(|p| p.is_empty())
    {
        return None;
    }
    let mut s: Vec<u64> = peers
        .iter()
        .filter_map(|p| p["store_id"].as_u64())
        .collect();
    s.sort_unstable();
    Some(s)
}

/// Regions tile the key space: sorted, adjacent, from "" to "".
fn assert_tiles(rs: &[Value]) {
    assert_eq!(rs.first().expect("a region")["start_key_hex"], "");
    assert_eq!(rs.last().expect("a region")["end_key_hex"], "");
    for w in rs.windows(2) {
        assert_eq!(
            w[0]["end_key_hex"], w[1]["start_key_hex"],
            "hole or overlap between {} and {}",
            w[0]["id"], w[1]["id"]
        );
    }
}

/// Waits until every region has exactly three voters (and nothing else)
/// on distinct stores accepted by `ok`; returns the regions.
fn wait_three_voters(c: &LocalCluster, what: &str, ok: impl Fn(&[u64]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rs = regions(c);
        let done = rs.iter().all(|r| {
            settled_voters(r).is_some_and(|v| {
                let mut d = v.clone();
                d.dedup();
                v.len() == 3 && d.len() == 3 && ok(&v)
            })
        });
        if done {
            return rs;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}\nregions:\n{}\nstores:\n{}\noperators:\n{}",
                c.nokv_ok(&["regions"]),
                c.nokv_ok(&["stores"]),
                c.nokv_ok(&["operator", "list", "--history"])
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn invariant_violations(c: &LocalCluster) -> f64 {
    c.processes()
        .iter()
        .filter(|p| p.kind == "coordinator")
        .map(|p| {
            let (_, body) = http_get(&p.status, "/metrics").expect("coordinator metrics");
            metric(&body, "nokv_coordinator_invariant_violations_total", None)
        })
        .sum()
}

fn write_keys(c: &LocalCluster, n: u32) -> RawClient {
    let rt = runtime();
    let client = rt
        .block_on(async { RawClient::new(c.coordinators.clone(), Duration::from_secs(30)) })
        .expect("client");
    rt.block_on(async {
        for i in 0..n {
            client
                .put(format!("k{i:05}").as_bytes(), format!("v{i}").as_bytes())
                .await
                .expect("put");
        }
    });
    client
}

fn assert_keys(c: &LocalCluster, n: u32) {
    let rt = runtime();
    let client = rt
        .block_on(async { RawClient::new(c.coordinators.clone(), Duration::from_secs(30)) })
        .expect("client");
    rt.block_on(async {
        for i in 0..n {
            let v = client
                .get(format!("k{i:05}").as_bytes())
                .await
                .expect("get");
            assert_eq!(
                v.as_deref(),
                Some(format!("v{i}").as_bytes()),
                "key k{i:05} lost"
            );
        }
    });
}

/// The node process holding store `id`.
const FAST_SCHEDULING: &str = "coordinator_config:\n  schedule_interval_ms: 200\n";

#[test]
fn replicas_on_a_down_store_are_replaced_on_the_remaining_stores() {
    let c = LocalCluster::start(
        1,
        4,
        "coordinator_config:\n  schedule_interval_ms: 200\n  store_disconnect_ms: 4000\n  max_store_down_time_ms: 6000\n\
         node_config:\n  raft:\n    max_peer_down_secs: 1\n",
    );
    write_keys(&c, 300);
    for k in ["k00060", "k00120", "k00180", "k00240"] {
        c.split_at(k);
    }
    let rs = wait_three_voters(&c, "five regions with three voters", |_| true);
    assert_eq!(rs.len(), 5);
    // The store holding the most replicas goes for good.
    let mut load: HashMap<u64, usize> = HashMap::new();
    for r in &rs {
        for s in settled_voters(r).expect("settled") {
            *load.entry(s).or_default() += 1;
        }
    }
    let (&victim, _) = load
        .iter()
        .max_by_key(|(id, n)| (**n, **id))
        .expect("a store");
    c.kill9(&c.node_of_store(victim).name);
    let killed = Instant::now();
    // Leaders report the dead store's replicas as down peers (after
    // max_peer_down_secs), before the store counts as Down.
    wait_until(
        "a down peer on the killed store",
        Duration::from_secs(30),
        || {
            regions(&c)
                .iter()
                .any(|r| {
                    let down = r["down_peers"].as_array().cloned().unwrap_or_default();
                    r["peers"].as_array().is_some_and(|peers| {
                        peers
                            .iter()
                            .any(|p| p["store_id"] == victim && down.contains(&p["id"]))
                    })
                })
                .then_some(())
        },
    );
    wait_until("the store to be Down", Duration::from_secs(60), || {
        (store_state(&c, victim) == "Down").then_some(())
    });
    let rs = wait_three_voters(
        &c,
        "every region to have three voters on the remaining stores",
        |v| !v.contains(&victim),
    );
    println!(
        "replicas of store {victim} replaced in {:.1}s after kill -9 (down threshold 6s)",
        killed.elapsed().as_secs_f64()
    );
    assert_tiles(&rs);
    assert_keys(&c, 300);
    assert_eq!(invariant_violations(&c), 0.0);
    c.assert_no_panics();
}

#[test]
fn store_delete_moves_every_replica_then_tombstone() {
    let c = LocalCluster::start(1, 4, FAST_SCHEDULING);
    write_keys(&c, 300);
    for k in ["k00100", "k00200"] {
        c.split_at(k);
    }
    let rs = wait_three_voters(&c, "three regions with three voters", |_| true);
    // Delete a store that holds a replica, preferably a leader too.
    let victim = rs[0]["leader_store_id"].as_u64().expect("leader");
    let out = json(&c.nokv_ok(&["store", "delete", &victim.to_string(), "-o", "json"]));
    assert_eq!(out["store_id"], victim);
    assert!(
        matches!(out["state"].as_str(), Some("Offline" | "Tombstone")),
        "{out}"
    );
    let rs = wait_three_voters(&c, "every replica to leave the deleted store", |v| {
        !v.contains(&victim)
    });
    wait_until(
        "the store to become Tombstone",
        Duration::from_secs(60),
        || (store_state(&c, victim) == "Tombstone").then_some(()),
    );
    assert_tiles(&rs);
    assert_keys(&c, 300);
    // Only three stores are left for three replicas: refused, clearly.
    let other = stores(&c)
        .iter()
        .filter_map(|s| s["id"].as_u64())
        .find(|id| *id != victim)
        .expect("another store");
    let refused = c.nokv(&["store", "delete", &other.to_string()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("would leave"), "{err}");
    // A tombstone cannot be deleted again.
    let again = c.nokv(&["store", "delete", &victim.to_string()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("tombstone"));
    assert_eq!(invariant_violations(&c), 0.0);
    c.assert_no_panics();
}

/// A `nokv-node` started by hand against the cluster, killed on drop.
struct ExtraNode {
    child: Child,
    _dir: tempfile::TempDir,
}

impl ExtraNode {
    /// Starts a node with node-1's configuration on fresh ports and data.
    fn start(c: &LocalCluster) -> ExtraNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .to_string()
        };
        let child = Command::new(nokv_tests::bin_dir().join("nokv-node"))
            .arg("--config")
            .arg(c.data_dir().join("node-1").join("config.yaml"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &port(), "--status-listen", &port()])
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.path().join("log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .expect("start nokv-node");
        ExtraNode { child, _dir: dir }
    }
}

impl Drop for ExtraNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn within(counts: &HashMap<u64, usize>, stores: &[u64], total: usize) -> bool {
    let mean = total as f64 / stores.len() as f64;
    stores.iter().all(|s| {
        let n = counts.get(s).copied().unwrap_or(0) as f64;
        (n - mean).abs() <= 0.2 * mean
    })
}

#[test]
fn new_stores_get_replicas_and_leaders_until_counts_are_even() {
    let c = LocalCluster::start(
        1,
        3,
        "coordinator_config:\n  schedule_interval_ms: 200\n  region_schedule_limit: 8\n  leader_schedule_limit: 8\n",
    );
    write_keys(&c, 640);
    // 64 regions of ten keys each.
    for i in 1..64u32 {
        c.split_at(&format!("k{:05}", i * 10));
    }
    let rs = wait_three_voters(&c, "64 regions with three voters", |_| true);
    assert!(rs.len() >= 64, "{} regions", rs.len());
    let before: Vec<u64> = stores(&c).iter().filter_map(|s| s["id"].as_u64()).collect();
    let started = Instant::now();
    let _extra = [ExtraNode::start(&c), ExtraNode::start(&c)];
    let all = wait_until(
        "two new stores to register",
        Duration::from_secs(60),
        || {
            let ids: Vec<u64> = stores(&c)
                .iter()
                .filter(|s| s["state"] == "Up")
                .filter_map(|s| s["id"].as_u64())
                .collect();
            (ids.len() == 5).then_some(ids)
        },
    );
    assert!(before.iter().all(|b| all.contains(b)));
    let rs = wait_until(
        "replica and leader counts within 20% of the mean",
        Duration::from_secs(300),
        || {
            let rs = regions(&c);
            let mut replicas: HashMap<u64, usize> = HashMap::new();
            let mut leaders: HashMap<u64, usize> = HashMap::new();
            for r in &rs {
                for s in settled_voters(r)? {
                    *replicas.entry(s).or_default() += 1;
                }
                *leaders
                    .entry(r["leader_store_id"].as_u64().unwrap_or(0))
                    .or_default() += 1;
            }
            (within(&replicas, &all, rs.len() * 3) && within(&leaders, &all, rs.len()))
                .then_some(rs)
        },
    );
    println!(
        "balanced {} regions over 5 stores in {:.1}s",
        rs.len(),
        started.elapsed().as_secs_f64()
    );
    assert_tiles(&rs);
    assert_keys(&c, 640);
    assert_eq!(invariant_violations(&c), 0.0);
    c.assert_no_panics();
}

fn operator(c: &LocalCluster, args: &[&str]) -> Value {
    let mut a = vec!["operator"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    json(&c.nokv_ok(&a))
}

fn wait_operator_state(c: &LocalCluster, id: &str, state: &str) -> Value {
    wait_until(
        &format!("operator {id} to be {state}"),
        Duration::from_secs(60),
        || {
            let op = operator(c, &["show", id]);
            (op["state"] == state).then_some(op)
        },
    )
}

#[test]
fn operators_added_by_hand_are_listed_cancelled_and_time_out() {
    let c = LocalCluster::start(1, 3, FAST_SCHEDULING);
    write_keys(&c, 50);
    let r = wait_three_voters(&c, "one region with three voters", |_| true).remove(0);
    let region = r["id"].to_string();
    let leader = r["leader_store_id"].as_u64().expect("leader");
    let followers: Vec<u64> = settled_voters(&r)
        .expect("settled")
        .into_iter()
        .filter(|s| *s != leader)
        .collect();

    // A transfer that can finish succeeds.
    let to = followers[0].to_string();
    let op = operator(
        &c,
        &["add", "--region", &region, &format!("transfer-leader:{to}")],
    );
    assert_eq!(op["kind"], "transfer-leader");
    assert_eq!(op["source"], "manual");
    let id = op["id"].to_string();
    wait_operator_state(&c, &id, "Succeeded");
    assert_eq!(regions(&c)[0]["leader_store_id"].to_string(), to);

    // A step that cannot finish: leadership to a killed store's replica.
    let dead = followers[1];
    c.kill9(&c.node_of_store(dead).name);
    let op = operator(
        &c,
        &[
            "add",
            "--region",
            &region,
            "--step-timeout",
            "3",
            &format!("transfer-leader:{dead}"),
        ],
    );
    let id = op["id"].to_string();
    let op = wait_operator_state(&c, &id, "TimedOut");
    assert_eq!(op["steps"][0]["status"], "TimedOut");
    assert!(
        op["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not finish")),
        "{op}"
    );

    // One that would run for long is listed with its steps, then cancelled.
    let op = operator(
        &c,
        &[
            "add",
            "--region",
            &region,
            "--step-timeout",
            "600",
            &format!("transfer-leader:{dead}"),
        ],
    );
    let id = op["id"].to_string();
    let listed = operator(&c, &["list"]);
    let running = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|o| o["id"] == op["id"])
        .cloned()
        .expect("the operator is listed in flight");
    assert_eq!(running["state"], "Running");
    assert_eq!(
        running["steps"][0]["step"],
        format!("transfer leader to store {dead}")
    );
    assert_eq!(running["steps"][0]["status"], "running");
    // A second operator on the same region is refused while it runs.
    let busy = c.nokv(&["operator", "add", "--region", &region, "split-half"]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in flight"));
    let cancelled = operator(&c, &["cancel", &id]);
    assert_eq!(cancelled["state"], "Cancelled");
    assert!(operator(&c, &["list"])
        .as_array()
        .expect("list")
        .iter()
        .all(|o| o["id"] != op["id"]));
    let history = operator(&c, &["list", "--history"]);
    let states: Vec<&str> = history
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|o| o["state"].as_str())
        .collect();
    for s in ["Succeeded", "TimedOut", "Cancelled"] {
        assert!(states.contains(&s), "{s} missing from history: {history}");
    }

    // A split operator splits the region.
    let op = operator(&c, &["add", "--region", &region, "split:k00025"]);
    wait_operator_state(&c, &op["id"].to_string(), "Succeeded");
    let rs = regions(&c);
    assert_eq!(rs.len(), 2);
    assert_tiles(&rs);

    // Schedulers pause and resume; members and tso answer.
    let list = json(&c.nokv_ok(&["scheduler", "pause", "balance-region", "-o", "json"]));
    let row = list
        .as_array()
        .expect("schedulers")
        .iter()
        .find(|s| s["name"] == "balance-region")
        .cloned()
        .expect("balance-region listed");
    assert_eq!(row["paused"], true);
    let list = json(&c.nokv_ok(&["scheduler", "resume", "balance-region", "-o", "json"]));
    assert!(list
        .as_array()
        .expect("schedulers")
        .iter()
        .all(|s| s["paused"] == false));
    assert!(!c.nokv(&["scheduler", "pause", "no-such"]).status.success());
    let members = json(&c.nokv_ok(&["members", "-o", "json"]));
    assert_eq!(members.as_array().map(|m| m.len()), Some(1));
    assert_eq!(members[0]["leader"], true);
    let t1 = json(&c.nokv_ok(&["tso", "-o", "json"]))["timestamp"]
        .as_u64()
        .expect("ts");
    let t2 = json(&c.nokv_ok(&["tso", "-o", "json"]))["timestamp"]
        .as_u64()
        .expect("ts");
    assert!(t2 > t1);

    assert_keys(&c, 50);
    assert_eq!(invariant_violations(&c), 0.0);
    c.assert_no_panics();
}

/// Issue 5, acceptance 5: writes past the split threshold split regions
/// automatically; deleting most keys leaves small neighbours that the merge
/// checker folds together (moving replicas onto common stores first, since
/// balance-region spreads them over four stores) until one region remains;
/// the ranges tile throughout and the surviving data reads back.
#[test]
fn writes_split_regions_and_the_merge_checker_merges_them_back_once_emptied() {
    let c = LocalCluster::start(
        1,
        4,
        "coordinator_config:\n  schedule_interval_ms: 200\n  region_schedule_limit: 8\n  \
         max_merge_region_keys: 20\n  max_merge_region_size_bytes: 1048576\n  \
         split_merge_interval_ms: 2000\n\
         node_config:\n  raft:\n    split_check_ticks: 5\n    region_split_keys: 60\n    \
         region_heartbeat_ticks: 5\n",
    );
    // Splits are not undone while the data is still there.
    c.nokv_ok(&["scheduler", "pause", "merge-checker"]);
    let client = write_keys(&c, 400);
    let split = wait_until("automatic splits", Duration::from_secs(90), || {
        let rs = regions(&c);
        (rs.len() >= 5).then_some(rs)
    });
    assert_tiles(&split);
    println!("{} regions after writing 400 keys", split.len());
    c.nokv_ok(&["scheduler", "resume", "merge-checker"]);

    // Keep every 50th key; delete the rest.
    let kept: Vec<u32> = (0..400).step_by(50).collect();
    let rt = runtime();
    rt.block_on(async {
        for i in (0..400u32).filter(|i| !kept.contains(i)) {
            client
                .delete(format!("k{i:05}").as_bytes())
                .await
                .expect("delete");
        }
    });
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(150);
    let merged = loop {
        let rs = regions(&c);
        assert_tiles(&rs);
        if rs.len() == 1 {
            break rs;
        }
        assert!(
            Instant::now() < deadline,
            "the merge checker left {} regions\n{}\n{}\n{}",
            rs.len(),
            c.nokv_ok(&["regions", "-o", "json"]),
            c.nokv_ok(&["operator", "list", "--history"]),
            c.nokv_ok(&["scheduler", "list"])
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    println!(
        "{} regions merged into one in {:?}",
        split.len(),
        started.elapsed()
    );
    assert_tiles(&merged);

    let history = json(&c.nokv_ok(&["operator", "list", "--history", "-o", "json"]));
    let ops = history.as_array().expect("operators");
    let merges = ops
        .iter()
        .filter(|o| o["kind"] == "merge-region" && o["state"] == "Succeeded")
        .count();
    assert!(
        merges >= split.len() - 1,
        "{merges} merge operators succeeded for {} regions\n{history:#}",
        split.len()
    );
    assert!(
        ops.iter()
            .filter(|o| o["source"] == "merge-checker")
            .all(|o| matches!(o["state"].as_str(), Some("Succeeded" | "Running"))),
        "a merge-checker operator failed\n{history:#}"
    );
    println!(
        "merges that moved replicas onto the target's stores first: {}",
        ops.iter()
            .filter(|o| o["kind"] == "merge-region")
            .filter(|o| o["steps"].as_array().is_some_and(|s| s.len() > 1))
            .count()
    );

    rt.block_on(async {
        for i in 0..400u32 {
            let v = client
                .get(format!("k{i:05}").as_bytes())
                .await
                .expect("get");
            if kept.contains(&i) {
                assert_eq!(
                    v.as_deref(),
                    Some(format!("v{i}").as_bytes()),
                    "k{i:05} lost"
                );
            } else {
                assert_eq!(v, None, "deleted k{i:05} came back");
            }
        }
    });
    assert_eq!(invariant_violations(&c), 0.0);
}
