//! Asking the cluster: the coordinator for members, stores, regions and
//! operators, and every store (bounded per call, in parallel) for its
//! replicas' raft status and its request counters. A store that does not
//! answer is recorded on the store; only the coordinator can fail a
//! survey.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nokv_client::CoordinatorClient;
use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::{RegionStatus, RegionStatusRequest};
use nokv_proto::coordinatorpb::RegionInfo;
use nokv_proto::metapb::StoreState;

use super::assemble::{assemble_region, member, operator, store};
use super::model::{Member, Operators, Region, Store, Survey};
use crate::status_http::{self, RequestTotals};

/// The longest a single store call of a survey may take. A survey runs
/// once per refresh in `nokv top`, so one dead store must not hold it for
/// the whole client timeout.
const STORE_CALL_LIMIT: Duration = Duration::from_secs(2);

/// What a survey asks besides the coordinator.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// Ask every store's Admin API for its replicas' raft status.
    pub region_status: bool,
    /// Scrape every store's `/metrics` for request counters.
    pub metrics: bool,
    /// Ask the coordinator for operators.
    pub operators: bool,
}

impl Scope {
    /// Everything: what `nokv top` and `nokv doctor` use.
    pub const ALL: Scope = Scope {
        region_status: true,
        metrics: true,
        operators: true,
    };
}

/// Wall clock in unix ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Surveys the cluster.
///
/// # Errors
/// When the coordinator cannot list its members, stores or regions within
/// the client's timeout. Store failures are recorded on the stores instead.
pub async fn collect(client: &CoordinatorClient, scope: Scope) -> anyhow::Result<Survey> {
    let members = client.members().await?;
    let cluster_id = members.header.as_ref().map(|h| h.cluster_id).unwrap_or(0);
    let leader_member_id = members.leader.as_ref().map(|m| m.id);
    let members: Vec<Member> = members.members.into_iter().map(member).collect();
    let store_infos = client.get_all_stores().await?;
    let region_infos = client.scan_regions(b"", b"", 0).await?;
    let operators = if scope.operators {
        operators(client).await
    } else {
        Operators::NotAsked
    };

    let mut stores: Vec<Store> = store_infos.into_iter().filter_map(store).collect();
    stores.sort_by_key(|s| s.id);

    let per_call = client.timeout().min(STORE_CALL_LIMIT);
    let probes = stores
        .iter()
        .filter(|s| s.state != StoreState::Tombstone)
        .map(|s| {
            probe_store(
                client,
                s.id,
                s.address.clone(),
                s.status_address.clone(),
                scope,
                per_call,
            )
        });
    let probes = futures::future::join_all(probes).await;

    // (region id, store id) -> that store's status of its replica.
    let mut replica_status: HashMap<(u64, u64), RegionStatus> = HashMap::new();
    for p in probes {
        if let Some(store) = stores.iter_mut().find(|s| s.id == p.store_id) {
            store.admin_error = p.admin_error;
            store.requests = p.requests;
        }
        for r in p.regions {
            let region_id = r.region.as_ref().map(|g| g.id).unwrap_or(0);
            replica_status.insert((region_id, p.store_id), r);
        }
    }

    let regions = region_infos
        .into_iter()
        .filter_map(|info| assemble_region(info, &replica_status))
        .collect();

    Ok(Survey {
        taken_at_ms: now_ms(),
        cluster_id,
        members,
        leader_member_id,
        stores,
        regions,
        operators,
    })
}

