//! The lock record a prewrite leaves on each key of a transaction.

use nokv_proto::kvrpcpb::{LockInfo, Op};

use super::error::MvccResult;
use super::physical_ms;
use super::record::{RecordReader, RecordWriter};

/// What the locked key will become when the transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// A new value.
    Put,
    /// A deletion.
    Delete,
    /// No change; the key is only locked (for example read-for-update).
    Lock,
}

impl LockKind {
    fn tag(self) -> u8 {
        match self {
            LockKind::Put => b'P',
            LockKind::Delete => b'D',
            LockKind::Lock => b'L',
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'P' => LockKind::Put,
            b'D' => LockKind::Delete,
            b'L' => LockKind::Lock,
            _ => return None,
        })
    }

    /// The protocol's name for this kind.
    pub fn op(self) -> Op {
        match self {
            LockKind::Put => Op::Put,
            LockKind::Delete => Op::Del,
            LockKind::Lock => Op::Lock,
        }
    }
}

/// A Percolator lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// What the commit will write.
    pub kind: LockKind,
    /// The transaction's primary key: its lock or write decides the
    /// transaction's fate.
    pub primary: Vec<u8>,
    /// The transaction's start timestamp.
    pub start_ts: u64,
    /// Time to live in physical milliseconds, counted from start_ts.
    pub ttl: u64,
    /// The smallest commit timestamp the transaction may use.
    pub min_commit_ts: u64,
    /// Number of keys in the transaction (a hint for resolvers).
    pub txn_size: u64,
    /// The value itself, when short enough to inline.
    pub short_value: Option<Vec<u8>>,
}

impl Lock {
    /// Serialises the lock for the `lock` column family.
    pub fn to_bytes(&self) -> Vec<u8> {
        let value_len = self.short_value.as_ref().map_or(0, |v| v.len());
        RecordWriter::new(self.kind.tag(), 40 + self.primary.len() + value_len)
            .u64(self.start_ts)
            .u64(self.ttl)
            .u64(self.min_commit_ts)
            .u64(self.txn_size)
            .bytes(&self.primary)
            .finish(self.short_value.as_deref())
    }

    /// Parses a stored lock.
    pub fn parse(data: &[u8]) -> MvccResult<Lock> {
        let (mut r, tag) = RecordReader::open(data, "lock")?;
        let kind = LockKind::from_tag(tag).ok_or_else(|| r.bad("kind"))?;
        let (start_ts, ttl, min_commit_ts, txn_size) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let primary = r.bytes()?;
        Ok(Lock {
            kind,
            primary,
            start_ts,
            ttl,
            min_commit_ts,
            txn_size,
            short_value: r.short_value()?,
        })
    }

    /// Whether the lock outlived its TTL at `current_ts`.
    pub fn is_expired(&self, current_ts: u64) -> bool {
        physical_ms(self.start_ts).saturating_add(self.ttl) <= physical_ms(current_ts)
    }

    /// The lock as the protocol reports it for `key`.
    pub fn info(&self, key: &[u8]) -> LockInfo {
        LockInfo {
            primary_lock: self.primary.clone(),
            lock_version: self.start_ts,
            key: key.to_vec(),
            lock_ttl: self.ttl,
            txn_size: self.txn_size,
            lock_type: self.kind.op() as i32,
            min_commit_ts: self.min_commit_ts,
            use_async_commit: false,
            in_memory: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_short_value() {
        for short_value in [None, Some(vec![]), Some(b"v".to_vec())] {
            let lock = Lock {
                kind: LockKind::Put,
                primary: b"pk".to_vec(),
                start_ts: 10,
                ttl: 3000,
                min_commit_ts: 11,
                txn_size: 2,
                short_value,
            };
            assert_eq!(Lock::parse(&lock.to_bytes()).expect("parses"), lock);
        }
        assert!(Lock::parse(b"").is_err());
        assert!(Lock::parse(&[crate::mvcc::record::FORMAT, b'P', 0]).is_err());
    }

    #[test]
    fn expiry_is_judged_on_physical_time() {
        let lock = Lock {
            kind: LockKind::Lock,
            primary: vec![],
            start_ts: super::super::compose_ts(1000, 5),
            ttl: 100,
            min_commit_ts: 0,
            txn_size: 1,
            short_value: None,
        };
        assert!(!lock.is_expired(super::super::compose_ts(1099, 0)));
        assert!(lock.is_expired(super::super::compose_ts(1100, 0)));
    }
}
