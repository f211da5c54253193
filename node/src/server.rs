//! Wiring of a store node: storage, identity, bootstrap, raftstore,
//! heartbeats, gRPC and the HTTP status port. [`run`] returns when
//! `shutdown` completes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nokv_client::CoordinatorClient;
use nokv_consensus::process::Listeners;
use nokv_consensus::security::{AdminGuard, NODE_ADMIN_METHODS};
use nokv_consensus::service::RaftTransportService;
use nokv_consensus::shutdown::watch_signal;
use nokv_consensus::status::StatusState;
use nokv_consensus::transport::MAX_RAFT_MESSAGE_BYTES;
use nokv_consensus::{AddressResolver, MessageFilter, Transport, TransportOptions};
use nokv_proto::adminpb::admin_server::AdminServer;
use nokv_proto::kvrpcpb::kv_server::KvServer;
use nokv_proto::metapb::{Store, StoreState};
use nokv_proto::raft_serverpb::raft_transport_server::RaftTransportServer;
use tracing::info;

use crate::bootstrap::{bootstrap_if_needed, ensure_store_id, load_regions, open_peers};
use crate::config::NodeConfig;
use crate::engine::ALL_CFS;
use crate::raftstore::snapshot::RegionSnapshotSource;
use crate::raftstore::{self, RaftstoreParts, StoreCounters};
use crate::service::admin::AdminService;
use crate::service::KvService;
use crate::worker::heartbeat::{spawn_region_heartbeats, spawn_store_heartbeats};
use crate::{Error, Result};
use nokv_proto::poison::MutexExt;

/// Resolves store ids to addresses through the coordinator, with a cache.
struct StoreResolver {
    coordinator: CoordinatorClient,
    cache: Mutex<HashMap<u64, String>>,
}

impl AddressResolver for StoreResolver {
    fn resolve(&self, store_id: u64) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move {
            if let Some(a) = self.cache.lock_unpoisoned().get(&store_id) {
                return Some(a.clone());
            }
            let addr = self
                .coordinator
                .get_store(store_id)
                .await
                .ok()?
                .store?
                .address;
            self.cache.lock_unpoisoned().insert(store_id, addr.clone());
            Some(addr)
        })
    }

    fn invalidate(&self, store_id: u64) {
        self.cache.lock_unpoisoned().remove(&store_id);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a started node tells its embedder.
#[derive(Debug, Clone)]
pub struct NodeStarted {
    /// The store id.
    pub store_id: u64,
    /// The gRPC address it serves (resolved when listening on port 0).
    pub address: String,
    /// The HTTP status address.
    pub status_address: String,
}

/// Optional extras for embedding a node in another process (the test
/// harness, chaos tooling).
#[derive(Default)]
pub struct NodeHooks {
    /// Every outgoing raft message passes through this filter.
    pub message_filter: Option<Arc<dyn MessageFilter>>,
    /// Told once the node serves.
    pub started: Option<tokio::sync::oneshot::Sender<NodeStarted>>,
}

/// Runs a store node until `shutdown` completes.
///
/// # Errors
/// Invalid configuration, ports that cannot be bound, or storage that
/// cannot be opened.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_with(config, shutdown, NodeHooks::default()).await
}

