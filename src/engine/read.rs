//! Reading the volume at a point in time, listing points and resolving them.
//!
//! A [`Reader`] belongs to one thread (a reactor core, a tool). A read opens a
//! grace section, decides block by block where the bytes of the requested
//! point live — a forward ring, the backward journal, the mirror, or zeroes —
//! submits the device reads, and closes the section when they complete, so the
//! sync worker never overwrites or recycles bytes under it.
//!
//! Resolution rule, for a point `s` (or Now) and the mirror seq `m`:
//! - `s >= m`: the newest forward record with `m < seq <= s` covering the
//!   block; else the contents at `m`: the oldest generation with point `>= m`
//!   that saved the block (only while a sync is rewriting the mirror), else
//!   the mirror.
//! - `s < m`: `s` must be a retained generation point; the oldest generation
//!   with point `>= s` that saved the block, else the mirror.
//!
//! Invariant 5 (DESIGN.md): every listed point reads back byte-exact.

use crate::device::{AlignedBuf, DeviceQueue, IoCompletion, IoKind, IoRequest};
use crate::engine::backward::index::BackwardIndex;
use crate::engine::error::{EngineError, Result};
use crate::engine::forward::index::{IndexedRecord, RingIndex};
use crate::engine::grace::{GraceReader, Section};
use crate::engine::map::version_index::ZERO_LOC;
use crate::engine::ondisk::forward_block::RecordBody;
use crate::engine::point::{At, Point, PointKind};
use crate::engine::state::VolumeState;
use crate::engine::twin::TwinReader;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest single read, in bytes.
pub const MAX_READ_BYTES: u64 = 8 << 20;

/// A resolved point to read at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAt {
    /// Every acknowledged write.
    Now,
    /// The retained point with exactly this seq.
    Seq(u64),
}

/// The outcome of one submitted read.
#[derive(Debug)]
pub struct ReadCompletion {
    pub tag: u64,
    pub result: Result<()>,
    /// The caller's buffer, filled on success.
    pub buf: AlignedBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    None,
    Mim,
    Zero,
    Fwd { ring: u16, pos: u64 },
    Bwd { pos: u64 },
}

/// One device read of a request: `len` bytes at device `offset` into the
/// request's buffer (held in `slots[slot]`) at `buf_offset`.
#[derive(Clone, Copy, Debug)]
struct Piece {
    slot: usize,
    buf_offset: usize,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Pending {
    tag: u64,
    buf: AlignedBuf,
    section: Section,
    ios_left: u32,
    error: Option<EngineError>,
}

/// A per-thread read handle (see the module documentation).
pub struct Reader {
    state: Arc<VolumeState>,
    queue: Box<dyn DeviceQueue>,
    grace: GraceReader,
    rings: Vec<TwinReader<RingIndex>>,
    backward: TwinReader<BackwardIndex>,
    /// Per block of the current request: newest forward hit and oldest backward hit.
    fwd: Vec<(u64, Src)>,
    bwd: Vec<(u64, Src)>,
    slots: Vec<Option<Pending>>,
    free_slots: Vec<usize>,
    /// Device reads not yet handed to the queue (it was full).
    backlog: VecDeque<Piece>,
    done: VecDeque<ReadCompletion>,
    io: Vec<IoCompletion>,
    next_internal_tag: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("in_flight", &(self.slots.len() - self.free_slots.len()))
            .finish()
    }
}

fn record_point(r: &IndexedRecord) -> Point {
    let (kind, label) = match &r.record.body {
        RecordBody::Marker { kind, label } => (
            PointKind::Marker(*kind),
            label.as_deref().map(str::to_string),
        ),
        _ => (PointKind::Write, None),
    };
    Point {
        seq: r.record.seq,
        time_ns: r.record.time_ns,
        kind,
        label,
    }
}

impl Reader {
    pub(crate) fn new(state: Arc<VolumeState>) -> Result<Self> {
        let queue = state.device.queue(state.config.queue_depth)?;
        let grace = state
            .grace
            .register()
            .ok_or(EngineError::Busy(crate::engine::grace::MAX_READERS))?;
        let rings = state.ring_readers()?;
        let backward = state
            .backward
            .reader()
            .ok_or(EngineError::Busy(crate::engine::twin::MAX_TWIN_READERS))?;
        Ok(Reader {
            state,
            queue,
            grace,
            rings,
            backward,
            fwd: Vec::new(),
            bwd: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            backlog: VecDeque::new(),
            done: VecDeque::new(),
            io: Vec::new(),
            next_internal_tag: 1 << 63,
        })
    }

