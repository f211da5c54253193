//! Live invariant checks. Every region heartbeat is judged against the
//! applied routing table before it may change it, and the table itself is
//! walked periodically. A broken invariant is logged at `error` and counted
//! in `nokv_coordinator_invariant_violations_total{kind}`; it is never
//! absorbed silently. The kinds:
//!
//! - `overlap`: a region claims keys another region of the same version
//!   holds. With splits and merges a newer range always carries a higher
//!   version, so two truths at one version mean a bug; the heartbeat is
//!   refused.
//! - `epoch_conflict`: a region reports the epoch the coordinator has, but
//!   with a different range (same version) or peer set (same conf_ver);
//!   refused.
//! - `duplicate_store`: a region has two replicas on one store; recorded
//!   (the region really is that way) and left to the replica checker.
//! - `range_hole`: the routing table has a gap or overlap that outlived
//!   [`HOLE_GRACE`] (a split reports its two halves one by one, so a gap
//!   may exist for a moment).
//!
//! A heartbeat with an older epoch is refused too, but counted apart in
//! `nokv_coordinator_stale_heartbeats_total`: heartbeats race with splits
//! and membership changes, so one arriving late is expected.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use nokv_proto::metapb::Region;
use tracing::error;

use crate::metrics;
use crate::state::{epoch_older, ClusterState};

/// How long a gap in the routing table may last before it is a violation.
pub const HOLE_GRACE: Duration = Duration::from_secs(30);

/// Why a heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The coordinator knows a newer epoch (for this region or an
    /// overlapping one).
    #[error("region epoch is older than the coordinator's")]
    Stale,
    /// The heartbeat contradicts the routing table.
    #[error("invariant {kind} broken: {detail}")]
    Violation {
        /// One of [`metrics::INVARIANT_KINDS`].
        kind: &'static str,
        /// What exactly.
        detail: String,
    },
}

/// Logs and counts one violation.
pub fn record(kind: &'static str, detail: &str) {
    error!(kind, detail, "cluster invariant broken");
    metrics::INVARIANT_VIOLATIONS
        .with_label_values(&[kind])
        .inc();
}

fn peer_set(r: &Region) -> BTreeSet<(u64, u64)> {
    r.peers.iter().map(|p| (p.id, p.store_id)).collect()
}

/// Judges a region heartbeat against the applied state. A stale heartbeat
/// is counted as stale; a contradicting one is recorded as a violation.
/// Both are refused. A region with two replicas on one store is recorded
/// and admitted.
///
/// # Errors
/// The reason the heartbeat must not change the routing table.
pub fn admit_heartbeat(state: &ClusterState, region: &Region) -> Result<(), Rejection> {
    let verdict = judge(state, region);
    match &verdict {
        Err(Rejection::Stale) => metrics::STALE_HEARTBEATS.inc(),
        Err(Rejection::Violation { kind, detail }) => record(kind, detail),
        Ok(()) => {
            let mut seen = HashSet::new();
            if let Some(p) = region.peers.iter().find(|p| !seen.insert(p.store_id)) {
                record(
                    "duplicate_store",
                    &format!(
                        "region {} has two replicas on store {}",
                        region.id, p.store_id
                    ),
                );
            }
        }
    }
    verdict
}

fn judge(state: &ClusterState, region: &Region) -> Result<(), Rejection> {
    let new = region.epoch.unwrap_or_default();
    if let Some(known) = state
        .regions
        .get(&region.id)
        .and_then(|i| i.region.as_ref())
    {
        let old = known.epoch.unwrap_or_default();
        if epoch_older(&new, &old) {
            return Err(Rejection::Stale);
        }
        if new.version == old.version
            && (known.start_key != region.start_key || known.end_key != region.end_key)
        {
            return Err(Rejection::Violation {
                kind: "epoch_conflict",
                detail: format!(
                    "region {} reports version {} with a different range than the coordinator has",
                    region.id, new.version
                ),
            });
        }
        if new.conf_ver == old.conf_ver && peer_set(known) != peer_set(region) {
            return Err(Rejection::Violation {
                kind: "epoch_conflict",
                detail: format!(
                    "region {} reports conf_ver {} with a different peer set than the coordinator has",
                    region.id, new.conf_ver
                ),
            });
        }
    }
    for id in state.overlapping(region) {
        if id == region.id {
            continue;
        }
        let Some(other) = state.regions.get(&id).and_then(|i| i.region.as_ref()) else {
            continue;
        };
        let v = other.epoch.unwrap_or_default().version;
        if v > new.version {
            return Err(Rejection::Stale);
        }
        if v == new.version {
            return Err(Rejection::Violation {
                kind: "overlap",
                detail: format!(
                    "region {} overlaps region {} at the same version {v}",
                    region.id, id
                ),
            });
        }
    }
    Ok(())
}

