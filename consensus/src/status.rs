//! The HTTP status port every process serves: `/metrics` (Prometheus text),
//! `/health` (the process is up), `/ready` (it can serve requests) and
//! `/status` (JSON with version, role and ids). Plain HTTP, or HTTPS with
//! the process's certificate when `security.status_tls` is set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// Most status connections served at once; the accept loop waits for a
/// free slot beyond that.
pub const MAX_CONNECTIONS: usize = 256;

/// Produces the `/status` JSON body.
pub type StatusFn = Arc<dyn Fn() -> String + Send + Sync>;

/// What the status handlers read.
#[derive(Clone)]
pub struct StatusState {
    /// Flipped to true once the process can serve (registered, raft up).
    pub ready: Arc<AtomicBool>,
    /// Renders `/status`.
    pub status: StatusFn,
}

/// Serves the status routes on `listener` until the task is dropped: over
/// HTTPS when `tls` is given (a connection that does not complete a TLS
/// handshake within [`nokv_proto::tls::HANDSHAKE_TIMEOUT`] is dropped),
/// else plain HTTP. Either way at most [`MAX_CONNECTIONS`] connections are
/// served at once, and one that sends no request within that timeout is
/// closed.
pub async fn serve(
    listener: TcpListener,
    state: StatusState,
    tls: Option<Arc<ServerConfig>>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .with_state(state);
    let acceptor = tls.map(TlsAcceptor::from);
    // Probes and scrapers need a handful of connections; more only means
    // someone is holding them open.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: let the moment
                // pass instead of spinning.
                debug!(error = %e, "status port accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                return serve_connection(stream, app).await;
            };
            let handshake =
                tokio::time::timeout(nokv_proto::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                    .await;
            match handshake {
                Ok(Ok(stream)) => serve_connection(stream, app).await,
                _ => debug!("status port: TLS handshake failed or timed out"),
            }
        });
    }
}

/// Serves HTTP/1 or HTTP/2 on one accepted connection until it closes.
async fn serve_connection<S>(stream: S, app: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that connects and then sends no request is dropped.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(nokv_proto::tls::HANDSHAKE_TIMEOUT);
    let served = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        debug!(error = %e, "status port connection ended with an error");
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

async fn ready(State(state): State<StatusState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn status(State(state): State<StatusState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        (state.status)(),
    )
}
