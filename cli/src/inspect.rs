//! `nokv stores` and `nokv regions`: the coordinator's view of the cluster.

use nokv_client::CoordinatorClient;
use nokv_proto::metapb::{Peer, PeerRole, Region};
use serde::Serialize;

use crate::output::{self, Format};

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
    /// Keys in the region, as last counted by its leader.
    pub approximate_keys: u64,
    /// Bytes in the region, as last counted by its leader.
    pub approximate_size_bytes: u64,
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
        approximate_keys: 0,
        approximate_size_bytes: 0,
    }
}

/// Prints region rows as a table, JSON or YAML.
pub fn emit_regions(rows: &[RegionRow], format: Format) -> anyhow::Result<()> {
    output::emit(format, &rows, || {
        let mut t = output::table(&[
            "ID",
            "START",
            "END",
            "EPOCH",
            "PEERS (id@store)",
            "LEADER STORE",
            "PENDING",
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
            ]);
        }
        t
    })
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
            Some(row)
        })
        .collect();
    emit_regions(&rows, format)
}
