//! The periodic scheduling round on the leader: operator timeouts and
//! regions merged away, decommissions, the tiling check, then the balance
//! schedulers (one loop for both) and the merge checker.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nokv_proto::coordinatorpb::coordinator_command::Cmd;
use nokv_proto::metapb::{Region, StoreState};
use tracing::{debug, info};

use super::{gain, loss, Planned, Scheduling, BALANCE_LEADER, BALANCE_REGION, MERGE_CHECKER};
use crate::balance::{Balance, Move, RegionView};
use crate::invariant;
use crate::merge_checker::{self, Candidate, MergeLimits, MergePlan};
use crate::metrics;
use crate::operator::{self, Influence};

impl Scheduling {
    /// One scheduling round on the leader; does nothing on a follower.
    pub async fn round(&self) {
        if !self.view.lead(self.raft.leadership(), Instant::now()) {
            return;
        }
        let operators = self.view.operators();
        // Merges that finished count as such before any timeout is judged.
        let known: HashSet<u64> = self
            .raft
            .read_state(|s| s.regions.keys().copied().collect());
        operators.vanished(|id| known.contains(&id));
        for op in operators.expire(Instant::now()) {
            debug!(operator_id = op.id, "operator timed out");
        }
        self.view.retain_ranges(&known);
        self.finish_decommissions().await;
        self.check_tiling();
        self.balance(Balance::Leaders).await;
        self.balance(Balance::Regions).await;
        self.check_merges().await;
    }

    /// Offline stores whose last replica moved away become Tombstone.
    async fn finish_decommissions(&self) {
        let done: Vec<_> = self.raft.read_state(|s| {
            s.stores
                .values()
                .filter(|st| st.state() == StoreState::Offline)
                .filter(|st| {
                    !s.regions.values().any(|i| {
                        i.region
                            .iter()
                            .flat_map(|r| r.peers.iter())
                            .any(|p| p.store_id == st.id)
                    })
                })
                .cloned()
                .collect()
        });
        for mut store in done {
            store.state = StoreState::Tombstone as i32;
            let id = store.id;
            match self.raft.propose(Cmd::PutStore(store)).await {
                Ok(_) => info!(store_id = id, "store decommissioned: now a tombstone"),
                Err(e) => debug!(store_id = id, err = %e, "tombstone not recorded yet"),
            }
        }
    }

    /// Records a gap in the routing table once it outlives the grace
    /// period.
    fn check_tiling(&self) {
        let gaps = self.raft.read_state(invariant::tiling_gaps);
        if self
            .view
            .note_gaps(&gaps, invariant::HOLE_GRACE, Instant::now())
        {
            invariant::record(
                "range_hole",
                &format!("the regions do not tile the key space: {gaps:?}"),
            );
        }
    }

    /// Runs one balance scheduler: asks it for a move and starts the
    /// move's operator, until it is paused, at its limit, or content.
    async fn balance(&self, balance: Balance) {
        let name = match balance {
            Balance::Leaders => BALANCE_LEADER,
            Balance::Regions => BALANCE_REGION,
        };
        let operators = self.view.operators();
        while self.may_schedule(name) {
            let regions = self.settled_regions();
            let Some(m) = balance.next_move(
                &self.store_views(),
                &regions,
                |id| operators.is_busy(id),
                self.config.max_replicas,
            ) else {
                return;
            };
            let Some(region) = regions
                .iter()
                .find_map(|r| r.info.region.clone().filter(|r| r.id == m.region_id()))
            else {
                return;
            };
            let Some(planned) = self.plan_move(m).await else {
                return;
            };
            if !self.start(&region, name, planned).await {
                return;
            }
        }
    }

    /// The operator that carries out a balance move; `None` when no peer
    /// id could be allocated.
    async fn plan_move(&self, m: Move) -> Option<Planned> {
        Some(match m {
            Move::Leader(m) => Planned {
                kind: "transfer-leader",
                steps: vec![operator::transfer_leader(m.to, 0)],
                influence: vec![
                    Influence {
                        store_id: m.from.store_id,
                        leaders: -1,
                        ..Default::default()
                    },
                    Influence {
                        store_id: m.to.store_id,
                        leaders: 1,
                        ..Default::default()
                    },
                ],
            },
            Move::Replica(m) => {
                let new = self.new_learner(m.to_store).await?;
                Planned {
                    kind: "move-replica",
                    steps: vec![
                        operator::add_learner(new, 0),
                        operator::promote(new, 0),
                        operator::remove(m.from, 0),
                    ],
                    influence: vec![gain(m.to_store, m.bytes), loss(m.from.store_id, m.bytes)],
                }
            }
        })
    }

