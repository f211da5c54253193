//! Raft log GC: a leader whose log holds enough applied entries proposes
//! a CompactLog.

use crate::config::RaftConfig;
use crate::raftstore::peer::Peer;
use crate::raftstore::store::Raftstore;
use nokv_proto::raft_cmdpb::{admin_request, AdminRequest, RaftCmdRequest, RaftRequestHeader};
use prost::Message as _;
use tracing::debug;

impl Raftstore {
    /// Proposes a `CompactLog` for a leader whose log holds enough applied
    /// entries, keeping what lagging followers still need unless they lag
    /// beyond the count limit (they will get a snapshot instead).
    pub(in crate::raftstore) fn maybe_compact_log(cfg: &RaftConfig, peer: &mut Peer) {
        // A frozen merge source keeps its log: the CommitMerge carries its
        // tail to lagging replicas.
        if !peer.raft.is_leader() || !peer.is_initialized() || peer.merge_state.is_some() {
            return;
        }
        let applied = peer.apply_state.applied_index;
        let truncated = peer.truncated_index();
        if applied.saturating_sub(truncated) < cfg.log_gc_threshold {
            return;
        }
        let raft = &peer.raft.raw().raft;
        let min_matched = raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != peer.meta.id)
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(applied);
        let target = if applied.saturating_sub(min_matched) > cfg.log_gc_count_limit {
            applied
        } else {
            min_matched.min(applied)
        };
        if target <= truncated {
            return;
        }
        let Ok(term) = raft.raft_log.term(target) else {
            return;
        };
        let cmd = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: peer.region.id,
                region_epoch: peer.region.epoch,
                ..Default::default()
            }),
            requests: Vec::new(),
            admin_request: Some(AdminRequest {
                cmd: Some(admin_request::Cmd::CompactLog(
                    nokv_proto::raft_cmdpb::CompactLogRequest {
                        compact_index: target,
                        compact_term: term,
                    },
                )),
            }),
            ..Default::default()
        };
        debug!(
            region_id = peer.region.id,
            compact_index = target,
            "proposing log compaction"
        );
        peer.raft.propose(cmd.encode_to_vec(), Box::new(|_| {}));
    }
}
