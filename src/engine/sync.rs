//! The sync worker: the thread that moves the mirror forward and expires old
//! generations (seed 001, Figures 10 and 15).
//!
//! A sync takes the forward records up to a marker, merged from every ring by
//! seq, and cuts them into steps: at every bookmark (each keeps its own
//! snapshot) and wherever the undo data would exceed half the backward
//! journal. Each step, in this order:
//!
//! 1. make room in the backward journal (forced expiry of the oldest
//!    generations, checkpointed before their space is reused);
//! 2. copy the mirror's current contents of the changed ranges into the
//!    backward data area, flush;
//! 3. write the generation record, flush (now it is committed);
//! 4. publish the generation to readers, wait a grace period (nobody reads
//!    those mirror ranges any more);
//! 5. write the net change into the mirror, flush;
//! 6. write the checkpoint (new mirror seq, new ring tails), flush;
//! 7. publish the new mirror seq, wait a grace period, hand the ring space
//!    back and ask the rings to drop the records from their indexes.
//!
//! Invariants 3 and 4 (DESIGN.md) are this order. A crash after step 3 and
//! before step 6 is completed by recovery from the still-intact forward records.

use crate::device::blocking::BlockingQueue;
use crate::device::AlignedBuf;
use crate::engine::backward::index::{BackwardIndex, BackwardOp, Generation, MirrorPoint};
use crate::engine::backward::space::BackwardSpace;
use crate::engine::config::Retention;
use crate::engine::error::{EngineError, Result};
use crate::engine::events::Event;
use crate::engine::forward::index::{IndexedRecord, RingIndex};

/// Records copied per read of a ring index while gathering a sync window
/// (tiny in unit tests, so their syncs cross chunk boundaries).
const GATHER_CHUNK: usize = if cfg!(test) { 3 } else { 1024 };
use crate::engine::forward::writer::RingWriter;
use crate::engine::map::net_change::{ChangeSource, NetChange};
use crate::engine::mirror::{self, CheckpointWriter};
use crate::engine::ondisk::checkpoint::{Checkpoint, RingTails};
use crate::engine::ondisk::forward_block::RecordBody;
use crate::engine::ondisk::generation::{self, GenerationRecord, UndoExtent};
use crate::engine::point::{MarkerKind, Point};
use crate::engine::state::{VolumeState, WorkerRequest};
use crate::engine::twin::{TwinReader, TwinWriter};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub from_seq: u64,
    pub to_seq: u64,
    /// Generations created, oldest first.
    pub generations: Vec<u64>,
    pub changed_blocks: u64,
    /// Generations expired to make room.
    pub expired: Vec<u64>,
}

/// Everything the worker thread owns.
pub(crate) struct Worker {
    pub state: Arc<VolumeState>,
    pub io: BlockingQueue,
    pub control: RingWriter,
    pub backward: TwinWriter<BackwardIndex, BackwardOp>,
    pub rings: Vec<TwinReader<RingIndex>>,
    pub space: BackwardSpace,
    pub checkpoints: CheckpointWriter,
    /// Staging buffer for the sync steps (allocated once).
    pub scratch: mirror::Scratch,
    pub next_generation: u64,
    /// Durable ring tails (as in the last checkpoint).
    pub tails: Vec<RingTails>,
    pub retention: Retention,
    pub last_sync: Instant,
    pub last_marker: Instant,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("next_generation", &self.next_generation)
            .finish()
    }
}

/// How often the worker looks at fill levels and timers when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_millis(20);

impl Worker {
    /// The thread body: serve requests and triggers until asked to stop.
    pub fn run(mut self) {
        while !self.state.worker.stop.load(Ordering::Acquire) {
            self.state
                .worker
                .fill_signal
                .store(false, Ordering::Release);
            while let Some(request) = self.state.worker.requests.pop() {
                self.serve(request);
            }
            if self.state.failure.get().is_none() {
                if let Err(e) = self.on_timers() {
                    self.report_error("background sync", e);
                }
            }
            if !self.state.worker.fill_signal.load(Ordering::Acquire)
                && self.state.worker.requests.is_empty()
            {
                std::thread::park_timeout(IDLE_POLL);
            }
        }
    }

