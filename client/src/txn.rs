//! [`TxnClient`] and [`Transaction`]: Percolator transactions with snapshot
//! isolation.
//!
//! `begin` takes start_ts from the batching TSO. Reads see the snapshot at
//! start_ts plus the transaction's own buffered writes; a read that meets
//! another transaction's lock checks that transaction's primary
//! (CheckTxnStatus) and resolves the lock, or waits while it is alive.
//! Commit is two-phase: prewrite the primary's region first, the others in
//! parallel, then commit the primary (the commit point), then the
//! secondaries. When every key is in one region it commits in one phase.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use nokv_proto::kvrpcpb::*;

use crate::backoff::Backoff;
use crate::raw::RawClient;
use crate::region_cache::RegionRoute;
use crate::tso::TsoBatcher;
use crate::{Error, Result};

/// Tunables of transactions.
#[derive(Debug, Clone)]
pub struct TxnOptions {
    /// TTL of the locks a transaction leaves, in milliseconds. Heartbeats
    /// extend the primary's while the transaction runs.
    pub lock_ttl_ms: u64,
    /// How often a committing transaction heartbeats its primary.
    pub heartbeat_interval: Duration,
    /// Commit in one phase when every key is in one region.
    pub try_one_pc: bool,
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions {
            lock_ttl_ms: 3000,
            heartbeat_interval: Duration::from_millis(1000),
            try_one_pc: true,
        }
    }
}

/// Entry point of the transactional API. Share one per process.
#[derive(Clone)]
pub struct TxnClient {
    inner: Arc<Inner>,
}

struct Inner {
    raw: RawClient,
    tso: TsoBatcher,
    opts: TxnOptions,
}

fn key_error_to_error(e: KeyError) -> Error {
    if let Some(c) = e.conflict {
        return Error::WriteConflict {
            start_ts: c.start_ts,
            conflict_start_ts: c.conflict_ts,
            conflict_commit_ts: c.conflict_commit_ts,
            key: c.key,
        };
    }
    if let Some(a) = e.already_exist {
        return Error::AlreadyExists { key: a.key };
    }
    if let Some(l) = e.locked {
        return Error::Locked(Box::new(l));
    }
    if e.commit_ts_expired.is_some() {
        return Error::TxnAborted(format!("commit ts expired: {e:?}"));
    }
    if let Some(a) = e.assertion_failed {
        return Error::TxnAborted(format!("assertion failed on key {:?}", a.key));
    }
    if !e.abort.is_empty() {
        return Error::TxnAborted(e.abort);
    }
    if e.txn_not_found.is_some() {
        return Error::TxnAborted("transaction not found".into());
    }
    if !e.retryable.is_empty() {
        return Error::TxnRetryable(e.retryable);
    }
    Error::TxnAborted(format!("{e:?}"))
}

impl TxnClient {
    /// A client over the coordinator `endpoints`; `timeout` bounds each
    /// call (and each lock wait).
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Self> {
        Ok(Self::with_raw(
            RawClient::new(endpoints, timeout)?,
            TxnOptions::default(),
        ))
    }

    /// A client sharing routing with `raw`, with options.
    pub fn with_raw(raw: RawClient, opts: TxnOptions) -> Self {
        let tso = TsoBatcher::new(raw.coordinator().clone());
        TxnClient {
            inner: Arc::new(Inner { raw, tso, opts }),
        }
    }

    /// Starts a transaction at a fresh timestamp.
    pub async fn begin(&self) -> Result<Transaction> {
        let start_ts = self.inner.tso.get_ts().await?;
        Ok(Transaction {
            inner: self.inner.clone(),
            start_ts,
            buffer: BTreeMap::new(),
        })
    }

    /// A fresh timestamp (for example, a read point for [`Self::snapshot_get`]).
    pub async fn current_ts(&self) -> Result<u64> {
        self.inner.tso.get_ts().await
    }

    /// Reads `key` at `ts` without a transaction.
    pub async fn snapshot_get(&self, key: &[u8], ts: u64) -> Result<Option<Vec<u8>>> {
        self.inner.get(key, ts).await
    }

