//! Operators: the coordinator's only way of changing a region. An operator
//! is a list of steps (add learner, promote, remove peer, transfer leader,
//! split), run one at a time by the region's leader. This module owns the
//! in-flight operators and a ring of recent finished ones; it does not
//! decide what to schedule (the checkers and schedulers do) and it does not
//! talk to stores (the step to run rides on the region heartbeat response).
//!
//! A step is never acknowledged by the store: it is judged finished from
//! later heartbeats (the peer is there, is a voter, is gone, the leader
//! moved, the version went up) or, for a merge, from the source region
//! leaving the routing table. A step that is not finished within its
//! timeout ends the operator as `TimedOut`. While a merge runs, its target
//! counts as busy too, so nothing else changes the target under it.
//!
//! Operators live in the leader's memory only: a new coordinator leader
//! starts with none, and the checkers recreate whatever is still needed
//! from the regions' actual state.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nokv_proto::coordinatorpb::{
    change_peer, operator_step::Step, ChangePeer, MergeRegion, Operator, OperatorState,
    OperatorStep, RegionHeartbeatResponse, TransferLeader,
};
use nokv_proto::metapb::{Peer, PeerRole, Region, RegionEpoch};
use tracing::info;

use crate::metrics;
use nokv_proto::poison::MutexExt;

/// Finished operators kept for `GetOperators` with history.
pub const HISTORY_LEN: usize = 256;

/// A step still unfinished is handed to the leader again after this long
/// (its heartbeat response may have been lost, or the leader refused it
/// for a passing reason). Splits are never sent twice.
const RESEND_AFTER: Duration = Duration::from_secs(3);

/// Why an operator could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// The region already has an operator in flight; one at a time.
    #[error("region {region_id} already has operator {operator_id} in flight")]
    RegionBusy {
        /// The region.
        region_id: u64,
        /// Its running operator.
        operator_id: u64,
    },
    /// The operator has no steps.
    #[error("an operator needs at least one step")]
    Empty,
}

/// How a running operator shifts load between stores until it finishes,
/// so schedulers planning meanwhile do not pile onto the same store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Influence {
    /// Store affected.
    pub store_id: u64,
    /// Replicas it gains (negative: loses).
    pub regions: i64,
    /// Leaders it gains (negative: loses).
    pub leaders: i64,
    /// Replica bytes it gains (negative: loses), as balance-region weighs
    /// them.
    pub bytes: i64,
}

struct Running {
    op: Operator,
    step_started: Instant,
    /// The region's epoch when the current step started (a split step is
    /// finished once the version moved past it).
    step_epoch: RegionEpoch,
    last_sent: Option<Instant>,
    influence: Vec<Influence>,
}

#[derive(Default)]
struct Inner {
    running: BTreeMap<u64, Running>,
    history: VecDeque<Operator>,
}

/// The operators of one coordinator leader.
#[derive(Default)]
pub struct Operators {
    inner: Mutex<Inner>,
    default_step_timeout: Duration,
}

/// What the current step asks of the region leader now.
#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// A membership change.
    ChangePeer(ChangePeer),
    /// Move leadership to this peer.
    TransferLeader(Peer),
    /// Split the region.
    Split(nokv_proto::coordinatorpb::SplitRegion),
    /// Merge the region into an adjacent one.
    Merge(MergeRegion),
}

impl Order {
    /// Writes the order into a heartbeat response.
    pub fn fill(self, operator_id: u64, resp: &mut RegionHeartbeatResponse) {
        resp.operator_id = operator_id;
        match self {
            Order::ChangePeer(c) => resp.change_peer = Some(c),
            Order::TransferLeader(p) => {
                resp.transfer_leader = Some(TransferLeader { peer: Some(p) })
            }
            Order::Split(s) => resp.split_region = Some(s),
            Order::Merge(m) => resp.merge = Some(m),
        }
    }
}

enum Judgement {
    Done,
    Pending,
    Failed(String),
}

/// The step that adds `peer` as a learner.
pub fn add_learner(peer: Peer, timeout_ms: u64) -> OperatorStep {
    change_step(
        change_peer::Kind::AddLearner,
        peer,
        PeerRole::Learner,
        timeout_ms,
    )
}

