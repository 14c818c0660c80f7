//! One forward ring's in-memory index: its live records in seq order and the
//! versioned map from volume blocks to where the ring holds them.
//!
//! It lives inside a twin (one writer: the ring's owner; readers: every core)
//! and changes only through [`RingOp`]s. Invariants: records are in strictly
//! increasing seq order, all above `truncated`; the map holds the write and
//! zero records of `records` with version = seq, plus `stale` entries of
//! truncated records (version <= `truncated`) that no query returns.
//!
//! Truncation does not search the tree for each record it drops (that was a
//! tenth of a reactor's time under random writes, twice over for the twin's
//! two copies): it raises `truncated`, and each truncation then sweeps one
//! leaf of the map, in key order, per four entries it drops. The sweep thus
//! passes every leaf while at most four entries per leaf are dropped, and
//! leaves are at least half full (16 entries), so stale entries stay below
//! about a third of the live ones. A truncation that empties the ring clears
//! the map outright.

use crate::engine::map::arena::ChunkSource;
use crate::engine::map::version_index::{canonical_nodes, Candidate, VersionIndex, Want, ZERO_LOC};
use crate::engine::ondisk::forward_block::{ForwardRecord, RecordBody};
use crate::engine::twin::Absorb;
use std::collections::VecDeque;
use std::sync::Arc;

/// A record and the descriptor block that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedRecord {
    pub record: ForwardRecord,
    pub desc_pos: u64,
}

/// Changes to a ring index.
#[derive(Debug)]
pub enum RingOp {
    /// Durable records, in seq order, newer than every record already present.
    Append(Vec<IndexedRecord>),
    /// Drop every record with seq at or below this (the mirror holds them now).
    TruncateThrough(u64),
}

/// See the module documentation.
#[derive(Debug)]
pub struct RingIndex {
    pub ring: u16,
    records: VecDeque<IndexedRecord>,
    /// Seqs and labels of the labelled markers among `records` (few), for label lookups.
    bookmarks: VecDeque<(u64, Box<str>)>,
    /// Seqs of every marker among `records`, so the sync worker finds its
    /// target without scanning the window (it reads inside the twin, and a
    /// long read holds up the ring owner's publish).
    markers: VecDeque<u64>,
    map: VersionIndex,
    /// Every record with seq at or below this has been truncated.
    truncated: u64,
    /// Map entries of truncated records not yet swept.
    stale: usize,
}

impl RingIndex {
    pub fn new(ring: u16, chunks: Arc<dyn ChunkSource>) -> Self {
        RingIndex {
            ring,
            records: VecDeque::new(),
            bookmarks: VecDeque::new(),
            markers: VecDeque::new(),
            map: VersionIndex::new(chunks),
            truncated: 0,
            stale: 0,
        }
    }

    fn map_insert(map: &mut VersionIndex, r: &ForwardRecord) {
        match r.body {
            RecordBody::Write {
                lba,
                nblocks,
                data_pos,
                ..
            } => map.insert(lba, u64::from(nblocks), r.seq, data_pos),
            RecordBody::Zero { lba, nblocks } => {
                map.insert(lba, u64::from(nblocks), r.seq, ZERO_LOC)
            }
            RecordBody::Marker { .. } => {}
        }
    }

    /// Calls `found` with every candidate for blocks `[lba, lba + n)` among
    /// the live records with `above < seq <= max` (version = seq, location =
    /// ring data position; see [`VersionIndex::query`]).
    pub fn query(&self, lba: u64, n: u64, above: u64, max: u64, found: impl FnMut(Candidate)) {
        let above = above.max(self.truncated);
        self.map.query(lba, n, Want::NewestIn { above, max }, found);
    }

    /// Map entries of live records.
    pub fn live_entries(&self) -> usize {
        self.map.entries() - self.stale
    }

    /// Map entries of truncated records still waiting for a sweep.
    pub fn stale_entries(&self) -> usize {
        self.stale
    }

    /// All live records, oldest first.
    pub fn records(&self) -> &VecDeque<IndexedRecord> {
        &self.records
    }

    /// Records with `above < seq <= max`.
    pub fn records_in(
        &self,
        above: u64,
        max: u64,
    ) -> impl DoubleEndedIterator<Item = &IndexedRecord> {
        let from = self.records.partition_point(|r| r.record.seq <= above);
        let to = self.records.partition_point(|r| r.record.seq <= max);
        self.records.range(from..to.max(from))
    }

