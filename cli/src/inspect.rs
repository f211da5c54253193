//! `nokv stores`, `nokv regions` and `nokv region`: the coordinator's view
//! of the cluster, and for one region its peers' raft progress from the
//! stores themselves.

use nokv_client::CoordinatorClient;
use nokv_proto::metapb::{Peer, PeerRole, Region};
use serde::Serialize;

use crate::output::{self, Format};
use crate::survey::FlowRates;

/// A store as printed.
#[derive(Debug, Serialize)]
pub struct StoreRow {
    /// Store id.
    pub id: u64,
    /// gRPC address.
    pub address: String,
    /// Status address.
    pub status_address: String,
    /// Up, Disconnected, Down, Offline or Tombstone.
    pub state: String,
    /// Region replicas.
    pub region_count: u64,
    /// Region leaders.
    pub leader_count: u64,
    /// Disk capacity in bytes.
    pub capacity_bytes: u64,
    /// Free disk bytes.
    pub available_bytes: u64,
    /// Unix ms of the last heartbeat (0 = unknown).
    pub last_heartbeat_ms: u64,
    /// Read and write rates of the regions it leads, from its last
    /// heartbeat: `read_bytes_per_sec`, `read_keys_per_sec`,
    /// `write_bytes_per_sec`, `write_keys_per_sec`.
    #[serde(flatten)]
    pub flow: FlowRates,
}

/// Prints every store.
pub async fn stores(client: &CoordinatorClient, format: Format) -> anyhow::Result<()> {
    let stores = client.get_all_stores().await?;
    let rows: Vec<StoreRow> = stores
        .into_iter()
        .filter_map(|info| {
            let s = info.store?;
            let stats = info.stats.unwrap_or_default();
            Some(StoreRow {
                id: s.id,
                state: s.state().as_str_name().to_string(),
                address: s.address,
                status_address: s.status_address,
                region_count: stats.region_count,
                leader_count: stats.leader_count,
                capacity_bytes: stats.capacity_bytes,
                available_bytes: stats.available_bytes,
                last_heartbeat_ms: s.last_heartbeat_ms,
                flow: FlowRates::of_store(&stats),
            })
        })
        .collect();
    output::emit(format, &rows, || {
        let mut t = output::table(&[
            "ID",
            "ADDRESS",
            "STATE",
            "REGIONS",
            "LEADERS",
            "CAPACITY",
            "AVAILABLE",
            "READ/s",
            "WRITE/s",
        ]);
        for r in &rows {
            t.add_row(vec![
                r.id.to_string(),
                r.address.clone(),
                r.state.clone(),
                r.region_count.to_string(),
                r.leader_count.to_string(),
                output::bytes(r.capacity_bytes),
                output::bytes(r.available_bytes),
                output::bytes(r.flow.read_bytes_per_sec),
                output::bytes(r.flow.write_bytes_per_sec),
            ]);
        }
        t
    })
}

/// A peer as printed.
#[derive(Debug, Serialize)]
pub struct PeerRow {
    /// Peer id.
    pub id: u64,
    /// Store hosting it.
    pub store_id: u64,
    /// voter or learner.
    pub role: String,
}

/// A region as printed.
#[derive(Debug, Serialize)]
pub struct RegionRow {
    /// Region id.
    pub id: u64,
    /// Start key, escaped for display.
    pub start_key: String,
    /// End key, escaped for display ("" = end of key space).
    pub end_key: String,
    /// Start key in hex.
    pub start_key_hex: String,
    /// End key in hex.
    pub end_key_hex: String,
    /// Epoch version (splits and merges).
    pub version: u64,
    /// Epoch conf_ver (membership changes).
    pub conf_ver: u64,
    /// Peers.
    pub peers: Vec<PeerRow>,
    /// Leader's store id (0 = unknown).
    pub leader_store_id: u64,
    /// Leader's peer id (0 = unknown).
    pub leader_peer_id: u64,
    /// Peers the leader reports as catching up.
    pub pending_peers: Vec<u64>,
    /// Peers the leader reports as down (nothing heard from their store
    /// for the node's `max_peer_down_secs`).
    pub down_peers: Vec<u64>,
    /// Keys in the region, as last counted by its leader.
    pub approximate_keys: u64,
    /// Bytes in the region, as last counted by its leader.
    pub approximate_size_bytes: u64,
    /// Read and write rates of its leader over its last heartbeat
    /// interval: `read_bytes_per_sec`, `read_keys_per_sec`,
    /// `write_bytes_per_sec`, `write_keys_per_sec`.
    #[serde(flatten)]
    pub flow: FlowRates,
}

fn peer_row(p: &Peer) -> PeerRow {
    PeerRow {
        id: p.id,
        store_id: p.store_id,
        role: match p.role() {
            PeerRole::Learner => "learner",
            _ => "voter",
        }
        .into(),
    }
}

