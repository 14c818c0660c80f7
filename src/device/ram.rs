//! RAM-backed device: a zero-filled anonymous memory mapping behind the
//! [`Device`] contract, for tests, benchmarks and crash images.
//!
//! It owns the mapping (page-aligned, so 4096-aligned) and copies bytes in and
//! out with raw pointers: writes and device-internal copies of 1 KiB or more
//! with streaming stores that bypass the caches, as a DMA engine would
//! (`stream_copy`), reads with ordinary copies, since their buffer is
//! read next; a queue completes each request during `submit`, and
//! the completion is returned by the next `poll`/`wait`. Nothing is cached, so
//! a flush is a no-op and `volatile_cache` is false. Tests map lazily; the
//! service maps its RAM volumes resident ([`RamDevice::new_resident`]:
//! hugetlb pages when reserved, else populated ordinary pages), so no write
//! takes a page fault.
//!
//! Invariant: the mapping is exactly `size_bytes` long, never moves and lives as
//! long as any device or queue handle to it. Concurrency contract: queues on
//! several threads may read and write *disjoint* byte ranges at the same time;
//! a write racing any other access to the same bytes through queues is
//! undefined behaviour, and callers of [`DeviceQueue::submit`] on a RAM queue
//! must exclude it (the engine never has two requests on one range in flight).
//! The safe byte helpers ([`RamDevice::read_bytes`], [`RamDevice::write_bytes`],
//! [`RamDevice::snapshot`]) work only while no queue of the device is open
//! (they panic otherwise), so they never race with queue I/O. That check and
//! queue creation share one device mutex; queue I/O takes no lock and touches
//! no shared word, so reactors on several cores never meet on a cache line.

use super::stream_copy;
use super::{
    check_copy, check_depth, check_request, Device, DeviceError, DeviceInfo, DeviceQueue,
    IoCompletion, IoKind, IoRequest, QueueFull,
};
use crate::lock_audit::AuditedMutex;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};

/// A device whose bytes live in memory.
pub struct RamDevice {
    /// Cloned once per open queue; its strong count is 1 when none is open.
    region: Arc<RamRegion>,
    info: DeviceInfo,
    /// Held while a queue is created and while a byte helper runs.
    opening: AuditedMutex<()>,
}

impl std::fmt::Debug for RamDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RamDevice({:?})", self.info)
    }
}

impl RamDevice {
    fn holding(region: RamRegion, info: DeviceInfo) -> RamDevice {
        RamDevice {
            region: Arc::new(region),
            info,
            opening: AuditedMutex::new(()),
        }
    }

