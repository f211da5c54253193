//! The `Kv` service. Each handler reads top to bottom: validate the input
//! (a bad request is `INVALID_ARGUMENT`), route it to the region through the
//! raftstore (writes are proposed, reads get a ReadIndex read point), then
//! read RocksDB off the async threads and answer. Region problems come back
//! as typed `region_error`s, never as strings.

use std::sync::Arc;
use std::time::Duration;

use nokv_consensus::metrics::observe_grpc;
use nokv_proto::adminpb::RequestClass;
use nokv_proto::errorpb::RegionError;
use nokv_proto::kvrpcpb::kv_server::Kv;
use nokv_proto::kvrpcpb::*;
use nokv_proto::raft_cmdpb::{
    request, response, CompareAndSwapRequest, DeleteRangeRequest, DeleteRequest, PutRequest,
    RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, Request as CmdRequest, SessionWrite,
};
use rocksdb::{Direction, IteratorMode, ReadOptions, DB};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::config::{Limits, SessionConfig};
use crate::diagnostics::Diagnostics;
use crate::engine::{DbHandle, CF_RAW};
use crate::flow::FlowCount;
use crate::raftstore::msg::{ReadGrant, StoreMsg};
use crate::raftstore::session::session_start_ms;
use crate::raftstore::{Router, StoreCounters};
use crate::raw_value;
use crate::region::timeout;
use crate::service::txn::TxnParts;

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
    pub(super) txn: TxnParts,
}

