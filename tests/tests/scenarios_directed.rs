//! TinyKV's hand-written raftstore scenarios (OnePartition, OneSnapshot,
//! TransferLeader, BasicConfChange, ConfChangeRemoveLeader, OneSplit) on the
//! in-process harness. Each prints its seed; `NOKV_SEED` replays it.

use std::time::Duration;

use nokv_proto::metapb::PeerRole;
use nokv_tests::harness::{seed_from_env, Harness, HarnessConfig};

fn start(log_gc_limit: Option<u64>) -> Harness {
    Harness::start(
        HarnessConfig {
            nodes: 5,
            log_gc_limit,
            ..Default::default()
        },
        seed_from_env(),
    )
}

fn region_1(h: &Harness) -> (nokv_proto::metapb::Region, u64) {
    h.regions()
        .into_iter()
        .find(|(r, _)| r.id == 1)
        .expect("region 1")
}

#[test]
fn one_partition() {
    let h = start(None);
    h.put("k", "before");
    let (region, leader) = region_1(&h);
    let follower = region
        .peers
        .iter()
        .map(|p| p.store_id)
        .find(|s| *s != leader)
        .unwrap();
    let minority = vec![leader, follower];
    let majority: Vec<u64> = h
        .store_ids()
        .into_iter()
        .filter(|s| !minority.contains(s))
        .collect();
    h.chaos.partition(&minority, &majority);

    // The old leader cannot commit: a write sent to it must not succeed.
    let slow = h.raw_client(Duration::from_secs(2));
    let minority_write = h.rt.block_on(slow.put(b"k", b"minority"));
    // The majority side elects a leader and accepts writes.
    let c = h.raw_client(Duration::from_secs(30));
    h.wait_until(
        "the majority to accept a write",
        Duration::from_secs(30),
        |h| h.rt.block_on(c.put(b"k", b"majority")).ok(),
    );
    let new_leader = h.leader_of(1);
    h.chaos.clear();
    // Whatever the minority write's fate, the majority's write came last.
    assert_eq!(
        h.get("k").as_deref(),
        Some("majority"),
        "minority write result: {minority_write:?}"
    );
    assert!(
        majority.contains(&new_leader) || new_leader == leader,
        "leader {new_leader}"
    );
    assert_eq!(h.get("k").as_deref(), Some("majority"));
}

#[test]
fn one_snapshot() {
    let h = start(Some(20));
    h.put("k0", "v0");
    let (region, leader) = region_1(&h);
    let cut = region
        .peers
        .iter()
        .map(|p| p.store_id)
        .find(|s| *s != leader)
        .unwrap();
    let others: Vec<u64> = h.store_ids().into_iter().filter(|s| *s != cut).collect();
    h.chaos.partition(&[cut], &others);
    for i in 1..200 {
        h.put(&format!("k{i}"), &format!("v{i}"));
    }
    // The leader compacted past what the cut-off follower has.
    let (leader_truncated, cut_applied) = h.wait_until(
        "log compaction on the leader",
        Duration::from_secs(30),
        |h| {
            let logs = h.replica_logs(1);
            let l = logs.iter().find(|(s, _, _)| *s == leader)?.2;
            let c = logs.iter().find(|(s, _, _)| *s == cut)?.1;
            (l > c).then_some((l, c))
        },
    );
    println!("leader truncated {leader_truncated} > cut-off follower applied {cut_applied}");
    h.chaos.clear();
    h.wait_until(
        "the follower to catch up by snapshot",
        Duration::from_secs(30),
        |h| {
            let logs = h.replica_logs(1);
            let l = logs.iter().find(|(s, _, _)| *s == leader)?.1;
            let c = logs.iter().find(|(s, _, _)| *s == cut)?;
            (c.1 >= l && c.2 >= leader_truncated).then_some(())
        },
    );
    assert_eq!(h.get("k150").as_deref(), Some("v150"));
}

