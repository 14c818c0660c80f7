//! Forward-journal append throughput and sync throughput, on the RAM device
//! and on a file through io_uring with O_DIRECT (under /var/tmp, or
//! `REWIND_BENCH_DIR`).
//!
//! - `engine_journal/append/*`: 4 KiB and 64 KiB writes through
//!   `RingWriter::submit_write`, keeping 32 (or 128) in flight and polling in a
//!   loop the way a reactor core would; one more case uses the geometry of
//!   `Geometry::for_volume` instead of the sized rings. Writes cycle over a
//!   16 MiB region, so each sync the worker runs meanwhile (fill trigger 90%)
//!   moves at most 16 MiB. Criterion reports bytes/s; appends/s, syncs during
//!   the measurement, the highest forward-ring fill seen and the longest stalls
//!   are printed (eprintln).
//! - `engine_journal/sync/*`: MiB/s of net change applied by one `sync_now()`
//!   after 64 MiB of distinct blocks were written (the writes are not timed).

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use rewind::device::ram::RamDevice;
use rewind::device::uring::{FileDevice, FileOptions};
use rewind::device::{AlignedBuf, Device};
use rewind::engine::geometry::Layout;
use rewind::engine::{
    Event, FormatOptions, Geometry, Retention, RingWriter, SyncPolicy, Volume, VolumeConfig,
    WriteCompletion,
};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BS: u64 = 4096;
const MIB: u64 = 1 << 20;

/// 1 under `cargo bench`; under `cargo test --benches` (every benchmark run
/// once, a smoke test) devices and transfers shrink by this factor.
fn shrink() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        16
    }
}

/// Where a benchmark volume lives.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Ram,
    File,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Ram => "ram",
            Backend::File => "file_uring_direct",
        }
    }
}

/// A volume and, for files, the path to remove afterwards.
struct Bench {
    volume: Volume,
    path: Option<PathBuf>,
    events: Receiver<Event>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn open(backend: Backend, geometry: &Geometry, retention: Retention, tag: &str) -> Bench {
    let layout = Layout::new(geometry).expect("layout");
    let (device, path): (Arc<dyn Device>, Option<PathBuf>) = match backend {
        Backend::Ram => {
            let dev = RamDevice::new(layout.end, 4096).expect("ram");
            prefault(&dev, layout.end);
            (dev, None)
        }
        Backend::File => {
            let dir = std::env::var_os("REWIND_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/tmp"));
            let path = dir.join(format!("rewind-bench-{tag}-{}.img", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let dev = FileDevice::open(
                &path,
                FileOptions {
                    create_size: Some(layout.end),
                    direct: true,
                    ..Default::default()
                },
            )
            .expect("file device (io_uring, O_DIRECT)");
            (dev, Some(path))
        }
    };
    let config = VolumeConfig {
        sync: SyncPolicy {
            fill_percent: 90,
            interval: None,
            marker_interval: None,
        },
        retention,
        ..VolumeConfig::default()
    };
    // A new sparse file and a new RAM device both read zeroes.
    let volume = Volume::format(
        device,
        geometry,
        &FormatOptions { zero_mirror: false },
        config,
    )
    .expect("format");
    let events = volume.subscribe();
    Bench {
        volume,
        path,
        events,
    }
}

/// Touches every page of a RAM device (with zeroes, which it reads anyway), so
/// first-touch page faults of the anonymous mapping stay out of the timings.
fn prefault(dev: &RamDevice, size: u64) {
    let zeroes = vec![0u8; 8 << 20];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(zeroes.len() as u64) as usize;
        dev.write_bytes(at, &zeroes[..n]);
        at += n as u64;
    }
}

/// Syncs reported since the last call.
fn syncs(events: &Receiver<Event>) -> (u64, u64) {
    let (mut n, mut blocks) = (0, 0);
    while let Ok(e) = events.try_recv() {
        if let Event::Synced { changed_blocks, .. } = e {
            n += 1;
            blocks += changed_blocks;
        }
    }
    (n, blocks)
}

/// Highest fill (percent of descriptor or data area) of writer ring 0.
fn ring_fill(volume: &Volume) -> u64 {
    let s = volume.stats();
    let (d, a) = s.rings[0];
    (d.used_blocks * 100 / d.capacity_blocks).max(a.used_blocks * 100 / a.capacity_blocks)
}

/// A reactor-style submitter: keeps `depth` writes in flight on one ring.
struct Pump {
    ring: RingWriter,
    free: Vec<AlignedBuf>,
    out: Vec<WriteCompletion>,
    in_flight: usize,
    depth: usize,
    next_tag: u64,
    /// Writes submitted over the pump's life.
    submitted: u64,
    /// Next lba, cycling over `region` blocks from `base`.
    at: u64,
    base: u64,
    region: u64,
    write_blocks: u64,
    max_fill: u64,
    /// Longest single `poll()` call (work done inline on the reactor core).
    max_poll: Duration,
    /// Longest time without any completion while writes were outstanding.
    max_gap: Duration,
}

impl Pump {
    fn new(ring: RingWriter, write_bytes: usize, depth: usize, base: u64, region: u64) -> Pump {
        let free = (0..depth)
            .map(|i| {
                let mut b = AlignedBuf::zeroed(write_bytes);
                b.fill(0x40 + i as u8);
                b
            })
            .collect();
        Pump {
            ring,
            free,
            out: Vec::with_capacity(depth),
            in_flight: 0,
            depth,
            next_tag: 0,
            submitted: 0,
            at: 0,
            base,
            region,
            write_blocks: write_bytes as u64 / BS,
            max_fill: 0,
            max_poll: Duration::ZERO,
            max_gap: Duration::ZERO,
        }
    }

