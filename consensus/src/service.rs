//! The `RaftTransport` gRPC service: the receiving end of [`crate::transport`].
//! It decodes nothing itself; every message goes to a [`RaftMessageSink`]
//! (the node's router or the coordinator's raft loop).

use std::pin::Pin;
use std::sync::Arc;

use nokv_proto::raft_serverpb::raft_transport_server::RaftTransport;
use nokv_proto::raft_serverpb::{
    RaftMessage, RaftMessageBatch, RaftTransportFeedback, SnapshotChunk, SnapshotDone,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Where received raft messages go.
pub trait RaftMessageSink: Send + Sync + 'static {
    /// Takes one message. Must not block: a full inbox drops the message.
    fn deliver(&self, msg: RaftMessage);
}

/// Serves `RaftTransport` for one process.
pub struct RaftTransportService<S> {
    sink: Arc<S>,
}

impl<S: RaftMessageSink> RaftTransportService<S> {
    /// Creates the service delivering into `sink`.
    pub fn new(sink: Arc<S>) -> Self {
        RaftTransportService { sink }
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
        _request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotDone>, Status> {
        Err(Status::unimplemented(
            "chunked snapshot streaming is not implemented yet; snapshots travel inline in raft messages",
        ))
    }
}