#[test]
fn transfer_leader() {
    let h = start(None);
    let (region, _) = region_1(&h);
    for (i, p) in region.peers.iter().enumerate() {
        h.wait_until(
            "the transfer to take effect",
            Duration::from_secs(30),
            |h| {
                h.rt.block_on(h.transfer_leader(1, p.store_id));
                (h.leader_of(1) == p.store_id).then_some(())
            },
        );
        h.put(&format!("t{i}"), "v");
        assert_eq!(h.get(&format!("t{i}")).as_deref(), Some("v"));
    }
}

#[test]
fn basic_conf_change() {
    let h = start(None);
    h.put("a", "1");
    let (region, leader) = region_1(&h);
    let spare = h
        .store_ids()
        .into_iter()
        .find(|s| !region.peers.iter().any(|p| p.store_id == *s))
        .unwrap();
    // The coordinator's replica checker would undo a fourth replica (it
    // removes extras): membership is the test's alone here.
    h.pause_scheduler("replica-checker", true);
    // Add a learner on a new store, then promote it once it caught up.
    assert!(h.rt.block_on(h.change_peer(1, spare, true)));
    h.wait_until("the new voter", Duration::from_secs(30), |h| {
        let (r, _) = region_1(h);
        let voter = r
            .peers
            .iter()
            .any(|p| p.store_id == spare && p.role() == PeerRole::Voter);
        if !voter {
            h.rt.block_on(h.promote(1, spare));
        }
        voter.then_some(())
    });
    // Remove a follower: the region shrinks and keeps serving.
    let victim = region
        .peers
        .iter()
        .map(|p| p.store_id)
        .find(|s| *s != leader)
        .unwrap();
    h.wait_until("the removal", Duration::from_secs(30), |h| {
        h.rt.block_on(h.change_peer(1, victim, false));
        let (r, _) = region_1(h);
        (!r.peers.iter().any(|p| p.store_id == victim)).then_some(())
    });
    h.put("b", "2");
    // The new replica has the data (its applied index follows the leader's)
    // and the removed store dropped the region.
    h.wait_until(
        "the new replica to catch up and the old one to go",
        Duration::from_secs(30),
        |h| {
            let logs = h.replica_logs(1);
            let lead = logs.iter().find(|(s, _, _)| *s == h.leader_of(1))?.1;
            let new = logs.iter().find(|(s, _, _)| *s == spare)?.1;
            (new >= lead && !logs.iter().any(|(s, _, _)| *s == victim)).then_some(())
        },
    );
    assert_eq!(h.get("a").as_deref(), Some("1"));
    assert_eq!(h.get("b").as_deref(), Some("2"));
}

#[test]
fn conf_change_remove_leader() {
    let h = start(None);
    for round in 0..2 {
        let (region, leader) = region_1(&h);
        h.put(&format!("r{round}"), "v");
        // Removing the leader's own replica is refused...
        assert!(
            !h.rt.block_on(h.change_peer(1, leader, false)),
            "removing the leader must be refused"
        );
        // ...so move leadership away first, then remove the old leader.
        let next = region
            .peers
            .iter()
            .map(|p| p.store_id)
            .find(|s| *s != leader)
            .unwrap();
        h.wait_until("the transfer", Duration::from_secs(30), |h| {
            h.rt.block_on(h.transfer_leader(1, next));
            (h.leader_of(1) == next).then_some(())
        });
        h.wait_until("the old leader's removal", Duration::from_secs(30), |h| {
            h.rt.block_on(h.change_peer(1, leader, false));
            let (r, _) = region_1(h);
            (!r.peers.iter().any(|p| p.store_id == leader)).then_some(())
        });
        assert_eq!(h.get(&format!("r{round}")).as_deref(), Some("v"));
        // The replica checker brings the region back to three voters.
        h.wait_until("three voters again", Duration::from_secs(30), |h| {
            let (r, l) = region_1(h);
            (l != 0
                && r.peers
                    .iter()
                    .filter(|p| p.role() == PeerRole::Voter)
                    .count()
                    >= 3)
                .then_some(())
        });
    }
}

