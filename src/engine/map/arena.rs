//! Node memory for the maps: fixed-size slots carved out of large aligned
//! chunks, addressed by [`NodeId`] handles.
//!
//! A [`ChunkSource`] hands out chunks (2 MiB by default, aligned to at least
//! 4096 bytes); [`HeapChunks`] takes them from the global allocator and a
//! hugepage pool can implement the same trait later. A [`NodeArena`] owns the
//! chunks it took, keeps freed slots on an intrusive free list (so freeing and
//! reallocating never touches the allocator) and gives every chunk back to its
//! source when dropped or cleared.
//!
//! Invariant kept: a slot holds an initialised `T` exactly when its bit in the
//! live bitmap is set. Every access through a `NodeId` checks that bit, so a
//! stale or foreign id panics instead of reading freed memory; all `unsafe` in
//! the map layer is in this file.

use std::alloc::{alloc, dealloc, Layout};
use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, needs_drop, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Minimum alignment, in bytes, of every chunk a [`ChunkSource`] hands out.
pub const CHUNK_ALIGN: usize = 4096;

/// Chunk size of [`HeapChunks::new`]: one 2 MiB hugepage.
pub const DEFAULT_CHUNK_BYTES: usize = 2 << 20;

/// Where node memory comes from: large chunks, aligned to at least
/// [`CHUNK_ALIGN`] bytes.
pub trait ChunkSource: Send + Sync + fmt::Debug {
    /// A chunk of `bytes` bytes aligned to at least [`CHUNK_ALIGN`], or `None`
    /// when the source is exhausted. The memory is uninitialised.
    fn allocate(&self, bytes: usize) -> Option<NonNull<u8>>;

    /// Gives a chunk back.
    ///
    /// # Safety
    ///
    /// `ptr` must have been returned by `allocate(bytes)` on this same source,
    /// with the same `bytes`, and not deallocated since; nothing may use the
    /// chunk afterwards.
    unsafe fn deallocate(&self, ptr: NonNull<u8>, bytes: usize);

    /// The chunk size arenas ask this source for.
    fn chunk_bytes(&self) -> usize;
}

/// A [`ChunkSource`] backed by the global allocator.
#[derive(Debug)]
pub struct HeapChunks {
    chunk_bytes: usize,
    outstanding_bytes: AtomicUsize,
}

impl HeapChunks {
    /// A source of [`DEFAULT_CHUNK_BYTES`] chunks.
    pub fn new() -> Self {
        Self::with_chunk_bytes(DEFAULT_CHUNK_BYTES)
    }

    /// A source of `chunk_bytes` chunks (a positive multiple of [`CHUNK_ALIGN`]);
    /// small chunks suit many small maps and tests.
    pub fn with_chunk_bytes(chunk_bytes: usize) -> Self {
        assert!(
            chunk_bytes > 0 && chunk_bytes.is_multiple_of(CHUNK_ALIGN),
            "HeapChunks: chunk size {chunk_bytes} is not a positive multiple of {CHUNK_ALIGN}"
        );
        HeapChunks {
            chunk_bytes,
            outstanding_bytes: AtomicUsize::new(0),
        }
    }

    /// Bytes handed out and not yet given back.
    pub fn outstanding_bytes(&self) -> usize {
        self.outstanding_bytes.load(Ordering::Relaxed)
    }
}

impl Default for HeapChunks {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkSource for HeapChunks {
    fn allocate(&self, bytes: usize) -> Option<NonNull<u8>> {
        if bytes == 0 {
            return None;
        }
        let layout = Layout::from_size_align(bytes, CHUNK_ALIGN).ok()?;
        // SAFETY: layout has non-zero size.
        let ptr = NonNull::new(unsafe { alloc(layout) })?;
        self.outstanding_bytes.fetch_add(bytes, Ordering::Relaxed);
        Some(ptr)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, bytes: usize) {
        let layout = Layout::from_size_align(bytes, CHUNK_ALIGN)
            .expect("HeapChunks::deallocate: the layout was valid at allocation");
        let before = self.outstanding_bytes.fetch_sub(bytes, Ordering::Relaxed);
        assert!(
            before >= bytes,
            "HeapChunks::deallocate: more bytes returned than handed out"
        );
        // SAFETY: the caller promises ptr came from allocate(bytes) here, so it
        // was allocated by the global allocator with this exact layout.
        unsafe { dealloc(ptr.as_ptr(), layout) };
    }

    fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }
}

/// Handle to one slot of a [`NodeArena`]: chunk index in the high bits, slot
/// index within the chunk in the low bits (no division on access).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NodeId(u32);

impl NodeId {
    /// Never returned by [`NodeArena::alloc`]; the null link in node structures.
    pub const NONE: NodeId = NodeId(u32::MAX);

    /// True for [`NodeId::NONE`].
    #[inline]
    pub fn is_none(self) -> bool {
        self == Self::NONE
    }

    /// The raw handle value.
    #[inline]
    pub fn raw(self) -> u32 {
        self.0
    }
}

/// End of the free list (free slots store the next free id in their first four bytes).
const FREE_END: u32 = u32::MAX;

/// Fixed-size slots of `T` carved out of chunks from a [`ChunkSource`].
///
/// Reads take `&self` and never mutate, so an arena the writer is not
/// mutating may be read from any number of threads at once.
pub struct NodeArena<T> {
    source: Arc<dyn ChunkSource>,
    /// Chunk size, read once from the source so deallocation always matches.
    chunk_bytes: usize,
    /// Bytes from one slot to the next: `size_of::<T>()` (at least 4) rounded
    /// up to `align_of::<T>()`.
    stride: usize,
    slots_per_chunk: usize,
    /// `NodeId` = chunk << slot_shift | slot.
    slot_shift: u32,
    chunks: Vec<NonNull<u8>>,
    /// Bit `id` set when slot `id` holds a live `T`.
    live: Vec<u64>,
    free_head: u32,
    /// Next never-used slot of the last chunk (`slots_per_chunk` when it is full).
    fresh: usize,
    live_nodes: usize,
    _owns: PhantomData<T>,
}

// SAFETY: the arena owns its chunks and the `T`s in them exclusively (like a
// `Vec<T>`); the source is `Send + Sync` by its trait bounds.
unsafe impl<T: Send> Send for NodeArena<T> {}
// SAFETY: `&NodeArena` only hands out `&T` and never mutates (no interior
// mutability), so sharing it is sharing `&T`.
unsafe impl<T: Sync> Sync for NodeArena<T> {}

impl<T> NodeArena<T> {
    /// An empty arena; no chunk is taken until the first [`alloc`](Self::alloc).
    pub fn new(source: Arc<dyn ChunkSource>) -> Self {
        let chunk_bytes = source.chunk_bytes();
        assert!(
            align_of::<T>() <= CHUNK_ALIGN,
            "NodeArena: alignment {} exceeds the chunk alignment {CHUNK_ALIGN}",
            align_of::<T>()
        );
        let stride = size_of::<T>()
            .max(size_of::<u32>())
            .next_multiple_of(align_of::<T>());
        let slots_per_chunk = chunk_bytes / stride;
        assert!(
            slots_per_chunk >= 1,
            "NodeArena: a {stride}-byte slot does not fit a {chunk_bytes}-byte chunk"
        );
        let slot_shift = slots_per_chunk.next_power_of_two().trailing_zeros();
        assert!(
            slot_shift < 32,
            "NodeArena: {slots_per_chunk} slots per chunk overflow a NodeId"
        );
        NodeArena {
            source,
            chunk_bytes,
            stride,
            slots_per_chunk,
            slot_shift,
            chunks: Vec::new(),
            live: Vec::new(),
            free_head: FREE_END,
            fresh: slots_per_chunk,
            live_nodes: 0,
            _owns: PhantomData,
        }
    }