    /// Reads many keys at `ts`.
    pub async fn snapshot_batch_get(
        &self,
        keys: &[Vec<u8>],
        ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.batch_get(keys, ts).await
    }

    /// Scans at `ts` (same range rules as [`RawClient::scan`]).
    pub async fn snapshot_scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        reverse: bool,
        ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(start, end, limit, reverse, false, ts).await
    }

    /// Every lock with start_ts ≤ `max_ts` in `[start, end)`.
    pub async fn scan_locks(&self, start: &[u8], end: &[u8], max_ts: u64) -> Result<Vec<LockInfo>> {
        self.inner.scan_locks(start, end, max_ts).await
    }

    /// Resolves every lock in `[start, end)` older than now whose
    /// transaction is decided (committed, rolled back, or expired).
    /// Returns how many locks remain (their transactions are alive).
    pub async fn resolve_locks_in_range(&self, start: &[u8], end: &[u8]) -> Result<usize> {
        let now = self.inner.tso.get_ts().await?;
        let locks = self.inner.scan_locks(start, end, now).await?;
        let mut alive = 0;
        for lock in locks {
            if !self.inner.resolve_locks(vec![lock], now).await? {
                alive += 1;
            }
        }
        Ok(alive)
    }

    /// The raw client this client routes with.
    pub fn raw(&self) -> &RawClient {
        &self.inner.raw
    }
}

