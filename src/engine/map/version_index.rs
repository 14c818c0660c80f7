//! The versioned block map: for a block and a version bound, which stored
//! extent holds it — in logarithmic time however many versions are retained.
//!
//! Every extent `[lba, lba + n)` written at `version` is split into its
//! canonical nodes of an implicit binary tree over the block space (a node at
//! `level` covers `2^level` aligned blocks; any extent splits into at most two
//! nodes per level). Each node's versions are entries `(node, version) ->
//! location` in one multi-way B+-tree, so the versions of a node sit next to
//! each other in key order. A block's candidates are its ancestors, one per
//! level; for each the tree answers "newest version at or below v" or
//! "oldest version at or above v" with one search. Costs: inserting or removing an extent is
//! O(levels x log entries); a lookup is O(occupied levels x log entries) —
//! never linear in the number of versions (DESIGN invariant 8).
//!
//! The forward journal uses it with version = write seq (newest at or before
//! a point); the backward journal with version = the point a generation
//! restores (oldest at or after a point). Invariant: `entries()` equals the sum
//! of canonical node counts of every inserted, not yet removed extent.

use super::arena::ChunkSource;
use super::btree::BTree;
use std::sync::Arc;

/// Location value meaning "this extent is zeroes" (no stored data).
pub const ZERO_LOC: u64 = u64::MAX;

/// Entries made dead per leaf swept (see [`VersionIndex::sweep_after_drop`]):
/// with 8 or 16 a sliding-window test let dead entries reach 0.5 and 2.8
/// times the live ones; with 4 they peak near 0.1.
pub const STALE_PER_SWEPT_LEAF: usize = 4;

const LEVEL_SHIFT: u32 = 58;
const LEVELS: usize = 58;

fn node_key(level: u32, index: u64) -> u64 {
    debug_assert!(index < (1 << LEVEL_SHIFT));
    (u64::from(level) << LEVEL_SHIFT) | index
}

fn key(node: u64, version: u64) -> u128 {
    (u128::from(node) << 64) | u128::from(version)
}

fn split_key(k: u128) -> (u32, u64, u64) {
    let node = (k >> 64) as u64;
    (
        (node >> LEVEL_SHIFT) as u32,
        node & ((1 << LEVEL_SHIFT) - 1),
        k as u64,
    )
}

/// The canonical nodes `(level, index)` covering `[lba, lba + n)`.
pub fn canonical_nodes(lba: u64, n: u64) -> impl Iterator<Item = (u32, u64)> {
    let end = lba.checked_add(n).expect("extent end overflows");
    let mut at = lba;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let mut level = at.trailing_zeros().min(LEVELS as u32 - 1);
        while (1u64 << level) > end - at {
            level -= 1;
        }
        let node = (level, at >> level);
        at += 1 << level;
        Some(node)
    })
}

/// Which version of a block a query wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// The newest version `v` with `above < v <= max`.
    NewestIn { above: u64, max: u64 },
    /// The oldest version `v >= min`.
    OldestFrom { min: u64 },
}

/// A candidate found by a query: blocks `[lba, lba + n)` are held at `loc`
/// (location of `lba`; `ZERO_LOC` for zeroes) by `version`. Candidates from
/// different levels overlap; the caller keeps, per block, the best one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub lba: u64,
    pub n: u64,
    pub version: u64,
    pub loc: u64,
}

/// Versioned extent map (see the module documentation).
#[derive(Debug)]
pub struct VersionIndex {
    tree: BTree<u128, u64>,
    level_entries: [u64; LEVELS],
    /// Where the next [`VersionIndex::sweep_step`] looks (`None`: the first leaf).
    sweep_at: Option<u128>,
}

impl VersionIndex {
    pub fn new(source: Arc<dyn ChunkSource>) -> Self {
        VersionIndex {
            tree: BTree::new(source),
            level_entries: [0; LEVELS],
            sweep_at: None,
        }
    }

    /// Records that `version` holds blocks `[lba, lba + n)` at `loc` (the
    /// location of `lba`, consecutive blocks at consecutive locations).
    pub fn insert(&mut self, lba: u64, n: u64, version: u64, loc: u64) {
        assert!(n > 0, "empty extent");
        for (level, index) in canonical_nodes(lba, n) {
            let start = index << level;
            let node_loc = if loc == ZERO_LOC {
                ZERO_LOC
            } else {
                loc + (start - lba)
            };
            let previous = self
                .tree
                .insert(key(node_key(level, index), version), node_loc);
            assert!(
                previous.is_none(),
                "version {version} inserted twice for node {level}/{index}"
            );
            self.level_entries[level as usize] += 1;
        }
    }

    /// Forgets the extent inserted with exactly these `lba`, `n` and `version`.
    pub fn remove(&mut self, lba: u64, n: u64, version: u64) {
        for (level, index) in canonical_nodes(lba, n) {
            let removed = self.tree.remove(&key(node_key(level, index), version));
            assert!(
                removed.is_some(),
                "removing version {version} of node {level}/{index} that is not there"
            );
            self.level_entries[level as usize] -= 1;
        }
    }

