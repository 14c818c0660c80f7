//! The public face of the engine: format a device, open (and recover) a
//! volume, hand out ring writers and readers, list and resolve points, mark,
//! sync, retention, events and stats.
//!
//! A [`Volume`] owns the sync worker thread; dropping or closing it stops the
//! worker. Writers and readers are per-thread handles that keep the shared
//! state alive. Invariant: the superblock is written last by `format`, so a
//! device whose format was interrupted is refused as "not a rewind volume".

use super::backward::index::{BackwardIndex, BackwardOp};
use super::backward::space::BackwardSpace;
use super::circular::Circular;
use super::config::{report, Retention, VolumeConfig};
use super::error::{EngineError, Result};
use super::events::{Event, Events, RecoveryReport};
use super::forward::index::{RingIndex, RingOp};
use super::forward::writer::RingWriter;
use super::geometry::{Geometry, Layout, SLOT_BYTES};
use super::grace::GraceDomain;
use super::mirror::CheckpointWriter;
use super::ondisk::checkpoint::{Checkpoint, RingTails};
use super::ondisk::superblock::Superblock;
use super::pin::PointPin;
use super::point::{At, MarkerKind, Point};
use super::read::Reader;
use super::recovery::{self, Recovered};
use super::state::{Padded, ParkedRing, RingSlot, VolumeState, WorkerLink, WorkerRequest, IDLE};
use super::sync::{SyncReport, Worker};
use super::twin::{self, Absorb};
use crate::device::blocking::BlockingQueue;
use crate::device::{AlignedBuf, Device};
use crate::lock_audit::AuditedMutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

/// Options for [`Volume::format`].
#[derive(Clone, Debug)]
pub struct FormatOptions {
    /// Write zeroes over the mirror so never-written blocks read as zeroes.
    /// Skip only when the device is known to read zeroes (a new sparse file, RAM).
    pub zero_mirror: bool,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions { zero_mirror: true }
    }
}

/// Occupancy of one circular area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AreaUse {
    pub used_blocks: u64,
    pub capacity_blocks: u64,
}

/// A snapshot of a volume's state for operators.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VolumeStats {
    pub mirror_seq: u64,
    pub stable_seq: u64,
    pub next_seq: u64,
    pub generations: u64,
    /// Generations expired since the volume was opened (by policy or for room).
    pub expired_generations: u64,
    pub oldest_point_seq: u64,
    /// Per ring (writer rings, then the control ring): descriptor and data use.
    pub rings: Vec<(AreaUse, AreaUse)>,
    pub backward_desc: AreaUse,
    pub backward_data: AreaUse,
    /// Bytes of map-node memory (backward index, one copy).
    pub backward_map_bytes: usize,
    pub failed: Option<String>,
}

/// An open, protected volume (see the module documentation).
pub struct Volume {
    state: Arc<VolumeState>,
    worker: Option<std::thread::JoinHandle<()>>,
    reader: AuditedMutex<Reader>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("device", &self.state.device.describe())
            .field("geometry", &self.state.layout.geometry)
            .finish()
    }
}

impl Volume {
    /// Lays out a new volume on `device` (destroying what was there) and opens it.
    pub fn format(
        device: Arc<dyn Device>,
        geometry: &Geometry,
        options: &FormatOptions,
        config: VolumeConfig,
    ) -> Result<Volume> {
        format(&*device, geometry, options, &config)?;
        let (volume, _) = Volume::open(device, config)?;
        Ok(volume)
    }

