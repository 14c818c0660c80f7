//! The backward journal's in-memory index: the retained generations, the
//! point the mirror holds, and the versioned map from volume blocks to the
//! undo data that restores them.
//!
//! A generation restores the state at its `point` for the blocks its sync
//! changed. The contents of block `b` at a retained point `p` older than the
//! mirror are in the *oldest* generation with point >= p that saved `b`
//! (nothing changed `b` between `p` and that generation's point), or in the
//! mirror when none did. Invariant: the map holds exactly the extents of the
//! generations in `generations`, with version = generation point; expiring a
//! generation never changes what a younger point resolves to.

use crate::engine::map::arena::ChunkSource;
use crate::engine::map::version_index::{Candidate, VersionIndex, Want};
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
}

impl BackwardIndex {
    pub fn new(mirror: MirrorPoint, chunks: Arc<dyn ChunkSource>) -> Self {
        BackwardIndex {
            generations: BTreeMap::new(),
            by_time: BTreeSet::new(),
            by_label: HashMap::new(),
            mirror,
            map: VersionIndex::new(chunks),
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

    /// The versioned map (version = generation point, location = backward data position).
    pub fn map(&self) -> &VersionIndex {
        &self.map
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
        self.map.query(lba, n, Want::OldestFrom { min }, found);
    }
}

impl Absorb<BackwardOp> for BackwardIndex {
    fn absorb(&mut self, op: &BackwardOp) {
        match op {
            BackwardOp::Add(g) => {
                let point = g.record.point_seq;
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
                    for x in &g.record.extents {
                        self.map.remove(x.lba, u64::from(x.nblocks), *point);
                    }
                }
            }
            BackwardOp::SetMirror(m) => {
                assert!(m.seq >= self.mirror.seq, "the mirror never moves back");
                self.mirror = m.clone();
            }
        }
    }
}
