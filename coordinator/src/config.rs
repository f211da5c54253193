//! Configuration of one coordinator member. Every key has a default so a
//! single member runs with no file at all.

use std::path::PathBuf;

use nokv_consensus::process::{ProcessConfig, ProcessKeys};
use nokv_consensus::security::SecurityConfig;
use nokv_consensus::{RaftTiming, RaftTimingError};
use serde::{Deserialize, Serialize};

/// One member of the coordinator group as every member knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Raft id of the member (non-zero, unique).
    pub id: u64,
    /// Human name.
    #[serde(default)]
    pub name: String,
    /// gRPC address (clients and raft peers).
    pub address: String,
    /// HTTP status address.
    #[serde(default)]
    pub status_address: String,
}

/// A coordinator member's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// This member's id; must appear in `members`.
    pub id: u64,
    /// Directory for the member's RocksDB.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub listen: String,
    /// HTTP status listen address.
    pub status_listen: String,
    /// Every member of the group, this one included. Empty means a
    /// single-member group made of this member.
    pub members: Vec<MemberConfig>,
    /// Replicas per region the replica checker aims for.
    pub max_replicas: usize,
    /// Length of one raft tick in milliseconds.
    pub tick_interval_ms: u64,
    /// Ticks without a leader before an election.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// IDs reserved per persisted window.
    pub id_window: u64,
    /// How far ahead of the clock the persisted TSO high-water mark runs.
    pub tso_save_window_ms: u64,
    /// A store with no heartbeat for this long is Disconnected.
    pub store_disconnect_ms: u64,
    /// A store with no heartbeat for this long is Down: the replica
    /// checker then replaces its replicas on other stores.
    pub max_store_down_time_ms: u64,
    /// Milliseconds between scheduling rounds on the leader (balance
    /// schedulers, operator timeouts, decommission progress).
    pub schedule_interval_ms: u64,
    /// Default timeout of one operator step, in milliseconds (a step that
    /// does not finish in time ends its operator as TimedOut).
    pub operator_step_timeout_ms: u64,
    /// Most operators the replica checker keeps in flight.
    pub replica_schedule_limit: u32,
    /// Most operators balance-leader keeps in flight.
    pub leader_schedule_limit: u32,
    /// Most operators balance-region keeps in flight.
    pub region_schedule_limit: u32,
    /// Most operators the merge checker keeps in flight (peer alignment
    /// and merges together).
    pub merge_schedule_limit: u32,
    /// The merge checker merges a region only while it holds at most this
    /// many bytes, and only into a neighbour that does too. 0 turns
    /// automatic merge off. Keep it well under the nodes'
    /// `region_split_size_bytes`, or merged regions split again.
    pub max_merge_region_size_bytes: u64,
    /// Like `max_merge_region_size_bytes`, counted in keys. 0: no limit by
    /// keys.
    pub max_merge_region_keys: u64,
    /// A region that split (or was first seen by this leader) less than
    /// this many milliseconds ago is not merged, so a split is not undone
    /// before its halves grow.
    pub split_merge_interval_ms: u64,
    /// Log filter (tracing-subscriber syntax).
    pub log_level: String,
    /// Ticks between raft log GC checks on the leader.
    pub log_gc_interval_ticks: u64,
    /// Compact once this many applied entries are in the log (only up to
    /// what every member has).
    pub log_gc_threshold: u64,
    /// MVCC versions older than this many seconds (and overwritten since)
    /// may be garbage collected: the leader keeps the GC safe point at now
    /// minus this. Transactions running longer than this may fail their
    /// reads. 0 stops the automatic advance (only `UpdateGcSafePoint`
    /// moves it).
    pub gc_life_time_secs: u64,
    /// Mutual TLS on every gRPC surface (clients, nodes and the other
    /// members), and the admin restriction. None: plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityConfig>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            id: 1,
            data_dir: PathBuf::from("nokv-coordinator-data"),
            listen: "127.0.0.1:2379".into(),
            status_listen: "127.0.0.1:2378".into(),
            members: Vec::new(),
            max_replicas: 3,
            tick_interval_ms: RaftTiming::DEFAULT_TICK_INTERVAL_MS,
            election_ticks: RaftTiming::DEFAULT_ELECTION_TICKS,
            heartbeat_ticks: RaftTiming::DEFAULT_HEARTBEAT_TICKS,
            id_window: 1000,
            tso_save_window_ms: 3000,
            store_disconnect_ms: 20_000,
            max_store_down_time_ms: 30 * 60 * 1000,
            schedule_interval_ms: 1000,
            operator_step_timeout_ms: 10 * 60 * 1000,
            replica_schedule_limit: 16,
            leader_schedule_limit: 4,
            region_schedule_limit: 4,
            merge_schedule_limit: 8,
            max_merge_region_size_bytes: 20 * 1024 * 1024,
            max_merge_region_keys: 200_000,
            split_merge_interval_ms: 60 * 60 * 1000,
            log_level: "info".into(),
            log_gc_interval_ticks: 100,
            log_gc_threshold: 10_000,
            gc_life_time_secs: 600,
            security: None,
        }
    }
}

