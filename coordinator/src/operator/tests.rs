//! Unit tests of [`super::Operators`]: steps judged from heartbeats,
//! timeouts, cancellation, failure, merges and the history ring.

use super::*;

fn peer(id: u64, store: u64, role: PeerRole) -> Peer {
    Peer {
        id,
        store_id: store,
        role: role as i32,
    }
}

fn region(peers: Vec<Peer>, version: u64) -> Region {
    Region {
        id: 7,
        epoch: Some(RegionEpoch {
            conf_ver: 1,
            version,
        }),
        peers,
        ..Default::default()
    }
}

fn op(id: u64, steps: Vec<OperatorStep>) -> Operator {
    Operator {
        id,
        region_id: 7,
        kind: "test".into(),
        source: "test".into(),
        steps,
        ..Default::default()
    }
}

fn state_of(ops: &Operators, id: u64) -> OperatorState {
    ops.list(0, true)
        .into_iter()
        .rfind(|o| o.id == id)
        .expect("operator listed")
        .state()
}

#[test]
fn move_replica_runs_step_by_step_and_moves_leadership_off_the_removed_peer() {
    let ops = Operators::new(Duration::from_secs(60));
    let v1 = peer(1, 1, PeerRole::Voter);
    let v2 = peer(2, 2, PeerRole::Voter);
    let new = peer(9, 3, PeerRole::Learner);
    ops.add(
        op(
            100,
            vec![add_learner(new, 0), promote(new, 0), remove(v1, 0)],
        ),
        RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
        vec![],
    )
    .expect("add");
    assert!(matches!(
        ops.add(
            op(101, vec![promote(new, 0)]),
            RegionEpoch::default(),
            vec![]
        ),
        Err(AddError::RegionBusy {
            operator_id: 100,
            ..
        })
    ));
    let now = Instant::now();
    let r = region(vec![v1, v2], 1);
    let (id, order) = ops
        .on_heartbeat(&r, Some(&v1), &[], &[], now)
        .expect("first step");
    assert_eq!(id, 100);
    assert!(matches!(order, Order::ChangePeer(ref c) if c.kind() == change_peer::Kind::AddLearner));
    // Not sent again right away.
    assert!(ops.on_heartbeat(&r, Some(&v1), &[], &[], now).is_none());
    // The learner is there but still catching up: wait.
    let r = region(vec![v1, v2, new], 1);
    assert!(ops.on_heartbeat(&r, Some(&v1), &[new], &[], now).is_none());
    let (_, order) = ops
        .on_heartbeat(&r, Some(&v1), &[], &[], now)
        .expect("promote");
    assert!(matches!(order, Order::ChangePeer(ref c) if c.kind() == change_peer::Kind::AddVoter));
    // Promoted; removing v1, which leads: leadership moves first.
    let voter = Peer {
        role: PeerRole::Voter as i32,
        ..new
    };
    let r = region(vec![v1, v2, voter], 1);
    let (_, order) = ops
        .on_heartbeat(&r, Some(&v1), &[], &[], now)
        .expect("transfer first");
    assert_eq!(order, Order::TransferLeader(v2));
    let (_, order) = ops
        .on_heartbeat(&r, Some(&v2), &[], &[], now + RESEND_AFTER)
        .expect("then remove");
    assert!(matches!(order, Order::ChangePeer(ref c) if c.kind() == change_peer::Kind::Remove));
    let r = region(vec![v2, voter], 1);
    assert!(ops.on_heartbeat(&r, Some(&v2), &[], &[], now).is_none());
    assert_eq!(state_of(&ops, 100), OperatorState::Succeeded);
    assert!(!ops.is_busy(7));
}

#[test]
fn timeout_cancel_and_failure_are_final_and_kept_in_history() {
    let ops = Operators::new(Duration::from_secs(60));
    let v1 = peer(1, 1, PeerRole::Voter);
    ops.add(
        op(1, vec![transfer_leader(peer(0, 5, PeerRole::Voter), 10)]),
        RegionEpoch::default(),
        vec![],
    )
    .expect("add");
    assert!(ops.expire(Instant::now()).is_empty());
    let late = ops.expire(Instant::now() + Duration::from_millis(50));
    assert_eq!(late.len(), 1);
    assert_eq!(state_of(&ops, 1), OperatorState::TimedOut);
    assert!(
        late[0].message.contains("did not finish"),
        "{}",
        late[0].message
    );

    ops.add(
        op(2, vec![transfer_leader(peer(0, 5, PeerRole::Voter), 0)]),
        RegionEpoch::default(),
        vec![],
    )
    .expect("add");
    assert_eq!(ops.list(0, false).len(), 1);
    assert!(ops.cancel(2, "by hand").is_some());
    assert!(ops.cancel(2, "again").is_none());
    assert_eq!(state_of(&ops, 2), OperatorState::Cancelled);
    assert!(ops.list(0, false).is_empty());
    assert_eq!(ops.list(0, true).len(), 2);

    let gone = peer(4, 4, PeerRole::Learner);
    ops.add(
        op(3, vec![promote(gone, 0)]),
        RegionEpoch::default(),
        vec![],
    )
    .expect("add");
    assert!(ops
        .on_heartbeat(&region(vec![v1], 1), Some(&v1), &[], &[], Instant::now())
        .is_none());
    assert_eq!(state_of(&ops, 3), OperatorState::Failed);
}

