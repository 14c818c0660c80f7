//! Per-core journal rings on the runtime: two reactors, pinned to two cores,
//! each owning one forward ring (`volume.writer(i)`) and appending to it
//! concurrently through its own device queue, while the sync worker merges
//! the rings by seq in the background. Map nodes come from the hugepage pool.
//!
//! What is asserted:
//!
//! 1. **Merge order.** Every acknowledged write is logged per ring as
//!    (seq, lba, data). The logs merged by seq are the reference model; the
//!    volume read back at `At::Now` and at every listed point (before and
//!    after a final sync) must equal the model applied up to that seq — so
//!    for every block the write with the higher seq wins, whichever ring
//!    carried it.
//! 2. **No lock on the write path.** Every `Mutex`/`RwLock` in `device` and
//!    `engine` is a [`rewind::lock_audit`] type that counts acquisitions per
//!    thread. Each reactor reads its own thread's count around its whole
//!    append phase (submit, poll, batching, index publication, completion)
//!    and it must stay at **zero**, on the RAM device and on an O_DIRECT file
//!    (io_uring backend) alike. A wrapping device queue counts the reactor's
//!    device requests, so a zero is known to cover real I/O.
//!
//! Not covered by the count: locks inside the standard or C library (the
//! global allocator; the engine allocates per batch in `RingWriter::pump`/`issue`).

use rewind::device::ram::RamDevice;
use rewind::device::uring::{FileDevice, FileOptions};
use rewind::device::{
    AlignedBuf, Device, DeviceError, DeviceInfo, DeviceQueue, IoCompletion, IoRequest, QueueFull,
};
use rewind::engine::{
    At, FormatOptions, Geometry, RingWriter, SyncPolicy, Volume, VolumeConfig, WriteCompletion,
};
use rewind::lock_audit::acquisitions_on_this_thread;
use rewind::runtime::cores::available_cores;
use rewind::runtime::hugepage::{HugepagePool, HugepageUse};
use rewind::runtime::{Message, Poller, Progress, ReactorConfig, ReactorCtx, ReactorGroup};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BS: usize = 4096;
const BLOCKS: u64 = 32;
const WRITES_PER_RING: u64 = 600;
const APPEND_TIME: Duration = Duration::from_secs(3);
const IN_FLIGHT: usize = 8;

thread_local! {
    /// Device requests submitted by this thread through a [`CountingDevice`] queue.
    static SUBMITS: Cell<u64> = const { Cell::new(0) };
}

/// Wraps a device; its queues count submissions on the submitting thread.
struct CountingDevice(Arc<dyn Device>);

struct CountingQueue(Box<dyn DeviceQueue>);

impl Device for CountingDevice {
    fn info(&self) -> DeviceInfo {
        self.0.info()
    }
    fn queue(&self, depth: u32) -> Result<Box<dyn DeviceQueue>, DeviceError> {
        Ok(Box::new(CountingQueue(self.0.queue(depth)?)))
    }
    fn describe(&self) -> String {
        format!("counting {}", self.0.describe())
    }
}

impl DeviceQueue for CountingQueue {
    unsafe fn submit(&mut self, request: IoRequest) -> Result<(), QueueFull> {
        // SAFETY: forwarded unchanged; the caller keeps the contract.
        let result = unsafe { self.0.submit(request) };
        if result.is_ok() {
            SUBMITS.with(|s| s.set(s.get() + 1));
        }
        result
    }
    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        self.0.poll(out)
    }
    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        self.0.wait(out)
    }
    fn in_flight(&self) -> usize {
        self.0.in_flight()
    }
}