    /// Issues `count` writes (keeping `depth` in flight) and waits for all of them.
    fn run(&mut self, count: u64, volume: Option<&Volume>) {
        let (mut submitted, mut completed) = (0u64, 0u64);
        let mut last_completion = Instant::now();
        while completed < count {
            while submitted < count && self.in_flight < self.depth {
                let buf = self.free.pop().expect("a free buffer");
                let lba = self.base + self.at;
                self.at = (self.at + self.write_blocks) % self.region;
                self.next_tag += 1;
                if let Err((e, _)) = self.ring.submit_write(lba, buf, self.next_tag) {
                    panic!("submit_write: {e}");
                }
                self.in_flight += 1;
                submitted += 1;
                self.submitted += 1;
                if let Some(v) = volume {
                    if (self.submitted * self.write_blocks).is_multiple_of(16 * MIB / BS) {
                        self.max_fill = self.max_fill.max(ring_fill(v));
                    }
                }
            }
            let before = Instant::now();
            let n = self.ring.poll(&mut self.out);
            let now = Instant::now();
            self.max_poll = self.max_poll.max(now - before);
            if n == 0 {
                std::hint::spin_loop();
            } else {
                self.max_gap = self.max_gap.max(now - last_completion);
                last_completion = now;
            }
            for c in self.out.drain(..) {
                c.result.expect("write");
                self.free.push(c.buf.expect("the buffer comes back"));
                self.in_flight -= 1;
                completed += 1;
            }
        }
    }
}

/// Bytes written by the untimed probe that measures descriptor blocks per
/// write (well below the sync trigger).
const PROBE_BYTES: u64 = 8 * MIB;

/// 16 MiB region the append benchmarks cycle over.
fn append_region_blocks() -> u64 {
    16 * MIB / BS / shrink()
}

fn append_geometry() -> Geometry {
    // One descriptor block per batch; with 32 in flight every write is its own
    // batch, so the descriptor area must hold as many blocks as the data area.
    // 512 MiB rings: the 10% above the sync trigger must absorb the writes that
    // arrive while a sync runs.
    Geometry {
        block_size: BS as u32,
        volume_blocks: 256 * MIB / BS / shrink(),
        rings: 1,
        ring_desc_blocks: 512 * MIB / BS / shrink(),
        ring_data_blocks: 512 * MIB / BS / shrink(),
        // A sync step's undo budget is half the backward journal, counted in
        // gross record blocks and extents (not net change): 1 GiB of data and
        // 16 MiB of records keep a 90%-full 512 MiB ring (118k 4 KiB records)
        // in one step, one 16 MiB generation per sync.
        backward_desc_blocks: 16 * MIB / BS / shrink(),
        backward_data_blocks: 1024 * MIB / BS / shrink(),
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_journal/append");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(20);
    // The last case uses `Geometry::for_volume` (256 MiB, one ring) instead of
    // the sized rings: its descriptor area is 260 blocks for 8192 data blocks.
    let sized = append_geometry();
    let default = Geometry::for_volume(BS as u32, 256 * MIB / shrink(), 1).expect("geometry");
    let cases = [
        (Backend::Ram, 4096usize, 32usize, &sized, ""),
        (Backend::Ram, 64 << 10, 32, &sized, ""),
        (Backend::Ram, 4096, 128, &sized, ""),
        (Backend::File, 4096, 32, &sized, ""),
        (Backend::File, 64 << 10, 32, &sized, ""),
        (Backend::File, 4096, 128, &sized, ""),
        (Backend::Ram, 4096, 32, &default, "_for_volume_geometry"),
    ];
    for (backend, write_bytes, depth, geometry, suffix) in cases {
        let b = open(
            backend,
            geometry,
            Retention {
                keep_last: Some(4),
                ..Retention::default()
            },
            "append",
        );
        let ring = b.volume.writer(0).expect("writer");
        let mut pump = Pump::new(ring, write_bytes, depth, 0, append_region_blocks());
        let name = format!("{}K_qd{depth}{suffix}", write_bytes >> 10);
        group.throughput(Throughput::Bytes(write_bytes as u64));
        // Untimed probe on the fresh ring: descriptor and data blocks per write.
        let probe_writes = (PROBE_BYTES / write_bytes as u64).min(geometry.ring_desc_blocks / 4);
        let before = b.volume.stats().rings[0];
        pump.run(probe_writes, None);
        let after = b.volume.stats().rings[0];
        let desc_per_write =
            (after.0.used_blocks - before.0.used_blocks) as f64 / probe_writes as f64;
        let data_per_write =
            (after.1.used_blocks - before.1.used_blocks) as f64 / probe_writes as f64;
        let _ = syncs(&b.events);
        pump.max_poll = Duration::ZERO;
        pump.max_gap = Duration::ZERO;
        let mut total = (0u64, Duration::ZERO);
        group.bench_function(BenchmarkId::new(backend.name(), &name), |bn| {
            bn.iter_custom(|iters| {
                let t = Instant::now();
                pump.run(iters, Some(&b.volume));
                let took = t.elapsed();
                total.0 += iters;
                total.1 += took;
                took
            })
        });
        let (n_syncs, synced_blocks) = syncs(&b.events);
        let secs = total.1.as_secs_f64();
        eprintln!(
                "append {}/{name}: {} appends in {secs:.2} s timed => {:.0} appends/s, {:.1} MiB/s; \
                 per write {desc_per_write:.3} descriptor + {data_per_write:.0} data blocks; \
                 syncs during warm-up + measurement: {n_syncs} moving {:.1} MiB of net change; \
                 highest ring fill seen {}%; longest poll() {:.2} ms; longest wait for a completion {:.2} ms; \
                 generations at the end {}",
                backend.name(),
                total.0,
                total.0 as f64 / secs,
                total.0 as f64 * write_bytes as f64 / secs / MIB as f64,
                synced_blocks as f64 * BS as f64 / MIB as f64,
                pump.max_fill,
                pump.max_poll.as_secs_f64() * 1e3,
                pump.max_gap.as_secs_f64() * 1e3,
                b.volume.stats().generations,
            );
        drop(pump);
        drop(b);
    }
    group.finish();
}

/// Net change per sync: 64 MiB.
fn sync_bytes() -> u64 {
    64 * MIB / shrink()
}

fn sync_geometry() -> Geometry {
    Geometry {
        block_size: BS as u32,
        volume_blocks: 512 * MIB / BS / shrink(),
        rings: 1,
        ring_desc_blocks: 128 * MIB / BS / shrink(),
        ring_data_blocks: 128 * MIB / BS / shrink(),
        backward_desc_blocks: 1024,
        // Half of it (one sync step's budget) holds one 64 MiB sync.
        backward_data_blocks: 256 * MIB / BS / shrink(),
    }
}

fn sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_journal/sync");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(sync_bytes()));
    for backend in [Backend::Ram, Backend::File] {
        for write_bytes in [4096usize, 64 << 10] {
            // keep_last 2: the worker expires the oldest generation right after
            // each sync, while the next 64 MiB are being written (untimed).
            let b = open(
                backend,
                &sync_geometry(),
                Retention {
                    keep_last: Some(2),
                    ..Retention::default()
                },
                "sync",
            );
            let ring = b.volume.writer(0).expect("writer");
            let region = sync_bytes() / BS;
            let mut pump = Pump::new(ring, write_bytes, 32, 0, region);
            let writes = sync_bytes() / write_bytes as u64;
            let mut round = 0u64;
            let mut timed = (0u64, Duration::ZERO);
            group.bench_function(
                BenchmarkId::new(
                    backend.name(),
                    format!("{}MiB_as_{}K_writes", sync_bytes() / MIB, write_bytes >> 10),
                ),
                |bn| {
                    bn.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            // A different 64 MiB of the volume each round: all distinct blocks.
                            pump.base = (round % 8) * region;
                            pump.at = 0;
                            round += 1;
                            pump.run(writes, None);
                            let t = Instant::now();
                            let r = b.volume.sync_now().expect("sync");
                            spent += t.elapsed();
                            assert_eq!(r.changed_blocks, region, "one sync moves all 64 MiB");
                        }
                        timed.0 += iters;
                        timed.1 += spent;
                        spent
                    })
                },
            );
            eprintln!(
                "sync {}/{}K writes: {} syncs of {} MiB, {:.1} ms each, {:.1} MiB/s of net change",
                backend.name(),
                write_bytes >> 10,
                timed.0,
                sync_bytes() / MIB,
                timed.1.as_secs_f64() * 1e3 / timed.0 as f64,
                (timed.0 * sync_bytes()) as f64 / MIB as f64 / timed.1.as_secs_f64(),
            );
            drop(pump);
            drop(b);
        }
    }
    group.finish();
}

criterion_group!(benches, append, sync);
criterion_main!(benches);