/// Gaps and overlaps in the routing table, as `(from, to)` key ranges in
/// key order (an empty `to` is the end of the key space). Empty when the
/// regions tile the key space, or when there are no regions yet.
pub fn tiling_gaps(state: &ClusterState) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut gaps = Vec::new();
    if state.regions.is_empty() {
        return gaps;
    }
    let mut expected: Option<Vec<u8>> = Some(Vec::new());
    for id in state.ranges.values() {
        let Some(r) = state.regions.get(id).and_then(|i| i.region.as_ref()) else {
            continue;
        };
        match &expected {
            // A region after one that ran to the end: an overlap.
            None => gaps.push((r.start_key.clone(), r.end_key.clone())),
            Some(e) if *e != r.start_key => gaps.push((e.clone(), r.start_key.clone())),
            Some(_) => {}
        }
        expected = (!r.end_key.is_empty()).then(|| r.end_key.clone());
    }
    if let Some(e) = expected {
        gaps.push((e, Vec::new()));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::coordinatorpb::{coordinator_command::Cmd, CoordinatorCommand, RegionInfo};
    use nokv_proto::metapb::{Peer, RegionEpoch};
    use rocksdb::WriteBatch;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64, stores: &[u64]) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: Some(RegionEpoch {
                conf_ver: 1,
                version,
            }),
            peers: stores
                .iter()
                .map(|s| Peer {
                    id: id * 10 + s,
                    store_id: *s,
                    role: 0,
                })
                .collect(),
        }
    }

    fn state(regions: Vec<Region>) -> (tempfile::TempDir, ClusterState) {
        let d = tempfile::tempdir().expect("tempdir");
        let db = nokv_consensus::engine::open(d.path(), &[crate::state::CF_STATE]).expect("db");
        let mut s = ClusterState::default();
        for r in regions {
            let mut wb = WriteBatch::default();
            s.apply(
                &db,
                CoordinatorCommand {
                    cmd: Some(Cmd::PutRegion(RegionInfo {
                        region: Some(r),
                        ..Default::default()
                    })),
                },
                &mut wb,
            )
            .expect("apply");
        }
        (d, s)
    }

    fn violations(kind: &str) -> u64 {
        metrics::INVARIANT_VIOLATIONS
            .with_label_values(&[kind])
            .get()
    }

    #[test]
    fn overlapping_and_stale_heartbeats_are_refused_and_counted() {
        let (_d, s) = state(vec![
            region(1, b"", b"m", 2, &[1, 2, 3]),
            region(2, b"m", b"", 2, &[1, 2, 3]),
        ]);
        assert!(tiling_gaps(&s).is_empty());

        // Region 3 claims [k, p) at the version both neighbours have.
        let before = violations("overlap");
        assert!(matches!(
            admit_heartbeat(&s, &region(3, b"k", b"p", 2, &[1, 2, 3])),
            Err(Rejection::Violation {
                kind: "overlap",
                ..
            })
        ));
        assert_eq!(violations("overlap"), before + 1);

        // Region 1 from before the split: older epoch.
        let stale_before = metrics::STALE_HEARTBEATS.get();
        assert_eq!(
            admit_heartbeat(&s, &region(1, b"", b"", 1, &[1, 2, 3])),
            Err(Rejection::Stale)
        );
        assert_eq!(metrics::STALE_HEARTBEATS.get(), stale_before + 1);

        // Same version, another range.
        let before = violations("epoch_conflict");
        assert!(matches!(
            admit_heartbeat(&s, &region(1, b"", b"k", 2, &[1, 2, 3])),
            Err(Rejection::Violation {
                kind: "epoch_conflict",
                ..
            })
        ));
        assert_eq!(violations("epoch_conflict"), before + 1);

        // A later split of region 2 is fine; two replicas on one store are
        // admitted but counted.
        assert_eq!(
            admit_heartbeat(&s, &region(2, b"m", b"t", 3, &[1, 2, 3])),
            Ok(())
        );
        let before = violations("duplicate_store");
        let mut dup = region(2, b"m", b"t", 3, &[1, 1, 3]);
        dup.epoch = Some(RegionEpoch {
            conf_ver: 2,
            version: 3,
        });
        dup.peers[1].id += 1;
        assert_eq!(admit_heartbeat(&s, &dup), Ok(()));
        assert_eq!(violations("duplicate_store"), before + 1);
    }

    #[test]
    fn tiling_gaps_finds_holes_and_overlaps() {
        let (_d, s) = state(vec![
            region(1, b"", b"c", 1, &[1]),
            region(2, b"d", b"f", 1, &[1]),
        ]);
        assert_eq!(
            tiling_gaps(&s),
            vec![(b"c".to_vec(), b"d".to_vec()), (b"f".to_vec(), Vec::new())]
        );
        let (_d, empty) = state(vec![]);
        assert!(tiling_gaps(&empty).is_empty());
    }
}
