//! Versioned block map and snapshot cost against the number of retained
//! generations (10, 1,000, 100,000): DESIGN invariant 8 says lookups are never
//! linear in the number of versions.
//!
//! - `engine_map/lookup_*`: `VersionIndex::query` on an index shaped like the
//!   backward map (version = generation point): a hot block rewritten in every
//!   generation, and generations of 64 random 1-8 block extents over 2^24 blocks.
//! - `engine_map/snapshot_*`: inserting one more generation into an index
//!   holding N, and expiring the oldest (the window rolls, N stays N).
//! - `engine_volume/*`: the same through a `Volume` on a `RamDevice`: a read at
//!   an old point and one `sync_now()` after a small write, with N generations
//!   retained.
//!
//! Memory per retained extent is printed (eprintln) while the indexes are built.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rewind::device::ram::RamDevice;
use rewind::engine::backward::index::Generation;
use rewind::engine::map::arena::HeapChunks;
use rewind::engine::map::btree::BTree;
use rewind::engine::map::version_index::{canonical_nodes, VersionIndex, Want};
use rewind::engine::ondisk::generation::UndoExtent;
use rewind::engine::{At, FormatOptions, Geometry, Retention, SyncPolicy, Volume, VolumeConfig};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Retained generations measured (`cargo bench`); `cargo test --benches`
/// runs every benchmark once on small sizes instead (a smoke test).
fn sizes() -> [u64; 3] {
    if std::env::args().any(|a| a == "--bench") {
        [10, 1_000, 100_000]
    } else {
        [10, 30, 100]
    }
}
/// Volume size of the random shape, in blocks.
const RANDOM_BLOCKS: u64 = 1 << 24;
/// Extents per generation in the random shape (and in snapshot cost).
const EXTENTS_PER_GEN: usize = 64;
/// Probes per timed iteration of a lookup benchmark.
const PROBES: usize = 1024;
/// The hot block.
const HOT: u64 = 7;

/// xorshift64: deterministic, cheap.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The version (generation point) of generation `g`: points are seqs, with gaps.
fn version(g: u64) -> u64 {
    g * 5 + 1
}

/// One generation of the random shape: 64 extents of 1-8 blocks. Extents of one
/// generation never overlap (a generation's undo extents are net-change runs).
fn random_generation(rng: &mut Rng) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = Vec::with_capacity(EXTENTS_PER_GEN);
    while v.len() < EXTENTS_PER_GEN {
        let n = 1 + rng.below(8);
        let lba = rng.below(RANDOM_BLOCKS - n);
        if v.iter().all(|&(l, m)| lba + n <= l || l + m <= lba) {
            v.push((lba, n));
        }
    }
    v
}

/// An index holding generations `first..first + window.len()` of `window`.
struct Rolling {
    index: VersionIndex,
    /// Extents of each retained generation, oldest first.
    window: VecDeque<Vec<(u64, u64)>>,
    /// Generation number of the oldest retained generation.
    first: u64,
    rng: Rng,
    hot: bool,
    extents: usize,
}

impl Rolling {
    fn new(hot: bool, n: u64, chunks: Arc<HeapChunks>) -> Self {
        let mut r = Rolling {
            index: VersionIndex::new(chunks),
            window: VecDeque::new(),
            first: 0,
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ n),
            hot,
            extents: 0,
        };
        for _ in 0..n {
            let g = r.make();
            r.push(g);
        }
        r
    }

    fn make(&mut self) -> Vec<(u64, u64)> {
        if self.hot {
            vec![(HOT, 1)]
        } else {
            random_generation(&mut self.rng)
        }
    }

    fn push(&mut self, extents: Vec<(u64, u64)>) {
        let v = version(self.first + self.window.len() as u64);
        for (i, &(lba, n)) in extents.iter().enumerate() {
            self.index.insert(lba, n, v, 1000 * v + i as u64 * 8);
        }
        self.extents += extents.len();
        self.window.push_back(extents);
    }

    fn pop(&mut self) {
        let extents = self.window.pop_front().expect("a generation to expire");
        let v = version(self.first);
        for &(lba, n) in &extents {
            self.index.remove(lba, n, v);
        }
        self.extents -= extents.len();
        self.first += 1;
    }

    /// A version bound inside the retained window.
    fn some_version(&mut self) -> u64 {
        version(self.first + self.rng.below(self.window.len() as u64))
    }

    /// Lookup probes: (lba, version bound). Random shape: a block some
    /// retained generation wrote (so every probe finds something).
    fn probes(&mut self) -> Vec<(u64, u64)> {
        (0..PROBES)
            .map(|_| {
                let lba = if self.hot {
                    HOT
                } else {
                    let g = self.rng.below(self.window.len() as u64) as usize;
                    let e = self.rng.below(EXTENTS_PER_GEN as u64) as usize;
                    let (lba, n) = self.window[g][e];
                    lba + self.rng.below(n)
                };
                (lba, self.some_version())
            })
            .collect()
    }
}

