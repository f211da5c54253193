//! gRPC services of the store node, and what the data service's raw and
//! transactional halves share: the service state, input checks, and the
//! two ways a request reaches a region (a write is proposed; a read gets a
//! linearizable read point).
//!
//! # Layout
//! - [`kv`]: the `Kv` service: the raw KV handlers and the gRPC trait.
//! - [`txn`]: the transactional handlers of the `Kv` service.
//! - [`admin`]: the per-store `Admin` service.

pub mod admin;
pub mod kv;
pub mod txn;

use std::sync::Arc;
use std::time::Duration;

use nokv_proto::adminpb::RequestClass;
use nokv_proto::errorpb::RegionError;
use nokv_proto::kvrpcpb::*;
use nokv_proto::raft_cmdpb::{
    RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, Request as CmdRequest, SessionWrite,
};
use rocksdb::DB;
use tokio::sync::oneshot;
use tonic::Status;

use crate::config::{Limits, SessionConfig};
use crate::diagnostics::Diagnostics;
use crate::engine::DbHandle;
use crate::flow::FlowCount;
use crate::raftstore::msg::{ReadGrant, StoreMsg};
use crate::raftstore::session::session_start_ms;
use crate::raftstore::{Router, StoreCounters};
use crate::raw_value;
use crate::region::timeout;

use crate::mvcc::memory_lock::MemoryLocks;

/// How long a request may wait inside the store for raft.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// The data service of one store.
pub struct KvService {
    router: Router,
    db: Arc<DbHandle>,
    limits: Limits,
    /// The session policy stamped into every write proposed here.
    sessions: SessionConfig,
    diagnostics: Arc<Diagnostics>,
    /// Where reads are counted as region flow.
    counters: Arc<StoreCounters>,
    pub(crate) txn: TxnParts,
}

pub(crate) fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

impl KvService {
    /// Creates the service.
    pub fn new(
        router: Router,
        db: Arc<DbHandle>,
        limits: Limits,
        sessions: SessionConfig,
        diagnostics: Arc<Diagnostics>,
        counters: Arc<StoreCounters>,
        txn: TxnParts,
    ) -> Self {
        KvService {
            router,
            db,
            limits,
            sessions,
            diagnostics,
            counters,
            txn,
        }
    }