/// The step that promotes the learner `peer` to voter.
pub fn promote(peer: Peer, timeout_ms: u64) -> OperatorStep {
    change_step(
        change_peer::Kind::AddVoter,
        peer,
        PeerRole::Voter,
        timeout_ms,
    )
}

/// The step that removes `peer` (leadership is moved off it first).
pub fn remove(peer: Peer, timeout_ms: u64) -> OperatorStep {
    let role = peer.role();
    change_step(change_peer::Kind::Remove, peer, role, timeout_ms)
}

/// The step that moves leadership to `peer`.
pub fn transfer_leader(peer: Peer, timeout_ms: u64) -> OperatorStep {
    OperatorStep {
        step: Some(Step::TransferLeader(TransferLeader { peer: Some(peer) })),
        timeout_ms,
    }
}

fn change_step(
    kind: change_peer::Kind,
    peer: Peer,
    role: PeerRole,
    timeout_ms: u64,
) -> OperatorStep {
    OperatorStep {
        step: Some(Step::ChangePeer(ChangePeer {
            kind: kind as i32,
            peer: Some(Peer {
                role: role as i32,
                ..peer
            }),
        })),
        timeout_ms,
    }
}

/// The step that merges the operator's region into `target`.
pub fn merge(target: Region, timeout_ms: u64) -> OperatorStep {
    OperatorStep {
        step: Some(Step::Merge(MergeRegion {
            target: Some(target),
        })),
        timeout_ms,
    }
}

/// The region a merge step folds its region into.
fn merge_target(step: &OperatorStep) -> Option<u64> {
    match &step.step {
        Some(Step::Merge(m)) => m.target.as_ref().map(|t| t.id),
        _ => None,
    }
}

/// A short human description of a step, for logs and the CLI.
pub fn describe_step(step: &OperatorStep) -> String {
    match &step.step {
        Some(Step::ChangePeer(c)) => {
            let p = c.peer.unwrap_or_default();
            let what = match c.kind() {
                change_peer::Kind::AddLearner => "add learner",
                change_peer::Kind::AddVoter => "promote learner",
                change_peer::Kind::Remove => "remove peer",
            };
            format!("{what} {} on store {}", p.id, p.store_id)
        }
        Some(Step::TransferLeader(t)) => {
            let p = t.peer.unwrap_or_default();
            format!("transfer leader to peer {} on store {}", p.id, p.store_id)
        }
        Some(Step::SplitRegion(s)) if s.half => "split in half".to_string(),
        Some(Step::SplitRegion(s)) => {
            format!("split at {:?}", String::from_utf8_lossy(&s.split_key))
        }
        Some(Step::Merge(m)) => format!(
            "merge into region {}",
            m.target.as_ref().map_or(0, |t| t.id)
        ),
        None => "empty step".to_string(),
    }
}

fn judge(
    step: &OperatorStep,
    region: &Region,
    leader: Option<&Peer>,
    epoch: &RegionEpoch,
) -> Judgement {
    let find = |id: u64| region.peers.iter().find(|p| p.id == id);
    match &step.step {
        Some(Step::ChangePeer(c)) => {
            let target = c.peer.unwrap_or_default();
            match c.kind() {
                change_peer::Kind::AddLearner => match find(target.id) {
                    Some(_) => Judgement::Done,
                    // Membership moved on without the learner: it was added
                    // and removed again, or another change won. Sending the
                    // same peer id again would re-add a replica its store
                    // already tombstoned, which can never catch up.
                    None if region.epoch.unwrap_or_default().conf_ver > epoch.conf_ver => {
                        Judgement::Failed(format!(
                            "membership changed (conf_ver {} → {}) without learner {}",
                            epoch.conf_ver,
                            region.epoch.unwrap_or_default().conf_ver,
                            target.id
                        ))
                    }
                    None => Judgement::Pending,
                },
                change_peer::Kind::AddVoter => match find(target.id) {
                    Some(p) if p.role() == PeerRole::Voter => Judgement::Done,
                    Some(_) => Judgement::Pending,
                    None => Judgement::Failed(format!(
                        "peer {} left the region before its promotion",
                        target.id
                    )),
                },
                change_peer::Kind::Remove => match find(target.id) {
                    Some(_) => Judgement::Pending,
                    None => Judgement::Done,
                },
            }
        }
        Some(Step::TransferLeader(t)) => {
            let target = t.peer.unwrap_or_default();
            if leader.is_some_and(|l| l.store_id == target.store_id) {
                Judgement::Done
            } else {
                Judgement::Pending
            }
        }
        Some(Step::SplitRegion(_)) => {
            if region.epoch.unwrap_or_default().version > epoch.version {
                Judgement::Done
            } else {
                Judgement::Pending
            }
        }
        // Done when the source leaves the routing table (see `vanished`).
        Some(Step::Merge(_)) => Judgement::Pending,
        None => Judgement::Done,
    }
}

