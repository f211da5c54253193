//! Unit tests of the handlers over the in-memory raft stand-in: how each
//! area answers (a status for a malformed request, a header error for one
//! that does not fit the cluster), leadership, stores, regions, operators
//! and the GC safe point.

use nokv_proto::metapb::{Peer, Region, RegionEpoch, Store, StoreState};
use tonic::Code;

use super::*;
use crate::raft_loop::in_memory::InMemoryRaft;

struct Fixture {
    raft: InMemoryRaft,
    service: Arc<CoordinatorService>,
}

fn fixture() -> Fixture {
    let raft = InMemoryRaft::new();
    let members = (1..=3)
        .map(|id| MemberConfig {
            id,
            name: format!("c{id}"),
            address: format!("10.0.0.{id}:2379"),
            status_address: String::new(),
        })
        .collect();
    let service = Arc::new(CoordinatorService::new(
        raft.handle.clone(),
        CoordinatorConfig::default(),
        members,
    ));
    Fixture { raft, service }
}

/// The header error of an answer, if any.
fn error_of<T: Headed>(s: &CoordinatorService, answer: Answer<T>) -> Option<(ErrorType, String)> {
    let mut response = s.respond(answer).expect("a response, not a status");
    let header = response
        .header_mut()
        .clone()
        .expect("every response has a header");
    header.error.map(|e| (e.r#type(), e.message))
}

fn status_of<T: Headed>(s: &CoordinatorService, answer: Answer<T>) -> Code {
    match s.respond(answer) {
        Err(status) => status.code(),
        Ok(_) => panic!("a status was expected"),
    }
}

fn store(id: u64) -> Store {
    Store {
        id,
        address: format!("10.0.1.{id}:20160"),
        ..Default::default()
    }
}

fn region(version: u64, stores: &[u64]) -> Region {
    Region {
        id: 1,
        epoch: Some(RegionEpoch {
            conf_ver: 1,
            version,
        }),
        peers: stores
            .iter()
            .map(|s| Peer {
                id: 10 + s,
                store_id: *s,
                role: 0,
            })
            .collect(),
        ..Default::default()
    }
}

async fn put_store(s: &CoordinatorService, store: Store) -> Option<(ErrorType, String)> {
    let req = PutStoreRequest {
        header: None,
        store: Some(store),
    };
    error_of(s, s.put_store(req).await)
}

#[tokio::test]
async fn a_follower_points_at_the_leader_and_serves_reads() {
    let f = fixture();
    let s = &f.service;
    f.raft.follow(2);
    let answer = s.alloc_id(AllocIdRequest::default()).await;
    let Err(Refused::Header(e)) = &answer else {
        panic!("a header error was expected");
    };
    assert_eq!(e.r#type(), ErrorType::NotLeader);
    assert_eq!(
        e.leader.as_ref().map(|m| m.address.as_str()),
        Some("10.0.0.2:2379")
    );
    // A member that leads but has not caught up names no leader.
    f.raft.follow(1);
    let Err(Refused::Header(e)) = s.alloc_id(AllocIdRequest::default()).await else {
        panic!("a header error was expected");
    };
    assert_eq!((e.r#type(), e.leader), (ErrorType::NotLeader, None));
    // Reads of the applied state need no leader.
    assert_eq!(error_of(s, s.is_bootstrapped().await), None);
    let members = s.respond(s.get_members().await).expect("members");
    assert_eq!(members.members.len(), 3);
    assert_eq!(members.leader, None);
    assert_eq!(members.responder.map(|m| m.id), Some(1));
}

#[tokio::test]
async fn malformed_requests_are_answered_with_a_status() {
    let f = fixture();
    let s = &f.service;
    let too_many = AllocIdRequest {
        header: None,
        count: 10_001,
    };
    assert_eq!(
        status_of(s, s.alloc_id(too_many).await),
        Code::InvalidArgument
    );
    let backwards = ScanRegionsRequest {
        start_key: b"z".to_vec(),
        end_key: b"a".to_vec(),
        ..Default::default()
    };
    assert_eq!(
        status_of(s, s.scan_regions(backwards).await),
        Code::InvalidArgument
    );
    let unknown = PauseSchedulerRequest {
        name: "balance-everything".into(),
        ..Default::default()
    };
    assert_eq!(
        status_of(s, s.pause_scheduler(unknown).await),
        Code::InvalidArgument
    );
    assert_eq!(
        status_of(s, s.put_store(PutStoreRequest::default()).await),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn ids_and_timestamps_come_from_the_leader() {
    let f = fixture();
    let s = &f.service;
    let req = AllocIdRequest {
        header: None,
        count: 5,
    };
    let ids = s.respond(s.alloc_id(req).await).expect("ids");
    assert_eq!((ids.id, ids.count), (2, 5));
    let ts = s
        .respond(s.get_timestamp(TsoRequest::default()).await)
        .expect("ts");
    assert_eq!(ts.count, 1, "a count of 0 asks for one");
    let more = TsoRequest {
        header: None,
        count: 3,
    };
    let later = s.respond(s.get_timestamp(more).await).expect("ts");
    assert!(later.first > ts.first);
}

#[tokio::test]
async fn bootstrap_happens_once() {
    let f = fixture();
    let s = &f.service;
    let req = BootstrapRequest {
        header: None,
        store: Some(store(1)),
        region: Some(region(1, &[1])),
    };
    let first = s
        .respond(s.bootstrap(req.clone()).await)
        .expect("bootstrapped");
    let header = first.header.expect("header");
    assert_eq!(header.error, None);
    assert_ne!(
        header.cluster_id, 0,
        "the answer carries the new cluster id"
    );
    assert_eq!(
        error_of(s, s.bootstrap(req).await).map(|e| e.0),
        Some(ErrorType::AlreadyBootstrapped)
    );
    let answer = s.respond(s.is_bootstrapped().await).expect("answer");
    assert!(answer.bootstrapped);
}

#[tokio::test]
async fn stores_register_beat_and_are_decommissioned() {
    let f = fixture();
    let s = &f.service;
    for id in 1..=4 {
        assert_eq!(put_store(s, store(id)).await, None);
    }
    let mut taken = store(5);
    taken.address = store(1).address;
    assert_eq!(
        put_store(s, taken).await.map(|e| e.0),
        Some(ErrorType::InvalidArgument)
    );
    let beat = |id| StoreHeartbeatRequest {
        stats: Some(StoreStats {
            store_id: id,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(error_of(s, s.store_heartbeat(beat(1)).await), None);
    assert_eq!(
        error_of(s, s.store_heartbeat(beat(9)).await).map(|e| e.0),
        Some(ErrorType::NotFound)
    );
    let get = |id| GetStoreRequest {
        header: None,
        store_id: id,
    };
    let one = s.respond(s.get_store(get(1)).await).expect("store 1");
    assert_eq!(one.store.map(|st| st.state()), Some(StoreState::Up));
    assert!(one.stats.is_some());

    // Four stores for three replicas: one may go.
    let delete = |id| DeleteStoreRequest {
        header: None,
        store_id: id,
    };
    assert_eq!(error_of(s, s.delete_store(delete(4)).await), None);
    assert_eq!(
        error_of(s, s.delete_store(delete(4)).await),
        None,
        "again: no-op"
    );
    // Restarting does not bring it back.
    assert_eq!(put_store(s, store(4)).await, None);
    let four = s.respond(s.get_store(get(4)).await).expect("store 4");
    assert_eq!(four.store.map(|st| st.state()), Some(StoreState::Offline));
    // A second one would leave two stores for three replicas.
    let (kind, message) = error_of(s, s.delete_store(delete(3)).await).expect("refused");
    assert_eq!(kind, ErrorType::InvalidArgument);
    assert!(message.contains("would leave 2 stores"), "{message}");
    assert_eq!(
        error_of(s, s.delete_store(delete(9)).await).map(|e| e.0),
        Some(ErrorType::NotFound)
    );
    let all = GetAllStoresRequest::default();
    let all = s.respond(s.get_all_stores(all).await).expect("stores");
    assert_eq!(all.stores.len(), 4);
}

#[tokio::test]
async fn region_heartbeats_update_routing_and_stale_ones_are_refused() {
    let f = fixture();
    let s = &f.service;
    for id in 1..=3 {
        assert_eq!(put_store(s, store(id)).await, None);
    }
    let hb = |version| {
        let r = region(version, &[1, 2, 3]);
        RegionHeartbeatRequest {
            leader: Some(r.peers[0]),
            region: Some(r),
            term: 6,
            approximate_size_bytes: 4096,
            ..Default::default()
        }
    };
    let answer = s.respond(s.region_heartbeat(hb(2)).await).expect("answer");
    assert_eq!(answer.header.and_then(|h| h.error), None);
    let key = GetRegionRequest {
        header: None,
        key: b"anything".to_vec(),
    };
    let found = s.respond(s.get_region(key).await).expect("region");
    assert_eq!(found.region.map(|r| r.id), Some(1));
    assert_eq!(found.leader.map(|p| p.store_id), Some(1));
    let scan = s.respond(s.scan_regions(ScanRegionsRequest::default()).await);
    let scanned = scan.expect("regions").regions;
    assert_eq!(
        scanned[0].approximate_size_bytes, 4096,
        "with the leader's load"
    );

    // A heartbeat from before the last split is stale; the answer still
    // names the region.
    let stale = s.respond(s.region_heartbeat(hb(1)).await).expect("answer");
    assert_eq!(stale.region_id, 1);
    let error = stale.header.and_then(|h| h.error).expect("refused");
    assert_eq!(error.r#type(), ErrorType::StaleRegion);

    let missing = GetRegionByIdRequest {
        header: None,
        region_id: 7,
    };
    assert_eq!(
        error_of(s, s.get_region_by_id(missing).await).map(|e| e.0),
        Some(ErrorType::NotFound)
    );
}

#[tokio::test]
async fn operators_by_hand_are_checked_and_cancelled_by_id() {
    let f = fixture();
    let s = &f.service;
    let add = |region_id, steps| AddOperatorRequest {
        region_id,
        steps,
        ..Default::default()
    };
    let unknown = add(
        42,
        vec![crate::operator::transfer_leader(Peer::default(), 0)],
    );
    assert_eq!(
        error_of(s, s.add_operator(unknown).await),
        Some((ErrorType::NotFound, "region 42 not found".into()))
    );
    assert_eq!(
        error_of(s, s.add_operator(add(42, vec![])).await).map(|e| e.0),
        Some(ErrorType::InvalidArgument)
    );
    let cancel = CancelOperatorRequest {
        operator_id: 5,
        ..Default::default()
    };
    assert_eq!(
        error_of(s, s.cancel_operator(cancel).await).map(|e| e.0),
        Some(ErrorType::NotFound)
    );
    let listed = s.respond(s.get_operators(GetOperatorsRequest::default()).await);
    assert!(listed.expect("operators").operators.is_empty());
}

#[tokio::test]
async fn a_paused_scheduler_is_listed_as_paused() {
    let f = fixture();
    let s = &f.service;
    let pause = PauseSchedulerRequest {
        name: crate::scheduling::BALANCE_REGION.into(),
        pause: true,
        ..Default::default()
    };
    assert_eq!(error_of(s, s.pause_scheduler(pause).await), None);
    let listed = s.respond(s.get_schedulers().await).expect("schedulers");
    let paused: Vec<_> = listed
        .schedulers
        .iter()
        .filter(|x| x.paused)
        .map(|x| x.name.as_str())
        .collect();
    assert_eq!(paused, [crate::scheduling::BALANCE_REGION]);
    assert_eq!(listed.schedulers.len(), crate::scheduling::ALL.len());
}

#[tokio::test]
async fn the_gc_safe_point_only_moves_forward_and_never_into_the_future() {
    let f = fixture();
    let s = &f.service;
    let update = |safe_point| UpdateGcSafePointRequest {
        safe_point,
        ..Default::default()
    };
    let raised = s.respond(s.update_gc_safe_point(update(1000)).await);
    assert_eq!(raised.expect("raised").new_safe_point, 1000);
    let lower = s.respond(s.update_gc_safe_point(update(10)).await);
    assert_eq!(lower.expect("kept").new_safe_point, 1000);
    let future = (crate::tso::now_ms() + 3_600_000) << crate::tso::LOGICAL_BITS;
    assert_eq!(
        status_of(s, s.update_gc_safe_point(update(future)).await),
        Code::InvalidArgument
    );
    let current = s.respond(s.get_gc_safe_point().await).expect("safe point");
    assert_eq!(current.safe_point, 1000);
    f.raft.refuse_proposals(true);
    assert_eq!(
        error_of(s, s.update_gc_safe_point(update(2000)).await).map(|e| e.0),
        Some(ErrorType::Unknown),
        "a failed proposal is an UNKNOWN header error"
    );
}
