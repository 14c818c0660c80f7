//! The crash-test device: a seeded, deterministic fault injector over a
//! [`RamDevice`], shaped after TigerBeetle's simulated storage.
//!
//! It owns a *durable* image (the inner RAM device) and a *volatile* list of
//! every accepted write not yet durable, in submission order, each with its
//! bytes as they were at submission. Completions are deferred to `poll`/`wait`
//! and, with [`FaultConfig::reorder`], come out as a random non-empty subset in
//! random order. Reads see the durable image overlaid by the volatile writes
//! that have completed. A flush records, when submitted, which writes had
//! completed; when it completes, exactly those (still volatile) move into the
//! durable image. A crash fails the crashing request, every later one and every
//! one in flight with [`DeviceError::Crashed`]; [`FaultDevice::crash_image`]
//! then shows what the media might hold: the durable image plus each volatile
//! write dropped, applied whole or torn at sector granularity.
//!
//! Invariant: the durable image only ever receives writes that completed before
//! a flush that completed was submitted; every random choice comes from one
//! seeded generator, so a given seed and sequence of calls yields the same
//! completions and the same crash image. Shared state sits behind one mutex:
//! this is a test device, not the I/O path.

use super::ram::RamDevice;
use super::{
    check_copy, check_depth, check_request, AlignedBuf, Device, DeviceError, DeviceInfo,
    DeviceQueue, IoCompletion, IoKind, IoRequest, QueueFull,
};
use crate::lock_audit::AuditedMutex;
use std::sync::{Arc, MutexGuard, PoisonError};

/// What a [`FaultDevice`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// Complete requests in random subsets and orders (else all, in submission
    /// order, at the next poll).
    pub reorder: bool,
    /// The unit a torn write is made of: a power of two dividing the block size.
    pub sector_size: u32,
    /// Chance, per million reads, that a read fails with [`DeviceError::Injected`].
    pub read_error_per_million: u32,
    /// Chance, per million writes, that a write fails with
    /// [`DeviceError::Injected`] (and then has no effect).
    pub write_error_per_million: u32,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            reorder: true,
            sector_size: 512,
            read_error_per_million: 0,
            write_error_per_million: 0,
        }
    }
}

/// A device that reorders completions, injects errors and crashes on demand.
pub struct FaultDevice {
    shared: Arc<AuditedMutex<FaultState>>,
    info: DeviceInfo,
    inner_description: String,
}

impl std::fmt::Debug for FaultDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultDevice({})", self.inner_description)
    }
}

impl FaultDevice {
    /// Wraps `inner`, which becomes the durable image: flushed writes land in
    /// it, so nobody else should write to it while the fault device is in use.
    ///
    /// Errors: [`DeviceError::Invalid`] for a sector size that is not a power
    /// of two dividing the block size, or an error rate above one million.
    pub fn new(
        inner: Arc<RamDevice>,
        config: FaultConfig,
    ) -> Result<Arc<FaultDevice>, DeviceError> {
        let inner_info = inner.info();
        if !config.sector_size.is_power_of_two()
            || !inner_info.block_size.is_multiple_of(config.sector_size)
        {
            return Err(DeviceError::Invalid(format!(
                "fault sector size {} is not a power of two dividing the {}-byte block size",
                config.sector_size, inner_info.block_size
            )));
        }
        for (what, rate) in [
            ("read", config.read_error_per_million),
            ("write", config.write_error_per_million),
        ] {
            if rate > PER_MILLION {
                return Err(DeviceError::Invalid(format!(
                    "{what} error rate {rate} exceeds one million per million"
                )));
            }
        }
        let inner_description = inner.describe();
        let state = FaultState {
            durable: inner,
            config,
            rng: SplitMix64::new(config.seed),
            volatile: Vec::new(),
            next_write_id: 0,
            write_flush_count: 0,
            crash_countdown: None,
            crashed: false,
        };
        Ok(Arc::new(FaultDevice {
            shared: Arc::new(AuditedMutex::new(state)),
            info: DeviceInfo {
                volatile_cache: true,
                ..inner_info
            },
            inner_description,
        }))
    }

    /// Crashes the device at the write or flush submission after the next `n`
    /// accepted ones: `crash_after(0)` makes the very next write or flush the
    /// crashing request. Reads in between are served normally.
    pub fn crash_after(&self, n: u64) {
        self.state().crash_countdown = Some(n);
    }

    /// Crashes the device now: everything in flight and everything submitted
    /// later completes with [`DeviceError::Crashed`].
    pub fn crash_now(&self) {
        self.state().crashed = true;
    }

    /// True once the device has crashed.
    pub fn is_crashed(&self) -> bool {
        self.state().crashed
    }

