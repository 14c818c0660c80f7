//! Owned, zero-initialised, [`BUFFER_ALIGN`]-aligned byte buffers for device I/O,
//! from the heap or lent by a [`BufferHome`] (hugepage-backed pools).
//!
//! Invariant: the allocation is aligned to `BUFFER_ALIGN` and never moves while
//! the buffer lives, so its address may be handed to a device queue for the
//! duration of a request.

use super::BUFFER_ALIGN;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

/// Where the memory of a buffer that did not come from the heap goes back
/// when the buffer is dropped (a pool of hugepage-backed buffers).
pub trait BufferHome: Send + Sync {
    /// The buffer `token` is free again.
    fn give_back(&self, token: u32);
}

struct Home {
    home: Arc<dyn BufferHome>,
    token: u32,
}

/// A buffer aligned for O_DIRECT: from the heap, or lent by a [`BufferHome`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
    home: Option<Home>,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out &[u8].
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (capacity rounded up to `BUFFER_ALIGN`).
    pub fn zeroed(len: usize) -> Self {
        let capacity = len.div_ceil(BUFFER_ALIGN).max(1) * BUFFER_ALIGN;
        let layout = Layout::from_size_align(capacity, BUFFER_ALIGN)
            .expect("buffer layout: capacity is a non-zero multiple of the alignment");
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf {
            ptr,
            len,
            capacity,
            home: None,
        }
    }

    /// A buffer over memory lent by `home`, returned to it (as `token`) on drop.
    ///
    /// # Safety
    /// `ptr..ptr + capacity` must be initialised memory aligned to
    /// [`BUFFER_ALIGN`], used by nothing else until `home.give_back(token)`.
    pub unsafe fn from_home(
        ptr: NonNull<u8>,
        capacity: usize,
        home: Arc<dyn BufferHome>,
        token: u32,
    ) -> Self {
        debug_assert_eq!(ptr.as_ptr() as usize % BUFFER_ALIGN, 0);
        AlignedBuf {
            ptr,
            len: capacity,
            capacity,
            home: Some(Home { home, token }),
        }
    }

    /// Whether the memory is lent by a [`BufferHome`] (not the heap).
    pub fn is_lent(&self) -> bool {
        self.home.is_some()
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut buf = Self::zeroed(bytes.len());
        buf.copy_from_slice(bytes);
        buf
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no bytes are in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the length within the capacity; new bytes are zero.
    pub fn resize(&mut self, len: usize) {
        assert!(
            len <= self.capacity,
            "AlignedBuf::resize beyond capacity ({len} > {})",
            self.capacity
        );
        if len > self.len {
            // SAFETY: within the allocation.
            unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, len - self.len) };
        }
        self.len = len;
    }

    /// Changes the length within the capacity without zeroing: the bytes are
    /// whatever the buffer held before (all initialised), for a recycled
    /// buffer the caller is about to overwrite completely.
    pub fn set_len_reusing(&mut self, len: usize) {
        assert!(
            len <= self.capacity,
            "AlignedBuf::set_len_reusing beyond capacity ({len} > {})",
            self.capacity
        );
        self.len = len;
    }

    /// Start address, for a device request.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Start address, for a device write request.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: len <= capacity, memory initialised (zeroed at allocation).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some(h) = self.home.take() {
            h.home.give_back(h.token);
            return;
        }
        let layout = Layout::from_size_align(self.capacity, BUFFER_ALIGN)
            .expect("layout was valid at allocation");
        // SAFETY: allocated with this layout in `zeroed`.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_resizable() {
        let mut b = AlignedBuf::zeroed(1000);
        assert_eq!(b.as_ptr() as usize % BUFFER_ALIGN, 0);
        assert_eq!(b.len(), 1000);
        assert_eq!(b.capacity(), 4096);
        assert!(b.iter().all(|&x| x == 0));
        b[999] = 7;
        b.resize(10);
        b.resize(1000);
        assert_eq!(b[999], 0, "bytes regained by resize are zero");
        let c = AlignedBuf::from_slice(b"hello");
        assert_eq!(&c[..], b"hello");
    }
}
