//! Block devices: the one interface the engine stores bytes through.
//!
//! A [`Device`] is a byte-addressed, block-aligned store with a volatile write
//! cache that [`IoKind::Flush`] makes durable. Work reaches it through a
//! [`DeviceQueue`]: one queue per thread (a reactor, the sync worker, a tool),
//! submit now and complete later, so a polled reactor never blocks on the
//! device. Backends: RAM ([`ram`]), files and raw block devices through io_uring
//! with O_DIRECT ([`uring`]), and a fault-injecting wrapper for crash tests
//! ([`fault`]). Nothing here knows about journals or volumes.
//!
//! Invariant kept by every backend: a write that completed before a flush was
//! *submitted* is durable when that flush completes; nothing else is promised
//! about un-flushed writes (the fault device drops or tears them on a crash).

pub mod blocking;
pub mod buf;
#[cfg(test)]
mod conformance;
pub mod fault;
pub mod ram;
mod stream_copy;
pub mod uring;

pub use buf::AlignedBuf;

/// Alignment, in bytes, of every buffer handed to a device queue.
///
/// 4096 satisfies O_DIRECT on every logical block size we accept (512, 4096).
pub const BUFFER_ALIGN: usize = 4096;

/// Largest `depth` a queue accepts: a bound on every queue's memory and on
/// io_uring ring sizes (the kernel allows 32768 entries).
pub const QUEUE_DEPTH_MAX: u32 = 4096;

/// What a device is: its size and the alignment it requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Usable bytes, a multiple of `block_size`.
    pub size_bytes: u64,
    /// Smallest I/O unit: every offset and length is a multiple of it (512 or 4096).
    pub block_size: u32,
    /// True when completed writes may still be lost without a flush.
    pub volatile_cache: bool,
}

/// The operation a request performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// Device bytes `[offset, offset + len)` into the buffer.
    Read,
    /// The buffer into device bytes `[offset, offset + len)`.
    Write,
    /// Make every write that completed before this flush was submitted durable.
    /// `offset`, `ptr` and `len` are ignored.
    Flush,
}

/// One request on a queue. The buffer is described by a raw pointer because it
/// is owned by the caller for the whole time the request is in flight (an
/// io_uring backend hands the address to the kernel).
#[derive(Clone, Copy, Debug)]
pub struct IoRequest {
    pub kind: IoKind,
    /// Byte offset on the device, a multiple of the block size.
    pub offset: u64,
    /// Buffer start, aligned to the device block size.
    pub ptr: *mut u8,
    /// Bytes, a positive multiple of the block size (0 for a flush).
    pub len: u32,
    /// Caller's identifier, returned unchanged in the completion.
    pub tag: u64,
}

impl IoRequest {
    /// A flush request.
    pub fn flush(tag: u64) -> Self {
        IoRequest {
            kind: IoKind::Flush,
            offset: 0,
            ptr: std::ptr::null_mut(),
            len: 0,
            tag,
        }
    }
}

/// The result of one request.
#[derive(Debug)]
pub struct IoCompletion {
    pub tag: u64,
    pub result: Result<(), DeviceError>,
}

/// Why a device or a request failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    #[error("I/O error on {path}: {message}")]
    Io { path: String, message: String },
    #[error("request at offset {offset} length {len} is not aligned to the {block_size}-byte block size")]
    Misaligned {
        offset: u64,
        len: u64,
        block_size: u32,
    },
    #[error("request at offset {offset} length {len} reaches past the device end ({size} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("{path} does not support O_DIRECT ({message}); use a file system or device that does")]
    NoDirectIo { path: String, message: String },
    #[error("the device has crashed (fault injection); reopen the crash image")]
    Crashed,
    #[error("injected {kind} error at offset {offset} (fault injection)")]
    Injected { kind: &'static str, offset: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// The submission queue is full; poll completions and try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("device queue is full")]
pub struct QueueFull;

/// A block device: creates per-thread queues.
pub trait Device: Send + Sync + 'static {
    /// Size and alignment.
    fn info(&self) -> DeviceInfo;
    /// A new queue, owned by one thread at a time, holding at most `depth`
    /// requests in flight.
    fn queue(&self, depth: u32) -> Result<Box<dyn DeviceQueue>, DeviceError>;
    /// A short human description (path, "ram 64 MiB", ...).
    fn describe(&self) -> String;
}

