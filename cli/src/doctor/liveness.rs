//! The `coordinator` and `stores` checks: whether the coordinator group
//! has a leader and a bootstrapped cluster, and whether every store is Up
//! and its Admin API answers. Suggestions name the local cluster's process
//! to restart when there is one.

use std::collections::HashMap;

use nokv_proto::metapb::StoreState;

use super::report::Finding;
use crate::survey::Survey;

pub(super) fn check_coordinator(s: &Survey, f: &mut Vec<Finding>) {
    if s.leader_member_id.is_none() {
        f.push(Finding::problem(
            "coordinator",
            "cluster".into(),
            format!(
                "no coordinator member leads ({} members known); routing, ids and timestamps \
                 stop until one is elected",
                s.members.len()
            ),
            "nokv cluster status (are a majority of coordinators running?)".into(),
        ));
    }
    if s.cluster_id == 0 {
        f.push(Finding::problem(
            "coordinator",
            "cluster".into(),
            "the cluster is not bootstrapped: no store has registered its first region".into(),
            "start a nokv-node pointed at these coordinators".into(),
        ));
    }
}

fn restart_hint(address: &str, names: &HashMap<String, String>) -> String {
    match names.get(address) {
        Some(name) => format!("nokv cluster restart {name}"),
        None => format!("restart the nokv-node serving {address}, then nokv stores"),
    }
}

pub(super) fn check_stores(s: &Survey, names: &HashMap<String, String>, f: &mut Vec<Finding>) {
    if s.stores.is_empty() {
        f.push(Finding::problem(
            "stores",
            "cluster".into(),
            "no store is registered".into(),
            "start a nokv-node pointed at these coordinators".into(),
        ));
    }
    for st in &s.stores {
        let subject = format!("store {}", st.id);
        let silent = match st.last_heartbeat_ms {
            0 => String::new(),
            ms => format!(
                " (last heartbeat {} s ago)",
                s.taken_at_ms.saturating_sub(ms) / 1000
            ),
        };
        let message = match st.state {
            StoreState::Up | StoreState::Tombstone => None,
            StoreState::Disconnected => Some(format!(
                "store {} at {} is Disconnected: the coordinator has not heard its heartbeat for \
                 longer than store_disconnect_ms{silent}; its replicas are not serving",
                st.id, st.address
            )),
            StoreState::Down => Some(format!(
                "store {} at {} is Down: no heartbeat for longer than max_store_down_time_ms{silent}",
                st.id, st.address
            )),
            StoreState::Offline => Some(format!(
                "store {} at {} is Offline (being decommissioned)",
                st.id, st.address
            )),
        };
        if let Some(message) = message {
            f.push(Finding::problem(
                "stores",
                subject,
                message,
                restart_hint(&st.address, names),
            ));
        } else if st.state == StoreState::Up {
            if let Some(e) = &st.admin_error {
                f.push(Finding::problem(
                    "stores",
                    subject,
                    format!(
                        "store {} at {} is Up for the coordinator but its Admin API does not \
                         answer: {e}",
                        st.id, st.address
                    ),
                    restart_hint(&st.address, names),
                ));
            }
        }
    }
}
