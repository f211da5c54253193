//! The `Kv` service. Each handler reads top to bottom: validate the input
//! (a bad request is `INVALID_ARGUMENT`), route it to the region through the
//! raftstore (writes are proposed, reads get a ReadIndex read point), then
//! read RocksDB off the async threads and answer. Region problems come back
//! as typed `region_error`s, never as strings.

use nokv_consensus::metrics::observe_grpc;
use nokv_proto::kvrpcpb::kv_server::Kv;
use nokv_proto::kvrpcpb::*;
use nokv_proto::raft_cmdpb::{
    request, response, CompareAndSwapRequest, DeleteRangeRequest, DeleteRequest, PutRequest,
    Request as CmdRequest,
};
use rocksdb::{Direction, IteratorMode, ReadOptions, DB};
use tonic::{Request, Response, Status};

use super::{clip_to_region, context, invalid, KvService};
use crate::engine::CF_RAW;
use crate::raw_value;

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
