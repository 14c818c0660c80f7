//! Hugepage memory: a pool of 2 MiB chunks for map nodes (the engine's
//! [`ChunkSource`]) and for I/O buffers ([`super::buffers`]), plus reserving
//! hugepages through sysfs.
//!
//! A chunk is one `mmap(MAP_HUGETLB)` 2 MiB page when the kernel has
//! hugepages reserved. When it has none (or they run out) the pool falls back
//! to ordinary anonymous memory, 2 MiB-aligned and `madvise(MADV_HUGEPAGE)`d
//! so transparent hugepages may still back it, and says so once with a
//! warning. Freed chunks are kept for reuse (a lock-free stack of addresses)
//! rather than unmapped, so a steady state makes no system calls.
//!
//! Invariants kept: every chunk handed out is [`HUGEPAGE_BYTES`] long and
//! aligned to it; a pool never maps more than `max_chunks` chunks; each
//! chunk is counted in exactly one of the hugepage or fallback counters
//! while mapped, and unmapped exactly once (when the pool is dropped, for
//! cached chunks).

use crate::engine::map::arena::ChunkSource;
use crossbeam_queue::ArrayQueue;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes in one chunk: one x86-64 / aarch64 (4K granule) hugepage.
pub const HUGEPAGE_BYTES: usize = 2 << 20;

/// Where the kernel exposes the 2 MiB hugepage pool.
pub const HUGEPAGE_SYSFS_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

/// Whether the pool tries hugetlb pages at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HugepageUse {
    /// Hugetlb pages when reserved, ordinary pages (with a warning) otherwise.
    Prefer,
    /// Ordinary pages only (no warning): tests, or hosts that must not use them.
    Never,
}

/// Usage of a [`HugepagePool`], for `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HugepageStats {
    /// Chunks mapped from reserved hugepages (handed out or cached).
    pub chunks_hugepage: usize,
    /// Chunks mapped from ordinary pages.
    pub chunks_fallback: usize,
    /// Mapped chunks not handed out (kept for reuse).
    pub chunks_cached: usize,
    /// Most chunks the pool maps.
    pub chunks_max: usize,
    /// Bytes mapped in all.
    pub bytes_mapped: usize,
}

/// A pool of 2 MiB chunks (see the module documentation).
pub struct HugepagePool {
    mode: HugepageUse,
    max_chunks: usize,
    /// Addresses of chunks given back (hugetlb and fallback chunks alike:
    /// both are unmapped the same way).
    cached: ArrayQueue<usize>,
    /// Chunks mapped (cached, handed out, or being mapped right now).
    mapped: AtomicUsize,
    hugepage: AtomicUsize,
    fallback: AtomicUsize,
    warned: AtomicBool,
}

impl fmt::Debug for HugepagePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugepagePool")
            .field("mode", &self.mode)
            .field("stats", &self.stats())
            .finish()
    }
}

impl HugepagePool {
    /// A pool that maps at most `max_chunks` chunks (at least 1). Nothing is
    /// mapped until asked for.
    pub fn new(max_chunks: usize, mode: HugepageUse) -> HugepagePool {
        assert!(max_chunks > 0, "a hugepage pool holds at least one chunk");
        HugepagePool {
            mode,
            max_chunks,
            cached: ArrayQueue::new(max_chunks),
            mapped: AtomicUsize::new(0),
            hugepage: AtomicUsize::new(0),
            fallback: AtomicUsize::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// Current usage.
    pub fn stats(&self) -> HugepageStats {
        let hugepage = self.hugepage.load(Ordering::Relaxed);
        let fallback = self.fallback.load(Ordering::Relaxed);
        HugepageStats {
            chunks_hugepage: hugepage,
            chunks_fallback: fallback,
            chunks_cached: self.cached.len(),
            chunks_max: self.max_chunks,
            bytes_mapped: (hugepage + fallback) * HUGEPAGE_BYTES,
        }
    }

    /// A chunk of [`HUGEPAGE_BYTES`], 2 MiB-aligned; `None` when the pool has
    /// mapped `max_chunks` and none is free, or the kernel refuses memory.
    /// Contents are unspecified (zero when freshly mapped).
    pub fn take_chunk(&self) -> Option<NonNull<u8>> {
        if let Some(address) = self.cached.pop() {
            return NonNull::new(address as *mut u8);
        }
        // Reserve a slot under the bound before mapping.
        let reserved = self
            .mapped
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                (m < self.max_chunks).then_some(m + 1)
            });
        if reserved.is_err() {
            return None;
        }
        let chunk = self.map_chunk();
        if chunk.is_none() {
            self.mapped.fetch_sub(1, Ordering::AcqRel);
        }
        chunk
    }

