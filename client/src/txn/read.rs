//! Snapshot reads at a timestamp: get, batch get and scan, each waiting
//! out or resolving the locks it meets (see [`super::locks`]) before it
//! answers, so a read never sees a value that could still change below
//! its timestamp.

use nokv_proto::kvrpcpb::*;

use super::Inner;
use crate::raw::{full_page_last, RangeWalk, RegionBatch, MAX_SCAN_PAGE};
use crate::{Error, Result};

impl Inner {
    /// Reads `key` at `ts`; `None` if absent.
    pub(super) async fn get(&self, key: &[u8], ts: u64) -> Result<Option<Vec<u8>>> {
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
                Some(e) => return Err(e.into()),
            }
        }
    }

    /// Reads many keys at `ts`; returns the pairs that exist.
    pub(super) async fn batch_get(
        &self,
        keys: &[Vec<u8>],
        ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if keys.iter().any(|k| k.is_empty()) {
            return Err(Error::InvalidArgument("key must not be empty".into()));
        }
        let mut keys: Vec<Vec<u8>> = keys.to_vec();
        keys.sort();
        keys.dedup();
        let mut batch = RegionBatch::new(keys);
        let mut out = Vec::new();
        let mut backoff = self.new_backoff();
        while let Some((resp, route)) = batch
            .send(&self.raw, None, |mut c, ctx, _, t, keys| {
                let mut req = tonic::Request::new(KvBatchGetRequest {
                    context: Some(ctx),
                    keys: keys.iter().map(|k| k.to_vec()).collect(),
                    version: ts,
                });
                req.set_timeout(t);
                async move { c.kv_batch_get(req).await }
            })
            .await?
        {
            if let Some(e) = resp.error {
                return Err(e.into());
            }
            let mut locks = Vec::new();
            for p in resp.pairs {
                match p.error {
                    Some(KeyError {
                        locked: Some(l), ..
                    }) => locks.push(l),
                    Some(e) => return Err(e.into()),
                    None => out.push((p.key, p.value)),
                }
            }
            if locks.is_empty() {
                batch.done(&route);
            } else {
                // Keep only the locked keys of this region pending.
                let locked: Vec<Vec<u8>> = locks.iter().map(|l| l.key.clone()).collect();
                batch.settle(&route, |k| locked.contains(k));
                self.handle_locks(locks, ts, &mut backoff).await?;
            }
        }
        Ok(out)
    }

    /// Scans up to `limit` pairs at `ts`, with the range rules of
    /// [`crate::RawClient::scan`].
    pub(super) async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        reverse: bool,
        key_only: bool,
        ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut walk = RangeWalk::new(start, end, reverse);
        if limit == 0 || walk.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut backoff = self.new_backoff();
        while let Some(key) = walk.next_key(self.raw.coordinator()).await? {
            let want = (limit - out.len() as u32).min(MAX_SCAN_PAGE);
            let (resp, route) = self
                .raw
                .run_in_region(&key, |mut c, route, ctx, t| {
                    let (start_key, end_key) = walk.bounds(&route.region);
                    let mut req = tonic::Request::new(KvScanRequest {
                        context: Some(ctx),
                        start_key,
                        end_key,
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
                    None => return Err(e.into()),
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
                return Err(e.into());
            }
            let resume = full_page_last(
                resp.pairs.len(),
                want,
                resp.pairs.last().map(|p| p.key.as_slice()),
            );
            out.extend(resp.pairs.into_iter().map(|p| (p.key, p.value)));
            if out.len() as u32 >= limit {
                return Ok(out);
            }
            walk.advance(&route, resume);
        }
        Ok(out)
    }
}
