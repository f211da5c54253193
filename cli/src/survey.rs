//! One pass over the whole cluster, as `nokv top`, `nokv doctor`,
//! `nokv region` and `nokv stats` need it: the coordinator's members,
//! stores, regions and operators, every store's own view of its replicas
//! (Admin `RegionStatus`: raft progress per peer, commit and applied
//! indexes) and its request counters (status port `/metrics`).
//!
//! [`Survey`] is plain data so the TUI model and the doctor's checks are
//! pure functions of it and can be tested without a cluster. A store that
//! does not answer does not fail the survey: its error is recorded on the
//! store and its replicas' indexes stay unknown. Only a coordinator that
//! cannot answer fails [`collect`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nokv_client::coordinator::HasHeader;
use nokv_client::CoordinatorClient;
use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::{RegionStatus, RegionStatusRequest};
use nokv_proto::coordinatorpb::{
    change_peer, operator_step::Step, GetOperatorsRequest, GetOperatorsResponse, RegionInfo,
    ResponseHeader, StoreStats,
};
use nokv_proto::metapb::{PeerRole, StoreState};

use serde::Serialize;

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

/// The cluster as seen at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    /// Unix ms when the survey finished.
    pub taken_at_ms: u64,
    /// Cluster id from the coordinator's response header (0 = not
    /// bootstrapped).
    pub cluster_id: u64,
    /// Coordinator members.
    pub members: Vec<Member>,
    /// The member that leads the coordinator group, if one is known.
    pub leader_member_id: Option<u64>,
    /// Every store, by id.
    pub stores: Vec<Store>,
    /// Every region, in key order.
    pub regions: Vec<Region>,
    /// Scheduling operators, or why they could not be listed.
    pub operators: Operators,
}

/// Read and write rates over the last heartbeat interval of a region's
/// leader (or of a store, summed over the regions it leads), as the
/// coordinator last heard them. JSON field names are stable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlowRates {
    /// Bytes of keys and values read per second (gets and scans).
    pub read_bytes_per_sec: u64,
    /// Keys read per second.
    pub read_keys_per_sec: u64,
    /// Bytes of keys and values written per second (applied writes).
    pub write_bytes_per_sec: u64,
    /// Keys written per second.
    pub write_keys_per_sec: u64,
}

impl FlowRates {
    /// Rates from the counts of one interval of `interval_ms` (all zero
    /// when the interval is empty: nothing measured yet).
    pub fn from_counts(
        bytes_read: u64,
        keys_read: u64,
        bytes_written: u64,
        keys_written: u64,
        interval_ms: u64,
    ) -> Self {
        let per_sec = |n: u64| n.saturating_mul(1000).checked_div(interval_ms).unwrap_or(0);
        FlowRates {
            read_bytes_per_sec: per_sec(bytes_read),
            read_keys_per_sec: per_sec(keys_read),
            write_bytes_per_sec: per_sec(bytes_written),
            write_keys_per_sec: per_sec(keys_written),
        }
    }

    /// From a region as the coordinator reports it.
    pub fn of_region(info: &RegionInfo) -> Self {
        Self::from_counts(
            info.bytes_read,
            info.keys_read,
            info.bytes_written,
            info.keys_written,
            info.interval_ms,
        )
    }

    /// From a store's last heartbeat.
    pub fn of_store(stats: &StoreStats) -> Self {
        Self::from_counts(
            stats.bytes_read,
            stats.keys_read,
            stats.bytes_written,
            stats.keys_written,
            stats.interval_ms,
        )
    }
}

/// One coordinator member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Raft id of the member.
    pub id: u64,
    /// Display name (`coordinator-N`).
    pub name: String,
    /// gRPC address.
    pub address: String,
}

/// One store as the coordinator and the store itself report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Store id.
    pub id: u64,
    /// gRPC address.
    pub address: String,
    /// HTTP status address.
    pub status_address: String,
    /// Live state from the coordinator leader.
    pub state: StoreState,
    /// Size of the filesystem holding the store's data (0 = unknown).
    pub capacity_bytes: u64,
    /// Free bytes on it.
    pub available_bytes: u64,
    /// Bytes the store's RocksDB files take.
    pub used_bytes: u64,
    /// Region replicas, from the last store heartbeat.
    pub region_count: u64,
    /// Region leaders, from the last store heartbeat.
    pub leader_count: u64,
    /// Unix ms of the last heartbeat (0 = none since the leader took over).
    pub last_heartbeat_ms: u64,
    /// Bytes and keys its leaders read and wrote per second, from its last
    /// heartbeat.
    pub flow: FlowRates,
    /// Read and write requests served since the node started, when its
    /// `/metrics` answered.
    pub requests: Option<RequestTotals>,
    /// Why the store's Admin API did not answer, when it did not.
    pub admin_error: Option<String>,
}

