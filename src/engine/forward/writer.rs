//! The ring writer: the one owner of a forward ring (a reactor core, or the
//! sync worker for the control ring). It turns writes, write-zeroes and
//! markers into commit batches — the data writes plus one descriptor block —
//! group-commits them with one flush, publishes them to the ring index and
//! completes them. Submission only queues; each `poll` issues everything
//! queued since the last one in as few batches as fit (a group commit per
//! reactor round) and drives the rest. Nothing blocks.
//!
//! Invariants:
//! - seqs are taken when a batch is issued (never while a request waits for
//!   space), after the ring's watermark was lowered, so [`VolumeState::stable_seq`]
//!   never passes a seq that is not yet visible;
//! - a batch completes only when it and every earlier batch of the ring are
//!   durable (a flush issued after their writes completed) and visible in the
//!   index: the recovery scan stops at the first torn block, so it never drops
//!   an acknowledged write (invariant 1);
//! - a marker completes only once every earlier seq is stable (invariant 2);
//! - a request that does not fit waits (back-pressure), it never fails for space.

use crate::device::{AlignedBuf, DeviceError, DeviceQueue, IoCompletion, IoKind, IoRequest};
use crate::engine::circular::Circular;
use crate::engine::error::{EngineError, Result};
use crate::engine::forward::index::{IndexedRecord, RingIndex, RingOp};
use crate::engine::ondisk::forward_block::{self, BlockIdentity, ForwardRecord, RecordBody};
use crate::engine::point::{check_label, MarkerKind};
use crate::engine::state::{ParkedRing, VolumeState, IDLE};
use crate::engine::twin::TwinWriter;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Tags at or above this value are reserved for the blocking helpers.
pub const RESERVED_TAGS: u64 = 1 << 63;
const FLUSH_TAG: u64 = 1 << 63;
const IO_BITS: u32 = 10;
/// Records dropped from the ring index per publish while catching up after a
/// sync. A removal costs about 0.4 µs (two B+-tree removes, one per twin
/// copy), and the step runs inside a reactor round: 512 stalled one request
/// in a thousand by ~200 µs at QD1; 32 keeps a step near 10 µs.
const TRUNCATE_STEP_RECORDS: usize = 32;
/// Batches in flight per ring (recovery relies on this bound).
pub const MAX_BATCHES: usize = 64;

/// The outcome of one submitted request.
#[derive(Debug)]
pub struct WriteCompletion {
    pub tag: u64,
    /// The request's seq (a marker's seq is its point).
    pub result: Result<u64>,
    /// The seq the request was given, also when it failed after being issued
    /// (a failed write may still be found by recovery); `None` if never issued.
    pub seq: Option<u64>,
    /// The data buffer of a write, handed back for reuse.
    pub buf: Option<AlignedBuf>,
}

#[derive(Debug)]
enum Work {
    Write {
        lba: u64,
        nblocks: u32,
        buf: AlignedBuf,
    },
    Zero {
        lba: u64,
        nblocks: u32,
    },
    Marker {
        kind: MarkerKind,
        label: Option<Box<str>>,
    },
}

