//! Grace periods for data readers: lets the sync worker know when nobody can
//! still be reading device bytes it is about to overwrite or recycle.
//!
//! A reader opens a *section* before it resolves a read and closes it when the
//! device read has completed; the worker publishes a new state (a generation,
//! a new mirror seq, new ring tails), then [`GraceDomain::synchronize`]s: when
//! it returns, every section that might have seen the old state has closed.
//! Invariant: the mirror is not overwritten and journal space is not reused
//! until a grace period has passed since readers were redirected away from it.
//!
//! Readers never block and take no lock: a section costs one store and one
//! fence. Slots are claimed once, when a reader handle is created.

use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most reader handles a volume can have at once.
pub const MAX_READERS: usize = 256;

#[repr(align(64))]
#[derive(Debug, Default)]
struct Slot {
    /// 0: quiescent. Otherwise the epoch at which the oldest open section began.
    epoch: AtomicU64,
    claimed: AtomicBool,
}

/// The shared epoch counter and reader slots.
#[derive(Debug)]
pub struct GraceDomain {
    epoch: AtomicU64,
    slots: Box<[Slot]>,
    free: ArrayQueue<usize>,
}

impl Default for GraceDomain {
    fn default() -> Self {
        let free = ArrayQueue::new(MAX_READERS);
        for i in 0..MAX_READERS {
            let _ = free.push(i);
        }
        GraceDomain {
            epoch: AtomicU64::new(1),
            slots: (0..MAX_READERS).map(|_| Slot::default()).collect(),
            free,
        }
    }
}

impl GraceDomain {
    /// Registers a reader; `None` when all slots are taken.
    pub fn register(self: &Arc<Self>) -> Option<GraceReader> {
        let slot = self.free.pop()?;
        let s = &self.slots[slot];
        assert!(
            !s.claimed.swap(true, Ordering::SeqCst),
            "grace slot {slot} handed out twice"
        );
        assert_eq!(s.epoch.load(Ordering::SeqCst), 0);
        Some(GraceReader {
            domain: Arc::clone(self),
            slot,
            open: std::collections::VecDeque::new(),
        })
    }