impl Inner {
    fn new_backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(300),
            Instant::now() + self.raw.timeout(),
        )
    }

    /// Resolves `locks` met by a reader (or writer) at `caller_ts`.
    /// Returns true if all are gone (retry at once), false if some
    /// transaction is still alive (back off and retry).
    async fn resolve_locks(&self, locks: Vec<LockInfo>, caller_ts: u64) -> Result<bool> {
        let mut all = true;
        let mut status_cache: HashMap<u64, (u64, u64)> = HashMap::new();
        for lock in locks {
            if lock.in_memory {
                all = false;
                continue;
            }
            let (ttl, commit_ts) = match status_cache.get(&lock.lock_version) {
                Some(s) => *s,
                None => {
                    let now = self.tso.get_ts().await?;
                    let s = self.check_txn_status(&lock, caller_ts, now).await?;
                    status_cache.insert(lock.lock_version, s);
                    s
                }
            };
            if ttl > 0 {
                all = false;
                continue;
            }
            self.resolve_one(&lock, commit_ts).await?;
        }
        Ok(all)
    }

    async fn check_txn_status(
        &self,
        lock: &LockInfo,
        caller_ts: u64,
        now: u64,
    ) -> Result<(u64, u64)> {
        let primary = lock.primary_lock.clone();
        let (resp, _) = self
            .raw
            .run_in_region(&primary, |mut c, _, ctx, t| {
                let mut req = tonic::Request::new(KvCheckTxnStatusRequest {
                    context: Some(ctx),
                    primary_key: primary.clone(),
                    lock_ts: lock.lock_version,
                    caller_start_ts: caller_ts,
                    current_ts: now,
                    rollback_if_not_exist: true,
                });
                req.set_timeout(t);
                async move { c.kv_check_txn_status(req).await }
            })
            .await?;
        if let Some(e) = resp.error {
            return Err(key_error_to_error(e));
        }
        Ok((resp.lock_ttl, resp.commit_version))
    }

    async fn resolve_one(&self, lock: &LockInfo, commit_ts: u64) -> Result<()> {
        let key = lock.key.clone();
        let (resp, _) = self
            .raw
            .run_in_region(&key, |mut c, _, ctx, t| {
                let mut req = tonic::Request::new(KvResolveLockRequest {
                    context: Some(ctx),
                    start_version: lock.lock_version,
                    commit_version: commit_ts,
                    txn_infos: vec![],
                    keys: vec![key.clone()],
                });
                req.set_timeout(t);
                async move { c.kv_resolve_lock(req).await }
            })
            .await?;
        match resp.error {
            Some(e) => Err(key_error_to_error(e)),
            None => Ok(()),
        }
    }

    /// Waits out or resolves `locks`, within the backoff's deadline.
    async fn handle_locks(
        &self,
        locks: Vec<LockInfo>,
        ts: u64,
        backoff: &mut Backoff,
    ) -> Result<()> {
        let first = locks.first().map(|l| l.key.clone()).unwrap_or_default();
        if !self.resolve_locks(locks, ts).await? && !backoff.wait().await {
            return Err(Error::DeadlineExceeded {
                attempts: backoff.attempts,
                last: format!("key {first:?} stayed locked by a live transaction"),
            });
        }
        Ok(())
    }

    async fn get(&self, key: &[u8], ts: u64) -> Result<Option<Vec<u8>>> {
        if key.is_empty() {
            return Err(Error::InvalidArgument("key must not be empty".into()));
        }
        let mut backoff = self.new_backoff();
        loop {
            let (resp, _) = self
                .raw
                .run_in_region(key, |mut c, _, ctx, t| {
                    let mut req = tonic::Request::new(KvGetRequest {
                        context: Some(ctx),
                        key: key.to_vec(),
                        version: ts,
                    });
                    req.set_timeout(t);
                    async move { c.kv_get(req).await }
                })
                .await?;
            match resp.error {
                None => return Ok((!resp.not_found).then_some(resp.value)),
                Some(KeyError {
                    locked: Some(lock), ..
                }) => self.handle_locks(vec![lock], ts, &mut backoff).await?,
                Some(e) => return Err(key_error_to_error(e)),
            }
        }
    }

    async fn batch_get(&self, keys: &[Vec<u8>], ts: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if keys.iter().any(|k| k.is_empty()) {
            return Err(Error::InvalidArgument("key must not be empty".into()));
        }
        let mut pending: Vec<Vec<u8>> = keys.to_vec();
        pending.sort();
        pending.dedup();
        let mut out = Vec::new();
        let mut backoff = self.new_backoff();
        while let Some(first) = pending.first().cloned() {
            let (resp, route) = self
                .raw
                .run_in_region(&first, |mut c, route, ctx, t| {
                    let keys = pending
                        .iter()
                        .filter(|k| route.contains(k))
                        .cloned()
                        .collect();
                    let mut req = tonic::Request::new(KvBatchGetRequest {
                        context: Some(ctx),
                        keys,
                        version: ts,
                    });
                    req.set_timeout(t);
                    async move { c.kv_batch_get(req).await }
                })
                .await?;
            if let Some(e) = resp.error {
                return Err(key_error_to_error(e));
            }
            let mut locks = Vec::new();
            for p in resp.pairs {
                match p.error {
                    Some(KeyError {
                        locked: Some(l), ..
                    }) => locks.push(l),
                    Some(e) => return Err(key_error_to_error(e)),
                    None => out.push((p.key, p.value)),
                }
            }
            if locks.is_empty() {
                pending.retain(|k| !route.contains(k));
            } else {
                // Keep only the locked keys of this region pending.
                let locked: Vec<Vec<u8>> = locks.iter().map(|l| l.key.clone()).collect();
                pending.retain(|k| !route.contains(k) || locked.contains(k));
                self.handle_locks(locks, ts, &mut backoff).await?;
            }
        }
        Ok(out)
    }

    async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        reverse: bool,
        key_only: bool,
        ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        const PAGE: u32 = 10_000;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (lower, upper) = if reverse { (end, start) } else { (start, end) };
        if !upper.is_empty() && upper <= lower {
            return Ok(Vec::new());
        }
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // The unread part of the range: [lower, cursor) going down or
        // [cursor, upper) going up.
        let mut cursor = if reverse {
            upper.to_vec()
        } else {
            lower.to_vec()
        };
        let mut backoff = self.new_backoff();
        loop {
            let routing_key = if reverse {
                let regions = self
                    .raw
                    .coordinator()
                    .scan_regions(lower, &cursor, 0)
                    .await?;
                let Some(last) = regions.last().and_then(|r| r.region.clone()) else {
                    return Ok(out);
                };
                last.start_key.max(lower.to_vec())
            } else {
                cursor.clone()
            };
            let want = (limit - out.len() as u32).min(PAGE);
            let (resp, route) = self
                .raw
                .run_in_region(&routing_key, |mut c, route: &RegionRoute, ctx, t| {
                    let region = &route.region;
                    let (s, e) = if reverse {
                        (
                            crate::raw::min_upper(&cursor, &region.end_key),
                            region.start_key.clone().max(lower.to_vec()),
                        )
                    } else {
                        (
                            cursor.clone(),
                            crate::raw::min_upper(upper, &region.end_key),
                        )
                    };
                    let mut req = tonic::Request::new(KvScanRequest {
                        context: Some(ctx),
                        start_key: s,
                        end_key: e,
                        limit: want,
                        version: ts,
                        key_only,
                        reverse,
                    });
                    req.set_timeout(t);
                    async move { c.kv_scan(req).await }
                })
                .await?;
            if let Some(e) = resp.error {
                match e.locked {
                    Some(l) => {
                        self.handle_locks(vec![l], ts, &mut backoff).await?;
                        continue;
                    }
                    None => return Err(key_error_to_error(e)),
                }
            }
            let locks: Vec<LockInfo> = resp
                .pairs
                .iter()
                .filter_map(|p| p.error.as_ref().and_then(|e| e.locked.clone()))
                .collect();
            if !locks.is_empty() {
                self.handle_locks(locks, ts, &mut backoff).await?;
                continue;
            }
            if let Some(e) = resp.pairs.iter().find_map(|p| p.error.clone()) {
                return Err(key_error_to_error(e));
            }
            let page_full = resp.pairs.len() as u32 == want;
            let last = resp.pairs.last().map(|p| p.key.clone());
            out.extend(resp.pairs.into_iter().map(|p| (p.key, p.value)));
            if out.len() as u32 >= limit {
                return Ok(out);
            }
            if let (true, Some(last)) = (page_full, last) {
                cursor = if reverse {
                    last
                } else {
                    let mut n = last;
                    n.push(0);
                    n
                };
                continue;
            }
            let region = route.region;
            if reverse {
                if region.start_key.is_empty() || region.start_key.as_slice() <= lower {
                    return Ok(out);
                }
                cursor = region.start_key;
            } else {
                if region.end_key.is_empty()
                    || (!upper.is_empty() && region.end_key.as_slice() >= upper)
                {
                    return Ok(out);
                }
                cursor = region.end_key;
            }
        }
    }

    async fn scan_locks(&self, start: &[u8], end: &[u8], max_ts: u64) -> Result<Vec<LockInfo>> {
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        loop {
            let (resp, route) = self
                .raw
                .run_in_region(&cursor, |mut c, route, ctx, t| {
                    let mut req = tonic::Request::new(KvScanLockRequest {
                        context: Some(ctx),
                        max_version: max_ts,
                        start_key: cursor.clone(),
                        end_key: crate::raw::min_upper(end, &route.region.end_key),
                        limit: 10_000,
                    });
                    req.set_timeout(t);
                    async move { c.kv_scan_lock(req).await }
                })
                .await?;
            if let Some(e) = resp.error {
                return Err(key_error_to_error(e));
            }
            let full = resp.locks.len() >= 10_000;
            let last = resp.locks.last().map(|l| l.key.clone());
            out.extend(resp.locks);
            if let (true, Some(mut next)) = (full, last) {
                next.push(0);
                cursor = next;
                continue;
            }
            let region_end = route.region.end_key;
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end) {
                return Ok(out);
            }
            cursor = region_end;
        }
    }

    /// Groups `keys` (sorted) by the region that holds each.
    async fn group_by_region(&self, keys: &[Vec<u8>]) -> Result<Vec<(RegionRoute, Vec<Vec<u8>>)>> {
        let mut groups: Vec<(RegionRoute, Vec<Vec<u8>>)> = Vec::new();
        for k in keys {
            if let Some((route, ks)) = groups.last_mut() {
                if route.contains(k) {
                    ks.push(k.clone());
                    continue;
                }
            }
            let route = self.raw.route(k).await?;
            groups.push((route, vec![k.clone()]));
        }
        Ok(groups)
    }
}

