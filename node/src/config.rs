//! Configuration of a store node. Every key has a default, so a node runs
//! on one machine with no file at all.

use std::path::PathBuf;

use nokv_consensus::process::{ProcessConfig, ProcessKeys};
use nokv_consensus::security::SecurityConfig;
use nokv_consensus::{RaftTiming, RaftTimingError};
use serde::{Deserialize, Serialize};

/// Size limits enforced on every request (documented in docs/protocol.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest key in bytes.
    pub max_key_bytes: usize,
    /// Largest value in bytes.
    pub max_value_bytes: usize,
    /// Most keys in one batch request.
    pub max_batch_keys: usize,
    /// Largest total of keys and values in one batch request.
    pub max_batch_bytes: usize,
    /// Largest scan limit.
    pub max_scan_limit: u32,
    /// Largest gRPC message the KV service accepts.
    pub max_grpc_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 8 * 1024,
            max_value_bytes: 8 * 1024 * 1024,
            max_batch_keys: 10_000,
            max_batch_bytes: 32 * 1024 * 1024,
            max_scan_limit: 10_000,
            max_grpc_message_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Client sessions, which make raw writes exactly-once (docs/protocol.md,
/// "Client sessions"). A leader stamps these into every write it
/// proposes, so replicas configured differently still agree.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Seconds a region keeps a session that has not written there.
    pub idle_timeout_secs: u64,
    /// Most sessions one region keeps; the least recently active go first.
    pub max_per_region: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout_secs: crate::raftstore::session::DEFAULT_IDLE_MS / 1000,
            max_per_region: crate::raftstore::session::DEFAULT_MAX_SESSIONS as u32,
        }
    }
}

/// The `raft` section: timing of the node's regions ([`RaftConfig::timing`]
/// checks the three timing keys) and the raftstore's limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Length of one raft tick in milliseconds.
    pub tick_interval_ms: u64,
    /// Ticks without a leader before an election.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Ticks between region heartbeats to the coordinator.
    pub region_heartbeat_ticks: u64,
    /// Most messages the store's own inbox (store-wide requests, regions
    /// without a mailbox yet) holds before answering ServerIsBusy.
    pub inbox_capacity: usize,
    /// Ticks between raft log GC checks on each leader.
    pub log_gc_interval_ticks: u64,
    /// Compact only when at least this many applied entries are in the log.
    pub log_gc_threshold: u64,
    /// When the slowest follower lags more than this many entries, compact
    /// to the applied index anyway; that follower catches up by snapshot.
    pub log_gc_count_limit: u64,
    /// Ticks between split checks of a leader's region that took writes
    /// (0 disables automatic split).
    pub split_check_ticks: u64,
    /// Split a region holding more than this many keys (0: no key limit).
    pub region_split_keys: u64,
    /// Split a region holding more than this many bytes (0: no size limit).
    pub region_split_size_bytes: u64,
    /// Proposals and reads one region may have waiting for raft before new
    /// ones are refused with ServerIsBusy.
    pub max_inflight_requests: usize,
    /// Let idle regions stop ticking (no raft heartbeats) until a message
    /// or request wakes them.
    pub hibernate_regions: bool,
    /// Idle ticks after which a leader asks its followers to hibernate.
    pub hibernate_after_ticks: u64,
    /// A leader reports a peer as down (in region heartbeats, shown by
    /// `nokv regions`) once nothing arrived from its store for this many
    /// seconds.
    pub max_peer_down_secs: u64,
    /// Serve reads from the leader lease (4/5 of the election timeout after
    /// a ReadIndex round confirmed leadership) instead of a ReadIndex round
    /// per read batch.
    pub lease_reads: bool,
    /// Threads applying committed data entries off the raftstore thread
    /// (at least 1).
    pub apply_pool_size: usize,
    /// Committed entries the store may have waiting in the apply pool;
    /// beyond it new writes get ServerIsBusy until the pool catches up.
    pub max_apply_queue_entries: usize,
    /// Requests and raft messages one region may have queued for the
    /// raftstore; beyond it that region's requests get ServerIsBusy while
    /// other regions are unaffected.
    pub region_mailbox_capacity: usize,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            tick_interval_ms: RaftTiming::DEFAULT_TICK_INTERVAL_MS,
            election_ticks: RaftTiming::DEFAULT_ELECTION_TICKS,
            heartbeat_ticks: RaftTiming::DEFAULT_HEARTBEAT_TICKS,
            region_heartbeat_ticks: 20,
            inbox_capacity: 16_384,
            log_gc_interval_ticks: 100,
            log_gc_threshold: 1024,
            log_gc_count_limit: 10_240,
            split_check_ticks: 100,
            region_split_keys: 960_000,
            region_split_size_bytes: 96 * 1024 * 1024,
            max_inflight_requests: 8192,
            hibernate_regions: true,
            hibernate_after_ticks: 20,
            max_peer_down_secs: 300,
            lease_reads: true,
            apply_pool_size: 2,
            max_apply_queue_entries: 16_384,
            region_mailbox_capacity: 4096,
        }
    }
}

