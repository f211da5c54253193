//! The request path every region-routed call takes: route a key to its
//! region's leader (the [`crate::RegionCache`], else the coordinator),
//! dial the leader's store, send one attempt, read the answer, and retry
//! with backoff until one overall deadline.
//!
//! Region errors update the cache (a named leader, the regions after a
//! split) and are retried, at once when the answer said where to go next.
//! A write's attempts carry its session ticket (see [`crate::session`]):
//! the ticket learns whether some attempt may have applied, so a write
//! that fails after one may have reports [`Error::Undetermined`].
//!
//! What each call sends is left to its caller's closure, which is handed
//! the route the attempt goes along, so a piece of a batch or a range can
//! bound itself to the region (see [`super::batch`] and [`super::range`]).

use std::future::Future;
use std::time::{Duration, Instant};

use nokv_proto::errorpb::{region_error::Kind, RegionError};
use nokv_proto::kvrpcpb::kv_client::KvClient;
use nokv_proto::kvrpcpb::*;
use tonic::transport::Channel;

use super::RawClient;
use crate::backoff::Backoff;
use crate::region_cache::RegionRoute;
use crate::session::{refused_for_certain, WriteTicket};
use crate::{Error, Result};
use nokv_proto::poison::MutexExt;

/// Responses that may carry a region error.
pub trait HasRegionError {
    /// The region error, if any.
    fn region_error(&self) -> Option<&RegionError>;
}

macro_rules! has_region_error {
    ($($t:ty),* $(,)?) => {
        $(impl HasRegionError for $t {
            fn region_error(&self) -> Option<&RegionError> {
                self.region_error.as_ref()
            }
        })*
    };
}

has_region_error!(
    RawGetResponse,
    RawBatchGetResponse,
    RawPutResponse,
    RawBatchPutResponse,
    RawDeleteResponse,
    RawDeleteRangeResponse,
    RawScanResponse,
    RawCompareAndSwapResponse,
    KvGetResponse,
    KvBatchGetResponse,
    KvScanResponse,
    KvPrewriteResponse,
    KvCommitResponse,
    KvBatchRollbackResponse,
    KvCleanupResponse,
    KvResolveLockResponse,
    KvCheckTxnStatusResponse,
    KvTxnHeartBeatResponse,
    KvScanLockResponse,
);

/// What one attempt of a call came to.
enum Step<T> {
    /// Answered.
    Done(T),
    /// Try again; `now` when the answer said where to go next.
    Retry { now: bool },
    /// A final error.
    Fail(Error),
}

/// The error a write reports: `Undetermined` once some attempt may have
/// applied, since the caller can no longer be told it did not.
fn settle(ticket: Option<&WriteTicket<'_>>, e: Error) -> Error {
    match ticket {
        Some(t) if t.maybe_applied => Error::Undetermined(e.to_string()),
        _ => e,
    }
}

impl RawClient {
    /// The region holding `key` and its believed leader: from the cache,
    /// else from the coordinator (and then cached).
    pub(crate) async fn route(&self, key: &[u8]) -> Result<RegionRoute> {
        if let Some(r) = self.cache.locate(key) {
            return Ok(r);
        }
        let resp = self.coordinator.get_region(key).await?;
        let Some(region) = resp.region else {
            return Err(Error::CoordinatorUnavailable("no region for key".into()));
        };
        let route = RegionRoute {
            region,
            leader: resp.leader,
        };
        self.cache.insert(route.clone());
        Ok(route)
    }

    async fn store_channel(&self, store_id: u64) -> Result<Channel> {
        let cached = self.stores.lock_unpoisoned().get(&store_id).cloned();
        let addr = match cached {
            Some(a) => a,
            None => {
                let resp = self.coordinator.get_store(store_id).await?;
                let addr = resp
                    .store
                    .map(|s| s.address)
                    .ok_or_else(|| Error::StoreUnavailable(format!("store {store_id} unknown")))?;
                self.stores.lock_unpoisoned().insert(store_id, addr.clone());
                addr
            }
        };
        let mut channels = self.channels.lock_unpoisoned();
        if let Some(ch) = channels.get(&addr) {
            return Ok(ch.clone());
        }
        let ch = self.coordinator.channel_to(&addr, Duration::from_secs(2))?;
        channels.insert(addr, ch.clone());
        Ok(ch)
    }

