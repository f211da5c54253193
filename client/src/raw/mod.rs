//! [`RawClient`]: the raw KV API. Each call is routed by key to a region
//! leader through the [`RegionCache`], retried on region errors and store
//! failures with backoff, and bounded by one overall deadline. Calls that
//! span regions (scan, delete range, batches) proceed region by region.
//! Writes carry a client session (see [`crate::session`]), so a retried
//! write applies exactly once.
//!
//! # Layout
//! - this file: [`RawClient`], its settings and the raw KV calls.
//! - `retry.rs`: the request path every routed call takes (route, send,
//!   read the answer, retry until the deadline), shared with
//!   [`crate::TxnClient`]; [`HasRegionError`].
//! - `batch.rs`: calls over many keys, sent region by region.
//! - `range.rs`: calls over a key range, walked region by region.

mod batch;
mod range;
mod retry;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use nokv_proto::kvrpcpb::*;
use tonic::transport::Channel;

use crate::coordinator::CoordinatorClient;
use crate::region_cache::RegionCache;
use crate::session::{RawOptions, SessionPool};
use crate::tso::TsoBatcher;
use crate::{Error, Result};

pub(crate) use batch::RegionBatch;
pub(crate) use range::{full_page_last, RangeWalk, MAX_SCAN_PAGE};
pub use retry::HasRegionError;

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
        let mut batch = RegionBatch::new(keys.to_vec());
        let mut out = Vec::new();
        while let Some((resp, route)) = batch
            .send(self, None, |mut c, ctx, _, t, keys| {
                let mut req = tonic::Request::new(RawBatchGetRequest {
                    context: Some(ctx),
                    keys: keys.iter().map(|k| k.to_vec()).collect(),
                });
                req.set_timeout(t);
                async move { c.raw_batch_get(req).await }
            })
            .await?
        {
            out.extend(resp.pairs);
            batch.done(&route);
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
        let pairs = pairs
            .iter()
            .map(|(k, v)| KvPair {
                key: k.clone(),
                value: v.clone(),
                error: None,
            })
            .collect();
        let mut batch = RegionBatch::new(pairs);
        while let Some((_, route)) = batch
            .send(self, Some(&mut ticket), |mut c, ctx, session, t, pairs| {
                let mut req = tonic::Request::new(RawBatchPutRequest {
                    context: Some(ctx),
                    pairs: pairs.iter().map(|p| (*p).clone()).collect(),
                    ttl_seconds: 0,
                    session,
                });
                req.set_timeout(t);
                async move { c.raw_batch_put(req).await }
            })
            .await?
        {
            batch.done(&route);
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
        let mut walk = RangeWalk::new(start, end, opts.reverse);
        if limit == 0 || walk.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        while let Some(key) = walk.next_key(&self.coordinator).await? {
            let want = (limit - out.len() as u32).min(MAX_SCAN_PAGE);
            let (resp, route) = self
                .run_in_region(&key, |mut c, route, ctx, t| {
                    let (start_key, end_key) = walk.bounds(&route.region);
                    let mut req = tonic::Request::new(RawScanRequest {
                        context: Some(ctx),
                        start_key,
                        end_key,
                        limit: want,
                        key_only: opts.key_only,
                        reverse: opts.reverse,
                    });
                    req.set_timeout(t);
                    async move { c.raw_scan(req).await }
                })
                .await?;
            let resume = full_page_last(
                resp.kvs.len(),
                want,
                resp.kvs.last().map(|p| p.key.as_slice()),
            );
            out.extend(resp.kvs);
            if out.len() as u32 >= limit {
                return Ok(out);
            }
            walk.advance(&route, resume);
        }
        Ok(out)
    }

    /// Deletes every key in `[start, end)` (empty `end` = to the end), as
    /// one write of the session across the regions it spans.
    pub async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut walk = RangeWalk::new(start, end, false);
        if walk.is_empty() {
            return Err(Error::InvalidArgument("end must be above start".into()));
        }
        let mut ticket = self.sessions.ticket().await?;
        while let Some(key) = walk.next_key(&self.coordinator).await? {
            let (_, route) = self
                .run_write_in_region(&key, &mut ticket, |mut c, route, ctx, session, t| {
                    let (start_key, end_key) = walk.bounds(&route.region);
                    let mut req = tonic::Request::new(RawDeleteRangeRequest {
                        context: Some(ctx),
                        start_key,
                        end_key,
                        session,
                    });
                    req.set_timeout(t);
                    async move { c.raw_delete_range(req).await }
                })
                .await?;
            walk.advance(&route, None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

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