    /// Write and flush submissions accepted so far (refused and crashing ones
    /// not counted): the range to draw `crash_after` points from.
    pub fn write_flush_count(&self) -> u64 {
        self.state().write_flush_count
    }

    /// Only what flushes made durable.
    pub fn durable_image(&self) -> Arc<RamDevice> {
        self.state().durable.snapshot()
    }

    /// What the media might hold after a crash now: the durable image plus, for
    /// each write not yet durable (completed or in flight), in submission
    /// order, a seeded choice of dropped, applied whole, or torn (a random
    /// subset of its `sector_size` sectors, each applied whole). The same seed
    /// and history give the same image.
    pub fn crash_image(&self) -> Arc<RamDevice> {
        let state = self.state();
        let mut rng =
            SplitMix64::new(state.config.seed ^ CRASH_IMAGE_STREAM ^ state.write_flush_count);
        let image = state.durable.snapshot();
        let sector = state.config.sector_size as usize;
        for write in &state.volatile {
            match rng.below(3) {
                0 => {}
                1 => image.write_bytes(write.offset, &write.data),
                _ => {
                    for (index, bytes) in write.data.chunks(sector).enumerate() {
                        assert_eq!(bytes.len(), sector, "writes are whole sectors");
                        if rng.below(2) == 1 {
                            image.write_bytes(write.offset + (index * sector) as u64, bytes);
                        }
                    }
                }
            }
        }
        image
    }

    fn state(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.shared)
    }
}

impl Device for FaultDevice {
    fn info(&self) -> DeviceInfo {
        self.info
    }

    fn queue(&self, depth: u32) -> Result<Box<dyn DeviceQueue>, DeviceError> {
        check_depth(depth)?;
        Ok(Box::new(FaultQueue {
            shared: Arc::clone(&self.shared),
            info: self.info,
            depth: depth as usize,
            in_flight: Vec::with_capacity(depth as usize),
        }))
    }

    fn describe(&self) -> String {
        format!("fault({})", self.inner_description)
    }
}

const PER_MILLION: u32 = 1_000_000;

/// Separates the crash-image choices from the completion stream of one seed.
const CRASH_IMAGE_STREAM: u64 = 0xC2A5_11A6_E000_0001;

/// State shared by a fault device and all its queues.
struct FaultState {
    /// The durable image.
    durable: Arc<RamDevice>,
    config: FaultConfig,
    rng: SplitMix64,
    /// Accepted writes not yet durable, in submission order.
    volatile: Vec<VolatileWrite>,
    next_write_id: u64,
    write_flush_count: u64,
    /// Accepted writes or flushes left before the crashing one.
    crash_countdown: Option<u64>,
    crashed: bool,
}

/// A write the device accepted and has not made durable.
struct VolatileWrite {
    /// Increases in submission order.
    id: u64,
    offset: u64,
    data: Vec<u8>,
    /// Completed successfully (visible to reads, coverable by a flush).
    completed: bool,
}

impl FaultState {
    /// Accepts a validated request, or refuses it when the device has crashed
    /// or this request is the crashing one.
    ///
    /// # Safety
    /// For a write, `request.ptr..+len` is readable (submit's contract).
    unsafe fn accept(&mut self, request: &IoRequest) -> Action {
        if self.crashed {
            return Action::Refused(DeviceError::Crashed);
        }
        if request.kind == IoKind::Read {
            return Action::Read {
                offset: request.offset,
                ptr: request.ptr,
                len: request.len as usize,
            };
        }
        match self.crash_countdown {
            Some(0) => {
                self.crash_countdown = None;
                self.crashed = true;
                return Action::Refused(DeviceError::Crashed);
            }
            Some(ref mut left) => *left -= 1,
            None => {}
        }
        self.write_flush_count += 1;
        if request.kind == IoKind::Flush {
            let covers = self
                .volatile
                .iter()
                .filter(|w| w.completed)
                .map(|w| w.id)
                .collect();
            return Action::Flush { covers };
        }
        let mut data = vec![0u8; request.len as usize];
        // SAFETY: the caller's buffer is readable for `len` bytes (this
        // function's contract) and `data` is a fresh allocation.
        unsafe { std::ptr::copy_nonoverlapping(request.ptr, data.as_mut_ptr(), data.len()) };
        let id = self.next_write_id;
        self.next_write_id += 1;
        self.volatile.push(VolatileWrite {
            id,
            offset: request.offset,
            data,
            completed: false,
        });
        Action::Write { id }
    }

