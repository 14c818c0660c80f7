//! Space on a circular area addressed by logical positions (block counts that
//! only grow; the physical block is `pos % capacity`).
//!
//! Invariant: `tail <= head <= tail + capacity`, and a reserved run never
//! straddles the physical end (it starts at the next lap instead), so every
//! run is one contiguous device range.

/// Head and tail of one circular area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Circular {
    pub capacity: u64,
    /// Next free logical position.
    pub head: u64,
    /// Oldest live logical position.
    pub tail: u64,
}

impl Circular {
    pub fn new(capacity: u64, head: u64, tail: u64) -> Self {
        let c = Circular {
            capacity,
            head,
            tail,
        };
        c.check();
        c
    }

    fn check(&self) {
        assert!(self.capacity > 0);
        assert!(
            self.tail <= self.head && self.head - self.tail <= self.capacity,
            "circular area broken: tail {} head {} capacity {}",
            self.tail,
            self.head,
            self.capacity
        );
    }

    /// Blocks between tail and head.
    pub fn used(&self) -> u64 {
        self.head - self.tail
    }

    /// Where a run of `len` would go now, if it fits.
    pub fn place(&self, len: u64) -> Option<u64> {
        if len == 0 || len > self.capacity {
            return (len == 0).then_some(self.head);
        }
        let offset = self.head % self.capacity;
        let pos = if offset + len > self.capacity {
            self.head + (self.capacity - offset)
        } else {
            self.head
        };
        (pos + len - self.tail <= self.capacity).then_some(pos)
    }

    /// Reserves a run of `len` and returns its position.
    pub fn reserve(&mut self, len: u64) -> Option<u64> {
        let pos = self.place(len)?;
        self.head = pos + len;
        self.check();
        Some(pos)
    }

    /// Frees everything before `tail` (never moves backwards or past the head).
    pub fn release_to(&mut self, tail: u64) {
        assert!(
            tail <= self.head,
            "releasing past the head ({tail} > {})",
            self.head
        );
        self.tail = self.tail.max(tail);
        self.check();
    }

    /// Used share in percent.
    pub fn fill_percent(&self) -> u64 {
        self.used() * 100 / self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_never_straddle_and_respect_the_tail() {
        let mut c = Circular::new(10, 0, 0);
        assert_eq!(c.reserve(4), Some(0));
        assert_eq!(c.reserve(4), Some(4));
        assert_eq!(
            c.reserve(4),
            None,
            "would need the next lap, which the tail still holds"
        );
        c.release_to(4);
        assert_eq!(c.reserve(4), Some(10), "skips blocks 8..10 and wraps");
        assert_eq!(c.head, 14);
        assert_eq!(
            c.place(3),
            None,
            "blocks 14..17 would overrun tail 4 + capacity 10"
        );
        assert_eq!(c.place(0), Some(14));
        c.release_to(14);
        assert_eq!(c.used(), 0);
        assert_eq!(
            c.reserve(10),
            None,
            "a full-size run needs a lap-aligned head"
        );
        assert_eq!(c.reserve(6), Some(14));
        assert_eq!(c.reserve(4), Some(20));
        assert_eq!(c.reserve(1), None, "full");
        assert_eq!(c.reserve(11), None);
    }
}
