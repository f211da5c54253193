//! Transactional handlers of the `Kv` service. Writes travel through raft
//! as a `TxnRequest` that every replica evaluates at apply time; reads take
//! a ReadIndex read point, then read a RocksDB snapshot at the request's
//! timestamp, honouring both stored locks and the in-memory locks of
//! one-phase commits in flight.

use std::collections::HashSet;

use nokv_proto::errorpb::RegionError;
use nokv_proto::kvrpcpb::*;
use nokv_proto::raft_cmdpb::{
    request, response, txn_request, txn_response, Request as CmdRequest, TxnRequest, TxnResponse,
};
use tonic::Status;

use super::{context, invalid, KvService};
use crate::mvcc::{MvccError, MvccReader};

fn check_version(name: &str, ts: u64) -> Result<(), Status> {
    if ts == 0 {
        return Err(invalid(format!("{name} must be a non-zero timestamp")));
    }
    Ok(())
}

/// A read failure as the client sees it.
fn read_error(e: MvccError) -> Result<KeyError, Status> {
    e.to_key_error()
        .ok_or_else(|| Status::internal(format!("storage read failed: {e}")))
}

/// One read result as the protocol returns it: a value, or the key with
/// its error (a lock to resolve).
fn kv_pair(key: Vec<u8>, r: crate::mvcc::MvccResult<Vec<u8>>) -> Result<KvPair, Status> {
    Ok(match r {
        Ok(value) => KvPair {
            key,
            value,
            error: None,
        },
        Err(e) => KvPair {
            key,
            value: vec![],
            error: Some(read_error(e)?),
        },
    })
}

fn locked(info: LockInfo) -> KeyError {
    KeyError {
        locked: Some(info),
        ..Default::default()
    }
}

impl KvService {
    /// Refuses a read at `ts` below the GC safe point, whose versions may
    /// be gone.
    fn check_read_ts(&self, ts: u64) -> Option<KeyError> {
        let sp = self.txn.safe_point.get();
        (ts < sp).then(|| KeyError {
            abort: format!(
                "read timestamp {ts} is below the GC safe point {sp}: the versions it needs may be collected"
            ),
            abort_reason: AbortReason::ReadBelowSafePoint as i32,
            ..Default::default()
        })
    }

    /// Replicates one transactional command and returns its result.
    async fn propose_txn(
        &self,
        ctx: &Context,
        req: TxnRequest,
    ) -> Result<Result<txn_response::Cmd, RegionError>, Status> {
        let cmd = CmdRequest {
            cmd: Some(request::Cmd::Txn(req)),
        };
        match self.propose(ctx, vec![cmd], None).await {
            Err(e) => Ok(Err(e)),
            Ok(resp) => resp
                .responses
                .into_iter()
                .find_map(|r| match r.cmd {
                    Some(response::Cmd::Txn(TxnResponse { cmd: Some(c) })) => Some(Ok(c)),
                    _ => None,
                })
                .ok_or_else(|| Status::internal("transactional command produced no result")),
        }
    }