    /// Stores `value` in a free slot (reusing freed slots first) and returns its id.
    ///
    /// Panics when the chunk source is exhausted or the id space (2^32 slots) is full.
    pub fn alloc(&mut self, value: T) -> NodeId {
        let id = if self.free_head != FREE_END {
            let id = self.free_head;
            debug_assert!(
                !self.is_live(NodeId(id)),
                "NodeArena: free list holds live slot {id}"
            );
            // SAFETY: free slots store the next free id in their first 4 bytes
            // (written by `free`); the slot lies inside an owned chunk.
            self.free_head = unsafe { self.slot_ptr(id).cast::<u32>().read_unaligned() };
            id
        } else {
            if self.fresh == self.slots_per_chunk {
                self.grow();
            }
            let chunk = (self.chunks.len() - 1) as u32;
            let id = (chunk << self.slot_shift) | self.fresh as u32;
            self.fresh += 1;
            id
        };
        // SAFETY: the slot is inside an owned chunk, aligned for T (chunk base
        // is CHUNK_ALIGN-aligned and stride is a multiple of align_of::<T>()),
        // and holds no live value (it was free or never used).
        unsafe { self.slot_ptr(id).cast::<T>().write(value) };
        self.live[id as usize >> 6] |= 1 << (id & 63);
        self.live_nodes += 1;
        NodeId(id)
    }

    /// Drops the value in slot `id` and puts the slot on the free list.
    ///
    /// Panics if `id` is not live (a double free would otherwise drop twice).
    pub fn free(&mut self, id: NodeId) {
        assert!(self.is_live(id), "NodeArena::free({id:?}): not a live node");
        let raw = id.0;
        self.live[raw as usize >> 6] &= !(1 << (raw & 63));
        self.live_nodes -= 1;
        let ptr = self.slot_ptr(raw);
        // SAFETY: the slot held a live T (bit was set); it is dropped exactly
        // once here and then overwritten with the free-list link (stride >= 4).
        unsafe {
            std::ptr::drop_in_place(ptr.cast::<T>());
            ptr.cast::<u32>().write_unaligned(self.free_head);
        }
        self.free_head = raw;
    }

    /// The value in slot `id`. Panics if `id` is not live.
    #[inline]
    pub fn get(&self, id: NodeId) -> &T {
        assert!(self.is_live(id), "NodeArena::get({id:?}): not a live node");
        // SAFETY: the live bit says the slot holds an initialised T; the
        // returned borrow is tied to &self, and mutation needs &mut self.
        unsafe { &*self.slot_ptr(id.0).cast::<T>() }
    }

    /// The value in slot `id`, mutably. Panics if `id` is not live.
    #[inline]
    pub fn get_mut(&mut self, id: NodeId) -> &mut T {
        assert!(
            self.is_live(id),
            "NodeArena::get_mut({id:?}): not a live node"
        );
        // SAFETY: as in `get`; &mut self makes the borrow exclusive.
        unsafe { &mut *self.slot_ptr(id.0).cast::<T>() }
    }

    /// True when `id` names a live slot of this arena.
    #[inline]
    pub fn is_live(&self, id: NodeId) -> bool {
        let raw = id.0 as usize;
        self.live
            .get(raw >> 6)
            .is_some_and(|word| word & (1 << (raw & 63)) != 0)
    }

    /// Bytes of chunks held (live, free and never-used slots alike).
    pub fn bytes_reserved(&self) -> usize {
        self.chunks.len() * self.chunk_bytes
    }

    /// Values currently stored.
    pub fn live_nodes(&self) -> usize {
        self.live_nodes
    }

    /// Bytes from one slot to the next.
    pub fn slot_bytes(&self) -> usize {
        self.stride
    }

    /// Slots carved from each chunk.
    pub fn slots_per_chunk(&self) -> usize {
        self.slots_per_chunk
    }

    /// Drops every live value and gives every chunk back to the source.
    pub fn clear(&mut self) {
        if needs_drop::<T>() {
            for word_index in 0..self.live.len() {
                let mut word = self.live[word_index];
                while word != 0 {
                    let raw = (word_index * 64 + word.trailing_zeros() as usize) as u32;
                    word &= word - 1;
                    // SAFETY: the live bit says the slot holds an initialised
                    // T; the bitmap is reset below, so it is dropped once.
                    unsafe { std::ptr::drop_in_place(self.slot_ptr(raw).cast::<T>()) };
                }
            }
        }
        self.live.clear();
        self.live_nodes = 0;
        self.free_head = FREE_END;
        self.fresh = self.slots_per_chunk;
        for chunk in self.chunks.drain(..) {
            // SAFETY: every chunk came from this source with chunk_bytes bytes,
            // is given back once (drained) and no T in it is live any more.
            unsafe { self.source.deallocate(chunk, self.chunk_bytes) };
        }
    }

