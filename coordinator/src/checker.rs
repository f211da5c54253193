//! The replica checker: decides, from a region leader's heartbeat, what
//! keeps the region at the configured replica count on healthy stores. Its
//! answer is a [`Plan`] the leader's scheduling turns into an operator:
//!
//! - a missing replica is added as a learner and promoted once caught up,
//!   so a region never counts an empty replica toward its quorum;
//! - a replica on a `Down`, `Offline` or `Tombstone` store (or one the
//!   coordinator does not know) is replaced: add learner elsewhere, promote,
//!   then remove the bad one, so the voter count never drops below the
//!   target while it happens;
//! - an extra voter or a stray learner is removed;
//! - two replicas on one store never happen: new replicas only go to
//!   stores without one, and a duplicate is removed first.
//!
//! It never places a replica on a store that is not `Up`.

use std::collections::HashMap;

use nokv_proto::metapb::{Peer, PeerRole, Region, StoreState};

use crate::cluster_view::StoreView;

/// What the region needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Add a replica on this store (learner, then voter).
    AddReplica {
        /// Target store.
        store_id: u64,
    },
    /// Promote this caught-up learner.
    Promote(Peer),
    /// Replace `old` (on an unhealthy store) by a replica on `store_id`.
    Replace {
        /// The replica to drop once the new one votes.
        old: Peer,
        /// Where the new replica goes.
        store_id: u64,
    },
    /// Remove this replica.
    Remove {
        /// The replica.
        peer: Peer,
        /// Why, for the operator's kind.
        why: &'static str,
    },
}

fn healthy(state: Option<StoreState>) -> bool {
    matches!(state, Some(StoreState::Up | StoreState::Disconnected))
}

/// The `Up` store without a replica of `region` holding the fewest
/// replicas (ties to the lowest id).
pub fn best_target(region: &Region, stores: &HashMap<u64, StoreView>) -> Option<u64> {
    stores
        .values()
        .filter(|s| s.state == StoreState::Up)
        .filter(|s| !region.peers.iter().any(|p| p.store_id == s.id))
        .min_by_key(|s| (s.regions, s.id))
        .map(|s| s.id)
}