/// One replica of a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Peer id.
    pub id: u64,
    /// Store hosting it.
    pub store_id: u64,
    /// Voter or learner.
    pub role: PeerRole,
    /// Highest log index the leader knows this peer holds (leader's
    /// progress; the leader itself counts its last index).
    pub matched: Option<u64>,
    /// The leader's replication state for it: `Probe`, `Replicate` or
    /// `Snapshot`.
    pub progress_state: Option<String>,
    /// Commit index on the peer's own store.
    pub commit_index: Option<u64>,
    /// Applied index on the peer's own store.
    pub applied_index: Option<u64>,
    /// Client sessions its region's session table holds on its own store.
    pub sessions: Option<u64>,
    /// The leader reports it as catching up (behind the truncated log, or
    /// not answering yet).
    pub pending: bool,
    /// The coordinator reports it as down.
    pub down: bool,
}

impl Peer {
    /// Whether the leader is sending, or must send, it a snapshot.
    pub fn needs_snapshot(&self) -> bool {
        self.progress_state.as_deref() == Some("Snapshot")
    }
}

/// One region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Region id.
    pub id: u64,
    /// First key (inclusive; empty = start of the key space).
    pub start_key: Vec<u8>,
    /// End key (exclusive; empty = end of the key space).
    pub end_key: Vec<u8>,
    /// Epoch version (splits and merges).
    pub version: u64,
    /// Epoch conf_ver (membership changes).
    pub conf_ver: u64,
    /// Replicas.
    pub peers: Vec<Peer>,
    /// Leader's peer id (0 = unknown).
    pub leader_peer_id: u64,
    /// Leader's store id (0 = unknown).
    pub leader_store_id: u64,
    /// Keys, as the leader last counted them.
    pub approximate_keys: u64,
    /// Bytes of keys and values, as the leader last counted them.
    pub approximate_size_bytes: u64,
    /// The leader's last log index, when its store answered.
    pub leader_last_index: Option<u64>,
    /// The leader's commit index, when its store answered.
    pub leader_commit_index: Option<u64>,
    /// Bytes and keys its leader read and wrote per second, from its last
    /// heartbeat.
    pub flow: FlowRates,
}

impl Region {
    /// How many log entries `peer` is behind the leader: by the leader's
    /// progress when known, else by the peer's own applied index against
    /// the leader's commit index. `None` when neither side answered.
    pub fn lag(&self, peer: &Peer) -> Option<u64> {
        if peer.id == self.leader_peer_id {
            return Some(0);
        }
        if let (Some(last), Some(m)) = (self.leader_last_index, peer.matched) {
            return Some(last.saturating_sub(m));
        }
        match (self.leader_commit_index, peer.applied_index) {
            (Some(c), Some(a)) => Some(c.saturating_sub(a)),
            _ => None,
        }
    }

    /// Whether `peer` is behind by more than `threshold` entries or needs a
    /// snapshot.
    pub fn is_lagging(&self, peer: &Peer, threshold: u64) -> bool {
        peer.needs_snapshot() || self.lag(peer).is_some_and(|l| l > threshold)
    }

    /// The largest lag among the peers (0 when none is known).
    pub fn max_lag(&self) -> u64 {
        self.peers
            .iter()
            .filter_map(|p| self.lag(p))
            .max()
            .unwrap_or(0)
    }

    /// Voters among the peers.
    pub fn voters(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| p.role == PeerRole::Voter)
            .count()
    }
}

/// The coordinator's scheduling operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Operators {
    /// Not asked for.
    #[default]
    NotAsked,
    /// The coordinator could not list them; the text says why (today:
    /// `GetOperators` answers UNIMPLEMENTED).
    Unavailable(String),
    /// The operators, running and finished.
    Listed(Vec<Operator>),
}