    fn report_error(&self, what: &str, e: EngineError) {
        match e {
            EngineError::Device(_) => self.state.fail(format!("{what}: {e}")),
            EngineError::Failed(_) | EngineError::Closed => {}
            other => tracing::warn!(error = %other, "{what} did not complete"),
        }
    }

    fn serve(&mut self, request: WorkerRequest) {
        match request {
            WorkerRequest::SyncNow(reply) => {
                let r = self.state.check_healthy().and_then(|_| self.sync_latest());
                if let Err(e) = &r {
                    self.report_error("sync", e.clone());
                }
                let _ = reply.send(r);
            }
            WorkerRequest::Mark(label, reply) => {
                let r = self.mark(MarkerKind::Bookmark, Some(&label));
                let _ = reply.send(r);
            }
            WorkerRequest::ApplyRetention(reply) => {
                let r = self.apply_retention();
                if let Err(e) = &r {
                    self.report_error("retention", e.clone());
                }
                let _ = reply.send(r);
            }
            WorkerRequest::SetRetention(policy, reply) => {
                self.retention = policy;
                let r = self.apply_retention().map(|_| ());
                let _ = reply.send(r);
            }
            WorkerRequest::Pin(seq, reply) => {
                let r = self.check_pinnable(seq);
                if r.is_ok() {
                    self.state.pins.add(seq);
                }
                let _ = reply.send(r);
            }
        }
    }

    /// Whether `seq` is a retained point a sync can rest on: the mirror's
    /// point, a generation's point, or a stable record in the forward window.
    /// Called between syncs, so the answer holds until the pin is in place.
    fn check_pinnable(&mut self, seq: u64) -> Result<()> {
        let m = self.state.mim_seq.load(Ordering::SeqCst);
        let floor = self.state.floor_seq.load(Ordering::SeqCst);
        if seq < floor {
            return Err(EngineError::Expired(seq));
        }
        if seq < m {
            return if self.backward.read().generations().contains_key(&seq) {
                Ok(())
            } else {
                Err(EngineError::Expired(seq))
            };
        }
        if seq == m {
            return Ok(());
        }
        let stable = self.state.stable_seq();
        if seq > stable {
            return Err(EngineError::InFuture {
                requested: seq,
                newest: stable,
            });
        }
        let is_record = self
            .rings
            .iter_mut()
            .any(|r| r.read(|ix| ix.records_in(seq - 1, seq).next().is_some()));
        if is_record {
            Ok(())
        } else {
            Err(EngineError::Expired(seq))
        }
    }

    /// Fill level (percent) of the fullest forward ring.
    fn forward_fill(&self) -> u64 {
        let layout = &self.state.layout;
        // Every ring, the control ring included: the worker must never fill its own ring.
        self.state
            .rings
            .iter()
            .zip(&layout.rings)
            .map(|(slot, rl)| {
                let desc = slot
                    .desc_head
                    .load(Ordering::Acquire)
                    .saturating_sub(slot.desc_tail.load(Ordering::Acquire))
                    * 100
                    / rl.desc_blocks;
                let data = slot
                    .data_head
                    .load(Ordering::Acquire)
                    .saturating_sub(slot.data_tail.load(Ordering::Acquire))
                    * 100
                    / rl.data_blocks.max(1);
                desc.max(data)
            })
            .max()
            .unwrap_or(0)
    }

