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
//!
//! # Layout
//! - this file: [`TxnClient`] and [`TxnOptions`], and the state every
//!   transaction of a client shares.
//! - `transaction.rs`: [`Transaction`], the write buffer and reads merged
//!   with it.
//! - `read.rs`: snapshot reads at a timestamp (get, batch get, scan).
//! - `locks.rs`: meeting other transactions' locks: checking their primary,
//!   resolving, waiting; lock scans.
//! - `commit.rs`: prewrite (two-phase or one-phase), the primary's
//!   heartbeat, commit of the primary and the secondaries, rollback.

mod commit;
mod locks;
mod read;
mod transaction;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nokv_proto::kvrpcpb::LockInfo;

use crate::backoff::Backoff;
use crate::raw::RawClient;
use crate::tso::TsoBatcher;
use crate::Result;

pub use commit::{CommittedPrimary, Prewrite, Prewritten};
pub use transaction::Transaction;

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

/// What the transactions of one client share: routing, timestamps and
/// options.
struct Inner {
    raw: RawClient,
    tso: TsoBatcher,
    opts: TxnOptions,
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
        Ok(Transaction::new(self.inner.clone(), start_ts))
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
    /// The backoff of one lock wait, bounded by the client's timeout.
    fn new_backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(300),
            Instant::now() + self.raw.timeout(),
        )
    }
}
