//! Recovery of damaged volume images.
//!
//! Three small valid images are built once per process (512-byte blocks with
//! two writer rings, the same after 24 more syncs so journals have lapped and
//! wrapped, 4096-byte blocks with one ring): format, writes, a sync, a
//! bookmark, another sync, more writes, close. The uuid and every timestamp
//! are fixed, so the images, and so every crash this target finds, are the
//! same in every run. The fuzzer's input picks an image and a list of
//! mutations aimed at the metadata: superblocks, checkpoints, forward
//! descriptor blocks, backward generation records (plus data and anywhere).
//! A mutation can recompute a record's crc32c afterwards, so damage that a
//! checksum would catch can also be presented as a well-formed record.
//!
//! Property: `Volume::open` never panics; it either refuses the image with a
//! typed error or opens it, and then listing points, reading the live volume
//! and reading at every listed point return (errors are fine) without
//! panicking, and so does claiming every ring's writer. The sync worker
//! must not panic either (libFuzzer's panic hook aborts on any panic, caught
//! or not).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rewind::device::ram::RamDevice;
use rewind::device::Device;
use rewind::engine::geometry::Layout;
use rewind::engine::map::arena::HeapChunks;
use rewind::engine::ondisk::codec::seal;
use rewind::engine::ondisk::{forward_block, generation};
use rewind::engine::{At, Clock, FormatOptions, Geometry, SyncPolicy, Volume, VolumeConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

const SLOT: usize = 4096;
const SLOT_CRC_AT: usize = SLOT - 4;
const FORWARD_CRC_AT: usize = 60;
const GENERATION_CRC_AT: usize = 152;
const UUID: [u8; 16] = *b"rewind-fuzz-uuid";
const EPOCH_NS: u64 = 1_700_000_000_000_000_000;
/// Mutations applied per input, at most.
const MAX_MUTATIONS: usize = 24;
/// Listed points read back per opened image, at most.
const MAX_POINTS: usize = 64;

fn config() -> VolumeConfig {
    VolumeConfig {
        sync: SyncPolicy {
            fill_percent: 100,
            interval: None,
            marker_interval: None,
        },
        clock: Clock::Manual(Arc::new(AtomicU64::new(EPOCH_NS + 1_000_000_000))),
        // Small map chunks: a tiny volume needs little, and every open pays for them.
        chunks: Arc::new(HeapChunks::with_chunk_bytes(64 << 10)),
        ..Default::default()
    }
}

/// A valid image and where its regions are.
struct Pristine {
    bytes: Vec<u8>,
    layout: Layout,
    /// Every record the image holds.
    records: Vec<Record>,
}

/// Where one record (superblock, checkpoint, forward descriptor block,
/// backward generation record or WRAP block) sits, and its crc.
#[derive(Clone, Copy, Debug)]
struct Record {
    start: usize,
    len: usize,
    crc_at: usize,
}

impl Pristine {
    fn bs(&self) -> usize {
        self.layout.geometry.block_size as usize
    }
}

/// Block contents that name the write and the block.
fn pattern(tag: u8, nblocks: usize, bs: usize) -> Vec<u8> {
    let mut v = vec![tag; nblocks * bs];
    for (i, b) in v.chunks_mut(bs).enumerate() {
        b[0] = i as u8;
    }
    v
}

fn build(geometry: Geometry, aged: bool) -> Pristine {
    let bs = geometry.block_size as usize;
    let layout = Layout::new(&geometry).expect("fuzz geometry");
    let size = layout.end;
    let ram = RamDevice::new(size, geometry.block_size).expect("ram device");
    let clock = Arc::new(AtomicU64::new(EPOCH_NS));
    let tick = || clock.fetch_add(1_000, Ordering::SeqCst);
    let cfg = VolumeConfig {
        clock: Clock::Manual(Arc::clone(&clock)),
        ..config()
    };
    let volume = Volume::format(
        ram.clone() as Arc<dyn Device>,
        &geometry,
        &FormatOptions::default(),
        cfg,
    )
    .expect("format");
    let mut writers: Vec<_> = (0..geometry.rings)
        .map(|r| volume.writer(r).expect("writer"))
        .collect();
    let rings = writers.len();
    if aged {
        // Many syncs first: the rings and the backward journal lap (older
        // laps' blocks stay behind), generations expire for room, and
        // 20-extent generations take two blocks, so some meet the area's
        // end and leave a WRAP block.
        for round in 0..24u8 {
            let writes = if round % 3 == 0 {
                20
            } else {
                1 + usize::from(round % 2)
            };
            for i in 0..writes {
                tick();
                writers[i % rings]
                    .write(3 * i as u64, &pattern(round, 1, bs))
                    .expect("write");
            }
            volume.sync_now().expect("sync");
        }
    }
    tick();
    writers[0].write(1, &pattern(1, 3, bs)).expect("write");
    tick();
    writers[rings - 1]
        .write(4, &pattern(2, 2, bs))
        .expect("write");
    volume.sync_now().expect("sync");
    tick();
    writers[0].write(2, &pattern(3, 2, bs)).expect("write");
    tick();
    writers[0].write_zeroes(5, 1).expect("write zeroes");
    tick();
    volume.mark("before-upgrade").expect("bookmark");
    tick();
    writers[rings - 1]
        .write(0, &pattern(4, 1, bs))
        .expect("write");
    volume.sync_now().expect("sync");
    tick();
    writers[0].write(3, &pattern(5, 4, bs)).expect("write");
    tick();
    writers[rings - 1]
        .write(7, &pattern(6, 1, bs))
        .expect("write");
    tick();
    writers[0].flush().expect("flush");
    tick();
    writers[rings - 1]
        .write(1, &pattern(7, 1, bs))
        .expect("write");
    let old_uuid = volume.uuid();
    let points = volume.points();
    let live = volume
        .read(0, geometry.volume_blocks, &At::Now)
        .expect("read")
        .1;
    drop(writers);
    volume.close().expect("close");

    let mut bytes = ram.read_bytes(0, size as usize);
    let records = restamp_uuid(&mut bytes, &layout, &old_uuid);
    assert!(records.len() > 4, "the image holds journal records");

    // The restamped image must be the same volume.
    let device = RamDevice::from_bytes(&bytes, geometry.block_size).expect("ram device");
    let (volume, report) = Volume::open(device, config()).expect("pristine image opens");
    assert_eq!(volume.uuid(), UUID);
    assert!(report.torn_rings.is_empty(), "{report:?}");
    assert_eq!(
        volume.points(),
        points,
        "restamped image lists other points"
    );
    assert_eq!(
        volume
            .read(0, geometry.volume_blocks, &At::Now)
            .expect("read")
            .1,
        live
    );
    volume.close().expect("close");
    Pristine {
        bytes,
        layout,
        records,
    }
}

/// Replaces the random uuid `format` chose with [`UUID`] in every record
/// (and reseals it), so the image is the same in every run. Returns where
/// those records are.
fn restamp_uuid(bytes: &mut [u8], layout: &Layout, old: &[u8; 16]) -> Vec<Record> {
    let bs = layout.geometry.block_size as usize;
    let mut records = Vec::new();
    let mut stamp = |bytes: &mut [u8], start: usize, uuid_at: usize, len: usize, crc_at: usize| {
        let rec = &mut bytes[start..start + len];
        if rec[uuid_at..uuid_at + 16] == old[..] {
            rec[uuid_at..uuid_at + 16].copy_from_slice(&UUID);
            seal(rec, crc_at);
            records.push(Record { start, len, crc_at });
        }
    };
    for &at in layout.superblock.iter().chain(&layout.checkpoint) {
        stamp(bytes, at as usize, 24, SLOT, SLOT_CRC_AT);
    }
    for ring in &layout.rings {
        for b in 0..ring.desc_blocks {
            let at = (ring.desc_offset + b * bs as u64) as usize;
            if bytes[at..at + 4] == forward_block::MAGIC.to_le_bytes() {
                stamp(bytes, at, 24, bs, FORWARD_CRC_AT);
            }
        }
    }
    let cap = layout.geometry.backward_desc_blocks;
    for b in 0..cap {
        let at = layout.backward_desc_byte(b) as usize;
        let magic = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let blocks = if magic == generation::MAGIC {
            u64::from(u32::from_le_bytes(
                bytes[at + 88..at + 92].try_into().unwrap(),
            ))
        } else if magic == generation::WRAP_MAGIC {
            1
        } else {
            continue;
        };
        if (1..=cap - b).contains(&blocks) {
            stamp(bytes, at, 16, blocks as usize * bs, GENERATION_CRC_AT);
        }
    }
    records
}

fn images() -> &'static [Pristine; 3] {
    static IMAGES: OnceLock<[Pristine; 3]> = OnceLock::new();
    let small = Geometry {
        block_size: 512,
        volume_blocks: 64,
        rings: 2,
        ring_desc_blocks: 16,
        ring_data_blocks: 64,
        backward_desc_blocks: 16,
        backward_data_blocks: 128,
    };
    IMAGES.get_or_init(|| {
        [
            build(small.clone(), false),
            build(small, true),
            build(
                Geometry {
                    block_size: 4096,
                    volume_blocks: 16,
                    rings: 1,
                    ring_desc_blocks: 8,
                    ring_data_blocks: 16,
                    backward_desc_blocks: 8,
                    backward_data_blocks: 32,
                },
                false,
            ),
        ]
    })
}

