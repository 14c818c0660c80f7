//! The I/O a reactor issues on behalf of all its queues: one engine ring
//! writer and one reader per volume (the ring is the reactor's own), one
//! device queue per raw namespace, a cache of data buffers, and the routing
//! of completions back to the queue that asked.
//!
//! Everything here belongs to one reactor thread; nothing is shared, nothing
//! locks. A request's tag carries the queue's slot, the slot's generation and
//! the queue's own command tag, so a completion arriving after its queue
//! closed (and the slot was reused) is recognised and dropped.
//!
//! Invariants: every buffer handed to the engine or a device queue comes back
//! (in a completion) before it is reused; a completion reaches only the queue
//! generation that submitted it.

use crate::device::{AlignedBuf, Device, DeviceQueue, IoCompletion, IoKind, IoRequest};
use crate::engine::{
    At, EngineError, MarkerKind, Point, ReadAt, ReadCompletion, Reader, RingWriter, Volume,
    WriteCompletion,
};
use crate::nvmf::status::Status;
use crate::runtime::{BufferPoolStats, HugepagePool, IoBufferPool};
use std::collections::HashMap;
use std::sync::Arc;

/// Device queue depth of a raw namespace on one reactor.
const RAW_QUEUE_DEPTH: u32 = 256;

/// Buffers up to this size are kept for reuse (larger ones are freed).
const CACHED_MAX: usize = 1 << 20;

/// Buffers kept per size class.
const CACHED_PER_CLASS: usize = 256;

/// Hugepage-backed buffers per reactor: (buffer bytes, count) per size
/// class; 36 MiB in all. Larger or further requests use the heap.
const POOLED_CLASSES: [(usize, usize); 9] = [
    (4 << 10, 1024),
    (8 << 10, 256),
    (16 << 10, 256),
    (32 << 10, 128),
    (64 << 10, 64),
    (128 << 10, 64),
    (256 << 10, 16),
    (512 << 10, 8),
    (1 << 20, 4),
];

/// The outcome of one request.
#[derive(Debug)]
pub struct IoDone {
    /// The queue's own tag (low 32 bits of the request tag).
    pub tag: u32,
    /// The write's seq or the read's point seq on success.
    pub result: Result<u64, Status>,
    /// The data buffer, handed back (filled, for a read).
    pub buf: Option<AlignedBuf>,
}

/// An engine error as the NVMe status a host understands.
pub fn engine_status(e: &EngineError) -> Status {
    match e {
        EngineError::OutOfRange { .. } => Status::LBA_OUT_OF_RANGE,
        EngineError::ZeroLength | EngineError::TooLarge { .. } | EngineError::BufferSize { .. } => {
            Status::INVALID_FIELD
        }
        EngineError::Busy(_) => Status::NAMESPACE_NOT_READY,
        // The point a view or a read-at-point names is gone: its data can no
        // longer be read, which is what "unrecovered read error" tells a host.
        EngineError::BeforeRetention { .. }
        | EngineError::TimeBeforeRetention { .. }
        | EngineError::Expired(_) => Status::UNRECOVERED_READ_ERROR,
        EngineError::InFuture { .. } | EngineError::UnknownLabel(_) => Status::INVALID_FIELD,
        EngineError::Failed(_) | EngineError::Closed => Status::NAMESPACE_NOT_READY,
        _ => Status::INTERNAL,
    }
}

/// Per-volume handles of this reactor.
struct VolumeIo {
    volume: Arc<Volume>,
    writer: RingWriter,
    reader: Reader,
}

/// Per-device handles of this reactor (raw namespaces).
struct RawIo {
    device: Arc<dyn Device>,
    queue: Box<dyn DeviceQueue>,
    /// Buffers in flight by internal tag, with the caller's tag.
    in_flight: HashMap<u64, (u64, Option<AlignedBuf>)>,
    next: u64,
}

/// One registered queue's mailbox of completions.
#[derive(Default)]
struct Inbox {
    generation: u16,
    open: bool,
    done: Vec<IoDone>,
}

/// A reactor's I/O: see the module documentation.
pub struct ReactorIo {
    ring: u16,
    volumes: Vec<VolumeIo>,
    raws: Vec<RawIo>,
    inboxes: Vec<Inbox>,
    free_inboxes: Vec<u16>,
    cache: HashMap<usize, Vec<AlignedBuf>>,
    /// Hugepage-backed buffer pools by size class, smallest first.
    pools: Vec<IoBufferPool>,
    writes: Vec<WriteCompletion>,
    reads: Vec<ReadCompletion>,
    device: Vec<IoCompletion>,
}