    fn on_timers(&mut self) -> Result<()> {
        let policy = self.state.config.sync.clone();
        let stable = self.state.stable_seq();
        let m = self.state.mim_seq.load(Ordering::SeqCst);
        let fill_due = self.forward_fill() >= u64::from(policy.fill_percent);
        let interval_due = policy
            .interval
            .is_some_and(|i| self.last_sync.elapsed() >= i)
            && stable > m;
        if fill_due || interval_due {
            self.sync_latest()?;
        } else if policy
            .marker_interval
            .is_some_and(|i| self.last_marker.elapsed() >= i)
        {
            self.last_marker = Instant::now();
            if self
                .newest_stable_record()
                .is_some_and(|(_, is_marker)| !is_marker)
            {
                self.mark(MarkerKind::Periodic, None)?;
            }
        }
        if self.retention.keep_last.is_some() || self.retention.min_free_percent > 0 {
            self.apply_retention()?;
        }
        Ok(())
    }

    /// The newest stable record above the mirror, in any ring: (seq, is it
    /// a marker). Reads stay short (a lookup per ring, never a scan of the
    /// window): a reader inside a ring's index holds up that ring's publish.
    fn newest_stable_record(&mut self) -> Option<(u64, bool)> {
        let stable = self.state.stable_seq();
        let m = self.state.mim_seq.load(Ordering::SeqCst);
        self.rings
            .iter_mut()
            .filter_map(|r| {
                r.read(|ix| {
                    ix.records_in(m, stable).next_back().map(|x| {
                        (
                            x.record.seq,
                            matches!(x.record.body, RecordBody::Marker { .. }),
                        )
                    })
                })
            })
            .max_by_key(|(seq, _)| *seq)
    }

    /// The newest stable marker above the mirror, in any ring.
    fn newest_stable_marker(&mut self) -> Option<u64> {
        let stable = self.state.stable_seq();
        let m = self.state.mim_seq.load(Ordering::SeqCst);
        self.rings
            .iter_mut()
            .filter_map(|r| r.read(|ix| ix.newest_marker_in(m, stable)))
            .max()
    }

    /// Records a marker through the control ring and returns its point.
    fn mark(&mut self, kind: MarkerKind, label: Option<&str>) -> Result<Point> {
        self.state.check_healthy()?;
        // The control ring holds only markers; when it runs half full, move the
        // mirror past the markers it holds before adding another.
        let control = usize::from(self.state.writer_rings());
        let slot = &self.state.rings[control];
        let used = slot.desc_head.load(Ordering::Acquire) - slot.desc_tail.load(Ordering::Acquire);
        if used * 2 >= self.state.layout.rings[control].desc_blocks {
            if let Some(target) = self.newest_stable_marker() {
                self.sync_to(target)?;
            }
        }
        let seq = self
            .control
            .mark(kind, label, self.state.config.stable_wait)?;
        self.last_marker = Instant::now();
        let time_ns = self.rings[usize::from(self.state.writer_rings())]
            .read(|ix| ix.records_in(seq - 1, seq).next().map(|r| r.record.time_ns))
            .unwrap_or(0);
        Ok(Point {
            seq,
            time_ns,
            kind: crate::engine::point::PointKind::Marker(kind),
            label: label.map(str::to_string),
        })
    }

    /// Syncs everything stable: to the newest stable marker, inserting one
    /// when the newest stable record is a write.
    pub fn sync_latest(&mut self) -> Result<SyncReport> {
        let target = match self.newest_stable_record() {
            None => {
                let m = self.state.mim_seq.load(Ordering::SeqCst);
                return Ok(SyncReport {
                    from_seq: m,
                    to_seq: m,
                    ..Default::default()
                });
            }
            Some((seq, true)) => seq,
            Some((_, false)) => self.mark(MarkerKind::Periodic, None)?.seq,
        };
        self.sync_to(target)
    }