    fn check_extent(&self, lba: u64, nblocks: u64) -> Result<()> {
        let g = &self.state.layout.geometry;
        if nblocks == 0 {
            return Err(EngineError::ZeroLength);
        }
        let max = (MAX_READ_BYTES / g.bs()) as u32;
        if nblocks > u64::from(max) {
            return Err(EngineError::TooLarge { nblocks, max });
        }
        if lba
            .checked_add(nblocks)
            .is_none_or(|end| end > g.volume_blocks)
        {
            return Err(EngineError::OutOfRange {
                lba,
                nblocks: nblocks as u32,
                volume_blocks: g.volume_blocks,
            });
        }
        Ok(())
    }

    /// Decides the source of every block of `[lba, lba + n)` at `at`, leaving
    /// the answer in `self.fwd` (final sources). Must run inside a section.
    fn plan(&mut self, lba: u64, n: u64, at: ReadAt) -> Result<()> {
        let m = self.state.mim_seq.load(Ordering::SeqCst);
        let floor = self.state.floor_seq.load(Ordering::SeqCst);
        let n_usize = n as usize;
        self.fwd.clear();
        self.fwd.resize(n_usize, (0, Src::None));
        self.bwd.clear();
        self.bwd.resize(n_usize, (u64::MAX, Src::None));
        let bwd_from = match at {
            ReadAt::Seq(s) if s < floor => return Err(EngineError::Expired(s)),
            ReadAt::Seq(s) if s < m => s,
            _ => {
                let max = match at {
                    ReadAt::Now => u64::MAX,
                    ReadAt::Seq(s) => s,
                };
                let fwd = &mut self.fwd;
                for (ring, reader) in self.rings.iter_mut().enumerate() {
                    reader.read(|ix| {
                        ix.query(lba, n, m, max, |c| {
                            for i in 0..c.n {
                                let slot = &mut fwd[(c.lba + i - lba) as usize];
                                if slot.1 == Src::None || c.version > slot.0 {
                                    let src = if c.loc == ZERO_LOC {
                                        Src::Zero
                                    } else {
                                        Src::Fwd {
                                            ring: ring as u16,
                                            pos: c.loc + i,
                                        }
                                    };
                                    *slot = (c.version, src);
                                }
                            }
                        })
                    });
                }
                m
            }
        };
        let bwd = &mut self.bwd;
        let point_retained = self.backward.read(|b| {
            if bwd_from < m && !b.generations().contains_key(&bwd_from) {
                return false;
            }
            b.query_from(lba, n, bwd_from, |c| {
                for i in 0..c.n {
                    let slot = &mut bwd[(c.lba + i - lba) as usize];
                    if c.version < slot.0 {
                        *slot = (c.version, Src::Bwd { pos: c.loc + i });
                    }
                }
            });
            true
        });
        if !point_retained {
            return Err(EngineError::Expired(bwd_from));
        }
        for i in 0..n_usize {
            if self.fwd[i].1 == Src::None {
                self.fwd[i].1 = if self.bwd[i].1 == Src::None {
                    Src::Mim
                } else {
                    self.bwd[i].1
                };
            }
        }
        Ok(())
    }

