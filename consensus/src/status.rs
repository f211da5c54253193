//! The HTTP status port every process serves: `/metrics` (Prometheus text),
//! `/health` (the process is up), `/ready` (it can serve requests) and
//! `/status` (JSON with version, role and ids).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

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

/// Serves the status routes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: StatusState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .with_state(state);
    axum::serve(listener, app).await
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
