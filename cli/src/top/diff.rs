//! Events of `nokv top`, derived by comparing two successive surveys: the
//! coordinator gives no change feed, so whatever differs between polls is
//! what happened (changes that come and go within one interval are not
//! seen).

use std::collections::{BTreeMap, BTreeSet};

use nokv_proto::metapb::PeerRole;

use super::state::{Event, EventKind};
use crate::output;
use crate::survey::{Region, Survey};

/// The changes from `prev` to `next`, stamped with `next`'s time.
pub fn diff(prev: &Survey, next: &Survey) -> Vec<Event> {
    let at_ms = next.taken_at_ms;
    let mut out = Vec::new();
    let mut push = |kind, text: String| out.push(Event { at_ms, kind, text });

    if prev.leader_member_id != next.leader_member_id {
        let name = |s: &Survey, id: Option<u64>| match id {
            None => "none".to_string(),
            Some(id) => s
                .members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.name.clone())
                .unwrap_or_else(|| format!("member {id}")),
        };
        push(
            EventKind::Coordinator,
            format!(
                "coordinator leader {} -> {}",
                name(prev, prev.leader_member_id),
                name(next, next.leader_member_id)
            ),
        );
    }

    let old_stores: BTreeMap<u64, _> = prev.stores.iter().map(|s| (s.id, s)).collect();
    for s in &next.stores {
        match old_stores.get(&s.id) {
            None => push(
                EventKind::Store,
                format!(
                    "store {} joined at {} ({})",
                    s.id,
                    s.address,
                    s.state.as_str_name()
                ),
            ),
            Some(o) if o.state != s.state => push(
                EventKind::Store,
                format!(
                    "store {} {} -> {}",
                    s.id,
                    o.state.as_str_name(),
                    s.state.as_str_name()
                ),
            ),
            Some(o) if o.admin_error.is_none() && s.admin_error.is_some() => push(
                EventKind::Store,
                format!(
                    "store {} stopped answering: {}",
                    s.id,
                    s.admin_error.as_deref().unwrap_or("")
                ),
            ),
            Some(o) if o.admin_error.is_some() && s.admin_error.is_none() => {
                push(EventKind::Store, format!("store {} answers again", s.id))
            }
            Some(_) => {}
        }
    }

    let old_regions: BTreeMap<u64, &Region> = prev.regions.iter().map(|r| (r.id, r)).collect();
    let new_ids: BTreeSet<u64> = next.regions.iter().map(|r| r.id).collect();
    for r in &next.regions {
        let Some(o) = old_regions.get(&r.id) else {
            // A new region whose range an old region covered came from a
            // split of that region.
            let parent = prev
                .regions
                .iter()
                .find(|p| covers(p, &r.start_key) && new_ids.contains(&p.id));
            match parent {
                Some(p) => push(
                    EventKind::Split,
                    format!(
                        "region {} split at {}: new region {}",
                        p.id,
                        output::key(&r.start_key, "-inf"),
                        r.id
                    ),
                ),
                None => push(
                    EventKind::Region,
                    format!("region {} appeared [{})", r.id, range(r)),
                ),
            }
            continue;
        };
        if o.leader_store_id != r.leader_store_id {
            let text = match (o.leader_store_id, r.leader_store_id) {
                (_, 0) => format!(
                    "region {} lost its leader (was on store {})",
                    r.id, o.leader_store_id
                ),
                (0, to) => format!("region {} leader elected on store {to}", r.id),
                (from, to) => format!("region {} leader store {from} -> {to}", r.id),
            };
            push(EventKind::Leader, text);
        }
        for p in &r.peers {
            match o.peers.iter().find(|q| q.id == p.id) {
                None => push(
                    EventKind::Peer,
                    format!(
                        "region {} added {} {}@{}",
                        r.id,
                        role(p.role),
                        p.id,
                        p.store_id
                    ),
                ),
                Some(q) if q.role != p.role => push(
                    EventKind::Peer,
                    format!(
                        "region {} peer {}@{} {} -> {}",
                        r.id,
                        p.id,
                        p.store_id,
                        role(q.role),
                        role(p.role)
                    ),
                ),
                Some(_) => {}
            }
        }
        for q in &o.peers {
            if !r.peers.iter().any(|p| p.id == q.id) {
                push(
                    EventKind::Peer,
                    format!("region {} removed peer {}@{}", r.id, q.id, q.store_id),
                );
            }
        }
    }
    for o in &prev.regions {
        if !new_ids.contains(&o.id) {
            push(
                EventKind::Region,
                format!("region {} is gone [{})", o.id, range(o)),
            );
        }
    }
    out
}

