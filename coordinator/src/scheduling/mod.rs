//! The leader's scheduling: turns what the replica checker, the balance
//! schedulers and the merge checker decide into operators, and hands their
//! steps out on region heartbeats. Two entry points drive it:
//!
//! - [`Scheduling::next_order`], on every region heartbeat: advance the
//!   region's operator, or ask the replica checker for one;
//! - [`Scheduling::round`], every `schedule_interval_ms`: time out late
//!   operators, end those of regions merged away, finish decommissions,
//!   check the routing table tiles, and run balance-leader, balance-region
//!   and the merge checker.
//!
//! Manual operators (`AddOperator`) are checked against the region's
//! current peers before they start ([`Scheduling::add_manual_operator`]).
//!
//! The decisions are pure and live apart ([`crate::checker`],
//! [`crate::balance`], [`crate::merge_checker`]); the operators in flight
//! are kept in the [`ClusterView`]; this module is the driver between them.
//!
//! # Layout
//! - `mod.rs`: [`Scheduling`], the names and limits of the checkers and
//!   schedulers, and what every source of operators shares (store views,
//!   ids, starting an operator).
//! - `heartbeat.rs`: [`Scheduling::next_order`], with the replica
//!   checker's operators.
//! - `round.rs`: [`Scheduling::round`]: the periodic work, one loop for
//!   both balance schedulers, and merges.
//! - `manual.rs`: [`Scheduling::add_manual_operator`].

mod heartbeat;
mod manual;
mod round;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use nokv_proto::coordinatorpb::{Operator, OperatorStep, Scheduler};
use nokv_proto::metapb::{Peer, PeerRole, Region};
use tracing::debug;

use crate::balance;
use crate::cluster_view::{ClusterView, StoreView};
use crate::config::CoordinatorConfig;
use crate::id_alloc::IdAllocator;
use crate::operator::Influence;
use crate::raft_loop::RaftHandle;

/// Name of the replica checker, as `nokv scheduler` shows it.
pub const REPLICA_CHECKER: &str = "replica-checker";
/// Name of the leader balancer.
pub const BALANCE_LEADER: &str = "balance-leader";
/// Name of the region balancer.
pub const BALANCE_REGION: &str = "balance-region";
/// Name of the merge checker.
pub const MERGE_CHECKER: &str = "merge-checker";
/// Every checker and scheduler that can be paused.
pub const ALL: [&str; 4] = [
    REPLICA_CHECKER,
    BALANCE_LEADER,
    BALANCE_REGION,
    MERGE_CHECKER,
];

/// Why a manual operator was refused: a request that does not fit the
/// cluster now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The operator's region is not in the routing table.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// The steps do not fit the region, its stores or its neighbours, or
    /// an id for them could not be allocated (then retrying helps).
    #[error("{0}")]
    Invalid(String),
}

/// The leader's scheduling.
pub struct Scheduling {
    /// Applied state (regions, stores, pauses) and replication.
    raft: RaftHandle,
    /// Ids for new peers and operators.
    ids: Arc<IdAllocator>,
    /// Loads, live store states and the operators in flight.
    view: Arc<ClusterView>,
    /// Limits and thresholds.
    config: CoordinatorConfig,
}

/// An operator about to start: its kind, its steps, and how it shifts
/// load between stores until it finishes.
struct Planned {
    kind: &'static str,
    steps: Vec<OperatorStep>,
    influence: Vec<Influence>,
}

impl Scheduling {
    /// Scheduling over the applied state of `raft` and the leader's `view`.
    pub fn new(
        raft: RaftHandle,
        ids: Arc<IdAllocator>,
        view: Arc<ClusterView>,
        config: CoordinatorConfig,
    ) -> Self {
        Scheduling {
            raft,
            ids,
            view,
            config,
        }
    }

