//! Keys of one-phase commits that are in flight through raft. A 1PC
//! transaction writes no lock record, so between choosing its commit_ts and
//! applying its writes a reader at a later timestamp could miss the write.
//! Such keys are locked here first; a reader that meets one gets a `Locked`
//! error marked `in_memory` and retries shortly (nothing to resolve).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use nokv_proto::kvrpcpb::LockInfo;
use nokv_proto::poison::MutexExt;

/// The store's in-memory locks.
#[derive(Debug, Default)]
pub struct MemoryLocks {
    keys: Mutex<BTreeMap<Vec<u8>, LockInfo>>,
}

/// Holds keys locked until dropped.
#[derive(Debug)]
pub struct MemoryLockGuard {
    locks: Arc<MemoryLocks>,
    keys: Vec<Vec<u8>>,
}

impl Drop for MemoryLockGuard {
    fn drop(&mut self) {
        let mut map = self.locks.map();
        for k in &self.keys {
            map.remove(k);
        }
    }
}

impl MemoryLocks {
    fn map(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, LockInfo>> {
        // A panic while holding this lock cannot leave the map half
        // updated (every update is a single insert or remove).
        self.keys.lock_unpoisoned()
    }

    /// Locks `keys` for the transaction described by `info`, or returns
    /// the first conflicting lock.
    pub fn lock_keys(
        self: &Arc<Self>,
        keys: Vec<Vec<u8>>,
        info: &LockInfo,
    ) -> Result<MemoryLockGuard, LockInfo> {
        let mut map = self.map();
        if let Some(held) = keys.iter().find_map(|k| map.get(k)) {
            return Err(held.clone());
        }
        for k in &keys {
            let mut i = info.clone();
            i.key = k.clone();
            i.in_memory = true;
            map.insert(k.clone(), i);
        }
        Ok(MemoryLockGuard {
            locks: self.clone(),
            keys,
        })
    }

    /// A lock a read of `key` at `ts` must wait for.
    pub fn check_key(&self, key: &[u8], ts: u64) -> Result<(), LockInfo> {
        match self.map().get(key) {
            Some(l) if l.lock_version <= ts => Err(l.clone()),
            _ => Ok(()),
        }
    }

    /// A lock a read of `[start, end)` (empty end = unbounded) at `ts`
    /// must wait for.
    pub fn check_range(&self, start: &[u8], end: &[u8], ts: u64) -> Result<(), LockInfo> {
        let map = self.map();
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end.to_vec())
        };
        for (_, l) in map.range((Bound::Included(start.to_vec()), upper)) {
            if l.lock_version <= ts {
                return Err(l.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_locks_until_the_guard_drops() {
        let locks = Arc::new(MemoryLocks::default());
        let info = LockInfo {
            lock_version: 10,
            ..Default::default()
        };
        let guard = locks
            .lock_keys(vec![b"a".to_vec(), b"c".to_vec()], &info)
            .expect("free");
        assert!(locks.check_key(b"a", 10).is_err());
        assert!(
            locks.check_key(b"a", 9).is_ok(),
            "older reads are unaffected"
        );
        assert!(locks.check_range(b"b", b"d", 20).is_err());
        assert!(locks.check_range(b"d", b"", 20).is_ok());
        assert!(locks.lock_keys(vec![b"c".to_vec()], &info).is_err());
        drop(guard);
        assert!(locks.check_key(b"a", 10).is_ok());
        assert!(locks.check_range(b"", b"", u64::MAX).is_ok());
    }
}