    fn check_keys<'a>(&self, keys: impl Iterator<Item = &'a Vec<u8>>) -> Result<usize, Status> {
        let mut count = 0;
        let mut bytes = 0;
        for k in keys {
            self.check_key(k)?;
            count += 1;
            bytes += k.len();
        }
        self.check_batch(count, bytes)?;
        Ok(count)
    }

    pub(super) async fn txn_get(&self, req: KvGetRequest) -> Result<KvGetResponse, Status> {
        let ctx = context(req.context)?;
        self.check_key(&req.key)?;
        check_version("version", req.version)?;
        if let Some(e) = self.check_read_ts(req.version) {
            return Ok(KvGetResponse {
                error: Some(e),
                ..Default::default()
            });
        }
        if let Err(e) = self.read_point(&ctx, vec![req.key.clone()], vec![]).await {
            return Ok(KvGetResponse {
                region_error: Some(e),
                ..Default::default()
            });
        }
        if let Err(info) = self.txn.memory_locks.check_key(&req.key, req.version) {
            return Ok(KvGetResponse {
                error: Some(locked(info)),
                ..Default::default()
            });
        }
        let (key, ts) = (req.key.clone(), req.version);
        let r = self
            .read_mvcc(move |reader| Ok(reader.get_checked(&key, ts)))
            .await?;
        if let Ok(Some(v)) = &r {
            self.record_read(ctx.region_id, [(req.key.as_slice(), v.as_slice())]);
        }
        Ok(match r {
            Ok(value) => KvGetResponse {
                region_error: None,
                error: None,
                not_found: value.is_none(),
                value: value.unwrap_or_default(),
            },
            Err(e) => KvGetResponse {
                error: Some(read_error(e)?),
                ..Default::default()
            },
        })
    }

    pub(super) async fn txn_batch_get(
        &self,
        req: KvBatchGetRequest,
    ) -> Result<KvBatchGetResponse, Status> {
        let ctx = context(req.context)?;
        self.check_keys(req.keys.iter())?;
        check_version("version", req.version)?;
        if let Some(e) = self.check_read_ts(req.version) {
            return Ok(KvBatchGetResponse {
                error: Some(e),
                ..Default::default()
            });
        }
        if let Err(e) = self.read_point(&ctx, req.keys.clone(), vec![]).await {
            return Ok(KvBatchGetResponse {
                region_error: Some(e),
                ..Default::default()
            });
        }
        let ts = req.version;
        let mut pairs = Vec::new();
        let mut keys = Vec::new();
        for k in req.keys {
            match self.txn.memory_locks.check_key(&k, ts) {
                Err(info) => pairs.push(KvPair {
                    key: k,
                    value: vec![],
                    error: Some(locked(info)),
                }),
                Ok(()) => keys.push(k),
            }
        }
        let read = self
            .read_mvcc(move |reader| {
                let mut out = Vec::new();
                let mut seen = HashSet::new();
                for k in keys {
                    if !seen.insert(k.clone()) {
                        continue;
                    }
                    match reader.get_checked(&k, ts) {
                        Ok(Some(v)) => out.push((k, Ok(v))),
                        Ok(None) => {}
                        Err(e) => out.push((k, Err(e))),
                    }
                }
                Ok(out)
            })
            .await?;
        for (key, r) in read {
            pairs.push(kv_pair(key, r)?);
        }
        self.record_read_pairs(ctx.region_id, &pairs);
        Ok(KvBatchGetResponse {
            region_error: None,
            pairs,
            error: None,
        })
    }

    pub(super) async fn txn_scan(&self, req: KvScanRequest) -> Result<KvScanResponse, Status> {
        let ctx = context(req.context)?;
        self.check_bound(&req.start_key)?;
        self.check_bound(&req.end_key)?;
        check_version("version", req.version)?;
        self.check_scan_limit(req.limit)?;
        if let Some(e) = self.check_read_ts(req.version) {
            return Ok(KvScanResponse {
                error: Some(e),
                ..Default::default()
            });
        }
        let (lower, upper) = if req.reverse {
            (req.end_key.clone(), req.start_key.clone())
        } else {
            (req.start_key.clone(), req.end_key.clone())
        };
        if !upper.is_empty() && upper <= lower {
            return Ok(KvScanResponse::default());
        }
        let grant = match self
            .read_point(&ctx, vec![], vec![(lower.clone(), upper.clone())])
            .await
        {
            Ok(g) => g,
            Err(e) => {
                return Ok(KvScanResponse {
                    region_error: Some(e),
                    ..Default::default()
                })
            }
        };
        let (lower, upper) = super::clip_to_region(lower, upper, &grant);
        if !upper.is_empty() && upper <= lower {
            return Ok(KvScanResponse::default());
        }
        if let Err(info) = self
            .txn
            .memory_locks
            .check_range(&lower, &upper, req.version)
        {
            return Ok(KvScanResponse {
                error: Some(locked(info)),
                ..Default::default()
            });
        }
        let (ts, limit, key_only, reverse) =
            (req.version, req.limit as usize, req.key_only, req.reverse);
        let rows = self
            .read_mvcc(move |reader| Ok(reader.scan(&lower, &upper, ts, limit, key_only, reverse)))
            .await?;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                return Ok(KvScanResponse {
                    error: Some(read_error(e)?),
                    ..Default::default()
                })
            }
        };
        let pairs = rows
            .into_iter()
            .map(|(key, r)| kv_pair(key, r))
            .collect::<Result<Vec<_>, Status>>()?;
        self.record_read_pairs(ctx.region_id, &pairs);
        Ok(KvScanResponse {
            region_error: None,
            pairs,
            error: None,
        })
    }

    pub(super) async fn txn_scan_lock(
        &self,
        req: KvScanLockRequest,
    ) -> Result<KvScanLockResponse, Status> {
        let ctx = context(req.context)?;
        self.check_bound(&req.start_key)?;
        self.check_bound(&req.end_key)?;
        self.check_scan_limit(req.limit)?;
        if !req.end_key.is_empty() && req.end_key <= req.start_key {
            return Ok(KvScanLockResponse::default());
        }
        let grant = match self
            .read_point(
                &ctx,
                vec![],
                vec![(req.start_key.clone(), req.end_key.clone())],
            )
            .await
        {
            Ok(g) => g,
            Err(e) => {
                return Ok(KvScanLockResponse {
                    region_error: Some(e),
                    ..Default::default()
                })
            }
        };
        let (lower, upper) = super::clip_to_region(req.start_key, req.end_key, &grant);
        let (max_ts, limit) = (req.max_version, req.limit as usize);
        let locks = self
            .read_mvcc(move |reader| reader.scan_locks(&lower, &upper, max_ts, limit))
            .await?;
        Ok(KvScanLockResponse {
            region_error: None,
            error: None,
            locks: locks.into_iter().map(|(k, l)| l.info(&k)).collect(),
        })
    }

    pub(super) async fn txn_prewrite(
        &self,
        req: KvPrewriteRequest,
    ) -> Result<KvPrewriteResponse, Status> {
        let ctx = context(req.context)?;
        check_version("start_version", req.start_version)?;
        let mut bytes = 0;
        for m in &req.mutations {
            self.check_key(&m.key)?;
            self.check_value(&m.value)?;
            if Op::try_from(m.op).is_err() {
                return Err(invalid(format!("unknown mutation op {}", m.op)));
            }
            bytes += m.key.len() + m.value.len();
        }
        self.check_batch(req.mutations.len(), bytes)?;
        if req.mutations.is_empty() {
            return Ok(KvPrewriteResponse::default());
        }
        if req.primary_lock.is_empty() {
            return Err(invalid("primary_lock must be set"));
        }
        self.check_key(&req.primary_lock)?;
        let mut one_pc_commit_ts = 0;
        let mut _guard = None;
        if req.try_one_pc {
            let keys = req.mutations.iter().map(|m| m.key.clone()).collect();
            let info = LockInfo {
                primary_lock: req.primary_lock.clone(),
                lock_version: req.start_version,
                lock_ttl: req.lock_ttl,
                txn_size: req.txn_size,
                ..Default::default()
            };
            match self.txn.memory_locks.lock_keys(keys, &info) {
                Ok(g) => _guard = Some(g),
                Err(held) => {
                    return Ok(KvPrewriteResponse {
                        errors: vec![locked(held)],
                        ..Default::default()
                    })
                }
            }
            // The commit ts comes from the TSO *after* the keys are locked
            // in memory: a reader with a later timestamp either meets the
            // memory lock or reads after the write is applied.
            let ts = self.txn.coordinator.get_timestamp(1).await.map_err(|e| {
                Status::unavailable(format!("one-phase commit needs a timestamp: {e}"))
            })?;
            if req.max_commit_ts != 0 && ts > req.max_commit_ts {
                // Fall back to two phases.
                _guard = None;
            } else {
                one_pc_commit_ts = ts.max(req.min_commit_ts).max(req.start_version + 1);
            }
        }
        let cmd = TxnRequest {
            cmd: Some(txn_request::Cmd::Prewrite(KvPrewriteRequest {
                context: None,
                ..req
            })),
            one_pc_commit_ts,
        };
        Ok(match self.propose_txn(&ctx, cmd).await? {
            Err(e) => KvPrewriteResponse {
                region_error: Some(e),
                ..Default::default()
            },
            Ok(txn_response::Cmd::Prewrite(r)) => r,
            Ok(_) => return Err(Status::internal("prewrite produced a foreign result")),
        })
    }
}