impl CoordinatorConfig {
    /// `tick_interval_ms`, `election_ticks` and `heartbeat_ticks`, checked.
    /// A `tick_interval_ms` of 0 is used as 1 ms, as it always has been for
    /// the coordinator (the node refuses it).
    ///
    /// # Errors
    /// `election_ticks` not above `heartbeat_ticks`.
    pub fn raft_timing(&self) -> Result<RaftTiming, RaftTimingError> {
        RaftTiming::new(
            self.tick_interval_ms.max(1),
            self.election_ticks,
            self.heartbeat_ticks,
        )
    }

    /// The member list with a single-member default filled in, after
    /// checking ids are unique and include this member.
    pub fn resolved_members(&self) -> Result<Vec<MemberConfig>, String> {
        let members = if self.members.is_empty() {
            vec![MemberConfig {
                id: self.id,
                name: format!("coordinator-{}", self.id),
                address: self.listen.clone(),
                status_address: self.status_listen.clone(),
            }]
        } else {
            self.members.clone()
        };
        if self.id == 0 {
            return Err("id must be non-zero".into());
        }
        let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != members.len() || ids.contains(&0) {
            return Err("member ids must be unique and non-zero".into());
        }
        if !ids.contains(&self.id) {
            return Err(format!("id {} is not in the member list", self.id));
        }
        Ok(members
            .into_iter()
            .map(|mut m| {
                if m.name.is_empty() {
                    m.name = format!("coordinator-{}", m.id);
                }
                m
            })
            .collect())
    }
}

impl ProcessConfig for CoordinatorConfig {
    fn process_keys(&mut self) -> ProcessKeys<'_> {
        ProcessKeys {
            data_dir: &mut self.data_dir,
            listen: &mut self.listen,
            status_listen: &mut self.status_listen,
            log_level: &mut self.log_level,
            security: &mut self.security,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_member_default() {
        let c = CoordinatorConfig::default();
        let m = c.resolved_members().expect("valid");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].address, c.listen);
    }

    #[test]
    fn rejects_self_missing_and_duplicates() {
        let mut c = CoordinatorConfig {
            id: 4,
            ..Default::default()
        };
        c.members = vec![
            MemberConfig {
                id: 1,
                name: String::new(),
                address: "a".into(),
                status_address: String::new(),
            },
            MemberConfig {
                id: 1,
                name: String::new(),
                address: "b".into(),
                status_address: String::new(),
            },
        ];
        assert!(c.resolved_members().is_err());
        c.members[1].id = 2;
        assert!(c
            .resolved_members()
            .unwrap_err()
            .contains("not in the member list"));
    }

    #[test]
    fn security_section_is_optional_and_parsed() {
        assert!(CoordinatorConfig::default().security.is_none());
        let c: CoordinatorConfig =
            serde_yaml::from_str("security:\n  ca_path: a\n  cert_path: b\n  key_path: c\n")
                .expect("parse");
        assert_eq!(c.security.expect("security").key_path, PathBuf::from("c"));
    }

    #[test]
    fn raft_timing_defaults_and_checks() {
        let c = CoordinatorConfig::default();
        assert_eq!(c.raft_timing().expect("valid"), RaftTiming::default());
        let zero_tick = CoordinatorConfig {
            tick_interval_ms: 0,
            ..Default::default()
        };
        let t = zero_tick.raft_timing().expect("0 is used as 1 ms");
        assert_eq!(t.tick(), std::time::Duration::from_millis(1));
        let bad = CoordinatorConfig {
            election_ticks: 2,
            ..Default::default()
        };
        assert!(bad.raft_timing().is_err());
    }

    #[test]
    fn yaml_rejects_unknown_keys() {
        let err = serde_yaml::from_str::<CoordinatorConfig>("id: 1\nbogus: 2\n");
        assert!(err.is_err());
    }
}