/// A plain `BTree<u128, u64>` of random keys, for comparison.
struct Control {
    tree: BTree<u128, u64>,
    probes: Vec<u128>,
    rng: Rng,
}

impl Control {
    fn new(entries: usize, seed: u64) -> Control {
        let mut c = Control {
            tree: BTree::new(Arc::new(HeapChunks::new())),
            probes: Vec::with_capacity(PROBES),
            rng: Rng(0x5851_f42d_4c95_7f2d ^ seed),
        };
        let mut sample = Rng(c.rng.0);
        for i in 0..entries {
            let k = c.key();
            c.tree.insert(k, i as u64);
        }
        // Re-generate the same key sequence to pick probes that are present.
        let every = (entries / PROBES).max(1);
        for i in 0..entries {
            let k = (u128::from(sample.next()) << 64) | u128::from(sample.next());
            if i % every == 0 && c.probes.len() < PROBES {
                c.probes.push(k);
            }
        }
        // Small trees: probe each key several times.
        for i in 0..PROBES.saturating_sub(c.probes.len()) {
            let k = c.probes[i % entries];
            c.probes.push(k);
        }
        c
    }

    fn key(&mut self) -> u128 {
        (u128::from(self.rng.next()) << 64) | u128::from(self.rng.next())
    }
}

fn report_memory(shape: &str, n: u64, r: &Rolling) {
    let entries = r.index.entries();
    let bytes = r.index.memory_bytes();
    eprintln!(
        "memory {shape:>10} N={n:>6}: extents={} entries={} entries/extent={:.2} map_bytes={} bytes/entry={:.1} map_bytes/extent={:.1}",
        r.extents,
        entries,
        entries as f64 / r.extents as f64,
        bytes,
        bytes as f64 / entries as f64,
        bytes as f64 / r.extents as f64,
    );
}

/// Memory per entry and per extent with 64 KiB chunks, so the 2 MiB chunk
/// granularity of the default source does not swamp small indexes.
fn fine_memory() {
    for hot in [true, false] {
        let shape = if hot { "hot" } else { "random" };
        for n in sizes() {
            if !hot && n == sizes()[2] {
                continue; // 434 MB of 2 MiB chunks above: granularity is noise there
            }
            let r = Rolling::new(hot, n, Arc::new(HeapChunks::with_chunk_bytes(64 << 10)));
            report_memory(&format!("{shape}/64K"), n, &r);
        }
    }
}

fn map_benches(c: &mut Criterion) {
    fine_memory();
    for hot in [true, false] {
        let shape = if hot { "hot" } else { "random" };
        let mut lookup = c.benchmark_group(format!("engine_map/lookup_{shape}"));
        lookup.throughput(Throughput::Elements(PROBES as u64));
        lookup.warm_up_time(Duration::from_millis(500));
        lookup.measurement_time(Duration::from_secs(2));
        lookup.sample_size(30);
        let mut indexes = Vec::new();
        for n in sizes() {
            let t = Instant::now();
            let mut r = Rolling::new(hot, n, Arc::new(HeapChunks::new()));
            eprintln!(
                "built {shape} index N={n} in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            report_memory(shape, n, &r);
            let probes = r.probes();
            lookup.bench_with_input(BenchmarkId::new("oldest_from", n), &probes, |b, p| {
                b.iter(|| {
                    let mut hits = 0u64;
                    for &(lba, v) in p {
                        r.index
                            .query(lba, 1, Want::OldestFrom { min: v }, |c| hits += c.version);
                    }
                    black_box(hits)
                })
            });
            lookup.bench_with_input(BenchmarkId::new("newest_in", n), &probes, |b, p| {
                b.iter(|| {
                    let mut hits = 0u64;
                    for &(lba, v) in p {
                        r.index
                            .query(lba, 1, Want::NewestIn { above: 0, max: v }, |c| {
                                hits += c.version
                            });
                    }
                    black_box(hits)
                })
            });
            // Control: a plain B+-tree with as many (random) entries, searched
            // once per probe. A query makes a fixed number of such searches per
            // occupied level, so query/control is the per-query factor that must
            // not grow with N; what the control itself grows by is tree depth
            // and cache misses.
            let control = Control::new(r.index.entries(), n);
            lookup.bench_with_input(
                BenchmarkId::new("btree_control_search", n),
                &control.probes,
                |b, p| {
                    b.iter(|| {
                        p.iter()
                            .map(|k| control.tree.last_at_or_before(k).map_or(0, |(_, v)| v))
                            .sum::<u64>()
                    })
                },
            );
            indexes.push((n, r, control));
        }
        lookup.finish();

        // Snapshot cost: the window rolls by one generation per iteration (insert
        // the newest, expire the oldest); each benchmark times one half.
        let mut snap = c.benchmark_group(format!("engine_map/snapshot_{shape}"));
        snap.warm_up_time(Duration::from_millis(500));
        snap.measurement_time(Duration::from_secs(2));
        snap.sample_size(30);
        for (n, r, control) in &mut indexes {
            snap.bench_function(BenchmarkId::new("insert_generation", *n), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let g = r.make();
                        let t = Instant::now();
                        r.push(g);
                        spent += t.elapsed();
                        r.pop();
                    }
                    spent
                })
            });
            snap.bench_function(BenchmarkId::new("expire_oldest", *n), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let g = r.make();
                        r.push(g);
                        let t = Instant::now();
                        r.pop();
                        spent += t.elapsed();
                    }
                    spent
                })
            });
            assert_eq!(r.window.len() as u64, *n);
            // Control: as many random inserts into the plain tree as one
            // generation inserts map entries (removed again, untimed).
            let per_gen = (r.index.entries() / r.window.len()).max(1);
            eprintln!("snapshot {shape} N={n}: control inserts {per_gen} keys per iteration");
            snap.bench_function(BenchmarkId::new("btree_control_inserts", *n), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut keys = Vec::with_capacity(per_gen);
                    for _ in 0..iters {
                        keys.clear();
                        keys.extend((0..per_gen).map(|_| control.key()));
                        let t = Instant::now();
                        for k in &keys {
                            control.tree.insert(*k, 1);
                        }
                        spent += t.elapsed();
                        for k in &keys {
                            control.tree.remove(k);
                        }
                    }
                    spent
                })
            });
        }
        snap.finish();
        // Free the big indexes before the next shape is built.
        drop(indexes);
    }
}