impl RaftConfig {
    /// `tick_interval_ms`, `election_ticks` and `heartbeat_ticks`, checked.
    ///
    /// # Errors
    /// A zero tick, or `election_ticks` not above `heartbeat_ticks`.
    pub fn timing(&self) -> Result<RaftTiming, RaftTimingError> {
        RaftTiming::new(
            self.tick_interval_ms,
            self.election_ticks,
            self.heartbeat_ticks,
        )
    }
}

/// A store node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory for the node's RocksDB and identity.
    pub data_dir: PathBuf,
    /// gRPC listen address (KV, admin and raft).
    pub listen: String,
    /// Address other processes use to reach this node; defaults to
    /// `listen`.
    pub advertise_address: String,
    /// HTTP status listen address.
    pub status_listen: String,
    /// Coordinator member addresses.
    pub coordinators: Vec<String>,
    /// Store labels reported to the coordinator.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Milliseconds between store heartbeats.
    pub store_heartbeat_interval_ms: u64,
    /// Raft timing.
    pub raft: RaftConfig,
    /// Request size limits.
    pub limits: Limits,
    /// Client sessions (exactly-once raw writes).
    pub sessions: SessionConfig,
    /// Log filter (tracing-subscriber syntax).
    pub log_level: String,
    /// On stop, how long to drain connections (raft streams from peers
    /// never end on their own) before closing them.
    pub shutdown_grace_ms: u64,
    /// Milliseconds between MVCC GC rounds: fetch the safe point from the
    /// coordinator and drop old versions in the regions this store leads
    /// (0 disables GC on this store).
    pub gc_interval_ms: u64,
    /// Keys one GC command examines; bounds the work of one raft entry.
    pub gc_batch_keys: u32,
    /// Mutual TLS on every gRPC surface (serving, and dialing coordinators
    /// and other nodes), and the admin restriction. None: plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("nokv-node-data"),
            listen: "127.0.0.1:20160".into(),
            advertise_address: String::new(),
            status_listen: "127.0.0.1:20180".into(),
            coordinators: vec!["127.0.0.1:2379".into()],
            labels: Default::default(),
            store_heartbeat_interval_ms: 2000,
            raft: RaftConfig::default(),
            limits: Limits::default(),
            sessions: SessionConfig::default(),
            log_level: "info".into(),
            shutdown_grace_ms: 2000,
            gc_interval_ms: 60_000,
            gc_batch_keys: 256,
            security: None,
        }
    }
}

impl NodeConfig {
    /// The address advertised to the cluster.
    pub fn advertise(&self) -> String {
        if self.advertise_address.is_empty() {
            self.listen.clone()
        } else {
            self.advertise_address.clone()
        }
    }

    /// Checks values that would make the node misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if self.coordinators.is_empty() {
            return Err("at least one coordinator address is required".into());
        }
        self.raft.timing().map_err(|e| format!("raft: {e}"))?;
        if self.limits.max_key_bytes == 0 || self.limits.max_value_bytes == 0 {
            return Err("limits must be positive".into());
        }
        if self.sessions.idle_timeout_secs == 0 || self.sessions.max_per_region == 0 {
            return Err("sessions: idle_timeout_secs and max_per_region must be positive".into());
        }
        if let Some(s) = &self.security {
            if s.admin_allowed_cn.iter().any(|cn| cn.trim().is_empty()) {
                return Err("security.admin_allowed_cn: empty common name".into());
            }
        }
        Ok(())
    }
}

impl ProcessConfig for NodeConfig {
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
    fn defaults_validate_and_yaml_overrides_nested_keys() {
        NodeConfig::default()
            .validate()
            .expect("defaults are valid");
        let c: NodeConfig =
            serde_yaml::from_str("raft:\n  tick_interval_ms: 50\nlimits:\n  max_key_bytes: 10\n")
                .unwrap();
        assert_eq!(c.raft.tick_interval_ms, 50);
        assert_eq!(c.raft.election_ticks, 10);
        assert_eq!(c.limits.max_key_bytes, 10);
    }

    #[test]
    fn security_section_parses_and_is_off_by_default() {
        assert!(NodeConfig::default().security.is_none());
        let c: NodeConfig = serde_yaml::from_str(
            "security:\n  ca_path: /tls/ca.crt\n  cert_path: /tls/tls.crt\n  key_path: /tls/tls.key\n  admin_allowed_cn: [ops]\n",
        )
        .expect("parse");
        let s = c.security.as_ref().expect("security");
        assert_eq!(s.ca_path, PathBuf::from("/tls/ca.crt"));
        assert_eq!(s.admin_allowed_cn, ["ops"]);
        c.validate().expect("valid");
        let mut bad = c.clone();
        bad.security.as_mut().expect("security").admin_allowed_cn = vec![" ".into()];
        assert!(bad.validate().is_err());
    }

    #[test]
    fn unknown_keys_and_bad_timing_are_rejected() {
        assert!(serde_yaml::from_str::<NodeConfig>("nope: 1\n").is_err());
        let mut c = NodeConfig::default();
        c.raft.election_ticks = 1;
        let err = c.validate().unwrap_err();
        assert!(err.starts_with("raft: tick must be > 0"), "{err}");
        c.raft.election_ticks = 10;
        c.raft.tick_interval_ms = 0;
        assert!(c.validate().is_err());
    }
}