    /// Gives a chunk back for reuse.
    ///
    /// # Safety
    /// `chunk` came from [`take_chunk`](Self::take_chunk) on this pool, was
    /// not given back since, and nothing uses it afterwards.
    pub unsafe fn give_chunk(&self, chunk: NonNull<u8>) {
        let address = chunk.as_ptr() as usize;
        assert_eq!(address % HUGEPAGE_BYTES, 0, "not a chunk of this pool");
        // The queue holds max_chunks and at most max_chunks are mapped.
        let pushed = self.cached.push(address);
        assert!(pushed.is_ok(), "more chunks given back than mapped");
    }

    fn map_chunk(&self) -> Option<NonNull<u8>> {
        if self.mode == HugepageUse::Prefer {
            // SAFETY: a fresh anonymous mapping; the result is checked.
            let raw = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    HUGEPAGE_BYTES,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
                    -1,
                    0,
                )
            };
            if raw != libc::MAP_FAILED {
                assert_eq!(
                    raw as usize % HUGEPAGE_BYTES,
                    0,
                    "hugetlb pages are aligned"
                );
                self.hugepage.fetch_add(1, Ordering::Relaxed);
                return NonNull::new(raw.cast());
            }
            let error = io::Error::last_os_error();
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    %error,
                    "no 2 MiB hugepages available (none reserved, or all in use): I/O buffers and \
                     map nodes fall back to ordinary pages; reserve some with \
                     `rewind setup-hugepages --count N`"
                );
            }
        }
        self.map_fallback_chunk()
    }

    /// Maps twice the chunk size and trims it to one aligned chunk.
    fn map_fallback_chunk(&self) -> Option<NonNull<u8>> {
        let span = 2 * HUGEPAGE_BYTES;
        // SAFETY: a fresh anonymous mapping; the result is checked.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot map a 2 MiB chunk");
            return None;
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGEPAGE_BYTES);
        let head = aligned - start;
        let tail = span - head - HUGEPAGE_BYTES;
        // SAFETY: both trimmed ranges lie inside the mapping made above and
        // outside the chunk kept; munmap of a zero length is skipped.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + HUGEPAGE_BYTES) as *mut libc::c_void, tail);
            }
            // Advice only: failure (THP disabled) changes nothing we rely on.
            libc::madvise(
                aligned as *mut libc::c_void,
                HUGEPAGE_BYTES,
                libc::MADV_HUGEPAGE,
            );
        }
        self.fallback.fetch_add(1, Ordering::Relaxed);
        NonNull::new(aligned as *mut u8)
    }
}

impl ChunkSource for HugepagePool {
    /// One chunk for any request of 1..=[`HUGEPAGE_BYTES`] bytes; `None` for
    /// larger requests or an exhausted pool.
    fn allocate(&self, bytes: usize) -> Option<NonNull<u8>> {
        if bytes == 0 || bytes > HUGEPAGE_BYTES {
            return None;
        }
        self.take_chunk()
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, bytes: usize) {
        assert!(
            bytes > 0 && bytes <= HUGEPAGE_BYTES,
            "not a chunk of this pool"
        );
        // SAFETY: forwarded from the ChunkSource contract.
        unsafe { self.give_chunk(ptr) };
    }

    fn chunk_bytes(&self) -> usize {
        HUGEPAGE_BYTES
    }
}

impl Drop for HugepagePool {
    fn drop(&mut self) {
        let mut unmapped = 0;
        while let Some(address) = self.cached.pop() {
            // SAFETY: a cached chunk is a live 2 MiB mapping nobody uses; it is
            // unmapped once (popped).
            let rc = unsafe { libc::munmap(address as *mut libc::c_void, HUGEPAGE_BYTES) };
            assert_eq!(rc, 0, "munmap of a pool chunk failed");
            unmapped += 1;
        }
        let mapped = self.mapped.load(Ordering::Acquire);
        if unmapped != mapped {
            // A chunk still handed out is leaked rather than unmapped under its user.
            tracing::error!(
                mapped,
                unmapped,
                "hugepage pool dropped with chunks still in use"
            );
        }
    }
}

// SAFETY: the pool holds addresses (integers) and atomics only.
unsafe impl Send for HugepagePool {}
// SAFETY: as above; every shared mutation is atomic.
unsafe impl Sync for HugepagePool {}

/// What [`setup_hugepages`] did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HugepageReport {
    /// Pages asked for.
    pub requested: u64,
    /// `nr_hugepages` before.
    pub before: u64,
    /// `nr_hugepages` after: what the kernel actually granted (it may give
    /// fewer when memory is fragmented).
    pub granted: u64,
    /// Pages reserved and not in use, after.
    pub free: u64,
}

/// Why hugepages could not be reserved or counted.
#[derive(Debug, thiserror::Error)]
pub enum HugepageError {
    #[error("{path}: {source} (reserving hugepages needs root)")]
    Sysfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: `{text}` is not a page count")]
    Parse { path: PathBuf, text: String },
}

