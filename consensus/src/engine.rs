//! Opening the one RocksDB a process keeps, with its column families.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

use crate::{Error, Result};

/// Column family holding raft log entries and hard state of every group.
pub const CF_RAFT: &str = "raft";
/// Column family holding per-group metadata (apply state, region state).
pub const CF_META: &str = "meta";

/// Opens (creating if needed) the RocksDB at `path` with the given column
/// families, besides RocksDB's own `default`.
pub fn open(path: &Path, cfs: &[&str]) -> Result<Arc<DB>> {
    std::fs::create_dir_all(path)?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.increase_parallelism(2);
    let descriptors = cfs
        .iter()
        .filter(|c| **c != "default")
        .map(|c| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*c, o)
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(DB::open_cf_descriptors(&opts, path, descriptors)?))
}

/// Looks up a column family handle, turning absence into a typed error.
pub fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| Error::MissingColumnFamily(name.to_string()))
}
