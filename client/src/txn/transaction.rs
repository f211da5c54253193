//! [`Transaction`]: one transaction as its user holds it. Writes wait in
//! a buffer (sorted by key, so the first key is the primary) until
//! commit; reads see the snapshot at start_ts with the buffer laid over
//! it. Committing hands the buffer to [`super::commit`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use nokv_proto::kvrpcpb::{Mutation, Op};

use super::commit::{self, Prewrite};
use super::Inner;
use crate::{Error, Result};

/// A transaction: reads at start_ts, writes buffered until commit.
/// Dropping it without committing leaves nothing behind.
pub struct Transaction {
    inner: Arc<Inner>,
    start_ts: u64,
    /// Buffered writes: `Some(value)` puts, `None` deletes.
    buffer: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Transaction {
    /// A transaction reading at `start_ts`, nothing buffered yet.
    pub(super) fn new(inner: Arc<Inner>, start_ts: u64) -> Self {
        Transaction {
            inner,
            start_ts,
            buffer: BTreeMap::new(),
        }
    }

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
        if self.buffer.keys().any(|k| k.is_empty()) {
            return Err(Error::InvalidArgument("key must not be empty".into()));
        }
        let mutations: Vec<Mutation> = self
            .buffer
            .into_iter()
            .map(|(key, v)| match v {
                Some(value) => Mutation {
                    op: Op::Put as i32,
                    key,
                    value,
                    assertion: 0,
                },
                None => Mutation {
                    op: Op::Del as i32,
                    key,
                    value: vec![],
                    assertion: 0,
                },
            })
            .collect();
        commit::prewrite(self.inner, self.start_ts, mutations).await
    }
}