fn read_count(path: &Path) -> Result<u64, HugepageError> {
    let text = std::fs::read_to_string(path).map_err(|source| HugepageError::Sysfs {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim().parse().map_err(|_| HugepageError::Parse {
        path: path.to_path_buf(),
        text: text.trim().to_string(),
    })
}

/// `(nr_hugepages, free_hugepages)` of the 2 MiB pool.
pub fn hugepage_counts() -> Result<(u64, u64), HugepageError> {
    hugepage_counts_in(Path::new(HUGEPAGE_SYSFS_DIR))
}

/// As [`hugepage_counts`], for a sysfs directory given.
pub fn hugepage_counts_in(dir: &Path) -> Result<(u64, u64), HugepageError> {
    Ok((
        read_count(&dir.join("nr_hugepages"))?,
        read_count(&dir.join("free_hugepages"))?,
    ))
}

/// Asks the kernel to keep `count` 2 MiB hugepages reserved (root only) and
/// reports what it granted.
pub fn setup_hugepages(count: u64) -> Result<HugepageReport, HugepageError> {
    setup_hugepages_in(Path::new(HUGEPAGE_SYSFS_DIR), count)
}

/// As [`setup_hugepages`], for a sysfs directory given.
pub fn setup_hugepages_in(dir: &Path, count: u64) -> Result<HugepageReport, HugepageError> {
    let path = dir.join("nr_hugepages");
    let before = read_count(&path)?;
    std::fs::write(&path, format!("{count}\n")).map_err(|source| HugepageError::Sysfs {
        path: path.clone(),
        source,
    })?;
    let (granted, free) = hugepage_counts_in(dir)?;
    tracing::info!(
        requested = count,
        before,
        granted,
        free,
        "hugepages reserved"
    );
    Ok(HugepageReport {
        requested: count,
        before,
        granted,
        free,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::map::arena::NodeArena;
    use std::sync::Arc;

    #[test]
    fn fallback_chunks_are_aligned_bounded_and_reused() {
        let pool = HugepagePool::new(3, HugepageUse::Never);
        let chunks: Vec<_> = (0..3).map(|_| pool.take_chunk().expect("chunk")).collect();
        assert!(pool.take_chunk().is_none(), "bounded by max_chunks");
        for chunk in &chunks {
            assert_eq!(chunk.as_ptr() as usize % HUGEPAGE_BYTES, 0);
            // SAFETY: a live 2 MiB chunk from the pool.
            unsafe {
                chunk.as_ptr().write_bytes(0xab, HUGEPAGE_BYTES);
            }
        }
        let stats = pool.stats();
        assert_eq!((stats.chunks_fallback, stats.chunks_hugepage), (3, 0));
        assert_eq!(stats.bytes_mapped, 3 * HUGEPAGE_BYTES);
        // SAFETY: given back once, unused afterwards.
        unsafe { pool.give_chunk(chunks[1]) };
        assert_eq!(pool.stats().chunks_cached, 1);
        let again = pool.take_chunk().expect("reused chunk");
        assert_eq!(again, chunks[1]);
        assert_eq!(pool.stats().chunks_fallback, 3, "reuse maps nothing new");
        for chunk in [chunks[0], again, chunks[2]] {
            // SAFETY: each given back once.
            unsafe { pool.give_chunk(chunk) };
        }
        assert_eq!(pool.stats().chunks_cached, 3);
    }

    #[test]
    fn map_nodes_live_in_pool_chunks() {
        let pool = Arc::new(HugepagePool::new(4, HugepageUse::Prefer));
        {
            let mut arena: NodeArena<[u64; 16]> = NodeArena::new(pool.clone());
            let per_chunk = arena.slots_per_chunk();
            let ids: Vec<_> = (0..per_chunk as u64 + 1)
                .map(|i| arena.alloc([i; 16]))
                .collect();
            assert_eq!(arena.bytes_reserved(), 2 * HUGEPAGE_BYTES);
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(arena.get(*id)[15], i as u64);
            }
            let stats = pool.stats();
            assert_eq!(stats.chunks_hugepage + stats.chunks_fallback, 2);
            assert_eq!(stats.chunks_cached, 0);
        }
        assert_eq!(
            pool.stats().chunks_cached,
            2,
            "the arena gave its chunks back"
        );
        assert!(pool.allocate(HUGEPAGE_BYTES + 1).is_none());
        assert!(pool.allocate(0).is_none());
    }

    #[test]
    fn setup_reports_what_the_kernel_granted() {
        // A stand-in sysfs directory: the kernel "grants" fewer than asked.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("nr_hugepages"), "2\n").expect("write");
        std::fs::write(dir.path().join("free_hugepages"), "1\n").expect("write");
        let report = setup_hugepages_in(dir.path(), 8).expect("setup");
        assert_eq!(
            report,
            HugepageReport {
                requested: 8,
                before: 2,
                granted: 8,
                free: 1
            }
        );
        std::fs::write(dir.path().join("free_hugepages"), "lots\n").expect("write");
        assert!(matches!(
            setup_hugepages_in(dir.path(), 1),
            Err(HugepageError::Parse { .. })
        ));
        assert!(matches!(
            setup_hugepages_in(&dir.path().join("missing"), 1),
            Err(HugepageError::Sysfs { .. })
        ));
    }
}