// ---- through a Volume on a RamDevice ----

/// Volume blocks (4 KiB): 256 MiB.
const VOL_BLOCKS: u64 = 1 << 16;
/// The hot block of the volume benchmarks (rewritten before every sync).
const VOL_HOT: u64 = 0;
/// Random writes land at or above this block.
const VOL_RANDOM_FROM: u64 = 1024;

fn volume_geometry() -> Geometry {
    // Every sync step saves the hot block plus one random 1-4 block extent:
    // at most 2 undo runs (one 4 KiB record block) and 5 undo blocks. Room for
    // 100,000 generations plus slack, so nothing is ever forced out.
    let gens = sizes()[2] + 10_000;
    Geometry {
        block_size: 4096,
        volume_blocks: VOL_BLOCKS,
        rings: 1,
        ring_desc_blocks: 4096,
        ring_data_blocks: 8192,
        backward_desc_blocks: gens + 1024,
        backward_data_blocks: gens * 5 + 1024,
    }
}

struct Built {
    volume: Volume,
    ring: rewind::engine::RingWriter,
    rng: Rng,
    buf: Vec<u8>,
}

impl Built {
    fn new() -> Built {
        let g = volume_geometry();
        let layout = rewind::engine::geometry::Layout::new(&g).expect("layout");
        let device = RamDevice::new(layout.end, 4096).expect("ram device");
        let config = VolumeConfig {
            sync: SyncPolicy {
                fill_percent: 90,
                interval: None,
                marker_interval: None,
            },
            ..VolumeConfig::default()
        };
        let volume = Volume::format(device, &g, &FormatOptions { zero_mirror: false }, config)
            .expect("format");
        let ring = volume.writer(0).expect("writer");
        Built {
            volume,
            ring,
            rng: Rng(0x2545_f491_4f6c_dd1d),
            buf: vec![0x5a; 4 << 12],
        }
    }

    /// One small write round: the hot block and one random 1-4 block extent.
    fn write_round(&mut self) {
        self.buf[0] = self.buf[0].wrapping_add(1);
        self.ring
            .write(VOL_HOT, &self.buf[..4096])
            .expect("hot write");
        let n = 1 + self.rng.below(4);
        let lba = VOL_RANDOM_FROM + self.rng.below(VOL_BLOCKS - VOL_RANDOM_FROM - n);
        self.ring
            .write(lba, &self.buf[..(n as usize) << 12])
            .expect("random write");
    }

    /// Adds generations until `n` are retained; the first new one is
    /// followed by the bookmark `label`.
    fn grow_to(&mut self, n: u64, label: &str) {
        self.write_round();
        self.volume.mark(label).expect("bookmark");
        while self.volume.stats().generations < n {
            self.write_round();
            let r = self.volume.sync_now().expect("sync");
            assert!(r.expired.is_empty(), "the geometry must not force expiry");
        }
    }
}

