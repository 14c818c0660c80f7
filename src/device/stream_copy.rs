//! Copies into RAM-device memory that bypass the CPU caches, the way a DMA
//! engine writes a real device's media.
//!
//! A write or device-internal copy of 1 KiB or more (every block of a
//! 4096-byte device; two or more blocks of a 512-byte one) goes through
//! non-temporal stores: the destination lines are not read first (no
//! read-for-ownership) and do not evict the working set of the thread that
//! issued the copy, whose next request will not read them back. Short or
//! unaligned copies, and targets without SSE2 streaming stores, take the
//! ordinary `copy_nonoverlapping`.
//!
//! Invariant: [`copy`] returns only after a store fence, so every byte it
//! wrote is visible to another thread before any store the caller makes after
//! it (a completion, a twin publish); without it, streaming stores could
//! become visible after a later release store.

/// Shortest copy worth streaming: below this the fence costs more than the
/// read-for-ownership it saves.
pub const STREAM_MIN: usize = 1024;

/// Bytes per streaming step; copies that stream are a multiple of it.
const STEP: usize = 64;

/// Whether a copy of `len` bytes to `dst` streams.
fn streams(dst: *const u8, len: usize) -> bool {
    cfg!(target_arch = "x86_64")
        && len >= STREAM_MIN
        && len.is_multiple_of(STEP)
        && (dst as usize).is_multiple_of(16)
}

/// Copies `len` bytes from `src` to `dst`, streaming when [`streams`] says so.
///
/// # Safety
/// As for `std::ptr::copy_nonoverlapping`: `src` is valid for `len` reads,
/// `dst` for `len` writes, and the ranges do not overlap.
pub unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    if streams(dst, len) {
        // SAFETY: forwarded from this function's contract; `streams` checked
        // the alignment and length that `stream` requires.
        unsafe { stream(src, dst, len) }
    } else {
        // SAFETY: forwarded from this function's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
    }
}

/// The streaming loop: four 16-byte loads, four streaming stores, per step.
///
/// # Safety
/// `copy`'s contract, plus `dst` 16-byte aligned and `len` a multiple of
/// [`STEP`].
#[cfg(target_arch = "x86_64")]
unsafe fn stream(src: *const u8, dst: *mut u8, len: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    debug_assert!((dst as usize).is_multiple_of(16) && len.is_multiple_of(STEP));
    let mut at = 0;
    while at < len {
        // SAFETY: `at + STEP <= len`, so every access lies in the two ranges
        // of the contract; stores are to 16-byte aligned addresses (`dst` is
        // aligned and every offset is a multiple of 16); SSE2 is part of the
        // x86_64 baseline.
        unsafe {
            let s = src.add(at);
            let d = dst.add(at);
            let a = _mm_loadu_si128(s.cast::<__m128i>());
            let b = _mm_loadu_si128(s.add(16).cast::<__m128i>());
            let c = _mm_loadu_si128(s.add(32).cast::<__m128i>());
            let e = _mm_loadu_si128(s.add(48).cast::<__m128i>());
            _mm_stream_si128(d.cast::<__m128i>(), a);
            _mm_stream_si128(d.add(16).cast::<__m128i>(), b);
            _mm_stream_si128(d.add(32).cast::<__m128i>(), c);
            _mm_stream_si128(d.add(48).cast::<__m128i>(), e);
        }
        at += STEP;
    }
    // Streaming stores are weakly ordered: fence them before anything the
    // caller stores next (the module invariant).
    // SAFETY: SSE is part of the x86_64 baseline.
    unsafe { _mm_sfence() };
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn stream(src: *const u8, dst: *mut u8, len: usize) {
    // `streams` is false off x86_64; kept total for the type checker.
    // SAFETY: forwarded from this function's contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::AlignedBuf;
    use proptest::prelude::*;

    #[test]
    fn block_copies_stream_and_odd_ones_do_not() {
        let buf = AlignedBuf::zeroed(8192);
        let p = buf.as_ptr();
        assert_eq!(streams(p, 4096), cfg!(target_arch = "x86_64"));
        assert!(!streams(p, 512), "below STREAM_MIN");
        assert!(!streams(p, 4096 + 8), "not a multiple of a step");
        // SAFETY: in bounds of an 8 KiB buffer.
        assert!(!streams(unsafe { p.add(8) }, 4096), "unaligned target");
    }

    proptest! {
        /// Whatever the offsets and length, the bytes arrive exactly and
        /// nothing outside the target range changes.
        #[test]
        fn copies_exactly(
            seed in any::<u8>(),
            src_at in 0usize..256,
            dst_at in 0usize..256,
            len in 0usize..9000,
            aligned in any::<bool>(),
        ) {
            // Half the cases take the streaming path: an aligned target and
            // a whole number of steps.
            let (dst_at, len) = if aligned { (dst_at & !15, len & !(STEP - 1)) } else { (dst_at, len) };
            let mut src = AlignedBuf::zeroed(16384);
            for (i, b) in src.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
            }
            let mut dst = AlignedBuf::zeroed(16384);
            dst.fill(0xA5);
            let target = dst.as_ptr().wrapping_add(dst_at);
            if aligned && len >= STREAM_MIN {
                prop_assert_eq!(streams(target, len), cfg!(target_arch = "x86_64"), "this case must stream");
            }
            // SAFETY: both ranges lie inside their 16 KiB buffers
            // (256 + 9000 < 16384) and the buffers are distinct.
            unsafe { copy(src.as_ptr().add(src_at), dst.as_mut_ptr().add(dst_at), len) };
            prop_assert_eq!(&dst[dst_at..dst_at + len], &src[src_at..src_at + len]);
            prop_assert!(dst[..dst_at].iter().all(|&b| b == 0xA5));
            prop_assert!(dst[dst_at + len..].iter().all(|&b| b == 0xA5));
        }
    }
}