fn covers(r: &Region, key: &[u8]) -> bool {
    r.start_key.as_slice() <= key && (r.end_key.is_empty() || key < r.end_key.as_slice())
}

fn range(r: &Region) -> String {
    format!(
        "{}, {}",
        output::key(&r.start_key, "-inf"),
        output::key(&r.end_key, "+inf")
    )
}

fn role(r: PeerRole) -> &'static str {
    match r {
        PeerRole::Learner => "learner",
        PeerRole::Voter => "voter",
        PeerRole::IncomingVoter => "incoming voter",
        PeerRole::DemotingVoter => "demoting voter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::fixture;
    use nokv_proto::metapb::StoreState;

    fn texts(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| e.text.clone()).collect()
    }

    #[test]
    fn identical_surveys_give_no_events() {
        let s = fixture::survey();
        assert!(diff(&s, &s).is_empty());
    }

    #[test]
    fn a_split_is_named_by_its_parent() {
        let prev = fixture::survey();
        let mut next = prev.clone();
        let mut right = next.regions[1].clone();
        next.regions[1].end_key = b"t".to_vec();
        right.id = 9;
        right.start_key = b"t".to_vec();
        next.regions.push(right);
        let ev = diff(&prev, &next);
        assert_eq!(texts(&ev), ["region 2 split at t: new region 9"]);
        assert_eq!(ev[0].kind, EventKind::Split);
        assert_eq!(ev[0].at_ms, next.taken_at_ms);
    }

    #[test]
    fn leader_peer_store_and_coordinator_changes_are_reported() {
        let prev = fixture::survey();
        let mut next = prev.clone();
        next.leader_member_id = Some(1);
        next.stores[0].state = StoreState::Disconnected;
        next.regions[0].leader_store_id = 2;
        next.regions[1].leader_store_id = 0;
        next.regions[0].peers[1].role = PeerRole::Learner;
        next.regions[1].peers.pop();
        let mut new_peer = next.regions[0].peers[0].clone();
        new_peer.id = 13;
        new_peer.store_id = 3;
        next.regions[0].peers.push(new_peer);
        let ev = texts(&diff(&prev, &next));
        for want in [
            "coordinator leader coordinator-2 -> coordinator-1",
            "store 1 Up -> Disconnected",
            "region 1 leader store 1 -> 2",
            "region 2 lost its leader (was on store 2)",
            "region 1 peer 12@2 voter -> learner",
            "region 1 added voter 13@3",
            "region 2 removed peer 23@3",
        ] {
            assert!(ev.iter().any(|e| e == want), "missing {want:?} in {ev:?}");
        }
        assert_eq!(ev.len(), 7, "{ev:?}");
    }

    #[test]
    fn regions_and_stores_that_come_and_go_are_reported() {
        let prev = fixture::survey();
        let mut next = prev.clone();
        next.regions.remove(1);
        let mut s4 = next.stores[0].clone();
        s4.id = 4;
        next.stores.push(s4);
        next.stores[1].admin_error = Some("Unavailable: refused".into());
        next.stores[2].admin_error = None;
        let ev = texts(&diff(&prev, &next));
        assert!(
            ev.contains(&"region 2 is gone [m, +inf)".to_string()),
            "{ev:?}"
        );
        assert!(ev.iter().any(|e| e.starts_with("store 4 joined")), "{ev:?}");
        assert!(ev.contains(&"store 2 stopped answering: Unavailable: refused".to_string()));
        assert!(ev.contains(&"store 3 answers again".to_string()));
    }
}