    fn forget_store(&self, store_id: u64) {
        if let Some(addr) = self.stores.lock_unpoisoned().remove(&store_id) {
            self.channels.lock_unpoisoned().remove(&addr);
        }
    }

    /// Updates the cache from a region error; returns true when retrying
    /// at once is worthwhile (the error named where to go next).
    fn on_region_error(
        &self,
        route: &RegionRoute,
        e: &RegionError,
    ) -> std::result::Result<bool, Error> {
        let id = route.region.id;
        match &e.kind {
            Some(Kind::NotLeader(nl)) => match &nl.leader {
                Some(l) if l.id != 0 => {
                    self.cache.update_leader(id, *l);
                    Ok(true)
                }
                _ => {
                    // No hint: an election may be running, or this replica
                    // was removed and knows nothing. Try the next peer.
                    self.cache.rotate_leader(id);
                    Ok(false)
                }
            },
            Some(Kind::EpochNotMatch(m)) => {
                self.cache.invalidate(id);
                for r in &m.current_regions {
                    self.cache.insert(RegionRoute {
                        region: r.clone(),
                        leader: route
                            .leader
                            .filter(|l| r.peers.iter().any(|p| p.id == l.id)),
                    });
                }
                Ok(!m.current_regions.is_empty())
            }
            Some(Kind::RaftEntryTooLarge(_)) => Err(Error::Region(Box::new(e.clone()))),
            Some(Kind::RegionNotFound(_))
            | Some(Kind::KeyNotInRegion(_))
            | Some(Kind::StoreNotMatch(_)) => {
                self.cache.invalidate(id);
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Runs `f` against the leader of the region containing `key`, retrying
    /// until the deadline. `f` receives the route it is sent along, so
    /// range calls can bound themselves to the region, and the time the
    /// attempt may take.
    pub(crate) async fn run_in_region<T, F, Fut>(
        &self,
        key: &[u8],
        mut f: F,
    ) -> Result<(T, RegionRoute)>
    where
        T: HasRegionError,
        F: FnMut(KvClient<Channel>, &RegionRoute, Context, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.run(key, None, |c, route, ctx, _, t| f(c, route, ctx, t))
            .await
    }

    /// Runs one write (or one region's piece of it) like
    /// [`Self::run_in_region`]; every attempt carries the ticket's session,
    /// and the ticket learns whether some attempt may have applied.
    pub(crate) async fn run_write_in_region<T, F, Fut>(
        &self,
        key: &[u8],
        ticket: &mut WriteTicket<'_>,
        f: F,
    ) -> Result<(T, RegionRoute)>
    where
        T: HasRegionError,
        F: FnMut(KvClient<Channel>, &RegionRoute, Context, Option<WriteSession>, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.run(key, Some(ticket), f).await
    }

    /// The retry loop both of the above run: a write when `ticket` is
    /// given (its session goes to `f`), a read otherwise.
    pub(super) async fn run<T, F, Fut>(
        &self,
        key: &[u8],
        mut ticket: Option<&mut WriteTicket<'_>>,
        mut f: F,
    ) -> Result<(T, RegionRoute)>
    where
        T: HasRegionError,
        F: FnMut(KvClient<Channel>, &RegionRoute, Context, Option<WriteSession>, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut backoff = Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(500),
            Instant::now() + self.timeout,
        );
        let mut last = String::from("not attempted");
        let mut quick_retries = 0;
        let mut sent = 0u32;
        loop {
            let step = self
                .attempt(
                    key,
                    ticket.as_deref_mut(),
                    &mut f,
                    &backoff,
                    &mut sent,
                    &mut last,
                )
                .await;
            match step {
                Step::Done(done) => return Ok(done),
                Step::Retry { now: true } if quick_retries < 5 => {
                    quick_retries += 1;
                    continue;
                }
                Step::Retry { .. } => {}
                Step::Fail(e) => return Err(settle(ticket.as_deref(), e)),
            }
            quick_retries = 0;
            if !backoff.wait().await {
                let e = Error::DeadlineExceeded {
                    attempts: backoff.attempts,
                    last,
                };
                return Err(settle(ticket.as_deref(), e));
            }
        }
    }

    /// Time the next attempt may take: the rest of the deadline, or the
    /// configured attempt timeout doubled for each attempt already sent.
    fn attempt_time(&self, backoff: &Backoff, sent: u32) -> Duration {
        let remaining = backoff.remaining();
        match self.opts.attempt_timeout {
            Some(t) => t.saturating_mul(1 << sent.min(16)).min(remaining),
            None => remaining,
        }
    }

    /// One attempt: route, send, and read the answer.
    async fn attempt<T, F, Fut>(
        &self,
        key: &[u8],
        mut ticket: Option<&mut WriteTicket<'_>>,
        f: &mut F,
        backoff: &Backoff,
        sent: &mut u32,
        last: &mut String,
    ) -> Step<(T, RegionRoute)>
    where
        T: HasRegionError,
        F: FnMut(KvClient<Channel>, &RegionRoute, Context, Option<WriteSession>, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let route = match self.route(key).await {
            Ok(r) => r,
            Err(e) => return self.retry_after(e, last),
        };
        let Some(leader) = route
            .leader
            .filter(|l| l.id != 0)
            .or_else(|| route.region.peers.first().cloned())
        else {
            return self.retry_after(Error::StoreUnavailable("region has no peers".into()), last);
        };
        let ch = match self.store_channel(leader.store_id).await {
            Ok(ch) => ch,
            Err(e) => return self.retry_after(e, last),
        };
        let ctx = Context {
            region_id: route.region.id,
            region_epoch: route.region.epoch,
            peer: Some(leader),
            ..Default::default()
        };
        let session = ticket.as_ref().and_then(|t| t.session());
        let time = self.attempt_time(backoff, *sent);
        *sent += 1;
        let answer = f(KvClient::new(ch), &route, ctx, session, time).await;
        let resp = match answer {
            Ok(resp) => resp.into_inner(),
            Err(s) => {
                return match s.code() {
                    tonic::Code::InvalidArgument
                    | tonic::Code::Unimplemented
                    | tonic::Code::OutOfRange
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated => Step::Fail(Error::Rpc(s)),
                    _ => {
                        // Sent, and no answer: it may apply.
                        if let Some(t) = ticket.as_deref_mut() {
                            t.maybe_applied = true;
                        }
                        self.forget_store(leader.store_id);
                        self.cache.rotate_leader(route.region.id);
                        self.retry_after(
                            Error::StoreUnavailable(format!(
                                "store {}: {:?} {}",
                                leader.store_id,
                                s.code(),
                                crate::coordinator::status_text(&s)
                            )),
                            last,
                        )
                    }
                };
            }
        };
        let Some(e) = resp.region_error().cloned() else {
            if let Some(t) = ticket {
                t.maybe_applied = true;
            }
            return Step::Done((resp, route));
        };
        *last = format!("region {}: {}", route.region.id, e.message);
        if let Some(t) = ticket {
            if !refused_for_certain(&e) {
                t.maybe_applied = true;
            }
            match e.kind {
                Some(Kind::SessionExpired(_)) if !t.maybe_applied => {
                    // Refused, and no attempt can have applied: the write
                    // starts over in a new session.
                    return match t.renew().await {
                        Ok(()) => Step::Retry { now: true },
                        Err(err) => self.retry_after(err, last),
                    };
                }
                Some(Kind::SessionExpired(_)) | Some(Kind::SequenceStale(_)) => {
                    t.discard();
                    t.maybe_applied = true;
                    return Step::Fail(Error::Region(Box::new(e)));
                }
                _ => {}
            }
        }
        match self.on_region_error(&route, &e) {
            Ok(now) => Step::Retry { now },
            Err(err) => Step::Fail(err),
        }
    }

    /// A failure worth retrying after backoff, remembered as the last seen.
    fn retry_after<T>(&self, e: Error, last: &mut String) -> Step<T> {
        match e {
            Error::Rpc(_) | Error::InvalidArgument(_) => Step::Fail(e),
            e => {
                *last = e.to_string();
                Step::Retry { now: false }
            }
        }
    }
}