/// What one reactor reports when its appending is over.
#[derive(Debug)]
struct RingReport {
    ring: u16,
    core: usize,
    /// (seq, lba, data) of every acknowledged write, in completion order.
    log: Vec<(u64, u64, Vec<u8>)>,
    errors: Vec<String>,
    locks: u64,
    submits: u64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Appends random writes to its ring for a bounded time or count.
struct Appender {
    writer: Option<RingWriter>,
    rng: Rng,
    issued: u64,
    deadline: Instant,
    in_flight: HashMap<u64, (u64, Vec<u8>)>,
    completions: Vec<WriteCompletion>,
    log: Vec<(u64, u64, Vec<u8>)>,
    errors: Vec<String>,
    /// Lock and submit counts of this thread when appending began.
    start: Option<(u64, u64)>,
    report: mpsc::Sender<RingReport>,
}

/// A write's data: every block starts with (ring << 32 | n) and its index.
fn pattern(ring: u16, n: u64, blocks: u64) -> Vec<u8> {
    let mut v = vec![(u64::from(ring) * 97 + n) as u8; blocks as usize * BS];
    for b in 0..blocks as usize {
        v[b * BS..b * BS + 8].copy_from_slice(&(u64::from(ring) << 32 | n).to_le_bytes());
        v[b * BS + 8..b * BS + 16].copy_from_slice(&(b as u64).to_le_bytes());
    }
    v
}

impl Poller for Appender {
    fn poll(&mut self, ctx: &mut ReactorCtx) -> Progress {
        let Some(writer) = self.writer.as_mut() else {
            return Progress::Done;
        };
        let start = *self
            .start
            .get_or_insert_with(|| (acquisitions_on_this_thread(), SUBMITS.with(Cell::get)));
        let ring = writer.ring();
        let mut progress = Progress::Idle;
        let appending = Instant::now() < self.deadline && self.issued < WRITES_PER_RING;
        while appending && self.in_flight.len() < IN_FLIGHT && self.issued < WRITES_PER_RING {
            let blocks = 1 + self.rng.next() % 2;
            let lba = self.rng.next() % (BLOCKS - blocks + 1);
            let n = self.issued;
            let data = pattern(ring, n, blocks);
            match writer.submit_write(lba, AlignedBuf::from_slice(&data), n) {
                Ok(()) => {
                    self.in_flight.insert(n, (lba, data));
                    self.issued += 1;
                    progress = Progress::Busy;
                }
                Err((e, _)) => {
                    self.errors.push(format!("submit: {e}"));
                    break;
                }
            }
        }
        self.completions.clear();
        if writer.poll(&mut self.completions) > 0 {
            progress = Progress::Busy;
        }
        for c in self.completions.drain(..) {
            let Some((lba, data)) = self.in_flight.remove(&c.tag) else {
                self.errors
                    .push(format!("completion for unknown tag {}", c.tag));
                continue;
            };
            match c.result {
                Ok(seq) => self.log.push((seq, lba, data)),
                Err(e) => self.errors.push(format!("write {}: {e}", c.tag)),
            }
        }
        let finished = !appending || !self.errors.is_empty();
        if finished && self.in_flight.is_empty() {
            let locks = acquisitions_on_this_thread() - start.0;
            let submits = SUBMITS.with(Cell::get) - start.1;
            let _ = self.report.send(RingReport {
                ring,
                core: ctx.core(),
                log: std::mem::take(&mut self.log),
                errors: std::mem::take(&mut self.errors),
                locks,
                submits,
            });
            // The writer is dropped here, on its reactor, after the count.
            self.writer = None;
            return Progress::Done;
        }
        progress
    }
}

fn geometry() -> Geometry {
    Geometry {
        block_size: BS as u32,
        volume_blocks: BLOCKS,
        rings: 2,
        ring_desc_blocks: 64,
        ring_data_blocks: 256,
        backward_desc_blocks: 256,
        backward_data_blocks: 2048,
    }
}

fn config(chunks: Arc<HugepagePool>) -> VolumeConfig {
    VolumeConfig {
        // Fill-triggered syncs run while the reactors append.
        sync: SyncPolicy {
            fill_percent: 50,
            interval: None,
            marker_interval: None,
        },
        chunks,
        stable_wait: Duration::from_secs(10),
        ..Default::default()
    }
}

/// The model: the volume after every logged write with seq <= `seq`, applied in seq order.
struct Model {
    writes: Vec<(u64, u64, Vec<u8>)>,
}

impl Model {
    fn image_at(&self, seq: u64) -> Vec<u8> {
        let mut image = vec![0u8; BLOCKS as usize * BS];
        for (_, lba, data) in self.writes.iter().take_while(|(s, _, _)| *s <= seq) {
            let at = *lba as usize * BS;
            image[at..at + data.len()].copy_from_slice(data);
        }
        image
    }
}

fn check_points(volume: &Volume, model: &Model, when: &str) -> usize {
    let points = volume.points();
    assert!(!points.is_empty());
    for point in &points {
        let (served, bytes) = volume
            .read(0, BLOCKS, &At::Seq(point.seq))
            .unwrap_or_else(|e| panic!("{when}: read at {}: {e}", point.seq));
        if served.seq != point.seq {
            // A background sync may coalesce a forward point into a
            // generation between listing and reading: then it is no longer
            // listed, and the older point that served the read must match.
            assert!(
                served.seq < point.seq && !volume.points().iter().any(|p| p.seq == point.seq),
                "{when}: listed point {} served by {} while still listed",
                point.seq,
                served.seq
            );
        }
        assert!(
            bytes == model.image_at(served.seq),
            "{when}: volume at seq {} ({:?}) differs from the merged model",
            served.seq,
            point.kind
        );
    }
    let (_, now) = volume.read(0, BLOCKS, &At::Now).expect("read now");
    assert!(
        now == model.image_at(u64::MAX),
        "{when}: At::Now differs from the model"
    );
    points.len()
}

/// Two reactors append concurrently; returns their reports and the model checks.
fn two_reactors_append(device: Arc<dyn Device>) -> Vec<RingReport> {
    let mut cores = available_cores().expect("affinity");
    assert!(
        cores.len() >= 2,
        "this test needs two cores to run two reactors concurrently; available: {cores:?}"
    );
    cores.truncate(2);
    let chunks = Arc::new(HugepagePool::new(512, HugepageUse::Prefer));
    let volume = Volume::format(
        Arc::new(CountingDevice(device)),
        &geometry(),
        &FormatOptions::default(),
        config(chunks.clone()),
    )
    .expect("format");
    let group =
        ReactorGroup::start(&ReactorConfig::on_cores(cores.clone()), |_| Ok(())).expect("reactors");
    let (report_tx, reports) = mpsc::channel();
    let deadline = Instant::now() + APPEND_TIME;
    for ring in 0..2u16 {
        let writer = volume.writer(ring).expect("writer");
        let report = report_tx.clone();
        group
            .send(
                usize::from(ring),
                Message::run(move |ctx| {
                    ctx.add_poller(Box::new(Appender {
                        writer: Some(writer),
                        rng: Rng(u64::from(ring) + 11),
                        issued: 0,
                        deadline,
                        in_flight: HashMap::new(),
                        completions: Vec::with_capacity(IN_FLIGHT),
                        log: Vec::new(),
                        errors: Vec::new(),
                        start: None,
                        report,
                    }))
                }),
            )
            .expect("send writer");
    }
    let mut reports: Vec<RingReport> = (0..2)
        .map(|_| {
            reports
                .recv_timeout(APPEND_TIME + Duration::from_secs(30))
                .expect("ring report")
        })
        .collect();
    group.stop().expect("stop reactors");
    reports.sort_by_key(|r| r.ring);

    for r in &reports {
        assert!(r.errors.is_empty(), "ring {}: {:?}", r.ring, r.errors);
        assert_eq!(r.core, cores[usize::from(r.ring)]);
        assert!(!r.log.is_empty(), "ring {} acknowledged nothing", r.ring);
        assert!(
            r.log.windows(2).all(|w| w[0].0 < w[1].0),
            "ring {} completed out of seq order",
            r.ring
        );
        assert!(
            r.submits > r.log.len() as u64,
            "data and descriptor writes counted"
        );
    }
    // Merge the per-ring logs by seq: the reference model.
    let mut writes: Vec<(u64, u64, Vec<u8>)> =
        reports.iter().flat_map(|r| r.log.iter().cloned()).collect();
    writes.sort_by_key(|w| w.0);
    assert!(
        writes.windows(2).all(|w| w[0].0 < w[1].0),
        "seqs are unique across rings"
    );
    let interleaved = writes.windows(2).filter(|w| w[0].2[4] != w[1].2[4]).count();
    eprintln!(
        "rings: {} + {} writes, ring switches in seq order: {interleaved}, chunks: {:?}",
        reports[0].log.len(),
        reports[1].log.len(),
        chunks.stats()
    );
    assert!(
        interleaved > 0,
        "the two rings' seqs interleave (they ran concurrently)"
    );
    let model = Model { writes };
    let before = check_points(&volume, &model, "before the final sync");
    volume.sync_now().expect("sync");
    let after = check_points(&volume, &model, "after the final sync");
    eprintln!("points checked: {before} before, {after} after the final sync");
    volume.close().expect("close");
    let stats = chunks.stats();
    assert!(
        stats.chunks_hugepage + stats.chunks_fallback > 0,
        "map nodes came from the hugepage pool"
    );
    reports
}

#[test]
fn rings_on_ram_take_no_lock() {
    let ram = RamDevice::new(64 << 20, BS as u32).expect("ram");
    assert_no_lock("RAM", two_reactors_append(ram));
}

/// Every ring submitted device requests and took no lock doing it.
fn assert_no_lock(device: &str, reports: Vec<RingReport>) {
    for r in reports {
        eprintln!(
            "{device} ring {}: {} locks, {} device requests",
            r.ring, r.locks, r.submits
        );
        assert!(r.submits > 0, "ring {} submitted device requests", r.ring);
        assert_eq!(r.locks, 0, "ring {} took a lock while appending", r.ring);
    }
}

#[test]
fn rings_on_an_o_direct_file_take_no_lock() {
    let dir = tempfile::Builder::new()
        .prefix("rewind-test")
        .tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let device = FileDevice::open(
        &dir.path().join("volume.img"),
        FileOptions {
            create_size: Some(64 << 20),
            direct: true,
            ..Default::default()
        },
    )
    .expect("O_DIRECT file");
    assert_no_lock("file", two_reactors_append(device));
}
