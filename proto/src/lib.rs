//! NoKV's one protocol contract, generated from `proto/*.proto`.
//!
//! # Layout
//! - [`metapb`]: stores, regions, peers, epochs, coordinator members.
//! - [`errorpb`]: the typed `RegionError` every region-addressed call can return.
//! - [`kvrpcpb`]: the `Kv` service: raw and transactional data API.
//! - [`raft_serverpb`]: raft transport envelope and persisted raft/apply state.
//! - [`raft_cmdpb`]: commands carried in a region's raft log.
//! - [`adminpb`]: the per-store `Admin` service (status, diagnostics, manual control).
//! - [`coordinatorpb`]: the `Coordinator` service and its replicated commands.
//! - [`tls`]: the CA, certificate and key every process dials and serves with.
//! - [`poison`]: locking past a panicking holder, the one rule every crate uses.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Cluster metadata.
pub mod metapb {
    tonic::include_proto!("metapb");
}
/// Typed region errors.
pub mod errorpb {
    tonic::include_proto!("errorpb");
}
/// Data API.
pub mod kvrpcpb {
    tonic::include_proto!("kvrpcpb");
}
/// Raft transport and persisted raft state.
pub mod raft_serverpb {
    tonic::include_proto!("raft_serverpb");
}
/// Raft log commands.
pub mod raft_cmdpb {
    tonic::include_proto!("raft_cmdpb");
}
/// Per-store admin service.
pub mod adminpb {
    tonic::include_proto!("adminpb");
}
/// Coordinator service.
pub mod coordinatorpb {
    tonic::include_proto!("coordinatorpb");
}

/// Mutual TLS material for dialing and serving.
#[deny(missing_docs)]
pub mod tls;

pub use prost;
pub use tonic;

pub mod poison;

/// Calls the macro `$m` with the path of every Coordinator response type;
/// each carries a `header: Option<coordinatorpb::ResponseHeader>`. Code that
/// treats every response alike (reading the header in the client, setting
/// it in the coordinator) keeps this one list.
#[macro_export]
macro_rules! coordinator_responses {
    ($m:ident) => {
        $m!(
            $crate::coordinatorpb::GetMembersResponse,
            $crate::coordinatorpb::BootstrapResponse,
            $crate::coordinatorpb::IsBootstrappedResponse,
            $crate::coordinatorpb::AllocIdResponse,
            $crate::coordinatorpb::TsoResponse,
            $crate::coordinatorpb::PutStoreResponse,
            $crate::coordinatorpb::GetStoreResponse,
            $crate::coordinatorpb::GetAllStoresResponse,
            $crate::coordinatorpb::StoreHeartbeatResponse,
            $crate::coordinatorpb::RegionHeartbeatResponse,
            $crate::coordinatorpb::GetRegionResponse,
            $crate::coordinatorpb::ScanRegionsResponse,
            $crate::coordinatorpb::AskBatchSplitResponse,
            $crate::coordinatorpb::ReportBatchSplitResponse,
            $crate::coordinatorpb::GetOperatorsResponse,
            $crate::coordinatorpb::AddOperatorResponse,
            $crate::coordinatorpb::CancelOperatorResponse,
            $crate::coordinatorpb::GetSchedulersResponse,
            $crate::coordinatorpb::PauseSchedulerResponse,
            $crate::coordinatorpb::DeleteStoreResponse,
            $crate::coordinatorpb::GetGcSafePointResponse,
            $crate::coordinatorpb::UpdateGcSafePointResponse,
        );
    };
}
