//! Manual operators (`AddOperator`, `nokv operator add`): each step is
//! checked against the region's peers as the earlier steps leave them, peer
//! ids left 0 are filled in, and the operator starts like any other.

use nokv_proto::coordinatorpb::{
    change_peer, operator_step::Step, AddOperatorRequest, Operator, OperatorStep,
};
use nokv_proto::metapb::{Peer, PeerRole, StoreState};

use super::{Refusal, Scheduling};

fn invalid(msg: impl Into<String>) -> Refusal {
    Refusal::Invalid(msg.into())
}

impl Scheduling {
    /// Checks a manual operator against the region's current peers, fills
    /// in peer ids left 0, and starts it. The caller checks leadership.
    ///
    /// # Errors
    /// [`Refusal::RegionNotFound`] for an unknown region;
    /// [`Refusal::Invalid`] for steps that do not fit the region, or when
    /// no id could be allocated.
    pub async fn add_manual_operator(&self, req: AddOperatorRequest) -> Result<Operator, Refusal> {
        if req.steps.is_empty() {
            return Err(invalid("an operator needs at least one step"));
        }
        let last = req.steps.len() - 1;
        if req.steps[..last]
            .iter()
            .any(|s| matches!(s.step, Some(Step::Merge(_))))
        {
            return Err(invalid(
                "a merge must be the operator's last step: the region is gone after it",
            ));
        }
        let (region, stores, regions) = self.raft.read_state(|s| {
            (
                s.regions.get(&req.region_id).and_then(|i| i.region.clone()),
                s.stores.clone(),
                s.regions.clone(),
            )
        });
        let Some(region) = region else {
            return Err(Refusal::RegionNotFound(req.region_id));
        };
        // Walk the steps over a copy of the peers, so later steps may name
        // peers earlier steps add.
        let mut peers = region.peers.clone();
        let mut steps = Vec::with_capacity(req.steps.len());
        for (i, mut step) in req.steps.into_iter().enumerate() {
            let at = |p: &[Peer], store: u64| p.iter().find(|x| x.store_id == store).copied();
            match step.step.as_mut() {
                Some(Step::ChangePeer(c)) => {
                    let kind = c.kind();
                    let target = c.peer.get_or_insert_with(Default::default);
                    match stores.get(&target.store_id).map(|s| s.state()) {
                        None => {
                            return Err(invalid(format!(
                                "step {i}: store {} is not registered",
                                target.store_id
                            )))
                        }
                        Some(StoreState::Tombstone | StoreState::Offline)
                            if kind != change_peer::Kind::Remove =>
                        {
                            return Err(invalid(format!(
                                "step {i}: store {} is being decommissioned",
                                target.store_id
                            )))
                        }
                        _ => {}
                    }
                    let existing = at(&peers, target.store_id);
                    match kind {
                        change_peer::Kind::AddLearner => {
                            if existing.is_some() {
                                return Err(invalid(format!(
                                    "step {i}: region {} already has a replica on store {}",
                                    region.id, target.store_id
                                )));
                            }
                            if target.id == 0 {
                                target.id = self.alloc_id().await.ok_or_else(|| {
                                    invalid("could not allocate a peer id; retry")
                                })?;
                            }
                            target.role = PeerRole::Learner as i32;
                            peers.push(*target);
                        }
                        change_peer::Kind::AddVoter => {
                            let Some(p) = existing.filter(|p| p.role() == PeerRole::Learner) else {
                                return Err(invalid(format!(
                                    "step {i}: no learner on store {} to promote",
                                    target.store_id
                                )));
                            };
                            *target = Peer {
                                role: PeerRole::Voter as i32,
                                ..p
                            };
                            if let Some(x) = peers.iter_mut().find(|x| x.id == p.id) {
                                x.role = PeerRole::Voter as i32;
                            }
                        }
                        change_peer::Kind::Remove => {
                            let Some(p) = existing else {
                                return Err(invalid(format!(
                                    "step {i}: region {} has no replica on store {}",
                                    region.id, target.store_id
                                )));
                            };
                            *target = p;
                            peers.retain(|x| x.id != p.id);
                        }
                    }
                }
                Some(Step::TransferLeader(t)) => {
                    let target = t.peer.get_or_insert_with(Default::default);
                    let Some(p) = at(&peers, target.store_id) else {
                        return Err(invalid(format!(
                            "step {i}: region {} has no replica on store {}",
                            region.id, target.store_id
                        )));
                    };
                    *target = p;
                }
                Some(Step::SplitRegion(sp)) => {
                    if !sp.half {
                        let k = &sp.split_key;
                        let inside = *k > region.start_key
                            && (region.end_key.is_empty() || *k < region.end_key);
                        if !inside {
                            return Err(invalid(format!(
                                "step {i}: split key is not strictly inside region {}",
                                region.id
                            )));
                        }
                    }
                }
                Some(Step::Merge(m)) => {
                    let target_id = m.target.as_ref().map_or(0, |t| t.id);
                    let Some(target) = regions.get(&target_id).and_then(|t| t.region.clone())
                    else {
                        return Err(invalid(format!(
                            "step {i}: merge target region {target_id} not found"
                        )));
                    };
                    let adjacent = (!region.end_key.is_empty()
                        && region.end_key == target.start_key)
                        || (!target.end_key.is_empty() && target.end_key == region.start_key);
                    if target.id == region.id || !adjacent {
                        return Err(invalid(format!(
                            "step {i}: regions {} and {target_id} are not adjacent",
                            region.id
                        )));
                    }
                    let stores_of = |p: &[Peer]| {
                        let mut v: Vec<u64> = p.iter().map(|p| p.store_id).collect();
                        v.sort_unstable();
                        v
                    };
                    if stores_of(&peers) != stores_of(&target.peers) {
                        return Err(invalid(format!(
                            "step {i}: regions {} and {target_id} have replicas on different \
                             stores ({:?} vs {:?}); move replicas first",
                            region.id,
                            stores_of(&peers),
                            stores_of(&target.peers)
                        )));
                    }
                    m.target = Some(target);
                }
                None => return Err(invalid(format!("step {i} is empty"))),
            }
            steps.push(step);
        }
        let Some(id) = self.alloc_id().await else {
            return Err(invalid("could not allocate an operator id; retry"));
        };
        let kind = if steps.len() == 1 {
            step_kind(&steps[0])
        } else {
            "manual"
        };
        let op = Operator {
            id,
            region_id: region.id,
            kind: kind.to_string(),
            source: "manual".to_string(),
            steps,
            ..Default::default()
        };
        self.view
            .operators()
            .add(op, region.epoch.unwrap_or_default(), vec![])
            .map_err(|e| invalid(e.to_string()))
    }
}

fn step_kind(step: &OperatorStep) -> &'static str {
    match &step.step {
        Some(Step::ChangePeer(c)) => match c.kind() {
            change_peer::Kind::AddLearner => "add-learner",
            change_peer::Kind::AddVoter => "promote-learner",
            change_peer::Kind::Remove => "remove-peer",
        },
        Some(Step::TransferLeader(_)) => "transfer-leader",
        Some(Step::SplitRegion(_)) => "split",
        Some(Step::Merge(_)) => "merge",
        None => "manual",
    }
}
