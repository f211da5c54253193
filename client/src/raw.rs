//! [`RawClient`]: the raw KV API. Each call is routed by key to a region
//! leader through the [`RegionCache`], retried on region errors and store
//! failures with backoff, and bounded by one overall deadline. Calls that
//! span regions (scan, delete range, batches) proceed region by region.
//! Writes carry a client session (see [`crate::session`]), so a retried
//! write applies exactly once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nokv_proto::errorpb::{region_error::Kind, RegionError};
use nokv_proto::kvrpcpb::kv_client::KvClient;
use nokv_proto::kvrpcpb::*;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::coordinator::CoordinatorClient;
use crate::region_cache::{RegionCache, RegionRoute};
use crate::session::{refused_for_certain, RawOptions, SessionPool, WriteTicket};
use crate::tso::TsoBatcher;
use crate::{Error, Result};

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

/// Most pairs one scan request asks a store for; longer scans page.
const MAX_SCAN_PAGE: u32 = 10_000;

/// Options of a scan.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Return keys only.
    pub key_only: bool,
    /// Descending order: keys in `[end, start)` from the top; an empty
    /// `start` means the end of the key space.
    pub reverse: bool,
}

/// Client of the raw KV API. Share one per process; it is `Sync`.
pub struct RawClient {
    coordinator: CoordinatorClient,
    cache: RegionCache,
    stores: Mutex<HashMap<u64, String>>,
    channels: Mutex<HashMap<String, Channel>>,
    timeout: Duration,
    opts: RawOptions,
    /// Sessions for writes.
    sessions: SessionPool,
}

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

/// Smaller of two exclusive upper bounds, where empty means unbounded.
pub(crate) fn min_upper(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => a.min(b).to_vec(),
    }
}

