//! Files and raw block devices through io_uring with O_DIRECT: the default
//! backend.
//!
//! [`FileDevice`] owns the open file (shared with its queues through an
//! `Arc<File>`) and its geometry: the size from the file length or
//! `BLKGETSIZE64`, the block size from `BLKSSZGET` or statx's direct-I/O offset
//! alignment, never below 512. Each queue owns one io_uring ring of `depth`
//! entries and a slab of `depth` request slots; a slot's index travels in the
//! SQE's `user_data` and maps the CQE back to the caller's tag and to the
//! remainder of a short transfer, which is resubmitted. `poll` makes at most one
//! `io_uring_enter` for a whole batch of queued SQEs (two when a short transfer
//! needs resubmitting), never one per request.
//!
//! Invariant: a slot is busy exactly while the kernel may still touch its
//! request's buffer, and every busy slot has at most one SQE or CQE in the ring,
//! so the submission queue (at least `depth` entries) never overflows. Dropping
//! a queue waits for its busy slots, so no buffer is used after its owner could
//! have seen the queue gone.

use super::{
    check_depth, check_request, Device, DeviceError, DeviceInfo, DeviceQueue, IoCompletion, IoKind,
    IoRequest, QueueFull, BUFFER_ALIGN,
};
use io_uring::{opcode, squeue, types, IoUring};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

/// `_IOR(0x12, 114, u64)`: the byte size of a block device. Not in the libc
/// crate; this is the generic ioctl encoding (x86, arm, riscv, loongarch).
const BLKGETSIZE64: libc::Ioctl = ((2u64 << 30) | (8 << 16) | (0x12 << 8) | 114) as libc::Ioctl;

/// How to open a [`FileDevice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOptions {
    /// Create the file at this size when it does not exist.
    pub create_size: Option<u64>,
    /// Open with O_DIRECT (bypass the page cache). Default true.
    pub direct: bool,
    /// Allocate a created file's blocks up front (fallocate) so writes never
    /// wait for block allocation; falls back to sparse where unsupported.
    /// Default true.
    pub preallocate: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            create_size: None,
            direct: true,
            preallocate: true,
        }
    }
}

/// A regular file or block device served through io_uring.
#[derive(Debug)]
pub struct FileDevice {
    file: Arc<File>,
    path: Arc<str>,
    info: DeviceInfo,
    block_device: bool,
    direct: bool,
}

impl FileDevice {
    /// Opens `path` read-write. Regular files use their length rounded down to
    /// the block size; block devices their full size.
    ///
    /// Errors: [`DeviceError::NoDirectIo`] when `options.direct` is set and the
    /// file system refuses O_DIRECT (a file created by this call is removed
    /// again); [`DeviceError::Io`] for other OS errors; [`DeviceError::Invalid`]
    /// for something that is neither a regular file nor a block device, or has
    /// an unusable geometry.
    pub fn open(path: &Path, options: FileOptions) -> Result<Arc<FileDevice>, DeviceError> {
        let shown: Arc<str> = Arc::from(path.display().to_string());
        let created = match options.create_size {
            Some(size) => create_sparse(path, &shown, size, options.preallocate)?,
            None => false,
        };
        let mut open_options = OpenOptions::new();
        open_options.read(true).write(true);
        if options.direct {
            open_options.custom_flags(libc::O_DIRECT);
        }
        let file = match open_options.open(path) {
            Ok(file) => file,
            Err(error) => {
                if created {
                    // Best effort: the caller asked for a device, not an empty file.
                    let _ = std::fs::remove_file(path);
                }
                return Err(
                    if options.direct && error.raw_os_error() == Some(libc::EINVAL) {
                        DeviceError::NoDirectIo {
                            path: shown.to_string(),
                            message: error.to_string(),
                        }
                    } else {
                        io_error(&shown, "open", &error)
                    },
                );
            }
        };
        let (size_bytes, block_size, block_device) = geometry(&file, &shown)?;
        let info = DeviceInfo {
            size_bytes,
            block_size,
            volatile_cache: true,
        };
        Ok(Arc::new(FileDevice {
            file: Arc::new(file),
            path: shown,
            info,
            block_device,
            direct: options.direct,
        }))
    }
}

impl Device for FileDevice {
    fn info(&self) -> DeviceInfo {
        self.info
    }

