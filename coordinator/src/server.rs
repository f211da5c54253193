//! Wiring of one coordinator member: storage, raft loop, gRPC and the HTTP
//! status port. [`run`] returns when `shutdown` completes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_consensus::engine::{self, CF_META, CF_RAFT};
use nokv_consensus::security::{AdminGuard, COORDINATOR_ADMIN_METHODS};
use nokv_consensus::service::RaftTransportService;
use nokv_consensus::shutdown::{grace_deadline, signalled, watch_signal};
use nokv_consensus::status::{self, StatusState};
use nokv_consensus::transport::MAX_RAFT_MESSAGE_BYTES;
use nokv_consensus::{AddressResolver, Transport, TransportOptions};
use nokv_proto::coordinatorpb::coordinator_server::CoordinatorServer;
use nokv_proto::raft_serverpb::raft_transport_server::RaftTransportServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tracing::info;

use crate::config::CoordinatorConfig;
use crate::raft_loop::{self, LoopConfig};
use crate::service::{CoordinatorGrpc, CoordinatorService};
use crate::state::CF_STATE;
use crate::{Error, Result};

/// Resolves member ids to the addresses in the static member list.
struct MemberResolver {
    addresses: HashMap<u64, String>,
}

impl AddressResolver for MemberResolver {
    fn resolve(&self, id: u64) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        let addr = self.addresses.get(&id).cloned();
        Box::pin(async move { addr })
    }
}

/// How long a stopping process drains connections before exiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs a coordinator member until `shutdown` completes.
///
/// # Errors
/// Invalid configuration, a port that cannot be bound, or storage that
/// cannot be opened; [`Error::Fatal`] when the raft loop stopped on a
/// storage failure while serving (the process must then stop).
pub async fn run(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let members = config.resolved_members().map_err(Error::Config)?;
    // TLS material is read first, so a bad `security` section stops the
    // member before it binds anything.
    let security = config.security.as_ref().map(|s| s.load()).transpose()?;
    let tls = security.as_ref().map(|s| s.tls.clone());
    let status_tls = security.as_ref().and_then(|s| s.status_tls.clone());
    let mut grpc = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        grpc = grpc
            .tls_config(tls.server())
            .map_err(|e| Error::Config(format!("security: {e}")))?;
    }
    let admin_policy = security.map(|s| s.admin).unwrap_or_default();
    let stop = watch_signal(shutdown);
    crate::metrics::register();
    let started = Instant::now();
    let grpc_listener = TcpListener::bind(&config.listen).await?;
    let status_listener = TcpListener::bind(&config.status_listen).await?;
    let db = engine::open(&config.data_dir.join("db"), &[CF_RAFT, CF_META, CF_STATE])?;

    let resolver = Arc::new(MemberResolver {
        addresses: members.iter().map(|m| (m.id, m.address.clone())).collect(),
    });
    let transport = Transport::with_options(
        config.id,
        resolver,
        tokio::runtime::Handle::current(),
        TransportOptions { filter: None, tls },
    );
    let loop_cfg = LoopConfig {
        id: config.id,
        voters: members.iter().map(|m| m.id).collect(),
        tick: Duration::from_millis(config.tick_interval_ms.max(1)),
        election_ticks: config.election_ticks,
        heartbeat_ticks: config.heartbeat_ticks,
        log_gc_interval_ticks: config.log_gc_interval_ticks,
        log_gc_threshold: config.log_gc_threshold,
    };
    let (raft, mut raft_thread) = raft_loop::spawn(loop_cfg, db, transport)?;
    let service = Arc::new(CoordinatorService::new(
        raft.clone(),
        config.clone(),
        members.clone(),
    ));

    let ready = Arc::new(AtomicBool::new(false));
    {
        // Its own task: readiness must never wait behind a proposal.
        let raft = raft.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                ready.store(raft.leadership().leader_id != 0, Ordering::Release);
            }
        });
    }
    {
        let service = service.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                service.refresh_metrics();
                service.advance_gc_safe_point().await;
            }
        });
    }
    {
        let service = service.clone();
        let every = Duration::from_millis(config.schedule_interval_ms.max(10));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                service.schedule_round().await;
            }
        });
    }
    let status_state = {
        let raft = raft.clone();
        let id = config.id;
        StatusState {
            ready: ready.clone(),
            status: Arc::new(move || {
                let l = raft.leadership();
                serde_json::json!({
                    "component": "coordinator",
                    "version": env!("CARGO_PKG_VERSION"),
                    "member_id": id,
                    "cluster_id": raft.read_state(|s| s.cluster_id),
                    "role": if l.ready_leader { "leader" } else { "follower" },
                    "leader_id": l.leader_id,
                    "term": l.term,
                    "applied_index": raft.log_state().0,
                    "truncated_index": raft.log_state().1,
                    "uptime_seconds": started.elapsed().as_secs(),
                })
                .to_string()
            }),
        }
    };
    tokio::spawn(async move {
        if let Err(e) = status::serve(status_listener, status_state, status_tls).await {
            tracing::error!(error = %e, "status server stopped");
        }
    });

    info!(member_id = config.id, listen = %config.listen, status = %config.status_listen, "coordinator serving");
    let server = grpc
        .add_service(AdminGuard::new(
            CoordinatorServer::new(CoordinatorGrpc(service)),
            admin_policy,
            COORDINATOR_ADMIN_METHODS,
        ))
        .add_service(
            RaftTransportServer::new(RaftTransportService::new(raft.sink()))
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            signalled(stop.clone()),
        );
    tokio::select! {
        r = server => r.map_err(|e| Error::Io(std::io::Error::other(e)))?,
        _ = grace_deadline(stop, SHUTDOWN_GRACE) => info!("grace period over; closing remaining streams"),
        // The member cannot go on without its raft loop: stop serving and
        // hand the failure to the caller.
        e = raft_thread.fatal() => return Err(e),
    }
    info!(member_id = config.id, "coordinator stopped");
    Ok(())
}