/// The order for `step` given the region's state, or `None` to wait (a
/// learner still catching up, no voter to hand leadership to).
fn order_for(
    step: &OperatorStep,
    region: &Region,
    leader: Option<&Peer>,
    pending: &[Peer],
    avoid: &[u64],
) -> Option<Order> {
    let is_pending = |id: u64| pending.iter().any(|p| p.id == id);
    match &step.step {
        Some(Step::ChangePeer(c)) => {
            let target = c.peer.unwrap_or_default();
            match c.kind() {
                change_peer::Kind::AddVoter if is_pending(target.id) => None,
                change_peer::Kind::Remove if leader.is_some_and(|l| l.id == target.id) => {
                    // A leader does not remove itself: hand leadership to a
                    // caught-up voter first (on a healthy store if there is
                    // one), then the removal follows.
                    let candidates = || {
                        region.peers.iter().filter(|p| {
                            p.id != target.id && p.role() == PeerRole::Voter && !is_pending(p.id)
                        })
                    };
                    candidates()
                        .find(|p| !avoid.contains(&p.store_id))
                        .or_else(|| candidates().next())
                        .map(|p| Order::TransferLeader(*p))
                }
                _ => Some(Order::ChangePeer(*c)),
            }
        }
        Some(Step::TransferLeader(t)) => {
            let target = t.peer.unwrap_or_default();
            // Aim at the peer the region has on that store now.
            let peer = region
                .peers
                .iter()
                .find(|p| p.store_id == target.store_id)
                .copied()
                .unwrap_or(target);
            Some(Order::TransferLeader(peer))
        }
        Some(Step::SplitRegion(s)) => Some(Order::Split(s.clone())),
        Some(Step::Merge(m)) => Some(Order::Merge(m.clone())),
        None => None,
    }
}