    /// Takes one more chunk from the source.
    fn grow(&mut self) {
        let chunk = self.chunks.len() as u64;
        let last_id = ((chunk + 1) << self.slot_shift) - 1;
        assert!(
            last_id < u64::from(FREE_END),
            "NodeArena: NodeId space exhausted"
        );
        let ptr = self.source.allocate(self.chunk_bytes).unwrap_or_else(|| {
            panic!("NodeArena: chunk source {:?} is out of memory", self.source)
        });
        assert!(
            (ptr.as_ptr() as usize).is_multiple_of(CHUNK_ALIGN),
            "ChunkSource contract: chunk {ptr:p} is not {CHUNK_ALIGN}-aligned"
        );
        self.chunks.push(ptr);
        let bits = self.chunks.len() << self.slot_shift;
        self.live.resize(bits.div_ceil(64), 0);
        self.fresh = 0;
    }

    /// Address of slot `raw`; the caller guarantees its chunk exists and its
    /// slot index is below `slots_per_chunk`.
    #[inline]
    fn slot_ptr(&self, raw: u32) -> *mut u8 {
        let chunk = self.chunks[(raw >> self.slot_shift) as usize];
        let slot = (raw & ((1 << self.slot_shift) - 1)) as usize;
        debug_assert!(slot < self.slots_per_chunk);
        // SAFETY: slot < slots_per_chunk, so the offset stays inside the chunk.
        unsafe { chunk.as_ptr().add(slot * self.stride) }
    }
}