    /// Starts a grace period (after the caller published its new state).
    pub fn start(&self) -> GraceTicket {
        fence(Ordering::SeqCst);
        GraceTicket(self.epoch.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// True once every section open when `ticket` was taken has closed.
    pub fn passed(&self, ticket: GraceTicket) -> bool {
        fence(Ordering::SeqCst);
        self.slots.iter().all(|s| {
            let e = s.epoch.load(Ordering::SeqCst);
            e == 0 || e >= ticket.0
        })
    }

    /// Starts a grace period and waits for it (worker threads only).
    pub fn synchronize(&self) {
        let ticket = self.start();
        let mut spins = 0u32;
        while !self.passed(ticket) {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else if spins < 256 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

/// A ticket for a started grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraceTicket(u64);

/// One reader's slot. Sections may overlap (many reads in flight); the slot
/// always holds the epoch of the oldest open one.
#[derive(Debug)]
pub struct GraceReader {
    domain: Arc<GraceDomain>,
    slot: usize,
    /// (epoch, open sections that began at it), oldest first.
    open: std::collections::VecDeque<(u64, u32)>,
}

/// Proof of an open section; hand it back to [`GraceReader::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Section(u64);

impl GraceReader {
    /// Opens a section: from here on, state read by this thread stays valid
    /// until the section is closed.
    pub fn open(&mut self) -> Section {
        let slot = &self.domain.slots[self.slot];
        let e = self.domain.epoch.load(Ordering::SeqCst);
        match self.open.back_mut() {
            Some((last, n)) if *last == e => *n += 1,
            _ => self.open.push_back((e, 1)),
        }
        if self.open.len() == 1 && self.open[0].1 == 1 {
            slot.epoch.store(e, Ordering::SeqCst);
        }
        // Pairs with the fence in `start`: state loads below cannot move above the store.
        fence(Ordering::SeqCst);
        Section(e)
    }

    /// Closes a section opened by this reader.
    pub fn close(&mut self, section: Section) {
        let i = self.open.iter().position(|(e, _)| *e == section.0);
        let i = i.unwrap_or_else(|| {
            panic!(
                "closing a section (epoch {}) this reader did not open",
                section.0
            )
        });
        self.open[i].1 -= 1;
        while self.open.front().is_some_and(|(_, n)| *n == 0) {
            self.open.pop_front();
        }
        let slot = &self.domain.slots[self.slot];
        match self.open.front() {
            Some((e, _)) => slot.epoch.store(*e, Ordering::Release),
            None => slot.epoch.store(0, Ordering::Release),
        }
    }

    /// Sections currently open.
    pub fn open_sections(&self) -> usize {
        self.open.iter().map(|(_, n)| *n as usize).sum()
    }
}

impl Drop for GraceReader {
    fn drop(&mut self) {
        let slot = &self.domain.slots[self.slot];
        slot.epoch.store(0, Ordering::SeqCst);
        slot.claimed.store(false, Ordering::SeqCst);
        let _ = self.domain.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_waits_for_open_sections_only() {
        let d = Arc::new(GraceDomain::default());
        let mut r = d.register().unwrap();
        let t0 = d.start();
        assert!(d.passed(t0), "no sections open");
        let s1 = r.open();
        let s2 = r.open();
        let t1 = d.start();
        assert!(!d.passed(t1));
        let s3 = r.open(); // began after t1: does not hold it
        r.close(s1);
        assert!(!d.passed(t1), "s2 is still open");
        r.close(s2);
        assert!(
            d.passed(t1),
            "only s3 remains and it began after the ticket"
        );
        let t2 = d.start();
        assert!(!d.passed(t2));
        r.close(s3);
        assert!(d.passed(t2));
        assert_eq!(r.open_sections(), 0);
    }

    #[test]
    fn slots_are_recycled() {
        let d = Arc::new(GraceDomain::default());
        let readers: Vec<_> = (0..MAX_READERS).map(|_| d.register().unwrap()).collect();
        assert!(d.register().is_none());
        drop(readers);
        assert!(d.register().is_some());
    }

    #[test]
    fn synchronize_protects_retired_state() {
        // Two cells; the worker publishes into the idle one, switches `current`,
        // waits a grace period, then poisons the retired cell. A reader that
        // opened its section before the switch must never see the poison.
        use std::sync::atomic::AtomicUsize;
        const POISON: u64 = u64::MAX;
        let d = Arc::new(GraceDomain::default());
        let stop = Arc::new(AtomicBool::new(false));
        let cells = Arc::new([AtomicU64::new(1), AtomicU64::new(POISON)]);
        let current = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(std::sync::Barrier::new(3));
        let reads = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (d, stop, cells, current, start, reads) = (
                    d.clone(),
                    stop.clone(),
                    cells.clone(),
                    current.clone(),
                    start.clone(),
                    reads.clone(),
                );
                std::thread::spawn(move || {
                    let mut r = d.register().unwrap();
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let s = r.open();
                        let idx = current.load(Ordering::Acquire);
                        std::hint::spin_loop();
                        let v = cells[idx].load(Ordering::Acquire);
                        assert_ne!(v, POISON, "read a cell retired under an open section");
                        reads.fetch_add(1, Ordering::Relaxed);
                        r.close(s);
                    }
                })
            })
            .collect();
        start.wait();
        // Keep retiring until the readers have really raced us (bounded in time).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut i = 1u64;
        while (i < 3000 || reads.load(Ordering::Relaxed) < 20_000)
            && std::time::Instant::now() < deadline
        {
            i += 1;
            let cur = current.load(Ordering::Relaxed);
            let next = 1 - cur;
            cells[next].store(i, Ordering::Release);
            current.store(next, Ordering::Release);
            d.synchronize();
            cells[cur].store(POISON, Ordering::Release);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("a reader saw a retired cell");
        }
        assert!(
            reads.load(Ordering::Relaxed) >= 20_000,
            "readers did not get to run"
        );
    }
}