    /// Completes one request, applying its effect.
    fn complete(&mut self, action: Action) -> Result<(), DeviceError> {
        match action {
            Action::Refused(error) => Err(error),
            // A write in flight at the crash stays volatile: it may have
            // reached the media (see crash_image).
            _ if self.crashed => Err(DeviceError::Crashed),
            Action::Read { offset, ptr, len } => {
                if self
                    .rng
                    .chance_per_million(self.config.read_error_per_million)
                {
                    return Err(DeviceError::Injected {
                        kind: "read",
                        offset,
                    });
                }
                let bytes = self.view(offset, len);
                // SAFETY: the caller's buffer stays writable until this
                // completion is returned (submit's contract); `bytes` is `len` long.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, len) };
                Ok(())
            }
            Action::Write { id } => {
                let index = self.volatile_index(id);
                if self
                    .rng
                    .chance_per_million(self.config.write_error_per_million)
                {
                    let write = self.volatile.remove(index);
                    return Err(DeviceError::Injected {
                        kind: "write",
                        offset: write.offset,
                    });
                }
                assert!(!self.volatile[index].completed);
                self.volatile[index].completed = true;
                Ok(())
            }
            Action::Flush { covers } => {
                self.make_durable(&covers);
                Ok(())
            }
        }
    }

    fn volatile_index(&self, id: u64) -> usize {
        let index = self.volatile.binary_search_by_key(&id, |w| w.id);
        index.unwrap_or_else(|_| panic!("in-flight write {id} is in the volatile list"))
    }

    /// Durable bytes overlaid by every completed volatile write.
    fn view(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut bytes = self.durable.read_bytes(offset, len);
        let end = offset + len as u64;
        for write in self.volatile.iter().filter(|w| w.completed) {
            let write_end = write.offset + write.data.len() as u64;
            let (from, to) = (offset.max(write.offset), end.min(write_end));
            if from < to {
                let source =
                    &write.data[(from - write.offset) as usize..(to - write.offset) as usize];
                bytes[(from - offset) as usize..(to - offset) as usize].copy_from_slice(source);
            }
        }
        bytes
    }

    /// Moves the writes in `covers` (ids in submission order) that are still
    /// volatile into the durable image, in submission order.
    fn make_durable(&mut self, covers: &[u64]) {
        let durable = &self.durable;
        self.volatile.retain(|write| {
            let covered = covers.binary_search(&write.id).is_ok();
            if covered {
                assert!(write.completed, "a flush covers only completed writes");
                durable.write_bytes(write.offset, &write.data);
            }
            !covered
        });
    }
}

/// What completing a request will do.
enum Action {
    /// Fails with this error (validation, or the device had crashed).
    Refused(DeviceError),
    Read {
        offset: u64,
        ptr: *mut u8,
        len: usize,
    },
    Write {
        id: u64,
    },
    /// Makes these write ids durable (those completed when it was submitted).
    Flush {
        covers: Vec<u64>,
    },
}

struct InFlight {
    tag: u64,
    action: Action,
}

/// A queue on a [`FaultDevice`]; holds its requests until poll/wait completes them.
struct FaultQueue {
    shared: Arc<AuditedMutex<FaultState>>,
    info: DeviceInfo,
    depth: usize,
    /// In submission order.
    in_flight: Vec<InFlight>,
}

// SAFETY: the read pointers held in `in_flight` are written only while the
// caller's submit contract keeps them valid, whichever thread drives the queue.
unsafe impl Send for FaultQueue {}

impl DeviceQueue for FaultQueue {
    unsafe fn submit(&mut self, request: IoRequest) -> Result<(), QueueFull> {
        if self.in_flight.len() >= self.depth {
            return Err(QueueFull);
        }
        let action = match check_request(&self.info, &request) {
            Err(error) => Action::Refused(error),
            // SAFETY: validated; the buffer contract is forwarded from submit's.
            Ok(()) => unsafe { lock(&self.shared).accept(&request) },
        };
        self.in_flight.push(InFlight {
            tag: request.tag,
            action,
        });
        Ok(())
    }

    /// Completes a random non-empty subset in random order (with reorder off,
    /// or after a crash: everything, in submission order).
    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        if self.in_flight.is_empty() {
            return 0;
        }
        let mut state = lock(&self.shared);
        let count = self.in_flight.len();
        let order = if state.config.reorder && !state.crashed {
            random_subset_order(&mut state.rng, count)
        } else {
            (0..count).collect()
        };
        assert!(!order.is_empty() && order.len() <= count);
        let mut slots: Vec<Option<InFlight>> = self.in_flight.drain(..).map(Some).collect();
        for index in &order {
            let request = slots[*index]
                .take()
                .expect("completion order names each request once");
            let result = state.complete(request.action);
            out.push(IoCompletion {
                tag: request.tag,
                result,
            });
        }
        self.in_flight.extend(slots.into_iter().flatten());
        order.len()
    }

    /// The same as poll, which never comes back empty-handed while anything is
    /// in flight.
    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        self.poll(out)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn copies_within(&self) -> bool {
        true
    }

    /// Modelled as what a copy is on a device: a read of `src`, then a write
    /// of the same bytes to `dst`, each subject to this device's faults (the
    /// write is volatile until a flush and may be torn or dropped by a crash).
    fn copy_within(&mut self, src: u64, dst: u64, len: u32) -> Result<(), DeviceError> {
        check_copy(&self.info, src, dst, len)?;
        assert!(self.in_flight.is_empty(), "copies run on an idle queue");
        let mut buf = AlignedBuf::zeroed(len as usize);
        let mut out = Vec::with_capacity(1);
        for (kind, offset) in [(IoKind::Read, src), (IoKind::Write, dst)] {
            let request = IoRequest {
                kind,
                offset,
                ptr: buf.as_mut_ptr(),
                len,
                tag: 0,
            };
            // SAFETY: `buf` outlives the request: its completion is awaited below.
            if unsafe { self.submit(request) }.is_err() {
                unreachable!("an idle queue of depth >= 1 takes a request");
            }
            out.clear();
            while out.is_empty() {
                self.wait(&mut out);
            }
            if let Some(c) = out.pop() {
                c.result?;
            }
        }
        Ok(())
    }
}