/// Where a mutation lands; indexes wrap around the region's size.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Region {
    Superblock(bool),
    Checkpoint(bool),
    RingDesc {
        ring: u8,
        block: u16,
    },
    BackwardDesc {
        block: u16,
    },
    RingData {
        ring: u8,
        block: u16,
    },
    BackwardData {
        block: u16,
    },
    Mirror {
        block: u16,
    },
    Anywhere {
        offset: u32,
    },
    /// One of the records the pristine image holds (whole, even when it spans
    /// several blocks).
    Record(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Width {
    W1,
    W2,
    W4,
    W8,
}

/// A value for a field: the edges, and anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    Zero,
    One,
    /// The field's largest value minus this.
    BelowMax(u8),
    /// One bit set.
    Bit(u8),
    /// Add this to the field's current value (wrapping).
    Add(i8),
    Raw(u64),
}

/// What a mutation does to its region.
#[derive(Arbitrary, Debug)]
enum Change {
    /// Flip one bit.
    Flip { at: u16, bit: u8 },
    /// Overwrite one byte.
    Byte { at: u16, value: u8 },
    /// Overwrite a little-endian field (aligned to its width).
    Field { at: u16, width: Width, value: Value },
    /// Wipe the block or slot (a write that never happened).
    Zero,
    /// Copy another block or slot over it (a stale lap, a misdirected write).
    CopyFrom(Region),
    /// Only recompute the crc.
    Reseal,
}