impl Operators {
    /// An empty set; steps without their own timeout get `default_step_timeout`.
    pub fn new(default_step_timeout: Duration) -> Self {
        Operators {
            inner: Mutex::new(Inner::default()),
            default_step_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }

    /// Starts `op` on its region (`epoch` is the region's current epoch).
    ///
    /// # Errors
    /// The region already has an operator, or `op` has no steps.
    pub fn add(
        &self,
        mut op: Operator,
        epoch: RegionEpoch,
        influence: Vec<Influence>,
    ) -> Result<Operator, AddError> {
        if op.steps.is_empty() {
            return Err(AddError::Empty);
        }
        let mut inner = self.lock();
        let targets: Vec<u64> = op.steps.iter().filter_map(merge_target).collect();
        for region_id in std::iter::once(op.region_id).chain(targets) {
            if let Some(operator_id) = busy_with(&inner, region_id) {
                return Err(AddError::RegionBusy {
                    region_id,
                    operator_id,
                });
            }
        }
        op.state = OperatorState::Running as i32;
        op.current_step = 0;
        op.created_at_ms = crate::tso::now_ms();
        for s in &mut op.steps {
            if s.timeout_ms == 0 {
                s.timeout_ms = self.default_step_timeout.as_millis() as u64;
            }
        }
        info!(
            region_id = op.region_id,
            operator_id = op.id,
            kind = %op.kind,
            source = %op.source,
            steps = ?op.steps.iter().map(describe_step).collect::<Vec<_>>(),
            "operator created"
        );
        metrics::OPERATORS
            .with_label_values(&[&op.source, &op.kind, "created"])
            .inc();
        inner.running.insert(
            op.region_id,
            Running {
                op: op.clone(),
                step_started: Instant::now(),
                step_epoch: epoch,
                last_sent: None,
                influence,
            },
        );
        Ok(op)
    }

    /// Whether `region_id` has an operator in flight, or a running merge
    /// folds another region into it.
    pub fn is_busy(&self, region_id: u64) -> bool {
        busy_with(&self.lock(), region_id).is_some()
    }

    /// Ends the operators of regions that left the routing table: a merge
    /// step in progress succeeded (its source was absorbed); any other
    /// step can never finish.
    pub fn vanished(&self, exists: impl Fn(u64) -> bool) -> Vec<Operator> {
        let mut inner = self.lock();
        let gone: Vec<(u64, bool)> = inner
            .running
            .iter()
            .filter(|(id, _)| !exists(**id))
            .map(|(id, r)| {
                let merging =
                    r.op.steps
                        .get(r.op.current_step as usize)
                        .and_then(merge_target)
                        .is_some();
                (*id, merging)
            })
            .collect();
        gone.into_iter()
            .map(|(region_id, merged)| {
                if merged {
                    finish(
                        &mut inner,
                        region_id,
                        OperatorState::Succeeded,
                        String::new(),
                    )
                } else {
                    finish(
                        &mut inner,
                        region_id,
                        OperatorState::Failed,
                        format!("region {region_id} left the routing table"),
                    )
                }
            })
            .collect()
    }

    /// Operators in flight created by `source`.
    pub fn in_flight(&self, source: &str) -> usize {
        self.lock()
            .running
            .values()
            .filter(|r| r.op.source == source)
            .count()
    }

    /// The summed influence of every operator in flight, by store.
    pub fn influence(&self) -> HashMap<u64, Influence> {
        let mut out: HashMap<u64, Influence> = HashMap::new();
        for r in self.lock().running.values() {
            for i in &r.influence {
                let e = out.entry(i.store_id).or_insert(Influence {
                    store_id: i.store_id,
                    ..Default::default()
                });
                e.regions += i.regions;
                e.leaders += i.leaders;
                e.bytes += i.bytes;
            }
        }
        out
    }

    /// Operators in flight (and, with `history`, recently finished ones,
    /// newest last), for `region_id` or every region when it is 0.
    pub fn list(&self, region_id: u64, history: bool) -> Vec<Operator> {
        let inner = self.lock();
        let wanted = |op: &Operator| region_id == 0 || op.region_id == region_id;
        let mut out: Vec<Operator> = Vec::new();
        if history {
            out.extend(inner.history.iter().filter(|o| wanted(o)).cloned());
        }
        out.extend(
            inner
                .running
                .values()
                .map(|r| &r.op)
                .filter(|o| wanted(o))
                .cloned(),
        );
        out
    }

    /// Cancels the operator `id` if it is in flight; returns it as it ended.
    /// A step already handed to the leader may still complete there; no
    /// further step is handed out.
    pub fn cancel(&self, id: u64, why: &str) -> Option<Operator> {
        let mut inner = self.lock();
        let region_id = inner.running.values().find(|r| r.op.id == id)?.op.region_id;
        Some(finish(
            &mut inner,
            region_id,
            OperatorState::Cancelled,
            why.to_string(),
        ))
    }

    /// Cancels every operator in flight (this member stopped leading, or
    /// starts a new term).
    pub fn cancel_all(&self, why: &str) {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner.running.keys().copied().collect();
        for region_id in ids {
            finish(
                &mut inner,
                region_id,
                OperatorState::Cancelled,
                why.to_string(),
            );
        }
    }

    /// Cancels the region's operator if a step not yet finished would put
    /// a replica or leadership on one of the `bad` stores (it went Down or
    /// Offline meanwhile); returns whether it did. Removing a replica from
    /// such a store is fine and keeps the operator.
    pub fn cancel_if_targeting(&self, region_id: u64, bad: &[u64]) -> bool {
        let mut inner = self.lock();
        let Some(r) = inner.running.get(&region_id) else {
            return false;
        };
        let hit = r.op.steps[(r.op.current_step as usize).min(r.op.steps.len())..]
            .iter()
            .find_map(|step| {
                match &step.step {
                    Some(Step::ChangePeer(c)) if c.kind() != change_peer::Kind::Remove => c.peer,
                    Some(Step::TransferLeader(t)) => t.peer,
                    _ => None,
                }
                .filter(|p| bad.contains(&p.store_id))
            });
        let Some(p) = hit else {
            return false;
        };
        finish(
            &mut inner,
            region_id,
            OperatorState::Cancelled,
            format!("store {} is no longer Up", p.store_id),
        );
        true
    }

    /// Ends operators whose current step ran past its timeout; returns them.
    pub fn expire(&self, now: Instant) -> Vec<Operator> {
        let mut inner = self.lock();
        let late: Vec<(u64, String)> = inner
            .running
            .iter()
            .filter_map(|(region_id, r)| {
                let step = r.op.steps.get(r.op.current_step as usize)?;
                (now.saturating_duration_since(r.step_started)
                    > Duration::from_millis(step.timeout_ms))
                .then(|| {
                    (
                        *region_id,
                        format!(
                            "step {} ({}) did not finish within {} ms",
                            r.op.current_step,
                            describe_step(step),
                            step.timeout_ms
                        ),
                    )
                })
            })
            .collect();
        late.into_iter()
            .map(|(region_id, why)| finish(&mut inner, region_id, OperatorState::TimedOut, why))
            .collect()
    }

    /// Advances the region's operator from what its leader reports and
    /// returns the step to run now, with the operator's id. Leadership
    /// moved off a peer being removed avoids the stores in `avoid` (Down,
    /// Offline) when it can.
    pub fn on_heartbeat(
        &self,
        region: &Region,
        leader: Option<&Peer>,
        pending: &[Peer],
        avoid: &[u64],
        now: Instant,
    ) -> Option<(u64, Order)> {
        let mut inner = self.lock();
        let r = inner.running.get_mut(&region.id)?;
        loop {
            let Some(step) = r.op.steps.get(r.op.current_step as usize) else {
                finish(
                    &mut inner,
                    region.id,
                    OperatorState::Succeeded,
                    String::new(),
                );
                return None;
            };
            match judge(step, region, leader, &r.step_epoch) {
                Judgement::Done => {
                    r.op.current_step += 1;
                    r.step_started = now;
                    r.step_epoch = region.epoch.unwrap_or_default();
                    r.last_sent = None;
                }
                Judgement::Failed(why) => {
                    finish(&mut inner, region.id, OperatorState::Failed, why);
                    return None;
                }
                Judgement::Pending => break,
            }
        }
        let step = r.op.steps.get(r.op.current_step as usize)?;
        if now.saturating_duration_since(r.step_started) > Duration::from_millis(step.timeout_ms) {
            // `expire` reports it on its next round.
            return None;
        }
        let is_split = matches!(step.step, Some(Step::SplitRegion(_)));
        if let Some(sent) = r.last_sent {
            if is_split || now.saturating_duration_since(sent) < RESEND_AFTER {
                return None;
            }
        }
        let order = order_for(step, region, leader, pending, avoid)?;
        r.last_sent = Some(now);
        Some((r.op.id, order))
    }
}

/// The operator that keeps `region_id` busy: its own, or a running merge
/// into it.
fn busy_with(inner: &Inner, region_id: u64) -> Option<u64> {
    if let Some(r) = inner.running.get(&region_id) {
        return Some(r.op.id);
    }
    inner
        .running
        .values()
        .find(|r| {
            r.op.steps[(r.op.current_step as usize).min(r.op.steps.len())..]
                .iter()
                .any(|s| merge_target(s) == Some(region_id))
        })
        .map(|r| r.op.id)
}

fn finish(inner: &mut Inner, region_id: u64, state: OperatorState, message: String) -> Operator {
    let Some(r) = inner.running.remove(&region_id) else {
        return Operator::default();
    };
    let mut op = r.op;
    op.state = state as i32;
    op.finished_at_ms = crate::tso::now_ms();
    op.message = message;
    info!(
        region_id,
        operator_id = op.id,
        kind = %op.kind,
        state = state.as_str_name(),
        message = %op.message,
        "operator finished"
    );
    metrics::OPERATORS
        .with_label_values(&[&op.source, &op.kind, state.as_str_name()])
        .inc();
    if inner.history.len() >= HISTORY_LEN {
        inner.history.pop_front();
    }
    inner.history.push_back(op.clone());
    op
}

#[cfg(test)]
mod tests;