pub(super) fn invalid(msg: impl Into<String>) -> Status {
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
    pub(super) fn record_read<'a>(
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
    pub(super) fn record_read_pairs(&self, region_id: u64, pairs: &[KvPair]) {
        self.record_read(
            region_id,
            pairs
                .iter()
                .filter(|p| p.error.is_none())
                .map(|p| (p.key.as_slice(), p.value.as_slice())),
        );
    }

    /// The open database, or `None` once the store is stopping.
    pub(super) fn db(&self) -> Option<Arc<DB>> {
        self.db.get()
    }

    pub(super) fn check_scan_limit(&self, limit: u32) -> Result<(), Status> {
        if limit > self.limits.max_scan_limit {
            return Err(invalid(format!(
                "scan limit {limit} exceeds {}",
                self.limits.max_scan_limit
            )));
        }
        Ok(())
    }

    pub(super) fn check_key(&self, key: &[u8]) -> Result<(), Status> {
        if key.is_empty() {
            return Err(invalid("key must not be empty"));
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(invalid(format!(
                "key is {} bytes; the limit is {} bytes",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn check_value(&self, value: &[u8]) -> Result<(), Status> {
        if value.len() > self.limits.max_value_bytes {
            return Err(invalid(format!(
                "value is {} bytes; the limit is {} bytes",
                value.len(),
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn check_bound(&self, key: &[u8]) -> Result<(), Status> {
        if key.len() > self.limits.max_key_bytes {
            return Err(invalid(format!(
                "range bound exceeds the {}-byte key limit",
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn check_batch(&self, count: usize, bytes: usize) -> Result<(), Status> {
        if count > self.limits.max_batch_keys {
            return Err(invalid(format!(
                "batch has {count} keys; the limit is {}",
                self.limits.max_batch_keys
            )));
        }
        if bytes > self.limits.max_batch_bytes {
            return Err(invalid(format!(
                "batch is {bytes} bytes; the limit is {}",
                self.limits.max_batch_bytes
            )));
        }
        Ok(())
    }

    /// Checks the session a raw write carries: `None` for a write without
    /// one. A session id must be a TSO timestamp no further ahead of this
    /// store's clock than the idle timeout (a session from the future would
    /// push the region clock past every other session), and sequences
    /// start at 1.
    fn check_session(&self, session: Option<WriteSession>) -> Result<Option<WriteSession>, Status> {
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
    pub(super) async fn propose(
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
    pub(super) async fn read_point(
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
fn refusal(resp: &RaftCmdResponse) -> Option<RegionError> {
    resp.responses.iter().find_map(|r| r.write_error.clone())
}

pub(super) fn context(ctx: Option<Context>) -> Result<Context, Status> {
    let ctx = ctx.ok_or_else(|| invalid("missing context"))?;
    if ctx.region_id == 0 {
        return Err(invalid("context.region_id must be set"));
    }
    Ok(ctx)
}

/// Clips user range `[lower, upper)` (empty upper = unbounded) to the
/// region the read was granted on: empty bounds mean the region's own, and
/// a read never goes past it.
pub(super) fn clip_to_region(
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

fn put(key: Vec<u8>, value: Vec<u8>) -> CmdRequest {
    CmdRequest {
        cmd: Some(request::Cmd::Put(PutRequest {
            cf: CF_RAW.into(),
            key,
            value,
        })),
    }
}

fn get_raw(db: &DB, key: &[u8], now: u64) -> Result<Option<Vec<u8>>, rocksdb::Error> {
    let handle = db
        .cf_handle(CF_RAW)
        .expect("raw column family exists: opened with ALL_CFS");
    Ok(db
        .get_pinned_cf(handle, key)?
        .and_then(|v| raw_value::decode(&v, now).map(|v| v.to_vec())))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn raw_get(
        &self,
        request: Request<RawGetRequest>,
    ) -> Result<Response<RawGetResponse>, Status> {
        observe_grpc("RawGet", async {
            let req = request.into_inner();
            let ctx = context(req.context)?;
            self.check_key(&req.key)?;
            if let Err(e) = self.read_point(&ctx, vec![req.key.clone()], vec![]).await {
                return Ok(Response::new(RawGetResponse {
                    region_error: Some(e),
                    ..Default::default()
                }));
            }
            let key = req.key.clone();
            let value = self
                .read_db(move |db| get_raw(db, &key, raw_value::now_secs()))
                .await?;
            if let Some(v) = &value {
                self.record_read(ctx.region_id, [(req.key.as_slice(), v.as_slice())]);
            }
            Ok(Response::new(RawGetResponse {
                region_error: None,
                not_found: value.is_none(),
                value: value.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn raw_batch_get(
        &self,
        request: Request<RawBatchGetRequest>,
    ) -> Result<Response<RawBatchGetResponse>, Status> {
        observe_grpc("RawBatchGet", async {
            let req = request.into_inner();
            let ctx = context(req.context)?;
            for k in &req.keys {
                self.check_key(k)?;
            }
            self.check_batch(req.keys.len(), req.keys.iter().map(|k| k.len()).sum())?;
            if let Err(e) = self.read_point(&ctx, req.keys.clone(), vec![]).await {
                return Ok(Response::new(RawBatchGetResponse {
                    region_error: Some(e),
                    pairs: vec![],
                }));
            }
            let keys = req.keys;
            let pairs = self
                .read_db(move |db| {
                    let now = raw_value::now_secs();
                    let mut out = Vec::new();
                    for k in keys {
                        if let Some(v) = get_raw(db, &k, now)? {
                            out.push(KvPair {
                                key: k,
                                value: v,
                                error: None,
                            });
                        }
                    }
                    Ok(out)
                })
                .await?;
            self.record_read(
                ctx.region_id,
                pairs.iter().map(|p| (p.key.as_slice(), p.value.as_slice())),
            );
            Ok(Response::new(RawBatchGetResponse {
                region_error: None,
                pairs,
            }))
        })
        .await
    }

    async fn raw_put(
        &self,
        request: Request<RawPutRequest>,
    ) -> Result<Response<RawPutResponse>, Status> {
        observe_grpc("RawPut", async {
            let req = request.into_inner();
            let ctx = context(req.context)?;
            self.check_key(&req.key)?;
            self.check_value(&req.value)?;
            let session = self.check_session(req.session)?;
            let value = raw_value::encode(&req.value, req.ttl_seconds);
            let region_error = self
                .propose(&ctx, vec![put(req.key, value)], session)
                .await
                .err();
            Ok(Response::new(RawPutResponse { region_error }))
        })
        .await
    }

    async fn raw_batch_put(
        &self,
        request: Request<RawBatchPutRequest>,
    ) -> Result<Response<RawBatchPutResponse>, Status> {
        observe_grpc("RawBatchPut", async {
            let req = request.into_inner();
            let ctx = context(req.context)?;
            for p in &req.pairs {
                self.check_key(&p.key)?;
                self.check_value(&p.value)?;
            }
            self.check_batch(
                req.pairs.len(),
                req.pairs.iter().map(|p| p.key.len() + p.value.len()).sum(),
            )?;
            let session = self.check_session(req.session)?;
            let ttl = req.ttl_seconds;
            let requests = req
                .pairs
                .into_iter()
                .map(|p| put(p.key, raw_value::encode(&p.value, ttl)))
                .collect();
            let region_error = self.propose(&ctx, requests, session).await.err();
            Ok(Response::new(RawBatchPutResponse { region_error }))
        })
        .await
    }

    async fn raw_delete(
        &self,
        request: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        observe_grpc("RawDelete", async {
            let req = request.into_inner();
            let ctx = context(req.context)?;
            self.check_key(&req.key)?;
            let session = self.check_session(req.session)?;
            let del = CmdRequest {
                cmd: Some(request::Cmd::Delete(DeleteRequest {
                    cf: CF_RAW.into(),
                    key: req.key,
                })),
            };
            let region_error = self.propose(&ctx, vec![del], session).await.err();
            Ok(Response::new(RawDeleteResponse { region_error }))
        })
        .await
    }

    async fn raw_delete_range(
        &self,
        request: Request<RawDeleteRangeRequest>,
    ) -> Result<Response<RawDeleteRangeResponse>, Status> {
        observe_grpc("RawDeleteRange", async {
            let req = request.into_inner();
            let ctx = context(req.context)?;
            self.check_bound(&req.start_key)?;
            self.check_bound(&req.end_key)?;
            if !req.end_key.is_empty() && req.end_key <= req.start_key {
                return Err(invalid("end_key must be above start_key"));
            }
            let session = self.check_session(req.session)?;
            let del = CmdRequest {
                cmd: Some(request::Cmd::DeleteRange(DeleteRangeRequest {
                    cf: CF_RAW.into(),
                    start_key: req.start_key,
                    end_key: req.end_key,
                })),
            };
            let region_error = self.propose(&ctx, vec![del], session).await.err();
            Ok(Response::new(RawDeleteRangeResponse { region_error }))
        })
        .await
    }

    async fn raw_scan(
        &self,
        request: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        observe_grpc("RawScan", async {
            let req = request.into_inner();
            let ctx = context(req.context)?;
            self.check_bound(&req.start_key)?;
            self.check_bound(&req.end_key)?;
            self.check_scan_limit(req.limit)?;
            // Forward: [start, end). Reverse: [end, start), start exclusive.
            let (lower, upper) = if req.reverse {
                (req.end_key.clone(), req.start_key.clone())
            } else {
                (req.start_key.clone(), req.end_key.clone())
            };
            if !upper.is_empty() && upper <= lower {
                return Ok(Response::new(RawScanResponse {
                    region_error: None,
                    kvs: vec![],
                }));
            }
            let grant = match self
                .read_point(&ctx, vec![], vec![(lower.clone(), upper.clone())])
                .await
            {
                Ok(g) => g,
                Err(e) => {
                    return Ok(Response::new(RawScanResponse {
                        region_error: Some(e),
                        kvs: vec![],
                    }))
                }
            };
            let (lower, upper) = clip_to_region(lower, upper, &grant);
            if !upper.is_empty() && upper <= lower {
                return Ok(Response::new(RawScanResponse {
                    region_error: None,
                    kvs: vec![],
                }));
            }
            let (limit, key_only, reverse) = (req.limit as usize, req.key_only, req.reverse);
            let kvs = self
                .read_db(move |db| scan_raw(db, &lower, &upper, limit, key_only, reverse))
                .await?;
            self.record_read(
                ctx.region_id,
                kvs.iter().map(|p| (p.key.as_slice(), p.value.as_slice())),
            );
            Ok(Response::new(RawScanResponse {
                region_error: None,
                kvs,
            }))
        })
        .await
    }

    async fn raw_compare_and_swap(
        &self,
        request: Request<RawCompareAndSwapRequest>,
    ) -> Result<Response<RawCompareAndSwapResponse>, Status> {
        observe_grpc("RawCompareAndSwap", async {
            let req = request.into_inner();
            let ctx = context(req.context)?;
            self.check_key(&req.key)?;
            self.check_value(&req.value)?;
            self.check_value(&req.previous_value)?;
            let session = self.check_session(req.session)?;
            let cas = CmdRequest {
                cmd: Some(request::Cmd::CompareAndSwap(CompareAndSwapRequest {
                    cf: CF_RAW.into(),
                    key: req.key,
                    value: raw_value::encode(&req.value, req.ttl_seconds),
                    previous_value: req.previous_value,
                    previous_not_exist: req.previous_not_exist,
                    evaluated_at_secs: raw_value::now_secs(),
                })),
            };
            match self.propose(&ctx, vec![cas], session).await {
                Err(e) => Ok(Response::new(RawCompareAndSwapResponse {
                    region_error: Some(e),
                    ..Default::default()
                })),
                Ok(resp) => {
                    let out = resp.responses.into_iter().find_map(|r| match r.cmd {
                        Some(response::Cmd::CompareAndSwap(c)) => Some(c),
                        _ => None,
                    });
                    let out =
                        out.ok_or_else(|| Status::internal("compare-and-swap produced no result"))?;
                    Ok(Response::new(RawCompareAndSwapResponse {
                        region_error: None,
                        succeed: out.succeed,
                        previous_value: out.previous_value,
                        previous_not_exist: out.previous_not_exist,
                    }))
                }
            }
        })
        .await
    }

    async fn kv_get(&self, r: Request<KvGetRequest>) -> Result<Response<KvGetResponse>, Status> {
        observe_grpc("KvGet", self.txn_get(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_batch_get(
        &self,
        r: Request<KvBatchGetRequest>,
    ) -> Result<Response<KvBatchGetResponse>, Status> {
        observe_grpc("KvBatchGet", self.txn_batch_get(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_scan(&self, r: Request<KvScanRequest>) -> Result<Response<KvScanResponse>, Status> {
        observe_grpc("KvScan", self.txn_scan(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_prewrite(
        &self,
        r: Request<KvPrewriteRequest>,
    ) -> Result<Response<KvPrewriteResponse>, Status> {
        observe_grpc("KvPrewrite", self.txn_prewrite(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_commit(
        &self,
        r: Request<KvCommitRequest>,
    ) -> Result<Response<KvCommitResponse>, Status> {
        observe_grpc("KvCommit", self.txn_commit(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_batch_rollback(
        &self,
        r: Request<KvBatchRollbackRequest>,
    ) -> Result<Response<KvBatchRollbackResponse>, Status> {
        observe_grpc("KvBatchRollback", self.txn_batch_rollback(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_cleanup(
        &self,
        r: Request<KvCleanupRequest>,
    ) -> Result<Response<KvCleanupResponse>, Status> {
        observe_grpc("KvCleanup", self.txn_cleanup(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_resolve_lock(
        &self,
        r: Request<KvResolveLockRequest>,
    ) -> Result<Response<KvResolveLockResponse>, Status> {
        observe_grpc("KvResolveLock", self.txn_resolve_lock(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_check_txn_status(
        &self,
        r: Request<KvCheckTxnStatusRequest>,
    ) -> Result<Response<KvCheckTxnStatusResponse>, Status> {
        observe_grpc(
            "KvCheckTxnStatus",
            self.txn_check_txn_status(r.into_inner()),
        )
        .await
        .map(Response::new)
    }
    async fn kv_txn_heart_beat(
        &self,
        r: Request<KvTxnHeartBeatRequest>,
    ) -> Result<Response<KvTxnHeartBeatResponse>, Status> {
        observe_grpc("KvTxnHeartBeat", self.txn_heartbeat(r.into_inner()))
            .await
            .map(Response::new)
    }
    async fn kv_scan_lock(
        &self,
        r: Request<KvScanLockRequest>,
    ) -> Result<Response<KvScanLockResponse>, Status> {
        observe_grpc("KvScanLock", self.txn_scan_lock(r.into_inner()))
            .await
            .map(Response::new)
    }
}

/// Scans the raw column family over `[lower, upper)` (empty upper =
/// unbounded), skipping expired values.
fn scan_raw(
    db: &DB,
    lower: &[u8],
    upper: &[u8],
    limit: usize,
    key_only: bool,
    reverse: bool,
) -> Result<Vec<KvPair>, rocksdb::Error> {
    let handle = db
        .cf_handle(CF_RAW)
        .expect("raw column family exists: opened with ALL_CFS");
    let now = raw_value::now_secs();
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(lower.to_vec());
    if !upper.is_empty() {
        opts.set_iterate_upper_bound(upper.to_vec());
    }
    let mode = match (reverse, upper.is_empty()) {
        (false, _) => IteratorMode::From(lower, Direction::Forward),
        (true, true) => IteratorMode::End,
        (true, false) => IteratorMode::From(upper, Direction::Reverse),
    };
    let mut out = Vec::new();
    for item in db.iterator_cf_opt(handle, opts, mode) {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item?;
        let Some(v) = raw_value::decode(&v, now) else {
            continue;
        };
        out.push(KvPair {
            key: k.to_vec(),
            value: if key_only { Vec::new() } else { v.to_vec() },
            error: None,
        });
    }
    Ok(out)
}
