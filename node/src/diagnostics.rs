//! Execution diagnostics: how the store decided on recent requests and where
//! its topology changes stand. Per region it keeps the last admission
//! outcome of each request class (read, write, topology) with its reason;
//! it tracks each topology transition (split, peer change, leader transfer)
//! through planned → proposed → applied → reported, or failed with why; and
//! it remembers the restart posture. `nokv execution` shows all of it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use nokv_proto::adminpb::{
    Admission, RegionExecution, RequestClass, RestartPosture, Transition, TransitionStage,
};
use nokv_proto::errorpb::{region_error::Kind, RegionError};
use nokv_proto::poison::MutexExt;

/// Transitions kept for inspection; older ones are dropped.
const MAX_TRANSITIONS: usize = 512;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The outcome name of a region error, as shown to operators.
pub fn outcome_of(e: &RegionError) -> &'static str {
    match &e.kind {
        Some(Kind::NotLeader(_)) => "not_leader",
        Some(Kind::EpochNotMatch(_)) => "epoch_not_match",
        Some(Kind::KeyNotInRegion(_)) => "key_not_in_region",
        Some(Kind::RegionNotFound(_)) => "region_not_found",
        Some(Kind::StaleCommand(_)) => "stale_command",
        Some(Kind::ServerIsBusy(_)) => "busy",
        Some(Kind::StoreNotMatch(_)) => "store_not_match",
        Some(Kind::RaftEntryTooLarge(_)) => "entry_too_large",
        Some(Kind::RegionMerging(_)) => "merging",
        Some(Kind::Timeout(_)) => "timed_out",
        Some(Kind::SessionExpired(_)) => "session_expired",
        Some(Kind::SequenceStale(_)) => "sequence_stale",
        None => "rejected",
    }
}

#[derive(Default)]
struct Inner {
    admissions: HashMap<u64, [Option<Admission>; 3]>,
    transitions: VecDeque<Transition>,
    next_transition: u64,
    restart: RestartPosture,
}

/// The store's diagnostics, shared by the services and the raftstore.
#[derive(Default)]
pub struct Diagnostics {
    inner: Mutex<Inner>,
}

impl Diagnostics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock_unpoisoned())
    }

    /// Records the restart posture (once, at start).
    pub fn set_restart(&self, regions_recovered: u64, missing_raft_state: Vec<u64>) {
        self.with(|i| {
            i.restart = RestartPosture {
                regions_recovered,
                regions_missing_raft_state: missing_raft_state,
                started_at_ms: now_ms(),
            }
        });
    }

    /// Records the decision on a request of `class` to `region_id`.
    pub fn admit(
        &self,
        region_id: u64,
        class: RequestClass,
        outcome: &str,
        reason: impl Into<String>,
    ) {
        let a = Admission {
            class: class as i32,
            outcome: outcome.to_string(),
            reason: reason.into(),
            at_ms: now_ms(),
        };
        self.with(|i| i.admissions.entry(region_id).or_default()[class as usize] = Some(a));
    }

    /// Records the outcome of a request given its result.
    pub fn admit_result<T>(&self, region_id: u64, class: RequestClass, r: &Result<T, RegionError>) {
        match r {
            Ok(_) => self.admit(region_id, class, "accepted", ""),
            Err(e) => self.admit(region_id, class, outcome_of(e), e.message.clone()),
        }
    }

    /// Records a topology request's admission and moves its transition on:
    /// to `reached` when it was accepted, to failed with the error when
    /// not.
    pub fn topology_result<T>(
        &self,
        region_id: u64,
        transition: u64,
        r: &Result<T, RegionError>,
        reached: TransitionStage,
    ) {
        self.admit_result(region_id, RequestClass::Topology, r);
        match r {
            Ok(_) => self.advance(transition, reached),
            Err(e) => self.fail(transition, e.message.clone()),
        }
    }

    /// Starts tracking a topology transition; returns its id.
    pub fn plan(&self, region_id: u64, kind: &str, detail: impl Into<String>) -> u64 {
        self.with(|i| {
            i.next_transition += 1;
            let id = i.next_transition;
            i.transitions.push_back(Transition {
                id,
                region_id,
                kind: kind.to_string(),
                stage: TransitionStage::Planned as i32,
                detail: detail.into(),
                error: String::new(),
                updated_at_ms: now_ms(),
            });
            while i.transitions.len() > MAX_TRANSITIONS {
                i.transitions.pop_front();
            }
            id
        })
    }

    /// Moves a transition to `stage`.
    pub fn advance(&self, id: u64, stage: TransitionStage) {
        self.update(id, stage, String::new());
    }

    /// Marks a transition failed with `error`.
    pub fn fail(&self, id: u64, error: impl Into<String>) {
        self.update(id, TransitionStage::Failed, error.into());
    }

    fn update(&self, id: u64, stage: TransitionStage, error: String) {
        self.with(|i| {
            if let Some(t) = i.transitions.iter_mut().find(|t| t.id == id) {
                t.stage = stage as i32;
                t.error = error;
                t.updated_at_ms = now_ms();
            }
        });
    }

    /// What `ExecutionStatus` answers, filtered by region and transition
    /// (0 = all).
    pub fn report(
        &self,
        region_id: u64,
        transition_id: u64,
    ) -> (Vec<RegionExecution>, Vec<Transition>, RestartPosture) {
        self.with(|i| {
            let mut regions: Vec<RegionExecution> = i
                .admissions
                .iter()
                .filter(|(id, _)| region_id == 0 || **id == region_id)
                .map(|(id, a)| RegionExecution {
                    region_id: *id,
                    admissions: a.iter().flatten().cloned().collect(),
                })
                .collect();
            regions.sort_by_key(|r| r.region_id);
            let transitions = i
                .transitions
                .iter()
                .filter(|t| {
                    (region_id == 0 || t.region_id == region_id)
                        && (transition_id == 0 || t.id == transition_id)
                })
                .cloned()
                .collect();
            (regions, transitions, i.restart.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_outcome_per_class_and_transition_stages() {
        let d = Diagnostics::default();
        d.admit(1, RequestClass::Write, "accepted", "");
        d.admit(
            1,
            RequestClass::Write,
            "not_leader",
            "peer is not the leader",
        );
        d.admit(1, RequestClass::Read, "accepted", "");
        d.admit(2, RequestClass::Topology, "epoch_not_match", "stale");
        let t = d.plan(1, "split", "at k");
        d.advance(t, TransitionStage::Proposed);
        d.advance(t, TransitionStage::Applied);
        let u = d.plan(2, "change_peer", "add learner");
        d.fail(u, "raft refused");
        let (regions, transitions, _) = d.report(1, 0);
        assert_eq!(regions.len(), 1);
        let outcomes: Vec<&str> = regions[0]
            .admissions
            .iter()
            .map(|a| a.outcome.as_str())
            .collect();
        assert_eq!(
            outcomes,
            vec!["accepted", "not_leader"],
            "read then write, the last write wins"
        );
        assert_eq!(transitions.len(), 1);
        assert_eq!(transitions[0].stage(), TransitionStage::Applied);
        let (_, all, _) = d.report(0, u);
        assert_eq!(all[0].stage(), TransitionStage::Failed);
        assert_eq!(all[0].error, "raft refused");
    }

    #[test]
    fn outcome_names_follow_the_error_kind() {
        let e = crate::region::not_leader(1, None);
        assert_eq!(outcome_of(&e), "not_leader");
        assert_eq!(outcome_of(&crate::region::server_is_busy("x")), "busy");
        assert_eq!(outcome_of(&crate::region::timeout(1)), "timed_out");
    }
}
