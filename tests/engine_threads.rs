//! Several cores at once: two writer threads (one ring each, 16 requests in
//! flight), a reader thread reading at Now and at listed points, and the main
//! thread bookmarking and syncing, while the sync worker also syncs on its own
//! (small rings). At the end every read that happened during the run is checked
//! against the reference model built from all acknowledged writes: a read that
//! was served by point `s` must equal the volume after every write with seq <= s.

use rewind::device::ram::RamDevice;
use rewind::device::AlignedBuf;
use rewind::engine::{At, EngineError, FormatOptions, Geometry, SyncPolicy, Volume, VolumeConfig};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BS: usize = 4096;
const BLOCKS: u64 = 256;
const WRITES_PER_THREAD: u64 = 3000;

fn pattern(thread: u64, n: u64, count: u64) -> Vec<u8> {
    let mut v = vec![(thread * 31 + n) as u8; count as usize * BS];
    for b in 0..count as usize {
        v[b * BS..b * BS + 8].copy_from_slice(&(thread << 32 | n).to_le_bytes());
        v[b * BS + 8..b * BS + 16].copy_from_slice(&(b as u64).to_le_bytes());
    }
    v
}

/// A tiny deterministic PRNG per thread.
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

#[test]
fn writers_readers_and_syncs_on_several_threads() {
    let ram = RamDevice::new(64 << 20, BS as u32).unwrap();
    let geometry = Geometry {
        block_size: BS as u32,
        volume_blocks: BLOCKS,
        rings: 2,
        ring_desc_blocks: 64,
        ring_data_blocks: 256,
        backward_desc_blocks: 256,
        backward_data_blocks: 2048,
    };
    let config = VolumeConfig {
        sync: SyncPolicy {
            fill_percent: 50,
            interval: None,
            marker_interval: None,
        },
        ..Default::default()
    };
    let volume = Volume::format(ram, &geometry, &FormatOptions::default(), config).unwrap();
    let acked: Mutex<BTreeMap<u64, (u64, Vec<u8>)>> = Mutex::new(BTreeMap::new());
    let reads: Mutex<Vec<(u64, u64, Vec<u8>)>> = Mutex::new(Vec::new());
    let writers_done = AtomicBool::new(false);

    std::thread::scope(|s| {
        let writer_threads: Vec<_> = (0..2u64)
            .map(|t| {
                let (volume, acked) = (&volume, &acked);
                s.spawn(move || {
                    let mut w = volume.writer(t as u16).unwrap();
                    let mut rng = Rng(t + 1);
                    let mut inflight: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
                    let mut out = Vec::new();
                    let mut n = 0u64;
                    while n < WRITES_PER_THREAD || !inflight.is_empty() {
                        while n < WRITES_PER_THREAD && inflight.len() < 16 {
                            let count = 1 + rng.next() % 8;
                            let lba = rng.next() % (BLOCKS - count + 1);
                            let data = pattern(t, n, count);
                            w.submit_write(lba, AlignedBuf::from_slice(&data), n)
                                .map_err(|(e, _)| e)
                                .unwrap();
                            inflight.insert(n, (lba, data));
                            n += 1;
                        }
                        if w.poll(&mut out) == 0 {
                            std::thread::yield_now();
                        }
                        for c in out.drain(..) {
                            let seq = c.result.expect("write failed");
                            let (lba, data) = inflight.remove(&c.tag).unwrap();
                            acked.lock().unwrap().insert(seq, (lba, data));
                        }
                    }
                })
            })
            .collect();
        let reader = {
            let (volume, reads, done) = (&volume, &reads, &writers_done);
            s.spawn(move || {
                let mut r = volume.reader().unwrap();
                let mut rng = Rng(99);
                let mut count = 0;
                while !done.load(Ordering::Acquire) || count < 50 {
                    let lba = rng.next() % (BLOCKS - 16);
                    let at = if rng.next().is_multiple_of(2) {
                        At::Now
                    } else {
                        let points = r.points();
                        At::Seq(points[(rng.next() % points.len() as u64) as usize].seq)
                    };
                    match r.read(lba, 16, &at) {
                        Ok((served, bytes)) => {
                            // At Now the serving point is the newest stable one; acknowledged
                            // writes beyond it may show too, so only point reads are checked.
                            if at != At::Now {
                                reads.lock().unwrap().push((served.seq, lba, bytes));
                            }
                        }
                        Err(EngineError::BeforeRetention { .. } | EngineError::Expired(_)) => {}
                        Err(e) => panic!("read failed: {e}"),
                    }
                    count += 1;
                }
                count
            })
        };
        for i in 0..20 {
            std::thread::sleep(Duration::from_millis(5));
            if i % 3 == 0 {
                volume.mark(&format!("b{i}")).unwrap();
            } else {
                volume.sync_now().unwrap();
            }
        }
        for t in writer_threads {
            t.join().unwrap();
        }
        writers_done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() >= 50);
    });

    let acked = acked.into_inner().unwrap();
    assert_eq!(acked.len() as u64, 2 * WRITES_PER_THREAD);
    let at = |seq: u64| {
        let mut v = vec![0u8; BLOCKS as usize * BS];
        for (lba, d) in acked.range(..=seq).map(|(_, w)| w) {
            v[*lba as usize * BS..][..d.len()].copy_from_slice(d);
        }
        v
    };
    // Replay the model once, in seq order, checking each read when its point comes up.
    let mut reads = reads.into_inner().unwrap();
    assert!(reads.len() > 10, "the reader read at listed points");
    reads.sort_by_key(|r| r.0);
    let mut state = vec![0u8; BLOCKS as usize * BS];
    let mut writes = acked.iter().peekable();
    for (seq, lba, bytes) in &reads {
        while let Some((_, (wlba, data))) = writes.next_if(|(s, _)| *s <= seq) {
            state[*wlba as usize * BS..][..data.len()].copy_from_slice(data);
        }
        assert!(
            state[*lba as usize * BS..][..bytes.len()] == bytes[..],
            "read at point {seq} blocks {lba}+16 differs from the model"
        );
    }
    let (_, now) = volume.read(0, BLOCKS, &At::Now).unwrap();
    assert!(
        now == at(u64::MAX),
        "the live volume differs from the model"
    );
    for p in volume.points() {
        let (served, bytes) = volume.read(0, BLOCKS, &At::Seq(p.seq)).unwrap();
        assert!(
            bytes == at(served.seq),
            "point {} differs from the model",
            p.seq
        );
    }
    let stats = volume.stats();
    assert!(stats.generations > 0, "syncs happened: {stats:?}");
    volume.close().unwrap();
}