    /// Opens the volume on `device`, recovering from any crash.
    pub fn open(device: Arc<dyn Device>, config: VolumeConfig) -> Result<(Volume, RecoveryReport)> {
        config.validate()?;
        let mut q = BlockingQueue::new(&*device, 64)?;
        let recovered = recovery::recover(&*device, &mut q, config.progress.as_ref())?;
        let report = recovered.report.clone();
        let (state, worker) = build(device, config, recovered, q)?;
        let watched = Arc::clone(&state);
        let hook = state.config.worker_start.clone();
        let handle = std::thread::Builder::new()
            .name("rewind-sync".into())
            .spawn(move || {
                if let Some(hook) = hook {
                    (hook.0)();
                }
                // A panic here is a bug; it must fail the volume loudly, not leave
                // writers and callers waiting for a worker that is gone.
                if let Err(panic) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()))
                {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    watched.fail(format!("sync worker stopped by an internal error: {what}"));
                }
            })
            .map_err(|e| {
                EngineError::Device(crate::device::DeviceError::Invalid(format!(
                    "cannot start the sync worker: {e}"
                )))
            })?;
        let _ = state.worker.thread.set(handle.thread().clone());
        let reader = AuditedMutex::new(Reader::new(Arc::clone(&state))?);
        let unclean = !report.torn_rings.is_empty()
            || report.dropped_records > 0
            || report.completed_sync_to.is_some()
            || report.mirror_rebuilt_to.is_some()
            || !report.lost_generations.is_empty()
            || report.mirror_incomplete;
        if unclean {
            state.events.emit(Event::Recovered(report.clone()));
        } else {
            tracing::debug!(?report, "volume opened");
        }
        Ok((
            Volume {
                state,
                worker: Some(handle),
                reader,
            },
            report,
        ))
    }

    /// The sizes chosen at format time.
    pub fn geometry(&self) -> &Geometry {
        &self.state.layout.geometry
    }

    /// Byte offsets of every region.
    pub fn layout(&self) -> &Layout {
        &self.state.layout
    }

    /// The volume's identity.
    pub fn uuid(&self) -> [u8; 16] {
        self.state.uuid
    }

    /// Exclusive writer for ring `ring` (`0..geometry().rings`).
    pub fn writer(&self, ring: u16) -> Result<RingWriter> {
        if ring >= self.state.writer_rings() {
            return Err(EngineError::NoSuchRing {
                ring,
                rings: self.state.writer_rings(),
            });
        }
        RingWriter::claim(Arc::clone(&self.state), ring)
    }

    /// A read handle for one thread.
    pub fn reader(&self) -> Result<Reader> {
        Reader::new(Arc::clone(&self.state))
    }

    fn shared_reader(&self) -> std::sync::MutexGuard<'_, Reader> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every retained point, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.shared_reader().points()
    }

    /// The retained snapshot generations, oldest first (undo extents included).
    pub fn generations(&self) -> Vec<Arc<super::backward::index::Generation>> {
        self.shared_reader().generations()
    }

    /// The actual point that serves `at`.
    pub fn resolve(&self, at: &At) -> Result<Point> {
        self.shared_reader().resolve(at)
    }

    /// Reads `nblocks` at `lba` as of `at` (blocking; tools and tests).
    pub fn read(&self, lba: u64, nblocks: u64, at: &At) -> Result<(Point, Vec<u8>)> {
        self.shared_reader().read(lba, nblocks, at)
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::SyncSender<Result<T>>) -> WorkerRequest) -> Result<T> {
        self.state.check_healthy()?;
        let (tx, rx) = mpsc::sync_channel(1);
        if self.state.worker.requests.push(make(tx)).is_err() {
            return Err(EngineError::Busy(self.state.worker.requests.capacity()));
        }
        if let Some(t) = self.state.worker.thread.get() {
            t.unpark();
        }
        let deadline = Instant::now() + self.state.config.stable_wait + Duration::from_secs(300);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(EngineError::Closed),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.state.check_healthy()?;
                    if Instant::now() > deadline {
                        return Err(EngineError::Busy(self.state.worker.requests.len()));
                    }
                }
            }
        }
    }

    /// Records a named bookmark (a consistency point that survives every sync
    /// as its own snapshot) once every earlier write is durable.
    pub fn mark(&self, label: &str) -> Result<Point> {
        super::point::check_label(label)?;
        let label = label.to_string();
        self.ask(|tx| WorkerRequest::Mark(label, tx))
    }

    /// Moves the mirror forward over everything written so far.
    pub fn sync_now(&self) -> Result<SyncReport> {
        self.ask(WorkerRequest::SyncNow)
    }

    /// Applies the voluntary retention policy now; returns expired generation ids.
    pub fn apply_retention(&self) -> Result<Vec<u64>> {
        self.ask(WorkerRequest::ApplyRetention)
    }

    /// Replaces the retention policy (and applies it).
    pub fn set_retention(&self, retention: Retention) -> Result<()> {
        self.ask(|tx| WorkerRequest::SetRetention(retention, tx))
    }

    /// Pins the retained point `seq` (see [`crate::engine::pin`]): the sync
    /// rests the mirror on it and voluntary retention keeps it until the
    /// returned pin is dropped. `Expired` if the point is no longer retained,
    /// `InFuture` if it is not yet stable.
    pub fn pin(&self, seq: u64) -> Result<PointPin> {
        self.ask(|tx| WorkerRequest::Pin(seq, tx))?;
        Ok(PointPin::new(Arc::clone(&self.state), seq))
    }

    /// Seqs of the pinned points, oldest first.
    pub fn pinned(&self) -> Vec<u64> {
        self.state.pins.all()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> mpsc::Receiver<Event> {
        self.state.events.subscribe()
    }

    /// The highest seq at or below which every write is durable and visible.
    pub fn stable_seq(&self) -> u64 {
        self.state.stable_seq()
    }

    /// Journal fill, sequence numbers, retention window.
    pub fn stats(&self) -> VolumeStats {
        let s = &self.state;
        let area = |head: u64, tail: u64, cap: u64| AreaUse {
            used_blocks: head.saturating_sub(tail),
            capacity_blocks: cap,
        };
        let rings = s
            .rings
            .iter()
            .zip(&s.layout.rings)
            .map(|(slot, rl)| {
                (
                    area(
                        slot.desc_head.load(Ordering::Acquire),
                        slot.desc_tail.load(Ordering::Acquire),
                        rl.desc_blocks,
                    ),
                    area(
                        slot.data_head.load(Ordering::Acquire),
                        slot.data_tail.load(Ordering::Acquire),
                        rl.data_blocks,
                    ),
                )
            })
            .collect();
        let (generations, map_bytes, desc_used, data_used) =
            self.shared_reader().backward_summary();
        let g = &s.layout.geometry;
        VolumeStats {
            mirror_seq: s.mim_seq.load(Ordering::SeqCst),
            stable_seq: s.stable_seq(),
            next_seq: s.next_seq.load(Ordering::SeqCst),
            generations,
            expired_generations: s.expired.load(Ordering::Relaxed),
            oldest_point_seq: s.floor_seq.load(Ordering::SeqCst),
            rings,
            backward_desc: AreaUse {
                used_blocks: desc_used,
                capacity_blocks: g.backward_desc_blocks,
            },
            backward_data: AreaUse {
                used_blocks: data_used,
                capacity_blocks: g.backward_data_blocks,
            },
            backward_map_bytes: map_bytes,
            failed: s.failure.get().cloned(),
        }
    }

    /// Stops the sync worker and closes the volume. Writers and readers still
    /// alive get `Closed` for new requests.
    pub fn close(mut self) -> Result<()> {
        self.stop();
        match self.state.failure.get() {
            Some(m) => Err(EngineError::Failed(m.clone())),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        self.state.worker.stop.store(true, Ordering::Release);
        if let Some(handle) = self.worker.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a fresh volume: mirror (zeroed if asked), checkpoint, then superblocks.
fn format(
    device: &dyn Device,
    geometry: &Geometry,
    options: &FormatOptions,
    config: &VolumeConfig,
) -> Result<[u8; 16]> {
    let layout = Layout::new(geometry)?;
    layout.check_device(&device.info())?;
    let mut q = BlockingQueue::new(device, 64)?;
    let uuid = *uuid::Uuid::new_v4().as_bytes();
    let now = config.clock.now_ns();
    if options.zero_mirror {
        let chunk = 1u64 << 20;
        let zeroes = AlignedBuf::zeroed(chunk as usize);
        let total = geometry.volume_blocks * geometry.bs();
        let mut at = 0u64;
        while at < total {
            let batch: Vec<(u64, &[u8])> = (0..16)
                .map(|i| at + i * chunk)
                .take_while(|&off| off < total)
                .map(|off| {
                    (
                        layout.mim_offset + off,
                        &zeroes[..(total - off).min(chunk) as usize],
                    )
                })
                .collect();
            at += batch.len() as u64 * chunk;
            q.write_many(&batch)?;
            report(config.progress.as_ref(), "zeroing the mirror", at, total);
        }
    }
    let mut ck = Checkpoint {
        generation: 1,
        uuid,
        mim_seq: 0,
        mim_time_ns: now,
        mim_marker: Some(MarkerKind::Format),
        mim_label: None,
        seq_floor: 1,
        backward_desc_tail: 0,
        backward_data_tail: 0,
        oldest_generation: 1,
        next_generation: 1,
        rings: vec![RingTails::default(); layout.rings.len()],
    };
    let mut slot = AlignedBuf::zeroed(SLOT_BYTES as usize);
    ck.encode(&mut slot);
    q.write(layout.checkpoint[Checkpoint::slot_for(1)], &slot)?;
    q.write(
        layout.checkpoint[Checkpoint::slot_for(0)],
        &AlignedBuf::zeroed(SLOT_BYTES as usize),
    )?;
    ck.generation = 1;
    q.flush()?;
    let sb = Superblock {
        generation: 1,
        uuid,
        created_ns: now,
        geometry: geometry.clone(),
    };
    sb.encode(&mut slot);
    q.write(layout.superblock[0], &slot)?;
    q.write(layout.superblock[1], &slot)?;
    q.flush()?;
    tracing::info!(device = %device.describe(), volume_blocks = geometry.volume_blocks, block_size = geometry.block_size, "volume formatted");
    Ok(uuid)
}

/// Builds the shared state and the worker from what recovery found.
fn build(
    device: Arc<dyn Device>,
    config: VolumeConfig,
    rec: Recovered,
    io: BlockingQueue,
) -> Result<(Arc<VolumeState>, Worker)> {
    let Recovered {
        superblock,
        layout,
        checkpoint,
        checkpoints,
        generations,
        space,
        rings: scans,
        mirror,
        next_seq,
        report: _,
        failure,
    } = rec;
    let chunks = Arc::clone(&config.chunks);
    let mut slots = Vec::with_capacity(scans.len());
    for (ring, scan) in scans.iter().enumerate() {
        let make = || {
            let mut ix = RingIndex::new(ring as u16, Arc::clone(&chunks));
            ix.absorb(&RingOp::Append(scan.records.clone()));
            ix
        };
        let (writer, readers) = twin::new::<RingIndex, RingOp>(make(), make());
        let tails = checkpoint.rings[ring];
        slots.push(RingSlot {
            claimed: AtomicBool::new(false),
            parked: AuditedMutex::new(Some(ParkedRing {
                index: writer,
                desc_head: scan.desc_head,
                data_head: scan.data_head,
                last_time_ns: scan.last_time_ns,
                truncated_through: mirror.seq,
            })),
            readers,
            low: Padded(AtomicU64::new(IDLE)),
            desc_head: AtomicU64::new(scan.desc_head),
            data_head: AtomicU64::new(scan.data_head),
            desc_tail: AtomicU64::new(tails.desc),
            data_tail: AtomicU64::new(tails.data),
            truncate_through: AtomicU64::new(mirror.seq),
        });
    }
    let make_backward = || {
        let mut b = BackwardIndex::new(mirror.clone(), Arc::clone(&chunks));
        for g in &generations {
            b.absorb(&BackwardOp::Add(Arc::new(g.clone())));
        }
        b
    };
    let (backward_writer, backward_readers) =
        twin::new::<BackwardIndex, BackwardOp>(make_backward(), make_backward());
    let floor = generations
        .first()
        .map_or(mirror.seq, |g| g.record.point_seq);
    let next_generation = generations
        .last()
        .map_or(checkpoint.next_generation, |g| g.record.id + 1)
        .max(checkpoint.next_generation);
    let state = Arc::new(VolumeState {
        device,
        layout,
        uuid: superblock.uuid,
        next_seq: Padded(AtomicU64::new(next_seq)),
        stable_floor: Padded(AtomicU64::new(next_seq - 1)),
        rings: slots.into_boxed_slice(),
        mim_seq: Padded(AtomicU64::new(mirror.seq)),
        floor_seq: Padded(AtomicU64::new(floor)),
        grace: Arc::new(GraceDomain::default()),
        backward: backward_readers,
        failure: OnceLock::new(),
        worker: WorkerLink {
            thread: OnceLock::new(),
            requests: crossbeam_queue::ArrayQueue::new(64),
            stop: AtomicBool::new(false),
            fill_signal: AtomicBool::new(false),
        },
        events: Events::default(),
        pins: Default::default(),
        expired: AtomicU64::new(0),
        config,
    });
    if let Some(f) = failure {
        state.fail(f);
    }
    let control = RingWriter::claim(Arc::clone(&state), state.writer_rings())?;
    let rings = state.ring_readers()?;
    let worker = Worker {
        state: Arc::clone(&state),
        io,
        control,
        backward: backward_writer,
        rings,
        space: BackwardSpace {
            desc: Circular::new(space.desc.capacity, space.desc.head, space.desc.tail),
            data: Circular::new(space.data.capacity, space.data.head, space.data.tail),
        },
        scratch: super::mirror::Scratch::default(),
        checkpoints: CheckpointWriter {
            generation: checkpoints.generation,
        },
        next_generation,
        tails: checkpoint.rings.clone(),
        retention: state.config.retention.clone(),
        last_sync: Instant::now(),
        last_marker: Instant::now(),
    };
    Ok((state, worker))
}
