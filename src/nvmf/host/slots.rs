//! Command slots and the command-id allocator of one queue: a fixed table
//! (one entry per command the queue may have in flight) and a free stack.
//!
//! Invariant: a command id is `generation << 12 | slot`; a slot's
//! generation advances every time it is freed, so a late or forged PDU for a
//! command that already completed does not match the slot's current command
//! (for 15 reuses). Allocation and release are O(1) and allocate nothing.

/// Most slots a queue can have (the slot index takes the low 12 bits of
/// the command id).
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
const SLOT_BITS: u32 = 12;
const SLOT_MASK: u16 = (1 << SLOT_BITS) - 1;

/// Data direction of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    None,
    /// Host to controller.
    Out,
    /// Controller to host.
    In,
}

/// What a queue tracks about one command in flight.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slot {
    pub active: bool,
    generation: u8,
    pub tag: u64,
    pub opcode: u8,
    pub dir: Direction,
    /// Transfer length in bytes.
    pub len: u32,
    /// Write data went in the command capsule.
    pub in_capsule: bool,
    /// Write: end of the data the target asked for so far (R2Ts), or `len`
    /// for in-capsule data. Read: bytes of C2HData received.
    pub done_bytes: u32,
    /// Read: the last C2HData PDU arrived.
    pub data_last: bool,
    /// A data digest failed; the command completes with an error.
    pub digest_error: bool,
    /// Data segments of this command still in the transmit queue.
    pub tx_refs: u32,
    /// Completion held back until `tx_refs` drops to 0.
    pub deferred: Option<crate::nvmf::completion::Completion>,
}

impl Slot {
    pub fn cid(&self, index: usize) -> u16 {
        (u16::from(self.generation) << SLOT_BITS) | (index as u16 & SLOT_MASK)
    }
}

/// The slot table and its free stack.
#[derive(Debug)]
pub struct Slots {
    slots: Vec<Slot>,
    free: Vec<u16>,
}

impl Slots {
    /// `depth` slots (clamped to 1..=[`MAX_SLOTS`]).
    pub fn new(depth: usize) -> Self {
        let depth = depth.clamp(1, MAX_SLOTS);
        Slots {
            slots: vec![Slot::default(); depth],
            // Popped from the back: slot 0 first.
            free: (0..depth as u16).rev().collect(),
        }
    }
    pub fn depth(&self) -> usize {
        self.slots.len()
    }
    pub fn outstanding(&self) -> usize {
        self.slots.len() - self.free.len()
    }
    /// The slot the next allocation returns.
    pub fn next_free(&self) -> Option<usize> {
        self.free.last().map(|&i| usize::from(i))
    }
    /// Takes the next free slot; returns its index.
    pub fn alloc(&mut self) -> Option<usize> {
        let i = usize::from(self.free.pop()?);
        if let Some(s) = self.slots.get_mut(i) {
            let generation = s.generation;
            *s = Slot {
                active: true,
                generation,
                ..Slot::default()
            };
        }
        Some(i)
    }
    /// Returns slot `i` to the free stack.
    pub fn release(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            if s.active {
                s.active = false;
                s.generation = (s.generation + 1) & 0xF;
                s.deferred = None;
                self.free.push(i as u16);
            }
        }
    }
    /// The active slot command id `cid` names.
    pub fn lookup(&self, cid: u16) -> Option<usize> {
        let i = usize::from(cid & SLOT_MASK);
        let s = self.slots.get(i)?;
        (s.active && s.cid(i) == cid).then_some(i)
    }
    pub fn get(&self, i: usize) -> Option<&Slot> {
        self.slots.get(i)
    }
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Slot> {
        self.slots.get_mut(i)
    }
    /// Indices of the active slots.
    pub fn active(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active)
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_generation_and_stale_ids_miss() {
        let mut s = Slots::new(2);
        let a = s.alloc().unwrap();
        let cid_a = s.get(a).unwrap().cid(a);
        assert_eq!(s.lookup(cid_a), Some(a));
        s.release(a);
        assert_eq!(s.lookup(cid_a), None);
        let a2 = s.alloc().unwrap();
        assert_eq!(a2, a);
        let cid_a2 = s.get(a2).unwrap().cid(a2);
        assert_ne!(cid_a, cid_a2);
        assert_eq!(s.lookup(cid_a), None);
        assert_eq!(s.lookup(cid_a2), Some(a));
        let b = s.alloc().unwrap();
        assert_ne!(a, b);
        assert_eq!(s.alloc(), None);
        assert_eq!(s.outstanding(), 2);
        // Double release is harmless.
        s.release(b);
        s.release(b);
        assert_eq!(s.outstanding(), 1);
        assert_eq!(s.lookup(0xFFFF), None);
    }
}