    /// The newest record with `seq <= max` and `time <= time_ns` (times never
    /// decrease within a ring).
    pub fn newest_at_or_before(&self, max: u64, time_ns: u64) -> Option<&IndexedRecord> {
        let by_seq = self.records.partition_point(|r| r.record.seq <= max);
        let by_time = self
            .records
            .partition_point(|r| r.record.time_ns <= time_ns);
        by_seq
            .min(by_time)
            .checked_sub(1)
            .and_then(|i| self.records.get(i))
    }

    /// The newest marker with `above < seq <= max`.
    pub fn newest_marker_in(&self, above: u64, max: u64) -> Option<u64> {
        let to = self.markers.partition_point(|&seq| seq <= max);
        let seq = *self.markers.get(to.checked_sub(1)?)?;
        (seq > above).then_some(seq)
    }

    /// The newest marker with this label and `seq <= max`.
    pub fn newest_label(&self, label: &str, max: u64) -> Option<&IndexedRecord> {
        let (seq, _) = self
            .bookmarks
            .iter()
            .rev()
            .find(|(seq, l)| *seq <= max && &**l == label)?;
        let at = self.records.partition_point(|r| r.record.seq < *seq);
        self.records.get(at).filter(|r| r.record.seq == *seq)
    }

    /// Where to truncate next on the way to `through`, dropping at most
    /// `max_records` records (bounds the work of one publish).
    pub fn truncation_step(&self, through: u64, max_records: usize) -> u64 {
        assert!(max_records > 0);
        match self.records.get(max_records - 1) {
            Some(r) if r.record.seq < through => r.record.seq,
            _ => through,
        }
    }

    /// Newest record seq, if any.
    pub fn newest_seq(&self) -> Option<u64> {
        self.records.back().map(|r| r.record.seq)
    }
}