    /// Submits a read of `buf.len()` bytes (whole blocks) at `lba` as of `at`.
    /// On refusal the buffer comes back with the error.
    pub fn submit_read(
        &mut self,
        lba: u64,
        at: ReadAt,
        mut buf: AlignedBuf,
        tag: u64,
    ) -> std::result::Result<(), (EngineError, AlignedBuf)> {
        let bs = self.state.layout.geometry.bs();
        if !(buf.len() as u64).is_multiple_of(bs) {
            let e = EngineError::BufferSize {
                len: buf.len(),
                nblocks: (buf.len() as u64 / bs) as u32,
                block_size: bs as u32,
            };
            return Err((e, buf));
        }
        let n = buf.len() as u64 / bs;
        if let Err(e) = self.check_extent(lba, n) {
            return Err((e, buf));
        }
        let section = self.grace.open();
        if let Err(e) = self.plan(lba, n, at) {
            self.grace.close(section);
            return Err((e, buf));
        }
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let layout = &self.state.layout;
        let mut ios = 0u32;
        let mut i = 0usize;
        let n = n as usize;
        while i < n {
            let start = self.fwd[i].1;
            let mut len = 1usize;
            while i + len < n && continues(layout, self.fwd[i + len - 1].1, self.fwd[i + len].1) {
                len += 1;
            }
            let bytes = &mut buf[i * bs as usize..(i + len) * bs as usize];
            let offset = match start {
                Src::Zero => {
                    bytes.fill(0);
                    None
                }
                Src::Mim => Some(layout.mim_byte(lba + i as u64)),
                Src::Fwd { ring, pos } => Some(layout.ring_data_byte(usize::from(ring), pos)),
                Src::Bwd { pos } => Some(layout.backward_data_byte(pos)),
                Src::None => unreachable!("plan leaves no block without a source"),
            };
            if let Some(offset) = offset {
                self.backlog.push_back(Piece {
                    slot,
                    buf_offset: i * bs as usize,
                    offset,
                    len: bytes.len() as u32,
                });
                ios += 1;
            }
            i += len;
        }
        self.slots[slot] = Some(Pending {
            tag,
            buf,
            section,
            ios_left: ios,
            error: None,
        });
        if ios == 0 {
            self.finish(slot);
        }
        self.submit_backlog();
        Ok(())
    }

    /// Hands waiting device requests to the queue while it has room.
    fn submit_backlog(&mut self) {
        while let Some(piece) = self.backlog.front().copied() {
            let Some(Some(pending)) = self.slots.get_mut(piece.slot) else {
                unreachable!("a backlog piece outlived its read");
            };
            assert!(piece.buf_offset + piece.len as usize <= pending.buf.len());
            // SAFETY: in bounds (asserted); the buffer stays in `slots` until every
            // piece of its read has completed (`ios_left` counts them).
            let ptr = unsafe { pending.buf.as_mut_ptr().add(piece.buf_offset) };
            let req = IoRequest {
                kind: IoKind::Read,
                offset: piece.offset,
                ptr,
                len: piece.len,
                tag: piece.slot as u64,
            };
            // SAFETY: as above; pieces of one read cover disjoint ranges.
            if unsafe { self.queue.submit(req) }.is_err() {
                break; // full: more room after the next completions
            }
            self.backlog.pop_front();
        }
    }

    /// Collects device completions (blocking for one when `block`), then refills the queue.
    fn collect(&mut self, block: bool) {
        self.io.clear();
        if block {
            self.queue.wait(&mut self.io);
        } else {
            self.queue.poll(&mut self.io);
        }
        let io = std::mem::take(&mut self.io);
        for c in &io {
            self.on_io(c);
        }
        self.io = io;
        self.submit_backlog();
    }

    fn finish(&mut self, slot: usize) {
        if let Some(p) = self.slots[slot].take() {
            self.grace.close(p.section);
            self.free_slots.push(slot);
            let result = match p.error {
                Some(e) => Err(e),
                None => Ok(()),
            };
            self.done.push_back(ReadCompletion {
                tag: p.tag,
                result,
                buf: p.buf,
            });
        }
    }

    fn on_io(&mut self, c: &IoCompletion) {
        let slot = c.tag as usize;
        let Some(Some(p)) = self.slots.get_mut(slot) else {
            debug_assert!(false, "read completion for unknown slot {slot}");
            return;
        };
        assert!(p.ios_left > 0);
        p.ios_left -= 1;
        if let Err(e) = &c.result {
            p.error.get_or_insert(EngineError::Device(e.clone()));
        }
        if p.ios_left == 0 {
            self.finish(slot);
        }
    }

    /// Moves finished reads into `out` without blocking; returns how many.
    pub fn poll(&mut self, out: &mut Vec<ReadCompletion>) -> usize {
        self.collect(false);
        let before = out.len();
        let mut i = 0;
        while i < self.done.len() {
            if self.done[i].tag >= 1 << 63 {
                i += 1;
            } else if let Some(c) = self.done.remove(i) {
                out.push(c);
            }
        }
        out.len() - before
    }

