//! The node's column families. Data CFs hold user data; `raft` and `meta`
//! hold raft state (see `nokv_consensus::keys`).

pub use nokv_consensus::engine::{cf, CF_META, CF_RAFT};

/// Percolator data: `enc(key) ++ !start_ts` → value.
pub const CF_DEFAULT: &str = "default";
/// Percolator locks: `enc(key)` → lock.
pub const CF_LOCK: &str = "lock";
/// Percolator commit records: `enc(key) ++ !commit_ts` → write record.
pub const CF_WRITE: &str = "write";
/// Raw KV: `key` → value with optional TTL.
pub const CF_RAW: &str = "raw";

/// Column families holding user data, cleared and copied by region range.
pub const DATA_CFS: [&str; 4] = [CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAW];
/// Every column family of a node's RocksDB.
pub const ALL_CFS: [&str; 6] = [CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAW, CF_RAFT, CF_META];