    /// Every checker and scheduler with its pause flag, limit and operators
    /// in flight, as `GetSchedulers` answers.
    pub fn schedulers(&self) -> Vec<Scheduler> {
        let paused = self.raft.read_state(|s| s.paused_schedulers.clone());
        ALL.iter()
            .map(|name| Scheduler {
                name: name.to_string(),
                paused: paused.contains(*name),
                rate_limit_per_min: 0,
                max_in_flight: self.limit_of(name),
                in_flight: self.view.operators().in_flight(name) as u32,
            })
            .collect()
    }

    /// The limit of operators in flight of the checker or scheduler `name`.
    fn limit_of(&self, name: &str) -> u32 {
        match name {
            REPLICA_CHECKER => self.config.replica_schedule_limit,
            BALANCE_LEADER => self.config.leader_schedule_limit,
            BALANCE_REGION => self.config.region_schedule_limit,
            MERGE_CHECKER => self.config.merge_schedule_limit,
            _ => 0,
        }
    }

    fn paused(&self, name: &str) -> bool {
        self.raft.read_state(|s| s.paused_schedulers.contains(name))
    }

    /// Whether `name` may start another operator now: not paused, and
    /// below its limit.
    fn may_schedule(&self, name: &str) -> bool {
        !self.paused(name) && (self.view.operators().in_flight(name) as u32) < self.limit_of(name)
    }

    /// What region `id` weighs for balance-region (its leader's last count,
    /// at least the floor).
    fn region_weight(&self, id: u64) -> i64 {
        balance::weight(
            self.view
                .region_load(id)
                .map_or(0, |l| l.approximate_size_bytes),
        )
    }

    /// Every store with its live state and its replica and leader counts
    /// and replica bytes, operators in flight included.
    fn store_views(&self) -> HashMap<u64, StoreView> {
        let sizes = self.view.region_sizes();
        let (stores, counts) = self.raft.read_state(|s| {
            let mut counts: HashMap<u64, (i64, i64, i64)> = HashMap::new();
            for info in s.regions.values() {
                let w = info.region.as_ref().map_or(0, |r| {
                    balance::weight(sizes.get(&r.id).copied().unwrap_or(0))
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
        let influence = self.view.operators().influence();
        let ready = self.raft.leadership().ready_leader;
        let now = Instant::now();
        stores
            .iter()
            .map(|s| {
                let (regions, leaders, size) = counts.get(&s.id).copied().unwrap_or_default();
                let i = influence.get(&s.id).copied().unwrap_or_default();
                (
                    s.id,
                    StoreView {
                        id: s.id,
                        state: self.view.live_state(s, ready, now).0,
                        regions: regions + i.regions,
                        leaders: leaders + i.leaders,
                        size: size + i.bytes,
                    },
                )
            })
            .collect()
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

    /// A new learner peer on `store_id`, with a fresh id.
    async fn new_learner(&self, store_id: u64) -> Option<Peer> {
        Some(Peer {
            id: self.alloc_id().await?,
            store_id,
            role: PeerRole::Learner as i32,
        })
    }

    /// Starts the `planned` operator of `source` on `region`; false when
    /// no id was left or the region is busy.
    async fn start(&self, region: &Region, source: &str, planned: Planned) -> bool {
        let Some(id) = self.alloc_id().await else {
            return false;
        };
        let op = Operator {
            id,
            region_id: region.id,
            kind: planned.kind.to_string(),
            source: source.to_string(),
            steps: planned.steps,
            ..Default::default()
        };
        self.view
            .operators()
            .add(op, region.epoch.unwrap_or_default(), planned.influence)
            .is_ok()
    }
}

/// A store gaining a replica of `bytes`.
fn gain(store_id: u64, bytes: i64) -> Influence {
    Influence {
        store_id,
        regions: 1,
        leaders: 0,
        bytes,
    }
}

/// A store losing a replica of `bytes`.
fn loss(store_id: u64, bytes: i64) -> Influence {
    Influence {
        store_id,
        regions: -1,
        leaders: 0,
        bytes: -bytes,
    }
}