impl std::fmt::Debug for ReactorIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactorIo")
            .field("ring", &self.ring)
            .field("volumes", &self.volumes.len())
            .field("raws", &self.raws.len())
            .field("queues", &self.inboxes.iter().filter(|i| i.open).count())
            .finish()
    }
}

/// Why a request was not accepted.
pub type Refused = (Status, Option<AlignedBuf>);

impl ReactorIo {
    /// The I/O of the reactor that appends to engine ring `ring`.
    pub fn new(ring: u16) -> ReactorIo {
        ReactorIo {
            ring,
            volumes: Vec::new(),
            raws: Vec::new(),
            inboxes: Vec::new(),
            free_inboxes: Vec::new(),
            cache: HashMap::new(),
            pools: Vec::new(),
            writes: Vec::with_capacity(256),
            reads: Vec::with_capacity(256),
            device: Vec::with_capacity(256),
        }
    }

    /// The same, with data buffers carved from `source`'s 2 MiB chunks
    /// (size classes that cannot get chunks fall back to the heap).
    pub fn with_buffers(ring: u16, source: &Arc<HugepagePool>) -> ReactorIo {
        let mut io = ReactorIo::new(ring);
        for (bytes, count) in POOLED_CLASSES {
            match IoBufferPool::new(Arc::clone(source), bytes, count) {
                Ok(pool) => io.pools.push(pool),
                Err(e) => {
                    tracing::warn!(ring, bytes, error = %e, "buffer class served from the heap");
                }
            }
        }
        io
    }

    /// The index of the reactor this belongs to (its engine ring).
    pub fn reactor(&self) -> usize {
        usize::from(self.ring)
    }

    /// Usage of the hugepage-backed buffer pools.
    pub fn buffer_stats(&self) -> Vec<BufferPoolStats> {
        self.pools.iter().map(IoBufferPool::stats).collect()
    }

    /// Registers a queue; its requests carry the returned id.
    pub fn open_queue(&mut self) -> u32 {
        let slot = match self.free_inboxes.pop() {
            Some(s) => s,
            None => {
                self.inboxes.push(Inbox::default());
                (self.inboxes.len() - 1) as u16
            }
        };
        let inbox = &mut self.inboxes[usize::from(slot)];
        inbox.generation = inbox.generation.wrapping_add(1);
        inbox.open = true;
        debug_assert!(inbox.done.is_empty());
        (u32::from(inbox.generation) << 16) | u32::from(slot)
    }

    /// Unregisters a queue; completions still to come for it are dropped.
    pub fn close_queue(&mut self, queue: u32) {
        let slot = (queue & 0xFFFF) as u16;
        if let Some(inbox) = self.inboxes.get_mut(usize::from(slot)) {
            if inbox.open && u32::from(inbox.generation) == queue >> 16 {
                inbox.open = false;
                let done = std::mem::take(&mut inbox.done);
                for d in done {
                    if let Some(b) = d.buf {
                        Self::recycle_into(&mut self.cache, b);
                    }
                }
                self.free_inboxes.push(slot);
            }
        }
    }

    /// Moves the completions for `queue` into `out`.
    pub fn take_done(&mut self, queue: u32, out: &mut Vec<IoDone>) {
        if let Some(inbox) = self.inboxes.get_mut((queue & 0xFFFF) as usize) {
            out.append(&mut inbox.done);
        }
    }

    /// A buffer of `len` bytes whose contents the caller will overwrite.
    pub fn buffer(&mut self, len: usize) -> AlignedBuf {
        let class = len.next_power_of_two().max(4096);
        if let Some(mut b) = self.cache.get_mut(&class).and_then(Vec::pop) {
            b.set_len_reusing(len);
            return b;
        }
        if let Some(mut b) = self
            .pools
            .iter_mut()
            .find(|p| p.buffer_bytes() == class)
            .and_then(IoBufferPool::alloc_aligned)
        {
            b.set_len_reusing(len);
            return b;
        }
        let mut b = AlignedBuf::zeroed(class);
        b.set_len_reusing(len);
        b
    }

    /// Gives a buffer back for reuse.
    pub fn recycle(&mut self, buf: AlignedBuf) {
        Self::recycle_into(&mut self.cache, buf);
    }