    fn queue(&self, depth: u32) -> Result<Box<dyn DeviceQueue>, DeviceError> {
        check_depth(depth)?;
        let ring =
            IoUring::new(depth).map_err(|error| io_error(&self.path, "io_uring setup", &error))?;
        Ok(Box::new(UringQueue {
            ring,
            fd: self.file.as_raw_fd(),
            _file: Arc::clone(&self.file),
            path: Arc::clone(&self.path),
            info: self.info,
            depth: depth as usize,
            slots: (0..depth).map(|_| None).collect(),
            free: (0..depth).rev().collect(),
            rejected: Vec::with_capacity(depth as usize),
            cqes: Vec::with_capacity(2 * depth as usize),
        }))
    }

    fn describe(&self) -> String {
        let kind = if self.block_device {
            "block device"
        } else {
            "file"
        };
        let direct = if self.direct { "O_DIRECT" } else { "buffered" };
        format!(
            "{kind} {} ({direct}, {}-byte blocks)",
            self.path, self.info.block_size
        )
    }
}

/// Creates `path` at `size` bytes unless it exists (preallocated when asked
/// and supported, sparse otherwise); true when created.
fn create_sparse(
    path: &Path,
    shown: &str,
    size: u64,
    preallocate: bool,
) -> Result<bool, DeviceError> {
    if size == 0 {
        return Err(DeviceError::Invalid(format!(
            "cannot create {shown} with size 0"
        )));
    }
    let file = match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(error) => return Err(io_error(shown, "create", &error)),
    };
    if let Err(error) = file.set_len(size) {
        let _ = std::fs::remove_file(path);
        return Err(io_error(
            shown,
            format!("ftruncate to {size} bytes"),
            &error,
        ));
    }
    if preallocate {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(size).unwrap_or(libc::off_t::MAX);
        // SAFETY: a valid open descriptor and in-range arguments.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(file = shown, %error, "could not preallocate; the file stays sparse");
        }
    }
    Ok(true)
}

/// Usable size, block size and whether `file` is a block device.
fn geometry(file: &File, shown: &str) -> Result<(u64, u32, bool), DeviceError> {
    let metadata = file
        .metadata()
        .map_err(|error| io_error(shown, "stat", &error))?;
    let file_type = metadata.file_type();
    let fd = file.as_raw_fd();
    let (length, block_size, block_device) = if file_type.is_block_device() {
        let mut length: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
        // at a live local.
        if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut length as *mut u64) } != 0 {
            return Err(io_error(
                shown,
                "ioctl BLKGETSIZE64",
                &std::io::Error::last_os_error(),
            ));
        }
        let mut sector: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer, which points at
        // a live local.
        if unsafe { libc::ioctl(fd, libc::BLKSSZGET, &mut sector as *mut libc::c_int) } != 0 {
            return Err(io_error(
                shown,
                "ioctl BLKSSZGET",
                &std::io::Error::last_os_error(),
            ));
        }
        let sector = u32::try_from(sector).map_err(|_| {
            DeviceError::Invalid(format!("{shown} reports logical block size {sector}"))
        })?;
        (length, sector.max(512), true)
    } else if file_type.is_file() {
        (
            metadata.len(),
            direct_io_alignment(fd).unwrap_or(512).max(512),
            false,
        )
    } else {
        return Err(DeviceError::Invalid(format!(
            "{shown} is neither a regular file nor a block device"
        )));
    };
    if !block_size.is_power_of_two() || block_size as usize > BUFFER_ALIGN {
        return Err(DeviceError::Invalid(format!(
            "{shown} needs {block_size}-byte alignment; supported are powers of two up to {BUFFER_ALIGN}"
        )));
    }
    let size_bytes = length - length % u64::from(block_size);
    if size_bytes == 0 {
        return Err(DeviceError::Invalid(format!(
            "{shown} is {length} bytes, smaller than one {block_size}-byte block"
        )));
    }
    Ok((size_bytes, block_size, block_device))
}

/// The alignment direct I/O on `fd` needs (offset and memory), when the kernel
/// and file system report it through statx (Linux 6.1+).
fn direct_io_alignment(fd: RawFd) -> Option<u32> {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty path with AT_EMPTY_PATH stats `fd` itself; `stx` is a
    // live, writable statx.
    let rc = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return None;
    }
    Some(stx.stx_dio_offset_align.max(stx.stx_dio_mem_align))
}

