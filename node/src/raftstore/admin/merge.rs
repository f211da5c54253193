//! Region merge: a source region is absorbed by an adjacent target whose
//! replicas live on the same stores.
//!
//! 1. **PrepareMerge** (source log): freezes the source. Its epoch moves
//!    (`version` and `conf_ver`), so every write, split or membership change
//!    proposed before it fails at apply, and the replica refuses new ones.
//!    The merge state records the target as the proposer saw it and
//!    `min_index`, the lowest index every source replica had persisted.
//! 2. **CommitMerge** (target log): proposed by the source leader's store
//!    to its local target replica. It carries the source's log from
//!    `min_index + 1` to the PrepareMerge, so a lagging source replica can
//!    apply what it misses from its own log plus that tail. Each target
//!    replica then takes the source's range and turns the local source
//!    replica into a tombstone, in one write batch.
//! 3. **RollbackMerge** (source log): unfreezes the source. It is only
//!    proposed when the local target replica has applied a different epoch
//!    than the PrepareMerge expected while the local source replica still
//!    exists: CommitMerge applies in log order and would have removed the
//!    local source first, so the commit can never succeed any more.

use std::collections::HashMap;

use nokv_consensus::engine::{cf, CF_META};
use nokv_consensus::keys::{apply_state_key, region_state_key};
use nokv_consensus::peer::ProposeError;
use nokv_proto::metapb::{PeerRole, Region, RegionEpoch};
use nokv_proto::raft_cmdpb::{
    admin_request, admin_response, AdminRequest, CommitMergeRequest, PrepareMergeRequest,
    RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, RollbackMergeRequest,
};
use nokv_proto::raft_serverpb::{MergeState, PeerState, RegionLocalState};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::Entry;
use rocksdb::{WriteBatch, DB};
use tracing::{error, info, warn};

use crate::raftstore::peer::{MergedSource, Peer};
use crate::{Error, Result};

/// Most source log entries a merge may carry to lagging replicas; a
/// replica further behind must catch up before the merge is prepared.
pub const MAX_MERGE_LOG_GAP: u64 = 256;

/// Checks the source and target can merge as this store sees them and
/// returns the `min_index` the PrepareMerge records. `source` must lead.
pub fn check_prepare(source: &Peer, target: &Peer) -> std::result::Result<u64, String> {
    let (s, t) = (&source.region, &target.region);
    if source.merge_state.is_some() {
        return Err(format!("region {} is already merging", s.id));
    }
    if target.merge_state.is_some() {
        return Err(format!("target region {} is itself merging", t.id));
    }
    if !target.is_initialized() {
        return Err(format!("target region {} is not initialized here", t.id));
    }
    let adjacent = (!s.end_key.is_empty() && s.end_key == t.start_key)
        || (!t.end_key.is_empty() && t.end_key == s.start_key);
    if !adjacent {
        return Err(format!("regions {} and {} are not adjacent", s.id, t.id));
    }
    let stores = |r: &Region| {
        let mut v: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
        v.sort_unstable();
        v
    };
    if stores(s) != stores(t) {
        return Err(format!(
            "regions {} and {} have replicas on different stores ({:?} vs {:?})",
            s.id,
            t.id,
            stores(s),
            stores(t)
        ));
    }
    if s.peers
        .iter()
        .chain(&t.peers)
        .any(|p| p.role() != PeerRole::Voter)
    {
        return Err("a region has a learner; promote or remove it first".into());
    }
    let last = source.raft.last_index();
    let truncated = source.truncated_index();
    let mut min_index = last;
    for p in &s.peers {
        if p.id == source.meta.id {
            continue;
        }
        let matched = source.raft.matched(p.id).unwrap_or(0);
        if matched < truncated || matched == 0 {
            return Err(format!(
                "peer {} of region {} needs a snapshot before a merge",
                p.id, s.id
            ));
        }
        if last - matched > MAX_MERGE_LOG_GAP {
            return Err(format!(
                "peer {} of region {} lags {} entries behind",
                p.id,
                s.id,
                last - matched
            ));
        }
        min_index = min_index.min(matched);
    }
    Ok(min_index)
}

