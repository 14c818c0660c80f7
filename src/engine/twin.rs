//! Two-copy publication (the "left-right" technique) for single-writer maps
//! read from every core.
//!
//! The writer keeps two copies of a structure. Readers use the *active* copy;
//! the writer applies its operations to the other one, swaps, and later
//! replays the same operations on the copy readers just left. Readers never
//! block and never take a lock (two counter increments per read); the writer
//! never takes a lock either: [`TwinWriter::try_publish`] returns `false`
//! instead of waiting when a reader may still be inside the copy it needs.
//!
//! The writer looks only at reader slots that were ever claimed (a watermark),
//! so a publish costs a few loads, not one per possible reader.
//!
//! Invariant: the writer mutates a copy only after every reader that could be
//! inside it has left; both copies receive exactly the same operations in the
//! same order. The inactive copy lags by the last publish's operations until
//! [`TwinWriter::catch_up`] (or the next publish) replays them there.

use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Most reader handles per twin.
pub const MAX_TWIN_READERS: usize = 128;

/// A structure that can absorb operations deterministically.
pub trait Absorb<Op> {
    /// Applies `op`. Called twice per operation, once on each copy; both calls
    /// must have the same effect.
    fn absorb(&mut self, op: &Op);
}

#[repr(align(64))]
#[derive(Debug, Default)]
struct ReaderCounter {
    /// Odd while the reader is inside a copy.
    count: AtomicU64,
    claimed: AtomicBool,
}

struct Shared<T> {
    copies: [UnsafeCell<T>; 2],
    active: AtomicUsize,
    readers: Box<[ReaderCounter]>,
    /// One past the highest reader slot ever claimed: the writer scans only
    /// `readers[..claimed_high]`. It never decreases, and a reader raises it
    /// before its first read (see `TwinReaders::reader`).
    claimed_high: AtomicUsize,
}

// SAFETY: copies are accessed either by readers through `&T` (T: Sync) or by the
// single writer through `&mut T` while no reader is inside that copy (the protocol
// in try_publish); T: Send lets the writer and readers live on other threads.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twin")
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

/// Creates a twin from two equal copies; returns the writer and a factory for readers.
pub fn new<T, Op>(first: T, second: T) -> (TwinWriter<T, Op>, TwinReaders<T>) {
    let shared = Arc::new(Shared {
        copies: [UnsafeCell::new(first), UnsafeCell::new(second)],
        active: AtomicUsize::new(0),
        readers: (0..MAX_TWIN_READERS)
            .map(|_| ReaderCounter::default())
            .collect(),
        claimed_high: AtomicUsize::new(0),
    });
    let writer = TwinWriter {
        shared: Arc::clone(&shared),
        pending: Vec::new(),
        lagging: Vec::new(),
        seen: vec![0; MAX_TWIN_READERS],
        inactive_free: false,
    };
    (writer, TwinReaders { shared })
}

/// The single writer.
pub struct TwinWriter<T, Op> {
    shared: Arc<Shared<T>>,
    /// Operations not yet applied to either copy.
    pending: Vec<Op>,
    /// Operations applied to the active copy but not yet to the inactive one.
    lagging: Vec<Op>,
    /// Reader counters sampled right after the last swap.
    seen: Vec<u64>,
    /// Every reader inside the inactive copy at the last swap has left it
    /// (checked once per swap: later readers only enter the active copy).
    inactive_free: bool,
}

impl<T, Op> std::fmt::Debug for TwinWriter<T, Op> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinWriter")
            .field("pending", &self.pending.len())
            .field("lagging", &self.lagging.len())
            .finish()
    }
}

impl<T: Absorb<Op>, Op> TwinWriter<T, Op> {
    /// Queues an operation; readers see it after the next successful publish.
    pub fn append(&mut self, op: Op) {
        self.pending.push(op);
    }

    /// Operations waiting for a publish.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// True once no reader can still be inside the inactive copy.
    fn inactive_is_free(&mut self) -> bool {
        if self.inactive_free {
            return true;
        }
        fence(Ordering::SeqCst);
        let high = self.shared.claimed_high.load(Ordering::SeqCst);
        for (i, r) in self.shared.readers[..high].iter().enumerate() {
            let was = self.seen[i];
            if was % 2 == 1 && r.count.load(Ordering::Acquire) == was {
                return false; // inside since before the last swap: maybe in the inactive copy
            }
        }
        self.inactive_free = true;
        true
    }

    /// Replays the last publish's operations on the copy readers left, if
    /// they all have; returns whether that copy is now level with the
    /// active one. Optional: [`Self::try_publish`] catches up itself. The
    /// ring writer calls it between rounds, so a publish (which a write's
    /// completion waits for) applies only its own operations. Never blocks.
    pub fn catch_up(&mut self) -> bool {
        if self.lagging.is_empty() {
            return true;
        }
        if !self.inactive_is_free() {
            return false;
        }
        let active = self.shared.active.load(Ordering::Relaxed);
        // SAFETY: no reader is inside the inactive copy (checked above, and
        // readers entering since the last swap use `active`); only this
        // writer touches it.
        let copy = unsafe { &mut *self.shared.copies[1 - active].get() };
        for op in &self.lagging {
            copy.absorb(op);
        }
        self.lagging.clear();
        true
    }