/// One change to one region, then (when `reseal`) the crc of the record
/// there recomputed: superblock, checkpoint, forward block, backward record
/// or WRAP block.
#[derive(Arbitrary, Debug)]
struct Mutation {
    region: Region,
    change: Change,
    reseal: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    image: u8,
    mutations: Vec<Mutation>,
}

/// Byte range `(start, len)` of `region` in the image.
fn locate(p: &Pristine, region: Region) -> (usize, usize) {
    let l = &p.layout;
    let bs = p.bs();
    let ring = |r: u8| &l.rings[usize::from(r) % l.rings.len()];
    let (start, len) = match region {
        Region::Superblock(b) => (l.superblock[usize::from(b)], SLOT),
        Region::Checkpoint(b) => (l.checkpoint[usize::from(b)], SLOT),
        Region::RingDesc { ring: r, block } => {
            let rl = ring(r);
            (
                rl.desc_offset + u64::from(block) % rl.desc_blocks * bs as u64,
                bs,
            )
        }
        Region::RingData { ring: r, block } => {
            let rl = if ring(r).data_blocks > 0 {
                ring(r)
            } else {
                &l.rings[0]
            };
            (
                rl.data_offset + u64::from(block) % rl.data_blocks * bs as u64,
                bs,
            )
        }
        Region::BackwardDesc { block } => (l.backward_desc_byte(u64::from(block)), bs),
        Region::BackwardData { block } => (l.backward_data_byte(u64::from(block)), bs),
        Region::Mirror { block } => (l.mim_byte(u64::from(block) % l.geometry.volume_blocks), bs),
        Region::Record(i) => {
            let r = p.records[usize::from(i) % p.records.len()];
            return (r.start, r.len);
        }
        Region::Anywhere { offset } => {
            let at = u64::from(offset) % p.bytes.len() as u64;
            (at - at % bs as u64, bs)
        }
    };
    (start as usize, len)
}