#[derive(Debug)]
struct Request {
    work: Work,
    tag: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BatchState {
    /// Device writes outstanding.
    Writing,
    /// Written, not yet covered by a completed flush.
    Written,
    /// Durable; not yet handed to the index.
    Durable,
    /// Handed to the index; visible after the next successful publish.
    Appended,
}

#[derive(Debug)]
struct Entry {
    record: ForwardRecord,
    tag: u64,
    buf: Option<AlignedBuf>,
}

#[derive(Debug)]
struct Batch {
    id: u64,
    desc_pos: u64,
    desc_buf: AlignedBuf,
    entries: Vec<Entry>,
    ios_left: u32,
    state: BatchState,
}

/// The owner of one forward ring (see the module documentation).
pub struct RingWriter {
    state: Arc<VolumeState>,
    ring: u16,
    queue: Box<dyn DeviceQueue>,
    depth: usize,
    index: Option<TwinWriter<RingIndex, RingOp>>,
    desc: Circular,
    data: Option<Circular>,
    last_time_ns: u64,
    truncated_through: u64,
    next_batch: u64,
    flushes: u64,
    flush_covers: Option<u64>,
    waiting: VecDeque<Request>,
    batches: VecDeque<Batch>,
    awaiting_stable: VecDeque<(u64, u64)>,
    done: VecDeque<WriteCompletion>,
    io: Vec<IoCompletion>,
    spare_desc: Vec<AlignedBuf>,
    /// Emptied entry lists of retired batches, reused so a batch allocates nothing.
    spare_entries: Vec<Vec<Entry>>,
    /// Scratch of `pump`: the data position of each request of the next batch.
    positions: Vec<Option<u64>>,
    failed: Option<EngineError>,
    next_internal_tag: u64,
    /// Blocking requests whose caller gave up waiting: their completions are dropped.
    abandoned: Vec<u64>,
    max_queued: usize,
}

impl std::fmt::Debug for RingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingWriter")
            .field("ring", &self.ring)
            .field("waiting", &self.waiting.len())
            .field("batches", &self.batches.len())
            .finish()
    }
}