    /// Removes, from one leaf of the tree, every entry whose version `dead`
    /// is true of, and moves on to the next leaf (after the last, back to the
    /// first). Repeated calls walk the whole map, so a caller that forgets
    /// versions in bulk (see the forward ring index) pays a bounded step per
    /// call instead of a tree search per entry. Returns how many went.
    pub fn sweep_step(&mut self, dead: impl Fn(u64) -> bool) -> usize {
        let Some(at) = self.sweep_at.or_else(|| self.tree.first().map(|(k, _)| k)) else {
            return 0;
        };
        let level_entries = &mut self.level_entries;
        let (removed, next) = self.tree.sweep_leaf(&at, |k, _| {
            let (level, _, version) = split_key(*k);
            let gone = dead(version);
            if gone {
                level_entries[level as usize] -= 1;
            }
            gone
        });
        self.sweep_at = next;
        removed
    }

    /// After a caller made `dropped` more entries dead (`stale` dead entries
    /// in all, `dead` telling them by version), sweeps one leaf per
    /// [`STALE_PER_SWEPT_LEAF`] of the new ones, stopping early once none is
    /// left; returns how many dead entries remain. The sweep then passes every
    /// leaf while at most that many entries per leaf die, and leaves are at
    /// least half full (16 entries), so dead entries stay below about a third
    /// of the live ones.
    pub fn sweep_after_drop(
        &mut self,
        dropped: usize,
        mut stale: usize,
        dead: impl Fn(u64) -> bool,
    ) -> usize {
        let mut leaves = dropped.div_ceil(STALE_PER_SWEPT_LEAF);
        while leaves > 0 && stale > 0 {
            stale -= self.sweep_step(&dead);
            leaves -= 1;
        }
        stale
    }

    /// Forgets every entry and gives the node memory back.
    pub fn clear(&mut self) {
        self.tree.clear();
        self.level_entries = [0; LEVELS];
        self.sweep_at = None;
    }

    /// Calls `found` with every candidate for blocks `[lba, lba + n)`.
    pub fn query(&self, lba: u64, n: u64, want: Want, mut found: impl FnMut(Candidate)) {
        if n == 0 {
            return;
        }
        let end = lba + n;
        for level in 0..LEVELS as u32 {
            if self.level_entries[level as usize] == 0 {
                continue;
            }
            let last = (end - 1) >> level;
            let mut index = lba >> level;
            while index <= last {
                if index < last {
                    // Skip straight to the next node of this level that has
                    // any entry. Not worth a search for the last node: the
                    // version search below checks its node anyway (so a
                    // one-block query costs one search per occupied level).
                    let Some((k, _)) = self.tree.first_at_or_after(&key(node_key(level, index), 0))
                    else {
                        break;
                    };
                    let (l, i, _) = split_key(k);
                    if l != level || i > last {
                        break;
                    }
                    index = i;
                }
                let node = node_key(level, index);
                let hit = match want {
                    Want::NewestIn { above, max } => self
                        .tree
                        .last_at_or_before(&key(node, max))
                        .filter(|(k, _)| (k >> 64) as u64 == node && (*k as u64) > above),
                    Want::OldestFrom { min } => self
                        .tree
                        .first_at_or_after(&key(node, min))
                        .filter(|(k, _)| (k >> 64) as u64 == node),
                };
                if let Some((k, loc)) = hit {
                    let start = index << level;
                    let node_end = start + (1 << level);
                    let (from, to) = (start.max(lba), node_end.min(end));
                    let loc = if loc == ZERO_LOC {
                        ZERO_LOC
                    } else {
                        loc + (from - start)
                    };
                    found(Candidate {
                        lba: from,
                        n: to - from,
                        version: k as u64,
                        loc,
                    });
                }
                index += 1;
            }
        }
    }

    /// Entries stored (canonical nodes of all extents).
    pub fn entries(&self) -> usize {
        self.tree.len()
    }