impl<T> Drop for NodeArena<T> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<T> fmt::Debug for NodeArena<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeArena")
            .field("slot_bytes", &self.stride)
            .field("slots_per_chunk", &self.slots_per_chunk)
            .field("chunks", &self.chunks.len())
            .field("live_nodes", &self.live_nodes)
            .field("bytes_reserved", &self.bytes_reserved())
            .field("source", &self.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn small_source() -> Arc<HeapChunks> {
        Arc::new(HeapChunks::with_chunk_bytes(CHUNK_ALIGN))
    }

    #[test]
    fn heap_chunks_are_aligned_and_counted() {
        let source = HeapChunks::with_chunk_bytes(3 * CHUNK_ALIGN);
        let a = source.allocate(source.chunk_bytes()).expect("chunk");
        let b = source.allocate(source.chunk_bytes()).expect("chunk");
        assert_eq!(a.as_ptr() as usize % CHUNK_ALIGN, 0);
        assert_eq!(b.as_ptr() as usize % CHUNK_ALIGN, 0);
        assert_eq!(source.outstanding_bytes(), 6 * CHUNK_ALIGN);
        // SAFETY: both came from this source with these sizes.
        unsafe {
            source.deallocate(a, 3 * CHUNK_ALIGN);
            source.deallocate(b, 3 * CHUNK_ALIGN);
        }
        assert_eq!(source.outstanding_bytes(), 0);
        assert!(source.allocate(0).is_none());
        assert_eq!(HeapChunks::new().chunk_bytes(), DEFAULT_CHUNK_BYTES);
    }

    #[test]
    fn alloc_get_free_round_trip() {
        let source = small_source();
        let mut arena: NodeArena<[u64; 5]> = NodeArena::new(source.clone());
        assert_eq!(arena.bytes_reserved(), 0, "no chunk before the first alloc");
        assert_eq!(arena.slot_bytes(), 40);
        let ids: Vec<NodeId> = (0..1000u64).map(|i| arena.alloc([i; 5])).collect();
        assert_eq!(arena.live_nodes(), 1000);
        assert_eq!(
            ids.iter().collect::<HashSet<_>>().len(),
            1000,
            "ids are distinct"
        );
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(arena.get(*id), &[i as u64; 5]);
        }
        arena.get_mut(ids[7])[2] = 99;
        assert_eq!(arena.get(ids[7])[2], 99);
        for id in &ids[..500] {
            arena.free(*id);
        }
        assert!(!arena.is_live(ids[0]));
        assert!(arena.is_live(ids[500]));
        assert!(!arena.is_live(NodeId::NONE));
        assert_eq!(arena.live_nodes(), 500);
        assert_eq!(arena.get(ids[999]), &[999; 5]);
        let chunks = CHUNK_ALIGN / 40;
        assert_eq!(
            arena.bytes_reserved(),
            1000usize.div_ceil(chunks) * CHUNK_ALIGN
        );
        assert_eq!(source.outstanding_bytes(), arena.bytes_reserved());
    }

    #[test]
    fn memory_is_reused_after_frees() {
        let source = small_source();
        let mut arena: NodeArena<[u128; 8]> = NodeArena::new(source.clone());
        let first: Vec<NodeId> = (0..300u128).map(|i| arena.alloc([i; 8])).collect();
        let churn = |arena: &mut NodeArena<[u128; 8]>, round: u128| {
            let ids: Vec<NodeId> = (0..300)
                .map(|i| arena.alloc([round * 1000 + i; 8]))
                .collect();
            for id in ids.iter().rev() {
                arena.free(*id);
            }
        };
        churn(&mut arena, 0);
        let reserved = arena.bytes_reserved();
        assert!(reserved >= 600 * 128);
        for round in 1..20 {
            churn(&mut arena, round);
            assert_eq!(
                arena.bytes_reserved(),
                reserved,
                "round {round} reuses freed slots"
            );
        }
        for id in &first {
            arena.free(*id);
        }
        let second: Vec<NodeId> = (0..600u128).map(|i| arena.alloc([i; 8])).collect();
        assert_eq!(
            arena.bytes_reserved(),
            reserved,
            "600 allocations fit the slots of 600 frees"
        );
        assert_eq!(arena.live_nodes(), 600);
        for (i, id) in second.iter().enumerate() {
            assert_eq!(arena.get(*id)[7], i as u128);
        }
        assert_eq!(source.outstanding_bytes(), reserved);
        drop(arena);
        assert_eq!(
            source.outstanding_bytes(),
            0,
            "chunks go back to the source on drop"
        );
    }

    #[test]
    fn freed_slots_are_reused_before_new_chunks() {
        let source = small_source();
        let mut arena: NodeArena<u64> = NodeArena::new(source.clone());
        let per_chunk = arena.slots_per_chunk();
        let ids: Vec<NodeId> = (0..per_chunk as u64).map(|i| arena.alloc(i)).collect();
        assert_eq!(arena.bytes_reserved(), CHUNK_ALIGN);
        for id in &ids {
            arena.free(*id);
        }
        let again: HashSet<NodeId> = (0..per_chunk as u64).map(|i| arena.alloc(i)).collect();
        assert_eq!(
            arena.bytes_reserved(),
            CHUNK_ALIGN,
            "a full chunk of frees satisfies a full chunk of allocs"
        );
        assert_eq!(again, ids.into_iter().collect::<HashSet<_>>());
        arena.clear();
        assert_eq!(arena.bytes_reserved(), 0);
        assert_eq!(source.outstanding_bytes(), 0);
        let id = arena.alloc(5);
        assert_eq!(*arena.get(id), 5);
    }

    #[test]
    fn live_values_are_dropped_exactly_once() {
        let counter = Arc::new(());
        let mut arena: NodeArena<Arc<()>> = NodeArena::new(small_source());
        let ids: Vec<NodeId> = (0..1000).map(|_| arena.alloc(counter.clone())).collect();
        assert_eq!(Arc::strong_count(&counter), 1001);
        for id in ids.iter().step_by(3) {
            arena.free(*id);
        }
        assert_eq!(Arc::strong_count(&counter), 1001 - 334);
        drop(arena);
        assert_eq!(Arc::strong_count(&counter), 1);
    }

    #[test]
    #[should_panic(expected = "not a live node")]
    fn double_free_panics() {
        let mut arena: NodeArena<u64> = NodeArena::new(small_source());
        let id = arena.alloc(1);
        arena.free(id);
        arena.free(id);
    }

    #[test]
    #[should_panic(expected = "not a live node")]
    fn get_of_freed_id_panics() {
        let mut arena: NodeArena<u64> = NodeArena::new(small_source());
        let id = arena.alloc(1);
        arena.alloc(2);
        arena.free(id);
        arena.get(id);
    }

    #[test]
    fn arena_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<NodeArena<[u128; 4]>>();
    }
}