impl RingWriter {
    /// Takes exclusive ownership of ring `ring` (writer rings are
    /// `0..rings`; the control ring is `rings`).
    pub(crate) fn claim(state: Arc<VolumeState>, ring: u16) -> Result<Self> {
        let slot = state
            .rings
            .get(usize::from(ring))
            .ok_or(EngineError::NoSuchRing {
                ring,
                rings: state.writer_rings(),
            })?;
        if slot
            .claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(EngineError::RingBusy(ring));
        }
        let parked = slot.parked.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(parked) = parked else {
            slot.claimed.store(false, Ordering::Release);
            return Err(EngineError::RingBusy(ring));
        };
        let depth = state.config.queue_depth as usize;
        let queue = match state.device.queue(state.config.queue_depth) {
            Ok(q) => q,
            Err(e) => {
                *slot.parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(parked);
                slot.claimed.store(false, Ordering::Release);
                return Err(e.into());
            }
        };
        let rl = state.layout.rings[usize::from(ring)];
        let desc = Circular::new(
            rl.desc_blocks,
            parked.desc_head,
            slot.desc_tail.load(Ordering::Acquire),
        );
        let data = (rl.data_blocks > 0).then(|| {
            Circular::new(
                rl.data_blocks,
                parked.data_head,
                slot.data_tail.load(Ordering::Acquire),
            )
        });
        let bs = state.layout.geometry.bs() as usize;
        let spare_desc = (0..8).map(|_| AlignedBuf::zeroed(bs)).collect();
        let failed = state.failure.get().map(|m| EngineError::Failed(m.clone()));
        Ok(RingWriter {
            ring,
            queue,
            depth,
            index: Some(parked.index),
            desc,
            data,
            last_time_ns: parked.last_time_ns,
            truncated_through: parked.truncated_through,
            next_batch: 1,
            flushes: 0,
            flush_covers: None,
            waiting: VecDeque::new(),
            batches: VecDeque::new(),
            awaiting_stable: VecDeque::new(),
            done: VecDeque::new(),
            io: Vec::with_capacity(depth),
            spare_desc,
            spare_entries: Vec::new(),
            positions: Vec::new(),
            failed,
            next_internal_tag: RESERVED_TAGS,
            abandoned: Vec::new(),
            max_queued: depth * 4,
            state,
        })
    }

    /// This ring's number.
    pub fn ring(&self) -> u16 {
        self.ring
    }

    /// Requests accepted and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.waiting.len()
            + self.batches.iter().map(|b| b.entries.len()).sum::<usize>()
            + self.awaiting_stable.len()
    }

    fn index(&mut self) -> &mut TwinWriter<RingIndex, RingOp> {
        self.index
            .as_mut()
            .expect("ring index present while the writer lives")
    }

    fn admit(&self, tag: u64) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.state.check_healthy()?;
        debug_assert!(
            tag < RESERVED_TAGS || self.done.iter().all(|c| c.tag != tag),
            "internal tag reused"
        );
        if self.outstanding() >= self.max_queued {
            return Err(EngineError::Busy(self.max_queued));
        }
        Ok(())
    }

    fn check_extent(&self, lba: u64, nblocks: u64) -> Result<u32> {
        let g = &self.state.layout.geometry;
        if nblocks == 0 {
            return Err(EngineError::ZeroLength);
        }
        let n32 = u32::try_from(nblocks).map_err(|_| EngineError::TooLarge {
            nblocks,
            max: u32::MAX,
        })?;
        if lba
            .checked_add(nblocks)
            .is_none_or(|end| end > g.volume_blocks)
        {
            return Err(EngineError::OutOfRange {
                lba,
                nblocks: n32,
                volume_blocks: g.volume_blocks,
            });
        }
        Ok(n32)
    }

    /// Queues a write of `buf` (a whole number of blocks) at `lba`. On
    /// refusal the buffer comes back with the error. `tag` must be below
    /// [`RESERVED_TAGS`].
    pub fn submit_write(
        &mut self,
        lba: u64,
        buf: AlignedBuf,
        tag: u64,
    ) -> std::result::Result<(), (EngineError, AlignedBuf)> {
        if tag >= RESERVED_TAGS {
            return Err((EngineError::InvalidTag(tag), buf));
        }
        self.enqueue_write(lba, buf, tag)
    }

    fn enqueue_write(
        &mut self,
        lba: u64,
        buf: AlignedBuf,
        tag: u64,
    ) -> std::result::Result<(), (EngineError, AlignedBuf)> {
        let bs = self.state.layout.geometry.block_size;
        let checked = (|| {
            self.admit(tag)?;
            if self.data.is_none() {
                return Err(EngineError::InvalidGeometry(format!(
                    "ring {} carries markers only",
                    self.ring
                )));
            }
            if buf.is_empty() {
                return Err(EngineError::ZeroLength);
            }
            if !buf.len().is_multiple_of(bs as usize) {
                return Err(EngineError::BufferSize {
                    len: buf.len(),
                    nblocks: (buf.len() / bs as usize) as u32,
                    block_size: bs,
                });
            }
            let nblocks = (buf.len() / bs as usize) as u64;
            let max = self.state.layout.geometry.max_write_blocks();
            if nblocks > u64::from(max) {
                return Err(EngineError::TooLarge { nblocks, max });
            }
            self.check_extent(lba, nblocks)
        })();
        match checked {
            Ok(nblocks) => {
                self.waiting.push_back(Request {
                    work: Work::Write { lba, nblocks, buf },
                    tag,
                });
                Ok(())
            }
            Err(e) => Err((e, buf)),
        }
    }

    /// Queues a write of zeroes (write-zeroes, deallocate): no data is stored.
    /// At most [`Geometry::max_zeroes_blocks`](crate::engine::Geometry::max_zeroes_blocks)
    /// blocks per request (larger ones are `TooLarge`; split them).
    pub fn submit_zeroes(&mut self, lba: u64, nblocks: u64, tag: u64) -> Result<()> {
        if tag >= RESERVED_TAGS {
            return Err(EngineError::InvalidTag(tag));
        }
        self.enqueue_zeroes(lba, nblocks, tag)
    }

    fn enqueue_zeroes(&mut self, lba: u64, nblocks: u64, tag: u64) -> Result<()> {
        self.admit(tag)?;
        let n32 = self.check_extent(lba, nblocks)?;
        let max = self.state.layout.geometry.max_zeroes_blocks();
        if nblocks > max {
            return Err(EngineError::TooLarge {
                nblocks,
                max: u32::try_from(max).unwrap_or(u32::MAX),
            });
        }
        let nblocks = n32;
        self.waiting.push_back(Request {
            work: Work::Zero { lba, nblocks },
            tag,
        });
        Ok(())
    }

    /// Queues a marker. It completes, with its seq, once every earlier write
    /// of the volume is durable and visible (a host Flush completes then).
    pub fn submit_marker(&mut self, kind: MarkerKind, label: Option<&str>, tag: u64) -> Result<()> {
        if tag >= RESERVED_TAGS {
            return Err(EngineError::InvalidTag(tag));
        }
        self.enqueue_marker(kind, label, tag)
    }

    fn enqueue_marker(&mut self, kind: MarkerKind, label: Option<&str>, tag: u64) -> Result<()> {
        self.admit(tag)?;
        if let Some(l) = label {
            check_label(l)?;
        }
        if kind == MarkerKind::Format {
            return Err(EngineError::InvalidGeometry(
                "the format marker is written by format only".into(),
            ));
        }
        self.waiting.push_back(Request {
            work: Work::Marker {
                kind,
                label: label.map(Into::into),
            },
            tag,
        });
        Ok(())
    }

    /// Moves finished requests into `out` without blocking; returns how many.
    pub fn poll(&mut self, out: &mut Vec<WriteCompletion>) -> usize {
        self.drive();
        let before = out.len();
        // Completions of blocking helpers stay until those helpers collect them.
        let mut i = 0;
        while i < self.done.len() {
            if self.done[i].tag >= RESERVED_TAGS {
                i += 1;
            } else if let Some(c) = self.done.remove(i) {
                out.push(c);
            }
        }
        out.len() - before
    }

    /// One round of work: issue what was submitted since the last round (all
    /// of it in as few batches as fit, which is why submission only queues),
    /// collect device completions, flush, publish, complete, truncate, issue.
    fn drive(&mut self) {
        // A failure elsewhere (another ring, the sync worker) fails this ring too:
        // requests waiting for space or stability would otherwise wait forever.
        if self.failed.is_none() {
            if let Some(m) = self.state.failure.get() {
                let m = m.clone();
                self.fail(EngineError::Failed(m));
            }
        }
        // Replay the last publish on the copy readers left, now that its
        // completions have gone out, so the next publish (which the next
        // write's completion waits for) absorbs only its own batch.
        self.index().catch_up();
        self.pump();
        self.io.clear();
        self.queue.poll(&mut self.io);
        let completions = std::mem::take(&mut self.io);
        for c in &completions {
            self.on_device_completion(c.tag, c.result.clone());
        }
        self.io = completions;
        self.advance();
        self.pump();
    }

    /// Blocks until the device completes at least one request, and handles it.
    fn wait_device(&mut self) {
        self.io.clear();
        self.queue.wait(&mut self.io);
        let completions = std::mem::take(&mut self.io);
        for c in &completions {
            self.on_device_completion(c.tag, c.result.clone());
        }
        self.io = completions;
    }

    fn on_device_completion(&mut self, tag: u64, result: std::result::Result<(), DeviceError>) {
        if tag & FLUSH_TAG != 0 {
            let covers = self.flush_covers.take();
            match result {
                Ok(()) => {
                    let covers = covers.unwrap_or(0);
                    for b in self
                        .batches
                        .iter_mut()
                        .filter(|b| b.id <= covers && b.state == BatchState::Written)
                    {
                        b.state = BatchState::Durable;
                    }
                }
                Err(e) => self.fail(EngineError::Device(e)),
            }
            return;
        }
        let id = tag >> IO_BITS;
        let Some(b) = self.batches.iter_mut().find(|b| b.id == id) else {
            debug_assert!(false, "completion for unknown batch {id}");
            return;
        };
        assert!(b.ios_left > 0 && b.state == BatchState::Writing);
        b.ios_left -= 1;
        if b.ios_left == 0 {
            b.state = BatchState::Written;
        }
        if let Err(e) = result {
            self.fail(EngineError::Device(e));
        }
    }

    fn fail(&mut self, error: EngineError) {
        if self.failed.is_none() {
            self.state.fail(format!("ring {}: {error}", self.ring));
            self.failed = Some(EngineError::Failed(format!("ring {}: {error}", self.ring)));
        }
        let err = self.failed.clone().unwrap_or(EngineError::Closed);
        for r in self.waiting.drain(..) {
            let buf = match r.work {
                Work::Write { buf, .. } => Some(buf),
                _ => None,
            };
            self.done.push_back(WriteCompletion {
                tag: r.tag,
                result: Err(err.clone()),
                seq: None,
                buf,
            });
        }
        for (seq, tag) in self.awaiting_stable.drain(..) {
            self.done.push_back(WriteCompletion {
                tag,
                result: Err(err.clone()),
                seq: Some(seq),
                buf: None,
            });
        }
    }

    fn advance(&mut self) {
        if let Some(err) = self.failed.clone() {
            // Complete every batch whose device I/O has finished; nothing is published any more.
            while self
                .batches
                .front()
                .is_some_and(|b| b.state != BatchState::Writing)
                && self.flush_covers.is_none()
            {
                let Some(b) = self.batches.pop_front() else {
                    break;
                };
                self.retire_failed(b, &err);
            }
            return;
        }
        // Flush the written prefix once nothing else is being flushed.
        if self.flush_covers.is_none() {
            let last_written = self
                .batches
                .iter()
                .take_while(|b| b.state >= BatchState::Written)
                .filter(|b| b.state == BatchState::Written)
                .map(|b| b.id)
                .last();
            if let Some(id) = last_written {
                if self.state.device.info().volatile_cache {
                    self.flushes += 1;
                    // SAFETY: a flush carries no buffer. A full queue is retried on the next poll.
                    let submitted = unsafe {
                        self.queue
                            .submit(IoRequest::flush(FLUSH_TAG | self.flushes))
                    };
                    if submitted.is_ok() {
                        self.flush_covers = Some(id);
                    }
                } else {
                    for b in self
                        .batches
                        .iter_mut()
                        .filter(|b| b.id <= id && b.state == BatchState::Written)
                    {
                        b.state = BatchState::Durable;
                    }
                }
            }
        }
        // Hand the durable prefix to the index.
        let mut appended_any = false;
        for i in 0..self.batches.len() {
            match self.batches[i].state {
                BatchState::Appended => continue,
                BatchState::Durable => {
                    let b = &mut self.batches[i];
                    b.state = BatchState::Appended;
                    let records = b
                        .entries
                        .iter()
                        .map(|e| IndexedRecord {
                            record: e.record.clone(),
                            desc_pos: b.desc_pos,
                        })
                        .collect();
                    self.index().append(RingOp::Append(records));
                    appended_any = true;
                }
                _ => break,
            }
        }
        let has_appended = appended_any
            || self
                .batches
                .front()
                .is_some_and(|b| b.state == BatchState::Appended);
        if self.index().pending() > 0 && self.index().try_publish() && has_appended {
            self.complete_published();
        }
        // Truncation requested by the sync worker, in bounded steps: dropping a
        // large synced window at once would stall this (reactor) thread.
        let through = self.state.rings[usize::from(self.ring)]
            .truncate_through
            .load(Ordering::Acquire);
        // (Issued once everything earlier is published; it is published next round.)
        if through > self.truncated_through && self.index().pending() == 0 {
            let step = self
                .index()
                .read()
                .truncation_step(through, TRUNCATE_STEP_RECORDS);
            self.truncated_through = step;
            self.index().append(RingOp::TruncateThrough(step));
        }
        if !self.awaiting_stable.is_empty() {
            let stable = self.state.stable_seq();
            while self
                .awaiting_stable
                .front()
                .is_some_and(|(seq, _)| *seq <= stable)
            {
                let Some((seq, tag)) = self.awaiting_stable.pop_front() else {
                    break;
                };
                self.done.push_back(WriteCompletion {
                    tag,
                    result: Ok(seq),
                    seq: Some(seq),
                    buf: None,
                });
            }
        }
    }

    fn complete_published(&mut self) {
        while self
            .batches
            .front()
            .is_some_and(|b| b.state == BatchState::Appended)
        {
            let Some(mut b) = self.batches.pop_front() else {
                break;
            };
            for e in b.entries.drain(..) {
                match e.record.body {
                    RecordBody::Marker { .. } => {
                        self.awaiting_stable.push_back((e.record.seq, e.tag))
                    }
                    _ => self.done.push_back(WriteCompletion {
                        tag: e.tag,
                        result: Ok(e.record.seq),
                        seq: Some(e.record.seq),
                        buf: e.buf,
                    }),
                }
            }
            self.spare_entries.push(b.entries);
            self.spare_desc.push(b.desc_buf);
        }
        let slot = &self.state.rings[usize::from(self.ring)];
        let low = self
            .batches
            .front()
            .and_then(|b| b.entries.first())
            .map_or(IDLE, |e| e.record.seq);
        slot.low.store(low, Ordering::SeqCst);
    }

    fn retire_failed(&mut self, mut b: Batch, err: &EngineError) {
        for e in b.entries.drain(..) {
            self.done.push_back(WriteCompletion {
                tag: e.tag,
                result: Err(err.clone()),
                seq: Some(e.record.seq),
                buf: e.buf,
            });
        }
        self.spare_entries.push(b.entries);
        self.spare_desc.push(b.desc_buf);
    }

    /// Issues as many waiting requests as space, queue depth and batch limits allow.
    fn pump(&mut self) {
        let entries_per_block = self.state.layout.geometry.entries_per_desc_block();
        let slot_index = usize::from(self.ring);
        while self.failed.is_none() && !self.waiting.is_empty() && self.batches.len() < MAX_BATCHES
        {
            let slot = &self.state.rings[slot_index];
            self.desc
                .release_to(slot.desc_tail.load(Ordering::Acquire).min(self.desc.head));
            if let Some(d) = self.data.as_mut() {
                d.release_to(slot.data_tail.load(Ordering::Acquire).min(d.head));
            }
            if self.desc.place(1).is_none() {
                self.state.signal_fill();
                return;
            }
            // How many waiting requests fit one block, the data area and the queue?
            let mut data = self.data;
            let mut positions = std::mem::take(&mut self.positions);
            positions.clear();
            let mut ios = 1usize;
            for r in self.waiting.iter().take(entries_per_block) {
                match &r.work {
                    Work::Write { nblocks, .. } => {
                        if self.queue.in_flight() + ios + 1 > self.depth {
                            break;
                        }
                        let Some(pos) = data.as_mut().and_then(|d| d.reserve(u64::from(*nblocks)))
                        else {
                            break;
                        };
                        positions.push(Some(pos));
                        ios += 1;
                    }
                    _ => positions.push(None),
                }
            }
            if positions.is_empty() || self.queue.in_flight() + ios > self.depth {
                if positions.is_empty() {
                    self.state.signal_fill();
                }
                self.positions = positions;
                return;
            }
            self.issue(&positions, data);
            self.positions = positions;
        }
    }

    fn issue(&mut self, positions: &[Option<u64>], data: Option<Circular>) {
        let take = positions.len();
        let slot = &self.state.rings[usize::from(self.ring)];
        if slot.low.load(Ordering::SeqCst) == IDLE {
            // Lower the watermark before taking seqs: stable_seq must not pass them.
            slot.low
                .store(self.state.next_seq.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        let first_seq = self.state.next_seq.fetch_add(take as u64, Ordering::SeqCst);
        let now = self.state.config.clock.now_ns().max(self.last_time_ns);
        self.last_time_ns = now;
        let Some(desc_pos) = self.desc.reserve(1) else {
            unreachable!("descriptor space was checked by pump");
        };
        self.data = data;
        let id = self.next_batch;
        self.next_batch += 1;
        let mut entries = self.spare_entries.pop().unwrap_or_default();
        debug_assert!(
            entries.is_empty(),
            "spare entry lists are emptied when retired"
        );
        entries.reserve(take);
        for (i, pos) in positions.iter().copied().enumerate() {
            let Some(r) = self.waiting.pop_front() else {
                break;
            };
            let seq = first_seq + i as u64;
            let (body, buf) = match r.work {
                Work::Write { lba, nblocks, buf } => {
                    let data_pos = pos.expect("writes have a data position");
                    (
                        RecordBody::Write {
                            lba,
                            nblocks,
                            data_pos,
                            data_crc: crate::checksum::crc32c(&buf),
                        },
                        Some(buf),
                    )
                }
                Work::Zero { lba, nblocks } => (RecordBody::Zero { lba, nblocks }, None),
                Work::Marker { kind, label } => (RecordBody::Marker { kind, label }, None),
            };
            entries.push(Entry {
                record: ForwardRecord {
                    seq,
                    time_ns: now,
                    body,
                },
                tag: r.tag,
                buf,
            });
        }
        let bs = self.state.layout.geometry.bs() as usize;
        let mut desc_buf = self
            .spare_desc
            .pop()
            .unwrap_or_else(|| AlignedBuf::zeroed(bs));
        forward_block::encode_each(
            &mut desc_buf,
            BlockIdentity {
                ring: self.ring,
                pos: desc_pos,
                uuid: &self.state.uuid,
            },
            entries.iter().map(|e| &e.record),
        );
        let mut batch = Batch {
            id,
            desc_pos,
            desc_buf,
            entries,
            ios_left: 0,
            state: BatchState::Writing,
        };
        let ring = usize::from(self.ring);
        let mut submit_failed = false;
        for (i, e) in batch.entries.iter_mut().enumerate() {
            if let (RecordBody::Write { data_pos, .. }, Some(buf)) =
                (&e.record.body, e.buf.as_mut())
            {
                let req = IoRequest {
                    kind: IoKind::Write,
                    offset: self.state.layout.ring_data_byte(ring, *data_pos),
                    ptr: buf.as_mut_ptr(),
                    len: buf.len() as u32,
                    tag: (id << IO_BITS) | i as u64,
                };
                // SAFETY: the buffer lives in the batch until the batch is retired,
                // which happens only after this request's completion.
                if unsafe { self.queue.submit(req) }.is_err() {
                    submit_failed = true;
                    break;
                }
                batch.ios_left += 1;
            }
        }
        if !submit_failed {
            let req = IoRequest {
                kind: IoKind::Write,
                offset: self.state.layout.ring_desc_byte(ring, desc_pos),
                ptr: batch.desc_buf.as_mut_ptr(),
                len: bs as u32,
                tag: (id << IO_BITS) | 1023,
            };
            // SAFETY: as above, the descriptor buffer lives in the batch.
            if unsafe { self.queue.submit(req) }.is_err() {
                submit_failed = true;
            } else {
                batch.ios_left += 1;
            }
        }
        let done_already = batch.ios_left == 0;
        self.batches.push_back(batch);
        if submit_failed {
            // pump checked the depth; a full queue here is a bug in a backend.
            self.fail(EngineError::Device(DeviceError::Invalid(
                "device queue refused a request within its depth".into(),
            )));
            if done_already {
                if let Some(b) = self.batches.pop_back() {
                    let err = self.failed.clone().unwrap_or(EngineError::Closed);
                    self.retire_failed(b, &err);
                }
            }
            return;
        }
        slot.desc_head.store(self.desc.head, Ordering::Release);
        if let Some(d) = &self.data {
            slot.data_head.store(d.head, Ordering::Release);
        }
        let fill = self
            .desc
            .fill_percent()
            .max(self.data.map_or(0, |d| d.fill_percent()));
        if fill >= u64::from(self.state.config.sync.fill_percent) {
            self.state.signal_fill();
        }
    }

    // ---- blocking helpers (tools, tests, the sync worker) ----

    fn internal_tag(&mut self) -> u64 {
        let t = self.next_internal_tag;
        self.next_internal_tag = self.next_internal_tag.wrapping_add(1).max(RESERVED_TAGS);
        t
    }

    /// Waits for the completion of `tag`; `deadline` bounds waits that depend
    /// on other rings or on the sync worker freeing space.
    fn wait_for(
        &mut self,
        tag: u64,
        deadline: Option<std::time::Instant>,
    ) -> Result<WriteCompletion> {
        let mut idle_rounds = 0u32;
        loop {
            self.drive();
            if let Some(i) = self.done.iter().position(|c| c.tag == tag) {
                return self.done.remove(i).ok_or(EngineError::Closed);
            }
            if !self.abandoned.is_empty() {
                let abandoned = std::mem::take(&mut self.abandoned);
                self.done.retain(|c| !abandoned.contains(&c.tag));
                self.abandoned = abandoned
                    .into_iter()
                    .filter(|t| self.outstanding_tag(*t))
                    .collect();
            }
            if self.queue.in_flight() > 0 {
                self.wait_device();
                idle_rounds = 0;
            } else {
                if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                    // The request stays in the journal (it may still complete);
                    // nobody will collect its completion, so drop it when it comes.
                    self.abandoned.push(tag);
                    return Err(EngineError::Busy(self.outstanding()));
                }
                // Another ring or the worker failed the volume: what we wait for
                // (stability, space) will not come.
                if let Some(m) = self.state.failure.get() {
                    return Err(EngineError::Failed(m.clone()));
                }
                idle_rounds += 1;
                if idle_rounds < 100 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    /// True while `tag` has not completed yet.
    fn outstanding_tag(&self, tag: u64) -> bool {
        self.waiting.iter().any(|r| r.tag == tag)
            || self
                .batches
                .iter()
                .any(|b| b.entries.iter().any(|e| e.tag == tag))
            || self.awaiting_stable.iter().any(|(_, t)| *t == tag)
    }

    fn blocking(&mut self, tag: u64) -> Result<u64> {
        self.wait_for(tag, None)?.result
    }

    /// Writes `data` (whole blocks) at `lba` and waits until it is durable; returns its seq.
    pub fn write(&mut self, lba: u64, data: &[u8]) -> Result<u64> {
        let tag = self.internal_tag();
        self.enqueue_write(lba, AlignedBuf::from_slice(data), tag)
            .map_err(|(e, _)| e)?;
        self.blocking(tag)
    }

    /// Writes zeroes over `nblocks` at `lba`, durably; returns the seq.
    pub fn write_zeroes(&mut self, lba: u64, nblocks: u64) -> Result<u64> {
        let tag = self.internal_tag();
        self.enqueue_zeroes(lba, nblocks, tag)?;
        self.blocking(tag)
    }

    /// A host Flush: returns the marker's seq once every earlier write is durable.
    pub fn flush(&mut self) -> Result<u64> {
        let tag = self.internal_tag();
        self.enqueue_marker(MarkerKind::Flush, None, tag)?;
        self.blocking(tag)
    }

    /// Records a marker and waits for it, giving up after `timeout` when other
    /// rings do not make earlier writes visible.
    pub fn mark(
        &mut self,
        kind: MarkerKind,
        label: Option<&str>,
        timeout: Duration,
    ) -> Result<u64> {
        let tag = self.internal_tag();
        self.enqueue_marker(kind, label, tag)?;
        self.wait_for(tag, Some(std::time::Instant::now() + timeout))?
            .result
    }

    fn park(&mut self) -> Option<ParkedRing> {
        let index = self.index.take()?;
        Some(ParkedRing {
            index,
            desc_head: self.desc.head,
            data_head: self.data.map_or(0, |d| d.head),
            last_time_ns: self.last_time_ns,
            truncated_through: self.truncated_through,
        })
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        // Finish what was issued: buffers must outlive their device requests,
        // and published batches keep the volume's stable seq moving.
        self.waiting.clear();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.batches.is_empty() && std::time::Instant::now() < deadline {
            self.drive();
            if self.queue.in_flight() > 0 {
                self.wait_device();
            } else {
                std::thread::yield_now();
            }
        }
        while self.queue.in_flight() > 0 {
            self.io.clear();
            self.queue.wait(&mut self.io);
        }
        let state = Arc::clone(&self.state);
        let slot = &state.rings[usize::from(self.ring)];
        if !self.batches.is_empty() {
            // Unpublished batches are durable (or failed); recovery will find them.
            self.state.fail(format!(
                "ring {} dropped with unpublished writes",
                self.ring
            ));
        }
        if let Some(parked) = self.park() {
            *slot.parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(parked);
        }
        slot.claimed.store(false, Ordering::Release);
    }
}