impl Absorb<RingOp> for RingIndex {
    fn absorb(&mut self, op: &RingOp) {
        match op {
            RingOp::Append(batch) => {
                for r in batch {
                    assert!(
                        r.record.seq > self.truncated,
                        "ring {}: seq {} appended after truncating through {}",
                        self.ring,
                        r.record.seq,
                        self.truncated
                    );
                    if let Some(last) = self.records.back() {
                        assert!(
                            r.record.seq > last.record.seq,
                            "ring {}: seq {} appended after {}",
                            self.ring,
                            r.record.seq,
                            last.record.seq
                        );
                        assert!(
                            r.desc_pos >= last.desc_pos,
                            "ring {}: descriptor positions go backwards",
                            self.ring
                        );
                    }
                    Self::map_insert(&mut self.map, &r.record);
                    if let RecordBody::Marker { label, .. } = &r.record.body {
                        self.markers.push_back(r.record.seq);
                        if let Some(label) = label {
                            self.bookmarks.push_back((r.record.seq, label.clone()));
                        }
                    }
                    self.records.push_back(r.clone());
                }
            }
            RingOp::TruncateThrough(seq) => {
                while self.bookmarks.front().is_some_and(|(s, _)| s <= seq) {
                    self.bookmarks.pop_front();
                }
                while self.markers.front().is_some_and(|s| s <= seq) {
                    self.markers.pop_front();
                }
                let mut dropped = 0usize;
                while self.records.front().is_some_and(|r| r.record.seq <= *seq) {
                    let Some(r) = self.records.pop_front() else {
                        break;
                    };
                    if let Some((lba, n)) = r.record.extent() {
                        dropped += canonical_nodes(lba, u64::from(n)).count();
                    }
                }
                self.truncated = self.truncated.max(*seq);
                self.stale += dropped;
                if self.records.is_empty() {
                    self.map.clear();
                    self.stale = 0;
                    return;
                }
                let truncated = self.truncated;
                self.stale = self
                    .map
                    .sweep_after_drop(dropped, self.stale, |version| version <= truncated);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::map::arena::HeapChunks;
    use crate::engine::point::MarkerKind;
    use proptest::prelude::RngExt;
    use proptest::test_runner::{RngAlgorithm, TestRng};

    fn rec(seq: u64, lba: u64, desc_pos: u64) -> IndexedRecord {
        IndexedRecord {
            record: ForwardRecord {
                seq,
                time_ns: seq * 10,
                body: RecordBody::Write {
                    lba,
                    nblocks: 2,
                    data_pos: seq * 2,
                    data_crc: 0,
                },
            },
            desc_pos,
        }
    }

    /// A sliding window of random writes: the map answers exactly as the
    /// records do, and the sweep keeps stale entries to a fraction of the live.
    #[test]
    fn truncation_by_sweeping_stays_exact_and_bounded() {
        let mut ix = RingIndex::new(0, Arc::new(HeapChunks::default()));
        let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut random = move |bound: u64| rng.random_range(0..bound);
        let (window, blocks) = (3000u64, 20_000u64);
        let mut worst = 0f64;
        for seq in 1..=40_000u64 {
            let lba = random(blocks);
            let nblocks = 1 + random(4) as u32;
            ix.absorb(&RingOp::Append(vec![IndexedRecord {
                record: ForwardRecord {
                    seq,
                    time_ns: seq,
                    body: RecordBody::Write {
                        lba,
                        nblocks,
                        data_pos: seq * 4,
                        data_crc: 0,
                    },
                },
                desc_pos: seq,
            }]));
            if seq % 97 == 0 && seq > window {
                ix.absorb(&RingOp::TruncateThrough(seq - window));
                let live: usize = ix
                    .records()
                    .iter()
                    .filter_map(|r| r.record.extent())
                    .map(|(lba, n)| canonical_nodes(lba, u64::from(n)).count())
                    .sum();
                assert_eq!(ix.live_entries(), live);
                if seq > 4 * window {
                    worst = worst.max(ix.stale_entries() as f64 / live as f64);
                }
            }
            if seq % 1009 == 0 {
                for probe in 0..200 {
                    let lba = random(blocks);
                    let max = seq.saturating_sub(random(window));
                    let mut got: Option<u64> = None;
                    ix.query(lba, 1, 0, max, |c| got = got.max(Some(c.version)));
                    let expect = ix
                        .records()
                        .iter()
                        .rev()
                        .filter(|r| r.record.seq <= max)
                        .find(|r| {
                            r.record
                                .extent()
                                .is_some_and(|(l, n)| (l..l + u64::from(n)).contains(&lba))
                        })
                        .map(|r| r.record.seq);
                    assert_eq!(got, expect, "probe {probe}: block {lba} at seq {max}");
                }
            }
        }
        eprintln!("worst stale/live: {worst:.3}");
        assert!(
            worst < 0.5,
            "stale entries reached {worst:.2} of the live ones"
        );
        ix.absorb(&RingOp::TruncateThrough(u64::MAX));
        assert_eq!((ix.live_entries(), ix.stale_entries()), (0, 0));
    }

    #[test]
    fn append_query_truncate() {
        let mut ix = RingIndex::new(0, Arc::new(HeapChunks::default()));
        ix.absorb(&RingOp::Append(vec![
            rec(3, 0, 1),
            rec(5, 1, 1),
            rec(8, 0, 2),
        ]));
        ix.absorb(&RingOp::Append(vec![IndexedRecord {
            record: ForwardRecord {
                seq: 9,
                time_ns: 95,
                body: RecordBody::Marker {
                    kind: MarkerKind::Bookmark,
                    label: Some("x".into()),
                },
            },
            desc_pos: 3,
        }]));
        assert_eq!(
            ix.records_in(3, 8)
                .map(|r| r.record.seq)
                .collect::<Vec<_>>(),
            vec![5, 8]
        );
        assert_eq!(
            ix.newest_at_or_before(100, 79).map(|r| r.record.seq),
            Some(5)
        );
        assert_eq!(ix.newest_label("x", 100).map(|r| r.record.seq), Some(9));
        assert_eq!(ix.newest_marker_in(0, 100), Some(9));
        assert_eq!(ix.newest_marker_in(0, 8), None, "no marker at or below 8");
        assert_eq!(ix.newest_marker_in(9, 100), None, "none above 9");
        let mut hits = vec![];
        ix.query(1, 1, 0, 7, |c| hits.push(c.version));
        hits.sort();
        assert_eq!(
            hits,
            vec![3, 5],
            "block 1 is covered by seq 3 (node 0..2) and seq 5"
        );
        ix.absorb(&RingOp::TruncateThrough(5));
        assert_eq!(ix.records().len(), 2);
        assert_eq!(ix.live_entries(), 1, "only seq 8's extent remains mapped");
        let mut hits = vec![];
        ix.query(0, 2, 0, 100, |c| hits.push(c.version));
        assert_eq!(hits, vec![8], "truncated seqs are never found");
        ix.absorb(&RingOp::TruncateThrough(9));
        assert_eq!(
            ix.newest_marker_in(0, 100),
            None,
            "truncated with its record"
        );
    }
}
