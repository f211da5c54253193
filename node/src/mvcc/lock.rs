//! The lock record a prewrite leaves on each key of a transaction.

use nokv_proto::kvrpcpb::{LockInfo, Op};

use super::error::{MvccError, MvccResult};
use super::physical_ms;

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

const FORMAT: u8 = 1;

impl Lock {
    /// Serialises the lock for the `lock` column family.
    pub fn to_bytes(&self) -> Vec<u8> {
        let value_len = self.short_value.as_ref().map_or(0, |v| v.len());
        let mut out = Vec::with_capacity(48 + self.primary.len() + value_len);
        out.push(FORMAT);
        out.push(self.kind.tag());
        for n in [self.start_ts, self.ttl, self.min_commit_ts, self.txn_size] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&(self.primary.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.primary);
        if let Some(v) = &self.short_value {
            out.push(1);
            out.extend_from_slice(v);
        } else {
            out.push(0);
        }
        out
    }

    /// Parses a stored lock.
    pub fn parse(data: &[u8]) -> MvccResult<Lock> {
        let bad = |what: &str| MvccError::Corrupted(format!("lock record: {what}"));
        let mut r = Cursor(data);
        if r.byte().ok_or_else(|| bad("empty"))? != FORMAT {
            return Err(bad("unknown format"));
        }
        let kind = r
            .byte()
            .and_then(LockKind::from_tag)
            .ok_or_else(|| bad("kind"))?;
        let mut nums = [0u64; 4];
        for n in &mut nums {
            *n = r.u64().ok_or_else(|| bad("truncated"))?;
        }
        let plen = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        let primary = r.take(plen).ok_or_else(|| bad("primary"))?.to_vec();
        let short_value = match r.byte().ok_or_else(|| bad("truncated"))? {
            0 => None,
            _ => Some(r.0.to_vec()),
        };
        Ok(Lock {
            kind,
            primary,
            start_ts: nums[0],
            ttl: nums[1],
            min_commit_ts: nums[2],
            txn_size: nums[3],
            short_value,
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

/// A forward-only reader over a record's bytes.
pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
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
        assert!(Lock::parse(&[FORMAT, b'P', 0]).is_err());
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
