//! The region checks: `leaders` (every region has a working leader),
//! `replicas` (as many voters as configured, never two on one store) and
//! `lag` (no peer trails its leader past the threshold or needs a
//! snapshot). Suggestions are the control command that would fix it.

use std::collections::BTreeMap;

use nokv_proto::metapb::{PeerRole, StoreState};

use super::report::{Finding, Thresholds};
use crate::survey::{self, Survey};

pub(super) fn check_leaders(s: &Survey, f: &mut Vec<Finding>) {
    let stores: BTreeMap<u64, &survey::Store> = s.stores.iter().map(|x| (x.id, x)).collect();
    for r in &s.regions {
        let subject = format!("region {}", r.id);
        let suggestion = format!(
            "nokv region {} (are a majority of its peers' stores up?)",
            r.id
        );
        if r.leader_store_id == 0 {
            f.push(Finding::problem(
                "leaders",
                subject,
                format!(
                    "region {} has no leader: its keys can be neither read nor written",
                    r.id
                ),
                suggestion,
            ));
            continue;
        }
        let Some(store) = stores.get(&r.leader_store_id) else {
            continue;
        };
        if !store.is_serving() {
            f.push(Finding::problem(
                "leaders",
                subject,
                format!(
                    "region {} has no working leader: the coordinator last saw it led from \
                     store {}, which is {}",
                    r.id,
                    store.id,
                    if store.state == StoreState::Up {
                        "not answering".to_string()
                    } else {
                        store.state.as_str_name().to_string()
                    }
                ),
                suggestion,
            ));
        } else if r.leader_last_index.is_none() {
            f.push(Finding::problem(
                "leaders",
                subject,
                format!(
                    "region {}: the coordinator names store {} as leader but that store does not \
                     lead it (a new leader has not reported yet, or none is elected)",
                    r.id, store.id
                ),
                suggestion,
            ));
        }
    }
}

pub(super) fn check_replicas(s: &Survey, t: &Thresholds, f: &mut Vec<Finding>) {
    let usable: Vec<&survey::Store> = s.stores.iter().filter(|x| x.is_serving()).collect();
    for r in &s.regions {
        let voters = r.voters();
        let learners = r
            .peers
            .iter()
            .filter(|p| p.role == PeerRole::Learner)
            .count();
        let learner_note = if learners > 0 {
            format!(" and {learners} learner(s) not yet promoted")
        } else {
            String::new()
        };
        if voters < t.max_replicas {
            let free = usable
                .iter()
                .find(|st| !r.peers.iter().any(|p| p.store_id == st.id));
            f.push(Finding::problem(
                "replicas",
                format!("region {}", r.id),
                format!(
                    "region {} has {voters} voter(s){learner_note}; {} configured, so it \
                     tolerates fewer failures than intended",
                    r.id, t.max_replicas
                ),
                match free {
                    Some(st) => format!("nokv add-peer --region {} --store {}", r.id, st.id),
                    None => "add a store: every usable store already holds a replica".into(),
                },
            ));
        } else if voters > t.max_replicas {
            let victim = r
                .peers
                .iter()
                .filter(|p| p.id != r.leader_peer_id)
                .max_by_key(|p| usable.iter().all(|st| st.id != p.store_id) as u8);
            f.push(Finding::problem(
                "replicas",
                format!("region {}", r.id),
                format!(
                    "region {} has {voters} voters; {} configured",
                    r.id, t.max_replicas
                ),
                match victim {
                    Some(p) => format!("nokv remove-peer --region {} --store {}", r.id, p.store_id),
                    None => format!("nokv region {}", r.id),
                },
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &r.peers {
            if !seen.insert(p.store_id) {
                f.push(Finding::problem(
                    "replicas",
                    format!("region {}", r.id),
                    format!(
                        "region {} has two replicas on store {}: one failure takes both",
                        r.id, p.store_id
                    ),
                    format!("nokv remove-peer --region {} --store {}", r.id, p.store_id),
                ));
            }
        }
    }
}

pub(super) fn check_lag(s: &Survey, t: &Thresholds, f: &mut Vec<Finding>) {
    let stores: BTreeMap<u64, &survey::Store> = s.stores.iter().map(|x| (x.id, x)).collect();
    for r in &s.regions {
        for p in &r.peers {
            if !r.is_lagging(p, t.lag_threshold) {
                continue;
            }
            let how = if p.needs_snapshot() {
                "needs a snapshot to catch up".to_string()
            } else {
                format!(
                    "is {} entries behind its leader (threshold {})",
                    r.lag(p).unwrap_or(0),
                    t.lag_threshold
                )
            };
            let store_down = stores.get(&p.store_id).is_some_and(|st| !st.is_serving());
            f.push(Finding::problem(
                "lag",
                format!("region {}", r.id),
                format!(
                    "peer {} of region {} on store {} {how}{}",
                    p.id,
                    r.id,
                    p.store_id,
                    if store_down {
                        "; its store is not serving"
                    } else {
                        ""
                    }
                ),
                if store_down {
                    format!(
                        "bring store {} back (see the stores check), then nokv region {}",
                        p.store_id, r.id
                    )
                } else {
                    format!("nokv execution --store {} --region {}", p.store_id, r.id)
                },
            ));
        }
    }
}
