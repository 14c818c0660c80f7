//! The net change of a run of writes: later writes overwrite earlier ones
//! block by block, leaving one source per changed block (seed 001: "ABCDE"
//! then "ZXC" at 2..4 nets to "AZXCE").
//!
//! Invariant: extents are disjoint, non-empty and sorted; each block maps to
//! the source of the newest write (in insertion order) that covered it.

use std::collections::{BTreeMap, BinaryHeap};

/// Where a changed block's new contents come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeSource {
    /// Ring `ring`, data position `pos` (in blocks) holds the block.
    Forward { ring: u16, pos: u64 },
    /// The block became zeroes.
    Zero,
}

impl ChangeSource {
    fn advanced(self, blocks: u64) -> Self {
        match self {
            ChangeSource::Forward { ring, pos } => ChangeSource::Forward {
                ring,
                pos: pos + blocks,
            },
            ChangeSource::Zero => ChangeSource::Zero,
        }
    }
}

/// One extent of the net change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub lba: u64,
    pub nblocks: u64,
    pub source: ChangeSource,
}

/// Disjoint extents with overwrite-on-insert.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct NetChange {
    /// start -> (length, source of `start`)
    extents: BTreeMap<u64, (u64, ChangeSource)>,
    /// Sum of the extents' lengths, kept as they change: the sync worker
    /// checks it after every record, so it must not cost a walk.
    blocks: u64,
}

impl NetChange {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a newer write of `nblocks` at `lba`, replacing whatever covered it.
    pub fn overwrite(&mut self, lba: u64, nblocks: u64, source: ChangeSource) {
        assert!(nblocks > 0);
        let end = lba + nblocks;
        // The common case (a write to blocks not yet changed): the last extent
        // starting before `end` ends at or before `lba`, so nothing overlaps and
        // one search and the insert suffice.
        let overlaps = self
            .extents
            .range(..end)
            .next_back()
            .is_some_and(|(&start, &(len, _))| start + len > lba);
        if overlaps {
            self.remove_overlap(lba, end);
        }
        self.extents.insert(lba, (nblocks, source));
        self.blocks += nblocks;
        debug_assert!(self.check());
    }

    /// The net change of `writes` (`(lba, nblocks, source)`, oldest first):
    /// equal to overwriting them one by one, but built with one sort and a
    /// sweep instead of a tree search per write (the sync worker nets tens
    /// of thousands of writes per step).
    ///
    /// The sweep walks the blocks in lba order holding the writes that cover
    /// the current block in a heap keyed by write order; the newest one owns
    /// the block. A write owns a run until it ends or a newer write starts;
    /// consecutive runs of one write join, as they would by overwriting.
    pub fn from_writes(writes: &[(u64, u64, ChangeSource)]) -> Self {
        assert!(
            u32::try_from(writes.len()).is_ok(),
            "too many writes for one net change"
        );
        let mut by_lba: Vec<u32> = (0..writes.len() as u32).collect();
        by_lba.sort_unstable_by_key(|&i| writes[i as usize].0);
        let end_of = |i: u32| {
            let (lba, n, _) = writes[i as usize];
            assert!(n > 0, "empty write");
            lba + n
        };
        let mut covering: BinaryHeap<u32> = BinaryHeap::new();
        let mut out: Vec<(u64, (u64, ChangeSource))> = Vec::with_capacity(writes.len());
        let mut owner_of_last = u32::MAX;
        let (mut next, mut pos, mut blocks) = (0usize, 0u64, 0u64);
        loop {
            // Writes that ended at or before `pos` leave when they reach the top.
            while covering.peek().is_some_and(|&top| end_of(top) <= pos) {
                covering.pop();
            }
            if covering.is_empty() {
                let Some(&i) = by_lba.get(next) else { break };
                pos = pos.max(writes[i as usize].0);
            }
            while let Some(&i) = by_lba.get(next).filter(|&&i| writes[i as usize].0 <= pos) {
                covering.push(i);
                next += 1;
            }
            let owner = *covering.peek().expect("a write covers pos");
            let (lba, _, source) = writes[owner as usize];
            let stop = match by_lba.get(next) {
                Some(&i) => end_of(owner).min(writes[i as usize].0),
                None => end_of(owner),
            };
            debug_assert!(stop > pos);
            match out.last_mut() {
                Some((start, (len, _))) if owner == owner_of_last && *start + *len == pos => {
                    *len += stop - pos
                }
                _ => out.push((pos, (stop - pos, source.advanced(pos - lba)))),
            }
            blocks += stop - pos;
            owner_of_last = owner;
            pos = stop;
        }
        let net = NetChange {
            extents: out.into_iter().collect(),
            blocks,
        };
        debug_assert!(net.check());
        net
    }