    /// Publishes queued operations if no reader can still be inside the
    /// inactive copy; otherwise does nothing and returns `false` (try again on
    /// the next poll). Never blocks.
    pub fn try_publish(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        // catch_up checks the readers only when it has operations to replay;
        // check here too (cached, so free) rather than rely on every swap
        // leaving some behind.
        if !self.catch_up() || !self.inactive_is_free() {
            return false;
        }
        let active = self.shared.active.load(Ordering::Relaxed);
        let inactive = 1 - active;
        {
            // SAFETY: as in catch_up; the inactive copy now holds every
            // operation but the pending ones.
            let copy = unsafe { &mut *self.shared.copies[inactive].get() };
            for op in &self.pending {
                copy.absorb(op);
            }
        }
        self.shared.active.store(inactive, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // A slot claimed after this load belongs to a reader whose first read
        // comes after the swap above (claimed_high is raised, SeqCst, before
        // that read): it can only be in the new active copy, so its stale
        // (even) `seen` entry is right.
        let high = self.shared.claimed_high.load(Ordering::SeqCst);
        for (i, r) in self.shared.readers[..high].iter().enumerate() {
            self.seen[i] = r.count.load(Ordering::Acquire);
        }
        self.inactive_free = false;
        // `lagging` is empty (caught up above): the swap hands its capacity
        // to the next pending operations instead of allocating.
        debug_assert!(self.lagging.is_empty());
        std::mem::swap(&mut self.lagging, &mut self.pending);
        true
    }

    /// Publishes, spinning until readers have left the inactive copy (for
    /// worker threads, which may wait).
    pub fn publish(&mut self) {
        let mut spins = 0u32;
        while !self.try_publish() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// The copy readers currently see (the writer may read it freely: only the
    /// writer mutates, and never the active copy).
    pub fn read(&self) -> &T {
        let active = self.shared.active.load(Ordering::Relaxed);
        // SAFETY: the writer never mutates the active copy, and `&self` prevents
        // a concurrent try_publish from this writer.
        unsafe { &*self.shared.copies[active].get() }
    }
}

/// Creates reader handles (cheap to clone; share it freely).
pub struct TwinReaders<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for TwinReaders<T> {
    fn clone(&self) -> Self {
        TwinReaders {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> std::fmt::Debug for TwinReaders<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TwinReaders")
    }
}

impl<T> TwinReaders<T> {
    /// A reader handle for one thread; `None` when all reader slots are taken.
    pub fn reader(&self) -> Option<TwinReader<T>> {
        let slot = self.shared.readers.iter().position(|r| {
            r.claimed
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })?;
        self.shared
            .claimed_high
            .fetch_max(slot + 1, Ordering::SeqCst);
        Some(TwinReader {
            shared: Arc::clone(&self.shared),
            slot,
        })
    }
}

/// One thread's read handle.
pub struct TwinReader<T> {
    shared: Arc<Shared<T>>,
    slot: usize,
}

impl<T> std::fmt::Debug for TwinReader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TwinReader(slot {})", self.slot)
    }
}

impl<T> TwinReader<T> {
    /// Runs `f` on the published copy. Wait-free; do not block inside `f`
    /// (the writer's next publish waits for it).
    pub fn read<R>(&mut self, f: impl FnOnce(&T) -> R) -> R {
        let counter = &self.shared.readers[self.slot].count;
        let before = counter.fetch_add(1, Ordering::SeqCst);
        debug_assert_eq!(before % 2, 0, "nested TwinReader::read");
        fence(Ordering::SeqCst);
        // Leave the copy even if `f` panics, or the writer could never publish again.
        struct Leave<'a>(&'a AtomicU64);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Release);
            }
        }
        let _leave = Leave(counter);
        let active = self.shared.active.load(Ordering::Acquire);
        // SAFETY: our odd counter keeps the writer out of this copy until we leave.
        f(unsafe { &*self.shared.copies[active].get() })
    }
}

impl<T> Drop for TwinReader<T> {
    fn drop(&mut self) {
        let r = &self.shared.readers[self.slot];
        debug_assert_eq!(r.count.load(Ordering::Relaxed) % 2, 0);
        r.claimed.store(false, Ordering::SeqCst);
    }
}

