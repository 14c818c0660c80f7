//! I/O buffers: fixed-size, 4096-aligned buffers carved out of hugepage
//! chunks, one pool per reactor, with no lock and no allocation per buffer.
//!
//! The owning reactor holds the [`IoBufferPool`] and takes buffers from a
//! plain local free list. An [`IoBuf`] is an owned handle; dropping it —
//! on any thread: the reactor, the sync worker, another reactor — pushes its
//! index onto the pool's lock-free return queue, which the owner drains into
//! its local list when that runs dry. The owner can also hand a buffer back
//! directly with [`IoBufferPool::recycle`], which skips the queue.
//!
//! Invariant kept: a buffer is out (held by exactly one [`IoBuf`]) or free
//! (in exactly one of the local list and the return queue), never both and
//! never twice — each buffer has an "out" flag that taking asserts was clear
//! and returning asserts was set. The chunks go back to their
//! [`HugepagePool`] only when the pool handle and every buffer are gone.

use super::hugepage::{HugepagePool, HUGEPAGE_BYTES};
use crate::device::{AlignedBuf, BUFFER_ALIGN};
use crossbeam_queue::ArrayQueue;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Why a buffer pool could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BufferPoolError {
    #[error("buffer size {0} is not a positive multiple of {BUFFER_ALIGN} up to {HUGEPAGE_BYTES}")]
    BufferSize(usize),
    #[error("a buffer pool holds 1..={max} buffers, not {count}")]
    Count { count: usize, max: usize },
    #[error("the hugepage pool has no chunk left ({chunks} of {needed} taken)")]
    OutOfChunks { chunks: usize, needed: usize },
}

/// Most buffers one pool holds (indexes are `u32`).
pub const BUFFERS_MAX: usize = 1 << 24;

/// Usage of an [`IoBufferPool`], for `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BufferPoolStats {
    pub buffer_bytes: usize,
    pub buffers_total: usize,
    pub buffers_in_use: usize,
    pub buffers_free: usize,
    /// Bytes of chunks the pool holds.
    pub bytes_reserved: usize,
}

struct Shared {
    source: Arc<HugepagePool>,
    chunks: Vec<NonNull<u8>>,
    buffer_bytes: usize,
    per_chunk: usize,
    /// Indexes of buffers dropped anywhere, waiting for the owner.
    returned: ArrayQueue<u32>,
    /// Set while a buffer is out.
    out: Box<[AtomicBool]>,
    in_use: AtomicUsize,
}