/// One region, with only the stores holding it asked for their replica's
/// status. Returns the region and, per store that did not answer, why.
///
/// # Errors
/// When the coordinator does not know `region_id` or cannot be reached.
pub async fn region(
    client: &CoordinatorClient,
    region_id: u64,
) -> anyhow::Result<(Region, BTreeMap<u64, String>)> {
    let by_id = client.get_region_by_id(region_id).await?;
    let record = by_id
        .region
        .ok_or_else(|| anyhow::anyhow!("region {region_id} not found"))?;
    // ScanRegions carries what GetRegionById does not (pending peers, sizes).
    let info = client
        .scan_regions(&record.start_key, b"", 1)
        .await?
        .into_iter()
        .next()
        .filter(|i| i.region.as_ref().is_some_and(|r| r.id == region_id))
        .unwrap_or(RegionInfo {
            region: Some(record.clone()),
            leader: by_id.leader,
            ..Default::default()
        });
    let stores = client.get_all_stores().await?;
    let per_call = client.timeout().min(STORE_CALL_LIMIT);
    let asks = record.peers.iter().map(|p| {
        let address = stores
            .iter()
            .filter_map(|s| s.store.as_ref())
            .find(|s| s.id == p.store_id)
            .map(|s| s.address.clone());
        let store_id = p.store_id;
        async move {
            let Some(address) = address else {
                return (
                    store_id,
                    Err(anyhow::anyhow!("store {store_id} is not registered")),
                );
            };
            (
                store_id,
                region_status(client, &address, region_id, per_call).await,
            )
        }
    });
    let mut status = HashMap::new();
    let mut errors = BTreeMap::new();
    for (store_id, r) in futures::future::join_all(asks).await {
        match r {
            Ok(list) => {
                if let Some(s) = list
                    .into_iter()
                    .find(|s| s.region.as_ref().is_some_and(|r| r.id == region_id))
                {
                    status.insert((region_id, store_id), s);
                }
            }
            Err(e) => {
                errors.insert(store_id, crate::describe(&e));
            }
        }
    }
    let region = assemble_region(info, &status)
        .ok_or_else(|| anyhow::anyhow!("region {region_id} not found"))?;
    Ok((region, errors))
}

/// Admin `RegionStatus` of one store (`region_id` 0 = every replica),
/// bounded by `per_call`.
async fn region_status(
    client: &CoordinatorClient,
    address: &str,
    region_id: u64,
    per_call: Duration,
) -> anyhow::Result<Vec<RegionStatus>> {
    let ch = client.channel_to(address, per_call)?;
    let mut req = tonic::Request::new(RegionStatusRequest { region_id });
    req.set_timeout(per_call);
    let mut admin = AdminClient::new(ch);
    let resp = tokio::time::timeout(per_call, admin.region_status(req))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {per_call:?}"))??;
    Ok(resp.into_inner().regions)
}

/// What one store answered.
struct StoreProbe {
    store_id: u64,
    regions: Vec<RegionStatus>,
    admin_error: Option<String>,
    requests: Option<RequestTotals>,
}

async fn probe_store(
    client: &CoordinatorClient,
    store_id: u64,
    address: String,
    status_address: String,
    scope: Scope,
    per_call: Duration,
) -> StoreProbe {
    let admin = async {
        if !scope.region_status {
            return Ok(Vec::new());
        }
        region_status(client, &address, 0, per_call).await
    };
    let metrics = async {
        if !scope.metrics || status_address.is_empty() {
            return None;
        }
        status_http::get(&status_address, "/metrics", per_call, client.tls())
            .await
            .ok()
            .map(|text| status_http::request_totals(&text))
    };
    let (admin, requests) = tokio::join!(admin, metrics);
    let (regions, admin_error) = match admin {
        Ok(r) => (r, None),
        Err(e) => (Vec::new(), Some(crate::describe(&e))),
    };
    StoreProbe {
        store_id,
        regions,
        admin_error,
        requests,
    }
}

/// The operators, running and recently finished, or why they could not be
/// listed.
async fn operators(client: &CoordinatorClient) -> Operators {
    match client.get_operators(0, true).await {
        Err(e) => Operators::Unavailable(crate::describe(&anyhow::Error::new(e))),
        Ok(ops) => Operators::Listed(ops.into_iter().map(operator).collect()),
    }
}