/// A transaction: reads at start_ts, writes buffered until commit.
/// Dropping it without committing leaves nothing behind.
pub struct Transaction {
    inner: Arc<Inner>,
    start_ts: u64,
    /// Buffered writes: `Some(value)` puts, `None` deletes.
    buffer: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Transaction {
    /// The snapshot timestamp.
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    /// Reads `key` (this transaction's own writes first).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.buffer.get(key) {
            return Ok(v.clone());
        }
        self.inner.get(key, self.start_ts).await
    }

    /// Reads many keys; returns the pairs that exist.
    pub async fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (buffered, remote): (Vec<_>, Vec<_>) = keys
            .iter()
            .cloned()
            .partition(|k| self.buffer.contains_key(k));
        let mut out = self.inner.batch_get(&remote, self.start_ts).await?;
        for k in buffered {
            if let Some(Some(v)) = self.buffer.get(&k) {
                out.push((k, v.clone()));
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// Scans up to `limit` pairs at start_ts merged with buffered writes.
    /// Forward: `[start, end)` ascending; reverse: `[end, start)` descending.
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (lower, upper) = if reverse { (end, start) } else { (start, end) };
        let upper_bound = if upper.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(upper.to_vec())
        };
        let buffered: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .buffer
            .range((Bound::Included(lower.to_vec()), upper_bound))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let extra = buffered.iter().filter(|(_, v)| v.is_none()).count() as u32;
        let rows = self
            .inner
            .scan(
                start,
                end,
                limit.saturating_add(extra),
                reverse,
                false,
                self.start_ts,
            )
            .await?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = rows.into_iter().collect();
        for (k, v) in buffered {
            match v {
                Some(v) => {
                    merged.insert(k, v);
                }
                None => {
                    merged.remove(&k);
                }
            }
        }
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = merged.into_iter().collect();
        if reverse {
            out.reverse();
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    /// Buffers `key` = `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.buffer.insert(key.into(), Some(value.into()));
    }

    /// Buffers a deletion of `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.buffer.insert(key.into(), None);
    }

    /// Commits; returns the commit timestamp (start_ts for a read-only
    /// transaction). A [`Error::WriteConflict`] means nothing was written
    /// and the transaction may be retried from the start.
    pub async fn commit(self) -> Result<u64> {
        if self.buffer.is_empty() {
            return Ok(self.start_ts);
        }
        let prewritten = match self.prewrite().await? {
            Prewrite::OnePc(commit_ts) => return Ok(commit_ts),
            Prewrite::TwoPc(p) => p,
        };
        let committed = prewritten.commit_primary().await?;
        let commit_ts = committed.commit_ts;
        committed.commit_secondaries().await;
        Ok(commit_ts)
    }

    /// Phase one: prewrites every key (or commits in one phase; a
    /// read-only transaction "commits" at its start_ts). Public so that
    /// callers (and fault tests) can stop between the phases.
    pub async fn prewrite(self) -> Result<Prewrite> {
        let mutations: Vec<Mutation> = self
            .buffer
            .iter()
            .map(|(k, v)| match v {
                Some(v) => Mutation {
                    op: Op::Put as i32,
                    key: k.clone(),
                    value: v.clone(),
                    assertion: 0,
                },
                None => Mutation {
                    op: Op::Del as i32,
                    key: k.clone(),
                    value: vec![],
                    assertion: 0,
                },
            })
            .collect();
        let keys: Vec<Vec<u8>> = self.buffer.keys().cloned().collect();
        for k in &keys {
            if k.is_empty() {
                return Err(Error::InvalidArgument("key must not be empty".into()));
            }
        }
        let Some(primary) = keys.first().cloned() else {
            // Read-only: nothing to write, it "commits" at its snapshot.
            return Ok(Prewrite::OnePc(self.start_ts));
        };
        let inner = self.inner.clone();
        let groups = inner.group_by_region(&keys).await?;
        let by_key: HashMap<Vec<u8>, Mutation> =
            mutations.into_iter().map(|m| (m.key.clone(), m)).collect();
        let p = Prewritten {
            inner: inner.clone(),
            start_ts: self.start_ts,
            primary: primary.clone(),
            keys: keys.clone(),
            _heartbeat: None,
        };
        if groups.len() == 1 && inner.opts.try_one_pc {
            if let Some(commit_ts) = p.prewrite_keys(&keys, &by_key, true).await? {
                return Ok(Prewrite::OnePc(commit_ts));
            }
            let mut p = p;
            p.start_heartbeat();
            return Ok(Prewrite::TwoPc(p));
        }
        let mut p = p;
        // The primary's region first: once its lock exists, every other
        // lock of the transaction points at a decidable primary.
        let (primary_group, others): (Vec<_>, Vec<_>) = groups
            .into_iter()
            .partition(|(route, _)| route.contains(&primary));
        for (_, ks) in &primary_group {
            if let Err(e) = p.prewrite_keys(ks, &by_key, false).await {
                p.rollback_all().await;
                return Err(e);
            }
        }
        p.start_heartbeat();
        let results = join_all(
            others
                .iter()
                .map(|(_, ks)| p.prewrite_keys(ks, &by_key, false)),
        )
        .await;
        if let Some(e) = results.into_iter().find_map(|r| r.err()) {
            p.rollback_all().await;
            return Err(e);
        }
        Ok(Prewrite::TwoPc(p))
    }
}

