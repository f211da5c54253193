//! The `capacity` check: no store's disk is past the near-full threshold,
//! by the capacity and free space of its last heartbeat.

use nokv_proto::metapb::StoreState;

use super::report::{Finding, Thresholds};
use crate::output;
use crate::survey::Survey;

pub(super) fn check_capacity(s: &Survey, t: &Thresholds, f: &mut Vec<Finding>) {
    for st in &s.stores {
        if st.capacity_bytes == 0 || st.state == StoreState::Tombstone {
            continue;
        }
        let used = st.capacity_bytes.saturating_sub(st.available_bytes);
        let percent = used.saturating_mul(100) / st.capacity_bytes;
        if percent >= t.full_percent as u64 {
            f.push(Finding::problem(
                "capacity",
                format!("store {}", st.id),
                format!(
                    "store {} is near full: {percent}% of {} used, {} free (threshold {}%)",
                    st.id,
                    output::bytes(st.capacity_bytes),
                    output::bytes(st.available_bytes),
                    t.full_percent
                ),
                format!(
                    "free disk space on the host of {} or add a store; nokv stats --store {}",
                    st.address, st.id
                ),
            ));
        }
    }
}