/// [`run`] with embedding hooks. When it returns, every thread and task of
/// the node has stopped and its RocksDB is closed, so the same data
/// directory can be opened again at once.
pub async fn run_with(
    mut config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hooks: NodeHooks,
) -> Result<()> {
    config.validate().map_err(Error::Config)?;
    // TLS material is read before the ports are bound, so a bad
    // `security` section stops the node before it binds or registers
    // anything.
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
    // The node stops when asked, or when its raftstore stops on a failure
    // to keep the store's state; `run` then returns that failure.
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = watch_signal(async move {
        tokio::select! {
            _ = shutdown => {}
            Ok(()) = fatal_rx => {}
        }
    });
    crate::metrics::register();
    let started = Instant::now();
    // Port 0 means "any free port": advertise the one we got.
    let bound = grpc.local_addr()?.to_string();
    if config.advertise_address.is_empty() && config.listen.ends_with(":0") {
        config.advertise_address = bound;
    }
    config.status_listen = status.local_addr()?.to_string();
    let ready = Arc::new(AtomicBool::new(false));
    let store_id_cell = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let status_state = {
        let store_id = store_id_cell.clone();
        let ready = ready.clone();
        StatusState {
            ready: ready.clone(),
            status: Arc::new(move || {
                serde_json::json!({
                    "component": "node",
                    "version": env!("CARGO_PKG_VERSION"),
                    "store_id": store_id.load(Ordering::Relaxed),
                    "role": "store",
                    "ready": ready.load(Ordering::Relaxed),
                    "uptime_seconds": started.elapsed().as_secs(),
                })
                .to_string()
            }),
        }
    };
    // The status port comes up first so /health answers while the node
    // registers; /ready stays false until it can serve.
    let status_task = status.spawn(status_state);

    let db = tokio::task::spawn_blocking({
        let path = config.data_dir.join("db");
        move || nokv_consensus::engine::open(&path, &ALL_CFS)
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let mut coordinator =
        CoordinatorClient::new(config.coordinators.clone(), Duration::from_secs(5))?;
    if let Some(tls) = &tls {
        coordinator = coordinator.with_tls(tls.clone());
    }
    let store_id = ensure_store_id(&db, &coordinator).await?;
    store_id_cell.store(store_id, Ordering::Relaxed);
    let store = Store {
        id: store_id,
        address: config.advertise(),
        status_address: config.status_listen.clone(),
        state: StoreState::Up as i32,
        labels: config.labels.clone().into_iter().collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        start_time_ms: now_ms(),
        last_heartbeat_ms: 0,
    };
    crate::bootstrap::register_store(&coordinator, &store).await?;

    let snapshots = Arc::new(RegionSnapshotSource::new(
        db.clone(),
        config.data_dir.join("snap"),
    )?);
    crate::raftstore::snapshot::finish_interrupted_installs(&db, &snapshots)?;
    let recovered = load_regions(&db, store_id)?;
    let missing = recovered.missing_raft_state;
    let mut regions = recovered.regions;
    if regions.is_empty() && bootstrap_if_needed(&db, &coordinator, &store).await? {
        regions = load_regions(&db, store_id)?.regions;
    }
    info!(store_id, regions = regions.len(), missing_raft_state = ?missing, "regions recovered");
    let diagnostics = Arc::new(crate::diagnostics::Diagnostics::default());
    diagnostics.set_restart(regions.len() as u64, missing.clone());
    let peers = open_peers(&db, store_id, regions, &config.raft, snapshots.clone())?;

    let resolver = Arc::new(StoreResolver {
        coordinator: coordinator.clone(),
        cache: Mutex::new(HashMap::new()),
    });
    let transport = Transport::with_options(
        store_id,
        resolver,
        tokio::runtime::Handle::current(),
        TransportOptions {
            filter: hooks.message_filter,
            tls,
        },
    );
    let (hb_tx, hb_rx) = tokio::sync::mpsc::unbounded_channel();
    let (split_tx, split_rx) = tokio::sync::mpsc::unbounded_channel();
    let counters = Arc::new(StoreCounters::default());
    let (router, raftstore_thread) = raftstore::spawn(RaftstoreParts {
        store_id,
        db: db.clone(),
        peers,
        transport,
        heartbeats: hb_tx,
        config: config.raft.clone(),
        snapshots: snapshots.clone(),
        counters: counters.clone(),
        diagnostics: diagnostics.clone(),
        split_checks: split_tx,
        fatal: Some(fatal_tx),
    })?;
    let region_hb_task = spawn_region_heartbeats(coordinator.clone(), hb_rx, router.clone());
    let store_hb_task = spawn_store_heartbeats(
        coordinator.clone(),
        store_id,
        counters.clone(),
        db.clone(),
        config.data_dir.clone(),
        Duration::from_millis(config.store_heartbeat_interval_ms.max(100)),
    );

    let handle = Arc::new(crate::engine::DbHandle::new(db.clone()));
    let split_check_task = crate::worker::split_check::spawn(
        handle.clone(),
        crate::worker::split::SplitDriver {
            router: router.clone(),
            coordinator: coordinator.clone(),
            diagnostics: diagnostics.clone(),
        },
        split_rx,
        crate::worker::split_check::SplitThresholds {
            keys: config.raft.region_split_keys,
            bytes: config.raft.region_split_size_bytes,
        },
    );
    let safe_point = Arc::new(crate::worker::gc::SafePoint::default());
    let gc_task = (config.gc_interval_ms > 0).then(|| {
        crate::worker::gc::spawn(
            coordinator.clone(),
            router.clone(),
            handle.clone(),
            safe_point.clone(),
            Duration::from_millis(config.gc_interval_ms),
            config.gc_batch_keys,
        )
    });
    let kv = KvService::new(
        router.clone(),
        handle.clone(),
        config.limits.clone(),
        config.sessions.clone(),
        diagnostics.clone(),
        counters.clone(),
        crate::service::TxnParts {
            memory_locks: Default::default(),
            coordinator: coordinator.clone(),
            safe_point,
        },
    );
    let admin = AdminService::new(
        router.clone(),
        store_id,
        handle.clone(),
        config.data_dir.clone(),
        counters,
        coordinator,
        diagnostics,
    );
    ready.store(true, Ordering::Release);
    if let Some(tx) = hooks.started {
        let _ = tx.send(NodeStarted {
            store_id,
            address: config.advertise(),
            status_address: config.status_listen.clone(),
        });
    }
    let stopper = router.clone();
    info!(store_id, listen = %config.listen, status = %config.status_listen, "node serving");
    let max_msg = config.limits.max_grpc_message_bytes;
    let raft_service =
        RaftTransportService::with_snapshots(Arc::new(router.clone()), Arc::new(snapshots.inbox()));
    let services = |server: &mut tonic::transport::Server| {
        server
            .add_service(
                KvServer::new(kv)
                    .max_decoding_message_size(max_msg)
                    .max_encoding_message_size(max_msg),
            )
            .add_service(AdminGuard::new(
                AdminServer::new(admin),
                admin_policy,
                NODE_ADMIN_METHODS,
            ))
            .add_service(
                RaftTransportServer::new(raft_service)
                    .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
            )
    };
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    grpc.serve(services, stop, grace).await?;
    // Stop everything that holds the database, then wait for the raftstore
    // thread so RocksDB is closed when we return.
    ready.store(false, Ordering::Release);
    handle.close();
    drop(db);
    region_hb_task.abort();
    store_hb_task.abort();
    if let Some(t) = &gc_task {
        t.abort();
    }
    split_check_task.abort();
    status_task.abort();
    let _ = stopper.send(crate::raftstore::msg::StoreMsg::Stop);
    drop(router);
    drop(stopper);
    let raftstore_result = tokio::task::spawn_blocking(move || raftstore_thread.join())
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .unwrap_or_else(|_| Err(Error::Fatal("the raftstore thread panicked".into())));
    let _ = (
        region_hb_task.await,
        store_hb_task.await,
        status_task.await,
        split_check_task.await,
    );
    if let Some(t) = gc_task {
        let _ = t.await;
    }
    raftstore_result?;
    info!(store_id, "node stopped");
    Ok(())
}
