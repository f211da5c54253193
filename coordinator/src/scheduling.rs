//! The leader's scheduling: turns checker and scheduler decisions into
//! operators and hands their steps out on region heartbeats. Two entry
//! points drive it:
//!
//! - [`CoordinatorService::next_order`], on every region heartbeat:
//!   advance the region's operator, or ask the replica checker for one;
//! - [`CoordinatorService::schedule_round`], every `schedule_interval_ms`:
//!   time out late operators, end those of regions merged away, finish
//!   decommissions, check the routing table tiles, and run balance-leader,
//!   balance-region and the merge checker.
//!
//! Manual operators (`AddOperator`) are validated here against the
//! region's current peers before they start.

use std::collections::HashMap;
use std::time::Instant;

use nokv_proto::coordinatorpb::{
    change_peer, coordinator_command, operator_step::Step, AddOperatorRequest, CoordinatorCommand,
    ErrorType, Operator, OperatorStep, RegionHeartbeatRequest,
};
use nokv_proto::metapb::{Peer, PeerRole, Region, StoreState};
use tracing::{debug, info};

use crate::checker::{self, Plan, StoreView};
use crate::invariant;
use crate::merge_checker::{self, Candidate, MergeLimits, MergePlan};
use crate::metrics;
use crate::operator::{self, Influence, Order};
use crate::scheduler::{
    self, RegionView, BALANCE_LEADER, BALANCE_REGION, MERGE_CHECKER, REPLICA_CHECKER,
};
use crate::service::{err, CoordinatorService};

/// Why a manual operator was refused: a request that does not fit the
/// cluster now, answered in the response header.
pub type Refusal = nokv_proto::coordinatorpb::Error;

fn invalid(msg: impl Into<String>) -> Refusal {
    err(ErrorType::InvalidArgument, msg)
}

impl CoordinatorService {
    /// What region `id` weighs for balance-region (its leader's last count,
    /// at least the floor).
    fn region_weight(&self, id: u64) -> i64 {
        scheduler::weight(
            self.region_load
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .map_or(0, |l| l.approximate_size_bytes),
        )
    }

