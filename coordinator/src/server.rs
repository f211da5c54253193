//! Wiring of one coordinator member: storage, raft loop, gRPC and the HTTP
//! status port. [`run`] returns when `shutdown` completes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_consensus::engine::{self, CF_META, CF_RAFT};
use nokv_consensus::process::Listeners;
use nokv_consensus::security::{AdminGuard, COORDINATOR_ADMIN_METHODS};
use nokv_consensus::service::RaftTransportService;
use nokv_consensus::shutdown::watch_signal;
use nokv_consensus::status::StatusState;
use nokv_consensus::transport::MAX_RAFT_MESSAGE_BYTES;
use nokv_consensus::{AddressResolver, Transport, TransportOptions};
use nokv_proto::coordinatorpb::coordinator_server::CoordinatorServer;
use nokv_proto::raft_serverpb::raft_transport_server::RaftTransportServer;
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
    let timing = config
        .raft_timing()
        .map_err(|e| Error::Config(e.to_string()))?;
    // TLS material is read before the ports are bound, so a bad
    // `security` section stops the member before it binds anything.
    let Listeners {
        grpc,
        status,
        tls,
        admin: admin_policy,
    } = Listeners::bind(
        config.security.as_ref(),
        &config.listen,
        &config.status_listen,
    )
    .await?;
    let stop = watch_signal(shutdown);
    crate::metrics::register();
    let started = Instant::now();
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
        tick: timing.tick(),
        election_ticks: timing.election_ticks(),
        heartbeat_ticks: timing.heartbeat_ticks(),
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
    status.spawn(status_state);

    info!(member_id = config.id, listen = %config.listen, status = %config.status_listen, "coordinator serving");
    let services = |server: &mut tonic::transport::Server| {
        server
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
    };
    tokio::select! {
        r = grpc.serve(services, stop, SHUTDOWN_GRACE) => r?,
        // The member cannot go on without its raft loop: stop serving and
        // hand the failure to the caller.
        e = raft_thread.fatal() => return Err(e),
    }
    info!(member_id = config.id, "coordinator stopped");
    Ok(())
}