/// Generates a transactional write handler that validates keys, strips the
/// context, proposes the command and unwraps its response.
macro_rules! txn_write {
    ($fn:ident, $req:ty, $resp:ty, $variant:ident, |$r:ident, $svc:ident| $validate:block) => {
        impl KvService {
            pub(super) async fn $fn(&self, mut $r: $req) -> Result<$resp, Status> {
                let ctx = context($r.context.take())?;
                let $svc = self;
                $validate
                let cmd = TxnRequest {
                    cmd: Some(txn_request::Cmd::$variant($r)),
                    one_pc_commit_ts: 0,
                };
                match self.propose_txn(&ctx, cmd).await? {
                    Err(e) => Ok(<$resp>::default_with_region_error(e)),
                    Ok(txn_response::Cmd::$variant(r)) => Ok(r),
                    Ok(_) => Err(Status::internal(concat!(
                        stringify!($variant),
                        " produced a foreign result"
                    ))),
                }
            }
        }
    };
}

/// Responses that can carry just a region error.
trait WithRegionError {
    fn default_with_region_error(e: RegionError) -> Self;
}

macro_rules! with_region_error {
    ($($t:ty),*) => {$(
        impl WithRegionError for $t {
            fn default_with_region_error(e: RegionError) -> Self {
                Self { region_error: Some(e), ..Default::default() }
            }
        }
    )*};
}