/// The outcome of phase one.
pub enum Prewrite {
    /// Committed in one phase at this timestamp.
    OnePc(u64),
    /// Every key is locked; commit the primary next.
    TwoPc(Prewritten),
}

/// A transaction whose keys are all locked. Dropping it stops the primary
/// heartbeat: the locks then expire and readers roll them back.
pub struct Prewritten {
    inner: Arc<Inner>,
    start_ts: u64,
    primary: Vec<u8>,
    keys: Vec<Vec<u8>>,
    _heartbeat: Option<HeartbeatTask>,
}

struct HeartbeatTask(tokio::task::JoinHandle<()>);

impl Drop for HeartbeatTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Prewritten {
    /// The transaction's start timestamp.
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    /// The primary key.
    pub fn primary(&self) -> &[u8] {
        &self.primary
    }

    fn start_heartbeat(&mut self) {
        let inner = self.inner.clone();
        let primary = self.primary.clone();
        let start_ts = self.start_ts;
        let began = Instant::now();
        let interval = inner.opts.heartbeat_interval;
        let ttl = inner.opts.lock_ttl_ms;
        self._heartbeat = Some(HeartbeatTask(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let advise = began.elapsed().as_millis() as u64 + ttl;
                let r = inner
                    .raw
                    .run_in_region(&primary, |mut c, _, ctx, t| {
                        let mut req = tonic::Request::new(KvTxnHeartBeatRequest {
                            context: Some(ctx),
                            primary_lock: primary.clone(),
                            start_version: start_ts,
                            advise_lock_ttl: advise,
                        });
                        req.set_timeout(t);
                        async move { c.kv_txn_heart_beat(req).await }
                    })
                    .await;
                if matches!(&r, Ok((resp, _)) if resp.error.is_some()) {
                    // The primary is gone (committed or rolled back).
                    return;
                }
            }
        })));
    }

    /// Prewrites `keys` (all in one region when `one_pc`), resolving locks
    /// of other transactions on the way. Returns the one-phase commit ts if
    /// the store committed in one phase.
    async fn prewrite_keys(
        &self,
        keys: &[Vec<u8>],
        by_key: &HashMap<Vec<u8>, Mutation>,
        one_pc: bool,
    ) -> Result<Option<u64>> {
        let mut pending: Vec<Vec<u8>> = keys.to_vec();
        let mut backoff = self.inner.new_backoff();
        let txn_size = self.keys.len() as u64;
        let mut one_pc_ts = None;
        while let Some(first) = pending.first().cloned() {
            let (resp, route) = self
                .inner
                .raw
                .run_in_region(&first, |mut c, route, ctx, t| {
                    let in_region: Vec<&Vec<u8>> =
                        pending.iter().filter(|k| route.contains(k)).collect();
                    let whole = one_pc && in_region.len() == keys.len();
                    let mut req = tonic::Request::new(KvPrewriteRequest {
                        context: Some(ctx),
                        mutations: in_region
                            .iter()
                            .filter_map(|k| by_key.get(*k).cloned())
                            .collect(),
                        primary_lock: self.primary.clone(),
                        start_version: self.start_ts,
                        lock_ttl: self.inner.opts.lock_ttl_ms,
                        txn_size,
                        min_commit_ts: 0,
                        try_one_pc: whole,
                        max_commit_ts: 0,
                    });
                    req.set_timeout(t);
                    async move { c.kv_prewrite(req).await }
                })
                .await?;
            let mut locks = Vec::new();
            for e in resp.errors {
                match e.locked {
                    Some(l) => locks.push(l),
                    None => return Err(key_error_to_error(e)),
                }
            }
            if !locks.is_empty() {
                self.inner
                    .handle_locks(locks, self.start_ts, &mut backoff)
                    .await?;
                continue;
            }
            if resp.one_pc_commit_ts != 0 {
                one_pc_ts = Some(resp.one_pc_commit_ts);
            }
            pending.retain(|k| !route.contains(k));
        }
        Ok(one_pc_ts)
    }

    /// Rolls back every key, best effort (after a failed prewrite).
    async fn rollback_all(&self) {
        let Ok(groups) = self.inner.group_by_region(&self.keys).await else {
            return;
        };
        let start_ts = self.start_ts;
        join_all(groups.into_iter().map(|(_, ks)| async move {
            let first = ks[0].clone();
            let _ = self
                .inner
                .raw
                .run_in_region(&first, |mut c, route, ctx, t| {
                    let keys = ks.iter().filter(|k| route.contains(k)).cloned().collect();
                    let mut req = tonic::Request::new(KvBatchRollbackRequest {
                        context: Some(ctx),
                        start_version: start_ts,
                        keys,
                    });
                    req.set_timeout(t);
                    async move { c.kv_batch_rollback(req).await }
                })
                .await;
        }))
        .await;
    }

    /// Phase two, step one: commits the primary at a fresh timestamp. Once
    /// this succeeds the transaction is committed.
    pub async fn commit_primary(self) -> Result<CommittedPrimary> {
        let commit_ts = self.inner.tso.get_ts().await?;
        let primary = self.primary.clone();
        let (resp, _) = self
            .inner
            .raw
            .run_in_region(&primary, |mut c, _, ctx, t| {
                let mut req = tonic::Request::new(KvCommitRequest {
                    context: Some(ctx),
                    start_version: self.start_ts,
                    keys: vec![primary.clone()],
                    commit_version: commit_ts,
                });
                req.set_timeout(t);
                async move { c.kv_commit(req).await }
            })
            .await?;
        if let Some(e) = resp.error {
            return Err(key_error_to_error(e));
        }
        Ok(CommittedPrimary {
            inner: self.inner.clone(),
            start_ts: self.start_ts,
            commit_ts,
            secondaries: self.keys.into_iter().filter(|k| *k != primary).collect(),
        })
    }
}

