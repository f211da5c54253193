//! Committing a transaction's buffered writes, Percolator style.
//!
//! [`prewrite`] locks every key: the primary's region first, since once
//! its lock exists every other lock of the transaction points at a
//! decidable primary, then the other regions in parallel. When every key
//! is in one region (and [`super::TxnOptions::try_one_pc`]) it asks the
//! store to commit in one phase instead. A failed prewrite rolls back what
//! it locked. From the first lock on, a heartbeat keeps the primary's lock
//! alive until the transaction is dropped.
//!
//! [`Prewritten::commit_primary`] is the commit point; the secondaries are
//! committed after it, best effort ([`CommittedPrimary::commit_secondaries`]):
//! a lock left behind is committed by the next reader that meets it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use nokv_proto::kvrpcpb::kv_client::KvClient;
use nokv_proto::kvrpcpb::*;
use tonic::transport::Channel;

use super::Inner;
use crate::raw::{HasRegionError, RegionBatch};
use crate::Result;

/// The outcome of phase one.
pub enum Prewrite {
    /// Committed in one phase at this timestamp.
    OnePc(u64),
    /// Every key is locked; commit the primary next.
    TwoPc(Prewritten),
}

/// Phase one over `mutations` (sorted by key, none with an empty key): a
/// read-only transaction (no mutation) "commits" at its start_ts.
pub(super) async fn prewrite(
    inner: Arc<Inner>,
    start_ts: u64,
    mutations: Vec<Mutation>,
) -> Result<Prewrite> {
    let keys: Vec<Vec<u8>> = mutations.iter().map(|m| m.key.clone()).collect();
    let Some(primary) = keys.first().cloned() else {
        // Read-only: nothing to write, it "commits" at its snapshot.
        return Ok(Prewrite::OnePc(start_ts));
    };
    let mut groups = RegionBatch::new(mutations)
        .split_by_region(&inner.raw)
        .await?;
    let mut p = Prewritten {
        inner: inner.clone(),
        start_ts,
        primary: primary.clone(),
        keys,
        _heartbeat: None,
    };
    if groups.len() == 1 && inner.opts.try_one_pc {
        let (_, batch) = groups.pop().expect("exactly one group");
        if let Some(commit_ts) = p.prewrite_batch(batch, true).await? {
            return Ok(Prewrite::OnePc(commit_ts));
        }
        p.start_heartbeat();
        return Ok(Prewrite::TwoPc(p));
    }
    // The primary's region first: once its lock exists, every other
    // lock of the transaction points at a decidable primary.
    let (primary_group, others): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .partition(|(route, _)| route.contains(&primary));
    for (_, batch) in primary_group {
        if let Err(e) = p.prewrite_batch(batch, false).await {
            p.rollback_all().await;
            return Err(e);
        }
    }
    p.start_heartbeat();
    let results = join_all(
        others
            .into_iter()
            .map(|(_, batch)| p.prewrite_batch(batch, false)),
    )
    .await;
    if let Some(e) = results.into_iter().find_map(|r| r.err()) {
        p.rollback_all().await;
        return Err(e);
    }
    Ok(Prewrite::TwoPc(p))
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

/// The primary's heartbeat task, stopped when dropped.
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

    /// Prewrites `batch` (one region's mutations when `one_pc`), resolving
    /// locks of other transactions on the way. Returns the one-phase commit
    /// ts if the store committed in one phase.
    async fn prewrite_batch(
        &self,
        mut batch: RegionBatch<Mutation>,
        one_pc: bool,
    ) -> Result<Option<u64>> {
        let whole = batch.len();
        let mut backoff = self.inner.new_backoff();
        let txn_size = self.keys.len() as u64;
        let mut one_pc_ts = None;
        while let Some((resp, route)) = batch
            .send(&self.inner.raw, None, |mut c, ctx, _, t, mutations| {
                let mut req = tonic::Request::new(KvPrewriteRequest {
                    context: Some(ctx),
                    mutations: mutations.iter().map(|m| (*m).clone()).collect(),
                    primary_lock: self.primary.clone(),
                    start_version: self.start_ts,
                    lock_ttl: self.inner.opts.lock_ttl_ms,
                    txn_size,
                    min_commit_ts: 0,
                    try_one_pc: one_pc && mutations.len() == whole,
                    max_commit_ts: 0,
                });
                req.set_timeout(t);
                async move { c.kv_prewrite(req).await }
            })
            .await?
        {
            let mut locks = Vec::new();
            for e in resp.errors {
                match e.locked {
                    Some(l) => locks.push(l),
                    None => return Err(e.into()),
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
            batch.done(&route);
        }
        Ok(one_pc_ts)
    }

    /// Rolls back every key, best effort (after a failed prewrite).
    async fn rollback_all(&self) {
        let start_ts = self.start_ts;
        each_region_best_effort(&self.inner, self.keys.clone(), |mut c, ctx, t, keys| {
            let mut req = tonic::Request::new(KvBatchRollbackRequest {
                context: Some(ctx),
                start_version: start_ts,
                keys,
            });
            req.set_timeout(t);
            async move { c.kv_batch_rollback(req).await }
        })
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
            return Err(e.into());
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
        let (start_ts, commit_ts) = (self.start_ts, self.commit_ts);
        each_region_best_effort(&self.inner, self.secondaries, |mut c, ctx, t, keys| {
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
    }
}

/// Sends `keys` (sorted) region by region, the regions in parallel, each
/// piece's request made by `build` from the keys it carries. Best effort:
/// a region whose piece fails is given up, and a key that cannot be routed
/// gives up all of them; the locks left behind are resolved by whoever
/// meets them.
async fn each_region_best_effort<T, F, Fut>(inner: &Inner, keys: Vec<Vec<u8>>, build: F)
where
    T: HasRegionError,
    F: Fn(KvClient<Channel>, Context, Duration, Vec<Vec<u8>>) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let Ok(groups) = RegionBatch::new(keys).split_by_region(&inner.raw).await else {
        return;
    };
    let build = &build;
    join_all(groups.into_iter().map(|(_, mut batch)| async move {
        while let Ok(Some((_, route))) = batch
            .send(&inner.raw, None, |c, ctx, _, t, keys| {
                build(c, ctx, t, keys.iter().map(|k| k.to_vec()).collect())
            })
            .await
        {
            batch.done(&route);
        }
    }))
    .await;
}