/// A per-thread submission/completion queue.
///
/// Requests may complete in any order. `poll` never blocks; `wait` blocks until
/// at least one completion arrives (or returns at once when nothing is in flight).
pub trait DeviceQueue: Send {
    /// Queue a request; it is handed to the device at the next `poll`/`wait`
    /// (backends may start it at once).
    ///
    /// Errors: [`QueueFull`] when `depth` requests are already in flight.
    /// Alignment and range are checked: a bad request completes with an error
    /// rather than being refused here.
    ///
    /// # Safety
    /// For `Read` and `Write`, `ptr..ptr + len` must stay valid (and, for a read,
    /// not be accessed by anyone else) until the completion carrying `tag` has been
    /// returned by `poll` or `wait`.
    unsafe fn submit(&mut self, request: IoRequest) -> Result<(), QueueFull>;

    /// Push queued requests to the device and move finished ones into `out`
    /// without blocking. Returns how many completions were added.
    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize;

    /// Like `poll`, but blocks until at least one completion was added when any
    /// request is in flight. Returns how many completions were added.
    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize;

    /// Requests submitted and not yet returned as completions.
    fn in_flight(&self) -> usize;

    /// Whether [`DeviceQueue::copy_within`] works on this queue.
    fn copies_within(&self) -> bool {
        false
    }

    /// Copies `len` device bytes at `src` to `dst` on the same device, at
    /// once and without a caller's buffer (a RAM device copies memory to
    /// memory, where reading into a buffer and writing it back copies twice;
    /// NVMe's Copy command is the device-side analogue). Durable as a write
    /// is: after the next completed flush. Both ranges are checked as a read
    /// and a write are, and must not overlap. Backends without it answer
    /// `Invalid`; callers ask [`DeviceQueue::copies_within`] first.
    fn copy_within(&mut self, src: u64, dst: u64, len: u32) -> Result<(), DeviceError> {
        let _ = (src, dst, len);
        Err(DeviceError::Invalid(
            "this device queue has no copy within the device".into(),
        ))
    }
}

/// Checks a queue depth requested through [`Device::queue`]: at least 1, at
/// most [`QUEUE_DEPTH_MAX`].
pub fn check_depth(depth: u32) -> Result<(), DeviceError> {
    if depth == 0 || depth > QUEUE_DEPTH_MAX {
        return Err(DeviceError::Invalid(format!(
            "queue depth {depth} is outside 1..={QUEUE_DEPTH_MAX}"
        )));
    }
    Ok(())
}

/// Checks a [`DeviceQueue::copy_within`]: both ranges as a read and a write
/// would be, and that they do not overlap.
pub fn check_copy(info: &DeviceInfo, src: u64, dst: u64, len: u32) -> Result<(), DeviceError> {
    // Only the alignment of the pointer is checked, never what it points at.
    let read = IoRequest {
        kind: IoKind::Read,
        offset: src,
        ptr: BUFFER_ALIGN as *mut u8,
        len,
        tag: 0,
    };
    check_request(info, &read)?;
    check_request(
        info,
        &IoRequest {
            kind: IoKind::Write,
            offset: dst,
            ..read
        },
    )?;
    let n = u64::from(len);
    if src < dst + n && dst < src + n {
        return Err(DeviceError::Invalid(format!(
            "copy of {len} bytes from {src} to {dst} overlaps itself"
        )));
    }
    Ok(())
}

/// Checks a read or write against the device's alignment and size; the common
/// validation every backend applies before touching memory.
pub fn check_request(info: &DeviceInfo, request: &IoRequest) -> Result<(), DeviceError> {
    if request.kind == IoKind::Flush {
        return Ok(());
    }
    let block = u64::from(info.block_size);
    let len = u64::from(request.len);
    if len == 0
        || !request.offset.is_multiple_of(block)
        || !len.is_multiple_of(block)
        || !(request.ptr as usize).is_multiple_of(info.block_size as usize)
    {
        return Err(DeviceError::Misaligned {
            offset: request.offset,
            len,
            block_size: info.block_size,
        });
    }
    let end = request
        .offset
        .checked_add(len)
        .ok_or(DeviceError::OutOfRange {
            offset: request.offset,
            len,
            size: info.size_bytes,
        })?;
    if end > info.size_bytes {
        return Err(DeviceError::OutOfRange {
            offset: request.offset,
            len,
            size: info.size_bytes,
        });
    }
    Ok(())
}
