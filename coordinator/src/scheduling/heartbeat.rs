//! Scheduling on a region heartbeat: the step the region's leader should
//! run now, from the region's operator or from a new replica-checker
//! operator.

use std::time::Instant;

use nokv_proto::coordinatorpb::RegionHeartbeatRequest;
use nokv_proto::metapb::StoreState;

use super::{gain, loss, Planned, Scheduling, REPLICA_CHECKER};
use crate::checker::{self, Plan};
use crate::metrics;
use crate::operator::{self, Order};

impl Scheduling {
    /// The step the region's leader should run now: its operator's current
    /// step, or the first step of a new replica checker operator.
    pub async fn next_order(&self, hb: &RegionHeartbeatRequest) -> Option<(u64, Order)> {
        let region = hb.region.as_ref()?;
        let now = Instant::now();
        let leader = hb.leader.as_ref();
        let operators = self.view.operators();
        let stores = self.store_views();
        let avoid: Vec<u64> = stores
            .values()
            .filter(|s| !matches!(s.state, StoreState::Up | StoreState::Disconnected))
            .map(|s| s.id)
            .collect();
        if operators.is_busy(region.id) && !operators.cancel_if_targeting(region.id, &avoid) {
            let order = operators.on_heartbeat(region, leader, &hb.pending_peers, &avoid, now);
            // An operator this heartbeat finished lets the checker plan the
            // next one now rather than a heartbeat later (which a sleeping
            // region sends ten times less often).
            if order.is_some() || operators.is_busy(region.id) {
                return order;
            }
        }
        if !self.may_schedule(REPLICA_CHECKER) {
            return None;
        }
        let plan = checker::check(
            region,
            leader,
            &hb.pending_peers,
            &stores,
            self.config.max_replicas,
        )?;
        let planned = self.plan_repair(plan, region.id).await?;
        metrics::CHECKER_STEPS
            .with_label_values(&[planned.kind])
            .inc();
        if !self.start(region, REPLICA_CHECKER, planned).await {
            return None;
        }
        operators.on_heartbeat(region, leader, &hb.pending_peers, &avoid, now)
    }

    /// The operator that carries out the replica checker's `plan` for
    /// region `region_id`; `None` when no peer id could be allocated.
    async fn plan_repair(&self, plan: Plan, region_id: u64) -> Option<Planned> {
        let timeout = 0;
        let w = self.region_weight(region_id);
        Some(match plan {
            Plan::AddReplica { store_id } => {
                let new = self.new_learner(store_id).await?;
                Planned {
                    kind: "add-replica",
                    steps: vec![
                        operator::add_learner(new, timeout),
                        operator::promote(new, timeout),
                    ],
                    influence: vec![gain(store_id, w)],
                }
            }
            Plan::Promote(peer) => Planned {
                kind: "promote-learner",
                steps: vec![operator::promote(peer, timeout)],
                influence: vec![],
            },
            Plan::Replace { old, store_id } => {
                let new = self.new_learner(store_id).await?;
                Planned {
                    kind: "replace-replica",
                    steps: vec![
                        operator::add_learner(new, timeout),
                        operator::promote(new, timeout),
                        operator::remove(old, timeout),
                    ],
                    influence: vec![gain(store_id, w), loss(old.store_id, w)],
                }
            }
            Plan::Remove { peer, why } => Planned {
                kind: why,
                steps: vec![operator::remove(peer, timeout)],
                influence: vec![loss(peer.store_id, w)],
            },
        })
    }
}