    /// Records `(mirror seq, target]` from every ring, merged by seq. Copied
    /// [`GATHER_CHUNK`] records per read: records at or below a stable target
    /// do not change while the mirror stays put, and short reads keep the ring
    /// owners publishing (a reader inside a ring's index holds up its publish).
    fn gather(&mut self, target: u64) -> Vec<(u16, IndexedRecord)> {
        let m = self.state.mim_seq.load(Ordering::SeqCst);
        let mut all: Vec<(u16, IndexedRecord)> = Vec::new();
        for (ring, reader) in self.rings.iter_mut().enumerate() {
            let mut above = m;
            loop {
                let before = all.len();
                reader.read(|ix| {
                    all.extend(
                        ix.records_in(above, target)
                            .take(GATHER_CHUNK)
                            .map(|r| (ring as u16, r.clone())),
                    )
                });
                match all.last() {
                    Some((_, r)) if all.len() - before == GATHER_CHUNK => above = r.record.seq,
                    _ => break,
                }
            }
        }
        all.sort_by_key(|(_, r)| r.record.seq);
        all
    }

    /// Moves the mirror to `target` (a stable seq).
    pub fn sync_to(&mut self, target: u64) -> Result<SyncReport> {
        let from = self.state.mim_seq.load(Ordering::SeqCst);
        let mut report = SyncReport {
            from_seq: from,
            to_seq: from,
            ..Default::default()
        };
        if target <= from {
            return Ok(report);
        }
        assert!(
            target <= self.state.stable_seq(),
            "sync target {target} is not stable"
        );
        let records = self.gather(target);
        let Some(last) = records.last() else {
            return Ok(report);
        };
        assert_eq!(
            last.1.record.seq, target,
            "the sync target must be a record"
        );
        // Cut into steps: after every bookmark, and before the undo data a step
        // must save (its net change, not the bytes written) overflows half the
        // backward journal.
        let g = &self.state.layout.geometry;
        let budget_blocks = g.backward_data_blocks / 2;
        let budget_extents = ((g.backward_desc_blocks / 2) * g.bs()).saturating_sub(256) / 24;
        let max_run = mirror::max_run_blocks(&self.state.layout);
        let over_budget = |net: &NetChange| {
            net.blocks() > budget_blocks
                || net.extent_count() as u64 + net.blocks() / max_run > budget_extents
        };
        // Pinned points in the window become generations: a step ends on each.
        let pinned = self.state.pins.within(from, target);
        // A step surely fits while its writes could not overflow the budget
        // even without any overwrite (a net change has at most the blocks
        // written and at most 2k - 1 extents for k writes). Until then its
        // writes are only collected and netted in one sort at the step's end;
        // past that the net change is kept exact record by record, to cut the
        // step where it stops fitting.
        let surely_fits = |blocks: u64, writes: usize| {
            blocks <= budget_blocks && 2 * writes as u64 + blocks / max_run <= budget_extents
        };
        let mut start = 0usize;
        let mut writes: Vec<(u64, u64, ChangeSource)> = Vec::new();
        let mut written_blocks = 0u64;
        let mut exact: Option<NetChange> = None;
        for i in 0..records.len() {
            let (ring, r) = (records[i].0, &records[i].1.record);
            if let Some((lba, n)) = r.extent() {
                let (n, source) = (u64::from(n), mirror::change_source(ring, r));
                match &mut exact {
                    Some(net) => net.overwrite(lba, n, source),
                    None => {
                        writes.push((lba, n, source));
                        written_blocks += n;
                        if !surely_fits(written_blocks, writes.len()) {
                            exact = Some(NetChange::from_writes(&writes));
                            writes.clear();
                        }
                    }
                }
                if exact.as_ref().is_some_and(&over_budget) && i > start {
                    // The exact net change already holds record i, which
                    // starts the next step: this (rare) step nets its own.
                    let (before, _) = mirror::net_change(
                        records[start..i].iter().map(|(ring, x)| (*ring, &x.record)),
                    );
                    self.step(&records[start..i], before, &mut report)?;
                    start = i;
                    let mut fresh = NetChange::new();
                    fresh.overwrite(lba, n, source);
                    exact = Some(fresh);
                }
            }
            let bookmark = matches!(
                r.body,
                RecordBody::Marker {
                    kind: MarkerKind::Bookmark,
                    ..
                }
            );
            let pinned_here = pinned.binary_search(&r.seq).is_ok();
            if bookmark || pinned_here || i + 1 == records.len() {
                let net = exact
                    .take()
                    .unwrap_or_else(|| NetChange::from_writes(&writes));
                writes.clear();
                written_blocks = 0;
                self.step(&records[start..=i], net, &mut report)?;
                start = i + 1;
            }
        }
        self.last_sync = Instant::now();
        self.state.events.emit(Event::Synced {
            from_seq: report.from_seq,
            to_seq: report.to_seq,
            generations: report.generations.clone(),
            changed_blocks: report.changed_blocks,
        });
        Ok(report)
    }

