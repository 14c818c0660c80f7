//! The backward journal's in-memory index: the retained generations, the
//! point the mirror holds, and the versioned map from volume blocks to the
//! undo data that restores them.
//!
//! A generation restores the state at its `point` for the blocks its sync
//! changed. The contents of block `b` at a retained point `p` older than the
//! mirror are in the *oldest* generation with point >= p that saved `b`
//! (nothing changed `b` between `p` and that generation's point), or in the
//! mirror when none did. Invariant: the map holds the extents of the
//! generations in `generations`, with version = generation point, plus
//! `stale` entries of expired generations (version < `dead_below`, below
//! every retained point) that no query returns; expiring a generation never
//! changes what a younger point resolves to.
//!
//! Expiry does not search the map for each extent it drops: it raises
//! `dead_below` and sweeps one leaf of the map per four entries dropped, as
//! the forward ring index does with truncation (see
//! `crate::engine::forward::index`): stale entries stay below about a third
//! of the live ones.

use crate::engine::map::arena::ChunkSource;
use crate::engine::map::version_index::{canonical_nodes, Candidate, VersionIndex, Want};
use crate::engine::ondisk::generation::GenerationRecord;
use crate::engine::point::{MarkerKind, Point, PointKind};
use crate::engine::twin::Absorb;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A committed generation and where its record sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    pub record: GenerationRecord,
    /// Logical backward descriptor position of the record and its length.
    pub desc_pos: u64,
    pub desc_blocks: u64,
}

impl Generation {
    /// The point this generation restores.
    pub fn point(&self) -> Point {
        Point {
            seq: self.record.point_seq,
            time_ns: self.record.point_time_ns,
            kind: PointKind::Snapshot {
                generation: self.record.id,
                marker: self.record.point_marker,
            },
            label: self.record.point_label.clone(),
        }
    }

    /// Undo blocks this generation holds.
    pub fn undo_blocks(&self) -> u64 {
        self.record
            .extents
            .iter()
            .map(|x| u64::from(x.nblocks))
            .sum()
    }
}

/// The point the mirror holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorPoint {
    pub seq: u64,
    pub time_ns: u64,
    pub marker: Option<MarkerKind>,
    pub label: Option<String>,
}

impl MirrorPoint {
    pub fn point(&self) -> Point {
        Point {
            seq: self.seq,
            time_ns: self.time_ns,
            kind: PointKind::Mirror {
                marker: self.marker,
            },
            label: self.label.clone(),
        }
    }
}

/// Changes to the backward index (made by the sync worker only).
#[derive(Debug)]
pub enum BackwardOp {
    Add(Arc<Generation>),
    /// Remove the generation whose point is this seq (always the oldest).
    Remove(u64),
    SetMirror(MirrorPoint),
}

/// See the module documentation.
#[derive(Debug)]
pub struct BackwardIndex {
    generations: BTreeMap<u64, Arc<Generation>>,
    /// (point time, point seq) of every generation, so "latest point at or
    /// before a time" is one range lookup. Times never decrease within a ring,
    /// but two rings may stamp neighbouring seqs a few microseconds out of
    /// order (seq and clock are read separately), and a damaged image may hold
    /// anything: ordering by time first keeps the lookup correct either way.
    by_time: BTreeSet<(u64, u64)>,
    /// Point seqs of the generations whose point carries a label.
    by_label: HashMap<String, BTreeSet<u64>>,
    mirror: MirrorPoint,
    map: VersionIndex,
    /// Every map entry with a version below this belongs to an expired generation.
    dead_below: u64,
    /// Map entries of expired generations not yet swept.
    stale: usize,
}

impl BackwardIndex {
    pub fn new(mirror: MirrorPoint, chunks: Arc<dyn ChunkSource>) -> Self {
        BackwardIndex {
            generations: BTreeMap::new(),
            by_time: BTreeSet::new(),
            by_label: HashMap::new(),
            mirror,
            map: VersionIndex::new(chunks),
            dead_below: 0,
            stale: 0,
        }
    }

