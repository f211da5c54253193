//! How a replica proposes: one command as one raft entry, or the writes
//! batched this round as one entry; a failed proposal is answered with the
//! typed region error it means.

use nokv_consensus::peer::ProposeError;
use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb;
use nokv_proto::raft_cmdpb::RaftCmdRequest;
use prost::Message as _;

use super::Peer;
use crate::raftstore::msg::CmdCallback;
use crate::region::{not_leader, stale_command, timeout};

/// The region error a failed proposal of `region_id` answers with.
pub fn map_propose_error(region_id: u64, peers: &[metapb::Peer], e: ProposeError) -> RegionError {
    match e {
        ProposeError::NotLeader { leader_id } => {
            not_leader(region_id, peers.iter().find(|p| p.id == leader_id).cloned())
        }
        ProposeError::Stale => stale_command(),
        ProposeError::TimedOut => timeout(region_id),
        ProposeError::Dropped(why) => RegionError {
            message: format!("proposal dropped: {why}"),
            kind: Some(nokv_proto::errorpb::region_error::Kind::StaleCommand(
                nokv_proto::errorpb::StaleCommand {},
            )),
        },
    }
}

impl Peer {
    /// Proposes `cmd` as one raft entry; `cb` gets its result once it
    /// applies (or the typed error if it cannot).
    pub fn propose_command(&mut self, cmd: RaftCmdRequest, cb: CmdCallback) {
        let region_id = self.region.id;
        let peers = self.region.peers.clone();
        self.raft.propose(
            cmd.encode_to_vec(),
            Box::new(move |r| cb(r.map_err(|e| map_propose_error(region_id, &peers, e)))),
        );
    }

    /// Proposes the writes gathered this round, if any, as one entry.
    pub fn propose_batch(&mut self) {
        if let Some((cmd, cb)) = self.proposal_batch.take() {
            crate::metrics::PROPOSAL_BATCH_COMMANDS.observe(cmd.requests.len() as f64);
            self.propose_command(cmd, cb);
        }
    }
}