impl RawClient {
    /// Creates a client over the given coordinator endpoints; `timeout` is
    /// the overall deadline of each call.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Self> {
        Ok(Self::with_coordinator(CoordinatorClient::new(
            endpoints, timeout,
        )?))
    }

    /// Creates a client sharing an existing coordinator client.
    pub fn with_coordinator(coordinator: CoordinatorClient) -> Self {
        Self::with_options(coordinator, RawOptions::default())
    }

    /// Creates a client sharing an existing coordinator client, writing and
    /// retrying as `opts` says.
    pub fn with_options(coordinator: CoordinatorClient, opts: RawOptions) -> Self {
        RawClient {
            timeout: coordinator.timeout(),
            sessions: SessionPool::new(TsoBatcher::new(coordinator.clone()), &opts),
            opts,
            coordinator,
            cache: RegionCache::new(),
            stores: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// How this client writes and retries.
    pub fn options(&self) -> &RawOptions {
        &self.opts
    }

    /// The overall deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The coordinator client this client routes with.
    pub fn coordinator(&self) -> &CoordinatorClient {
        &self.coordinator
    }

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
        let cached = self
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&store_id)
            .cloned();
        let addr = match cached {
            Some(a) => a,
            None => {
                let resp = self.coordinator.get_store(store_id).await?;
                let addr = resp
                    .store
                    .map(|s| s.address)
                    .ok_or_else(|| Error::StoreUnavailable(format!("store {store_id} unknown")))?;
                self.stores
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(store_id, addr.clone());
                addr
            }
        };
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(&addr) {
            return Ok(ch.clone());
        }
        let ch = self.coordinator.channel_to(&addr, Duration::from_secs(2))?;
        channels.insert(addr, ch.clone());
        Ok(ch)
    }

    fn forget_store(&self, store_id: u64) {
        if let Some(addr) = self
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&store_id)
        {
            self.channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&addr);
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

    async fn run<T, F, Fut>(
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

    fn check_key(key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::InvalidArgument("key must not be empty".into()));
        }
        Ok(())
    }

    /// Reads `key`; `None` if absent.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Self::check_key(key)?;
        let (resp, _) = self
            .run_in_region(key, |mut c, _, ctx, t| {
                let mut req = tonic::Request::new(RawGetRequest {
                    context: Some(ctx),
                    key: key.to_vec(),
                });
                req.set_timeout(t);
                async move { c.raw_get(req).await }
            })
            .await?;
        Ok((!resp.not_found).then_some(resp.value))
    }

    /// Writes `key` = `value`.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_with_ttl(key, value, 0).await
    }

    /// Writes `key` = `value`, expiring after `ttl_seconds` (0 = never).
    pub async fn put_with_ttl(&self, key: &[u8], value: &[u8], ttl_seconds: u64) -> Result<()> {
        Self::check_key(key)?;
        let mut ticket = self.sessions.ticket().await?;
        self.run_write_in_region(key, &mut ticket, |mut c, _, ctx, session, t| {
            let mut req = tonic::Request::new(RawPutRequest {
                context: Some(ctx),
                key: key.to_vec(),
                value: value.to_vec(),
                ttl_seconds,
                session,
            });
            req.set_timeout(t);
            async move { c.raw_put(req).await }
        })
        .await?;
        Ok(())
    }

    /// Deletes `key` (absent keys are fine).
    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        Self::check_key(key)?;
        let mut ticket = self.sessions.ticket().await?;
        self.run_write_in_region(key, &mut ticket, |mut c, _, ctx, session, t| {
            let mut req = tonic::Request::new(RawDeleteRequest {
                context: Some(ctx),
                key: key.to_vec(),
                session,
            });
            req.set_timeout(t);
            async move { c.raw_delete(req).await }
        })
        .await?;
        Ok(())
    }

    /// Atomically sets `key` to `value` if its current value is `previous`
    /// (`None`: if it is absent). Returns whether it swapped and the value
    /// before the call. A retried call whose first attempt applied reports
    /// that attempt's result: the swap is done once, and reported as done.
    pub async fn compare_and_swap(
        &self,
        key: &[u8],
        previous: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(bool, Option<Vec<u8>>)> {
        Self::check_key(key)?;
        let mut ticket = self.sessions.ticket().await?;
        let (resp, _) = self
            .run_write_in_region(key, &mut ticket, |mut c, _, ctx, session, t| {
                let mut req = tonic::Request::new(RawCompareAndSwapRequest {
                    context: Some(ctx),
                    key: key.to_vec(),
                    value: value.to_vec(),
                    previous_value: previous.map(|p| p.to_vec()).unwrap_or_default(),
                    previous_not_exist: previous.is_none(),
                    ttl_seconds: 0,
                    session,
                });
                req.set_timeout(t);
                async move { c.raw_compare_and_swap(req).await }
            })
            .await?;
        Ok((
            resp.succeed,
            (!resp.previous_not_exist).then_some(resp.previous_value),
        ))
    }

    /// Reads many keys; returns the pairs that exist.
    pub async fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<KvPair>> {
        for k in keys {
            Self::check_key(k)?;
        }
        let mut pending: Vec<Vec<u8>> = keys.to_vec();
        let mut out = Vec::new();
        while let Some(first) = pending.first().cloned() {
            let (resp, route) = self
                .run_in_region(&first, |mut c, route, ctx, t| {
                    let keys = pending
                        .iter()
                        .filter(|k| route.contains(k))
                        .cloned()
                        .collect();
                    let mut req = tonic::Request::new(RawBatchGetRequest {
                        context: Some(ctx),
                        keys,
                    });
                    req.set_timeout(t);
                    async move { c.raw_batch_get(req).await }
                })
                .await?;
            out.extend(resp.pairs);
            pending.retain(|k| !route.contains(k));
        }
        Ok(out)
    }

    /// Writes many pairs (atomically per region, not across regions). The
    /// whole call is one write of the session: each region's piece carries
    /// the same sequence, so a piece that applied before a split or merge
    /// moved its keys is still recognised.
    pub async fn batch_put(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        for (k, _) in pairs {
            Self::check_key(k)?;
        }
        let mut ticket = self.sessions.ticket().await?;
        let mut pending: Vec<(Vec<u8>, Vec<u8>)> = pairs.to_vec();
        while let Some((first, _)) = pending.first().cloned() {
            let (_, route) = self
                .run_write_in_region(&first, &mut ticket, |mut c, route, ctx, session, t| {
                    let pairs = pending
                        .iter()
                        .filter(|(k, _)| route.contains(k))
                        .map(|(k, v)| KvPair {
                            key: k.clone(),
                            value: v.clone(),
                            error: None,
                        })
                        .collect();
                    let mut req = tonic::Request::new(RawBatchPutRequest {
                        context: Some(ctx),
                        pairs,
                        ttl_seconds: 0,
                        session,
                    });
                    req.set_timeout(t);
                    async move { c.raw_batch_put(req).await }
                })
                .await?;
            pending.retain(|(k, _)| !route.contains(k));
        }
        Ok(())
    }

    /// Scans up to `limit` pairs. Forward: keys in `[start, end)`
    /// ascending (empty `end` = to the end). Reverse: keys in `[end, start)`
    /// descending (empty `start` = from the end).
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        opts: ScanOptions,
    ) -> Result<Vec<KvPair>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        if opts.reverse {
            return self.scan_reverse(start, end, limit, opts).await;
        }
        if !end.is_empty() && end <= start {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        loop {
            let want = (limit - out.len() as u32).min(MAX_SCAN_PAGE);
            let (resp, route) = self
                .run_in_region(&cursor, |mut c, route, ctx, t| {
                    let mut req = tonic::Request::new(RawScanRequest {
                        context: Some(ctx),
                        start_key: cursor.clone(),
                        end_key: min_upper(end, &route.region.end_key),
                        limit: want,
                        key_only: opts.key_only,
                        reverse: false,
                    });
                    req.set_timeout(t);
                    async move { c.raw_scan(req).await }
                })
                .await?;
            let page_full = resp.kvs.len() as u32 == want;
            let last = resp.kvs.last().map(|p| p.key.clone());
            out.extend(resp.kvs);
            if out.len() as u32 >= limit {
                return Ok(out);
            }
            if let (true, Some(mut next)) = (page_full, last) {
                // More may follow in the same region: resume after the last key.
                next.push(0);
                cursor = next;
                continue;
            }
            let region_end = route.region.end_key;
            if out.len() as u32 >= limit
                || region_end.is_empty()
                || (!end.is_empty() && region_end.as_slice() >= end)
            {
                return Ok(out);
            }
            cursor = region_end;
        }
    }

    async fn scan_reverse(
        &self,
        upper: &[u8],
        lower: &[u8],
        limit: u32,
        opts: ScanOptions,
    ) -> Result<Vec<KvPair>> {
        if !upper.is_empty() && upper <= lower {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut cursor = upper.to_vec();
        loop {
            // The region holding the greatest keys below the cursor.
            let regions = self.coordinator.scan_regions(lower, &cursor, 0).await?;
            let Some(last) = regions.last().and_then(|r| r.region.clone()) else {
                return Ok(out);
            };
            let routing_key = last.start_key.clone().max(lower.to_vec());
            let want = (limit - out.len() as u32).min(MAX_SCAN_PAGE);
            let (resp, route) = self
                .run_in_region(&routing_key, |mut c, route, ctx, t| {
                    let mut req = tonic::Request::new(RawScanRequest {
                        context: Some(ctx),
                        start_key: min_upper(&cursor, &route.region.end_key),
                        end_key: route.region.start_key.clone().max(lower.to_vec()),
                        limit: want,
                        key_only: opts.key_only,
                        reverse: true,
                    });
                    req.set_timeout(t);
                    async move { c.raw_scan(req).await }
                })
                .await?;
            let page_full = resp.kvs.len() as u32 == want;
            let last = resp.kvs.last().map(|p| p.key.clone());
            out.extend(resp.kvs);
            if out.len() as u32 >= limit {
                return Ok(out);
            }
            if let (true, Some(last)) = (page_full, last) {
                // More may follow below the last key in the same region.
                cursor = last;
                continue;
            }
            let region_start = route.region.start_key;
            if out.len() as u32 >= limit
                || region_start.is_empty()
                || region_start.as_slice() <= lower
            {
                return Ok(out);
            }
            cursor = region_start;
        }
    }

    /// Deletes every key in `[start, end)` (empty `end` = to the end), as
    /// one write of the session across the regions it spans.
    pub async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        if !end.is_empty() && end <= start {
            return Err(Error::InvalidArgument("end must be above start".into()));
        }
        let mut ticket = self.sessions.ticket().await?;
        let mut cursor = start.to_vec();
        loop {
            let (_, route) = self
                .run_write_in_region(&cursor, &mut ticket, |mut c, route, ctx, session, t| {
                    let mut req = tonic::Request::new(RawDeleteRangeRequest {
                        context: Some(ctx),
                        start_key: cursor.clone(),
                        end_key: min_upper(end, &route.region.end_key),
                        session,
                    });
                    req.set_timeout(t);
                    async move { c.raw_delete_range(req).await }
                })
                .await?;
            let region_end = route.region.end_key;
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end) {
                return Ok(());
            }
            cursor = region_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_upper_treats_empty_as_unbounded() {
        assert_eq!(min_upper(b"", b"m"), b"m".to_vec());
        assert_eq!(min_upper(b"x", b""), b"x".to_vec());
        assert_eq!(min_upper(b"x", b"m"), b"m".to_vec());
        assert!(min_upper(b"", b"").is_empty());
    }

    #[tokio::test]
    async fn empty_key_is_rejected_before_any_rpc() {
        let c = RawClient::new(vec!["127.0.0.1:1".into()], Duration::from_millis(200)).unwrap();
        assert!(matches!(c.get(b"").await, Err(Error::InvalidArgument(_))));
        assert!(matches!(
            c.put(b"", b"v").await,
            Err(Error::InvalidArgument(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_coordinator_fails_within_deadline() {
        let c = RawClient::new(vec!["127.0.0.1:1".into()], Duration::from_millis(300)).unwrap();
        let start = Instant::now();
        let res = c.get(b"k").await;
        assert!(res.is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