    /// Counts the pairs a read of `region_id` answers with as that
    /// region's read flow (key and value bytes, one key per pair).
    pub(crate) fn record_read<'a>(
        &self,
        region_id: u64,
        pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        let mut read = FlowCount::default();
        for (k, v) in pairs {
            read.add(k.len() + v.len());
        }
        self.counters.flows.record_read(region_id, read);
    }

    /// Counts the pairs of a transactional read that carry a value (not a
    /// per-key error) as `region_id`'s read flow.
    pub(crate) fn record_read_pairs(&self, region_id: u64, pairs: &[KvPair]) {
        self.record_read(
            region_id,
            pairs
                .iter()
                .filter(|p| p.error.is_none())
                .map(|p| (p.key.as_slice(), p.value.as_slice())),
        );
    }

    /// The open database, or `None` once the store is stopping.
    pub(crate) fn db(&self) -> Option<Arc<DB>> {
        self.db.get()
    }

    /// Refuses a scan asking for more than `limits.max_scan_limit` pairs.
    pub(crate) fn check_scan_limit(&self, limit: u32) -> Result<(), Status> {
        at_most(limit as usize, self.limits.max_scan_limit as usize, || {
            format!("scan limit {limit} exceeds {}", self.limits.max_scan_limit)
        })
    }

    /// Refuses an empty key or one past `limits.max_key_bytes`.
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<(), Status> {
        if key.is_empty() {
            return Err(invalid("key must not be empty"));
        }
        at_most(key.len(), self.limits.max_key_bytes, || {
            format!(
                "key is {} bytes; the limit is {} bytes",
                key.len(),
                self.limits.max_key_bytes
            )
        })
    }

    /// Refuses a value past `limits.max_value_bytes`.
    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), Status> {
        at_most(value.len(), self.limits.max_value_bytes, || {
            format!(
                "value is {} bytes; the limit is {} bytes",
                value.len(),
                self.limits.max_value_bytes
            )
        })
    }

    /// Refuses a range bound past the key limit (an empty bound is fine).
    pub(crate) fn check_bound(&self, key: &[u8]) -> Result<(), Status> {
        at_most(key.len(), self.limits.max_key_bytes, || {
            format!(
                "range bound exceeds the {}-byte key limit",
                self.limits.max_key_bytes
            )
        })
    }

    /// Refuses a batch past `limits.max_batch_keys` keys or
    /// `limits.max_batch_bytes` bytes.
    pub(crate) fn check_batch(&self, count: usize, bytes: usize) -> Result<(), Status> {
        at_most(count, self.limits.max_batch_keys, || {
            format!(
                "batch has {count} keys; the limit is {}",
                self.limits.max_batch_keys
            )
        })?;
        at_most(bytes, self.limits.max_batch_bytes, || {
            format!(
                "batch is {bytes} bytes; the limit is {}",
                self.limits.max_batch_bytes
            )
        })
    }

    /// Checks the session a raw write carries: `None` for a write without
    /// one. A session id must be a TSO timestamp no further ahead of this
    /// store's clock than the idle timeout (a session from the future would
    /// push the region clock past every other session), and sequences
    /// start at 1.
    pub(crate) fn check_session(
        &self,
        session: Option<WriteSession>,
    ) -> Result<Option<WriteSession>, Status> {
        let Some(s) = session.filter(|s| s.session_id != 0) else {
            return Ok(None);
        };
        if s.sequence == 0 {
            return Err(invalid("session.sequence must be at least 1"));
        }
        let ahead = session_start_ms(s.session_id).saturating_sub(raw_value::now_ms());
        if ahead > self.sessions.idle_timeout_secs.saturating_mul(1000) {
            return Err(invalid(format!(
                "session {} starts {ahead} ms ahead of this store's clock; session ids are TSO timestamps",
                s.session_id
            )));
        }
        Ok(Some(s))
    }

    /// Replicates `requests` in the context's region as one client write,
    /// recording the admission outcome. A write its session refused comes
    /// back as that region error; nothing of it applied.
    pub(crate) async fn propose(
        &self,
        ctx: &Context,
        requests: Vec<CmdRequest>,
        session: Option<WriteSession>,
    ) -> Result<RaftCmdResponse, RegionError> {
        let r = self
            .propose_inner(ctx, requests, session)
            .await
            .and_then(|resp| match refusal(&resp) {
                Some(e) => Err(e),
                None => Ok(resp),
            });
        self.diagnostics
            .admit_result(ctx.region_id, RequestClass::Write, &r);
        r
    }

    async fn propose_inner(
        &self,
        ctx: &Context,
        requests: Vec<CmdRequest>,
        session: Option<WriteSession>,
    ) -> Result<RaftCmdResponse, RegionError> {
        let now = raw_value::now_ms();
        let (writes, stamp_ms) = match session {
            Some(s) => (
                vec![SessionWrite {
                    session_id: s.session_id,
                    sequence: s.sequence,
                    requests: requests.len() as u32,
                }],
                // Never below the session's start: a region forgets a
                // session only once its clock passed the start by the idle
                // timeout, which is what makes forgetting safe.
                now.max(session_start_ms(s.session_id)),
            ),
            None => (Vec::new(), now),
        };
        let cmd = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: ctx.region_id,
                peer: ctx.peer,
                region_epoch: ctx.region_epoch,
                ..Default::default()
            }),
            requests,
            admin_request: None,
            writes,
            stamp_ms,
            session_idle_ms: self.sessions.idle_timeout_secs.saturating_mul(1000),
            max_sessions: self.sessions.max_per_region,
        };
        self.router.command(cmd, STORE_WAIT).await
    }

    /// Gets a linearizable read point covering `keys` and `ranges`,
    /// recording the admission outcome.
    pub(crate) async fn read_point(
        &self,
        ctx: &Context,
        keys: Vec<Vec<u8>>,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<ReadGrant, RegionError> {
        let r = self.read_point_inner(ctx, keys, ranges).await;
        self.diagnostics
            .admit_result(ctx.region_id, RequestClass::Read, &r);
        r
    }

    async fn read_point_inner(
        &self,
        ctx: &Context,
        keys: Vec<Vec<u8>>,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<ReadGrant, RegionError> {
        let (tx, rx) = oneshot::channel();
        let msg = StoreMsg::Read {
            region_id: ctx.region_id,
            epoch: ctx.region_epoch,
            peer: ctx.peer,
            keys,
            ranges,
            cb: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        if let Err(busy) = self.router.send(msg) {
            return Err(busy.0);
        }
        match tokio::time::timeout(STORE_WAIT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(crate::region::region_not_found(ctx.region_id)),
            Err(_) => Err(timeout(ctx.region_id)),
        }
    }

    /// Runs a RocksDB read on the blocking pool.
    async fn read_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DB) -> Result<T, rocksdb::Error> + Send + 'static,
    ) -> Result<T, Status> {
        let db = self
            .db
            .get()
            .ok_or_else(|| Status::unavailable("store is stopping"))?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Status::internal(format!("read task failed: {e}")))?
            .map_err(|e| Status::internal(format!("storage read failed: {e}")))
    }
}

/// The error of a write its session refused (carried in its first
/// response).
pub(crate) fn refusal(resp: &RaftCmdResponse) -> Option<RegionError> {
    resp.responses.iter().find_map(|r| r.write_error.clone())
}

/// `INVALID_ARGUMENT` with `why` when `n` is past `limit`.
fn at_most(n: usize, limit: usize, why: impl FnOnce() -> String) -> Result<(), Status> {
    if n > limit {
        return Err(invalid(why()));
    }
    Ok(())
}

pub(crate) fn context(ctx: Option<Context>) -> Result<Context, Status> {
    let ctx = ctx.ok_or_else(|| invalid("missing context"))?;
    if ctx.region_id == 0 {
        return Err(invalid("context.region_id must be set"));
    }
    Ok(ctx)
}

/// Clips user range `[lower, upper)` (empty upper = unbounded) to the
/// region the read was granted on: empty bounds mean the region's own, and
/// a read never goes past it.
pub(crate) fn clip_to_region(
    lower: Vec<u8>,
    upper: Vec<u8>,
    grant: &ReadGrant,
) -> (Vec<u8>, Vec<u8>) {
    let lower = lower.max(grant.start_key.clone());
    let upper = match (upper.is_empty(), grant.end_key.is_empty()) {
        (true, _) => grant.end_key.clone(),
        (false, true) => upper,
        (false, false) => upper.min(grant.end_key.clone()),
    };
    (lower, upper)
}

/// The parts of the store transactions need beyond the raw path.
#[derive(Clone)]
pub struct TxnParts {
    /// Keys of one-phase commits in flight.
    pub memory_locks: Arc<MemoryLocks>,
    /// Source of one-phase commit timestamps.
    pub coordinator: nokv_client::CoordinatorClient,
    /// The GC safe point: reads below it may miss collected versions.
    pub safe_point: Arc<crate::worker::gc::SafePoint>,
}
