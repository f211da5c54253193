//! Locks taken past a panicking holder. NoKV's state behind a `Mutex` or
//! `RwLock` is consistent between the statements a panic could interrupt,
//! and a panic on a thread that keeps the store's state (raftstore, apply,
//! raft loop) stops the process anyway, so a poisoned lock is taken as it
//! is rather than spreading one panic to every other user of the lock.
//! Every crate shares this one rule.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex`] locking that recovers from poisoning.
pub trait MutexExt<T> {
    /// The guard, also when a previous holder panicked.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock`] locking that recovers from poisoning.
pub trait RwLockExt<T> {
    /// A read guard, also when a previous writer panicked.
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    /// The write guard, also when a previous writer panicked.
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, RwLock};

    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_is_still_taken() {
        let m = Arc::new(Mutex::new(1));
        let l = Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock_unpoisoned();
            let _w = l2.write_unpoisoned();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *m.lock_unpoisoned() += 1;
        *l.write_unpoisoned() += 1;
        assert_eq!((*m.lock_unpoisoned(), *l.read_unpoisoned()), (2, 2));
    }
}
