//! The modifications one MVCC command makes, buffered until the command
//! has fully succeeded so a failing command writes nothing.

use rocksdb::{WriteBatch, DB};

use super::error::{MvccError, MvccResult};
use super::key::{encode_key, versioned_key};
use super::lock::Lock;
use super::write::Write;
use crate::engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};

/// One change to a column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modify {
    /// Put `value` at `key`.
    Put {
        /// Column family.
        cf: &'static str,
        /// Stored key.
        key: Vec<u8>,
        /// Stored value.
        value: Vec<u8>,
    },
    /// Delete `key`.
    Delete {
        /// Column family.
        cf: &'static str,
        /// Stored key.
        key: Vec<u8>,
    },
}

impl Modify {
    /// The column family it touches.
    pub fn cf(&self) -> &'static str {
        match self {
            Modify::Put { cf, .. } | Modify::Delete { cf, .. } => cf,
        }
    }
}

/// Buffered changes of one command.
#[derive(Debug, Default)]
pub struct MvccTxn {
    modifies: Vec<Modify>,
}

impl MvccTxn {
    /// An empty buffer.
    pub fn new() -> Self {
        MvccTxn::default()
    }

    /// Writes `lock` on `key`.
    pub fn put_lock(&mut self, key: &[u8], lock: &Lock) {
        self.modifies.push(Modify::Put {
            cf: CF_LOCK,
            key: encode_key(key),
            value: lock.to_bytes(),
        });
    }

    /// Removes the lock on `key`.
    pub fn unlock(&mut self, key: &[u8]) {
        self.modifies.push(Modify::Delete {
            cf: CF_LOCK,
            key: encode_key(key),
        });
    }

    /// Stores a long value of the transaction at `start_ts`.
    pub fn put_value(&mut self, key: &[u8], start_ts: u64, value: Vec<u8>) {
        self.modifies.push(Modify::Put {
            cf: CF_DEFAULT,
            key: versioned_key(key, start_ts),
            value,
        });
    }

    /// Removes a long value.
    pub fn delete_value(&mut self, key: &[u8], start_ts: u64) {
        self.modifies.push(Modify::Delete {
            cf: CF_DEFAULT,
            key: versioned_key(key, start_ts),
        });
    }

    /// Records a version at `commit_ts`.
    pub fn put_write(&mut self, key: &[u8], commit_ts: u64, write: &Write) {
        self.modifies.push(Modify::Put {
            cf: CF_WRITE,
            key: versioned_key(key, commit_ts),
            value: write.to_bytes(),
        });
    }

    /// Removes the version at `commit_ts`.
    pub fn delete_write(&mut self, key: &[u8], commit_ts: u64) {
        self.modifies.push(Modify::Delete {
            cf: CF_WRITE,
            key: versioned_key(key, commit_ts),
        });
    }

    /// The buffered changes.
    pub fn modifies(&self) -> &[Modify] {
        &self.modifies
    }

    /// Whether nothing was buffered.
    pub fn is_empty(&self) -> bool {
        self.modifies.is_empty()
    }

    /// Adds the changes to `wb`.
    pub fn write_to(self, db: &DB, wb: &mut WriteBatch) -> MvccResult<()> {
        for m in self.modifies {
            let cf = db.cf_handle(m.cf()).ok_or_else(|| {
                MvccError::Corrupted(format!("column family {} is missing", m.cf()))
            })?;
            match m {
                Modify::Put { key, value, .. } => wb.put_cf(cf, key, value),
                Modify::Delete { key, .. } => wb.delete_cf(cf, key),
            }
        }
        Ok(())
    }
}