    fn recycle_into(cache: &mut HashMap<usize, Vec<AlignedBuf>>, buf: AlignedBuf) {
        let class = buf.capacity();
        if class <= CACHED_MAX && class.is_power_of_two() {
            let list = cache.entry(class).or_default();
            if list.len() < CACHED_PER_CLASS {
                list.push(buf);
            }
        }
    }

    fn volume_io(&mut self, volume: &Arc<Volume>) -> Result<usize, Status> {
        if let Some(i) = self
            .volumes
            .iter()
            .position(|v| Arc::ptr_eq(&v.volume, volume))
        {
            return Ok(i);
        }
        let writer = volume.writer(self.ring).map_err(|e| {
            tracing::error!(ring = self.ring, error = %e, "no ring writer for this reactor");
            Status::INTERNAL
        })?;
        let reader = volume.reader().map_err(|e| {
            tracing::error!(error = %e, "no volume reader for this reactor");
            Status::INTERNAL
        })?;
        self.volumes.push(VolumeIo {
            volume: Arc::clone(volume),
            writer,
            reader,
        });
        Ok(self.volumes.len() - 1)
    }

    /// The volume's handles on this reactor, or the refusal handing `buf` back.
    fn handles(
        &mut self,
        volume: &Arc<Volume>,
        buf: AlignedBuf,
    ) -> Result<(&mut VolumeIo, AlignedBuf), Refused> {
        match self.volume_io(volume) {
            Ok(v) => Ok((&mut self.volumes[v], buf)),
            Err(s) => Err((s, Some(buf))),
        }
    }

    fn raw_io(&mut self, device: &Arc<dyn Device>) -> Result<usize, Status> {
        if let Some(i) = self
            .raws
            .iter()
            .position(|r| Arc::ptr_eq(&r.device, device))
        {
            return Ok(i);
        }
        let queue = device.queue(RAW_QUEUE_DEPTH).map_err(|e| {
            tracing::error!(error = %e, "no device queue for a raw namespace");
            Status::INTERNAL
        })?;
        self.raws.push(RawIo {
            device: Arc::clone(device),
            queue,
            in_flight: HashMap::new(),
            next: 0,
        });
        Ok(self.raws.len() - 1)
    }

    fn tag(queue: u32, tag: u32) -> u64 {
        (u64::from(queue) << 32) | u64::from(tag)
    }

    /// Journals a write of `buf` at `lba`.
    pub fn write(
        &mut self,
        volume: &Arc<Volume>,
        lba: u64,
        buf: AlignedBuf,
        queue: u32,
        tag: u32,
    ) -> Result<(), Refused> {
        let (v, buf) = self.handles(volume, buf)?;
        v.writer
            .submit_write(lba, buf, Self::tag(queue, tag))
            .map_err(|(e, b)| (engine_status(&e), Some(b)))
    }

    /// Journals a write of zeroes.
    pub fn write_zeroes(
        &mut self,
        volume: &Arc<Volume>,
        lba: u64,
        nblocks: u64,
        queue: u32,
        tag: u32,
    ) -> Result<(), Refused> {
        let v = self.volume_io(volume).map_err(|s| (s, None))?;
        self.volumes[v]
            .writer
            .submit_zeroes(lba, nblocks, Self::tag(queue, tag))
            .map_err(|e| (engine_status(&e), None))
    }

    /// A flush marker: completes when every earlier write is durable.
    pub fn flush(&mut self, volume: &Arc<Volume>, queue: u32, tag: u32) -> Result<(), Refused> {
        let v = self.volume_io(volume).map_err(|s| (s, None))?;
        self.volumes[v]
            .writer
            .submit_marker(MarkerKind::Flush, None, Self::tag(queue, tag))
            .map_err(|e| (engine_status(&e), None))
    }

    /// Reads into `buf` at `lba` as of `at`.
    pub fn read(
        &mut self,
        volume: &Arc<Volume>,
        lba: u64,
        at: ReadAt,
        buf: AlignedBuf,
        queue: u32,
        tag: u32,
    ) -> Result<(), Refused> {
        let (v, buf) = self.handles(volume, buf)?;
        v.reader
            .submit_read(lba, at, buf, Self::tag(queue, tag))
            .map_err(|(e, b)| (engine_status(&e), Some(b)))
    }