    /// One sync step: the mirror moves from its current point to the last of
    /// `records`; `net` is their net change (the caller built it while cutting
    /// the window into steps, so it is computed once).
    fn step(
        &mut self,
        records: &[(u16, IndexedRecord)],
        net: NetChange,
        report: &mut SyncReport,
    ) -> Result<()> {
        let Some((_, end)) = records.last() else {
            return Ok(());
        };
        let end = end.record.clone();
        let layout = self.state.layout.clone();
        let bs = layout.geometry.bs() as usize;
        let change_records = records
            .iter()
            .filter(|(_, r)| r.record.extent().is_some())
            .count() as u64;
        debug_assert_eq!(
            net,
            mirror::net_change(records.iter().map(|(ring, r)| (*ring, &r.record))).0,
            "the step's net change is exactly that of its records"
        );
        let runs = net.ranges(mirror::max_run_blocks(&layout));
        let run_lens: Vec<u64> = runs.iter().map(|r| r.1).collect();
        let record_blocks = generation::record_blocks(runs.len(), bs);

        // 1. Room: expire the fewest oldest generations that make it fit.
        let placement = loop {
            if let Some(p) = self.space.place(&run_lens, record_blocks) {
                break p;
            }
            let oldest = self
                .backward
                .read()
                .generations()
                .values()
                .next()
                .map(|g| g.record.id);
            let Some(_) = oldest else {
                return Err(EngineError::InvalidGeometry(format!(
                    "a sync step of {} blocks does not fit an empty backward journal",
                    net.blocks()
                )));
            };
            report.expired.extend(self.expire_oldest(1, true)?);
        };

        // 2. Undo data.
        mirror::copy_out(
            &mut self.io,
            &layout,
            &runs,
            &placement.data,
            &mut self.scratch,
        )?;

        // 3. The generation record.
        let mirror_now = self.backward.read().mirror().clone();
        let id = self.next_generation;
        let record = GenerationRecord {
            id,
            point_seq: mirror_now.seq,
            point_time_ns: mirror_now.time_ns,
            point_marker: mirror_now.marker,
            point_label: mirror_now.label.clone(),
            target_seq: end.seq,
            change_records,
            data_start: placement
                .data
                .first()
                .copied()
                .unwrap_or(self.space.data.head),
            data_end: placement.data_head,
            extents: runs
                .iter()
                .zip(&placement.data)
                .map(|(&(lba, n), &pos)| UndoExtent {
                    lba,
                    nblocks: n as u32,
                    data_pos: pos,
                })
                .collect(),
        };
        let mut buf = AlignedBuf::zeroed(record_blocks as usize * bs);
        record.encode(&mut buf, placement.record, &self.state.uuid, bs);
        if let Some(wrap_pos) = placement.wrap {
            let mut wrap = AlignedBuf::zeroed(bs);
            generation::encode_wrap(&mut wrap, wrap_pos, &self.state.uuid);
            self.io.write(layout.backward_desc_byte(wrap_pos), &wrap)?;
        }
        self.io
            .write(layout.backward_desc_byte(placement.record), &buf)?;
        self.io.flush()?;
        self.space.commit(&placement);
        self.next_generation += 1;

        // 4. Readers of older points (and of the mirror's own point) now use the undo data.
        let generation = Arc::new(Generation {
            record,
            desc_pos: placement.record,
            desc_blocks: record_blocks,
        });
        self.backward
            .append(BackwardOp::Add(Arc::clone(&generation)));
        self.backward.publish();
        self.state.grace.synchronize();

        // 5. The mirror.
        mirror::apply(&mut self.io, &layout, &net, &mut self.scratch)?;

        // 6. Checkpoint: the mirror holds `end`, forward space before it is free.
        let new_mirror = MirrorPoint {
            seq: end.seq,
            time_ns: end.time_ns.max(mirror_now.time_ns),
            marker: match &end.body {
                RecordBody::Marker { kind, .. } => Some(*kind),
                _ => None,
            },
            label: match &end.body {
                RecordBody::Marker { label, .. } => label.as_deref().map(str::to_string),
                _ => None,
            },
        };
        // The step's own records plus each ring's first record past it (one
        // lookup, not a scan of the ring inside its index).
        let new_tails: Vec<RingTails> = self
            .rings
            .iter_mut()
            .zip(&self.tails)
            .enumerate()
            .map(|(ring, (r, cur))| {
                let first_live = r.read(|ix| ix.records_in(end.seq, u64::MAX).next().cloned());
                let done = records
                    .iter()
                    .filter(|(rg, _)| usize::from(*rg) == ring)
                    .map(|(_, x)| x);
                mirror::tails_after(done.chain(first_live.as_ref()), *cur, end.seq)
            })
            .collect();
        tracing::debug!(to = end.seq, from_tails = ?self.tails, to_tails = ?new_tails, "sync step checkpoint");
        self.write_checkpoint(&new_mirror, &new_tails)?;

        // 7. Publish, wait for readers of the old mirror seq, recycle. The
        // listed mirror point moves first: anything listed stays readable
        // (reads still resolve through the old seq until the atomic moves).
        self.backward.append(BackwardOp::SetMirror(new_mirror));
        self.backward.publish();
        self.state.mim_seq.store(end.seq, Ordering::SeqCst);
        self.state.grace.synchronize();
        for (slot, t) in self.state.rings.iter().zip(&new_tails) {
            slot.desc_tail.store(t.desc, Ordering::Release);
            slot.data_tail.store(t.data, Ordering::Release);
            slot.truncate_through.fetch_max(end.seq, Ordering::AcqRel);
        }
        self.tails = new_tails;
        self.update_floor();
        report.to_seq = end.seq;
        report.generations.push(id);
        report.changed_blocks += net.blocks();
        Ok(())
    }