/// A committed transaction whose secondaries may still be locked.
pub struct CommittedPrimary {
    inner: Arc<Inner>,
    start_ts: u64,
    /// The commit timestamp.
    pub commit_ts: u64,
    secondaries: Vec<Vec<u8>>,
}

impl CommittedPrimary {
    /// Commits the secondaries, best effort: a lock left behind is
    /// committed by the next reader that meets it.
    pub async fn commit_secondaries(self) {
        let Ok(groups) = self.inner.group_by_region(&self.secondaries).await else {
            return;
        };
        let (start_ts, commit_ts) = (self.start_ts, self.commit_ts);
        join_all(groups.into_iter().map(|(_, ks)| {
            let inner = self.inner.clone();
            async move {
                let mut pending = ks;
                while let Some(first) = pending.first().cloned() {
                    let r = inner
                        .raw
                        .run_in_region(&first, |mut c, route, ctx, t| {
                            let keys = pending
                                .iter()
                                .filter(|k| route.contains(k))
                                .cloned()
                                .collect();
                            let mut req = tonic::Request::new(KvCommitRequest {
                                context: Some(ctx),
                                start_version: start_ts,
                                keys,
                                commit_version: commit_ts,
                            });
                            req.set_timeout(t);
                            async move { c.kv_commit(req).await }
                        })
                        .await;
                    match r {
                        Ok((_, route)) => pending.retain(|k| !route.contains(k)),
                        Err(_) => return,
                    }
                }
            }
        }))
        .await;
    }
}