/// The PrepareMerge command for `source` into `target`.
pub fn prepare_command(source: &Peer, target: &Region, min_index: u64) -> RaftCmdRequest {
    admin_command(
        source,
        AdminRequest {
            cmd: Some(admin_request::Cmd::PrepareMerge(PrepareMergeRequest {
                min_index,
                target: Some(target.clone()),
            })),
        },
    )
}

/// The RollbackMerge command for a frozen `source`.
pub fn rollback_command(source: &Peer, commit: u64) -> RaftCmdRequest {
    admin_command(
        source,
        AdminRequest {
            cmd: Some(admin_request::Cmd::RollbackMerge(RollbackMergeRequest {
                commit,
            })),
        },
    )
}

fn admin_command(peer: &Peer, admin: AdminRequest) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: peer.region.id,
            peer: Some(peer.meta),
            region_epoch: peer.region.epoch,
            ..Default::default()
        }),
        requests: Vec::new(),
        admin_request: Some(admin),
        ..Default::default()
    }
}

/// The CommitMerge the leader of frozen `source` sends to `target`, or why
/// it cannot be built (its log no longer holds the tail).
pub fn commit_command(source: &Peer, target: &Peer) -> std::result::Result<RaftCmdRequest, String> {
    let Some(state) = &source.merge_state else {
        return Err("source is not merging".into());
    };
    let (low, high) = (state.min_index + 1, state.commit + 1);
    if low < source.raft.first_index() || high > source.raft.last_index() + 1 {
        return Err(format!(
            "log [{}, {}] of region {} is not available",
            low, state.commit, source.region.id
        ));
    }
    let entries = source
        .raft
        .entries(low, high)
        .map_err(|e| format!("reading the log of region {}: {e}", source.region.id))?;
    let entries = entries
        .iter()
        .map(|e| e.write_to_bytes().map_err(|e| e.to_string()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let expected: Option<RegionEpoch> = state.target.as_ref().and_then(|t| t.epoch);
    Ok(RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: target.region.id,
            peer: Some(target.meta),
            region_epoch: expected,
            ..Default::default()
        }),
        requests: Vec::new(),
        admin_request: Some(AdminRequest {
            cmd: Some(admin_request::Cmd::CommitMerge(CommitMergeRequest {
                source: Some(source.region.clone()),
                commit: state.commit,
                entries,
            })),
        }),
        ..Default::default()
    })
}

/// What the merge driver should do next for a frozen source, judged from
/// the local target replica.
#[derive(Debug, PartialEq, Eq)]
pub enum MergeStep {
    /// Propose the CommitMerge through the local target replica (it leads).
    Commit,
    /// The target leader is elsewhere: move the source's leadership to the
    /// source replica on that store, which will propose it.
    FollowTargetLeader(u64),
    /// The target changed in a way the merge can never apply to: roll back.
    Rollback,
    /// Wait: the local target is behind, missing or leaderless.
    Wait,
}

/// Decides the driver's next step. `target` is the local target replica.
pub fn next_step(state: &MergeState, target: Option<&Peer>) -> MergeStep {
    let Some(target) = target.filter(|t| t.is_initialized()) else {
        return MergeStep::Wait;
    };
    let expected = state
        .target
        .as_ref()
        .and_then(|t| t.epoch)
        .unwrap_or_default();
    let current = target.region.epoch.unwrap_or_default();
    if current.version > expected.version || current.conf_ver > expected.conf_ver {
        return MergeStep::Rollback;
    }
    if current != expected {
        return MergeStep::Wait;
    }
    if target.raft.is_leader() {
        return MergeStep::Commit;
    }
    match target.leader_peer() {
        Some(l) if l.store_id != target.meta.store_id => MergeStep::FollowTargetLeader(l.store_id),
        _ => MergeStep::Wait,
    }
}

/// Applies committed entries to a replica on this store, as the apply loop
/// does (`raftstore::apply`), and returns the proposers to answer. A
/// CommitMerge catches a lagging source replica up through it; it is
/// handed in rather than called, because those entries may themselves be
/// admin commands (this module is one of the loop's admin appliers).
pub(crate) type CatchUp = fn(
    &DB,
    &mut Peer,
    Vec<Entry>,
    &mut HashMap<u64, Peer>,
) -> Result<crate::raftstore::msg::Answers>;