/// One scheduling operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Operator id.
    pub id: u64,
    /// Region it works on.
    pub region_id: u64,
    /// What it does (e.g. `add-replica`).
    pub kind: String,
    /// Its steps, described.
    pub steps: Vec<String>,
    /// Index of the step in progress.
    pub current_step: u32,
    /// `Running`, `Succeeded`, `Cancelled`, `TimedOut` or `Failed`.
    pub state: String,
    /// Who created it (a checker, a scheduler, an operator).
    pub source: String,
    /// Unix ms of creation.
    pub created_at_ms: u64,
    /// Unix ms it finished (0 = running).
    pub finished_at_ms: u64,
    /// Sum of the steps' timeouts, ms (0 = none set).
    pub timeout_ms: u64,
    /// Result or error text.
    pub message: String,
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
    let members: Vec<Member> = members
        .members
        .into_iter()
        .map(|m| Member {
            id: m.id,
            name: m.name,
            address: m.address,
        })
        .collect();
    let store_infos = client.get_all_stores().await?;
    let region_infos = client.scan_regions(b"", b"", 0).await?;
    let operators = if scope.operators {
        operators(client).await
    } else {
        Operators::NotAsked
    };

    let mut stores: Vec<Store> = store_infos
        .into_iter()
        .filter_map(|info| {
            let s = info.store?;
            let stats = info.stats.unwrap_or_default();
            Some(Store {
                id: s.id,
                state: s.state(),
                address: s.address,
                status_address: s.status_address,
                capacity_bytes: stats.capacity_bytes,
                available_bytes: stats.available_bytes,
                used_bytes: stats.used_bytes,
                region_count: stats.region_count,
                leader_count: stats.leader_count,
                last_heartbeat_ms: s.last_heartbeat_ms,
                flow: FlowRates::of_store(&stats),
                requests: None,
                admin_error: None,
            })
        })
        .collect();
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