    /// Excludes queue creation and asserts no queue is open, so the caller
    /// may touch any byte of the region until the guard drops.
    fn exclusive(&self, what: &str) -> MutexGuard<'_, ()> {
        let guard = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(
            Arc::strong_count(&self.region),
            1,
            "RamDevice::{what} on {} while a queue is open (close its queues first)",
            self.describe()
        );
        // The last queue's drop released its Arc with Release ordering; this
        // makes its copies happen before ours.
        fence(Ordering::Acquire);
        guard
    }

    /// A zero-filled device of `size_bytes` (a positive multiple of
    /// `block_size`, which is 512 or 4096).
    pub fn new(size_bytes: u64, block_size: u32) -> Result<Arc<RamDevice>, DeviceError> {
        let len = checked_len(size_bytes, block_size)?;
        let region = RamRegion::map(len)?;
        let info = DeviceInfo {
            size_bytes,
            block_size,
            volatile_cache: false,
        };
        Ok(Arc::new(RamDevice::holding(region, info)))
    }

    /// Backs every page of the device with memory now, as SPDK's malloc bdev
    /// does, instead of on first write: a page fault (and the kernel zeroing a
    /// page) inside a write would otherwise cost several microseconds, once
    /// per page, in the middle of the I/O path. Returns the bytes populated.
    /// Uses `MADV_POPULATE_WRITE` and falls back to touching each page.
    /// Like the byte helpers, it needs every queue closed.
    pub fn populate(&self) -> u64 {
        let _exclusive = self.exclusive("populate");
        // SAFETY: no queue is open (checked just above).
        unsafe { self.region.populate() };
        self.info.size_bytes
    }

    /// A device whose memory is resident from the start, as SPDK's malloc
    /// bdev's is: 2 MiB hugetlb pages when `hugepages` and enough of them are
    /// reserved (one TLB entry per 2 MiB, so random 4 KiB copies do not miss
    /// the TLB), otherwise ordinary pages populated now (see
    /// [`RamDevice::populate`]). [`Device::describe`] says which.
    pub fn new_resident(
        size_bytes: u64,
        block_size: u32,
        hugepages: bool,
    ) -> Result<Arc<RamDevice>, DeviceError> {
        let len = checked_len(size_bytes, block_size)?;
        let info = DeviceInfo {
            size_bytes,
            block_size,
            volatile_cache: false,
        };
        if let Some(region) = hugepages.then(|| RamRegion::map_hugetlb(len)).flatten() {
            return Ok(Arc::new(RamDevice::holding(region, info)));
        }
        let device = RamDevice::new(size_bytes, block_size)?;
        device.populate();
        Ok(device)
    }

    /// A device holding a copy of `bytes` (a positive multiple of `block_size`).
    pub fn from_bytes(bytes: &[u8], block_size: u32) -> Result<Arc<RamDevice>, DeviceError> {
        let device = RamDevice::new(bytes.len() as u64, block_size)?;
        device.write_bytes(0, bytes);
        Ok(device)
    }

    /// A new device with a full copy of this one's bytes.
    ///
    /// Panics when the memory for the copy cannot be mapped, as an allocation
    /// failure would.
    pub fn snapshot(&self) -> Arc<RamDevice> {
        let copy = RamRegion::map(self.region.len)
            .unwrap_or_else(|error| panic!("snapshot of {}: {error}", self.describe()));
        let _exclusive = self.exclusive("snapshot");
        // SAFETY: both mappings are `len` bytes long and distinct; no queue is
        // open on the source while we read it, and the new mapping is not
        // shared yet.
        unsafe { std::ptr::copy_nonoverlapping(self.region.base(), copy.base(), self.region.len) };
        Arc::new(RamDevice::holding(copy, self.info))
    }

    /// Copies `len` device bytes at `offset` out, bypassing queues (any
    /// alignment). Panics when the range reaches past the device end.
    pub fn read_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let start = self.region.checked_range(offset, len);
        let mut bytes = vec![0u8; len];
        let _exclusive = self.exclusive("read_bytes");
        // SAFETY: range checked above; `bytes` is a fresh allocation of `len`
        // bytes; no queue is open.
        unsafe { self.region.copy_out(start, bytes.as_mut_ptr(), len) };
        bytes
    }

    /// Copies `bytes` onto the device at `offset`, bypassing queues (any
    /// alignment). Panics when the range reaches past the device end.
    pub fn write_bytes(&self, offset: u64, bytes: &[u8]) {
        let start = self.region.checked_range(offset, bytes.len());
        let _exclusive = self.exclusive("write_bytes");
        // SAFETY: range checked above; `bytes` is a live slice that cannot lie in
        // the mapping (the mapping is never handed out as a slice); no queue is
        // open.
        unsafe { self.region.copy_in(start, bytes.as_ptr(), bytes.len()) };
    }
}

/// The mapping length of a RAM device of `size_bytes` in `block_size` blocks.
fn checked_len(size_bytes: u64, block_size: u32) -> Result<usize, DeviceError> {
    if block_size != 512 && block_size != 4096 {
        return Err(DeviceError::Invalid(format!(
            "RAM device block size {block_size} is neither 512 nor 4096"
        )));
    }
    if size_bytes == 0 || !size_bytes.is_multiple_of(u64::from(block_size)) {
        return Err(DeviceError::Invalid(format!(
            "RAM device size {size_bytes} is not a positive multiple of the {block_size}-byte block size"
        )));
    }
    usize::try_from(size_bytes).map_err(|_| {
        DeviceError::Invalid(format!(
            "RAM device size {size_bytes} exceeds the address space"
        ))
    })
}

impl Device for RamDevice {
    fn info(&self) -> DeviceInfo {
        self.info
    }