// SAFETY: a reader handle may move to another thread; it is used by one at a time (&mut self).
unsafe impl<T: Send + Sync> Send for TwinReader<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Log(Vec<u64>);
    impl Absorb<u64> for Log {
        fn absorb(&mut self, op: &u64) {
            self.0.push(*op);
        }
    }

    #[test]
    fn readers_see_published_operations_only() {
        let (mut w, readers) = new::<Log, u64>(Log::default(), Log::default());
        let mut r = readers.reader().unwrap();
        w.append(1);
        assert_eq!(r.read(|l| l.0.len()), 0);
        assert!(w.try_publish());
        assert_eq!(r.read(|l| l.0.clone()), vec![1]);
        w.append(2);
        w.append(3);
        assert!(w.try_publish());
        assert_eq!(r.read(|l| l.0.clone()), vec![1, 2, 3]);
        assert_eq!(w.read().0, vec![1, 2, 3]);
        w.append(4);
        assert!(w.try_publish());
        assert_eq!(
            r.read(|l| l.0.clone()),
            vec![1, 2, 3, 4],
            "both copies replay the same log"
        );
    }

    #[test]
    fn a_reader_inside_blocks_only_the_copy_it_is_in() {
        let (mut w, readers) = new::<Log, u64>(Log::default(), Log::default());
        let mut r = readers.reader().unwrap();
        w.append(1);
        assert!(w.try_publish());
        // Simulate a reader that entered before the next swap and has not left.
        let c = &r.shared.readers[r.slot].count;
        c.fetch_add(1, Ordering::SeqCst);
        w.append(2);
        assert!(
            w.try_publish(),
            "the inactive copy is free: the reader entered after the last swap"
        );
        w.append(3);
        assert!(
            !w.try_publish(),
            "the reader may be in the copy that is now inactive"
        );
        c.fetch_add(1, Ordering::SeqCst);
        assert!(w.try_publish());
        assert_eq!(r.read(|l| l.0.clone()), vec![1, 2, 3]);
    }

    /// The copy readers are not in, seen from the test (no reader is inside it).
    fn inactive(w: &TwinWriter<Log, u64>) -> Vec<u64> {
        let active = w.shared.active.load(Ordering::SeqCst);
        // SAFETY: single-threaded test; only the writer mutates, and not now.
        unsafe { (*w.shared.copies[1 - active].get()).0.clone() }
    }

    #[test]
    fn catch_up_levels_the_copy_readers_left_and_waits_for_them() {
        let (mut w, readers) = new::<Log, u64>(Log::default(), Log::default());
        let mut r = readers.reader().unwrap();
        assert!(w.catch_up(), "nothing to replay");
        w.append(1);
        assert!(w.try_publish());
        assert_eq!(
            inactive(&w),
            Vec::<u64>::new(),
            "the old copy lags by the publish"
        );
        assert!(w.catch_up());
        assert_eq!(inactive(&w), vec![1]);
        // A reader inside since before the next swap holds the replay back.
        let c = &r.shared.readers[r.slot].count;
        c.fetch_add(1, Ordering::SeqCst);
        w.append(2);
        assert!(w.try_publish(), "the reader entered after the last swap");
        assert!(
            !w.catch_up(),
            "the reader may be in the copy that is now inactive"
        );
        assert_eq!(inactive(&w), vec![1]);
        w.append(3);
        assert!(!w.try_publish());
        c.fetch_add(1, Ordering::SeqCst);
        assert!(w.catch_up());
        assert_eq!(inactive(&w), vec![1, 2]);
        assert!(w.try_publish());
        assert_eq!(r.read(|l| l.0.clone()), vec![1, 2, 3]);
        assert_eq!(
            inactive(&w),
            vec![1, 2],
            "after a catch-up the publish applied only its own op"
        );
        assert!(w.catch_up());
        assert_eq!(inactive(&w), vec![1, 2, 3]);
        assert_eq!(w.read().0, vec![1, 2, 3]);
    }

    #[test]
    fn readers_in_later_slots_are_watched() {
        let (mut w, readers) = new::<Log, u64>(Log::default(), Log::default());
        let early: Vec<_> = (0..3).map(|_| readers.reader().unwrap()).collect();
        w.append(1);
        assert!(w.try_publish());
        let late = readers.reader().unwrap();
        assert_eq!(late.slot, 3);
        drop(early);
        w.append(2);
        assert!(w.try_publish(), "the late reader entered after the swap");
        let c = &late.shared.readers[late.slot].count;
        c.fetch_add(1, Ordering::SeqCst);
        w.append(3);
        assert!(w.try_publish(), "inside since after the last swap");
        w.append(4);
        assert!(!w.try_publish(), "slot 3 may be inside the inactive copy");
        c.fetch_add(1, Ordering::SeqCst);
        assert!(w.try_publish());
    }

    #[test]
    fn concurrent_readers_see_consistent_prefixes() {
        let (mut w, readers) = new::<Log, u64>(Log::default(), Log::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let readers = readers.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut r = readers.reader().unwrap();
                    let mut last = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let len = r.read(|l| {
                            assert!(
                                l.0.iter().enumerate().all(|(i, v)| *v == i as u64),
                                "copy holds a torn or reordered log"
                            );
                            l.0.len()
                        });
                        assert!(len >= last, "a reader went back in time");
                        last = len;
                    }
                })
            })
            .collect();
        for i in 0..20_000u64 {
            w.append(i);
            if i % 7 == 0 {
                w.publish();
            }
        }
        w.publish();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.read().0.len(), 20_000);
    }
}