    /// Reads `nblocks` at `lba` as of `at` and waits; returns the point that
    /// served the read and the bytes.
    pub fn read(&mut self, lba: u64, nblocks: u64, at: &At) -> Result<(Point, Vec<u8>)> {
        // A sync may coalesce the resolved point before the read starts:
        // resolve again (a handful of times at most; syncs are not that fast).
        let mut attempts = 0;
        loop {
            let point = self.resolve(at)?;
            let read_at = if *at == At::Now {
                ReadAt::Now
            } else {
                ReadAt::Seq(point.seq)
            };
            match self.read_at(lba, nblocks, read_at) {
                Ok(bytes) => return Ok((point, bytes)),
                Err(EngineError::Expired(_)) if attempts < 8 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads at an already resolved point and waits.
    pub fn read_at(&mut self, lba: u64, nblocks: u64, at: ReadAt) -> Result<Vec<u8>> {
        let bs = self.state.layout.geometry.bs();
        let len = nblocks
            .checked_mul(bs)
            .filter(|l| *l <= MAX_READ_BYTES)
            .ok_or(EngineError::TooLarge {
                nblocks,
                max: (MAX_READ_BYTES / bs) as u32,
            })?;
        let tag = self.next_internal_tag;
        self.next_internal_tag += 1;
        self.submit_read(lba, at, AlignedBuf::zeroed(len as usize), tag)
            .map_err(|(e, _)| e)?;
        loop {
            if let Some(i) = self.done.iter().position(|c| c.tag == tag) {
                let c = self.done.remove(i).ok_or(EngineError::Closed)?;
                c.result?;
                return Ok(c.buf.to_vec());
            }
            self.collect(true);
        }
    }

    /// Retained generations, backward map bytes, and the descriptor and data
    /// blocks the retained generations span.
    pub(crate) fn backward_summary(&mut self) -> (u64, usize, u64, u64) {
        self.backward.read(|b| {
            let gens = b.generations();
            let (first, last) = (gens.values().next(), gens.values().next_back());
            let (desc, data) = match (first, last) {
                (Some(f), Some(l)) => (
                    l.desc_pos + l.desc_blocks - f.desc_pos,
                    l.record.data_end - f.record.data_start,
                ),
                _ => (0, 0),
            };
            (gens.len() as u64, b.map_memory_bytes(), desc, data)
        })
    }

    /// The retained generations, oldest first.
    pub fn generations(&mut self) -> Vec<Arc<crate::engine::backward::index::Generation>> {
        self.backward
            .read(|b| b.generations().values().cloned().collect())
    }

    // ---- points in time ----

    /// Every retained point, oldest first: snapshot generations, the mirror's
    /// point, then every write and marker of the forward window that is stable.
    pub fn points(&mut self) -> Vec<Point> {
        // One section across the backward and ring reads: no sync can move the
        // mirror, truncate rings and recycle space in between (it waits for us).
        let section = self.grace.open();
        let points = self.points_in_section();
        self.grace.close(section);
        points
    }

    fn points_in_section(&mut self) -> Vec<Point> {
        let stable = self.state.stable_seq();
        // Generations below the floor are being expired: no longer listed (and no longer readable).
        let floor = self.state.floor_seq.load(Ordering::SeqCst);
        let (mut points, m) = self.backward.read(|b| {
            let m = b.mirror().seq;
            let mut v: Vec<Point> = b
                .generations()
                .values()
                .filter(|g| g.record.point_seq < m && g.record.point_seq >= floor)
                .map(|g| g.point())
                .collect();
            v.push(b.mirror().point());
            (v, m)
        });
        let mut forward: Vec<Point> = Vec::new();
        for r in &mut self.rings {
            r.read(|ix| forward.extend(ix.records_in(m, stable).map(record_point)));
        }
        forward.sort_by_key(|p| p.seq);
        points.extend(forward);
        points
    }

    /// The actual retained point that serves a request for `at`.
    pub fn resolve(&mut self, at: &At) -> Result<Point> {
        let section = self.grace.open();
        let point = self.resolve_in_section(at);
        self.grace.close(section);
        point
    }

    fn resolve_in_section(&mut self, at: &At) -> Result<Point> {
        let stable = self.state.stable_seq();
        let floor = self.state.floor_seq.load(Ordering::SeqCst);
        let (mirror, oldest) = self.backward.read(|b| {
            let oldest = b
                .generations()
                .values()
                .find(|g| g.record.point_seq >= floor)
                .map(|g| g.point());
            (b.mirror().clone(), oldest)
        });
        let m = mirror.seq;
        let oldest = oldest
            .filter(|p| p.seq < m)
            .unwrap_or_else(|| mirror.point());
        // The newest forward point satisfying `keep`, across rings.
        let newest_forward = |rings: &mut Vec<TwinReader<RingIndex>>,
                              pick: &dyn Fn(&RingIndex) -> Option<Point>|
         -> Option<Point> {
            rings
                .iter_mut()
                .filter_map(|r| r.read(|ix| pick(ix)))
                .filter(|p| p.seq > m)
                .max_by_key(|p| p.seq)
        };
        match at {
            At::Now => Ok(newest_forward(&mut self.rings, &|ix| {
                ix.newest_at_or_before(stable, u64::MAX).map(record_point)
            })
            .unwrap_or_else(|| mirror.point())),
            At::Seq(n) => {
                let n = *n;
                if n > stable {
                    return Err(EngineError::InFuture {
                        requested: n,
                        newest: stable,
                    });
                }
                if n < oldest.seq {
                    return Err(EngineError::BeforeRetention {
                        requested: n,
                        oldest: oldest.seq,
                    });
                }
                if n >= m {
                    return Ok(newest_forward(&mut self.rings, &|ix| {
                        ix.newest_at_or_before(n, u64::MAX).map(record_point)
                    })
                    .unwrap_or_else(|| mirror.point()));
                }
                self.backward
                    .read(|b| {
                        b.generations()
                            .range(oldest.seq..=n)
                            .next_back()
                            .map(|(_, g)| g.point())
                    })
                    .ok_or(EngineError::Expired(n))
            }
            At::Time(t) => {
                let t = *t;
                if let Some(p) = newest_forward(&mut self.rings, &|ix| {
                    ix.newest_at_or_before(stable, t).map(record_point)
                }) {
                    return Ok(p);
                }
                if mirror.time_ns <= t {
                    return Ok(mirror.point());
                }
                let found = self.backward.read(|b| {
                    b.newest_at_or_before_time(t, oldest.seq, m)
                        .map(|g| g.point())
                });
                found.ok_or(EngineError::TimeBeforeRetention {
                    requested_ns: t,
                    oldest_ns: oldest.time_ns,
                })
            }
            At::Label(label) => {
                if let Some(p) = newest_forward(&mut self.rings, &|ix| {
                    ix.newest_label(label, stable).map(record_point)
                }) {
                    return Ok(p);
                }
                if mirror.label.as_deref() == Some(label.as_str()) {
                    return Ok(mirror.point());
                }
                let found = self
                    .backward
                    .read(|b| b.newest_with_label(label, oldest.seq, m).map(|g| g.point()));
                found.ok_or_else(|| EngineError::UnknownLabel(label.clone()))
            }
        }
    }
}

/// True when block source `next` continues the device run of `prev`.
fn continues(layout: &crate::engine::geometry::Layout, prev: Src, next: Src) -> bool {
    match (prev, next) {
        (Src::Zero, Src::Zero) | (Src::Mim, Src::Mim) => true,
        (Src::Fwd { ring: a, pos: p }, Src::Fwd { ring: b, pos: q }) => {
            let cap = layout.rings[usize::from(a)].data_blocks;
            a == b && q == p + 1 && q % cap != 0
        }
        (Src::Bwd { pos: p }, Src::Bwd { pos: q }) => {
            q == p + 1 && q % layout.geometry.backward_data_blocks != 0
        }
        _ => false,
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Buffers must outlive their device requests (the backlog is never submitted).
        self.backlog.clear();
        while self.queue.in_flight() > 0 {
            self.collect(true);
            self.backlog.clear();
        }
    }
}