    /// Every store with its live state and its replica and leader counts
    /// and replica bytes, operators in flight included.
    pub(crate) fn store_views(&self) -> HashMap<u64, StoreView> {
        let sizes: HashMap<u64, u64> = self
            .region_load
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, l)| (*id, l.approximate_size_bytes))
            .collect();
        let (stores, counts) = self.raft.read_state(|s| {
            let mut counts: HashMap<u64, (i64, i64, i64)> = HashMap::new();
            for info in s.regions.values() {
                let w = info.region.as_ref().map_or(0, |r| {
                    scheduler::weight(sizes.get(&r.id).copied().unwrap_or(0))
                });
                for p in info.region.iter().flat_map(|r| r.peers.iter()) {
                    let c = counts.entry(p.store_id).or_default();
                    c.0 += 1;
                    c.2 += w;
                }
                if let Some(l) = info.leader {
                    counts.entry(l.store_id).or_default().1 += 1;
                }
            }
            (s.stores.values().cloned().collect::<Vec<_>>(), counts)
        });
        let influence = self.operators.influence();
        stores
            .iter()
            .map(|s| {
                let (regions, leaders, size) = counts.get(&s.id).copied().unwrap_or_default();
                let i = influence.get(&s.id).copied().unwrap_or_default();
                (
                    s.id,
                    StoreView {
                        id: s.id,
                        state: self.live_state(s).0,
                        regions: regions + i.regions,
                        leaders: leaders + i.leaders,
                        size: size + i.bytes,
                    },
                )
            })
            .collect()
    }

    fn paused(&self, name: &str) -> bool {
        self.raft.read_state(|s| s.paused_schedulers.contains(name))
    }

    /// The limit of operators in flight of the checker or scheduler `name`.
    pub(crate) fn limit_of(&self, name: &str) -> u32 {
        match name {
            REPLICA_CHECKER => self.config.replica_schedule_limit,
            BALANCE_LEADER => self.config.leader_schedule_limit,
            BALANCE_REGION => self.config.region_schedule_limit,
            MERGE_CHECKER => self.config.merge_schedule_limit,
            _ => 0,
        }
    }

    fn may_schedule(&self, name: &str) -> bool {
        !self.paused(name) && (self.operators.in_flight(name) as u32) < self.limit_of(name)
    }

    async fn alloc_id(&self) -> Option<u64> {
        match self.ids.alloc(1).await {
            Ok(id) => Some(id),
            Err(e) => {
                debug!(err = %e, "no id for an operator");
                None
            }
        }
    }

    /// Starts an operator on `region` made of `steps`.
    async fn start(
        &self,
        region: &Region,
        kind: &str,
        source: &str,
        steps: Vec<OperatorStep>,
        influence: Vec<Influence>,
    ) -> bool {
        let Some(id) = self.alloc_id().await else {
            return false;
        };
        let op = Operator {
            id,
            region_id: region.id,
            kind: kind.to_string(),
            source: source.to_string(),
            steps,
            ..Default::default()
        };
        self.operators
            .add(op, region.epoch.unwrap_or_default(), influence)
            .is_ok()
    }

    /// The step the region's leader should run now: its operator's current
    /// step, or the first step of a new replica checker operator.
    pub(crate) async fn next_order(&self, hb: &RegionHeartbeatRequest) -> Option<(u64, Order)> {
        let region = hb.region.as_ref()?;
        let now = Instant::now();
        let leader = hb.leader.as_ref();
        let stores = self.store_views();
        let avoid: Vec<u64> = stores
            .values()
            .filter(|s| !matches!(s.state, StoreState::Up | StoreState::Disconnected))
            .map(|s| s.id)
            .collect();
        if self.operators.is_busy(region.id)
            && !self.operators.cancel_if_targeting(region.id, &avoid)
        {
            let order = self
                .operators
                .on_heartbeat(region, leader, &hb.pending_peers, &avoid, now);
            // An operator this heartbeat finished lets the checker plan the
            // next one now rather than a heartbeat later (which a sleeping
            // region sends ten times less often).
            if order.is_some() || self.operators.is_busy(region.id) {
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
        let timeout = 0;
        let w = self.region_weight(region.id);
        let (kind, steps, influence) = match plan {
            Plan::AddReplica { store_id } => {
                let new = self.new_learner(store_id).await?;
                (
                    "add-replica",
                    vec![
                        operator::add_learner(new, timeout),
                        operator::promote(new, timeout),
                    ],
                    vec![gain(store_id, w)],
                )
            }
            Plan::Promote(peer) => (
                "promote-learner",
                vec![operator::promote(peer, timeout)],
                vec![],
            ),
            Plan::Replace { old, store_id } => {
                let new = self.new_learner(store_id).await?;
                (
                    "replace-replica",
                    vec![
                        operator::add_learner(new, timeout),
                        operator::promote(new, timeout),
                        operator::remove(old, timeout),
                    ],
                    vec![gain(store_id, w), loss(old.store_id, w)],
                )
            }
            Plan::Remove { peer, why } => (
                why,
                vec![operator::remove(peer, timeout)],
                vec![loss(peer.store_id, w)],
            ),
        };
        metrics::CHECKER_STEPS.with_label_values(&[kind]).inc();
        if !self
            .start(region, kind, REPLICA_CHECKER, steps, influence)
            .await
        {
            return None;
        }
        self.operators
            .on_heartbeat(region, leader, &hb.pending_peers, &avoid, now)
    }

    async fn new_learner(&self, store_id: u64) -> Option<Peer> {
        Some(Peer {
            id: self.alloc_id().await?,
            store_id,
            role: PeerRole::Learner as i32,
        })
    }

    /// One scheduling round on the leader; does nothing on a follower.
    pub async fn schedule_round(&self) {
        if self.check_leader().is_some() {
            return;
        }
        // Merges that finished count as such before any timeout is judged.
        let known: std::collections::HashSet<u64> = self
            .raft
            .read_state(|s| s.regions.keys().copied().collect());
        self.operators.vanished(|id| known.contains(&id));
        for op in self.operators.expire(Instant::now()) {
            debug!(operator_id = op.id, "operator timed out");
        }
        self.range_ages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| known.contains(id));
        self.finish_decommissions().await;
        self.check_tiling();
        self.balance_leaders().await;
        self.balance_regions().await;
        self.check_merges().await;
    }

    /// Every region as the merge checker needs it.
    fn merge_candidates(&self) -> Vec<Candidate> {
        let infos = self
            .raft
            .read_state(|s| s.regions.values().cloned().collect::<Vec<_>>());
        let load = self.region_load.lock().unwrap_or_else(|p| p.into_inner());
        let ages = self.range_ages.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        infos
            .into_iter()
            .filter_map(|info| {
                let region = info.region?;
                let l = load.get(&region.id);
                Some(Candidate {
                    leader: info.leader,
                    lagging: l
                        .is_none_or(|l| !l.pending_peers.is_empty() || !l.down_peers.is_empty()),
                    size_bytes: l.map_or(0, |l| l.approximate_size_bytes),
                    keys: l.map_or(0, |l| l.approximate_keys),
                    size_measured: l.is_some_and(|l| l.size_measured),
                    stable_for: ages.get(&region.id).map_or(std::time::Duration::ZERO, |a| {
                        now.saturating_duration_since(a.since)
                    }),
                    busy: self.operators.is_busy(region.id),
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
            split_merge_interval: std::time::Duration::from_millis(
                self.config.split_merge_interval_ms,
            ),
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
                let Some(new) = self.new_learner(to).await else {
                    return;
                };
                steps.extend([
                    operator::add_learner(new, 0),
                    operator::promote(new, 0),
                    operator::remove(from, 0),
                ]);
            }
            steps.push(operator::merge(target, 0));
            let started = self
                .start(&source, "merge-region", MERGE_CHECKER, steps, influence)
                .await;
            if !started {
                return;
            }
        }
    }

    fn region_views(&self) -> Vec<RegionView> {
        let infos = self
            .raft
            .read_state(|s| s.regions.values().cloned().collect::<Vec<_>>());
        let load = self.region_load.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<RegionView> = infos
            .into_iter()
            .map(|info| {
                let id = info.region.as_ref().map(|r| r.id).unwrap_or(0);
                RegionView {
                    pending: load
                        .get(&id)
                        .map(|l| l.pending_peers.clone())
                        .unwrap_or_default(),
                    size_bytes: load.get(&id).map_or(0, |l| l.approximate_size_bytes),
                    info,
                }
            })
            .collect();
        out.sort_by_key(|r| r.info.region.as_ref().map(|r| r.id));
        out
    }

    /// Regions whose replicas are all on Up or Disconnected stores: the
    /// others are the replica checker's to repair first.
    fn region_views_needing_no_repair(&self) -> Vec<RegionView> {
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

    async fn balance_leaders(&self) {
        while self.may_schedule(BALANCE_LEADER) {
            let regions = self.region_views_needing_no_repair();
            let Some(m) = scheduler::balance_leader(
                &self.store_views(),
                &regions,
                |id| self.operators.is_busy(id),
                self.config.max_replicas,
            ) else {
                return;
            };
            let Some(region) = regions
                .iter()
                .find_map(|r| r.info.region.clone().filter(|r| r.id == m.region_id))
            else {
                return;
            };
            let influence = vec![
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
            ];
            if !self
                .start(
                    &region,
                    "transfer-leader",
                    BALANCE_LEADER,
                    vec![operator::transfer_leader(m.to, 0)],
                    influence,
                )
                .await
            {
                return;
            }
        }
    }

    async fn balance_regions(&self) {
        while self.may_schedule(BALANCE_REGION) {
            let regions = self.region_views_needing_no_repair();
            let Some(m) = scheduler::balance_region(
                &self.store_views(),
                &regions,
                |id| self.operators.is_busy(id),
                self.config.max_replicas,
            ) else {
                return;
            };
            let Some(region) = regions
                .iter()
                .find_map(|r| r.info.region.clone().filter(|r| r.id == m.region_id))
            else {
                return;
            };
            let Some(new) = self.new_learner(m.to_store).await else {
                return;
            };
            let steps = vec![
                operator::add_learner(new, 0),
                operator::promote(new, 0),
                operator::remove(m.from, 0),
            ];
            let influence = vec![gain(m.to_store, m.bytes), loss(m.from.store_id, m.bytes)];
            if !self
                .start(&region, "move-replica", BALANCE_REGION, steps, influence)
                .await
            {
                return;
            }
        }
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
            match self
                .raft
                .propose(CoordinatorCommand {
                    cmd: Some(coordinator_command::Cmd::PutStore(store)),
                })
                .await
            {
                Ok(_) => info!(store_id = id, "store decommissioned: now a tombstone"),
                Err(e) => debug!(store_id = id, err = %e, "tombstone not recorded yet"),
            }
        }
    }

    /// Counts a gap in the routing table once it outlives the grace period.
    fn check_tiling(&self) {
        let gaps = self.raft.read_state(invariant::tiling_gaps);
        let mut hole = self.hole.lock().unwrap_or_else(|p| p.into_inner());
        if gaps.is_empty() {
            *hole = None;
            return;
        }
        match hole.as_mut() {
            Some((seen, since, counted)) if *seen == gaps => {
                if !*counted && since.elapsed() > invariant::HOLE_GRACE {
                    *counted = true;
                    invariant::record(
                        "range_hole",
                        &format!("the regions do not tile the key space: {gaps:?}"),
                    );
                }
            }
            _ => *hole = Some((gaps, Instant::now(), false)),
        }
    }

    /// Checks a manual operator against the region's current peers, fills
    /// in peer ids left 0, and starts it.
    ///
    /// # Errors
    /// Anything that does not fit the region, as a header error.
    pub(crate) async fn add_manual_operator(
        &self,
        req: AddOperatorRequest,
    ) -> Result<Operator, Refusal> {
        if let Some(e) = self.check_leader() {
            return Err(e);
        }
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
            return Err(err(
                ErrorType::NotFound,
                format!("region {} not found", req.region_id),
            ));
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
        self.operators
            .add(op, region.epoch.unwrap_or_default(), vec![])
            .map_err(|e| err(ErrorType::InvalidArgument, e.to_string()))
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

fn gain(store_id: u64, bytes: i64) -> Influence {
    Influence {
        store_id,
        regions: 1,
        leaders: 0,
        bytes,
    }
}

fn loss(store_id: u64, bytes: i64) -> Influence {
    Influence {
        store_id,
        regions: -1,
        leaders: 0,
        bytes: -bytes,
    }
}
