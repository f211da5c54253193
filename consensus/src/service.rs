//! The `RaftTransport` gRPC service: the receiving end of [`crate::transport`].
//! It decodes nothing itself; every message goes to a [`RaftMessageSink`]
//! (the node's router or the coordinator's raft loop).

use std::pin::Pin;
use std::sync::Arc;

use nokv_proto::raft_serverpb::raft_transport_server::RaftTransport;
use nokv_proto::raft_serverpb::{
    RaftMessage, RaftMessageBatch, RaftTransportFeedback, SnapshotChunk, SnapshotDone,
};
use tokio::sync::{mpsc, Semaphore};

use crate::snapshot_stream::{receive, SnapshotReceiver, MAX_CONCURRENT_TRANSFERS};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Where received raft messages go.
pub trait RaftMessageSink: Send + Sync + 'static {
    /// Takes one message. Must not block: a full inbox drops the message.
    fn deliver(&self, msg: RaftMessage);

    /// Whether the consumer is gone for good. Inbound streams then end, so
    /// senders reconnect and find the process that replaced this one (an
    /// embedded node restarted in the same process keeps its old
    /// connections' tasks alive otherwise).
    fn closed(&self) -> bool {
        false
    }
}

/// Serves `RaftTransport` for one process.
pub struct RaftTransportService<S> {
    sink: Arc<S>,
    snapshots: Option<Arc<dyn SnapshotReceiver>>,
    permits: Semaphore,
}

impl<S: RaftMessageSink> RaftTransportService<S> {
    /// Creates the service delivering into `sink`; it refuses snapshot
    /// streams.
    pub fn new(sink: Arc<S>) -> Self {
        RaftTransportService {
            sink,
            snapshots: None,
            permits: Semaphore::new(MAX_CONCURRENT_TRANSFERS),
        }
    }

    /// Also accepts snapshot streams, stored where `receiver` says.
    pub fn with_snapshots(sink: Arc<S>, receiver: Arc<dyn SnapshotReceiver>) -> Self {
        RaftTransportService {
            sink,
            snapshots: Some(receiver),
            permits: Semaphore::new(MAX_CONCURRENT_TRANSFERS),
        }
    }
}

type FeedbackStream = Pin<Box<dyn Stream<Item = Result<RaftTransportFeedback, Status>> + Send>>;

#[tonic::async_trait]
impl<S: RaftMessageSink> RaftTransport for RaftTransportService<S> {
    type BatchRaftStream = FeedbackStream;

    async fn batch_raft(
        &self,
        request: Request<Streaming<RaftMessageBatch>>,
    ) -> Result<Response<Self::BatchRaftStream>, Status> {
        crate::metrics::observe_grpc("BatchRaft", async {
            let mut inbound = request.into_inner();
            let sink = self.sink.clone();
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                // Keeping `tx` alive keeps the response stream open for as
                // long as the sender streams batches.
                let _feedback = tx;
                while let Some(Ok(batch)) = inbound.next().await {
                    if sink.closed() {
                        break;
                    }
                    for msg in batch.messages {
                        sink.deliver(msg);
                    }
                }
            });
            Ok(Response::new(
                Box::pin(ReceiverStream::new(rx)) as Self::BatchRaftStream
            ))
        })
        .await
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotDone>, Status> {
        crate::metrics::observe_grpc("Snapshot", async {
            let Some(receiver) = &self.snapshots else {
                return Err(Status::unimplemented(
                    "this process takes no region snapshots",
                ));
            };
            let header = receive(request.into_inner(), receiver.as_ref(), &self.permits).await?;
            crate::metrics::SNAPSHOT_BYTES
                .with_label_values(&["received"])
                .inc_by(header.total_bytes);
            crate::metrics::SNAPSHOTS
                .with_label_values(&["received"])
                .inc();
            if let Some(msg) = header.message {
                self.sink.deliver(msg);
            }
            Ok(Response::new(SnapshotDone {}))
        })
        .await
    }
}
