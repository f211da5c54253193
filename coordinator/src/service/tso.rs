//! Timestamps (`GetTimestamp`, the `Tso` stream) and id allocation
//! (`AllocId`), both served by the leader only.

use std::pin::Pin;
use std::sync::Arc;

use nokv_proto::coordinatorpb::{AllocIdRequest, AllocIdResponse, TsoRequest, TsoResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use super::{Answer, CoordinatorService};
use crate::metrics;
use crate::tso::MAX_BATCH;

/// The answers of one `Tso` stream, one per request.
pub(super) type TsoStream = Pin<Box<dyn Stream<Item = Result<TsoResponse, Status>> + Send>>;

impl CoordinatorService {
    /// `GetTimestamp` (leader only): one batch of timestamps.
    pub(super) async fn get_timestamp(&self, req: TsoRequest) -> Answer<TsoResponse> {
        self.timestamps(req.count).await
    }

    /// `Tso`: a batch of timestamps for every request on the stream, in
    /// order, until the client closes it.
    pub(super) fn tso_stream(self: Arc<Self>, mut inbound: Streaming<TsoRequest>) -> TsoStream {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                let resp = self.respond(self.timestamps(req.count).await);
                if tx.send(resp).await.is_err() {
                    break;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }

    /// `count` timestamps sharing one physical millisecond (1 to
    /// [`MAX_BATCH`]).
    async fn timestamps(&self, count: u32) -> Answer<TsoResponse> {
        self.require_leader()?;
        metrics::TSO_REQUESTS.inc();
        let count = count.clamp(1, MAX_BATCH);
        let first = self.tso.next(count).await.map_err(|e| self.error(e))?;
        metrics::TSO_TIMESTAMPS.inc_by(u64::from(count));
        Ok(TsoResponse {
            header: None,
            first,
            count,
        })
    }

    /// `AllocId` (leader only): up to 10000 consecutive ids.
    pub(super) async fn alloc_id(&self, req: AllocIdRequest) -> Answer<AllocIdResponse> {
        let count = req.count.max(1);
        if count > 10_000 {
            return Err(Status::invalid_argument("at most 10000 ids per request").into());
        }
        self.require_leader()?;
        let id = self.ids.alloc(count).await.map_err(|e| self.error(e))?;
        metrics::ID_REQUESTS.inc();
        metrics::IDS_ALLOCATED.inc_by(u64::from(count));
        Ok(AllocIdResponse {
            header: None,
            id,
            count,
        })
    }
}