    /// Takes `[lba, end)` out of the extents: trims one starting before it,
    /// removes those starting inside it, keeps any tail past `end`.
    fn remove_overlap(&mut self, lba: u64, end: u64) {
        // An extent starting before `lba` may overlap it: trim it, keeping any tail past `end`.
        if let Some((&start, &(len, src))) = self.extents.range(..lba).next_back() {
            if start + len > lba {
                self.blocks -= (start + len).min(end) - lba;
                self.extents.insert(start, (lba - start, src));
                if start + len > end {
                    self.extents
                        .insert(end, (start + len - end, src.advanced(end - start)));
                }
            }
        }
        // Extents starting inside [lba, end) are covered; a tail past `end` survives.
        let inside: Vec<u64> = self.extents.range(lba..end).map(|(&s, _)| s).collect();
        for s in inside {
            let (len, src) = self.extents.remove(&s).unwrap_or((0, ChangeSource::Zero));
            self.blocks -= (s + len).min(end) - s;
            if s + len > end {
                self.extents
                    .insert(end, (s + len - end, src.advanced(end - s)));
            }
        }
    }

    /// The extents, sorted by lba.
    pub fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        self.extents
            .iter()
            .map(|(&lba, &(nblocks, source))| Change {
                lba,
                nblocks,
                source,
            })
    }

    /// Changed ranges with adjacent extents joined (the ranges whose mirror
    /// contents must be saved), each at most `max_blocks` long.
    pub fn ranges(&self, max_blocks: u64) -> Vec<(u64, u64)> {
        assert!(max_blocks > 0);
        let mut joined: Vec<(u64, u64)> = Vec::new();
        for (&lba, &(len, _)) in &self.extents {
            match joined.last_mut() {
                Some((s, l)) if *s + *l == lba => *l += len,
                _ => joined.push((lba, len)),
            }
        }
        joined
            .into_iter()
            .flat_map(|(s, l)| {
                (0..l.div_ceil(max_blocks))
                    .map(move |i| (s + i * max_blocks, (l - i * max_blocks).min(max_blocks)))
            })
            .collect()
    }

    /// Blocks changed.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Disjoint extents.
    pub fn extent_count(&self) -> usize {
        self.extents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    fn check(&self) -> bool {
        let mut prev_end = 0u64;
        for (&s, &(l, _)) in &self.extents {
            if l == 0 || s < prev_end {
                return false;
            }
            prev_end = s + l;
        }
        self.blocks == self.extents.values().map(|(l, _)| *l).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fwd(pos: u64) -> ChangeSource {
        ChangeSource::Forward { ring: 0, pos }
    }

    #[test]
    fn seed_example_abcde_then_zxc() {
        // "ABCDE" at 1..=5 stored at positions 100..105, "ZXC" at 2..=4 stored at 200..203.
        let mut n = NetChange::new();
        n.overwrite(1, 5, fwd(100));
        n.overwrite(2, 3, fwd(200));
        let c: Vec<_> = n.changes().collect();
        assert_eq!(
            c,
            vec![
                Change {
                    lba: 1,
                    nblocks: 1,
                    source: fwd(100)
                },
                Change {
                    lba: 2,
                    nblocks: 3,
                    source: fwd(200)
                },
                Change {
                    lba: 5,
                    nblocks: 1,
                    source: fwd(104)
                },
            ]
        );
        assert_eq!(n.ranges(64), vec![(1, 5)]);
        assert_eq!(n.ranges(2), vec![(1, 2), (3, 2), (5, 1)]);
    }

    proptest! {
        #[test]
        fn matches_a_block_array(writes in proptest::collection::vec((0u64..40, 1u64..12), 1..30)) {
            let mut model: Vec<Option<ChangeSource>> = vec![None; 64];
            let mut n = NetChange::new();
            for (i, (lba, len)) in writes.iter().enumerate() {
                let src = if i % 5 == 4 { ChangeSource::Zero } else { fwd(1000 * i as u64) };
                n.overwrite(*lba, *len, src);
                for b in 0..*len {
                    model[(lba + b) as usize] = Some(src.advanced(b));
                }
            }
            let mut got: Vec<Option<ChangeSource>> = vec![None; 64];
            for c in n.changes() {
                for b in 0..c.nblocks {
                    got[(c.lba + b) as usize] = Some(c.source.advanced(b));
                }
            }
            prop_assert_eq!(got, model.clone());
            prop_assert_eq!(n.blocks(), model.iter().filter(|x| x.is_some()).count() as u64);
        }

        #[test]
        fn from_writes_equals_overwriting_one_by_one(
            writes in proptest::collection::vec((0u64..200, 1u64..24, any::<bool>()), 0..60)
        ) {
            let writes: Vec<(u64, u64, ChangeSource)> = writes
                .iter()
                .enumerate()
                .map(|(i, &(lba, n, zero))| {
                    (lba, n, if zero { ChangeSource::Zero } else { fwd(1000 * i as u64) })
                })
                .collect();
            let mut one_by_one = NetChange::new();
            for &(lba, n, src) in &writes {
                one_by_one.overwrite(lba, n, src);
            }
            prop_assert_eq!(NetChange::from_writes(&writes), one_by_one);
        }
    }
}
