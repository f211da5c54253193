//! [`CoordinatorClient`]: talks to the coordinator leader, finding it
//! through any member and following NOT_LEADER answers, with one overall
//! deadline per call.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nokv_proto::coordinatorpb::coordinator_client::CoordinatorClient as Grpc;
use nokv_proto::coordinatorpb::*;
use nokv_proto::metapb::{Member, Region, Store};
use nokv_proto::tls::{url_for, TlsConfig};
use tonic::transport::{Channel, Endpoint};

use crate::backoff::Backoff;
use crate::{Error, Result};
use nokv_proto::poison::MutexExt;

/// Responses that carry a coordinator `ResponseHeader`.
pub trait HasHeader {
    /// The header, if present.
    fn header(&self) -> Option<&ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ty),* $(,)?) => {
        $(impl HasHeader for $t {
            fn header(&self) -> Option<&ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

nokv_proto::coordinator_responses!(has_header);

/// Builds a lazily connecting channel to `addr` (`host:port` or a URL),
/// with mutual TLS when `tls` is given.
///
/// # Errors
/// [`Error::InvalidEndpoint`] for an address that does not parse,
/// [`Error::Tls`] when tonic refuses the TLS material.
pub fn channel(addr: &str, connect_timeout: Duration, tls: Option<&TlsConfig>) -> Result<Channel> {
    let mut endpoint = Endpoint::from_shared(url_for(addr, tls))
        .map_err(|_| Error::InvalidEndpoint(addr.to_string()))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client())
            .map_err(|e| Error::Tls(format!("{addr}: {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}

/// A status's message followed by its causes: a connection failure says
/// only "transport error", and the reason (refused, a TLS alert, a
/// certificate the CA did not sign) is in the source chain.
pub(crate) fn status_text(s: &tonic::Status) -> String {
    let mut text = s.message().to_string();
    let mut cause = std::error::Error::source(s);
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text = format!("{text}: {c_text}");
        }
        cause = c.source();
    }
    text
}

#[derive(Default)]
struct LeaderCache {
    address: Option<String>,
    channel: Option<Channel>,
}

/// Client of the coordinator group. Cheap to clone; clones share the
/// leader cache.
#[derive(Clone)]
pub struct CoordinatorClient {
    endpoints: Arc<Vec<String>>,
    leader: Arc<Mutex<LeaderCache>>,
    timeout: Duration,
    tls: Option<TlsConfig>,
}

impl CoordinatorClient {
    /// Creates a client for the given member addresses. No connection is
    /// made until the first call.
    ///
    /// # Errors
    /// `InvalidArgument` when `endpoints` is empty.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Self> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument(
                "at least one coordinator endpoint is required".into(),
            ));
        }
        for e in &endpoints {
            // Parse only: connecting needs a runtime, creating a client must not.
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            };
            Endpoint::from_shared(url).map_err(|_| Error::InvalidEndpoint(e.clone()))?;
        }
        Ok(CoordinatorClient {
            endpoints: Arc::new(endpoints),
            leader: Arc::new(Mutex::new(LeaderCache::default())),
            timeout,
            tls: None,
        })
    }

    /// Speaks mutual TLS to every coordinator member and, through the
    /// clients built on this one ([`crate::RawClient`],
    /// [`crate::TxnClient`]), to every store. Needed when the cluster runs
    /// with a `security` section.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        // A channel cached before this call would be plaintext.
        *self.leader.lock_unpoisoned() = LeaderCache::default();
        self
    }

    /// The TLS material, if the client uses TLS.
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// A lazily connecting channel to another process of the cluster (a
    /// store's `Kv` or `Admin` service), with this client's TLS.
    ///
    /// # Errors
    /// As [`channel`].
    pub fn channel_to(&self, addr: &str, connect_timeout: Duration) -> Result<Channel> {
        channel(addr, connect_timeout, self.tls.as_ref())
    }

    /// The overall deadline applied to each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The configured member endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn cached_leader(&self) -> Option<Channel> {
        self.leader.lock_unpoisoned().channel.clone()
    }

    fn set_leader(&self, addr: Option<String>) {
        let mut l = self.leader.lock_unpoisoned();
        l.channel = addr
            .as_deref()
            .and_then(|a| self.channel_to(a, self.timeout).ok());
        l.address = addr;
    }

    /// Asks members in turn who leads. Returns the leader's address.
    async fn discover(&self, backoff: &Backoff) -> Result<String> {
        let mut last = String::from("no member answered");
        for ep in self.endpoints.iter() {
            let per_call = backoff.remaining().min(Duration::from_secs(2));
            if per_call.is_zero() {
                break;
            }
            let ch = self.channel_to(ep, per_call)?;
            let mut grpc = Grpc::new(ch);
            let mut req = tonic::Request::new(GetMembersRequest::default());
            req.set_timeout(per_call);
            match grpc.get_members(req).await {
                Ok(resp) => match resp.into_inner().leader {
                    Some(Member { address, .. }) if !address.is_empty() => return Ok(address),
                    _ => last = format!("{ep}: no leader elected yet"),
                },
                Err(s) => last = format!("{ep}: {}", status_text(&s)),
            }
        }
        Err(Error::CoordinatorUnavailable(last))
    }

    /// Runs `f` against the leader, rediscovering it on NOT_LEADER or a
    /// transport failure, until the client's deadline.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        T: HasHeader,
        F: FnMut(Grpc<Channel>, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut backoff = Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(500),
            Instant::now() + self.timeout,
        );
        let mut last = String::from("not attempted");
        loop {
            let ch = match self.cached_leader() {
                Some(ch) => Some(ch),
                None => match self.discover(&backoff).await {
                    Ok(addr) => {
                        self.set_leader(Some(addr));
                        self.cached_leader()
                    }
                    Err(e) => {
                        last = e.to_string();
                        None
                    }
                },
            };
            if let Some(ch) = ch {
                let per_call = backoff.remaining();
                if per_call.is_zero() {
                    break;
                }
                match f(Grpc::new(ch), per_call).await {
                    Ok(resp) => {
                        let resp = resp.into_inner();
                        match resp.header().and_then(|h| h.error.as_ref()) {
                            None => return Ok(resp),
                            Some(e) if e.r#type() == ErrorType::NotLeader => {
                                last = format!("not leader: {}", e.message);
                                let hint = e.leader.as_ref().map(|m| m.address.clone());
                                self.set_leader(hint.filter(|a| !a.is_empty()));
                            }
                            Some(e) => {
                                return Err(Error::Coordinator {
                                    kind: e.r#type(),
                                    message: e.message.clone(),
                                })
                            }
                        }
                    }
                    // Final answers: retrying cannot change them (a
                    // refused certificate stays refused).
                    Err(s)
                        if matches!(
                            s.code(),
                            tonic::Code::Unimplemented
                                | tonic::Code::InvalidArgument
                                | tonic::Code::PermissionDenied
                                | tonic::Code::Unauthenticated
                        ) =>
                    {
                        return Err(Error::Rpc(s))
                    }
                    Err(s) => {
                        last = format!("{:?}: {}", s.code(), status_text(&s));
                        self.set_leader(None);
                    }
                }
            }
            if !backoff.wait().await {
                break;
            }
        }
        Err(Error::DeadlineExceeded {
            attempts: backoff.attempts,
            last,
        })
    }

    /// The members and the current leader, from any reachable member.
    pub async fn members(&self) -> Result<GetMembersResponse> {
        let mut last = String::new();
        for ep in self.endpoints.iter() {
            let mut grpc = Grpc::new(self.channel_to(ep, self.timeout)?);
            let mut req = tonic::Request::new(GetMembersRequest::default());
            req.set_timeout(self.timeout);
            match grpc.get_members(req).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => last = format!("{ep}: {}", status_text(&s)),
            }
        }
        Err(Error::CoordinatorUnavailable(last))
    }

    /// Allocates `count` consecutive ids; returns the first.
    pub async fn alloc_id(&self, count: u32) -> Result<u64> {
        let r = self
            .call(|mut c, t| async move {
                let mut req = tonic::Request::new(AllocIdRequest {
                    header: None,
                    count,
                });
                req.set_timeout(t);
                c.alloc_id(req).await
            })
            .await?;
        Ok(r.id)
    }

    /// Fetches `count` timestamps; returns the first (they are consecutive).
    pub async fn get_timestamp(&self, count: u32) -> Result<u64> {
        let r = self
            .call(|mut c, t| async move {
                let mut req = tonic::Request::new(TsoRequest {
                    header: None,
                    count,
                });
                req.set_timeout(t);
                c.get_timestamp(req).await
            })
            .await?;
        Ok(r.first)
    }

    /// Whether the cluster is bootstrapped.
    pub async fn is_bootstrapped(&self) -> Result<bool> {
        let r = self
            .call(|mut c, t| async move {
                let mut req = tonic::Request::new(IsBootstrappedRequest::default());
                req.set_timeout(t);
                c.is_bootstrapped(req).await
            })
            .await?;
        Ok(r.bootstrapped)
    }

    /// Bootstraps the cluster with its first store and region.
    pub async fn bootstrap(&self, store: Store, region: Region) -> Result<()> {
        self.call(|mut c, t| {
            let req = BootstrapRequest {
                header: None,
                store: Some(store.clone()),
                region: Some(region.clone()),
            };
            async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(t);
                c.bootstrap(req).await
            }
        })
        .await?;
        Ok(())
    }

    /// Registers or updates a store.
    pub async fn put_store(&self, store: Store) -> Result<()> {
        self.call(|mut c, t| {
            let req = PutStoreRequest {
                header: None,
                store: Some(store.clone()),
            };
            async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(t);
                c.put_store(req).await
            }
        })
        .await?;
        Ok(())
    }

    /// One store with its last reported stats.
    pub async fn get_store(&self, store_id: u64) -> Result<GetStoreResponse> {
        self.call(|mut c, t| async move {
            let mut req = tonic::Request::new(GetStoreRequest {
                header: None,
                store_id,
            });
            req.set_timeout(t);
            c.get_store(req).await
        })
        .await
    }

    /// Every store.
    pub async fn get_all_stores(&self) -> Result<Vec<StoreInfo>> {
        let r = self
            .call(|mut c, t| async move {
                let mut req = tonic::Request::new(GetAllStoresRequest::default());
                req.set_timeout(t);
                c.get_all_stores(req).await
            })
            .await?;
        Ok(r.stores)
    }

    /// Reports store liveness and load.
    pub async fn store_heartbeat(&self, stats: StoreStats) -> Result<()> {
        self.call(|mut c, t| {
            let req = StoreHeartbeatRequest {
                header: None,
                stats: Some(stats),
            };
            async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(t);
                c.store_heartbeat(req).await
            }
        })
        .await?;
        Ok(())
    }

    /// Reports a region from its leader; the answer may carry an order.
    pub async fn region_heartbeat(
        &self,
        hb: RegionHeartbeatRequest,
    ) -> Result<RegionHeartbeatResponse> {
        self.call(|mut c, t| {
            let req = hb.clone();
            async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(t);
                c.region_heartbeat(req).await
            }
        })
        .await
    }

    /// The region containing `key` and its leader.
    pub async fn get_region(&self, key: &[u8]) -> Result<GetRegionResponse> {
        self.call(|mut c, t| {
            let key = key.to_vec();
            async move {
                let mut req = tonic::Request::new(GetRegionRequest { header: None, key });
                req.set_timeout(t);
                c.get_region(req).await
            }
        })
        .await
    }

    /// A region by id and its leader.
    pub async fn get_region_by_id(&self, region_id: u64) -> Result<GetRegionResponse> {
        self.call(|mut c, t| async move {
            let mut req = tonic::Request::new(GetRegionByIdRequest {
                header: None,
                region_id,
            });
            req.set_timeout(t);
            c.get_region_by_id(req).await
        })
        .await
    }

    /// The MVCC GC safe point.
    pub async fn get_gc_safe_point(&self) -> Result<u64> {
        let r = self
            .call(|mut c, t| async move {
                let mut req = tonic::Request::new(GetGcSafePointRequest { header: None });
                req.set_timeout(t);
                c.get_gc_safe_point(req).await
            })
            .await?;
        Ok(r.safe_point)
    }

    /// Raises the MVCC GC safe point (never lowers it); returns the safe
    /// point in force.
    pub async fn update_gc_safe_point(&self, safe_point: u64) -> Result<u64> {
        let r = self
            .call(|mut c, t| async move {
                let mut req = tonic::Request::new(UpdateGcSafePointRequest {
                    header: None,
                    safe_point,
                });
                req.set_timeout(t);
                c.update_gc_safe_point(req).await
            })
            .await?;
        Ok(r.new_safe_point)
    }

    /// Ids for splitting `region` into `count + 1` regions.
    pub async fn ask_batch_split(&self, region: Region, count: u32) -> Result<Vec<SplitId>> {
        let r = self
            .call(|mut c, t| {
                let req = AskBatchSplitRequest {
                    header: None,
                    region: Some(region.clone()),
                    split_count: count,
                };
                async move {
                    let mut req = tonic::Request::new(req);
                    req.set_timeout(t);
                    c.ask_batch_split(req).await
                }
            })
            .await?;
        Ok(r.ids)
    }

    /// Records the regions a split produced.
    pub async fn report_batch_split(&self, regions: Vec<Region>) -> Result<()> {
        self.call(|mut c, t| {
            let req = ReportBatchSplitRequest {
                header: None,
                regions: regions.clone(),
            };
            async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(t);
                c.report_batch_split(req).await
            }
        })
        .await?;
        Ok(())
    }

    /// Regions overlapping `[start, end)` in key order (`limit` 0 = all).
    pub async fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<Vec<RegionInfo>> {
        let r = self
            .call(|mut c, t| {
                let req = ScanRegionsRequest {
                    header: None,
                    start_key: start.to_vec(),
                    end_key: end.to_vec(),
                    limit,
                };
                async move {
                    let mut req = tonic::Request::new(req);
                    req.set_timeout(t);
                    c.scan_regions(req).await
                }
            })
            .await?;
        Ok(r.regions)
    }

    /// Scheduling operators in flight (`region_id` 0: of every region)
    /// and, with `include_history`, the recently finished ones.
    pub async fn get_operators(
        &self,
        region_id: u64,
        include_history: bool,
    ) -> Result<Vec<Operator>> {
        let r = self
            .call(|mut c, t| async move {
                let mut req = tonic::Request::new(GetOperatorsRequest {
                    header: None,
                    region_id,
                    include_history,
                });
                req.set_timeout(t);
                c.get_operators(req).await
            })
            .await?;
        Ok(r.operators)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_carries_the_cause_of_a_connection_failure() {
        let mut s = tonic::Status::unavailable("transport error");
        s.set_source(Arc::new(std::io::Error::other(
            "received fatal alert: UnknownCA",
        )));
        assert_eq!(
            status_text(&s),
            "transport error: received fatal alert: UnknownCA"
        );
        let plain = tonic::Status::permission_denied("nope");
        assert_eq!(status_text(&plain), "nope");
    }
}
