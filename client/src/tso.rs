//! [`TsoBatcher`]: timestamps for many concurrent callers, fetched from the
//! coordinator in batches. While one request is in flight every new caller
//! queues; the next request asks for all of them at once, so the number of
//! round trips tracks latency, not load.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use crate::coordinator::CoordinatorClient;
use crate::{Error, Result};

type Waiter = oneshot::Sender<std::result::Result<u64, String>>;

/// A batching timestamp source. Cheap to clone.
#[derive(Clone)]
pub struct TsoBatcher {
    coordinator: CoordinatorClient,
    tx: Arc<OnceLock<mpsc::UnboundedSender<Waiter>>>,
}

/// Most timestamps one request asks for.
const MAX_BATCH: usize = 4096;

impl TsoBatcher {
    /// A batcher over `coordinator`. The background task starts on first
    /// use, inside the caller's Tokio runtime.
    pub fn new(coordinator: CoordinatorClient) -> Self {
        TsoBatcher {
            coordinator,
            tx: Arc::new(OnceLock::new()),
        }
    }

    fn sender(&self) -> &mpsc::UnboundedSender<Waiter> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(self.coordinator.clone(), rx));
            tx
        })
    }

    /// One fresh timestamp, strictly above every timestamp handed out
    /// before this call began.
    pub async fn get_ts(&self) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.sender()
            .send(tx)
            .map_err(|_| Error::CoordinatorUnavailable("timestamp task stopped".into()))?;
        match rx.await {
            Ok(Ok(ts)) => Ok(ts),
            Ok(Err(e)) => Err(Error::CoordinatorUnavailable(e)),
            Err(_) => Err(Error::CoordinatorUnavailable(
                "timestamp task stopped".into(),
            )),
        }
    }
}

async fn run(coordinator: CoordinatorClient, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        match coordinator.get_timestamp(batch.len() as u32).await {
            Ok(first_ts) => {
                for (i, w) in batch.into_iter().enumerate() {
                    let _ = w.send(Ok(first_ts + i as u64));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for w in batch {
                    let _ = w.send(Err(msg.clone()));
                }
            }
        }
    }
}