    fn queue(&self, depth: u32) -> Result<Box<dyn DeviceQueue>, DeviceError> {
        check_depth(depth)?;
        let _opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Box::new(RamQueue {
            region: Arc::clone(&self.region),
            info: self.info,
            depth: depth as usize,
            done: VecDeque::with_capacity(depth as usize),
        }))
    }

    fn describe(&self) -> String {
        let size = self.info.size_bytes;
        let pages = if self.region.hugetlb {
            ", hugepages"
        } else {
            ""
        };
        if size.is_multiple_of(1 << 20) {
            format!("ram {} MiB{pages}", size >> 20)
        } else {
            format!("ram {size} bytes{pages}")
        }
    }
}

/// The anonymous mapping that holds a RAM device's bytes.
struct RamRegion {
    base: NonNull<u8>,
    len: usize,
    /// Bytes mapped: `len`, rounded up to whole hugepages for a hugetlb mapping.
    mapped: usize,
    /// Backed by reserved 2 MiB hugetlb pages (resident from the start).
    hugetlb: bool,
}

// SAFETY: the region is plain memory; every access goes through raw-pointer
// copies whose exclusion is the module's concurrency contract (disjoint ranges
// for queue I/O, no open queue for the helpers).
unsafe impl Send for RamRegion {}
// SAFETY: as above.
unsafe impl Sync for RamRegion {}

impl RamRegion {
    /// Maps `len` zero-filled bytes (`len > 0`).
    fn map(len: usize) -> Result<RamRegion, DeviceError> {
        assert!(
            len > 0,
            "RAM region length is checked positive by the caller"
        );
        // SAFETY: an anonymous private mapping with no address hint touches no
        // existing memory; the result is checked against MAP_FAILED.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(DeviceError::Io {
                path: "ram".to_string(),
                message: format!("mmap of {len} bytes: {}", std::io::Error::last_os_error()),
            });
        }
        let base = NonNull::new(raw.cast::<u8>()).ok_or_else(|| DeviceError::Io {
            path: "ram".to_string(),
            message: "mmap returned a null address".to_string(),
        })?;
        assert_eq!(
            base.as_ptr() as usize % super::BUFFER_ALIGN,
            0,
            "mmap is page-aligned"
        );
        Ok(RamRegion {
            base,
            len,
            mapped: len,
            hugetlb: false,
        })
    }

    /// Maps `len` zero-filled bytes from reserved hugetlb pages, populated
    /// now; `None` when too few are free (the caller falls back).
    fn map_hugetlb(len: usize) -> Option<RamRegion> {
        const HUGEPAGE: usize = 2 << 20;
        let page = HUGEPAGE;
        let mapped = len.checked_next_multiple_of(page)?;
        // SAFETY: an anonymous private mapping with no address hint touches no
        // existing memory; the result is checked against MAP_FAILED.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let base = NonNull::new(raw.cast::<u8>())?;
        Some(RamRegion {
            base,
            len,
            mapped,
            hugetlb: true,
        })
    }

    /// Backs every page with memory now.
    ///
    /// # Safety
    /// Nobody else accesses the region meanwhile (the page-touch fallback
    /// rewrites every page's first byte).
    unsafe fn populate(&self) {
        /// Linux 5.14+; older kernels answer EINVAL and we touch pages instead.
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        // SAFETY: the range is exactly this mapping; populating changes no bytes.
        let rc = unsafe { libc::madvise(self.base().cast(), self.len, MADV_POPULATE_WRITE) };
        if rc == 0 {
            return;
        }
        let page = 4096usize;
        for at in (0..self.len).step_by(page) {
            // SAFETY: `at` lies in the mapping; the caller keeps queue I/O out,
            // and writing back the byte just read changes nothing.
            unsafe {
                let p = self.base().add(at);
                p.write_volatile(p.read_volatile());
            }
        }
    }

    fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The start of `[offset, offset + len)` as an index, asserting it lies in
    /// the region (the helpers' callers are tests and the fault device).
    fn checked_range(&self, offset: u64, len: usize) -> usize {
        let end = offset.checked_add(len as u64);
        assert!(
            end.is_some_and(|end| end <= self.len as u64),
            "RAM device access at {offset} length {len} reaches past the end ({} bytes)",
            self.len
        );
        offset as usize
    }

    /// Copies region bytes `[start, start + len)` to `dst`.
    ///
    /// # Safety
    /// The range lies in the region; `dst` is valid for `len` byte writes and
    /// does not overlap the region; nobody writes these region bytes meanwhile.
    unsafe fn copy_out(&self, start: usize, dst: *mut u8, len: usize) {
        debug_assert!(start + len <= self.len);
        // SAFETY: forwarded from this function's contract.
        unsafe { std::ptr::copy_nonoverlapping(self.base().add(start), dst, len) };
    }

    /// Copies `len` bytes from `src` into region bytes `[start, start + len)`.
    ///
    /// # Safety
    /// The range lies in the region; `src` is valid for `len` byte reads and
    /// does not overlap the region; nobody else accesses these region bytes
    /// meanwhile.
    unsafe fn copy_in(&self, start: usize, src: *const u8, len: usize) {
        debug_assert!(start + len <= self.len);
        // SAFETY: forwarded from this function's contract.
        unsafe { stream_copy::copy(src, self.base().add(start), len) };
    }
}

