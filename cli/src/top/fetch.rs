//! The poller of `nokv top`: a task that surveys the cluster every
//! interval and sends the result as a [`Message`], so drawing never waits
//! on the network. It stops when the shutdown signal flips or the
//! receiver is gone.

use std::time::Duration;

use nokv_client::CoordinatorClient;
use tokio::sync::{mpsc, watch};

use super::update::Message;
use crate::survey::{self, Scope};

/// Polls until `shutdown` becomes true. A poll that outlasts the interval
/// delays the next one rather than overlapping it.
pub async fn run(
    client: CoordinatorClient,
    interval: Duration,
    tx: mpsc::UnboundedSender<Message>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let started = tokio::time::Instant::now();
        let msg = tokio::select! {
            r = survey::collect(&client, Scope::ALL) => match r {
                Ok(s) => Message::Data(Box::new(s)),
                Err(e) => Message::Error {
                    message: crate::describe(&e),
                    at_ms: survey::now_ms(),
                },
            },
            _ = shutdown.changed() => return,
        };
        if tx.send(msg).is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}
