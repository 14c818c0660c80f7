//! Space bookkeeping of the backward journal (owned by the sync worker):
//! where the next generation's undo data and record go, and what expiring the
//! oldest generation frees.
//!
//! Invariant: space is handed out only between the durable tail (from the last
//! checkpoint, or later expiry once checkpointed) and the head, so a
//! generation's undo data is never overwritten while it is retained.

use crate::engine::circular::Circular;

/// Where a planned generation would go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Data position of each run, in order.
    pub data: Vec<u64>,
    /// Descriptor position of the record, and the WRAP block position when the
    /// record starts on the next lap.
    pub record: u64,
    pub wrap: Option<u64>,
    /// Heads after the generation.
    pub desc_head: u64,
    pub data_head: u64,
}

/// The two circular areas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackwardSpace {
    pub desc: Circular,
    pub data: Circular,
}

impl BackwardSpace {
    /// Places runs of `runs` blocks and a record of `record_blocks`; `None`
    /// when it does not fit between tail and head right now.
    pub fn place(&self, runs: &[u64], record_blocks: u64) -> Option<Placement> {
        let mut data = self.data;
        let positions = runs
            .iter()
            .map(|&n| data.reserve(n))
            .collect::<Option<Vec<_>>>()?;
        let mut desc = self.desc;
        let record = desc.reserve(record_blocks)?;
        let wrap = (record != self.desc.head).then_some(self.desc.head);
        Some(Placement {
            data: positions,
            record,
            wrap,
            desc_head: desc.head,
            data_head: data.head,
        })
    }

    /// Commits a placement.
    pub fn commit(&mut self, p: &Placement) {
        assert!(p.desc_head >= self.desc.head && p.data_head >= self.data.head);
        self.desc = Circular::new(self.desc.capacity, p.desc_head, self.desc.tail);
        self.data = Circular::new(self.data.capacity, p.data_head, self.data.tail);
    }

    /// Frees everything before these tails.
    pub fn release_to(&mut self, desc_tail: u64, data_tail: u64) {
        self.desc.release_to(desc_tail);
        self.data.release_to(data_tail);
    }

    /// Free share in percent (the smaller of the two areas).
    pub fn free_percent(&self) -> u64 {
        100 - self.desc.fill_percent().max(self.data.fill_percent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_wraps_records_and_checks_both_areas() {
        let s = BackwardSpace {
            desc: Circular::new(8, 6, 6),
            data: Circular::new(16, 0, 0),
        };
        let p = s.place(&[4, 4], 3).unwrap();
        assert_eq!(p.data, vec![0, 4]);
        assert_eq!(
            (p.record, p.wrap),
            (8, Some(6)),
            "3 blocks do not fit at 6..8: wrap block at 6"
        );
        assert!(s.place(&[10, 10], 1).is_none(), "20 data blocks exceed 16");
        assert!(s.place(&[1], 9).is_none());
        let mut s2 = s;
        s2.commit(&p);
        assert_eq!((s2.desc.head, s2.data.head), (11, 8));
    }
}
