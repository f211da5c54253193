//! The replica checker: decides, from a region leader's heartbeat, the next
//! membership step that brings the region to the configured replica count.
//! New replicas join as learners and are promoted once caught up, so a
//! region never counts an empty replica toward its quorum.

use std::collections::HashMap;

use nokv_proto::metapb::{Peer, PeerRole, Region};

/// One membership step for a region leader to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaStep {
    /// Add a learner on this store (the peer id is allocated by the caller).
    AddLearner {
        /// Target store.
        store_id: u64,
    },
    /// Promote this caught-up learner to voter.
    Promote(Peer),
}

/// Decides the next step for `region`.
///
/// `pending` are peers the leader reports as not caught up; `up_stores` the
/// stores that can take replicas; `load` the replica count per store (to
/// spread new replicas). Returns `None` when the region is healthy or must
/// wait (a learner is still catching up).
pub fn next_step(
    region: &Region,
    pending: &[Peer],
    up_stores: &[u64],
    load: &HashMap<u64, usize>,
    max_replicas: usize,
) -> Option<ReplicaStep> {
    let learners: Vec<&Peer> = region
        .peers
        .iter()
        .filter(|p| p.role() == PeerRole::Learner)
        .collect();
    if let Some(ready) = learners
        .iter()
        .find(|l| !pending.iter().any(|p| p.id == l.id))
    {
        return Some(ReplicaStep::Promote(*(*ready)));
    }
    if !learners.is_empty() {
        return None;
    }
    let voters = region
        .peers
        .iter()
        .filter(|p| p.role() == PeerRole::Voter)
        .count();
    if voters >= max_replicas {
        return None;
    }
    up_stores
        .iter()
        .filter(|s| !region.peers.iter().any(|p| p.store_id == **s))
        .min_by_key(|s| (load.get(s).copied().unwrap_or(0), **s))
        .map(|s| ReplicaStep::AddLearner { store_id: *s })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store: u64, role: PeerRole) -> Peer {
        Peer {
            id,
            store_id: store,
            role: role as i32,
        }
    }

    fn region(peers: Vec<Peer>) -> Region {
        Region {
            id: 1,
            peers,
            ..Default::default()
        }
    }

    #[test]
    fn adds_learner_on_least_loaded_store_without_a_replica() {
        let r = region(vec![peer(1, 1, PeerRole::Voter)]);
        let load = HashMap::from([(2, 5), (3, 1)]);
        assert_eq!(
            next_step(&r, &[], &[1, 2, 3], &load, 3),
            Some(ReplicaStep::AddLearner { store_id: 3 })
        );
    }

    #[test]
    fn waits_for_pending_learner_then_promotes() {
        let l = peer(2, 2, PeerRole::Learner);
        let r = region(vec![peer(1, 1, PeerRole::Voter), l]);
        assert_eq!(next_step(&r, &[l], &[1, 2, 3], &HashMap::new(), 3), None);
        assert_eq!(
            next_step(&r, &[], &[1, 2, 3], &HashMap::new(), 3),
            Some(ReplicaStep::Promote(l))
        );
    }

    #[test]
    fn healthy_or_no_candidate_means_no_step() {
        let full = region(vec![
            peer(1, 1, PeerRole::Voter),
            peer(2, 2, PeerRole::Voter),
            peer(3, 3, PeerRole::Voter),
        ]);
        assert_eq!(
            next_step(&full, &[], &[1, 2, 3, 4], &HashMap::new(), 3),
            None
        );
        let one = region(vec![peer(1, 1, PeerRole::Voter)]);
        assert_eq!(next_step(&one, &[], &[1], &HashMap::new(), 3), None);
    }
}