    /// Every region with what its leader last reported, by region id.
    fn region_views(&self) -> Vec<RegionView> {
        let infos = self
            .raft
            .read_state(|s| s.regions.values().cloned().collect::<Vec<_>>());
        let mut out: Vec<RegionView> = infos
            .into_iter()
            .map(|info| {
                let id = info.region.as_ref().map(|r| r.id).unwrap_or(0);
                let load = self.view.region_load(id);
                RegionView {
                    size_bytes: load.as_ref().map_or(0, |l| l.approximate_size_bytes),
                    pending: load.map(|l| l.pending_peers).unwrap_or_default(),
                    info,
                }
            })
            .collect();
        out.sort_by_key(|r| r.info.region.as_ref().map(|r| r.id));
        out
    }

    /// Regions whose replicas are all on Up or Disconnected stores: the
    /// others are the replica checker's to repair first.
    fn settled_regions(&self) -> Vec<RegionView> {
        let stores = self.store_views();
        let good = |id: &u64| {
            stores
                .get(id)
                .is_some_and(|s| matches!(s.state, StoreState::Up | StoreState::Disconnected))
        };
        self.region_views()
            .into_iter()
            .filter(|r| {
                r.info
                    .region
                    .iter()
                    .flat_map(|r| r.peers.iter())
                    .all(|p| good(&p.store_id))
            })
            .collect()
    }

    /// Every region as the merge checker needs it.
    fn merge_candidates(&self) -> Vec<Candidate> {
        let infos = self
            .raft
            .read_state(|s| s.regions.values().cloned().collect::<Vec<_>>());
        let now = Instant::now();
        infos
            .into_iter()
            .filter_map(|info| {
                let region = info.region?;
                let l = self.view.region_load(region.id);
                Some(Candidate {
                    leader: info.leader,
                    lagging: l
                        .as_ref()
                        .is_none_or(|l| !l.pending_peers.is_empty() || !l.down_peers.is_empty()),
                    size_bytes: l.as_ref().map_or(0, |l| l.approximate_size_bytes),
                    keys: l.as_ref().map_or(0, |l| l.approximate_keys),
                    size_measured: l.as_ref().is_some_and(|l| l.size_measured),
                    stable_for: self.view.range_stable_for(region.id, now),
                    busy: self.view.operators().is_busy(region.id),
                    region,
                })
            })
            .collect()
    }

    /// Starts merge-checker operators up to its limit: merges of small
    /// neighbours, and replica moves that make a merge possible.
    async fn check_merges(&self) {
        let limits = MergeLimits {
            max_size_bytes: self.config.max_merge_region_size_bytes,
            max_keys: self.config.max_merge_region_keys,
            split_merge_interval: Duration::from_millis(self.config.split_merge_interval_ms),
        };
        while self.may_schedule(MERGE_CHECKER) {
            let candidates = self.merge_candidates();
            let Some(plan) = merge_checker::check(
                &candidates,
                &self.store_views(),
                self.config.max_replicas,
                &limits,
            ) else {
                return;
            };
            let Some((source, planned)) = self.plan_merge(plan).await else {
                return;
            };
            if !self.start(&source, MERGE_CHECKER, planned).await {
                return;
            }
        }
    }

    /// The source region and the `merge-region` operator that carries out
    /// `plan`; `None` when no peer id could be allocated.
    async fn plan_merge(&self, plan: MergePlan) -> Option<(Region, Planned)> {
        let MergePlan {
            source,
            target,
            moves,
        } = plan;
        info!(
            source = source.id,
            target = target.id,
            replicas_to_move = moves.len(),
            "merge checker: merging small neighbours"
        );
        metrics::CHECKER_STEPS
            .with_label_values(&["merge-region"])
            .inc();
        let mut steps = Vec::new();
        // Once merged, every store loses the source's replica; its bytes
        // stay where the target has a replica (moved there first, when
        // the source had none) and leave the stores the source vacates.
        let w = self.region_weight(source.id);
        let mut influence: Vec<Influence> = source
            .peers
            .iter()
            .map(|p| {
                let stays = target.peers.iter().any(|t| t.store_id == p.store_id);
                Influence {
                    store_id: p.store_id,
                    regions: -1,
                    leaders: 0,
                    bytes: if stays { 0 } else { -w },
                }
            })
            .collect();
        influence.extend(moves.iter().map(|(_, to)| Influence {
            store_id: *to,
            regions: 0,
            leaders: 0,
            bytes: w,
        }));
        for (from, to) in moves {
            let new = self.new_learner(to).await?;
            steps.extend([
                operator::add_learner(new, 0),
                operator::promote(new, 0),
                operator::remove(from, 0),
            ]);
        }
        steps.push(operator::merge(target, 0));
        let planned = Planned {
            kind: "merge-region",
            steps,
            influence,
        };
        Some((source, planned))
    }
}
