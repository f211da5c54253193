//! The node's column families. Data CFs hold user data; `raft` and `meta`
//! hold raft state (see `nokv_consensus::keys`).

use nokv_proto::poison::RwLockExt;

pub use nokv_consensus::engine::{cf, CF_META, CF_RAFT};

/// Percolator data: `enc(key) ++ !start_ts` → value.
pub const CF_DEFAULT: &str = "default";
/// Percolator locks: `enc(key)` → lock.
pub const CF_LOCK: &str = "lock";
/// Percolator commit records: `enc(key) ++ !commit_ts` → write record.
pub const CF_WRITE: &str = "write";
/// Raw KV: `key` → value with optional TTL.
pub const CF_RAW: &str = "raw";
/// Client-session tables, one per region (the raftstore's session
/// module owns their layout).
pub const CF_SESSION: &str = "session";

/// The database as request handlers see it: it can be closed while
/// handlers (and connections that outlive a stopping server) still hold the
/// handle, so stopping a node really closes RocksDB.
#[derive(Debug)]
pub struct DbHandle(std::sync::RwLock<Option<std::sync::Arc<rocksdb::DB>>>);

impl DbHandle {
    /// A handle to an open database.
    pub fn new(db: std::sync::Arc<rocksdb::DB>) -> Self {
        DbHandle(std::sync::RwLock::new(Some(db)))
    }

    /// The database, or `None` once the node is stopping.
    pub fn get(&self) -> Option<std::sync::Arc<rocksdb::DB>> {
        self.0.read_unpoisoned().clone()
    }

    /// Drops this handle's reference; later `get`s return `None`.
    pub fn close(&self) {
        self.0.write_unpoisoned().take();
    }
}

/// Column families holding user data, cleared and copied by region range.
pub const DATA_CFS: [&str; 4] = [CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAW];
/// Every column family of a node's RocksDB.
pub const ALL_CFS: [&str; 7] = [
    CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAW, CF_RAFT, CF_META, CF_SESSION,
];