/// The entries a lagging source replica applies to reach `commit`: its own
/// log up to where the carried tail starts, then the tail. `None` when they
/// do not form a contiguous run.
fn catch_up_entries(source: &Peer, req: &CommitMergeRequest) -> Result<Option<Vec<Entry>>> {
    let from = source.apply_state.applied_index + 1;
    let mut carried = Vec::with_capacity(req.entries.len());
    for b in &req.entries {
        carried.push(
            Entry::parse_from_bytes(b)
                .map_err(|e| Error::Corrupted(format!("merge log tail: {e}")))?,
        );
    }
    let tail_start = carried.first().map_or(req.commit + 1, |e| e.index);
    let mut out = Vec::new();
    if from < tail_start {
        if from < source.raft.first_index() || tail_start > source.raft.last_index() + 1 {
            return Ok(None);
        }
        match source.raft.entries(from, tail_start) {
            Ok(own) => out.extend(own),
            Err(_) => return Ok(None),
        }
    }
    out.extend(carried.into_iter().filter(|e| e.index >= from));
    let contiguous = out
        .iter()
        .enumerate()
        .all(|(i, e)| e.index == from + i as u64);
    let reaches = out
        .last()
        .map_or(from > req.commit, |e| e.index >= req.commit);
    Ok((contiguous && reaches).then_some(out))
}

/// Freezes this region as a merge source (every replica, at `index`).
pub(crate) fn apply_prepare_merge(
    peer: &mut Peer,
    db: &DB,
    req: PrepareMergeRequest,
    index: u64,
    wb: &mut WriteBatch,
) -> Result<RaftCmdResponse> {
    let epoch = peer.region.epoch.get_or_insert_with(Default::default);
    epoch.version += 1;
    epoch.conf_ver += 1;
    let target = req.target.as_ref().map_or(0, |t| t.id);
    peer.merge_state = Some(MergeState {
        min_index: req.min_index,
        target: req.target,
        commit: index,
    });
    peer.persist_region(db, PeerState::Normal, wb)?;
    peer.heartbeat_due = true;
    info!(
        region_id = peer.region.id,
        target, index, "prepare merge applied; region frozen"
    );
    Ok(crate::raftstore::msg::admin_ok(
        admin_response::Cmd::PrepareMerge(Default::default()),
    ))
}

/// Unfreezes this region after a merge that can no longer commit.
pub(crate) fn apply_rollback_merge(
    peer: &mut Peer,
    db: &DB,
    req: RollbackMergeRequest,
    wb: &mut WriteBatch,
) -> Result<RaftCmdResponse> {
    if peer.merge_state.as_ref().map(|m| m.commit) != Some(req.commit) {
        return Ok(crate::raftstore::msg::error_response(
            nokv_proto::errorpb::RegionError {
                message: format!("region {} has no merge to roll back", peer.region.id),
                kind: None,
            },
        ));
    }
    peer.merge_state = None;
    let epoch = peer.region.epoch.get_or_insert_with(Default::default);
    epoch.version += 1;
    peer.persist_region(db, PeerState::Normal, wb)?;
    peer.heartbeat_due = true;
    peer.merge_rolled_back = true;
    info!(
        region_id = peer.region.id,
        "merge rolled back; region unfrozen"
    );
    Ok(crate::raftstore::msg::admin_ok(
        admin_response::Cmd::RollbackMerge(Default::default()),
    ))
}