fn apply(p: &Pristine, img: &mut [u8], m: &Mutation) {
    let (start, len) = locate(p, m.region);
    match m.change {
        Change::Flip { at, bit } => img[start + usize::from(at) % len] ^= 1 << (bit % 8),
        Change::Byte { at, value } => img[start + usize::from(at) % len] = value,
        Change::Field { at, width, value } => {
            let w = match width {
                Width::W1 => 1,
                Width::W2 => 2,
                Width::W4 => 4,
                Width::W8 => 8,
            };
            let at = usize::from(at) % len / w * w;
            let max = if w == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * w)) - 1
            };
            let field = &mut img[start + at..start + at + w];
            let mut current = [0u8; 8];
            current[..w].copy_from_slice(field);
            let current = u64::from_le_bytes(current);
            let v = match value {
                Value::Zero => 0,
                Value::One => 1,
                Value::BelowMax(d) => max - u64::from(d),
                Value::Bit(b) => 1 << (u32::from(b) % (8 * w as u32)),
                Value::Add(d) => current.wrapping_add(d as i64 as u64),
                Value::Raw(v) => v,
            } & max;
            field.copy_from_slice(&v.to_le_bytes()[..w]);
        }
        Change::Zero => img[start..start + len].fill(0),
        Change::CopyFrom(from) => {
            let (src, slen) = locate(p, from);
            img.copy_within(src..src + slen.min(len), start);
        }
        Change::Reseal => {}
    }
    if m.reseal || matches!(m.change, Change::Reseal) {
        reseal(p, img, m.region);
    }
}

fn reseal(p: &Pristine, img: &mut [u8], region: Region) {
    let (start, len) = locate(p, region);
    match region {
        Region::Superblock(_) | Region::Checkpoint(_) => {
            seal(&mut img[start..start + len], SLOT_CRC_AT)
        }
        Region::RingDesc { .. } => seal(&mut img[start..start + len], FORWARD_CRC_AT),
        Region::Record(i) => {
            let r = p.records[usize::from(i) % p.records.len()];
            seal(&mut img[r.start..r.start + r.len], r.crc_at);
        }
        Region::BackwardDesc { block } => {
            // A record spans the blocks its header announces (never past the
            // area's end); its one crc covers them all.
            let cap = p.layout.geometry.backward_desc_blocks;
            let left = cap - u64::from(block) % cap;
            let magic = u32::from_le_bytes(img[start..start + 4].try_into().unwrap());
            let blocks = if magic == generation::MAGIC {
                u64::from(u32::from_le_bytes(
                    img[start + 88..start + 92].try_into().unwrap(),
                ))
                .clamp(1, left)
            } else {
                1
            };
            seal(
                &mut img[start..start + blocks as usize * len],
                GENERATION_CRC_AT,
            );
        }
        _ => {}
    }
}

fuzz_target!(|input: Input| {
    let images = images();
    let p = &images[usize::from(input.image) % images.len()];
    let mut img = p.bytes.clone();
    for m in input.mutations.iter().take(MAX_MUTATIONS) {
        apply(p, &mut img, m);
    }
    let device = RamDevice::from_bytes(&img, p.layout.geometry.block_size).expect("ram device");
    let Ok((volume, _report)) = Volume::open(device, config()) else {
        return; // a typed refusal is fine
    };
    let blocks = volume.geometry().volume_blocks;
    let points = volume.points();
    let _ = volume.stats();
    let _ = volume.read(0, blocks, &At::Now);
    for point in points.iter().take(MAX_POINTS) {
        let _ = volume.read(0, blocks, &At::Seq(point.seq));
        let _ = volume.resolve(&At::Time(point.time_ns));
        if let Some(label) = &point.label {
            let _ = volume.read(0, blocks, &At::Label(label.clone()));
        }
    }
    // Claiming the writers builds their circular areas from what recovery found.
    let writers: Vec<_> = (0..volume.geometry().rings)
        .map(|ring| volume.writer(ring))
        .collect();
    drop(writers);
    let _ = volume.close();
});
