//! Lock audit: the crate's only `Mutex` and `RwLock` types, wrappers around
//! the standard ones that count every acquisition made by the current thread.
//!
//! The appliance promises that a reactor never takes a lock on the per-I/O
//! path (DESIGN.md, Concurrency). That promise is checked, not assumed: every
//! lock in `device` and `engine` is an [`AuditedMutex`] or [`AuditedRwLock`],
//! and a test reads [`acquisitions_on_this_thread`] before and after a stretch
//! of work on a reactor thread. The counter is per thread (a `Cell` in
//! thread-local storage: one add, no atomic, no shared cache line), so work on
//! other threads — the sync worker, a test's main thread — does not blur what
//! one reactor did.
//!
//! Invariant kept: every acquisition through these types, successful,
//! poisoned or contended, adds exactly one to the acquiring thread's count
//! before the lock is taken. The count does not see locks inside the standard
//! library or the C library (the global allocator's arena locks, `mpsc`).

use std::cell::Cell;
use std::sync::{LockResult, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

thread_local! {
    static ACQUISITIONS: Cell<u64> = const { Cell::new(0) };
}

/// Locks taken through the audited types by the calling thread since it started.
pub fn acquisitions_on_this_thread() -> u64 {
    ACQUISITIONS.with(Cell::get)
}

fn record_acquisition() {
    ACQUISITIONS.with(|count| {
        let next = count.get() + 1;
        assert!(next > count.get(), "lock audit counter overflow");
        count.set(next);
    });
}

/// A [`Mutex`] whose acquisitions are counted per thread.
#[derive(Debug, Default)]
pub struct AuditedMutex<T>(Mutex<T>);

impl<T> AuditedMutex<T> {
    /// A new unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        AuditedMutex(Mutex::new(value))
    }

    /// Like [`Mutex::lock`]; counts one acquisition on this thread.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        record_acquisition();
        self.0.lock()
    }

    /// Like [`Mutex::get_mut`] (no lock is taken, nothing is counted).
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        self.0.get_mut()
    }

    /// Like [`Mutex::into_inner`].
    pub fn into_inner(self) -> LockResult<T> {
        self.0.into_inner()
    }
}

/// A [`RwLock`] whose acquisitions (shared and exclusive) are counted per thread.
#[derive(Debug, Default)]
pub struct AuditedRwLock<T>(RwLock<T>);

impl<T> AuditedRwLock<T> {
    /// A new unlocked lock holding `value`.
    pub const fn new(value: T) -> Self {
        AuditedRwLock(RwLock::new(value))
    }

    /// Like [`RwLock::read`]; counts one acquisition on this thread.
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        record_acquisition();
        self.0.read()
    }

    /// Like [`RwLock::write`]; counts one acquisition on this thread.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        record_acquisition();
        self.0.write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::PoisonError;

    #[test]
    fn counts_per_thread() {
        let mutex = AuditedMutex::new(1u32);
        let rw = AuditedRwLock::new(());
        let before = acquisitions_on_this_thread();
        *mutex.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        drop(rw.read().unwrap_or_else(PoisonError::into_inner));
        drop(rw.write().unwrap_or_else(PoisonError::into_inner));
        assert_eq!(acquisitions_on_this_thread(), before + 3);
        let other = std::thread::scope(|s| {
            s.spawn(|| {
                let start = acquisitions_on_this_thread();
                drop(mutex.lock().unwrap_or_else(PoisonError::into_inner));
                acquisitions_on_this_thread() - start
            })
            .join()
            .expect("thread")
        });
        assert_eq!(other, 1, "the other thread counted its own acquisition");
        assert_eq!(
            acquisitions_on_this_thread(),
            before + 3,
            "another thread's acquisition is not counted here"
        );
        assert_eq!(
            mutex.into_inner().unwrap_or_else(PoisonError::into_inner),
            2
        );
    }
}