/// Absorbs the source region (target replica side). `None` means the
/// local source replica is not ready and the entry must wait.
pub(crate) fn apply_commit_merge(
    peer: &mut Peer,
    db: &DB,
    req: CommitMergeRequest,
    wb: &mut WriteBatch,
    others: &mut HashMap<u64, Peer>,
    catch_up: CatchUp,
) -> Result<Option<RaftCmdResponse>> {
    let source_id = req.source.as_ref().map_or(0, |r| r.id);
    // The source's tombstone is written in the same batch as this
    // region's new range and applied index, so a replay after a restart
    // never finds the source gone: a missing source is one that has not
    // been created here yet (or was destroyed without applying the
    // merge). Waiting is the only safe answer; its range holds no data.
    let Some(mut source) = others.remove(&source_id) else {
        warn!(
            region_id = peer.region.id,
            source = source_id,
            "merge waits: no replica of the source region on this store"
        );
        return Ok(None);
    };
    // A source still applying in the pool is not where its apply state
    // says; it reports back within a round.
    if !source.is_initialized() || source.applying.tasks > 0 {
        others.insert(source_id, source);
        return Ok(None);
    }
    if source.apply_state.applied_index < req.commit {
        let Some(entries) = catch_up_entries(&source, &req)? else {
            warn!(
                region_id = peer.region.id,
                source = source_id,
                "merge waits: the source replica cannot reach the merge point"
            );
            others.insert(source_id, source);
            return Ok(None);
        };
        info!(
            region_id = peer.region.id,
            source = source_id,
            from = source.apply_state.applied_index + 1,
            to = req.commit,
            "catching the source replica up before the merge"
        );
        let answers = catch_up(db, &mut source, entries, others)?;
        crate::metrics::MERGE_CATCH_UPS.inc();
        for (cb, resp) in answers {
            cb(Ok(resp));
        }
    }
    let frozen_for_us = source
        .merge_state
        .as_ref()
        .and_then(|m| m.target.as_ref())
        .is_some_and(|t| t.id == peer.region.id);
    if source.apply_state.applied_index < req.commit || !frozen_for_us {
        error!(
            region_id = peer.region.id,
            source = source_id,
            applied = source.apply_state.applied_index,
            commit = req.commit,
            "merge waits: the source replica is not frozen for this merge"
        );
        others.insert(source_id, source);
        return Ok(None);
    }
    let region = source.region.clone();
    absorb(peer, db, &region, wb)?;
    // The source's client sessions come along: a repeat of a write that
    // applied there is recognised here.
    let source_sessions = source.sessions.lock().clone();
    peer.sessions.lock().absorb(&source_sessions);
    crate::raftstore::session::clear(db, source_id, wb)?;
    source.raft.clear_log(wb)?;
    let tombstone = RegionLocalState {
        region: Some(region),
        state: PeerState::Tombstone as i32,
        merge_state: source.merge_state.clone(),
        applying_snapshot: None,
    };
    wb.put_cf(
        cf(db, CF_META)?,
        region_state_key(source_id),
        tombstone.encode_to_vec(),
    );
    wb.delete_cf(cf(db, CF_META)?, apply_state_key(source_id));
    source
        .raft
        .fail_all(ProposeError::Dropped("region merged".into()));
    peer.merged_sources.push(MergedSource {
        region_id: source_id,
        transition: source.merge_transition,
    });
    info!(
        region_id = peer.region.id,
        source = source_id,
        "commit merge applied; source absorbed"
    );
    Ok(Some(merge_response()))
}

/// Extends this region over the adjacent `source` range.
fn absorb(peer: &mut Peer, db: &DB, source: &Region, wb: &mut WriteBatch) -> Result<()> {
    if !source.end_key.is_empty() && source.end_key == peer.region.start_key {
        peer.region.start_key = source.start_key.clone();
    } else {
        peer.region.end_key = source.end_key.clone();
    }
    let source_version = source.epoch.map_or(0, |e| e.version);
    let epoch = peer.region.epoch.get_or_insert_with(Default::default);
    epoch.version = epoch.version.max(source_version) + 1;
    peer.persist_region(db, PeerState::Normal, wb)?;
    peer.heartbeat_due = true;
    // The old count covered the target's range alone.
    peer.size_measured = false;
    peer.written_since_split_check = true;
    Ok(())
}