fn io_error(path: &str, what: impl std::fmt::Display, error: &std::io::Error) -> DeviceError {
    DeviceError::Io {
        path: path.to_string(),
        message: format!("{what}: {error}"),
    }
}

/// One request in a slot: what the caller asked for and how far it got.
#[derive(Clone, Copy, Debug)]
struct Op {
    tag: u64,
    kind: IoKind,
    offset: u64,
    ptr: *mut u8,
    len: u32,
    /// Bytes transferred so far (short reads and writes are resumed from here).
    done: u32,
}

/// A per-thread io_uring queue on a [`FileDevice`].
struct UringQueue {
    ring: IoUring,
    fd: RawFd,
    /// Keeps `fd` open for as long as the ring may use it.
    _file: Arc<File>,
    path: Arc<str>,
    info: DeviceInfo,
    depth: usize,
    /// Busy slots hold the request whose index is in an SQE's `user_data`.
    slots: Vec<Option<Op>>,
    /// Indices of idle slots.
    free: Vec<u32>,
    /// Requests refused by validation, completed at the next poll/wait.
    rejected: Vec<IoCompletion>,
    /// Scratch for draining the completion queue: (user_data, result).
    cqes: Vec<(u64, i32)>,
}

// SAFETY: the raw buffer pointers in `slots` are addresses handed to the kernel;
// the caller of `submit` guarantees them valid until completion whichever thread
// drives the queue. IoUring and the rest are Send.
unsafe impl Send for UringQueue {}

impl UringQueue {
    /// Slots whose request the kernel may still be working on.
    fn busy(&self) -> usize {
        self.depth - self.free.len()
    }

    /// The SQE that continues (or starts) slot `id`'s request.
    fn entry(&self, id: u32, op: &Op) -> squeue::Entry {
        let fd = types::Fd(self.fd);
        let ptr = op.ptr.wrapping_add(op.done as usize);
        let len = op.len - op.done;
        let offset = op.offset + u64::from(op.done);
        let entry = match op.kind {
            IoKind::Read => opcode::Read::new(fd, ptr, len).offset(offset).build(),
            IoKind::Write => opcode::Write::new(fd, ptr.cast_const(), len)
                .offset(offset)
                .build(),
            IoKind::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        };
        entry.user_data(u64::from(id))
    }

    /// Queues an SQE for busy slot `id`.
    fn push(&mut self, id: u32) {
        let op = self.slots[id as usize].expect("push is only called for a busy slot");
        let entry = self.entry(id, &op);
        // SAFETY: the entry's buffer is the caller's, valid until its completion
        // is returned (submit's contract), and the slot stays busy until the
        // kernel reports it done; `fd` is kept open by `_file`.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        assert!(
            pushed.is_ok(),
            "the submission queue holds at least one entry per slot"
        );
    }

    /// Hands queued SQEs to the kernel without waiting: one syscall per batch.
    fn submit_queued(&mut self) {
        if self.ring.submission().is_empty() {
            return;
        }
        for _attempt in 0..3 {
            match self.ring.submit() {
                Ok(_) => return,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // EAGAIN/EBUSY: the SQEs stay queued and the next poll retries.
                    tracing::debug!(path = %self.path, %error, "io_uring submit deferred");
                    return;
                }
            }
        }
    }

    /// Submits queued SQEs and blocks for at least one CQE. False when the ring
    /// refused with an error that retrying will not cure.
    fn enter_and_wait(&mut self) -> bool {
        match self.ring.submit_and_wait(1) {
            Ok(_) => true,
            Err(error) => match error.raw_os_error() {
                Some(libc::EINTR) => true,
                Some(libc::EAGAIN) | Some(libc::EBUSY) => {
                    std::thread::yield_now();
                    true
                }
                _ => {
                    tracing::error!(path = %self.path, %error, busy = self.busy(), "io_uring wait failed");
                    false
                }
            },
        }
    }

    /// Moves finished requests into `out`, resubmitting short transfers.
    fn reap(&mut self, out: &mut Vec<IoCompletion>) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        for &(user_data, result) in &cqes {
            self.on_cqe(user_data, result, out);
        }
        self.cqes = cqes;
    }

    fn on_cqe(&mut self, user_data: u64, result: i32, out: &mut Vec<IoCompletion>) {
        let id = u32::try_from(user_data)
            .ok()
            .filter(|&id| (id as usize) < self.depth);
        let Some(id) = id else {
            panic!(
                "CQE user_data {user_data} names no slot of a depth-{} queue",
                self.depth
            )
        };
        let Some(op) = self.slots[id as usize].as_mut() else {
            panic!("CQE for idle slot {id}")
        };
        let outcome = if result < 0 {
            let error = std::io::Error::from_raw_os_error(-result);
            Some(Err(describe_failure(&self.path, op, &error.to_string())))
        } else if op.kind == IoKind::Flush {
            Some(Ok(()))
        } else if result == 0 {
            Some(Err(describe_failure(
                &self.path,
                op,
                "transferred 0 bytes (end of file?)",
            )))
        } else {
            let moved = result as u32;
            assert!(
                moved <= op.len - op.done,
                "kernel transferred more than asked"
            );
            op.done += moved;
            (op.done == op.len).then_some(Ok(()))
        };
        match outcome {
            Some(result) => {
                let op = self.slots[id as usize]
                    .take()
                    .expect("slot checked busy above");
                self.free.push(id);
                out.push(IoCompletion {
                    tag: op.tag,
                    result,
                });
            }
            None => self.push(id),
        }
    }
}