    /// Bytes of node memory reserved.
    pub fn memory_bytes(&self) -> usize {
        self.tree.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::arena::HeapChunks;
    use super::*;
    use proptest::prelude::*;

    fn index() -> VersionIndex {
        VersionIndex::new(Arc::new(HeapChunks::default()))
    }

    #[test]
    fn canonical_nodes_tile_the_extent() {
        for (lba, n) in [
            (0u64, 1u64),
            (0, 8),
            (3, 13),
            (5, 1),
            (1000, 777),
            ((1u64 << 40) + 3, 4096),
        ] {
            let mut at = lba;
            let mut per_level = [0u32; LEVELS];
            for (level, index) in canonical_nodes(lba, n) {
                assert_eq!(index << level, at, "nodes are contiguous and in order");
                at += 1 << level;
                per_level[level as usize] += 1;
            }
            assert_eq!(at, lba + n);
            assert!(
                per_level.iter().all(|&c| c <= 2),
                "at most two nodes per level"
            );
        }
    }

    /// Per-block best candidate under `want`.
    fn resolve(ix: &VersionIndex, lba: u64, n: u64, want: Want) -> Vec<Option<(u64, u64)>> {
        let mut best: Vec<Option<(u64, u64)>> = vec![None; n as usize];
        ix.query(lba, n, want, |c| {
            for b in 0..c.n {
                let slot = &mut best[(c.lba + b - lba) as usize];
                let loc = if c.loc == ZERO_LOC {
                    ZERO_LOC
                } else {
                    c.loc + b
                };
                let better = match (want, *slot) {
                    (_, None) => true,
                    (Want::NewestIn { .. }, Some((v, _))) => c.version > v,
                    (Want::OldestFrom { .. }, Some((v, _))) => c.version < v,
                };
                if better {
                    *slot = Some((c.version, loc));
                }
            }
        });
        best
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_a_per_block_model(
            extents in proptest::collection::vec((0u64..120, 1u64..40, 0u64..1000), 1..40),
            removals in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
            queries in proptest::collection::vec((0u64..150, 1u64..40, 0u64..45), 1..20),
        ) {
            let mut ix = index();
            // version = position in the list (unique), loc = 10_000 * version + offset
            let mut live: Vec<(u64, u64, u64)> = Vec::new();
            for (i, (lba, n, _)) in extents.iter().enumerate() {
                let loc = if i % 6 == 5 { ZERO_LOC } else { 10_000 * i as u64 };
                ix.insert(*lba, *n, i as u64, loc);
                live.push((*lba, *n, i as u64));
            }
            for r in removals {
                if live.is_empty() { break; }
                let (lba, n, v) = live.remove(r.index(live.len()));
                ix.remove(lba, n, v);
            }
            prop_assert_eq!(ix.entries(), live.iter().map(|(l, n, _)| canonical_nodes(*l, *n).count()).sum::<usize>());
            for (qlba, qn, bound) in queries {
                for want in [Want::NewestIn { above: bound / 4, max: bound }, Want::OldestFrom { min: bound }] {
                    let got = resolve(&ix, qlba, qn, want);
                    for b in 0..qn {
                        let block = qlba + b;
                        let mut expect: Option<(u64, u64)> = None;
                        for &(lba, n, v) in &live {
                            if block < lba || block >= lba + n { continue; }
                            let ok = match want { Want::NewestIn { above, max } => v > above && v <= max, Want::OldestFrom { min } => v >= min };
                            if !ok { continue; }
                            let better = match (want, expect) { (_, None) => true, (Want::NewestIn { .. }, Some((e, _))) => v > e, (Want::OldestFrom { .. }, Some((e, _))) => v < e };
                            if better {
                                let loc = if v % 6 == 5 { ZERO_LOC } else { 10_000 * v + (block - lba) };
                                expect = Some((v, loc));
                            }
                        }
                        prop_assert_eq!(got[b as usize], expect, "block {} want {:?}", block, want);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Sweeping the versions at or below a bound leaves the map equal,
        /// query for query, to one where those extents were removed one by one.
        #[test]
        fn sweeping_equals_removing(
            extents in proptest::collection::vec((0u64..300, 1u64..40), 1..200),
            dead_below in 0usize..220,
        ) {
            let (mut removed, mut swept) = (index(), index());
            for (v, (lba, n)) in extents.iter().enumerate() {
                removed.insert(*lba, *n, v as u64, 100 * v as u64);
                swept.insert(*lba, *n, v as u64, 100 * v as u64);
            }
            for (v, (lba, n)) in extents.iter().enumerate().take(dead_below) {
                removed.remove(*lba, *n, v as u64);
            }
            let dead = |v: u64| (v as usize) < dead_below;
            // One walk over every leaf, plus the step that wraps around.
            let leaves = swept.entries() + 1;
            for _ in 0..leaves {
                swept.sweep_step(dead);
            }
            prop_assert_eq!(swept.entries(), removed.entries());
            prop_assert_eq!(swept.level_entries, removed.level_entries);
            swept.tree.check_invariants();
            for want in [Want::NewestIn { above: 0, max: u64::MAX }, Want::OldestFrom { min: 0 }] {
                prop_assert_eq!(resolve(&swept, 0, 340, want), resolve(&removed, 0, 340, want));
            }
        }
    }

    #[test]
    fn hot_block_with_many_versions_stays_cheap() {
        let mut ix = index();
        for v in 0..100_000u64 {
            ix.insert(7, 1, v, v);
        }
        let mut hits = 0;
        ix.query(7, 1, Want::OldestFrom { min: 54_321 }, |c| {
            assert_eq!((c.version, c.loc), (54_321, 54_321));
            hits += 1;
        });
        ix.query(7, 1, Want::NewestIn { above: 0, max: 99 }, |c| {
            assert_eq!(c.version, 99);
            hits += 1;
        });
        assert_eq!(hits, 2);
    }
}