/// The shared state; a panic while it was held (a failed assertion in a test)
/// leaves nothing half-done that later calls could trip over.
fn lock(shared: &AuditedMutex<FaultState>) -> MutexGuard<'_, FaultState> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Indices `0..count` picked each with chance one half (at least one), shuffled.
fn random_subset_order(rng: &mut SplitMix64, count: usize) -> Vec<usize> {
    let mut chosen: Vec<usize> = (0..count).filter(|_| rng.below(2) == 1).collect();
    if chosen.is_empty() {
        chosen.push(rng.below(count as u64) as usize);
    }
    for i in (1..chosen.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        chosen.swap(i, j);
    }
    chosen
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough for
/// fault schedules.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`), by multiply-shift.
    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }

    fn chance_per_million(&mut self, rate: u32) -> bool {
        self.below(u64::from(PER_MILLION)) < u64::from(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::blocking::BlockingQueue;
    use crate::device::conformance::{self, drain};
    use crate::device::AlignedBuf;
    use proptest::prelude::*;

    const SECTOR: usize = 512;

    fn fault_device(size_bytes: u64, config: FaultConfig) -> Arc<FaultDevice> {
        let inner = RamDevice::new(size_bytes, 512).expect("ram device");
        FaultDevice::new(inner, config).expect("fault device")
    }

    /// `sectors` sectors whose every sector differs from every other write's.
    fn write_data(write: u64, sectors: usize) -> AlignedBuf {
        let mut buf = AlignedBuf::zeroed(sectors * SECTOR);
        for (sector, bytes) in buf.chunks_mut(SECTOR).enumerate() {
            bytes.copy_from_slice(&conformance::pattern(
                ((write + 1) << 16) | sector as u64,
                SECTOR,
            ));
        }
        buf
    }

    /// Submits a write without completing it.
    fn submit_write(queue: &mut dyn DeviceQueue, offset: u64, buf: &mut AlignedBuf, tag: u64) {
        let request = IoRequest {
            kind: IoKind::Write,
            offset,
            ptr: buf.as_mut_ptr(),
            len: buf.len() as u32,
            tag,
        };
        // SAFETY: every caller keeps `buf` alive until the queue is drained.
        unsafe { queue.submit(request) }.expect("within depth");
    }

    #[test]
    fn conformance_reordered_and_in_order() {
        for reorder in [true, false] {
            let config = FaultConfig {
                seed: 7,
                reorder,
                ..FaultConfig::default()
            };
            let device = fault_device(4 << 20, config);
            assert!(device.info().volatile_cache);
            assert_eq!(device.describe(), "fault(ram 4 MiB)");
            conformance::check(&*device);
        }
        let inner = RamDevice::new(4 << 20, 4096).expect("ram device");
        let config = FaultConfig {
            sector_size: 4096,
            ..FaultConfig::default()
        };
        conformance::check(&*FaultDevice::new(inner, config).expect("fault device"));
    }

    #[test]
    fn config_is_validated() {
        let inner = RamDevice::new(1 << 20, 512).expect("ram device");
        for bad in [
            FaultConfig {
                sector_size: 0,
                ..FaultConfig::default()
            },
            FaultConfig {
                sector_size: 768,
                ..FaultConfig::default()
            },
            FaultConfig {
                sector_size: 4096,
                ..FaultConfig::default()
            },
            FaultConfig {
                read_error_per_million: 1_000_001,
                ..FaultConfig::default()
            },
            FaultConfig {
                write_error_per_million: u32::MAX,
                ..FaultConfig::default()
            },
        ] {
            let result = FaultDevice::new(Arc::clone(&inner), bad);
            assert!(
                matches!(result, Err(DeviceError::Invalid(_))),
                "{bad:?} accepted"
            );
        }
        let small_sectors = FaultConfig {
            sector_size: 64,
            ..FaultConfig::default()
        };
        assert!(FaultDevice::new(inner, small_sectors).is_ok());
    }

    #[test]
    fn completions_are_deferred_and_reordered() {
        let device = fault_device(
            1 << 20,
            FaultConfig {
                seed: 3,
                ..FaultConfig::default()
            },
        );
        let mut queue = device.queue(32).expect("queue");
        for tag in 0..32 {
            // SAFETY: flushes carry no buffer.
            unsafe { queue.submit(IoRequest::flush(tag)) }.expect("within depth");
        }
        let mut order = Vec::new();
        let mut polls = 0;
        while queue.in_flight() > 0 {
            let mut out = Vec::new();
            let added = queue.poll(&mut out);
            assert!(added > 0, "a poll with requests in flight completes some");
            assert_eq!(queue.in_flight(), 32 - order.len() - added);
            order.extend(out.iter().map(|c| c.tag));
            polls += 1;
        }
        assert!(polls > 1, "completions spread over several polls");
        assert_ne!(
            order,
            (0..32).collect::<Vec<_>>(),
            "completions come out of order"
        );
        order.sort_unstable();
        assert_eq!(order, (0..32).collect::<Vec<_>>());
    }

    #[test]
    fn without_reorder_everything_completes_in_order_at_the_next_poll() {
        let device = fault_device(
            1 << 20,
            FaultConfig {
                reorder: false,
                ..FaultConfig::default()
            },
        );
        let mut queue = device.queue(8).expect("queue");
        let mut bufs: Vec<AlignedBuf> = (0..8).map(|i| write_data(i, 1)).collect();
        for (i, buf) in bufs.iter_mut().enumerate() {
            submit_write(queue.as_mut(), i as u64 * 512, buf, i as u64);
        }
        let mut out = Vec::new();
        assert_eq!(queue.poll(&mut out), 8);
        assert_eq!(
            out.iter().map(|c| c.tag).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        assert!(out.iter().all(|c| c.result.is_ok()));
    }

    #[test]
    fn reads_see_completed_writes_only() {
        let config = FaultConfig {
            reorder: false,
            ..FaultConfig::default()
        };
        let device = fault_device(1 << 20, config);
        let mut writer = device.queue(4).expect("queue");
        let mut reader = device.queue(4).expect("queue");
        let mut data = write_data(1, 2);
        submit_write(writer.as_mut(), 4096, &mut data, 1);
        let mut back = AlignedBuf::zeroed(1024);
        let read = IoRequest {
            kind: IoKind::Read,
            offset: 4096,
            ptr: back.as_mut_ptr(),
            len: 1024,
            tag: 2,
        };
        // SAFETY: `back` outlives both drains.
        unsafe { reader.submit(read) }.expect("within depth");
        assert_eq!(drain(reader.as_mut())[&2], Ok(()));
        assert!(
            back.iter().all(|&b| b == 0),
            "the write is still in flight on the other queue"
        );
        assert_eq!(drain(writer.as_mut())[&1], Ok(()));
        // SAFETY: as above.
        unsafe { reader.submit(read) }.expect("within depth");
        assert_eq!(drain(reader.as_mut())[&2], Ok(()));
        assert!(back[..] == data[..], "completed, so visible");
        let durable = device.durable_image().read_bytes(4096, 1024);
        assert!(
            durable.iter().all(|&b| b == 0),
            "but not durable before a flush"
        );
    }

    #[test]
    fn flushed_writes_always_survive() {
        for seed in 0..32 {
            let device = fault_device(
                1 << 20,
                FaultConfig {
                    seed,
                    ..FaultConfig::default()
                },
            );
            let mut queue = BlockingQueue::new(&*device, 4).expect("queue");
            let kept = write_data(1, 4);
            queue.write(0, &kept).expect("write");
            queue.flush().expect("flush");
            let volatile = write_data(2, 4);
            queue.write(8192, &volatile).expect("write");
            device.crash_now();
            assert_eq!(queue.flush(), Err(DeviceError::Crashed));
            assert_eq!(device.durable_image().read_bytes(0, 2048), kept[..]);
            assert_eq!(
                device.crash_image().read_bytes(0, 2048),
                kept[..],
                "seed {seed}"
            );
        }
    }

    #[test]
    fn unflushed_writes_are_dropped_whole_or_torn_by_sector() {
        let old = write_data(1, 8);
        let new = write_data(2, 8);
        let (mut dropped, mut whole, mut torn) = (0, 0, 0);
        for seed in 0..64 {
            let device = fault_device(
                1 << 20,
                FaultConfig {
                    seed,
                    ..FaultConfig::default()
                },
            );
            let mut queue = BlockingQueue::new(&*device, 4).expect("queue");
            queue.write(0, &old).expect("write");
            queue.flush().expect("flush");
            queue.write(0, &new).expect("overwrite, never flushed");
            let image = device.crash_image().read_bytes(0, old.len());
            let mut from_new = 0;
            for (sector, bytes) in image.chunks(SECTOR).enumerate() {
                let range = sector * SECTOR..(sector + 1) * SECTOR;
                if bytes == &new[range.clone()] {
                    from_new += 1;
                } else {
                    assert_eq!(
                        bytes, &old[range],
                        "seed {seed}: sector {sector} is neither old nor new"
                    );
                }
            }
            match from_new {
                0 => dropped += 1,
                8 => whole += 1,
                _ => torn += 1,
            }
        }
        assert!(
            dropped > 0 && whole > 0 && torn > 0,
            "dropped {dropped} whole {whole} torn {torn}"
        );
    }

    #[test]
    fn a_write_completing_after_the_flush_was_submitted_is_not_covered() {
        let device = fault_device(
            1 << 20,
            FaultConfig {
                reorder: false,
                ..FaultConfig::default()
            },
        );
        let mut queue = device.queue(4).expect("queue");
        let mut early = write_data(1, 1);
        submit_write(queue.as_mut(), 0, &mut early, 1);
        assert_eq!(drain(queue.as_mut())[&1], Ok(()));
        let mut late = write_data(2, 1);
        submit_write(queue.as_mut(), 512, &mut late, 2);
        // SAFETY: flushes carry no buffer.
        unsafe { queue.submit(IoRequest::flush(3)) }.expect("within depth");
        // The write completes before the flush, but after it was submitted.
        let results = drain(queue.as_mut());
        assert!(results.values().all(Result::is_ok));
        let durable = device.durable_image();
        assert_eq!(durable.read_bytes(0, 512), early[..]);
        assert!(
            durable.read_bytes(512, 512).iter().all(|&b| b == 0),
            "the late write is still volatile"
        );
        // A second flush covers it.
        let mut queue = BlockingQueue::new(&*device, 1).expect("queue");
        queue.flush().expect("flush");
        assert_eq!(device.durable_image().read_bytes(512, 512), late[..]);
    }

    /// A fixed history of overlapping, reordered writes and flushes ending in a
    /// crash; returns the completion order and the crash image.
    fn scripted_history(seed: u64) -> (Vec<u64>, Vec<u8>) {
        let device = fault_device(
            64 << 10,
            FaultConfig {
                seed,
                ..FaultConfig::default()
            },
        );
        let mut queue = device.queue(8).expect("queue");
        let mut bufs: Vec<AlignedBuf> =
            (0..24).map(|i| write_data(i, 1 + i as usize % 4)).collect();
        let mut order = Vec::new();
        for (i, buf) in bufs.iter_mut().enumerate() {
            if queue.in_flight() == 8 {
                let mut out = Vec::new();
                queue.wait(&mut out);
                order.extend(out.iter().map(|c| c.tag));
            }
            submit_write(queue.as_mut(), (i as u64 % 12) * 4096, buf, i as u64);
            if i % 7 == 6 {
                let results = drain(queue.as_mut());
                order.extend(results.keys());
                // SAFETY: flushes carry no buffer.
                unsafe { queue.submit(IoRequest::flush(100 + i as u64)) }
                    .expect("room after drain");
            }
        }
        device.crash_now();
        order.extend(drain(queue.as_mut()).keys());
        (order, device.crash_image().read_bytes(0, 64 << 10))
    }

    #[test]
    fn crash_images_are_deterministic_per_seed() {
        assert_eq!(scripted_history(11), scripted_history(11));
        assert_ne!(scripted_history(11).1, scripted_history(12).1);
    }

    #[test]
    fn crash_after_fails_the_nth_write_or_flush_and_everything_later() {
        let device = fault_device(1 << 20, FaultConfig::default());
        device.crash_after(3);
        let mut queue = BlockingQueue::new(&*device, 4).expect("queue");
        let data = write_data(1, 1);
        queue.write(0, &data).expect("first accepted");
        let mut back = AlignedBuf::zeroed(512);
        queue.read(0, &mut back).expect("reads do not count");
        queue.write(512, &data).expect("second accepted");
        queue.flush().expect("third accepted");
        assert!(!device.is_crashed());
        assert_eq!(device.write_flush_count(), 3);
        assert_eq!(
            queue.write(1024, &data),
            Err(DeviceError::Crashed),
            "the crashing request"
        );
        assert!(device.is_crashed());
        assert_eq!(queue.write(1536, &data), Err(DeviceError::Crashed));
        assert_eq!(queue.flush(), Err(DeviceError::Crashed));
        assert_eq!(queue.read(0, &mut back), Err(DeviceError::Crashed));
        assert_eq!(
            device.write_flush_count(),
            3,
            "refused requests are not counted"
        );
        let image = device.crash_image();
        assert_eq!(image.read_bytes(0, 512), data[..]);
        assert_eq!(image.read_bytes(512, 512), data[..]);
        assert!(
            image.read_bytes(1024, 1024).iter().all(|&b| b == 0),
            "crashing and later writes never land"
        );
        // Misaligned requests are refused for what they are, even after the crash.
        let mut odd = AlignedBuf::zeroed(1024);
        assert!(matches!(
            queue.read(1, &mut odd[..512]),
            Err(DeviceError::Misaligned { .. })
        ));

        let device = fault_device(1 << 20, FaultConfig::default());
        device.crash_after(0);
        let mut queue = BlockingQueue::new(&*device, 4).expect("queue");
        assert_eq!(
            queue.flush(),
            Err(DeviceError::Crashed),
            "crash_after(0) crashes the next one"
        );
        assert_eq!(device.write_flush_count(), 0);
    }

    #[test]
    fn writes_in_flight_at_the_crash_may_reach_the_media() {
        let (mut landed, mut lost) = (0, 0);
        for seed in 0..32 {
            let device = fault_device(
                1 << 20,
                FaultConfig {
                    seed,
                    ..FaultConfig::default()
                },
            );
            let mut queue = device.queue(4).expect("queue");
            let mut data = write_data(1, 1);
            submit_write(queue.as_mut(), 0, &mut data, 1);
            device.crash_now();
            assert_eq!(drain(queue.as_mut())[&1], Err(DeviceError::Crashed));
            let sector = device.crash_image().read_bytes(0, 512);
            if sector == data[..] {
                landed += 1;
            } else {
                assert!(sector.iter().all(|&b| b == 0));
                lost += 1;
            }
        }
        assert!(landed > 0 && lost > 0, "landed {landed} lost {lost}");
    }

    #[test]
    fn injected_errors() {
        let always_read = FaultConfig {
            read_error_per_million: 1_000_000,
            ..FaultConfig::default()
        };
        let device = fault_device(1 << 20, always_read);
        let mut queue = BlockingQueue::new(&*device, 4).expect("queue");
        let data = write_data(1, 1);
        queue.write(4096, &data).expect("writes unaffected");
        let mut back = AlignedBuf::zeroed(512);
        assert_eq!(
            queue.read(4096, &mut back),
            Err(DeviceError::Injected {
                kind: "read",
                offset: 4096
            })
        );

        let always_write = FaultConfig {
            write_error_per_million: 1_000_000,
            ..FaultConfig::default()
        };
        let device = fault_device(1 << 20, always_write);
        let mut queue = BlockingQueue::new(&*device, 4).expect("queue");
        assert_eq!(
            queue.write(4096, &data),
            Err(DeviceError::Injected {
                kind: "write",
                offset: 4096
            })
        );
        queue.flush().expect("flush");
        queue.read(4096, &mut back).expect("read");
        assert!(back.iter().all(|&b| b == 0), "a failed write has no effect");
        let image = device.crash_image().read_bytes(4096, 512);
        assert!(
            image.iter().all(|&b| b == 0),
            "nor does it reach a crash image"
        );

        let half = FaultConfig {
            seed: 5,
            write_error_per_million: 500_000,
            ..FaultConfig::default()
        };
        let device = fault_device(1 << 20, half);
        let mut queue = BlockingQueue::new(&*device, 8).expect("queue");
        let failed = (0..200u64)
            .filter(|i| queue.write(i * 512, &data).is_err())
            .count();
        assert!(
            (50..150).contains(&failed),
            "{failed} of 200 writes failed at a 50% rate"
        );
    }

    /// One step of a random history.
    #[derive(Clone, Debug)]
    enum Step {
        Write { block: u64, blocks: u64 },
        Flush,
        Poll,
        Wait,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u64..64, 1u64..=4).prop_map(|(block, blocks)| Step::Write { block, blocks }),
            1 => Just(Step::Flush),
            2 => Just(Step::Poll),
            1 => Just(Step::Wait),
        ]
    }

    /// What the test knows about one write it submitted.
    struct ModelWrite {
        offset: u64,
        data: AlignedBuf,
        accepted: bool,
        in_flight: bool,
        completed: bool,
        durable: bool,
    }

    /// The test's own account of a history, kept from completions alone.
    #[derive(Default)]
    struct Model {
        writes: Vec<ModelWrite>,
        /// Per flush tag: the writes completed when it was submitted.
        flushes: Vec<Vec<usize>>,
    }

    const FLUSH_TAG: u64 = 1 << 32;
    const BLOCKS: u64 = 64;

    impl Model {
        fn absorb(&mut self, out: &mut Vec<IoCompletion>) {
            for completion in out.drain(..) {
                if completion.tag >= FLUSH_TAG {
                    let covers = &self.flushes[(completion.tag - FLUSH_TAG) as usize];
                    match completion.result {
                        Ok(()) => covers.iter().for_each(|&w| self.writes[w].durable = true),
                        Err(error) => assert_eq!(error, DeviceError::Crashed),
                    }
                } else {
                    let write = &mut self.writes[completion.tag as usize];
                    assert!(write.in_flight);
                    write.in_flight = false;
                    match completion.result {
                        Ok(()) => write.completed = true,
                        Err(error) => assert_eq!(error, DeviceError::Crashed),
                    }
                }
            }
        }

        fn settle(&mut self, queue: &mut dyn DeviceQueue) {
            let mut out = Vec::new();
            while queue.in_flight() > 0 {
                queue.wait(&mut out);
                self.absorb(&mut out);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Every sector of a crash image holds its durable value or the value of
        /// some unflushed write covering it, and exactly the durable value where
        /// no unflushed write covers it; the durable image is exactly what the
        /// flushes covered.
        #[test]
        fn crash_image_sectors_are_durable_or_unflushed(
            seed: u64,
            reorder: bool,
            steps in proptest::collection::vec(step(), 1..60),
            crash_after in proptest::option::of(0u64..40),
        ) {
            let device = fault_device(BLOCKS * 512, FaultConfig { seed, reorder, ..FaultConfig::default() });
            if let Some(n) = crash_after {
                device.crash_after(n);
            }
            let mut queue = device.queue(6).expect("queue");
            let mut model = Model::default();
            let mut out = Vec::new();
            for step in steps {
                match step {
                    Step::Write { block, blocks } => {
                        let blocks = blocks.min(BLOCKS - block);
                        let (offset, end) = (block * 512, (block + blocks) * 512);
                        // Like the engine: never two writes on one range in flight.
                        let overlaps = model.writes.iter().any(|w| {
                            w.in_flight && w.offset < end && offset < w.offset + w.data.len() as u64
                        });
                        if overlaps {
                            model.settle(queue.as_mut());
                        }
                        while queue.in_flight() == 6 {
                            queue.wait(&mut out);
                            model.absorb(&mut out);
                        }
                        let index = model.writes.len();
                        let mut data = write_data(index as u64, blocks as usize);
                        submit_write(queue.as_mut(), offset, &mut data, index as u64);
                        let accepted = !device.is_crashed();
                        model.writes.push(ModelWrite { offset, data, accepted, in_flight: true, completed: false, durable: false });
                    }
                    Step::Flush => {
                        while queue.in_flight() == 6 {
                            queue.wait(&mut out);
                            model.absorb(&mut out);
                        }
                        let covers = (0..model.writes.len()).filter(|&w| model.writes[w].completed).collect();
                        let tag = FLUSH_TAG + model.flushes.len() as u64;
                        model.flushes.push(covers);
                        // SAFETY: flushes carry no buffer.
                        unsafe { queue.submit(IoRequest::flush(tag)) }.expect("room made above");
                    }
                    Step::Poll => {
                        queue.poll(&mut out);
                        model.absorb(&mut out);
                    }
                    Step::Wait => {
                        queue.wait(&mut out);
                        model.absorb(&mut out);
                    }
                }
            }
            device.crash_now();
            model.settle(queue.as_mut());

            let size = (BLOCKS * 512) as usize;
            let mut durable = vec![0u8; size];
            for write in model.writes.iter().filter(|w| w.durable) {
                let start = write.offset as usize;
                durable[start..start + write.data.len()].copy_from_slice(&write.data);
            }
            prop_assert!(device.durable_image().read_bytes(0, size) == durable, "durable image differs from the model");

            let image = device.crash_image().read_bytes(0, size);
            prop_assert_eq!(&image, &device.crash_image().read_bytes(0, size), "crash image is deterministic");
            let unflushed: Vec<&ModelWrite> = model.writes.iter().filter(|w| w.accepted && !w.durable).collect();
            for sector in 0..size / SECTOR {
                let range = sector * SECTOR..(sector + 1) * SECTOR;
                let at = (sector * SECTOR) as u64;
                let got = &image[range.clone()];
                let mut candidates = unflushed.iter().filter(|w| w.offset <= at && at < w.offset + w.data.len() as u64).peekable();
                if candidates.peek().is_none() {
                    prop_assert!(got == &durable[range], "sector {} changed without an unflushed write", sector);
                } else {
                    let matches_write = candidates.any(|w| {
                        let from = (at - w.offset) as usize;
                        got == &w.data[from..from + SECTOR]
                    });
                    prop_assert!(matches_write || got == &durable[range], "sector {} holds foreign bytes", sector);
                }
            }
        }
    }
}