/// Builds the printed form of a region.
pub fn region_row(r: &Region, leader: Option<&Peer>, pending: &[Peer]) -> RegionRow {
    let epoch = r.epoch.unwrap_or_default();
    RegionRow {
        id: r.id,
        start_key: output::key(&r.start_key, ""),
        end_key: output::key(&r.end_key, ""),
        start_key_hex: output::hex(&r.start_key),
        end_key_hex: output::hex(&r.end_key),
        version: epoch.version,
        conf_ver: epoch.conf_ver,
        peers: r.peers.iter().map(peer_row).collect(),
        leader_store_id: leader.map(|l| l.store_id).unwrap_or(0),
        leader_peer_id: leader.map(|l| l.id).unwrap_or(0),
        pending_peers: pending.iter().map(|p| p.id).collect(),
        down_peers: Vec::new(),
        approximate_keys: 0,
        approximate_size_bytes: 0,
        flow: FlowRates::default(),
    }
}

/// Prints region rows as a table, JSON or YAML.
pub fn emit_regions(rows: &[RegionRow], format: Format) -> anyhow::Result<()> {
    output::emit(format, &rows, || region_table(rows))
}

/// The human table of region rows.
fn region_table(rows: &[RegionRow]) -> comfy_table::Table {
    let mut t = output::table(&[
        "ID",
        "START",
        "END",
        "EPOCH",
        "PEERS (id@store)",
        "LEADER STORE",
        "PENDING",
        "READ/s",
        "WRITE/s",
    ]);
    for r in rows {
        let peers = r
            .peers
            .iter()
            .map(|p| {
                let mark = if p.id == r.leader_peer_id { "*" } else { "" };
                let learner = if p.role == "learner" {
                    " (learner)"
                } else {
                    ""
                };
                format!("{mark}{}@{}{learner}", p.id, p.store_id)
            })
            .collect::<Vec<_>>()
            .join(", ");
        t.add_row(vec![
            r.id.to_string(),
            if r.start_key.is_empty() {
                "-inf".into()
            } else {
                r.start_key.clone()
            },
            if r.end_key.is_empty() {
                "+inf".into()
            } else {
                r.end_key.clone()
            },
            format!("v{}/c{}", r.version, r.conf_ver),
            peers,
            if r.leader_store_id == 0 {
                "-".into()
            } else {
                r.leader_store_id.to_string()
            },
            r.pending_peers.len().to_string(),
            output::bytes(r.flow.read_bytes_per_sec),
            output::bytes(r.flow.write_bytes_per_sec),
        ]);
    }
    t
}

/// Prints the regions overlapping `[start, end)`.
pub async fn regions(
    client: &CoordinatorClient,
    start: &[u8],
    end: &[u8],
    limit: u32,
    format: Format,
) -> anyhow::Result<()> {
    let regions = client.scan_regions(start, end, limit).await?;
    let rows: Vec<RegionRow> = regions
        .iter()
        .filter_map(|info| {
            let mut row = region_row(
                info.region.as_ref()?,
                info.leader.as_ref(),
                &info.pending_peers,
            );
            row.approximate_keys = info.approximate_keys;
            row.approximate_size_bytes = info.approximate_size_bytes;
            row.down_peers = info.down_peers.iter().map(|p| p.id).collect();
            row.flow = FlowRates::of_region(info);
            Some(row)
        })
        .collect();
    emit_regions(&rows, format)
}

/// A peer's raft progress as `nokv region` prints it. Indexes are `null`
/// when the store holding the peer (or the leader's, for `matched`) did not
/// answer.
#[derive(Debug, Serialize)]
pub struct PeerProgressRow {
    /// Peer id.
    pub peer_id: u64,
    /// Store hosting it.
    pub store_id: u64,
    /// voter or learner.
    pub role: String,
    /// Whether the coordinator names it the leader.
    pub is_leader: bool,
    /// Highest index the leader knows it holds (the leader: its last index).
    pub matched: Option<u64>,
    /// Commit index on its own store.
    pub commit_index: Option<u64>,
    /// Applied index on its own store.
    pub applied_index: Option<u64>,
    /// Client sessions its session table holds (exactly-once writes).
    pub sessions: Option<u64>,
    /// Entries behind the leader.
    pub lag: Option<u64>,
    /// The leader's replication state for it: probe, replicate, snapshot.
    pub replication_state: Option<String>,
    /// The leader or coordinator reports it catching up.
    pub pending: bool,
    /// Why its store did not answer, if it did not.
    pub error: Option<String>,
}

/// `nokv region`: a region row plus its peers' progress.
#[derive(Debug, Serialize)]
pub struct RegionDetail {
    /// The region, as `nokv regions` prints it.
    #[serde(flatten)]
    pub region: RegionRow,
    /// One entry per peer, in the region's peer order.
    pub progress: Vec<PeerProgressRow>,
}

/// Which region `nokv region` shows.
#[derive(Debug, Clone)]
pub enum RegionSelector {
    /// By id.
    Id(u64),
    /// The region holding this key.
    Key(Vec<u8>),
}

