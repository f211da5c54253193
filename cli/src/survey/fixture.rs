//! A fixed cluster for the TUI and doctor tests: three stores (store 3
//! Down), two regions, region 2's peer on store 3 lagging 500 entries.

use nokv_proto::metapb::{PeerRole, StoreState};

use super::model::*;
use crate::status_http::RequestTotals;

/// A peer that answered with the given indexes.
pub fn peer(id: u64, store_id: u64, matched: u64, applied: u64) -> Peer {
    Peer {
        id,
        store_id,
        role: PeerRole::Voter,
        matched: Some(matched),
        progress_state: Some("Replicate".into()),
        commit_index: Some(applied),
        applied_index: Some(applied),
        sessions: None,
        pending: false,
        down: false,
    }
}

/// A store in `state`.
pub fn store(id: u64, state: StoreState) -> Store {
    Store {
        id,
        address: format!("127.0.0.1:2072{id}"),
        status_address: format!("127.0.0.1:2073{id}"),
        state,
        capacity_bytes: 100 << 30,
        available_bytes: 60 << 30,
        used_bytes: 1 << 20,
        region_count: 2,
        leader_count: 1,
        last_heartbeat_ms: 1_000,
        flow: FlowRates {
            read_bytes_per_sec: 2048,
            read_keys_per_sec: 20,
            write_bytes_per_sec: 1024,
            write_keys_per_sec: 10,
        },
        requests: Some(RequestTotals {
            reads: 100,
            writes: 50,
        }),
        admin_error: None,
    }
}

/// The fixed cluster.
pub fn survey() -> Survey {
    let mut down = store(3, StoreState::Down);
    down.admin_error = Some("Unavailable: connection refused".into());
    down.requests = None;
    Survey {
        taken_at_ms: 1_700_000_000_000,
        cluster_id: 7_001,
        members: vec![
            Member {
                id: 1,
                name: "coordinator-1".into(),
                address: "127.0.0.1:23700".into(),
            },
            Member {
                id: 2,
                name: "coordinator-2".into(),
                address: "127.0.0.1:23701".into(),
            },
        ],
        leader_member_id: Some(2),
        stores: vec![store(1, StoreState::Up), store(2, StoreState::Up), down],
        regions: vec![
            Region {
                id: 1,
                start_key: Vec::new(),
                end_key: b"m".to_vec(),
                version: 2,
                conf_ver: 3,
                peers: vec![peer(11, 1, 40, 40), peer(12, 2, 40, 40)],
                leader_peer_id: 11,
                leader_store_id: 1,
                approximate_keys: 1_000,
                approximate_size_bytes: 64 << 10,
                leader_last_index: Some(40),
                leader_commit_index: Some(40),
                flow: FlowRates {
                    read_bytes_per_sec: 0,
                    read_keys_per_sec: 0,
                    write_bytes_per_sec: 3 << 20,
                    write_keys_per_sec: 300,
                },
            },
            Region {
                id: 2,
                start_key: b"m".to_vec(),
                end_key: Vec::new(),
                version: 2,
                conf_ver: 3,
                peers: vec![
                    peer(21, 1, 900, 900),
                    peer(22, 2, 900, 900),
                    Peer {
                        commit_index: None,
                        applied_index: None,
                        sessions: None,
                        ..peer(23, 3, 400, 400)
                    },
                ],
                leader_peer_id: 22,
                leader_store_id: 2,
                approximate_keys: 5,
                approximate_size_bytes: 100,
                leader_last_index: Some(900),
                leader_commit_index: Some(900),
                flow: FlowRates::default(),
            },
        ],
        operators: Operators::Unavailable("Unimplemented: GetOperators is not implemented".into()),
    }
}
