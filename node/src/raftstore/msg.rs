//! Messages into the raftstore thread. Every request carries a callback
//! that is called exactly once, also when the request fails.

use nokv_proto::adminpb::RegionStatus;
use nokv_proto::coordinatorpb::RegionHeartbeatResponse;
use nokv_proto::errorpb::RegionError;
use nokv_proto::metapb::{Peer, RegionEpoch};
use nokv_proto::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use nokv_proto::raft_serverpb::RaftMessage;

/// A command's outcome as one `Result`: an applied response whose header
/// carries a region error (found at apply time) becomes that error.
pub fn command_result(resp: RaftCmdResponse) -> Result<RaftCmdResponse, RegionError> {
    match resp.header.as_ref().and_then(|h| h.error.clone()) {
        Some(e) => Err(e),
        None => Ok(resp),
    }
}

/// Answer to a write: the apply response (which may carry a region error
/// found at apply time) or a region error found before proposing.
pub type CmdCallback = Box<dyn FnOnce(Result<RaftCmdResponse, RegionError>) + Send>;
/// Permission to read a region at a linearizable point.
#[derive(Debug, Clone)]
pub struct ReadGrant {
    /// Applied index the read is linearizable at.
    pub applied_index: u64,
    /// The region's start key when the read was admitted.
    pub start_key: Vec<u8>,
    /// The region's end key when the read was admitted (empty = unbounded).
    pub end_key: Vec<u8>,
}

/// Answer to a read request.
pub type ReadCallback = Box<dyn FnOnce(Result<ReadGrant, RegionError>) + Send>;

/// A request to the raftstore thread.
pub enum StoreMsg {
    /// A raft message from another store.
    Raft(RaftMessage),
    /// A command to replicate (writes, admin commands).
    Command {
        /// The command; its header names region, epoch and peer.
        cmd: RaftCmdRequest,
        /// Called with the outcome.
        cb: CmdCallback,
    },
    /// A linearizable read point for keys or ranges of a region.
    Read {
        /// Region addressed.
        region_id: u64,
        /// Epoch the caller routed with.
        epoch: Option<RegionEpoch>,
        /// Peer the caller addressed.
        peer: Option<Peer>,
        /// Keys the read covers.
        keys: Vec<Vec<u8>>,
        /// Key ranges `[start, end)` the read covers (empty start = region
        /// start, empty end = region end).
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
        /// Called with the read point.
        cb: ReadCallback,
    },
    /// A membership change ordered by the coordinator or an operator.
    ChangePeer {
        /// Region addressed.
        region_id: u64,
        /// The change (kind and peer).
        change: nokv_proto::raft_cmdpb::ChangePeerRequest,
        /// Called with the outcome.
        cb: CmdCallback,
    },
    /// Hand leadership to the peer on `to_store`.
    TransferLeader {
        /// Region addressed.
        region_id: u64,
        /// Target store.
        to_store: u64,
        /// Called with the target peer once the transfer started.
        cb: Box<dyn FnOnce(Result<Peer, RegionError>) + Send>,
    },
    /// Status of one region (or all with `None`).
    Status {
        /// Region filter.
        region_id: Option<u64>,
        /// Called with the statuses.
        cb: Box<dyn FnOnce(Vec<RegionStatus>) + Send>,
    },
    /// The coordinator's answer to a region heartbeat.
    HeartbeatResponse(RegionHeartbeatResponse),
    /// Stop the raftstore thread (answering pending requests with errors).
    Stop,
    /// What became of a snapshot streamed to another store.
    SnapshotReport {
        /// Region.
        region_id: u64,
        /// The peer it was for.
        to_peer: u64,
        /// Whether the receiver took it.
        sent: bool,
    },
    /// Start merging `source` into the adjacent `target` (this store must
    /// lead the source and hold a replica of the target).
    PrepareMerge {
        /// The region to freeze and fold into `target`.
        source: u64,
        /// The region that takes over the source's range.
        target: u64,
        /// Diagnostics transition to complete when the merge commits.
        transition: Option<u64>,
        /// Called once the PrepareMerge applied (or failed).
        cb: CmdCallback,
    },
    /// Approximate size of a region, from the split checker.
    RegionStats {
        /// Region.
        region_id: u64,
        /// Keys counted (capped).
        approximate_keys: u64,
        /// Bytes counted (capped).
        approximate_size_bytes: u64,
        /// The region's epoch version when counted: a count from before a
        /// split or merge describes another range and is dropped.
        version: u64,
    },
}

impl StoreMsg {
    /// The region the message is for; `None` for store-wide messages,
    /// which go to the store's own inbox.
    pub fn region_id(&self) -> Option<u64> {
        match self {
            StoreMsg::Raft(env) => Some(env.region_id),
            StoreMsg::Command { cmd, .. } => cmd.header.as_ref().map(|h| h.region_id),
            StoreMsg::Read { region_id, .. }
            | StoreMsg::ChangePeer { region_id, .. }
            | StoreMsg::TransferLeader { region_id, .. }
            | StoreMsg::SnapshotReport { region_id, .. }
            | StoreMsg::RegionStats { region_id, .. } => Some(*region_id),
            StoreMsg::PrepareMerge { source, .. } => Some(*source),
            StoreMsg::Status { .. } | StoreMsg::HeartbeatResponse(_) | StoreMsg::Stop => None,
        }
    }
}

/// Proposers to answer once an apply batch is written, with their answers.
pub type Answers = Vec<(
    nokv_consensus::peer::ProposalCallback<RaftCmdResponse>,
    RaftCmdResponse,
)>;

/// The answer of an admin command that applied.
pub fn admin_ok(cmd: nokv_proto::raft_cmdpb::admin_response::Cmd) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(nokv_proto::raft_cmdpb::RaftResponseHeader::default()),
        responses: Vec::new(),
        admin_response: Some(nokv_proto::raft_cmdpb::AdminResponse { cmd: Some(cmd) }),
    }
}

/// The answer of a command refused with `e` (nothing of it applied).
pub fn error_response(e: nokv_proto::errorpb::RegionError) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(nokv_proto::raft_cmdpb::RaftResponseHeader {
            error: Some(e),
            ..Default::default()
        }),
        ..Default::default()
    }
}