    fn write_checkpoint(&mut self, mirror_point: &MirrorPoint, tails: &[RingTails]) -> Result<()> {
        let oldest_generation = self
            .backward
            .read()
            .generations()
            .values()
            .next()
            .map_or(self.next_generation, |g| g.record.id);
        let mut ck = Checkpoint {
            generation: 0,
            uuid: self.state.uuid,
            mim_seq: mirror_point.seq,
            mim_time_ns: mirror_point.time_ns,
            mim_marker: mirror_point.marker,
            mim_label: mirror_point.label.clone(),
            seq_floor: self.state.next_seq.load(Ordering::SeqCst),
            backward_desc_tail: self.space.desc.tail,
            backward_data_tail: self.space.data.tail,
            oldest_generation,
            next_generation: self.next_generation,
            rings: tails.to_vec(),
        };
        self.checkpoints
            .write(&mut self.io, &self.state.layout, &mut ck)
    }

    /// The oldest readable point: the oldest generation's, else the mirror's.
    fn update_floor(&mut self) {
        let b = self.backward.read();
        let floor = b
            .generations()
            .keys()
            .next()
            .copied()
            .unwrap_or(b.mirror().seq);
        self.state.floor_seq.store(floor, Ordering::SeqCst);
    }

    /// The oldest readable point once the `count` oldest generations are gone.
    fn floor_after_expiring(&self, count: usize) -> u64 {
        let b = self.backward.read();
        b.generations()
            .values()
            .nth(count)
            .map_or(b.mirror().seq, |g| g.record.point_seq)
    }

