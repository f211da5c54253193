//! Stopping a server: a shutdown signal, a graceful drain, and a bound on
//! how long the drain may take. Long-lived streams (raft traffic from peers)
//! never end on their own, so a server waits at most the grace period for
//! them. Writes are durable before they are acknowledged, so cutting
//! streams loses nothing.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Completes on SIGINT (Ctrl-C) or SIGTERM: how a server process is asked
/// to stop.
pub async fn process_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Turns a shutdown future into a watch that many tasks can wait on.
pub fn watch_signal(signal: impl Future<Output = ()> + Send + 'static) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = tx.send(true);
    });
    rx
}

/// Completes once the signal fired (or its sender is gone).
pub async fn signalled(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Completes `grace` after the signal fired: the deadline of the drain.
pub async fn grace_deadline(rx: watch::Receiver<bool>, grace: Duration) {
    signalled(rx).await;
    tokio::time::sleep(grace).await;
}
