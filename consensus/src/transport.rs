//! Outgoing raft traffic: one long-lived `BatchRaft` stream per remote
//! store, fed by a bounded queue. Messages queued while the stream is being
//! set up are sent together as one batch. A full queue or a broken stream
//! drops messages; raft retransmits, so dropping is safe and keeps the raft
//! loop from ever blocking on the network.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nokv_proto::raft_serverpb::raft_transport_client::RaftTransportClient;
use nokv_proto::raft_serverpb::{RaftMessage, RaftMessageBatch};
use nokv_proto::tls::TlsConfig;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tracing::debug;

use crate::metrics::RAFT_MESSAGES;

/// Largest gRPC message the raft transport sends or accepts. Snapshots
/// currently travel inline in raft messages, so this bounds region size for
/// snapshot transfer until chunked snapshots land.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 256 << 20;

const QUEUE_CAPACITY: usize = 4096;
const MAX_BATCH: usize = 512;

/// Resolves a store (or coordinator member) id to its gRPC address.
pub trait AddressResolver: Send + Sync + 'static {
    /// The address, without scheme (`host:port`).
    fn resolve(&self, store_id: u64) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>>;
    /// Forgets a cached address after a connection failure, so a store that
    /// moved is looked up again.
    fn invalidate(&self, _store_id: u64) {}
}

/// What happens to one outgoing raft message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// Send it.
    Deliver,
    /// Drop it, as a lossy network would.
    Drop,
    /// Send it after this long.
    Delay(std::time::Duration),
}

/// Decides the fate of outgoing raft messages. Chaos tooling and the test
/// harness install one to drop, delay or partition raft traffic; a process
/// without a filter delivers everything.
pub trait MessageFilter: Send + Sync + 'static {
    /// The action for a message from store `from` to store `to`.
    fn check(&self, from: u64, to: u64, msg: &RaftMessage) -> FilterAction;
}

/// Optional parts of a [`Transport`].
#[derive(Default)]
pub struct TransportOptions {
    /// Every outgoing message passes through this filter.
    pub filter: Option<Arc<dyn MessageFilter>>,
    /// Dial other processes with mutual TLS (raft streams and snapshots).
    pub tls: Option<TlsConfig>,
}

/// Sends raft messages to other processes. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot_permits: Arc<tokio::sync::Semaphore>,
    local_id: u64,
    resolver: Arc<dyn AddressResolver>,
    queues: Mutex<HashMap<u64, mpsc::Sender<RaftMessage>>>,
    runtime: Handle,
    filter: Option<Arc<dyn MessageFilter>>,
    tls: Option<TlsConfig>,
}

impl Transport {
    /// Creates a transport whose connection tasks run on `runtime`.
    /// `local_id` is written into every batch as the sender.
    pub fn new(local_id: u64, resolver: Arc<dyn AddressResolver>, runtime: Handle) -> Self {
        Self::with_filter(local_id, resolver, runtime, None)
    }

    /// Like [`Transport::new`], with every message passed through `filter`.
    pub fn with_filter(
        local_id: u64,
        resolver: Arc<dyn AddressResolver>,
        runtime: Handle,
        filter: Option<Arc<dyn MessageFilter>>,
    ) -> Self {
        Self::with_options(
            local_id,
            resolver,
            runtime,
            TransportOptions { filter, tls: None },
        )
    }

    /// Like [`Transport::new`], with the optional parts.
    pub fn with_options(
        local_id: u64,
        resolver: Arc<dyn AddressResolver>,
        runtime: Handle,
        options: TransportOptions,
    ) -> Self {
        Transport {
            inner: Arc::new(Inner {
                snapshot_permits: Arc::new(tokio::sync::Semaphore::new(
                    crate::snapshot_stream::MAX_CONCURRENT_TRANSFERS,
                )),
                local_id,
                resolver,
                queues: Mutex::new(HashMap::new()),
                runtime,
                filter: options.filter,
                tls: options.tls,
            }),
        }
    }

    /// Queues `msg` for `to_store`. Never blocks; returns false if the
    /// message was dropped (full queue, or the filter dropped it).
    pub fn send(&self, to_store: u64, msg: RaftMessage) -> bool {
        if let Some(filter) = &self.inner.filter {
            match filter.check(self.inner.local_id, to_store, &msg) {
                FilterAction::Deliver => {}
                FilterAction::Drop => {
                    RAFT_MESSAGES.with_label_values(&["filtered"]).inc();
                    return false;
                }
                FilterAction::Delay(d) => {
                    let me = self.clone();
                    self.inner.runtime.spawn(async move {
                        tokio::time::sleep(d).await;
                        me.enqueue(to_store, msg);
                    });
                    return true;
                }
            }
        }
        self.enqueue(to_store, msg)
    }