with_region_error!(
    KvCommitResponse,
    KvBatchRollbackResponse,
    KvCleanupResponse,
    KvResolveLockResponse,
    KvCheckTxnStatusResponse,
    KvTxnHeartBeatResponse
);

txn_write!(
    txn_commit,
    KvCommitRequest,
    KvCommitResponse,
    Commit,
    |r, s| {
        check_version("start_version", r.start_version)?;
        check_version("commit_version", r.commit_version)?;
        s.check_keys(r.keys.iter())?;
    }
);

txn_write!(
    txn_batch_rollback,
    KvBatchRollbackRequest,
    KvBatchRollbackResponse,
    BatchRollback,
    |r, s| {
        check_version("start_version", r.start_version)?;
        s.check_keys(r.keys.iter())?;
    }
);

txn_write!(
    txn_cleanup,
    KvCleanupRequest,
    KvCleanupResponse,
    Cleanup,
    |r, s| {
        check_version("start_version", r.start_version)?;
        s.check_key(&r.key)?;
    }
);

txn_write!(
    txn_resolve_lock,
    KvResolveLockRequest,
    KvResolveLockResponse,
    ResolveLock,
    |r, s| {
        if r.txn_infos.is_empty() {
            check_version("start_version", r.start_version)?;
        }
        for t in &r.txn_infos {
            check_version("txn_infos.txn", t.txn)?;
        }
        s.check_keys(r.keys.iter())?;
    }
);

txn_write!(
    txn_check_txn_status,
    KvCheckTxnStatusRequest,
    KvCheckTxnStatusResponse,
    CheckTxnStatus,
    |r, s| {
        check_version("lock_ts", r.lock_ts)?;
        check_version("current_ts", r.current_ts)?;
        s.check_key(&r.primary_key)?;
    }
);

txn_write!(
    txn_heartbeat,
    KvTxnHeartBeatRequest,
    KvTxnHeartBeatResponse,
    TxnHeartBeat,
    |r, s| {
        check_version("start_version", r.start_version)?;
        s.check_key(&r.primary_lock)?;
    }
);

impl KvService {
    /// Runs an MVCC read on a snapshot, off the async threads.
    async fn read_mvcc<T: Send + 'static>(
        &self,
        f: impl FnOnce(&MvccReader) -> crate::mvcc::MvccResult<T> + Send + 'static,
    ) -> Result<T, Status> {
        let db = self
            .db()
            .ok_or_else(|| Status::unavailable("store is stopping"))?;
        tokio::task::spawn_blocking(move || {
            let reader = MvccReader::snapshot(&db);
            f(&reader)
        })
        .await
        .map_err(|e| Status::internal(format!("read task failed: {e}")))?
        .map_err(|e| Status::internal(format!("storage read failed: {e}")))
    }
}
