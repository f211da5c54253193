//! Raft log GC: a leader whose log holds enough applied entries proposes
//! a CompactLog; every replica applies it at the same index.

use nokv_proto::raft_cmdpb::{
    admin_request, admin_response, AdminRequest, AdminResponse, CompactLogRequest, RaftCmdRequest,
    RaftCmdResponse, RaftRequestHeader, RaftResponseHeader,
};
use prost::Message as _;
use rocksdb::{WriteBatch, DB};
use tracing::debug;

use crate::config::RaftConfig;
use crate::raftstore::peer::Peer;
use crate::raftstore::store::Raftstore;
use crate::Result;

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
        let me = peer.meta.id;
        let min_matched = peer
            .raft
            .progress()
            .filter(|(id, _)| *id != me)
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
        let Some(term) = peer.raft.term_of(target) else {
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

/// Drops raft log entries up to the command's index, in `wb`.
pub(crate) fn apply_compact_log(
    peer: &mut Peer,
    _db: &DB,
    c: CompactLogRequest,
    wb: &mut WriteBatch,
) -> Result<RaftCmdResponse> {
    let truncated = peer.truncated_index();
    // Entries up to the applied index are the only ones safe to drop;
    // the proposer picked the index, every replica applies the same.
    if c.compact_index <= truncated || c.compact_index > peer.apply_state.applied_index {
        return Ok(RaftCmdResponse::default());
    }
    peer.raft
        .compact_log_to(c.compact_index, c.compact_term, wb)?;
    peer.apply_state.truncated_state = Some(nokv_proto::raft_serverpb::RaftTruncatedState {
        index: c.compact_index,
        term: c.compact_term,
    });
    crate::metrics::LOG_COMPACTIONS.inc();
    Ok(RaftCmdResponse {
        header: Some(RaftResponseHeader::default()),
        responses: Vec::new(),
        admin_response: Some(AdminResponse {
            cmd: Some(admin_response::Cmd::CompactLog(Default::default())),
        }),
    })
}