    /// Streams a snapshot (the files in `dir` that `header` lists) to
    /// `to_store` over the `Snapshot` RPC, passing the filter like any
    /// message. `done` hears whether the receiver took it.
    pub fn send_snapshot(
        &self,
        to_store: u64,
        header: nokv_proto::raft_serverpb::SnapshotHeader,
        dir: std::path::PathBuf,
        done: Box<dyn FnOnce(bool) + Send>,
    ) {
        let mut delay = None;
        if let (Some(filter), Some(msg)) = (&self.inner.filter, &header.message) {
            match filter.check(self.inner.local_id, to_store, msg) {
                FilterAction::Deliver => {}
                FilterAction::Drop => {
                    RAFT_MESSAGES.with_label_values(&["filtered"]).inc();
                    return done(false);
                }
                FilterAction::Delay(d) => delay = Some(d),
            }
        }
        let inner = self.inner.clone();
        self.inner.runtime.spawn(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let Some(addr) = inner.resolver.resolve(to_store).await else {
                return done(false);
            };
            let bytes = header.total_bytes;
            let sent = crate::snapshot_stream::send(
                &addr,
                inner.tls.as_ref(),
                header,
                dir,
                inner.snapshot_permits.clone(),
            )
            .await;
            match sent {
                Ok(()) => {
                    crate::metrics::SNAPSHOT_BYTES
                        .with_label_values(&["sent"])
                        .inc_by(bytes);
                    crate::metrics::SNAPSHOTS.with_label_values(&["sent"]).inc();
                    done(true)
                }
                Err(e) => {
                    debug!(store_id = to_store, error = %e, "snapshot send failed");
                    done(false)
                }
            }
        });
    }

    fn enqueue(&self, to_store: u64, msg: RaftMessage) -> bool {
        let mut queues = match self.inner.queues.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        let tx = queues.entry(to_store).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            let inner = self.inner.clone();
            self.inner
                .runtime
                .spawn(run_connection(inner, to_store, rx));
            tx
        });
        match tx.try_send(msg) {
            Ok(()) => {
                RAFT_MESSAGES.with_label_values(&["sent"]).inc();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                RAFT_MESSAGES.with_label_values(&["dropped"]).inc();
                false
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                queues.remove(&to_store);
                drop(queues);
                self.enqueue(to_store, msg)
            }
        }
    }
}

/// Drives one store's stream: resolve, connect, forward batches; on any
/// failure wait a little and start over.
async fn run_connection(inner: Arc<Inner>, to_store: u64, mut rx: mpsc::Receiver<RaftMessage>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match connect_and_forward(&inner, to_store, &mut rx).await {
            Forward::QueueClosed => return,
            Forward::Failed(why) => {
                debug!(store_id = to_store, error = %why, "raft stream failed; reconnecting");
                inner.resolver.invalidate(to_store);
            }
        }
        // Messages queued while disconnected are stale by the time we are
        // back; raft will resend what matters.
        while rx.try_recv().is_ok() {
            RAFT_MESSAGES.with_label_values(&["dropped"]).inc();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

enum Forward {
    QueueClosed,
    Failed(String),
}

async fn connect_and_forward(
    inner: &Inner,
    to_store: u64,
    rx: &mut mpsc::Receiver<RaftMessage>,
) -> Forward {
    let Some(addr) = inner.resolver.resolve(to_store).await else {
        return Forward::Failed("address unknown".into());
    };
    let endpoint = match crate::dial::endpoint(&addr, inner.tls.as_ref()) {
        Ok(e) => e
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5)),
        Err(e) => return Forward::Failed(e),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return Forward::Failed(e.to_string()),
    };
    let mut client = RaftTransportClient::new(channel)
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
    let (batch_tx, batch_rx) = mpsc::channel::<RaftMessageBatch>(64);
    let call = tokio::spawn(async move {
        match client.batch_raft(ReceiverStream::new(batch_rx)).await {
            Ok(resp) => {
                let mut feedback = resp.into_inner();
                while let Some(item) = feedback.next().await {
                    match item {
                        Ok(f) => debug!(kind = ?f.kind(), message = %f.message, "raft feedback"),
                        Err(e) => return e.to_string(),
                    }
                }
                "stream closed by receiver".to_string()
            }
            Err(e) => e.to_string(),
        }
    });
    loop {
        let Some(first) = rx.recv().await else {
            call.abort();
            return Forward::QueueClosed;
        };
        let mut messages = vec![first];
        while messages.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        let batch = RaftMessageBatch {
            messages,
            from_store_id: inner.local_id,
            to_store_id: to_store,
        };
        if batch_tx.send(batch).await.is_err() {
            let why = call
                .await
                .unwrap_or_else(|e| format!("stream task ended: {e}"));
            return Forward::Failed(why);
        }
    }
}

/// Encodes a raft-rs message for the envelope's `message` field.
pub fn encode_message(msg: &raft::prelude::Message) -> Vec<u8> {
    use protobuf::Message as _;
    msg.write_to_bytes()
        .expect("encoding an in-memory raft message cannot fail")
}

/// Decodes the envelope's `message` field.
pub fn decode_message(bytes: &[u8]) -> crate::Result<raft::prelude::Message> {
    use protobuf::Message as _;
    raft::prelude::Message::parse_from_bytes(bytes).map_err(|e| crate::Error::Corrupted {
        what: "raft message",
        detail: e.to_string(),
    })
}