#[test]
fn one_split() {
    let h = start(None);
    for i in 0..100 {
        h.put(&format!("k{i:03}"), &format!("v{i}"));
    }
    assert!(h.rt.block_on(h.split_at(b"k050")));
    h.wait_until("two regions with leaders", Duration::from_secs(30), |h| {
        let rs = h.regions();
        (rs.len() == 2 && rs.iter().all(|(_, l)| *l != 0)).then_some(())
    });
    // Cut the left region's leader off while writing to both halves.
    let (_, leader) = region_1(&h);
    let others: Vec<u64> = h.store_ids().into_iter().filter(|s| *s != leader).collect();
    h.chaos.partition(&[leader], &others);
    for i in (0..100).step_by(7) {
        h.put(&format!("k{i:03}"), &format!("w{i}"));
    }
    h.chaos.clear();
    for i in 0..100 {
        let want = if i % 7 == 0 {
            format!("w{i}")
        } else {
            format!("v{i}")
        };
        assert_eq!(h.get(&format!("k{i:03}")), Some(want), "key k{i:03}");
    }
    let rs = h.regions();
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].0.end_key, b"k050".to_vec());
}

fn proposals(kind: &str) -> u64 {
    nokv_consensus::metrics::RAFT_PROPOSALS
        .with_label_values(&[kind])
        .get()
}

/// Lease reads: once a ReadIndex round confirmed leadership, the leader
/// answers reads from its lease without another round; and a leader cut
/// off from its followers never answers a read with a value the new
/// majority has overwritten (its lease ends before anyone else can be
/// elected, and a ReadIndex round cannot complete without a quorum).
#[test]
fn lease_reads_skip_read_index_rounds_and_never_outlive_leadership() {
    let h = Harness::start(
        HarnessConfig {
            nodes: 3,
            ..Default::default()
        },
        seed_from_env(),
    );
    h.put("k", "old");
    let (before_lease, before_index) = (proposals("lease_read"), proposals("read_index"));
    for _ in 0..50 {
        assert_eq!(h.get("k").as_deref(), Some("old"));
    }
    let lease = proposals("lease_read") - before_lease;
    let rounds = proposals("read_index") - before_index;
    println!("50 reads: {lease} from the lease, {rounds} ReadIndex rounds");
    assert!(
        lease > rounds && lease + rounds >= 50,
        "{lease} lease reads, {rounds} ReadIndex rounds"
    );

    let (region, old_leader) = region_1(&h);
    let others: Vec<u64> = h
        .store_ids()
        .into_iter()
        .filter(|s| *s != old_leader)
        .collect();
    h.chaos.partition(&[old_leader], &others);
    let c = h.raw_client(Duration::from_secs(30));
    h.wait_until(
        "the majority to elect a leader and take a write",
        Duration::from_secs(30),
        |h| h.rt.block_on(c.put(b"k", b"new")).ok(),
    );
    // Ask the old leader directly, as a client with a stale cache would.
    let peer = region
        .peers
        .iter()
        .find(|p| p.store_id == old_leader)
        .copied();
    let address = h.admin_addresses()[&old_leader].clone();
    let answer = h.rt.block_on(async {
        let mut kv = nokv_proto::kvrpcpb::kv_client::KvClient::connect(format!("http://{address}"))
            .await
            .expect("connect to the old leader");
        kv.raw_get(nokv_proto::kvrpcpb::RawGetRequest {
            context: Some(nokv_proto::kvrpcpb::Context {
                region_id: region.id,
                region_epoch: region.epoch,
                peer,
                max_execution_duration_ms: 3000,
                ..Default::default()
            }),
            key: b"k".to_vec(),
        })
        .await
    });
    match answer {
        Ok(resp) => {
            let resp = resp.into_inner();
            assert!(
                resp.region_error.is_some(),
                "the cut-off leader answered {:?}",
                String::from_utf8_lossy(&resp.value)
            );
        }
        Err(status) => println!("the cut-off leader refused: {status}"),
    }
    h.chaos.clear();
    assert_eq!(h.get("k").as_deref(), Some("new"));
}
