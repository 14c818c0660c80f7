//! What one 4 KiB transfer into the RAM device costs, against an ordinary
//! `copy_from_slice` of the same pattern in the same kind of memory: the
//! price the RAM stand-in puts on what a real device does by DMA.
//!
//! - `device_ram/write/*`: a 4 KiB write from one hot buffer to a random
//!   block of a 512 MiB resident device (the reactor's path for a host write);
//! - `device_ram/copy_to_random/*`: a device-internal copy from consecutive
//!   blocks to random ones (the sync worker writing forward data into the mirror);
//! - `device_ram/copy_to_sequential/*`: from random blocks to consecutive ones
//!   (the sync worker saving undo data).
//!
//! Each has a `device` case (the RAM queue) and a `memcpy` case (the same
//! offsets copied with `copy_from_slice` inside one resident mapping of the
//! same size and page kind: hugetlb when pages are reserved). Compare the two
//! within one run.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rewind::device::blocking::BlockingQueue;
use rewind::device::ram::RamDevice;
use rewind::device::{AlignedBuf, Device};

const BS: usize = 4096;

/// 1 under `cargo bench`; 64 under `cargo test --benches` (a smoke run).
fn shrink() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        64
    }
}

/// Deterministic block numbers below `blocks` (xorshift).
fn random_blocks(blocks: usize, count: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % blocks as u64) as usize
        })
        .collect()
}

/// A resident anonymous mapping: hugetlb pages when reserved, else ordinary
/// pages, populated at once (the RAM device's own choice, made here too).
struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize, hugetlb: bool) -> Mapping {
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | libc::MAP_POPULATE
            | if hugetlb { libc::MAP_HUGETLB } else { 0 };
        // SAFETY: an anonymous mapping at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED && hugetlb {
            // The device took the reserved pages: say so rather than compare
            // hugetlb against ordinary pages silently.
            eprintln!("device_ram: too few hugepages left for the memcpy reference; it uses ordinary pages (reserve twice the device)");
            return Mapping::new(len, false);
        }
        assert!(p != libc::MAP_FAILED, "mmap of {len} bytes");
        Mapping {
            base: p.cast(),
            len,
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, and
        // borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` came from one successful mmap.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The device under test and a reference mapping of the same size and kind.
struct Setup {
    queue: BlockingQueue,
    reference: Mapping,
    blocks: usize,
}

fn setup() -> Setup {
    let bytes = (512 << 20) / shrink();
    let device = RamDevice::new_resident(bytes as u64, BS as u32, true).expect("RAM device");
    let what = device.describe();
    eprintln!("device_ram: {what}");
    let queue = BlockingQueue::new(&*device, 64).expect("queue");
    let reference = Mapping::new(bytes, what.contains("hugepages"));
    Setup {
        queue,
        reference,
        blocks: bytes / BS,
    }
}

fn transfers(c: &mut Criterion) {
    let mut s = setup();
    let targets = random_blocks(s.blocks, 1 << 16);
    let hot = AlignedBuf::from_slice(&[0x5A; BS]);
    let mut group = c.benchmark_group("device_ram");
    group.throughput(Throughput::Bytes(BS as u64));
    let half = s.blocks / 2;

    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("write", "device"), |b| {
        b.iter(|| {
            let block = targets[i % targets.len()];
            i += 1;
            s.queue.write((block * BS) as u64, &hot).expect("write");
        })
    });
    group.bench_function(BenchmarkId::new("write", "memcpy"), |b| {
        b.iter(|| {
            let at = targets[i % targets.len()] * BS;
            i += 1;
            s.reference.bytes()[at..at + BS].copy_from_slice(&hot);
        })
    });

    // Sources in the lower half, targets in the upper half: never overlapping.
    let upper = |k: usize| half + targets[k % targets.len()] % half;
    let lower_seq = |k: usize| k % half;
    let lower_rand = |k: usize| targets[k % targets.len()] % half;
    let upper_seq = |k: usize| half + k % half;
    for (name, src, dst) in [
        (
            "copy_to_random",
            &lower_seq as &dyn Fn(usize) -> usize,
            &upper as &dyn Fn(usize) -> usize,
        ),
        ("copy_to_sequential", &lower_rand, &upper_seq),
    ] {
        group.bench_function(BenchmarkId::new(name, "device"), |b| {
            b.iter(|| {
                let (from, to) = (src(i), dst(i));
                i += 1;
                s.queue
                    .copy_many(&[((from * BS) as u64, (to * BS) as u64, BS as u32)])
                    .expect("copy");
            })
        });
        group.bench_function(BenchmarkId::new(name, "memcpy"), |b| {
            b.iter(|| {
                let (from, to) = (src(i) * BS, dst(i) * BS);
                i += 1;
                s.reference.bytes().copy_within(from..from + BS, to);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