fn report_volume_memory(n: u64, gens: &[Arc<Generation>], map_bytes: usize) {
    let extents: usize = gens.iter().map(|g| g.record.extents.len()).sum();
    let entries: usize = gens
        .iter()
        .flat_map(|g| g.record.extents.iter())
        .map(|x| canonical_nodes(x.lba, u64::from(x.nblocks)).count())
        .sum();
    // The in-memory generation record: the Arc'd struct, its extent vector, and
    // one BTreeMap<u64, Arc<Generation>> entry in each of the two twin copies
    // (key + pointer, ~2x for B-tree node slack).
    let per_gen = std::mem::size_of::<Generation>() + 16 + 2 * 2 * 16;
    let record_bytes: usize = gens
        .iter()
        .map(|g| per_gen + g.record.extents.capacity() * std::mem::size_of::<UndoExtent>())
        .sum();
    eprintln!(
        "size_of::<Generation>()={} size_of::<UndoExtent>()={}",
        std::mem::size_of::<Generation>(),
        std::mem::size_of::<UndoExtent>()
    );
    eprintln!(
        "volume memory N={n}: generations={} extents={extents} map_entries(computed)={entries} \
         entries/extent={:.2} backward_map_bytes(one copy)={map_bytes} map_bytes/extent(one copy)={:.1} \
         x2 twin copies={:.1} generation_record_bytes/extent={:.1} => total bytes/retained extent={:.1}",
        gens.len(),
        entries as f64 / extents as f64,
        map_bytes as f64 / extents as f64,
        2.0 * map_bytes as f64 / extents as f64,
        record_bytes as f64 / extents as f64,
        (2.0 * map_bytes as f64 + record_bytes as f64) / extents as f64,
    );
}

fn volume_benches(c: &mut Criterion) {
    let mut v = Built::new();
    for n in sizes() {
        let t = Instant::now();
        let before = v.volume.stats().generations;
        let label = format!("stage-{n}");
        v.grow_to(n, &label);
        let took = t.elapsed().as_secs_f64();
        eprintln!(
            "volume: grew from {before} to {n} generations in {took:.1} s ({:.1} us per generation)",
            took * 1e6 / (n - before).max(1) as f64
        );
        let gens = v.volume.generations();
        report_volume_memory(n, &gens, v.volume.stats().backward_map_bytes);
        let oldest = gens.first().expect("generations").point();
        let middle = gens[gens.len() / 2].point();
        let labelled = gens
            .iter()
            .position(|g| g.record.point_label.as_deref() == Some(label.as_str()))
            .expect("the stage bookmark is a retained generation point");
        eprintln!(
            "volume N={n}: bookmark {label:?} is generation {labelled} of {} (oldest first)",
            gens.len()
        );
        // A block some middle generation saved (one of its random extents).
        let cold = gens[gens.len() / 2]
            .record
            .extents
            .iter()
            .find(|x| x.lba >= VOL_RANDOM_FROM)
            .map_or(VOL_RANDOM_FROM, |x| x.lba);
        drop(gens);

        let mut group = c.benchmark_group(format!("engine_volume/N={n}"));
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.sample_size(30);
        for (name, at) in [
            ("resolve_seq_oldest", At::Seq(oldest.seq)),
            ("resolve_time_oldest", At::Time(oldest.time_ns)),
            ("resolve_time_middle", At::Time(middle.time_ns)),
            ("resolve_label_stage", At::Label(label.clone())),
        ] {
            group.bench_function(name, |b| b.iter(|| v.volume.resolve(&at).expect("resolve")));
        }
        for (name, lba, point) in [
            ("read_hot_at_oldest", VOL_HOT, oldest.seq),
            ("read_hot_at_middle", VOL_HOT, middle.seq),
            ("read_cold_at_oldest", cold, oldest.seq),
        ] {
            group.bench_function(name, |b| {
                b.iter(|| {
                    v.volume
                        .read(lba, 1, &At::Seq(point))
                        .expect("read at an old point")
                })
            });
        }
        // Steady state with N retained: keep_last = N expires the oldest
        // generation after each sync (the worker does it right after replying).
        v.volume
            .set_retention(Retention {
                keep_last: Some(n),
                ..Retention::default()
            })
            .expect("retention");
        group.bench_function("write_round_then_sync_now", |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    v.write_round();
                    v.volume.sync_now().expect("sync");
                }
                t.elapsed()
            })
        });
        group.bench_function("sync_now_only", |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    v.write_round();
                    let t = Instant::now();
                    v.volume.sync_now().expect("sync");
                    spent += t.elapsed();
                }
                spent
            })
        });
        group.finish();
        // The worker expires after replying: make sure the last one is done.
        v.volume.apply_retention().expect("retention");
        v.volume
            .set_retention(Retention::default())
            .expect("retention");
        let now = v.volume.stats().generations;
        assert!(now <= n, "retained {now} > {n}");
    }
}

criterion_group!(benches, map_benches, volume_benches);
criterion_main!(benches);
