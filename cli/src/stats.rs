//! `nokv stats`: totals for the whole cluster from the coordinator, or one
//! store's own statistics from its Admin API (`--store`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;
use nokv_client::CoordinatorClient;
use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::StoreStatsRequest;
use nokv_proto::metapb::{PeerRole, StoreState};
use serde::Serialize;

use crate::output::{self, Format};
use crate::survey::{self, Scope, Survey};

/// Cluster-wide totals.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ClusterStats {
    /// Cluster id (0 = not bootstrapped).
    pub cluster_id: u64,
    /// Coordinator members.
    pub coordinator_members: usize,
    /// Name of the leading member ("" = none).
    pub coordinator_leader: String,
    /// Registered stores, tombstones included.
    pub stores: usize,
    /// Stores by state: Up, Disconnected, Down, Offline, Tombstone.
    pub stores_by_state: BTreeMap<String, usize>,
    /// Regions.
    pub regions: usize,
    /// Regions the coordinator knows no leader for.
    pub regions_without_leader: usize,
    /// Region replicas.
    pub peers: usize,
    /// Replicas that are learners.
    pub learners: usize,
    /// Sum of the stores' disk capacity (last heartbeats).
    pub capacity_bytes: u64,
    /// Sum of their free disk bytes.
    pub available_bytes: u64,
    /// Sum of the bytes their RocksDB files take.
    pub used_bytes: u64,
    /// Sum of the regions' approximate keys.
    pub approximate_keys: u64,
    /// Sum of the regions' approximate sizes.
    pub approximate_size_bytes: u64,
}

/// Totals of a survey.
pub fn cluster_stats(s: &Survey) -> ClusterStats {
    let mut by_state: BTreeMap<String, usize> = [
        StoreState::Up,
        StoreState::Disconnected,
        StoreState::Down,
        StoreState::Offline,
        StoreState::Tombstone,
    ]
    .iter()
    .map(|st| (st.as_str_name().to_string(), 0))
    .collect();
    for st in &s.stores {
        *by_state
            .entry(st.state.as_str_name().to_string())
            .or_default() += 1;
    }
    let live = || {
        s.stores
            .iter()
            .filter(|st| st.state != StoreState::Tombstone)
    };
    ClusterStats {
        cluster_id: s.cluster_id,
        coordinator_members: s.members.len(),
        coordinator_leader: s
            .leader_member_id
            .and_then(|id| s.members.iter().find(|m| m.id == id))
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        stores: s.stores.len(),
        stores_by_state: by_state,
        regions: s.regions.len(),
        regions_without_leader: s.regions.iter().filter(|r| r.leader_store_id == 0).count(),
        peers: s.regions.iter().map(|r| r.peers.len()).sum(),
        learners: s
            .regions
            .iter()
            .flat_map(|r| &r.peers)
            .filter(|p| p.role == PeerRole::Learner)
            .count(),
        capacity_bytes: live().map(|st| st.capacity_bytes).sum(),
        available_bytes: live().map(|st| st.available_bytes).sum(),
        used_bytes: live().map(|st| st.used_bytes).sum(),
        approximate_keys: s.regions.iter().map(|r| r.approximate_keys).sum(),
        approximate_size_bytes: s.regions.iter().map(|r| r.approximate_size_bytes).sum(),
    }
}

/// One store's statistics, as its Admin API reports them.
#[derive(Debug, Serialize)]
pub struct StoreStats {
    /// Store id.
    pub store_id: u64,
    /// gRPC address.
    pub address: String,
    /// State from the coordinator.
    pub state: String,
    /// Region replicas on the store.
    pub region_count: u64,
    /// Of which it leads.
    pub leader_count: u64,
    /// Disk capacity of the data directory's filesystem.
    pub capacity_bytes: u64,
    /// Bytes of SST files, all column families.
    pub used_bytes: u64,
    /// Free disk bytes.
    pub available_bytes: u64,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// SST bytes per column family.
    pub column_family_bytes: BTreeMap<String, u64>,
}

/// `nokv stats [--store <id>]`.
pub async fn run(
    client: &CoordinatorClient,
    store: Option<u64>,
    format: Format,
) -> anyhow::Result<()> {
    match store {
        None => {
            let s = survey::collect(
                client,
                Scope {
                    region_status: false,
                    metrics: false,
                    operators: false,
                },
            )
            .await?;
            let stats = cluster_stats(&s);
            output::emit(format, &stats, || cluster_table(&stats))
        }
        Some(id) => {
            let stats = store_stats(client, id).await?;
            output::emit(format, &stats, || store_table(&stats))
        }
    }
}