    /// Expires the `count` oldest generations; returns their ids.
    fn expire_oldest(&mut self, count: usize, forced: bool) -> Result<Vec<u64>> {
        if forced {
            let floor = self.floor_after_expiring(count);
            if let Some(pinned) = self.state.pins.oldest().filter(|&p| p < floor) {
                tracing::warn!(
                    pinned,
                    new_floor = floor,
                    "the backward journal is full: a pinned point expires to make room for the next sync"
                );
            }
        }
        let victims: Vec<Arc<Generation>> = self
            .backward
            .read()
            .generations()
            .values()
            .take(count)
            .cloned()
            .collect();
        if victims.is_empty() {
            return Ok(Vec::new());
        }
        for g in &victims {
            self.backward.append(BackwardOp::Remove(g.record.point_seq));
        }
        // Readers check the floor first: raise it before the generations vanish.
        let next = self
            .backward
            .read()
            .generations()
            .values()
            .nth(victims.len())
            .cloned();
        let floor = next
            .as_ref()
            .map_or(self.backward.read().mirror().seq, |g| g.record.point_seq);
        self.state.floor_seq.store(floor, Ordering::SeqCst);
        self.backward.publish();
        self.state.grace.synchronize();
        let (desc_tail, data_tail) = match &next {
            Some(g) => (g.desc_pos, g.record.data_start),
            None => (self.space.desc.head, self.space.data.head),
        };
        self.space
            .release_to(desc_tail, data_tail.min(self.space.data.head));
        // Announce before the checkpoint: a crash in between brings the generations
        // back (still exact) rather than losing them without a word.
        self.state
            .expired
            .fetch_add(victims.len() as u64, Ordering::Relaxed);
        for g in &victims {
            tracing::info!(
                generation = g.record.id,
                point_seq = g.record.point_seq,
                point_time_ns = g.record.point_time_ns,
                forced,
                "generation expired"
            );
            self.state.events.emit(Event::Expired {
                generation: g.record.id,
                point: g.point(),
                forced,
            });
        }
        let mirror_point = self.backward.read().mirror().clone();
        let tails = self.tails.clone();
        self.write_checkpoint(&mirror_point, &tails)?;
        Ok(victims.iter().map(|g| g.record.id).collect())
    }

    /// Expires generations the voluntary policy no longer wants; returns their ids.
    pub fn apply_retention(&mut self) -> Result<Vec<u64>> {
        let now = self.state.config.clock.now_ns();
        let keep_ns = u64::try_from(self.retention.keep_at_least.as_nanos()).unwrap_or(u64::MAX);
        let mut expired = Vec::new();
        loop {
            let (count, oldest_time) = {
                let b = self.backward.read();
                let oldest = b
                    .generations()
                    .values()
                    .next()
                    .map(|g| g.record.point_time_ns);
                (b.generations().len() as u64, oldest)
            };
            let Some(oldest_time) = oldest_time else {
                break;
            };
            if now.saturating_sub(oldest_time) < keep_ns {
                break; // protected by keep_at_least
            }
            let too_many = self.retention.keep_last.is_some_and(|n| count > n);
            let too_full = self.space.free_percent() < u64::from(self.retention.min_free_percent);
            if !(too_many || too_full) {
                break;
            }
            if self
                .state
                .pins
                .oldest()
                .is_some_and(|pinned| pinned < self.floor_after_expiring(1))
            {
                break; // the oldest generation serves a pinned point
            }
            expired.extend(self.expire_oldest(1, false)?);
        }
        Ok(expired)
    }
}
