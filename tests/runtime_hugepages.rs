//! The hugepage pool against the real kernel: with 2 MiB hugepages reserved
//! (through `setup_hugepages`, as `rewind setup-hugepages` will) chunks are
//! hugetlb pages and the kernel's free count drops as they are touched; with
//! fewer reserved than asked for, the rest falls back; with none reserved,
//! every chunk falls back to ordinary pages. The original `nr_hugepages` is
//! restored afterwards, also when an assertion fails.
//!
//! Changing `nr_hugepages` needs root. Without it the test says so on stderr
//! and checks only the path the machine's current reservation allows — the
//! fallback path is asserted either way.
//!
//! One test function: the steps share the kernel's global hugepage pool and
//! must not run in parallel.

use rewind::runtime::hugepage::{
    hugepage_counts, setup_hugepages, HugepagePool, HugepageUse, HUGEPAGE_BYTES,
};
use std::ptr::NonNull;

/// Puts `nr_hugepages` back when dropped.
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(error) = setup_hugepages(self.0) {
            eprintln!("could not restore nr_hugepages to {}: {error}", self.0);
        }
    }
}

/// Takes `n` chunks, writing every byte's page so hugetlb pages are really used.
fn take_and_touch(pool: &HugepagePool, n: usize) -> Vec<NonNull<u8>> {
    (0..n)
        .map(|i| {
            let chunk = pool.take_chunk().expect("chunk");
            assert_eq!(chunk.as_ptr() as usize % HUGEPAGE_BYTES, 0);
            // SAFETY: a live 2 MiB chunk owned by this test.
            unsafe { chunk.as_ptr().write_bytes(i as u8 + 1, HUGEPAGE_BYTES) };
            chunk
        })
        .collect()
}

fn give_back(pool: &HugepagePool, chunks: Vec<NonNull<u8>>) {
    for chunk in chunks {
        // SAFETY: each came from this pool and is given back once.
        unsafe { pool.give_chunk(chunk) };
    }
}

fn fallback_when_none_reserved() {
    let pool = HugepagePool::new(2, HugepageUse::Prefer);
    let chunks = take_and_touch(&pool, 2);
    let stats = pool.stats();
    assert_eq!(
        stats.chunks_hugepage, 0,
        "no hugepage is reserved: {stats:?}"
    );
    assert_eq!(stats.chunks_fallback, 2);
    assert_eq!(stats.bytes_mapped, 2 * HUGEPAGE_BYTES);
    give_back(&pool, chunks);
}

#[test]
fn hugetlb_when_reserved_fallback_otherwise() {
    let (original, _) = hugepage_counts().expect("2 MiB hugepage sysfs counts");
    let Ok(report) = setup_hugepages(0) else {
        eprintln!(
            "NOTE: cannot write nr_hugepages (not root?); checking only the current \
             reservation ({original} pages) and the forced fallback"
        );
        let pool = HugepagePool::new(1, HugepageUse::Never);
        let chunk = take_and_touch(&pool, 1);
        assert_eq!(pool.stats().chunks_fallback, 1);
        give_back(&pool, chunk);
        if hugepage_counts().expect("counts").1 == 0 {
            fallback_when_none_reserved();
        }
        return;
    };
    let _restore = Restore(original);
    assert_eq!(report.granted, 0);
    assert_eq!(report.before, original);
    fallback_when_none_reserved();

    // Two pages reserved, three chunks asked for: two hugetlb, one fallback.
    let report = setup_hugepages(2).expect("reserve 2 hugepages");
    assert_eq!(report.requested, 2);
    if report.granted < 2 {
        eprintln!(
            "NOTE: the kernel granted only {} of 2 hugepages (fragmented memory)",
            report.granted
        );
    }
    let granted = report.granted as usize;
    let (_, free_before) = hugepage_counts().expect("counts");
    let pool = HugepagePool::new(3, HugepageUse::Prefer);
    let chunks = take_and_touch(&pool, 3);
    let stats = pool.stats();
    assert_eq!(stats.chunks_hugepage, granted.min(3), "{stats:?}");
    assert_eq!(stats.chunks_fallback, 3 - granted.min(3), "{stats:?}");
    let (_, free_after) = hugepage_counts().expect("counts");
    assert_eq!(
        free_before - free_after,
        granted.min(3) as u64,
        "touched hugetlb chunks use the kernel's reserved pages"
    );
    give_back(&pool, chunks);
    drop(pool);
    let (_, free_dropped) = hugepage_counts().expect("counts");
    assert_eq!(
        free_dropped, free_before,
        "dropping the pool unmaps its chunks"
    );
}