    /// Retained generations by point seq, oldest first.
    pub fn generations(&self) -> &BTreeMap<u64, Arc<Generation>> {
        &self.generations
    }

    pub fn mirror(&self) -> &MirrorPoint {
        &self.mirror
    }

    /// The newest generation point at or before `time_ns` with `from <= point < to`.
    pub fn newest_at_or_before_time(
        &self,
        time_ns: u64,
        from: u64,
        to: u64,
    ) -> Option<&Arc<Generation>> {
        self.by_time
            .range(..=(time_ns, u64::MAX))
            .rev()
            .map(|&(_, seq)| seq)
            .find(|seq| (from..to).contains(seq))
            .and_then(|seq| self.generations.get(&seq))
    }

    /// The newest generation point with this label and `from <= point < to`.
    pub fn newest_with_label(&self, label: &str, from: u64, to: u64) -> Option<&Arc<Generation>> {
        self.by_label
            .get(label)?
            .range(from..to)
            .next_back()
            .and_then(|seq| self.generations.get(seq))
    }

    /// Bytes of map node memory reserved (stale entries included).
    pub fn map_memory_bytes(&self) -> usize {
        self.map.memory_bytes()
    }

    /// Map entries of retained generations.
    pub fn live_entries(&self) -> usize {
        self.map.entries() - self.stale
    }

    /// Map entries of expired generations still waiting for a sweep.
    pub fn stale_entries(&self) -> usize {
        self.stale
    }

    /// Calls `found` with every candidate for blocks `[lba, lba + n)` among
    /// the generations with point >= `min` (the map query `OldestFrom`).
    /// Costs nothing when no such generation is retained: the map's versions
    /// are exactly the retained points, so the query could find nothing. That
    /// is the usual case for a read of the present (`min` = the mirror's seq),
    /// where only a sync step between its undo record and its mirror
    /// checkpoint has a generation at the mirror's point.
    pub fn query_from(&self, lba: u64, n: u64, min: u64, found: impl FnMut(Candidate)) {
        if self.generations.range(min..).next().is_none() {
            return;
        }
        let min = min.max(self.dead_below);
        self.map.query(lba, n, Want::OldestFrom { min }, found);
    }
}