/// A region from the coordinator's record of it and the stores' status of
/// its replicas, keyed by (region id, store id).
fn assemble_region(
    info: RegionInfo,
    replica_status: &HashMap<(u64, u64), RegionStatus>,
) -> Option<Region> {
    let flow = FlowRates::of_region(&info);
    let region = info.region?;
    let epoch = region.epoch.unwrap_or_default();
    let leader = info.leader.filter(|l| l.id != 0);
    let leader_status = leader
        .as_ref()
        .and_then(|l| replica_status.get(&(region.id, l.store_id)))
        .filter(|s| s.is_leader);
    let peers = region
        .peers
        .iter()
        .map(|p| {
            let own = replica_status.get(&(region.id, p.store_id));
            let progress =
                leader_status.and_then(|ls| ls.progress.iter().find(|pr| pr.peer_id == p.id));
            let is_leader = leader.as_ref().is_some_and(|l| l.id == p.id);
            Peer {
                id: p.id,
                store_id: p.store_id,
                role: p.role(),
                matched: if is_leader {
                    leader_status.map(|s| s.last_index)
                } else {
                    progress.map(|pr| pr.matched)
                },
                progress_state: progress.map(|pr| pr.state.clone()),
                commit_index: own.map(|s| s.commit_index),
                applied_index: own.map(|s| s.applied_index),
                sessions: own.map(|s| s.sessions),
                pending: info.pending_peers.iter().any(|q| q.id == p.id)
                    || leader_status.is_some_and(|s| s.pending_peers.iter().any(|q| q.id == p.id)),
                down: info.down_peers.iter().any(|q| q.id == p.id),
            }
        })
        .collect();
    Some(Region {
        id: region.id,
        start_key: region.start_key,
        end_key: region.end_key,
        version: epoch.version,
        conf_ver: epoch.conf_ver,
        peers,
        leader_peer_id: leader.as_ref().map(|l| l.id).unwrap_or(0),
        leader_store_id: leader.as_ref().map(|l| l.store_id).unwrap_or(0),
        approximate_keys: info.approximate_keys,
        approximate_size_bytes: info.approximate_size_bytes,
        leader_last_index: leader_status.map(|s| s.last_index),
        leader_commit_index: leader_status.map(|s| s.commit_index),
        flow,
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

/// `GetOperatorsResponse` seen through the client's header handling.
struct OperatorsAnswer(GetOperatorsResponse);

impl HasHeader for OperatorsAnswer {
    fn header(&self) -> Option<&ResponseHeader> {
        self.0.header.as_ref()
    }
}

async fn operators(client: &CoordinatorClient) -> Operators {
    let answer = client
        .call(|mut c, t| async move {
            let mut req = tonic::Request::new(GetOperatorsRequest {
                header: None,
                region_id: 0,
                include_history: true,
            });
            req.set_timeout(t);
            c.get_operators(req).await.map(|r| r.map(OperatorsAnswer))
        })
        .await;
    match answer {
        Err(e) => Operators::Unavailable(crate::describe(&anyhow::Error::new(e))),
        Ok(OperatorsAnswer(resp)) => Operators::Listed(
            resp.operators
                .into_iter()
                .map(|o| Operator {
                    id: o.id,
                    region_id: o.region_id,
                    kind: o.kind.clone(),
                    steps: o
                        .steps
                        .iter()
                        .map(|s| describe_step(s.step.as_ref()))
                        .collect(),
                    current_step: o.current_step,
                    state: o.state().as_str_name().to_string(),
                    source: o.source.clone(),
                    created_at_ms: o.created_at_ms,
                    finished_at_ms: o.finished_at_ms,
                    timeout_ms: o.steps.iter().map(|s| s.timeout_ms).sum(),
                    message: o.message,
                })
                .collect(),
        ),
    }
}

fn describe_step(step: Option<&Step>) -> String {
    match step {
        Some(Step::ChangePeer(c)) => {
            let peer = c.peer.unwrap_or_default();
            let verb = match c.kind() {
                change_peer::Kind::AddVoter => "add voter",
                change_peer::Kind::AddLearner => "add learner",
                change_peer::Kind::Remove => "remove peer",
            };
            format!("{verb} {}@{}", peer.id, peer.store_id)
        }
        Some(Step::TransferLeader(t)) => format!(
            "transfer leader to store {}",
            t.peer.map(|p| p.store_id).unwrap_or(0)
        ),
        Some(Step::SplitRegion(s)) if s.half => "split in half".to_string(),
        Some(Step::SplitRegion(s)) => {
            format!("split at {}", crate::output::key(&s.split_key, "\"\""))
        }
        Some(Step::Merge(m)) => format!(
            "merge into region {}",
            m.target.as_ref().map(|t| t.id).unwrap_or(0)
        ),
        None => "no step".to_string(),
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A fixed cluster for the TUI and doctor tests: three stores (store 3
    //! Down), two regions, region 2's peer on store 3 lagging 500 entries.

    use super::*;

    /// A peer that answered with the given indexes.
    pub fn peer(id: u64, store_id: u64, matched: u64, applied: u64) -> Peer {
        Peer {
            id,
            store_id,
            role: PeerRole::Voter,
            matched: Some(matched),
            progress_state: Some("Replicate".into()),
            commit_index: Some(applied),
            applied_index: Some(applied),
            sessions: None,
            pending: false,
            down: false,
        }
    }

    /// A store in `state`.
    pub fn store(id: u64, state: StoreState) -> Store {
        Store {
            id,
            address: format!("127.0.0.1:2072{id}"),
            status_address: format!("127.0.0.1:2073{id}"),
            state,
            capacity_bytes: 100 << 30,
            available_bytes: 60 << 30,
            used_bytes: 1 << 20,
            region_count: 2,
            leader_count: 1,
            last_heartbeat_ms: 1_000,
            flow: FlowRates {
                read_bytes_per_sec: 2048,
                read_keys_per_sec: 20,
                write_bytes_per_sec: 1024,
                write_keys_per_sec: 10,
            },
            requests: Some(RequestTotals {
                reads: 100,
                writes: 50,
            }),
            admin_error: None,
        }
    }

    /// The fixed cluster.
    pub fn survey() -> Survey {
        let mut down = store(3, StoreState::Down);
        down.admin_error = Some("Unavailable: connection refused".into());
        down.requests = None;
        Survey {
            taken_at_ms: 1_700_000_000_000,
            cluster_id: 7_001,
            members: vec![
                Member {
                    id: 1,
                    name: "coordinator-1".into(),
                    address: "127.0.0.1:23700".into(),
                },
                Member {
                    id: 2,
                    name: "coordinator-2".into(),
                    address: "127.0.0.1:23701".into(),
                },
            ],
            leader_member_id: Some(2),
            stores: vec![store(1, StoreState::Up), store(2, StoreState::Up), down],
            regions: vec![
                Region {
                    id: 1,
                    start_key: Vec::new(),
                    end_key: b"m".to_vec(),
                    version: 2,
                    conf_ver: 3,
                    peers: vec![peer(11, 1, 40, 40), peer(12, 2, 40, 40)],
                    leader_peer_id: 11,
                    leader_store_id: 1,
                    approximate_keys: 1_000,
                    approximate_size_bytes: 64 << 10,
                    leader_last_index: Some(40),
                    leader_commit_index: Some(40),
                    flow: FlowRates {
                        read_bytes_per_sec: 0,
                        read_keys_per_sec: 0,
                        write_bytes_per_sec: 3 << 20,
                        write_keys_per_sec: 300,
                    },
                },
                Region {
                    id: 2,
                    start_key: b"m".to_vec(),
                    end_key: Vec::new(),
                    version: 2,
                    conf_ver: 3,
                    peers: vec![
                        peer(21, 1, 900, 900),
                        peer(22, 2, 900, 900),
                        Peer {
                            commit_index: None,
                            applied_index: None,
                            sessions: None,
                            ..peer(23, 3, 400, 400)
                        },
                    ],
                    leader_peer_id: 22,
                    leader_store_id: 2,
                    approximate_keys: 5,
                    approximate_size_bytes: 100,
                    leader_last_index: Some(900),
                    leader_commit_index: Some(900),
                    flow: FlowRates::default(),
                },
            ],
            operators: Operators::Unavailable(
                "Unimplemented: GetOperators is not implemented".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;

    #[test]
    fn flow_rates_are_counts_over_the_interval() {
        let r = FlowRates::from_counts(4000, 10, 1000, 3, 2000);
        assert_eq!(
            r,
            FlowRates {
                read_bytes_per_sec: 2000,
                read_keys_per_sec: 5,
                write_bytes_per_sec: 500,
                write_keys_per_sec: 1,
            }
        );
        assert_eq!(
            FlowRates::from_counts(4000, 10, 1000, 3, 0),
            FlowRates::default(),
            "an empty interval measured nothing"
        );
        assert_eq!(
            FlowRates::from_counts(u64::MAX, 0, 0, 0, 1000).read_bytes_per_sec,
            u64::MAX / 1000,
            "saturates instead of overflowing"
        );
    }

    #[test]
    fn lag_uses_the_leaders_progress_then_applied_indexes() {
        let s = survey();
        let r = &s.regions[1];
        assert_eq!(r.lag(&r.peers[1]), Some(0), "the leader never lags");
        assert_eq!(r.lag(&r.peers[2]), Some(500));
        assert!(r.is_lagging(&r.peers[2], 100));
        assert!(!r.is_lagging(&r.peers[2], 500));
        assert_eq!(r.max_lag(), 500);

        let mut no_progress = r.clone();
        no_progress.peers[0].matched = None;
        no_progress.peers[0].applied_index = Some(850);
        assert_eq!(no_progress.lag(&no_progress.peers[0]), Some(50));
        no_progress.peers[0].applied_index = None;
        assert_eq!(no_progress.lag(&no_progress.peers[0]), None);
    }

    #[test]
    fn a_peer_in_snapshot_state_counts_as_lagging() {
        let s = survey();
        let r = &s.regions[0];
        let mut p = r.peers[1].clone();
        assert!(!r.is_lagging(&p, 100));
        p.progress_state = Some("Snapshot".into());
        assert!(r.is_lagging(&p, 100));
    }

    #[test]
    fn steps_are_described_in_words() {
        use nokv_proto::coordinatorpb::{SplitRegion, TransferLeader};
        use nokv_proto::metapb::Peer as P;
        assert_eq!(
            describe_step(Some(&Step::TransferLeader(TransferLeader {
                peer: Some(P {
                    id: 5,
                    store_id: 2,
                    role: 0
                })
            }))),
            "transfer leader to store 2"
        );
        assert_eq!(
            describe_step(Some(&Step::SplitRegion(SplitRegion {
                split_key: b"k1".to_vec(),
                half: false
            }))),
            "split at k1"
        );
        assert_eq!(describe_step(None), "no step");
    }
}