#[test]
fn an_operator_aiming_at_a_store_gone_bad_is_cancelled() {
    let ops = Operators::new(Duration::from_secs(60));
    let target = peer(3, 4, PeerRole::Voter);
    ops.add(
        op(9, vec![transfer_leader(target, 0)]),
        RegionEpoch::default(),
        vec![],
    )
    .expect("add");
    assert!(!ops.cancel_if_targeting(7, &[5]));
    assert!(ops.cancel_if_targeting(7, &[4]));
    assert_eq!(state_of(&ops, 9), OperatorState::Cancelled);
    // Removing a replica from a bad store is what repair does: kept.
    ops.add(
        op(10, vec![remove(target, 0)]),
        RegionEpoch::default(),
        vec![],
    )
    .expect("add");
    assert!(!ops.cancel_if_targeting(7, &[4]));
}

#[test]
fn split_is_sent_once_and_done_when_the_version_moves() {
    let ops = Operators::new(Duration::from_secs(60));
    let v1 = peer(1, 1, PeerRole::Voter);
    let split = OperatorStep {
        step: Some(Step::SplitRegion(nokv_proto::coordinatorpb::SplitRegion {
            split_key: b"m".to_vec(),
            half: false,
        })),
        timeout_ms: 0,
    };
    ops.add(
        op(5, vec![split]),
        RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
        vec![],
    )
    .expect("add");
    let now = Instant::now();
    assert!(ops
        .on_heartbeat(&region(vec![v1], 1), Some(&v1), &[], &[], now)
        .is_some());
    assert!(ops
        .on_heartbeat(
            &region(vec![v1], 1),
            Some(&v1),
            &[],
            &[],
            now + RESEND_AFTER * 2
        )
        .is_none());
    assert!(ops
        .on_heartbeat(&region(vec![v1], 2), Some(&v1), &[], &[], now)
        .is_none());
    assert_eq!(state_of(&ops, 5), OperatorState::Succeeded);
}

#[test]
fn merge_is_ordered_keeps_its_target_busy_and_succeeds_when_the_source_vanishes() {
    let ops = Operators::new(Duration::from_secs(60));
    let v1 = peer(1, 1, PeerRole::Voter);
    let target = Region {
        id: 8,
        ..Default::default()
    };
    ops.add(
        op(20, vec![merge(target.clone(), 0)]),
        RegionEpoch::default(),
        vec![],
    )
    .expect("add");
    assert!(ops.is_busy(7) && ops.is_busy(8) && !ops.is_busy(9));
    let on_target = Operator {
        region_id: 8,
        ..op(21, vec![transfer_leader(v1, 0)])
    };
    assert!(matches!(
        ops.add(on_target, RegionEpoch::default(), vec![]),
        Err(AddError::RegionBusy {
            region_id: 8,
            operator_id: 20
        })
    ));
    let (_, order) = ops
        .on_heartbeat(&region(vec![v1], 1), Some(&v1), &[], &[], Instant::now())
        .expect("merge order");
    assert!(matches!(order, Order::Merge(ref m) if m.target.as_ref().map(|t| t.id) == Some(8)));
    // The frozen source still reports: the merge is not done.
    assert!(ops.vanished(|_| true).is_empty());
    assert_eq!(state_of(&ops, 20), OperatorState::Running);
    let ended = ops.vanished(|id| id != 7);
    assert_eq!(ended.len(), 1);
    assert_eq!(state_of(&ops, 20), OperatorState::Succeeded);
    assert!(!ops.is_busy(8));
    // Any other step on a region that vanished has failed.
    ops.add(
        op(22, vec![transfer_leader(v1, 0)]),
        RegionEpoch::default(),
        vec![],
    )
    .expect("add");
    ops.vanished(|id| id != 7);
    assert_eq!(state_of(&ops, 22), OperatorState::Failed);
}

#[test]
fn an_add_learner_overtaken_by_another_membership_change_fails() {
    let ops = Operators::new(Duration::from_secs(60));
    let v1 = peer(1, 1, PeerRole::Voter);
    let new = peer(9, 3, PeerRole::Learner);
    let epoch = |conf_ver| RegionEpoch {
        conf_ver,
        version: 1,
    };
    ops.add(
        op(30, vec![add_learner(new, 0), promote(new, 0)]),
        epoch(1),
        vec![],
    )
    .expect("add");
    let now = Instant::now();
    let mut r = region(vec![v1], 1);
    assert!(ops.on_heartbeat(&r, Some(&v1), &[], &[], now).is_some());
    // Still not there, same membership: keep waiting.
    assert!(ops.on_heartbeat(&r, Some(&v1), &[], &[], now).is_none());
    assert_eq!(state_of(&ops, 30), OperatorState::Running);
    // Added and removed again between two heartbeats.
    r.epoch = Some(epoch(3));
    assert!(ops
        .on_heartbeat(&r, Some(&v1), &[], &[], now + RESEND_AFTER)
        .is_none());
    assert_eq!(state_of(&ops, 30), OperatorState::Failed);
}

#[test]
fn history_is_a_bounded_ring() {
    let ops = Operators::new(Duration::from_secs(60));
    for id in 0..(HISTORY_LEN as u64 + 10) {
        ops.add(
            op(id, vec![transfer_leader(peer(0, 5, PeerRole::Voter), 0)]),
            RegionEpoch::default(),
            vec![],
        )
        .expect("add");
        ops.cancel(id, "test");
    }
    let h = ops.list(0, true);
    assert_eq!(h.len(), HISTORY_LEN);
    assert_eq!(h.last().map(|o| o.id), Some(HISTORY_LEN as u64 + 9));
}