/// Decides the next step for `region`, or `None` when it is healthy or must
/// wait (a learner still catching up, no store to move to).
///
/// `pending` are peers the leader reports as not caught up; `leader` the
/// reporting leader; `stores` every known store with its live state.
pub fn check(
    region: &Region,
    leader: Option<&Peer>,
    pending: &[Peer],
    stores: &HashMap<u64, StoreView>,
    max_replicas: usize,
) -> Option<Plan> {
    let state_of = |p: &Peer| stores.get(&p.store_id).map(|s| s.state);
    let is_leader = |p: &Peer| leader.is_some_and(|l| l.id == p.id);
    let is_pending = |p: &Peer| pending.iter().any(|x| x.id == p.id);

    // Two replicas on one store: drop the one that is not leading,
    // learners first.
    for (i, a) in region.peers.iter().enumerate() {
        if let Some(b) = region.peers[i + 1..]
            .iter()
            .find(|b| b.store_id == a.store_id)
        {
            let mut pair = [*a, *b];
            pair.sort_by_key(|p| (is_leader(p), p.role() == PeerRole::Voter));
            return Some(Plan::Remove {
                peer: pair[0],
                why: "remove-duplicate",
            });
        }
    }

    let learners: Vec<&Peer> = region
        .peers
        .iter()
        .filter(|p| p.role() != PeerRole::Voter)
        .collect();
    let voters: Vec<&Peer> = region
        .peers
        .iter()
        .filter(|p| p.role() == PeerRole::Voter)
        .collect();
    let good_voters = voters.iter().filter(|p| healthy(state_of(p))).count();

    // Learners on bad stores never catch up.
    if let Some(l) = learners.iter().find(|l| !healthy(state_of(l))) {
        return Some(Plan::Remove {
            peer: **l,
            why: "remove-bad-learner",
        });
    }
    if let Some(l) = learners.first() {
        if good_voters >= max_replicas {
            return Some(Plan::Remove {
                peer: **l,
                why: "remove-extra-learner",
            });
        }
        if is_pending(l) {
            return None;
        }
        return Some(Plan::Promote(**l));
    }

    // A voter on a bad store: once a replacement votes, drop it; before,
    // replace it.
    if let Some(bad) = voters.iter().find(|p| !healthy(state_of(p))) {
        if good_voters >= max_replicas {
            return Some(Plan::Remove {
                peer: **bad,
                why: "remove-down-replica",
            });
        }
        return best_target(region, stores).map(|store_id| Plan::Replace {
            old: **bad,
            store_id,
        });
    }
    if voters.len() < max_replicas {
        return best_target(region, stores).map(|store_id| Plan::AddReplica { store_id });
    }
    if voters.len() > max_replicas {
        // Prefer a replica on a Disconnected store, then on the busiest
        // store; the leader last.
        let victim = voters.iter().max_by_key(|p| {
            let s = stores.get(&p.store_id);
            (
                !is_leader(p),
                s.map(|s| s.state == StoreState::Disconnected)
                    .unwrap_or(false),
                s.map(|s| s.regions).unwrap_or(0),
                p.store_id,
            )
        })?;
        return Some(Plan::Remove {
            peer: **victim,
            why: "remove-extra-replica",
        });
    }
    None
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

    fn stores(states: &[(u64, StoreState, i64)]) -> HashMap<u64, StoreView> {
        states
            .iter()
            .map(|(id, state, regions)| {
                (
                    *id,
                    StoreView {
                        id: *id,
                        state: *state,
                        regions: *regions,
                        leaders: 0,
                        size: 0,
                    },
                )
            })
            .collect()
    }

    fn v(id: u64) -> Peer {
        peer(id, id, PeerRole::Voter)
    }

    #[test]
    fn adds_on_least_loaded_up_store_without_a_replica() {
        let r = region(vec![v(1)]);
        let s = stores(&[
            (1, StoreState::Up, 0),
            (2, StoreState::Up, 5),
            (3, StoreState::Up, 1),
            (4, StoreState::Disconnected, 0),
        ]);
        assert_eq!(
            check(&r, Some(&v(1)), &[], &s, 3),
            Some(Plan::AddReplica { store_id: 3 })
        );
        let only = stores(&[(1, StoreState::Up, 0)]);
        assert_eq!(check(&r, Some(&v(1)), &[], &only, 3), None);
    }

    #[test]
    fn waits_for_pending_learner_then_promotes() {
        let l = peer(2, 2, PeerRole::Learner);
        let r = region(vec![v(1), l]);
        let s = stores(&[(1, StoreState::Up, 0), (2, StoreState::Up, 0)]);
        assert_eq!(check(&r, Some(&v(1)), &[l], &s, 3), None);
        assert_eq!(check(&r, Some(&v(1)), &[], &s, 3), Some(Plan::Promote(l)));
    }

    #[test]
    fn replaces_a_replica_on_a_down_store_then_removes_it() {
        let s = stores(&[
            (1, StoreState::Up, 0),
            (2, StoreState::Up, 0),
            (3, StoreState::Down, 0),
            (4, StoreState::Up, 0),
        ]);
        let r = region(vec![v(1), v(2), v(3)]);
        assert_eq!(
            check(&r, Some(&v(1)), &[], &s, 3),
            Some(Plan::Replace {
                old: v(3),
                store_id: 4
            })
        );
        let r = region(vec![v(1), v(2), v(3), v(4)]);
        assert_eq!(
            check(&r, Some(&v(1)), &[], &s, 3),
            Some(Plan::Remove {
                peer: v(3),
                why: "remove-down-replica"
            })
        );
        // Offline counts as bad too; a store the coordinator never heard of
        // as well.
        let s = stores(&[(1, StoreState::Up, 0), (2, StoreState::Offline, 0)]);
        let r = region(vec![v(1), v(2), v(9)]);
        assert!(matches!(
            check(&r, Some(&v(1)), &[], &s, 3),
            None | Some(Plan::Replace { .. })
        ));
    }

    #[test]
    fn removes_extras_and_duplicates_never_the_leader_first() {
        let s = stores(&[
            (1, StoreState::Up, 10),
            (2, StoreState::Up, 1),
            (3, StoreState::Up, 1),
            (4, StoreState::Up, 1),
        ]);
        let r = region(vec![v(1), v(2), v(3), v(4)]);
        // Store 1 is busiest but leads: the next busiest non-leader goes.
        let plan = check(&r, Some(&v(1)), &[], &s, 3);
        assert!(
            matches!(plan, Some(Plan::Remove { peer, why: "remove-extra-replica" }) if peer.store_id != 1),
            "{plan:?}"
        );
        let dup = peer(5, 2, PeerRole::Learner);
        let r = region(vec![v(1), v(2), v(3), dup]);
        assert_eq!(
            check(&r, Some(&v(1)), &[], &s, 3),
            Some(Plan::Remove {
                peer: dup,
                why: "remove-duplicate"
            })
        );
        // A stray learner beyond the target is removed, not promoted.
        let l = peer(6, 4, PeerRole::Learner);
        let r = region(vec![v(1), v(2), v(3), l]);
        assert_eq!(
            check(&r, Some(&v(1)), &[], &s, 3),
            Some(Plan::Remove {
                peer: l,
                why: "remove-extra-learner"
            })
        );
    }
}
