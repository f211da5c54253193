//! Turning what the coordinator and the stores answered into the
//! [`super::model`]: members, stores, operators, and each region joined
//! with its replicas' status on their own stores. Pure functions, no I/O.

use std::collections::HashMap;

use nokv_proto::adminpb::RegionStatus;
use nokv_proto::coordinatorpb::{
    change_peer, operator_step::Step, Operator as ProtoOperator, RegionInfo, StoreInfo,
};
use nokv_proto::metapb::Member as ProtoMember;

use super::model::{FlowRates, Member, Operator, Peer, Region, Store};

/// A coordinator member as the survey shows it.
pub(super) fn member(m: ProtoMember) -> Member {
    Member {
        id: m.id,
        name: m.name,
        address: m.address,
    }
}

/// A store from the coordinator's record and last heartbeat of it (its own
/// answers are added later); `None` for a record without a store.
pub(super) fn store(info: StoreInfo) -> Option<Store> {
    let s = info.store?;
    let stats = info.stats.unwrap_or_default();
    Some(Store {
        id: s.id,
        state: s.state(),
        address: s.address,
        status_address: s.status_address,
        capacity_bytes: stats.capacity_bytes,
        available_bytes: stats.available_bytes,
        used_bytes: stats.used_bytes,
        region_count: stats.region_count,
        leader_count: stats.leader_count,
        last_heartbeat_ms: s.last_heartbeat_ms,
        flow: FlowRates::of_store(&stats),
        requests: None,
        admin_error: None,
    })
}

/// An operator, its steps described in words.
pub(super) fn operator(o: ProtoOperator) -> Operator {
    Operator {
        id: o.id,
        region_id: o.region_id,
        kind: o.kind.clone(),
        steps: o
            .steps
            .iter()
            .map(|s| describe_step(s.step.as_ref()))
            .collect(),
        current_step: o.current_step,
        state: o.state().as_str_name().to_string(),
        source: o.source.clone(),
        created_at_ms: o.created_at_ms,
        finished_at_ms: o.finished_at_ms,
        timeout_ms: o.steps.iter().map(|s| s.timeout_ms).sum(),
        message: o.message,
    }
}

/// A region from the coordinator's record of it and the stores' status of
/// its replicas, keyed by (region id, store id).
pub(super) fn assemble_region(
    info: RegionInfo,
    replica_status: &HashMap<(u64, u64), RegionStatus>,
) -> Option<Region> {
    let flow = FlowRates::of_region(&info);
    let region = info.region?;
    let epoch = region.epoch.unwrap_or_default();
    let leader = info.leader.filter(|l| l.id != 0);
    let leader_status = leader
        .as_ref()
        .and_then(|l| replica_status.get(&(region.id, l.store_id)))
        .filter(|s| s.is_leader);
    let peers = region
        .peers
        .iter()
        .map(|p| {
            let own = replica_status.get(&(region.id, p.store_id));
            let progress =
                leader_status.and_then(|ls| ls.progress.iter().find(|pr| pr.peer_id == p.id));
            let is_leader = leader.as_ref().is_some_and(|l| l.id == p.id);
            Peer {
                id: p.id,
                store_id: p.store_id,
                role: p.role(),
                matched: if is_leader {
                    leader_status.map(|s| s.last_index)
                } else {
                    progress.map(|pr| pr.matched)
                },
                progress_state: progress.map(|pr| pr.state.clone()),
                commit_index: own.map(|s| s.commit_index),
                applied_index: own.map(|s| s.applied_index),
                sessions: own.map(|s| s.sessions),
                pending: info.pending_peers.iter().any(|q| q.id == p.id)
                    || leader_status.is_some_and(|s| s.pending_peers.iter().any(|q| q.id == p.id)),
                down: info.down_peers.iter().any(|q| q.id == p.id),
            }
        })
        .collect();
    Some(Region {
        id: region.id,
        start_key: region.start_key,
        end_key: region.end_key,
        version: epoch.version,
        conf_ver: epoch.conf_ver,
        peers,
        leader_peer_id: leader.as_ref().map(|l| l.id).unwrap_or(0),
        leader_store_id: leader.as_ref().map(|l| l.store_id).unwrap_or(0),
        approximate_keys: info.approximate_keys,
        approximate_size_bytes: info.approximate_size_bytes,
        leader_last_index: leader_status.map(|s| s.last_index),
        leader_commit_index: leader_status.map(|s| s.commit_index),
        flow,
    })
}

fn describe_step(step: Option<&Step>) -> String {
    match step {
        Some(Step::ChangePeer(c)) => {
            let peer = c.peer.unwrap_or_default();
            let verb = match c.kind() {
                change_peer::Kind::AddVoter => "add voter",
                change_peer::Kind::AddLearner => "add learner",
                change_peer::Kind::Remove => "remove peer",
            };
            format!("{verb} {}@{}", peer.id, peer.store_id)
        }
        Some(Step::TransferLeader(t)) => format!(
            "transfer leader to store {}",
            t.peer.map(|p| p.store_id).unwrap_or(0)
        ),
        Some(Step::SplitRegion(s)) if s.half => "split in half".to_string(),
        Some(Step::SplitRegion(s)) => {
            format!("split at {}", crate::output::key(&s.split_key, "\"\""))
        }
        Some(Step::Merge(m)) => format!(
            "merge into region {}",
            m.target.as_ref().map(|t| t.id).unwrap_or(0)
        ),
        None => "no step".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_described_in_words() {
        use nokv_proto::coordinatorpb::{SplitRegion, TransferLeader};
        use nokv_proto::metapb::Peer as P;
        assert_eq!(
            describe_step(Some(&Step::TransferLeader(TransferLeader {
                peer: Some(P {
                    id: 5,
                    store_id: 2,
                    role: 0
                })
            }))),
            "transfer leader to store 2"
        );
        assert_eq!(
            describe_step(Some(&Step::SplitRegion(SplitRegion {
                split_key: b"k1".to_vec(),
                half: false
            }))),
            "split at k1"
        );
        assert_eq!(describe_step(None), "no step");
    }
}
