//! Meeting another transaction's lock. A reader (or a prewrite) that finds
//! a lock asks the lock's primary how its transaction stands
//! (CheckTxnStatus, which rolls back an expired one): a decided
//! transaction's lock is resolved (committed or rolled back) at once; a
//! live one is waited out with backoff, within the client's deadline.
//! Also the lock scan over a key range, for resolving what crashed
//! clients left behind.

use std::collections::HashMap;

use nokv_proto::kvrpcpb::*;

use super::Inner;
use crate::backoff::Backoff;
use crate::raw::{full_page_last, RangeWalk, MAX_SCAN_PAGE};
use crate::{Error, Result};

impl Inner {
    /// Resolves `locks` met by a reader (or writer) at `caller_ts`.
    /// Returns true if all are gone (retry at once), false if some
    /// transaction is still alive (back off and retry).
    pub(super) async fn resolve_locks(&self, locks: Vec<LockInfo>, caller_ts: u64) -> Result<bool> {
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

    /// The lock's transaction as its primary tells: `(ttl, commit_ts)`,
    /// a ttl above zero while it is alive.
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
            return Err(e.into());
        }
        Ok((resp.lock_ttl, resp.commit_version))
    }

    /// Commits (`commit_ts` above zero) or rolls back the lock's key.
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
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Waits out or resolves `locks`, within the backoff's deadline.
    pub(super) async fn handle_locks(
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

    /// Every lock with start_ts ≤ `max_ts` in `[start, end)`.
    pub(super) async fn scan_locks(
        &self,
        start: &[u8],
        end: &[u8],
        max_ts: u64,
    ) -> Result<Vec<LockInfo>> {
        let mut out = Vec::new();
        let mut walk = RangeWalk::new(start, end, false);
        while let Some(key) = walk.next_key(self.raw.coordinator()).await? {
            let (resp, route) = self
                .raw
                .run_in_region(&key, |mut c, route, ctx, t| {
                    let (start_key, end_key) = walk.bounds(&route.region);
                    let mut req = tonic::Request::new(KvScanLockRequest {
                        context: Some(ctx),
                        max_version: max_ts,
                        start_key,
                        end_key,
                        limit: MAX_SCAN_PAGE,
                    });
                    req.set_timeout(t);
                    async move { c.kv_scan_lock(req).await }
                })
                .await?;
            if let Some(e) = resp.error {
                return Err(e.into());
            }
            let resume = full_page_last(
                resp.locks.len(),
                MAX_SCAN_PAGE,
                resp.locks.last().map(|l| l.key.as_slice()),
            );
            out.extend(resp.locks);
            walk.advance(&route, resume);
        }
        Ok(out)
    }
}