impl Absorb<BackwardOp> for BackwardIndex {
    fn absorb(&mut self, op: &BackwardOp) {
        match op {
            BackwardOp::Add(g) => {
                let point = g.record.point_seq;
                assert!(
                    point >= self.dead_below,
                    "generation point {point} added below an expired one ({})",
                    self.dead_below
                );
                if let Some((&newest, _)) = self.generations.last_key_value() {
                    assert!(
                        point > newest,
                        "generation point {point} added after {newest}"
                    );
                }
                for x in &g.record.extents {
                    self.map
                        .insert(x.lba, u64::from(x.nblocks), point, x.data_pos);
                }
                self.by_time.insert((g.record.point_time_ns, point));
                if let Some(label) = &g.record.point_label {
                    self.by_label
                        .entry(label.clone())
                        .or_default()
                        .insert(point);
                }
                self.generations.insert(point, Arc::clone(g));
            }
            BackwardOp::Remove(point) => {
                let oldest = self.generations.first_key_value().map(|(&p, _)| p);
                assert_eq!(oldest, Some(*point), "generations expire oldest first");
                if let Some(g) = self.generations.remove(point) {
                    self.by_time.remove(&(g.record.point_time_ns, *point));
                    if let Some(label) = &g.record.point_label {
                        if let Some(set) = self.by_label.get_mut(label) {
                            set.remove(point);
                            if set.is_empty() {
                                self.by_label.remove(label);
                            }
                        }
                    }
                    let dropped: usize = g
                        .record
                        .extents
                        .iter()
                        .map(|x| canonical_nodes(x.lba, u64::from(x.nblocks)).count())
                        .sum();
                    self.stale += dropped;
                    self.dead_below = point.saturating_add(1);
                    if self.generations.is_empty() {
                        self.map.clear();
                        self.stale = 0;
                        return;
                    }
                    let dead_below = self.dead_below;
                    self.stale = self
                        .map
                        .sweep_after_drop(dropped, self.stale, |version| version < dead_below);
                }
            }
            BackwardOp::SetMirror(m) => {
                assert!(m.seq >= self.mirror.seq, "the mirror never moves back");
                self.mirror = m.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::map::arena::HeapChunks;
    use crate::engine::ondisk::generation::UndoExtent;
    use proptest::prelude::RngExt;
    use proptest::test_runner::{RngAlgorithm, TestRng};

    fn generation(point: u64, extents: Vec<UndoExtent>) -> Arc<Generation> {
        Arc::new(Generation {
            record: GenerationRecord {
                id: point,
                point_seq: point,
                point_time_ns: point,
                point_marker: None,
                point_label: None,
                target_seq: point + 1,
                change_records: extents.len() as u64,
                data_start: 0,
                data_end: 0,
                extents,
            },
            desc_pos: 0,
            desc_blocks: 1,
        })
    }

    /// Generations added and expired oldest first: every query answers as a
    /// scan of the retained generations would, and the sweep keeps stale
    /// entries to a fraction of the live ones.
    #[test]
    fn expiry_by_sweeping_stays_exact_and_bounded() {
        let mirror = MirrorPoint {
            seq: 0,
            time_ns: 0,
            marker: None,
            label: None,
        };
        let mut ix = BackwardIndex::new(mirror, Arc::new(HeapChunks::default()));
        let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut random = move |bound: u64| rng.random_range(0..bound);
        let (window, blocks) = (300u64, 5_000u64);
        let mut worst = 0f64;
        // Point 0 is a real point (the first sync's): nothing is dead before an expiry.
        for point in 0..4_000u64 {
            // A generation's extents are disjoint (they are one sync's net change).
            let mut starts: Vec<u64> = (0..1 + random(12))
                .map(|_| random(blocks / 8) * 8)
                .collect();
            starts.sort_unstable();
            starts.dedup();
            let extents = starts
                .iter()
                .zip(0..)
                .map(|(&lba, i)| UndoExtent {
                    lba,
                    nblocks: 1 + random(6) as u32,
                    data_pos: point * 100 + i,
                })
                .collect();
            ix.absorb(&BackwardOp::Add(generation(point, extents)));
            if point >= window {
                ix.absorb(&BackwardOp::Remove(point - window));
            }
            let live: usize = ix
                .generations()
                .values()
                .flat_map(|g| &g.record.extents)
                .map(|x| canonical_nodes(x.lba, u64::from(x.nblocks)).count())
                .sum();
            assert_eq!(ix.live_entries(), live, "point {point}");
            if point > 4 * window {
                worst = worst.max(ix.stale_entries() as f64 / live as f64);
            }
            if point % 97 == 0 {
                let oldest = *ix.generations().keys().next().unwrap();
                for _ in 0..100 {
                    let lba = random(blocks);
                    let min = oldest.saturating_sub(window) + random(2 * window);
                    let mut got: Option<(u64, u64)> = None;
                    ix.query_from(lba, 1, min, |c| {
                        if got.is_none_or(|(v, _)| c.version < v) {
                            got = Some((c.version, c.loc));
                        }
                    });
                    let expect = ix.generations().range(min..).find_map(|(&p, g)| {
                        g.record.extents.iter().find_map(|x| {
                            let run = x.lba..x.lba + u64::from(x.nblocks);
                            run.contains(&lba).then(|| (p, x.data_pos + lba - x.lba))
                        })
                    });
                    assert_eq!(got, expect, "block {lba} from point {min}");
                }
            }
        }
        assert!(
            worst < 0.5,
            "stale entries reached {worst:.2} of the live ones"
        );
        for point in 4_000 - window..4_000 {
            ix.absorb(&BackwardOp::Remove(point));
        }
        assert_eq!((ix.live_entries(), ix.stale_entries()), (0, 0));
    }
}
