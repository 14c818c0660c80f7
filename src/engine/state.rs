//! What every thread of an open volume shares: the sequence counter and each
//! ring's visibility watermark, ring heads and tails, the mirror seq, the
//! published indexes, the grace domain, failure state and the worker link.
//!
//! Nothing here is behind a lock on the I/O path: per-I/O state is atomics;
//! the only mutexes guard a ring handed between owners and the event list.
//!
//! Invariant 2 (DESIGN.md) lives in [`VolumeState::stable_seq`]: every write
//! with a seq at or below it is durable and visible in its ring's index, so a
//! marker may be published once the stable seq reaches the seq before it.

use super::backward::index::BackwardIndex;
use super::config::VolumeConfig;
use super::error::{EngineError, Result};
use super::events::{Event, Events};
use super::forward::index::{RingIndex, RingOp};
use super::geometry::Layout;
use super::grace::GraceDomain;
use super::twin::{TwinReaders, TwinWriter};
use crate::device::Device;
use crate::lock_audit::AuditedMutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// A ring's watermark when it has nothing in flight.
pub const IDLE: u64 = u64::MAX;

/// An atomic on its own cache line (written by one core, read by others).
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A ring's writer-side state while no [`super::forward::writer::RingWriter`] holds it.
#[derive(Debug)]
pub struct ParkedRing {
    pub index: TwinWriter<RingIndex, RingOp>,
    pub desc_head: u64,
    pub data_head: u64,
    pub last_time_ns: u64,
    /// Highest seq this ring's index has been truncated through.
    pub truncated_through: u64,
}

/// One forward ring as seen by everybody.
#[derive(Debug)]
pub struct RingSlot {
    pub claimed: AtomicBool,
    pub parked: AuditedMutex<Option<ParkedRing>>,
    pub readers: TwinReaders<RingIndex>,
    /// Lowest seq of this ring not yet visible in its index ([`IDLE`] when none).
    pub low: Padded<AtomicU64>,
    /// Heads, published by the owner for fill accounting.
    pub desc_head: AtomicU64,
    pub data_head: AtomicU64,
    /// Tails, moved by the sync worker once a checkpoint made it safe.
    pub desc_tail: AtomicU64,
    pub data_tail: AtomicU64,
    /// The worker asks the owner to drop index entries at or below this seq.
    pub truncate_through: AtomicU64,
}

/// Requests to the sync worker.
#[derive(Debug)]
pub enum WorkerRequest {
    /// Insert a marker and sync the mirror up to it.
    SyncNow(std::sync::mpsc::SyncSender<Result<super::sync::SyncReport>>),
    /// Record a bookmark through the control ring.
    Mark(
        String,
        std::sync::mpsc::SyncSender<Result<super::point::Point>>,
    ),
    /// Apply the voluntary retention policy now.
    ApplyRetention(std::sync::mpsc::SyncSender<Result<Vec<u64>>>),
    /// Replace the retention policy.
    SetRetention(
        super::config::Retention,
        std::sync::mpsc::SyncSender<Result<()>>,
    ),
    /// Pin the point with this seq if it is retained.
    Pin(u64, std::sync::mpsc::SyncSender<Result<()>>),
}

/// How writers and the API reach the sync worker.
#[derive(Debug)]
pub struct WorkerLink {
    pub thread: OnceLock<std::thread::Thread>,
    pub requests: crossbeam_queue::ArrayQueue<WorkerRequest>,
    pub stop: AtomicBool,
    /// Set by writers when a ring crossed the fill threshold.
    pub fill_signal: AtomicBool,
}

/// See the module documentation.
pub struct VolumeState {
    pub device: Arc<dyn Device>,
    pub layout: Layout,
    pub uuid: [u8; 16],
    pub config: VolumeConfig,
    pub next_seq: Padded<AtomicU64>,
    /// The largest stable seq computed so far (keeps `stable_seq` monotone).
    pub stable_floor: Padded<AtomicU64>,
    /// Writer rings then the control ring.
    pub rings: Box<[RingSlot]>,
    /// The mirror holds the volume as of this seq.
    pub mim_seq: Padded<AtomicU64>,
    /// Oldest point that may be read.
    pub floor_seq: Padded<AtomicU64>,
    pub grace: Arc<GraceDomain>,
    pub backward: TwinReaders<BackwardIndex>,
    pub failure: OnceLock<String>,
    pub worker: WorkerLink,
    pub events: Events,
    /// Points the sync must rest on and retention must keep.
    pub pins: super::pin::Pins,
    /// Generations expired since the volume was opened.
    pub expired: AtomicU64,
}

impl std::fmt::Debug for VolumeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeState")
            .field("device", &self.device.describe())
            .field("mim_seq", &self.mim_seq.load(Ordering::Relaxed))
            .field("next_seq", &self.next_seq.load(Ordering::Relaxed))
            .finish()
    }
}

impl VolumeState {
    /// The highest seq at or below which every write is durable and visible.
    pub fn stable_seq(&self) -> u64 {
        let next = self.next_seq.load(Ordering::SeqCst);
        let low = self
            .rings
            .iter()
            .map(|r| r.low.load(Ordering::SeqCst))
            .min()
            .unwrap_or(IDLE);
        let fresh = next.min(low) - 1;
        // A ring going from idle to busy lowers its watermark to a `next_seq`
        // it loaded a moment ago, which can make the fresh value dip below one
        // already handed out. Every value computed was a true bound when it was
        // computed and stays one, so the answer is the largest ever seen.
        self.stable_floor
            .fetch_max(fresh, Ordering::SeqCst)
            .max(fresh)
    }

    /// Marks the volume failed (first failure wins) and tells the operator.
    pub fn fail(&self, message: impl Into<String>) {
        let message = message.into();
        if self.failure.set(message.clone()).is_ok() {
            self.events.emit(Event::Failed { message });
        }
    }

    /// `Err(Failed)` once the volume has failed.
    pub fn check_healthy(&self) -> Result<()> {
        match self.failure.get() {
            Some(m) => Err(EngineError::Failed(m.clone())),
            None if self.worker.stop.load(Ordering::Acquire) => Err(EngineError::Closed),
            None => Ok(()),
        }
    }

    /// Nudges the sync worker (a ring crossed its fill threshold).
    pub fn signal_fill(&self) {
        if !self.worker.fill_signal.swap(true, Ordering::AcqRel) {
            if let Some(t) = self.worker.thread.get() {
                t.unpark();
            }
        }
    }

    /// A reader of every ring's index (writer rings, then the control ring).
    pub fn ring_readers(&self) -> super::error::Result<Vec<super::twin::TwinReader<RingIndex>>> {
        self.rings
            .iter()
            .map(|r| {
                r.readers
                    .reader()
                    .ok_or(EngineError::Busy(super::twin::MAX_TWIN_READERS))
            })
            .collect()
    }

    /// Number of writer rings (the control ring excluded).
    pub fn writer_rings(&self) -> u16 {
        self.layout.geometry.rings
    }
}