fn describe_failure(path: &str, op: &Op, what: &str) -> DeviceError {
    let action = match op.kind {
        IoKind::Read => "read",
        IoKind::Write => "write",
        IoKind::Flush => "fdatasync",
    };
    DeviceError::Io {
        path: path.to_string(),
        message: format!(
            "{action} of {} bytes at offset {}: {what}",
            op.len - op.done,
            op.offset + u64::from(op.done)
        ),
    }
}

impl DeviceQueue for UringQueue {
    unsafe fn submit(&mut self, request: IoRequest) -> Result<(), QueueFull> {
        if self.in_flight() >= self.depth {
            return Err(QueueFull);
        }
        if let Err(error) = check_request(&self.info, &request) {
            self.rejected.push(IoCompletion {
                tag: request.tag,
                result: Err(error),
            });
            return Ok(());
        }
        let id = self.free.pop().expect("a free slot exists below depth");
        assert!(self.slots[id as usize].is_none());
        self.slots[id as usize] = Some(Op {
            tag: request.tag,
            kind: request.kind,
            offset: request.offset,
            ptr: request.ptr,
            len: request.len,
            done: 0,
        });
        self.push(id);
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        let before = out.len();
        out.append(&mut self.rejected);
        self.submit_queued();
        self.reap(out);
        // Only short transfers queue SQEs during reap.
        self.submit_queued();
        out.len() - before
    }

    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        let before = out.len();
        out.append(&mut self.rejected);
        self.reap(out);
        while out.len() == before && self.busy() > 0 {
            if !self.enter_and_wait() {
                break;
            }
            self.reap(out);
        }
        self.submit_queued();
        out.len() - before
    }

    fn in_flight(&self) -> usize {
        self.busy() + self.rejected.len()
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        let mut discarded = Vec::new();
        while self.busy() > 0 {
            if !self.enter_and_wait() {
                tracing::error!(path = %self.path, busy = self.busy(), "dropping an io_uring queue with requests in flight");
                break;
            }
            self.reap(&mut discarded);
            discarded.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::blocking::BlockingQueue;
    use crate::device::conformance;
    use crate::device::AlignedBuf;

    /// A temporary directory on a file system that takes O_DIRECT.
    fn direct_io_dir() -> tempfile::TempDir {
        for base in [std::path::PathBuf::from("/var/tmp"), std::env::temp_dir()] {
            let Ok(dir) = tempfile::tempdir_in(&base) else {
                continue;
            };
            let probe = dir.path().join("probe");
            let options = FileOptions {
                create_size: Some(4096),
                direct: true,
                ..Default::default()
            };
            if FileDevice::open(&probe, options).is_ok() {
                return dir;
            }
        }
        panic!(
            "neither /var/tmp nor the temp dir supports O_DIRECT; these tests need one that does"
        );
    }

    #[test]
    fn conformance_on_a_sparse_file() {
        let dir = direct_io_dir();
        let path = dir.path().join("device");
        let options = FileOptions {
            create_size: Some(8 << 20),
            direct: true,
            ..Default::default()
        };
        let device = FileDevice::open(&path, options).expect("open");
        let info = device.info();
        assert_eq!(info.size_bytes, 8 << 20);
        assert!(info.block_size == 512 || info.block_size == 4096);
        assert!(info.volatile_cache);
        assert!(device.describe().contains("O_DIRECT"));
        conformance::check(&*device);
    }

    #[test]
    fn conformance_buffered() {
        let dir = direct_io_dir();
        let options = FileOptions {
            create_size: Some(4 << 20),
            direct: false,
            ..Default::default()
        };
        let device = FileDevice::open(&dir.path().join("buffered"), options).expect("open");
        conformance::check(&*device);
    }

    #[test]
    fn flushed_writes_survive_reopen() {
        let dir = direct_io_dir();
        let path = dir.path().join("reopen");
        let options = FileOptions {
            create_size: Some(1 << 20),
            direct: true,
            ..Default::default()
        };
        let data = conformance::pattern(5, 64 << 10);
        {
            let device = FileDevice::open(&path, options).expect("create");
            let mut queue = BlockingQueue::new(&*device, 8).expect("queue");
            queue.write(4096, &data).expect("write");
            queue.flush().expect("flush");
        }
        // An existing file keeps its size: create_size is ignored.
        let bigger = FileOptions {
            create_size: Some(2 << 20),
            direct: true,
            ..Default::default()
        };
        let device = FileDevice::open(&path, bigger).expect("reopen");
        assert_eq!(device.info().size_bytes, 1 << 20);
        let mut queue = BlockingQueue::new(&*device, 8).expect("queue");
        let mut back = AlignedBuf::zeroed(64 << 10);
        queue.read(4096, &mut back).expect("read");
        assert!(back[..] == data[..]);
        assert_eq!(
            std::fs::read(&path).expect("plain read")[4096..4096 + (64 << 10)],
            data[..]
        );
    }

    #[test]
    fn open_errors_are_typed() {
        let dir = direct_io_dir();
        let missing = FileDevice::open(&dir.path().join("missing"), FileOptions::default());
        assert!(
            matches!(missing, Err(DeviceError::Io { .. })),
            "{missing:?}"
        );
        let zero = FileOptions {
            create_size: Some(0),
            direct: true,
            ..Default::default()
        };
        assert!(matches!(
            FileDevice::open(&dir.path().join("zero"), zero),
            Err(DeviceError::Invalid(_))
        ));
        let tiny_path = dir.path().join("tiny");
        std::fs::write(&tiny_path, [0u8; 100]).expect("write tiny file");
        let tiny = FileDevice::open(&tiny_path, FileOptions::default());
        assert!(matches!(tiny, Err(DeviceError::Invalid(_))), "{tiny:?}");
        let odd_path = dir.path().join("odd");
        std::fs::write(&odd_path, vec![0u8; 8192 + 100]).expect("write odd file");
        let odd = FileDevice::open(&odd_path, FileOptions::default()).expect("odd-sized file");
        assert_eq!(odd.info().size_bytes % u64::from(odd.info().block_size), 0);
        assert!(odd.info().size_bytes >= 4096);
        let not_file = FileDevice::open(dir.path(), FileOptions::default());
        assert!(not_file.is_err());
        assert!(matches!(
            FileDevice::queue(&odd, 0),
            Err(DeviceError::Invalid(_))
        ));
    }

    #[test]
    fn no_direct_io_is_reported() {
        // procfs never takes O_DIRECT, on any kernel.
        let result = FileDevice::open(Path::new("/proc/self/comm"), FileOptions::default());
        match result {
            Err(DeviceError::NoDirectIo { path, message }) => {
                assert_eq!(path, "/proc/self/comm");
                assert!(!message.is_empty());
            }
            other => panic!("expected NoDirectIo, got {other:?}"),
        }
    }

    #[test]
    fn tmpfs_either_works_or_says_no_direct_io() {
        // tmpfs refused O_DIRECT before Linux 6.6 and takes it since.
        let is_tmpfs = std::fs::read_to_string("/proc/mounts").is_ok_and(|mounts| {
            mounts
                .lines()
                .any(|line| line.split(' ').nth(1) == Some("/dev/shm") && line.contains(" tmpfs "))
        });
        if !is_tmpfs {
            return;
        }
        let dir = tempfile::tempdir_in("/dev/shm").expect("tempdir in /dev/shm");
        let path = dir.path().join("device");
        let options = FileOptions {
            create_size: Some(1 << 20),
            direct: true,
            ..Default::default()
        };
        match FileDevice::open(&path, options) {
            Ok(device) => {
                let mut queue = BlockingQueue::new(&*device, 4).expect("queue");
                let data = conformance::pattern(9, 8192);
                queue.write(0, &data).expect("write");
                let mut back = AlignedBuf::zeroed(8192);
                queue.read(0, &mut back).expect("read");
                assert!(back[..] == data[..]);
            }
            Err(DeviceError::NoDirectIo { .. }) => {
                assert!(
                    !path.exists(),
                    "the file created for the attempt is removed"
                );
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dropping_a_busy_queue_waits_for_the_kernel() {
        let dir = direct_io_dir();
        let options = FileOptions {
            create_size: Some(4 << 20),
            direct: true,
            ..Default::default()
        };
        let device = FileDevice::open(&dir.path().join("drop"), options).expect("open");
        let mut bufs: Vec<AlignedBuf> = (0..16).map(|_| AlignedBuf::zeroed(64 << 10)).collect();
        let mut queue = device.queue(16).expect("queue");
        for (i, buf) in bufs.iter_mut().enumerate() {
            let request = IoRequest {
                kind: IoKind::Read,
                offset: i as u64 * (64 << 10),
                ptr: buf.as_mut_ptr(),
                len: 64 << 10,
                tag: i as u64,
            };
            // SAFETY: `bufs` outlives `queue`, whose drop waits for the reads.
            unsafe { queue.submit(request) }.expect("within depth");
        }
        let mut out = Vec::new();
        queue.poll(&mut out);
        drop(queue);
        drop(bufs);
    }

    #[test]
    fn short_read_is_resumed_at_the_remainder() {
        let dir = direct_io_dir();
        let path = dir.path().join("shrunk");
        let options = FileOptions {
            create_size: Some(1 << 20),
            direct: true,
            ..Default::default()
        };
        let device = FileDevice::open(&path, options).expect("open");
        // Someone shrinks the file under the device: the last 4 KiB read comes
        // back short, the remainder is resubmitted and hits the end of file.
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for truncate");
        file.set_len((1 << 20) - 1024).expect("truncate");
        let mut queue = BlockingQueue::new(&*device, 2).expect("queue");
        let mut buf = AlignedBuf::zeroed(4096);
        let error = queue
            .read((1 << 20) - 4096, &mut buf)
            .expect_err("read past the new end");
        let DeviceError::Io {
            path: shown,
            message,
        } = error
        else {
            panic!("expected an I/O error, got {error:?}")
        };
        assert_eq!(shown, path.display().to_string());
        let resumed_at = format!("read of 1024 bytes at offset {}", (1 << 20) - 1024);
        assert!(message.contains(&resumed_at), "{message}");
    }

    #[test]
    fn kernel_errors_carry_errno_text_and_path() {
        let dir = direct_io_dir();
        let path = dir.path().join("efault");
        for direct in [true, false] {
            let options = FileOptions {
                create_size: Some(1 << 20),
                direct,
                ..Default::default()
            };
            let device = FileDevice::open(&path, options).expect("open");
            // A page the kernel may not write to: the read fails with EFAULT.
            // SAFETY: a fresh anonymous mapping, unmapped below.
            let page = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(page, libc::MAP_FAILED);
            let mut queue = device.queue(1).expect("queue");
            let request = IoRequest {
                kind: IoKind::Read,
                offset: 0,
                ptr: page.cast(),
                len: 4096,
                tag: 42,
            };
            // SAFETY: the page stays mapped until the completion is back; the
            // kernel refuses to write into it.
            unsafe { queue.submit(request) }.expect("within depth");
            let results = conformance::drain(queue.as_mut());
            // SAFETY: mapped above, no request uses it any more.
            unsafe { libc::munmap(page, 4096) };
            match &results[&42] {
                Err(DeviceError::Io {
                    path: shown,
                    message,
                }) => {
                    assert_eq!(shown, &path.display().to_string());
                    assert!(message.contains("Bad address"), "{message}");
                }
                other => panic!("expected EFAULT as an I/O error, got {other:?}"),
            }
        }
    }
}