async fn store_stats(client: &CoordinatorClient, id: u64) -> anyhow::Result<StoreStats> {
    let store = client
        .get_store(id)
        .await?
        .store
        .ok_or_else(|| anyhow!("store {id} unknown"))?;
    let ch = client.channel_to(&store.address, Duration::from_secs(2))?;
    let mut req = tonic::Request::new(StoreStatsRequest {});
    req.set_timeout(client.timeout());
    let r = AdminClient::new(ch).store_stats(req).await?.into_inner();
    Ok(StoreStats {
        store_id: r.store_id,
        state: store.state().as_str_name().to_string(),
        address: store.address,
        region_count: r.region_count,
        leader_count: r.leader_count,
        capacity_bytes: r.capacity_bytes,
        used_bytes: r.used_bytes,
        available_bytes: r.available_bytes,
        uptime_seconds: r.uptime_ms / 1000,
        column_family_bytes: r.column_family_bytes.into_iter().collect(),
    })
}

fn cluster_table(s: &ClusterStats) -> comfy_table::Table {
    let mut t = output::table(&["STAT", "VALUE"]);
    let leader = if s.coordinator_leader.is_empty() {
        "none".to_string()
    } else {
        s.coordinator_leader.clone()
    };
    let states = s
        .stores_by_state
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = [
        ("cluster id", s.cluster_id.to_string()),
        (
            "coordinators",
            format!("{} (leader {leader})", s.coordinator_members),
        ),
        ("stores", format!("{} ({states})", s.stores)),
        ("regions", s.regions.to_string()),
        (
            "regions without leader",
            s.regions_without_leader.to_string(),
        ),
        ("peers", format!("{} ({} learners)", s.peers, s.learners)),
        ("capacity", output::bytes(s.capacity_bytes)),
        ("available", output::bytes(s.available_bytes)),
        ("used (sst files)", output::bytes(s.used_bytes)),
        ("approximate keys", s.approximate_keys.to_string()),
        ("approximate size", output::bytes(s.approximate_size_bytes)),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

fn store_table(s: &StoreStats) -> comfy_table::Table {
    let mut t = output::table(&["STAT", "VALUE"]);
    let mut rows = vec![
        (
            "store".to_string(),
            format!("{} at {}", s.store_id, s.address),
        ),
        ("state".to_string(), s.state.clone()),
        ("regions".to_string(), s.region_count.to_string()),
        ("leaders".to_string(), s.leader_count.to_string()),
        ("capacity".to_string(), output::bytes(s.capacity_bytes)),
        ("available".to_string(), output::bytes(s.available_bytes)),
        ("used (sst files)".to_string(), output::bytes(s.used_bytes)),
        ("uptime".to_string(), format!("{} s", s.uptime_seconds)),
    ];
    for (cf, b) in &s.column_family_bytes {
        rows.push((format!("sst bytes, cf {cf}"), output::bytes(*b)));
    }
    for (k, v) in rows {
        t.add_row(vec![k, v]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::fixture;

    #[test]
    fn cluster_stats_total_the_survey() {
        let mut s = fixture::survey();
        s.regions[0].peers[1].role = PeerRole::Learner;
        s.regions[1].leader_store_id = 0;
        let c = cluster_stats(&s);
        assert_eq!(c.cluster_id, 7001);
        assert_eq!(c.coordinator_members, 2);
        assert_eq!(c.coordinator_leader, "coordinator-2");
        assert_eq!(c.stores, 3);
        assert_eq!(c.stores_by_state["Up"], 2);
        assert_eq!(c.stores_by_state["Down"], 1);
        assert_eq!(c.stores_by_state["Tombstone"], 0, "every state is listed");
        assert_eq!((c.regions, c.regions_without_leader), (2, 1));
        assert_eq!((c.peers, c.learners), (5, 1));
        assert_eq!(c.capacity_bytes, 300 << 30);
        assert_eq!(c.approximate_keys, 1_005);
        let table = cluster_table(&c).to_string();
        assert!(table.contains("3 (1 Down, 2 Up)"), "{table}");
        assert!(table.contains("2 (leader coordinator-2)"), "{table}");
    }

    #[test]
    fn tombstones_do_not_add_capacity() {
        let mut s = fixture::survey();
        s.stores[2].state = StoreState::Tombstone;
        assert_eq!(cluster_stats(&s).capacity_bytes, 200 << 30);
    }
}