fn merge_response() -> RaftCmdResponse {
    crate::raftstore::msg::admin_ok(admin_response::Cmd::CommitMerge(Default::default()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::RaftConfig;
    use crate::engine::ALL_CFS;
    use crate::raftstore::snapshot::RegionSnapshotSource;
    use nokv_proto::metapb::Peer as PeerMeta;

    fn region(id: u64, start: &[u8], end: &[u8], voters: &[(u64, u64)], version: u64) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: Some(RegionEpoch {
                conf_ver: 1,
                version,
            }),
            peers: voters
                .iter()
                .map(|(id, store_id)| PeerMeta {
                    id: *id,
                    store_id: *store_id,
                    role: PeerRole::Voter as i32,
                })
                .collect(),
        }
    }

    /// Opens this store's (store 1) replica of `r`; a lone voter leads at once.
    fn open(db: &Arc<DB>, dir: &std::path::Path, r: &Region) -> Peer {
        let mut wb = WriteBatch::default();
        crate::raftstore::peer::write_initial_state(db, r, &mut wb).expect("initial state");
        db.write(wb).expect("write");
        let snaps = Arc::new(
            RegionSnapshotSource::new(db.clone(), dir.join(format!("snap{}", r.id)))
                .expect("snapshots"),
        );
        let me = r.peers.iter().find(|p| p.store_id == 1).expect("peer here");
        Peer::open(
            db.clone(),
            1,
            r.clone(),
            me.id,
            &RaftConfig::default(),
            snaps,
        )
        .expect("open")
    }

    fn frozen_for(target: &Region) -> MergeState {
        MergeState {
            min_index: 5,
            target: Some(target.clone()),
            commit: 9,
        }
    }

    #[test]
    fn the_driver_commits_waits_or_rolls_back_by_the_local_target() {
        let tmp = tempfile::tempdir().expect("tmp");
        let db = nokv_consensus::engine::open(&tmp.path().join("db"), &ALL_CFS).expect("db");
        let t = region(2, b"", b"m", &[(20, 1)], 3);
        let mut target = open(&db, tmp.path(), &t);
        assert!(target.raft.is_leader(), "a lone voter leads");

        assert_eq!(next_step(&frozen_for(&t), None), MergeStep::Wait);
        assert_eq!(next_step(&frozen_for(&t), Some(&target)), MergeStep::Commit);

        // The PrepareMerge saw a newer target than this replica has applied.
        let mut ahead = t.clone();
        ahead.epoch = Some(RegionEpoch {
            conf_ver: 1,
            version: 4,
        });
        assert_eq!(
            next_step(&frozen_for(&ahead), Some(&target)),
            MergeStep::Wait
        );

        // The target split (or merged, or changed members) since: the commit
        // can never apply.
        target.region.epoch = Some(RegionEpoch {
            conf_ver: 1,
            version: 4,
        });
        assert_eq!(
            next_step(&frozen_for(&t), Some(&target)),
            MergeStep::Rollback
        );
        target.region.epoch = Some(RegionEpoch {
            conf_ver: 2,
            version: 3,
        });
        assert_eq!(
            next_step(&frozen_for(&t), Some(&target)),
            MergeStep::Rollback
        );

        // A replica that does not lead and knows no leader waits.
        let t3 = region(3, b"m", b"", &[(30, 1), (31, 2), (32, 3)], 3);
        let follower = open(&db, tmp.path(), &t3);
        assert!(!follower.raft.is_leader());
        assert_eq!(
            next_step(&frozen_for(&t3), Some(&follower)),
            MergeStep::Wait
        );
    }

    #[test]
    fn prepare_is_refused_for_regions_that_cannot_merge() {
        let tmp = tempfile::tempdir().expect("tmp");
        let db = nokv_consensus::engine::open(&tmp.path().join("db"), &ALL_CFS).expect("db");
        let source = open(&db, tmp.path(), &region(2, b"m", b"t", &[(20, 1)], 3));
        let adjacent = open(&db, tmp.path(), &region(3, b"", b"m", &[(30, 1)], 2));
        let apart = open(&db, tmp.path(), &region(4, b"x", b"", &[(40, 1)], 2));
        let elsewhere = open(
            &db,
            tmp.path(),
            &region(5, b"t", b"x", &[(50, 1), (51, 2)], 2),
        );

        let min_index = check_prepare(&source, &adjacent).expect("adjacent, same stores");
        assert_eq!(min_index, source.raft.last_index());
        let why = check_prepare(&source, &apart).expect_err("a gap between them");
        assert!(why.contains("not adjacent"), "{why}");
        let why = check_prepare(&source, &elsewhere).expect_err("different stores");
        assert!(why.contains("different stores"), "{why}");

        let mut frozen = open(&db, tmp.path(), &region(6, b"t", b"x", &[(60, 1)], 2));
        frozen.merge_state = Some(frozen_for(&source.region));
        let why = check_prepare(&source, &frozen).expect_err("target is merging");
        assert!(why.contains("itself merging"), "{why}");
    }
}