// SAFETY: the chunk pointers are owned memory; buffers inside them are
// accessed only through the one IoBuf that holds each (the out flags enforce
// it); every shared mutation is atomic.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    fn buffer_ptr(&self, index: u32) -> NonNull<u8> {
        let index = index as usize;
        assert!(index < self.out.len(), "buffer index {index} out of range");
        let chunk = self.chunks[index / self.per_chunk];
        // SAFETY: index % per_chunk * buffer_bytes + buffer_bytes <= HUGEPAGE_BYTES.
        unsafe { chunk.add((index % self.per_chunk) * self.buffer_bytes) }
    }

    fn mark_out(&self, index: u32) {
        let was_out = self.out[index as usize].swap(true, Ordering::AcqRel);
        assert!(!was_out, "buffer {index} handed out twice");
        self.in_use.fetch_add(1, Ordering::Relaxed);
    }

    fn mark_free(&self, index: u32) {
        let was_out = self.out[index as usize].swap(false, Ordering::AcqRel);
        assert!(was_out, "buffer {index} returned while free");
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl crate::device::buf::BufferHome for Shared {
    fn give_back(&self, token: u32) {
        self.mark_free(token);
        let pushed = self.returned.push(token);
        assert!(pushed.is_ok(), "return queue overflow");
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for chunk in self.chunks.drain(..) {
            // SAFETY: each chunk came from this source and, with the pool
            // handle and every IoBuf gone, nothing uses it.
            unsafe { self.source.give_chunk(chunk) };
        }
    }
}

/// One reactor's buffer pool (see the module documentation). `Send`, not
/// `Sync`: its free list belongs to one thread at a time.
pub struct IoBufferPool {
    shared: Arc<Shared>,
    local_free: Vec<u32>,
}

impl fmt::Debug for IoBufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoBufferPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl IoBufferPool {
    /// `count` buffers of `buffer_bytes` (a multiple of 4096, at most 2 MiB),
    /// carved from chunks of `source`, all taken now.
    pub fn new(
        source: Arc<HugepagePool>,
        buffer_bytes: usize,
        count: usize,
    ) -> Result<IoBufferPool, BufferPoolError> {
        if buffer_bytes == 0
            || !buffer_bytes.is_multiple_of(BUFFER_ALIGN)
            || buffer_bytes > HUGEPAGE_BYTES
        {
            return Err(BufferPoolError::BufferSize(buffer_bytes));
        }
        if count == 0 || count > BUFFERS_MAX {
            return Err(BufferPoolError::Count {
                count,
                max: BUFFERS_MAX,
            });
        }
        let per_chunk = HUGEPAGE_BYTES / buffer_bytes;
        let needed = count.div_ceil(per_chunk);
        let mut chunks = Vec::with_capacity(needed);
        for _ in 0..needed {
            match source.take_chunk() {
                Some(chunk) => chunks.push(chunk),
                None => {
                    let taken = chunks.len();
                    for chunk in chunks {
                        // SAFETY: taken from this source just now, unused.
                        unsafe { source.give_chunk(chunk) };
                    }
                    return Err(BufferPoolError::OutOfChunks {
                        chunks: taken,
                        needed,
                    });
                }
            }
        }
        let shared = Arc::new(Shared {
            source,
            chunks,
            buffer_bytes,
            per_chunk,
            returned: ArrayQueue::new(count),
            out: (0..count).map(|_| AtomicBool::new(false)).collect(),
            in_use: AtomicUsize::new(0),
        });
        // Hand out low indexes first (pop takes from the end).
        let local_free = (0..count as u32).rev().collect();
        Ok(IoBufferPool { shared, local_free })
    }

    /// A free buffer, or `None` when every buffer is out. Contents are
    /// whatever the last user left.
    pub fn alloc(&mut self) -> Option<IoBuf> {
        let index = self.take_index()?;
        Some(IoBuf {
            ptr: self.shared.buffer_ptr(index),
            index,
            shared: Arc::clone(&self.shared),
        })
    }

    /// A free buffer's index, marked out (the local list first, then what
    /// came back through the return queue).
    fn take_index(&mut self) -> Option<u32> {
        if self.local_free.is_empty() {
            while let Some(index) = self.shared.returned.pop() {
                self.local_free.push(index);
            }
        }
        let index = self.local_free.pop()?;
        self.shared.mark_out(index);
        Some(index)
    }

    /// A free buffer as an engine-ready [`AlignedBuf`] (it comes back here
    /// when dropped, on any thread), or `None` when every buffer is out.
    pub fn alloc_aligned(&mut self) -> Option<AlignedBuf> {
        let index = self.take_index()?;
        let home: Arc<dyn crate::device::buf::BufferHome> = Arc::clone(&self.shared) as _;
        // SAFETY: the buffer lies in a chunk the Arc keeps mapped (hugepage
        // and anonymous mappings are zero-filled, so initialised), it is
        // aligned to BUFFER_ALIGN, and its out flag makes this the only user
        // until give_back.
        Some(unsafe {
            AlignedBuf::from_home(
                self.shared.buffer_ptr(index),
                self.shared.buffer_bytes,
                home,
                index,
            )
        })
    }

    /// Hands `buf` back on the owner's thread without touching the return
    /// queue. A buffer of another pool is dropped (it returns to its own).
    pub fn recycle(&mut self, buf: IoBuf) {
        if !Arc::ptr_eq(&buf.shared, &self.shared) {
            drop(buf);
            return;
        }
        let index = buf.index;
        // Skip IoBuf's Drop (which would queue the index): release its Arc here.
        let buf = std::mem::ManuallyDrop::new(buf);
        // SAFETY: `buf` is never used or dropped again; its Arc is moved out once.
        drop(unsafe { std::ptr::read(&buf.shared) });
        self.shared.mark_free(index);
        self.local_free.push(index);
        assert!(self.local_free.len() <= self.shared.out.len());
    }

    /// Bytes in each buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.shared.buffer_bytes
    }

    /// Current usage.
    pub fn stats(&self) -> BufferPoolStats {
        let total = self.shared.out.len();
        let in_use = self.shared.in_use.load(Ordering::Relaxed);
        BufferPoolStats {
            buffer_bytes: self.shared.buffer_bytes,
            buffers_total: total,
            buffers_in_use: in_use,
            buffers_free: total.saturating_sub(in_use),
            bytes_reserved: self.shared.chunks.len() * HUGEPAGE_BYTES,
        }
    }
}