impl Drop for RamRegion {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` came from one successful mmap and no handle to
        // the region outlives it (queues hold an Arc).
        let rc = unsafe { libc::munmap(self.base().cast(), self.mapped) };
        if rc != 0 {
            tracing::warn!(len = self.len, error = %std::io::Error::last_os_error(), "munmap of RAM device failed");
        }
    }
}

/// A RAM device queue: requests run during `submit` and wait in `done` until
/// the next `poll`/`wait` hands them out.
struct RamQueue {
    region: Arc<RamRegion>,
    info: DeviceInfo,
    depth: usize,
    done: VecDeque<IoCompletion>,
}

impl RamQueue {
    /// Performs a validated read or write.
    ///
    /// # Safety
    /// `request` passed `check_request`, its buffer is valid as
    /// [`DeviceQueue::submit`] requires, and no other in-flight request touches
    /// the same device bytes (module contract).
    unsafe fn execute(&self, request: &IoRequest) {
        let start = request.offset as usize;
        let len = request.len as usize;
        match request.kind {
            // SAFETY: forwarded from this function's contract; check_request
            // bounded the range by the region size.
            IoKind::Read => unsafe { self.region.copy_out(start, request.ptr, len) },
            // SAFETY: as above.
            IoKind::Write => unsafe { self.region.copy_in(start, request.ptr, len) },
            IoKind::Flush => {}
        }
    }
}

impl DeviceQueue for RamQueue {
    unsafe fn submit(&mut self, request: IoRequest) -> Result<(), QueueFull> {
        if self.done.len() >= self.depth {
            return Err(QueueFull);
        }
        let result = check_request(&self.info, &request);
        if result.is_ok() {
            // SAFETY: validated just above; the buffer and range contracts are
            // the caller's, as documented on `submit` and in this module.
            unsafe { self.execute(&request) };
        }
        self.done.push_back(IoCompletion {
            tag: request.tag,
            result,
        });
        assert!(self.done.len() <= self.depth);
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        let count = self.done.len();
        out.extend(self.done.drain(..));
        count
    }

    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        // Every request has already run, so nothing is worth blocking for.
        self.poll(out)
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn copies_within(&self) -> bool {
        true
    }

    fn copy_within(&mut self, src: u64, dst: u64, len: u32) -> Result<(), DeviceError> {
        check_copy(&self.info, src, dst, len)?;
        // SAFETY: both ranges were checked to lie in the region and not to
        // overlap; the module's concurrency contract (no racing write to these
        // bytes) is the caller's, as for a read and a write.
        unsafe {
            stream_copy::copy(
                self.region.base().add(src as usize),
                self.region.base().add(dst as usize),
                len as usize,
            )
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::conformance;

    #[test]
    fn conformance_512_and_4096() {
        for block_size in [512, 4096] {
            let device = RamDevice::new(4 << 20, block_size).expect("ram device");
            conformance::check(&*device);
        }
    }

    #[test]
    fn rejects_bad_geometry() {
        for (size, block) in [(0, 512), (1000, 512), (4096, 1024), (8192, 0), (512, 4096)] {
            assert!(
                matches!(RamDevice::new(size, block), Err(DeviceError::Invalid(_))),
                "size {size} block {block} accepted"
            );
        }
        assert!(RamDevice::from_bytes(&[0u8; 100], 512).is_err());
    }

    #[test]
    fn region_is_aligned_and_zeroed() {
        let device = RamDevice::new(1 << 20, 4096).expect("ram device");
        assert_eq!(device.region.base() as usize % 4096, 0);
        assert!(device.read_bytes(0, 1 << 20).iter().all(|&b| b == 0));
        assert_eq!(device.describe(), "ram 1 MiB");
    }

    #[test]
    fn populate_keeps_contents() {
        let bytes: Vec<u8> = (0..(64u32 << 10)).map(|i| (i * 13 % 251) as u8).collect();
        let device = RamDevice::from_bytes(&bytes, 4096).expect("from_bytes");
        assert_eq!(device.populate(), bytes.len() as u64);
        assert_eq!(device.read_bytes(0, bytes.len()), bytes);
        let fresh = RamDevice::new(4 << 20, 512).expect("ram device");
        fresh.populate();
        conformance::check(&*fresh);
    }

    #[test]
    fn resident_devices_conform_with_and_without_hugepages() {
        let plain = RamDevice::new_resident(4 << 20, 4096, false).expect("resident");
        assert!(!plain.region.hugetlb);
        conformance::check(&*plain);
        // Hugetlb when this machine has pages reserved, the fallback otherwise:
        // the contract is the same either way.
        let huge = RamDevice::new_resident(5 << 20, 512, true).expect("resident");
        assert_eq!(huge.info().size_bytes, 5 << 20);
        assert_eq!(huge.describe().ends_with("hugepages"), huge.region.hugetlb);
        conformance::check(&*huge);
        assert!(RamDevice::new_resident(1000, 512, true).is_err());
    }

    #[test]
    fn copies_within_the_device() {
        let bytes: Vec<u8> = (0..(64u32 << 10)).map(|i| (i * 31 % 253) as u8).collect();
        let device = RamDevice::from_bytes(&bytes, 512).expect("from_bytes");
        let mut q = device.queue(4).expect("queue");
        assert!(q.copies_within());
        q.copy_within(1024, 32 << 10, 8192).expect("copy");
        assert!(matches!(
            q.copy_within(0, 4096, 8192),
            Err(DeviceError::Invalid(_))
        ));
        assert!(matches!(
            q.copy_within(100, 8192, 512),
            Err(DeviceError::Misaligned { .. })
        ));
        assert!(matches!(
            q.copy_within(0, 64 << 10, 512),
            Err(DeviceError::OutOfRange { .. })
        ));
        drop(q);
        assert_eq!(device.read_bytes(32 << 10, 8192), bytes[1024..1024 + 8192]);
        assert_eq!(
            device.read_bytes(0, 32 << 10),
            bytes[..32 << 10],
            "source untouched"
        );
    }

    #[test]
    fn byte_helpers_refuse_while_a_queue_is_open() {
        let device = RamDevice::new(8192, 512).expect("ram");
        let queue = device.queue(2).expect("queue");
        let refused = std::panic::catch_unwind(|| device.read_bytes(0, 512));
        assert!(refused.is_err(), "read_bytes with a queue open");
        drop(queue);
        assert_eq!(device.read_bytes(0, 512), vec![0u8; 512]);
    }

    #[test]
    fn snapshot_is_an_independent_copy() {
        let bytes: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        let device = RamDevice::from_bytes(&bytes, 512).expect("from_bytes");
        let copy = device.snapshot();
        device.write_bytes(100, b"changed");
        assert_eq!(copy.read_bytes(0, 8192), bytes);
        assert_eq!(&device.read_bytes(100, 7), b"changed");
        assert_eq!(copy.info(), device.info());
    }

    #[test]
    #[should_panic(expected = "reaches past the end")]
    fn helpers_assert_range() {
        let device = RamDevice::new(4096, 512).expect("ram device");
        device.read_bytes(4000, 100);
    }
}