/// `nokv region <id>` / `nokv region --key <key>`.
pub async fn region(
    client: &CoordinatorClient,
    which: RegionSelector,
    format: Format,
) -> anyhow::Result<()> {
    let id = match which {
        RegionSelector::Id(id) => id,
        RegionSelector::Key(k) => client
            .get_region(&k)
            .await?
            .region
            .map(|r| r.id)
            .ok_or_else(|| anyhow::anyhow!("no region holds key {}", output::key(&k, "\"\"")))?,
    };
    let (r, errors) = crate::survey::region(client, id).await?;
    let detail = region_detail(&r, &errors);
    output::emit_tables(format, &detail, || {
        vec![
            region_table(std::slice::from_ref(&detail.region)),
            progress_table(&detail.progress),
        ]
    })
}

fn region_detail(
    r: &crate::survey::Region,
    errors: &std::collections::BTreeMap<u64, String>,
) -> RegionDetail {
    let peer = |p: &crate::survey::Peer| Peer {
        id: p.id,
        store_id: p.store_id,
        role: p.role as i32,
    };
    let proto = Region {
        id: r.id,
        start_key: r.start_key.clone(),
        end_key: r.end_key.clone(),
        epoch: Some(nokv_proto::metapb::RegionEpoch {
            conf_ver: r.conf_ver,
            version: r.version,
        }),
        peers: r.peers.iter().map(peer).collect(),
    };
    let leader = r.peers.iter().find(|p| p.id == r.leader_peer_id).map(peer);
    let pending: Vec<Peer> = r.peers.iter().filter(|p| p.pending).map(peer).collect();
    let mut row = region_row(&proto, leader.as_ref(), &pending);
    row.down_peers = r.peers.iter().filter(|p| p.down).map(|p| p.id).collect();
    row.approximate_keys = r.approximate_keys;
    row.approximate_size_bytes = r.approximate_size_bytes;
    row.flow = r.flow;
    let progress = r
        .peers
        .iter()
        .map(|p| PeerProgressRow {
            peer_id: p.id,
            store_id: p.store_id,
            role: peer_row(&peer(p)).role,
            is_leader: p.id == r.leader_peer_id,
            matched: p.matched,
            commit_index: p.commit_index,
            applied_index: p.applied_index,
            sessions: p.sessions,
            lag: r.lag(p),
            replication_state: p.progress_state.as_ref().map(|s| s.to_lowercase()),
            pending: p.pending,
            error: errors.get(&p.store_id).cloned(),
        })
        .collect();
    RegionDetail {
        region: row,
        progress,
    }
}

fn progress_table(rows: &[PeerProgressRow]) -> comfy_table::Table {
    let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
    let mut t = output::table(&[
        "PEER", "STORE", "ROLE", "MATCHED", "COMMIT", "APPLIED", "LAG", "SESSIONS", "STATE",
    ]);
    for p in rows {
        let state = if p.is_leader {
            "leader".to_string()
        } else if let Some(e) = &p.error {
            format!("store not answering: {e}")
        } else {
            let mut s = p.replication_state.clone().unwrap_or_else(|| "?".into());
            if p.pending {
                s.push_str(" (pending)");
            }
            s
        };
        t.add_row(vec![
            p.peer_id.to_string(),
            p.store_id.to_string(),
            p.role.clone(),
            opt(p.matched),
            opt(p.commit_index),
            opt(p.applied_index),
            opt(p.lag),
            opt(p.sessions),
            state,
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::fixture;

    #[test]
    fn region_detail_keeps_the_regions_fields_and_adds_progress() {
        let s = fixture::survey();
        let mut errors = std::collections::BTreeMap::new();
        errors.insert(3, "Unavailable: refused".to_string());
        let d = region_detail(&s.regions[1], &errors);
        let v = serde_json::to_value(&d).expect("json");
        assert_eq!(v["id"], 2);
        assert_eq!(v["start_key"], "m");
        assert_eq!(v["end_key"], "");
        assert_eq!(v["leader_store_id"], 2);
        assert_eq!(v["leader_peer_id"], 22);
        assert_eq!(v["approximate_keys"], 5);
        for f in [
            "read_bytes_per_sec",
            "read_keys_per_sec",
            "write_bytes_per_sec",
            "write_keys_per_sec",
        ] {
            assert_eq!(v[f], 0, "flow rate {f} at the top level");
        }
        let busy = serde_json::to_value(region_detail(&s.regions[0], &errors)).expect("json");
        assert_eq!(busy["write_bytes_per_sec"], 3 << 20);
        assert_eq!(busy["write_keys_per_sec"], 300);
        let p = &v["progress"][2];
        assert_eq!(p["peer_id"], 23);
        assert_eq!(p["matched"], 400);
        assert_eq!(p["applied_index"], serde_json::Value::Null);
        assert_eq!(p["lag"], 500);
        assert_eq!(p["replication_state"], "replicate");
        assert_eq!(p["error"], "Unavailable: refused");
        assert_eq!(v["progress"][1]["is_leader"], true);
        let table = progress_table(&d.progress).to_string();
        assert!(
            table.contains("store not answering: Unavailable: refused"),
            "{table}"
        );
        assert!(table.contains("leader"), "{table}");
    }
}