    /// The retained point that serves `at` on `volume`.
    pub fn resolve(&mut self, volume: &Arc<Volume>, at: &At) -> Result<Point, Status> {
        let v = self.volume_io(volume)?;
        self.volumes[v]
            .reader
            .resolve(at)
            .map_err(|e| engine_status(&e))
    }

    /// Reads or writes a raw device at byte `offset`, or flushes it.
    pub fn raw(
        &mut self,
        device: &Arc<dyn Device>,
        kind: IoKind,
        offset: u64,
        buf: Option<AlignedBuf>,
        queue: u32,
        tag: u32,
    ) -> Result<(), Refused> {
        let r = match self.raw_io(device) {
            Ok(r) => r,
            Err(s) => return Err((s, buf)),
        };
        let raw = &mut self.raws[r];
        let internal = raw.next;
        raw.next += 1;
        let mut buf = buf;
        let (ptr, len) = match buf.as_mut() {
            Some(b) => (b.as_mut_ptr(), b.len() as u32),
            None => (std::ptr::null_mut(), 0),
        };
        let request = IoRequest {
            kind,
            offset,
            ptr,
            len,
            tag: internal,
        };
        // SAFETY: the buffer moves into `in_flight` (its heap allocation does
        // not move) and stays there until the completion for `internal` is
        // returned by poll.
        match unsafe { raw.queue.submit(request) } {
            Ok(()) => {
                raw.in_flight.insert(internal, (Self::tag(queue, tag), buf));
                Ok(())
            }
            Err(_) => Err((Status::NAMESPACE_NOT_READY, buf)),
        }
    }

    fn deliver(
        inboxes: &mut [Inbox],
        cache: &mut HashMap<usize, Vec<AlignedBuf>>,
        full: u64,
        done: IoDone,
    ) {
        let queue = (full >> 32) as u32;
        match inboxes.get_mut((queue & 0xFFFF) as usize) {
            Some(inbox) if inbox.open && u32::from(inbox.generation) == queue >> 16 => {
                inbox.done.push(done)
            }
            _ => {
                if let Some(b) = done.buf {
                    Self::recycle_into(cache, b);
                }
            }
        }
    }

    /// Drives every writer, reader and device queue once and routes what
    /// completed. Returns how many completions were routed.
    pub fn pump(&mut self) -> usize {
        let mut n = 0;
        for v in &mut self.volumes {
            v.writer.poll(&mut self.writes);
            for c in self.writes.drain(..) {
                n += 1;
                let done = IoDone {
                    tag: c.tag as u32,
                    result: c.result.map_err(|e| engine_status(&e)),
                    buf: c.buf,
                };
                Self::deliver(&mut self.inboxes, &mut self.cache, c.tag, done);
            }
            v.reader.poll(&mut self.reads);
            for c in self.reads.drain(..) {
                n += 1;
                let done = IoDone {
                    tag: c.tag as u32,
                    result: c.result.map(|()| 0).map_err(|e| engine_status(&e)),
                    buf: Some(c.buf),
                };
                Self::deliver(&mut self.inboxes, &mut self.cache, c.tag, done);
            }
        }
        for r in &mut self.raws {
            r.queue.poll(&mut self.device);
            for c in self.device.drain(..) {
                let Some((full, buf)) = r.in_flight.remove(&c.tag) else {
                    continue;
                };
                n += 1;
                let done = IoDone {
                    tag: full as u32,
                    result: c.result.map(|()| 0).map_err(|e| {
                        tracing::warn!(error = %e, "raw namespace I/O failed");
                        Status::INTERNAL
                    }),
                    buf,
                };
                Self::deliver(&mut self.inboxes, &mut self.cache, full, done);
            }
        }
        n
    }

    /// Drops this reactor's handles on `volume` once no queue uses it (the
    /// management plane deleted it); the ring writer finishes what it had
    /// issued first. Returns whether the reactor held any.
    pub fn release(&mut self, volume: &Arc<Volume>) -> bool {
        let before = self.volumes.len();
        self.volumes.retain(|v| !Arc::ptr_eq(&v.volume, volume));
        before != self.volumes.len()
    }

    /// Requests still in flight (all queues).
    pub fn in_flight(&self) -> usize {
        self.volumes
            .iter()
            .map(|v| v.writer.outstanding())
            .sum::<usize>()
            + self.raws.iter().map(|r| r.in_flight.len()).sum::<usize>()
    }
}