/// One buffer taken from an [`IoBufferPool`]; returns itself when dropped,
/// from any thread. Aligned to [`BUFFER_ALIGN`], so it can be handed to a
/// device queue directly.
pub struct IoBuf {
    ptr: NonNull<u8>,
    index: u32,
    shared: Arc<Shared>,
}

// SAFETY: an IoBuf is the only handle to its bytes (out flag), like a Box<[u8]>.
unsafe impl Send for IoBuf {}
// SAFETY: `&IoBuf` gives only `&[u8]`.
unsafe impl Sync for IoBuf {}

impl IoBuf {
    /// The buffer's index in its pool.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the buffer lies in a live chunk (the Arc keeps it) and this
        // handle is its only user.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.shared.buffer_bytes) }
    }
}

impl DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.shared.buffer_bytes) }
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        self.shared.mark_free(self.index);
        // Capacity equals the buffer count and a free buffer is queued once.
        let pushed = self.shared.returned.push(self.index);
        assert!(pushed.is_ok(), "return queue overflow");
    }
}

impl fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IoBuf(#{}, {} bytes)",
            self.index, self.shared.buffer_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::hugepage::HugepageUse;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::mpsc;

    fn pool(buffer_bytes: usize, count: usize) -> IoBufferPool {
        let source = Arc::new(HugepagePool::new(8, HugepageUse::Never));
        IoBufferPool::new(source, buffer_bytes, count).expect("pool")
    }

    #[test]
    fn lent_aligned_buffers_come_back_from_any_thread() {
        let mut p = pool(8192, 2);
        let mut a = p.alloc_aligned().expect("first");
        let b = p.alloc_aligned().expect("second");
        assert!(p.alloc_aligned().is_none(), "only two buffers");
        assert!(a.is_lent() && a.len() == 8192);
        assert_eq!(a.as_ptr() as usize % BUFFER_ALIGN, 0);
        a.fill(7);
        assert_ne!(a.as_ptr(), b.as_ptr());
        std::thread::spawn(move || drop(b)).join().expect("thread");
        assert_eq!(p.stats().buffers_in_use, 1);
        let c = p.alloc_aligned().expect("the returned one");
        drop((a, c));
        assert_eq!(p.stats().buffers_in_use, 0);
    }

    #[test]
    fn bad_shapes_get_typed_errors() {
        let source = Arc::new(HugepagePool::new(1, HugepageUse::Never));
        for bytes in [0, 100, 4097, HUGEPAGE_BYTES + 4096] {
            assert_eq!(
                IoBufferPool::new(source.clone(), bytes, 1).unwrap_err(),
                BufferPoolError::BufferSize(bytes)
            );
        }
        assert!(matches!(
            IoBufferPool::new(source.clone(), 4096, 0),
            Err(BufferPoolError::Count { .. })
        ));
        assert_eq!(
            IoBufferPool::new(source.clone(), HUGEPAGE_BYTES, 2).unwrap_err(),
            BufferPoolError::OutOfChunks {
                chunks: 1,
                needed: 2
            }
        );
        assert_eq!(
            source.stats().chunks_cached,
            1,
            "the partial take was given back"
        );
    }

    #[test]
    fn buffers_are_aligned_distinct_and_exhaustible() {
        let mut pool = pool(8192, 300); // 256 per chunk: two chunks
        let bufs: Vec<IoBuf> = (0..300).map(|_| pool.alloc().expect("buffer")).collect();
        assert!(pool.alloc().is_none());
        let mut starts: Vec<usize> = bufs.iter().map(|b| b.as_ptr() as usize).collect();
        assert!(starts.iter().all(|s| s % BUFFER_ALIGN == 0));
        starts.sort_unstable();
        assert!(starts.windows(2).all(|w| w[1] - w[0] >= 8192), "no overlap");
        assert_eq!(pool.stats().buffers_in_use, 300);
        assert_eq!(pool.stats().bytes_reserved, 2 * HUGEPAGE_BYTES);
        drop(bufs);
        assert_eq!(pool.stats().buffers_in_use, 0);
        assert!(pool.alloc().is_some(), "dropped buffers come back");
    }

    #[test]
    fn chunks_return_after_the_last_buffer() {
        let source = Arc::new(HugepagePool::new(2, HugepageUse::Never));
        let mut pool = IoBufferPool::new(source.clone(), 4096, 10).expect("pool");
        let buf = pool.alloc().expect("buffer");
        drop(pool);
        assert_eq!(
            source.stats().chunks_cached,
            0,
            "a live buffer keeps its chunk"
        );
        let handle = std::thread::spawn(move || drop(buf));
        handle.join().expect("thread");
        assert_eq!(source.stats().chunks_cached, 1);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Alloc,
        /// Drop the k-th live buffer (mod len) on this thread.
        Drop(usize),
        /// Recycle the k-th live buffer through the owner's fast path.
        Recycle(usize),
        /// Drop the k-th live buffer on another thread.
        DropElsewhere(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Alloc),
            1 => any::<usize>().prop_map(Op::Drop),
            1 => any::<usize>().prop_map(Op::Recycle),
            2 => any::<usize>().prop_map(Op::DropElsewhere),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn never_hands_out_a_buffer_twice(ops in proptest::collection::vec(op(), 1..400)) {
            const COUNT: usize = 24;
            let mut pool = pool(4096, COUNT);
            let (to_dropper, inbox) = mpsc::channel::<IoBuf>();
            let (ack, acks) = mpsc::channel::<()>();
            let dropper = std::thread::spawn(move || {
                for buf in inbox {
                    drop(buf);
                    let _ = ack.send(());
                }
            });
            // Live buffers: address -> (index, stamp written into the buffer).
            let mut live: Vec<IoBuf> = Vec::new();
            let mut owners: HashMap<usize, u64> = HashMap::new();
            let mut stamp = 0u64;
            for op in ops {
                match op {
                    Op::Alloc => match pool.alloc() {
                        Some(mut buf) => {
                            let addr = buf.as_ptr() as usize;
                            prop_assert!(owners.insert(addr, stamp).is_none(), "buffer {addr:#x} handed out twice");
                            buf[..8].copy_from_slice(&stamp.to_le_bytes());
                            stamp += 1;
                            live.push(buf);
                        }
                        None => prop_assert_eq!(live.len(), COUNT, "alloc failed with free buffers"),
                    },
                    Op::Drop(k) | Op::Recycle(k) | Op::DropElsewhere(k) if !live.is_empty() => {
                        let buf = live.swap_remove(k % live.len());
                        let addr = buf.as_ptr() as usize;
                        let expected = owners.remove(&addr).expect("tracked");
                        prop_assert_eq!(&buf[..8], &expected.to_le_bytes()[..], "buffer contents changed under its owner");
                        match op {
                            Op::Drop(_) => drop(buf),
                            Op::Recycle(_) => pool.recycle(buf),
                            _ => {
                                to_dropper.send(buf).expect("dropper alive");
                                acks.recv().expect("dropper acks");
                            }
                        }
                    }
                    _ => {}
                }
                let stats = pool.stats();
                prop_assert_eq!(stats.buffers_in_use, live.len());
                prop_assert_eq!(stats.buffers_free, COUNT - live.len());
            }
            drop(live);
            drop(to_dropper);
            dropper.join().expect("dropper thread");
            prop_assert_eq!(pool.stats().buffers_in_use, 0);
            // Every buffer can be taken again, each once.
            let all: Vec<IoBuf> = (0..COUNT).map(|_| pool.alloc().expect("buffer")).collect();
            let mut indexes: Vec<u32> = all.iter().map(IoBuf::index).collect();
            indexes.sort_unstable();
            indexes.dedup();
            prop_assert_eq!(indexes.len(), COUNT);
            prop_assert!(pool.alloc().is_none());
        }
    }
}
