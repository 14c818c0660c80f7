//! The engine's API contract: every kind of bad input gets its typed error,
//! retention policies expire oldest first (and only as configured), points
//! resolve by seq, time and label, and a volume survives close and reopen on
//! RAM and on an O_DIRECT file.

use rewind::device::fault::{FaultConfig, FaultDevice};
use rewind::device::ram::RamDevice;
use rewind::device::uring::{FileDevice, FileOptions};
use rewind::device::{AlignedBuf, Device};
use rewind::engine::ondisk::codec;
use rewind::engine::{
    At, Clock, EngineError, Event, FormatOptions, Geometry, MarkerKind, PointKind, Retention,
    SyncPolicy, Volume, VolumeConfig,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BS: usize = 512;

fn geometry() -> Geometry {
    Geometry {
        block_size: BS as u32,
        volume_blocks: 64,
        rings: 2,
        ring_desc_blocks: 16,
        ring_data_blocks: 64,
        backward_desc_blocks: 32,
        backward_data_blocks: 128,
    }
}

fn quiet(clock: Clock) -> VolumeConfig {
    VolumeConfig {
        sync: SyncPolicy {
            fill_percent: 100,
            interval: None,
            marker_interval: None,
        },
        clock,
        stable_wait: Duration::from_secs(5),
        ..Default::default()
    }
}

fn ram_volume(config: VolumeConfig) -> (Arc<RamDevice>, Volume) {
    let ram = RamDevice::new(2 << 20, BS as u32).unwrap();
    let v = Volume::format(ram.clone(), &geometry(), &FormatOptions::default(), config).unwrap();
    (ram, v)
}

fn block(byte: u8, n: usize) -> Vec<u8> {
    vec![byte; n * BS]
}

#[test]
fn bad_requests_get_typed_errors() {
    let (_ram, v) = ram_volume(quiet(Clock::System));
    let mut w = v.writer(0).unwrap();
    assert!(matches!(
        w.write(60, &block(1, 8)),
        Err(EngineError::OutOfRange {
            lba: 60,
            nblocks: 8,
            volume_blocks: 64
        })
    ));
    assert!(matches!(
        w.write(u64::MAX - 1, &block(1, 8)),
        Err(EngineError::OutOfRange { .. })
    ));
    assert_eq!(w.write(0, &[]), Err(EngineError::ZeroLength));
    assert!(matches!(
        w.write(0, &[1u8; 700]),
        Err(EngineError::BufferSize { len: 700, .. })
    ));
    let max = v.geometry().max_write_blocks();
    assert!(
        matches!(w.write(0, &block(1, max as usize + 1)), Err(EngineError::TooLarge { max: m, .. }) if m == max)
    );
    assert_eq!(w.write_zeroes(0, 0), Err(EngineError::ZeroLength));
    assert!(matches!(
        w.write_zeroes(10, 100),
        Err(EngineError::OutOfRange { .. })
    ));
    // One record's undo data must fit a sync step: larger zeroes are refused.
    let max_zeroes = geometry().max_zeroes_blocks();
    assert!(max_zeroes < geometry().volume_blocks);
    assert!(matches!(
        w.write_zeroes(0, max_zeroes + 1),
        Err(EngineError::TooLarge { nblocks, .. }) if nblocks == max_zeroes + 1
    ));
    w.write_zeroes(0, max_zeroes).unwrap();
    let e = w
        .submit_write(0, AlignedBuf::zeroed(BS), 1 << 63)
        .unwrap_err();
    assert_eq!(e.0, EngineError::InvalidTag(1 << 63));
    assert_eq!(v.writer(0).unwrap_err(), EngineError::RingBusy(0));
    assert_eq!(
        v.writer(2).unwrap_err(),
        EngineError::NoSuchRing { ring: 2, rings: 2 }
    );
    assert_eq!(v.mark(""), Err(EngineError::EmptyLabel));
    assert!(matches!(
        v.mark(&"x".repeat(41)),
        Err(EngineError::LabelTooLong { len: 41, max: 40 })
    ));

    let seq = w.write(0, &block(1, 1)).unwrap();
    assert!(matches!(
        v.read(60, 8, &At::Now),
        Err(EngineError::OutOfRange { .. })
    ));
    assert_eq!(v.read(0, 0, &At::Now).unwrap_err(), EngineError::ZeroLength);
    assert!(
        matches!(v.read(0, 1, &At::Seq(seq + 100)), Err(EngineError::InFuture { requested, newest }) if requested == seq + 100 && newest == seq)
    );
    assert!(matches!(
        v.read(0, 1 << 20, &At::Now),
        Err(EngineError::TooLarge { .. })
    ));
    assert_eq!(
        v.resolve(&At::Label("nope".into())).unwrap_err(),
        EngineError::UnknownLabel("nope".into())
    );

    // Expire the format point: reading before the retention window is refused.
    v.sync_now().unwrap();
    v.set_retention(Retention {
        keep_last: Some(0),
        ..Default::default()
    })
    .unwrap();
    let oldest = v.points()[0].seq;
    assert!(oldest > 0);
    assert!(
        matches!(v.read(0, 1, &At::Seq(0)), Err(EngineError::BeforeRetention { requested: 0, oldest: o }) if o == oldest)
    );
    drop(w);
    v.close().unwrap();
}

#[test]
fn bad_devices_and_geometries_get_typed_errors() {
    let cfg = || quiet(Clock::System);
    let small = RamDevice::new(64 * 1024, 512).unwrap();
    assert!(matches!(
        Volume::format(small.clone(), &geometry(), &FormatOptions::default(), cfg()),
        Err(EngineError::DeviceTooSmall {
            available: 65536,
            ..
        })
    ));
    let mut g = geometry();
    g.block_size = 1024;
    assert_eq!(
        Volume::format(small.clone(), &g, &FormatOptions::default(), cfg()).unwrap_err(),
        EngineError::UnsupportedBlockSize(1024)
    );
    let mut g = geometry();
    g.backward_data_blocks = 8;
    assert!(matches!(
        Volume::format(small.clone(), &g, &FormatOptions::default(), cfg()),
        Err(EngineError::InvalidGeometry(_))
    ));
    let coarse = RamDevice::new(4 << 20, 4096).unwrap();
    assert_eq!(
        Volume::format(coarse, &geometry(), &FormatOptions::default(), cfg()).unwrap_err(),
        EngineError::BlockSizeBelowDevice {
            block: 512,
            device: 4096
        }
    );

    // Not a volume at all.
    let blank = RamDevice::new(2 << 20, 512).unwrap();
    assert_eq!(
        Volume::open(blank, cfg()).unwrap_err(),
        EngineError::BadMagic {
            region: "superblock"
        }
    );
    assert!(matches!(
        Volume::open(RamDevice::new(4096, 512).unwrap(), cfg()),
        Err(EngineError::DeviceTooSmall { .. })
    ));

    // A newer on-disk format version (both copies), resealed so only the version is wrong.
    let (ram, v) = ram_volume(cfg());
    v.close().unwrap();
    for at in [0u64, 4096] {
        let mut sb = ram.read_bytes(at, 4096);
        sb[8..12].copy_from_slice(&2u32.to_le_bytes());
        codec::seal(&mut sb, 4092);
        ram.write_bytes(at, &sb);
    }
    assert!(matches!(
        Volume::open(ram.clone(), cfg()),
        Err(EngineError::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        })
    ));
    // Both copies damaged: corrupt, not "not a volume".
    for at in [0u64, 4096] {
        let mut sb = ram.read_bytes(at, 4096);
        sb[100] ^= 0xff;
        ram.write_bytes(at, &sb);
    }
    assert!(matches!(
        Volume::open(ram, cfg()),
        Err(EngineError::Corrupt {
            region: "superblock",
            ..
        })
    ));
}

#[test]
fn one_damaged_superblock_or_checkpoint_copy_is_survived() {
    let (ram, v) = ram_volume(quiet(Clock::System));
    let mut w = v.writer(0).unwrap();
    w.write(3, &block(7, 2)).unwrap();
    v.sync_now().unwrap();
    drop(w);
    let layout = v.layout().clone();
    v.close().unwrap();
    let mut sb = ram.read_bytes(0, 4096);
    sb[200] ^= 1;
    ram.write_bytes(0, &sb);
    // Damage the newer checkpoint copy: the older one still describes a consistent volume.
    for slot in layout.checkpoint {
        let mut ck = ram.read_bytes(slot, 4096);
        ck[300] ^= 1;
        ram.write_bytes(slot, &ck);
        let (v, _) = Volume::open(ram.clone(), quiet(Clock::System)).unwrap();
        assert_eq!(v.read(3, 2, &At::Now).unwrap().1, block(7, 2));
        v.close().unwrap();
        ck[300] ^= 1;
        ram.write_bytes(slot, &ck);
    }
}

#[test]
fn keep_last_expires_oldest_first_and_keeps_younger_points_exact() {
    let (_ram, v) = ram_volume(quiet(Clock::System));
    let events = v.subscribe();
    let mut w = v.writer(0).unwrap();
    let mut marks = Vec::new();
    for i in 0..8u8 {
        w.write(u64::from(i) * 4, &block(i + 1, 4)).unwrap();
        marks.push(v.mark(&format!("m{i}")).unwrap());
    }
    v.sync_now().unwrap();
    assert!(v.generations().len() >= 8);
    v.set_retention(Retention {
        keep_last: Some(3),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(v.generations().len(), 3);
    let expired: Vec<u64> = events
        .try_iter()
        .filter_map(|e| match e {
            Event::Expired {
                generation, forced, ..
            } => {
                assert!(!forced);
                Some(generation)
            }
            _ => None,
        })
        .collect();
    assert!(!expired.is_empty());
    assert!(
        expired.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {expired:?}"
    );
    let oldest_kept = v.generations()[0].record.id;
    assert!(expired.iter().all(|&g| g < oldest_kept));
    // Every retained bookmark still reads back exactly.
    for (i, m) in marks.iter().enumerate() {
        match v.read(0, 64, &At::Label(format!("m{i}"))) {
            Ok((p, bytes)) => {
                assert_eq!(p.seq, m.seq);
                for j in 0..=i {
                    assert_eq!(
                        &bytes[j * 4 * BS..(j + 1) * 4 * BS],
                        &block(j as u8 + 1, 4)[..]
                    );
                }
                assert!(bytes[(i + 1) * 4 * BS..].iter().all(|&b| b == 0));
            }
            Err(EngineError::UnknownLabel(_)) => assert!(i < 5, "a young bookmark m{i} vanished"),
            Err(e) => panic!("{e}"),
        }
    }
    drop(w);
    v.close().unwrap();
}

#[test]
fn keep_at_least_protects_young_generations_from_voluntary_expiry() {
    let now = Arc::new(AtomicU64::new(1_000_000_000_000));
    let (_ram, v) = ram_volume(quiet(Clock::Manual(now.clone())));
    let mut w = v.writer(0).unwrap();
    for i in 0..4u8 {
        now.fetch_add(1_000_000_000, Ordering::SeqCst); // one second apart
        w.write(u64::from(i), &block(i + 1, 1)).unwrap();
        v.mark(&format!("t{i}")).unwrap();
    }
    v.sync_now().unwrap();
    let before = v.generations().len();
    v.set_retention(Retention {
        keep_last: Some(1),
        keep_at_least: Duration::from_secs(3600),
        min_free_percent: 0,
    })
    .unwrap();
    assert_eq!(
        v.generations().len(),
        before,
        "all generations are younger than an hour"
    );
    now.fetch_add(7200 * 1_000_000_000, Ordering::SeqCst);
    v.apply_retention().unwrap();
    assert_eq!(v.generations().len(), 1);
    drop(w);
    v.close().unwrap();
}

#[test]
fn min_free_percent_expires_until_there_is_room() {
    let (_ram, v) = ram_volume(quiet(Clock::System));
    let mut w = v.writer(0).unwrap();
    for i in 0..6u64 {
        w.write(i * 8, &block(i as u8 + 1, 8)).unwrap();
        v.sync_now().unwrap();
    }
    let used = v.stats().backward_data.used_blocks;
    assert!(used >= 40, "six syncs saved undo data: {used}");
    v.set_retention(Retention {
        min_free_percent: 90,
        ..Default::default()
    })
    .unwrap();
    let s = v.stats();
    assert!(
        s.backward_data.used_blocks * 100 <= s.backward_data.capacity_blocks * 10
            || s.generations == 0,
        "{s:?}"
    );
    assert!(s.generations < 6);
    drop(w);
    v.close().unwrap();
}

#[test]
fn a_full_backward_journal_forces_expiry_and_young_points_stay_exact() {
    let (_ram, v) = ram_volume(quiet(Clock::System));
    let events = v.subscribe();
    let mut w = v.writer(0).unwrap();
    let mut last = Vec::new();
    for round in 0..40u64 {
        let lba = (round * 8) % 64;
        let data = block((round % 250) as u8 + 1, 8);
        w.write(lba, &data).unwrap();
        last.push((lba, data));
        v.sync_now().unwrap();
    }
    let forced = events
        .try_iter()
        .filter(|e| matches!(e, Event::Expired { forced: true, .. }))
        .count();
    assert!(
        forced > 0,
        "40 syncs of 8 blocks cannot fit 128 undo blocks without expiry"
    );
    // The newest generation's point still reads back as it was.
    let gens = v.generations();
    let newest = gens.last().unwrap();
    let (_, bytes) = v.read(0, 64, &At::Seq(newest.record.point_seq)).unwrap();
    let mut expect = vec![0u8; 64 * BS];
    for (lba, data) in &last[..last.len() - 1] {
        expect[*lba as usize * BS..][..data.len()].copy_from_slice(data);
    }
    assert_eq!(bytes, expect);
    drop(w);
    v.close().unwrap();
}

#[test]
fn points_resolve_by_seq_time_and_label() {
    let now = Arc::new(AtomicU64::new(5_000_000_000));
    let (_ram, v) = ram_volume(quiet(Clock::Manual(now.clone())));
    let mut w = v.writer(1).unwrap();
    let a = w.write(0, &block(1, 1)).unwrap();
    now.store(6_000_000_000, Ordering::SeqCst);
    let b = w.write(0, &block(2, 1)).unwrap();
    let flush = w.flush().unwrap();
    now.store(7_000_000_000, Ordering::SeqCst);
    let bookmark = v.mark("release-1").unwrap();
    assert_eq!(bookmark.kind, PointKind::Marker(MarkerKind::Bookmark));
    let c = w.write(0, &block(3, 1)).unwrap();

    assert_eq!(v.resolve(&At::Seq(a)).unwrap().seq, a);
    assert_eq!(
        v.resolve(&At::Time(5_500_000_000)).unwrap().seq,
        a,
        "newest point at or before the time"
    );
    assert_eq!(v.resolve(&At::Time(6_000_000_000)).unwrap().seq, flush);
    assert_eq!(
        v.resolve(&At::Label("release-1".into())).unwrap().seq,
        bookmark.seq
    );
    assert_eq!(v.resolve(&At::Now).unwrap().seq, c);
    assert!(matches!(
        v.resolve(&At::Time(1)),
        Err(EngineError::TimeBeforeRetention {
            requested_ns: 1,
            ..
        })
    ));
    assert_eq!(v.read(0, 1, &At::Seq(b)).unwrap().1, block(2, 1));

    // After a sync the bookmark is a snapshot; the same requests still resolve.
    let synced = v.sync_now().unwrap();
    let p = v.resolve(&At::Label("release-1".into())).unwrap();
    assert_eq!(p.seq, bookmark.seq);
    assert!(
        matches!(
            p.kind,
            PointKind::Snapshot {
                marker: Some(MarkerKind::Bookmark),
                ..
            }
        ),
        "{p:?}"
    );
    assert_eq!(
        v.read(0, 1, &At::Label("release-1".into())).unwrap().1,
        block(2, 1)
    );
    // The sync's own marker (same manual time) is the newest point at 7 s.
    assert_eq!(
        v.resolve(&At::Time(7_000_000_000)).unwrap().seq,
        synced.to_seq
    );
    // A seq inside a coalesced range resolves to the newest retained point before it.
    assert!(v.resolve(&At::Seq(a)).unwrap().seq < a);
    drop(w);
    v.close().unwrap();
}

fn reopen_round_trip(device: Arc<dyn Device>) {
    let g = Geometry::for_volume(4096, 8 << 20, 2).unwrap();
    let v = Volume::format(
        device.clone(),
        &g,
        &FormatOptions::default(),
        quiet(Clock::System),
    )
    .unwrap();
    let mut w0 = v.writer(0).unwrap();
    let mut w1 = v.writer(1).unwrap();
    let data = |b: u8, n: usize| vec![b; n * 4096];
    w0.write(10, &data(1, 4)).unwrap();
    w1.write(12, &data(2, 4)).unwrap();
    let m = v.mark("before").unwrap();
    v.sync_now().unwrap();
    w0.write(11, &data(3, 1)).unwrap();
    w1.write_zeroes(15, 1).unwrap();
    let seq_before_close = w1.flush().unwrap();
    let points = v.points();
    drop((w0, w1));
    v.close().unwrap();

    let (v, report) = Volume::open(device, quiet(Clock::System)).unwrap();
    assert!(
        report.torn_rings.is_empty() && report.dropped_records == 0,
        "{report:?}"
    );
    assert_eq!(
        v.points(),
        points,
        "a clean close and reopen keeps every point"
    );
    let (_, now) = v.read(10, 6, &At::Now).unwrap();
    let mut expect = [data(1, 1), data(3, 1), data(2, 3), data(0, 1)].concat();
    expect.truncate(6 * 4096);
    assert_eq!(now, expect);
    let (_, before) = v.read(10, 6, &At::Label("before".into())).unwrap();
    assert_eq!(before, [data(1, 2), data(2, 4)].concat());
    assert_eq!(v.resolve(&At::Label("before".into())).unwrap().seq, m.seq);
    let mut w = v.writer(0).unwrap();
    assert!(
        w.write(0, &data(9, 1)).unwrap() > seq_before_close,
        "seqs keep increasing after reopen"
    );
    drop(w);
    v.close().unwrap();
}

#[test]
fn reopen_on_ram() {
    reopen_round_trip(RamDevice::new(32 << 20, 4096).unwrap());
}

#[test]
fn reopen_on_an_o_direct_file() {
    let dir = tempfile::Builder::new()
        .prefix("rewind-test")
        .tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("volume.img");
    let device = FileDevice::open(
        &path,
        FileOptions {
            create_size: Some(32 << 20),
            direct: true,
            ..Default::default()
        },
    )
    .unwrap();
    reopen_round_trip(device);
}

#[test]
fn a_volume_that_failed_refuses_writes_but_still_reads() {
    let ram = RamDevice::new(2 << 20, BS as u32).unwrap();
    let fault = FaultDevice::new(
        ram,
        FaultConfig {
            seed: 3,
            reorder: false,
            ..Default::default()
        },
    )
    .unwrap();
    let v = Volume::format(
        fault.clone(),
        &geometry(),
        &FormatOptions::default(),
        quiet(Clock::System),
    )
    .unwrap();
    let mut w = v.writer(0).unwrap();
    w.write(0, &block(5, 2)).unwrap();
    fault.crash_after(0);
    assert!(matches!(
        w.write(4, &block(6, 1)),
        Err(EngineError::Failed(_))
    ));
    assert!(matches!(
        w.write(8, &block(6, 1)),
        Err(EngineError::Failed(_))
    ));
    assert!(v.stats().failed.is_some());
    assert!(matches!(v.mark("x"), Err(EngineError::Failed(_))));
    drop(w);
    assert!(matches!(v.close(), Err(EngineError::Failed(_))));
}

/// Writes submitted between two polls share one commit batch: one descriptor
/// block, one group of seqs, one completion round.
#[test]
fn writes_submitted_between_polls_share_one_descriptor_block() {
    let (_ram, v) = ram_volume(quiet(Clock::System));
    let mut w = v.writer(0).unwrap();
    let desc_used = |v: &Volume| v.stats().rings[0].0.used_blocks;
    let per_block = geometry().entries_per_desc_block() as u64;
    assert!(per_block >= 2, "a descriptor block holds several entries");
    let before = desc_used(&v);
    for i in 0..8u64 {
        let buf = AlignedBuf::from_slice(&block(b'a' + i as u8, 1));
        w.submit_write(i, buf, i).map_err(|(e, _)| e).unwrap();
    }
    let mut done = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while done.len() < 8 && std::time::Instant::now() < deadline {
        w.poll(&mut done);
    }
    assert_eq!(done.len(), 8, "every write completes");
    let mut seqs: Vec<u64> = done.iter().map(|c| *c.result.as_ref().unwrap()).collect();
    seqs.sort_unstable();
    assert!(
        seqs.windows(2).all(|p| p[1] == p[0] + 1),
        "one batch takes consecutive seqs: {seqs:?}"
    );
    assert_eq!(
        desc_used(&v) - before,
        8u64.div_ceil(per_block),
        "eight writes fill as few descriptor blocks as hold them ({per_block} entries each)"
    );
    for i in 0..8u64 {
        let (_, bytes) = v.read(i, 1, &At::Now).unwrap();
        assert_eq!(bytes, block(b'a' + i as u8, 1));
    }
}

/// A pinned write point survives the sync that crosses it (it becomes a
/// generation) and voluntary retention keeps it until the pin is dropped.
#[test]
fn a_pinned_point_survives_sync_and_voluntary_retention() {
    let (_ram, v) = ram_volume(quiet(Clock::System));
    let mut w = v.writer(0).unwrap();
    let s1 = w.write(0, &block(b'A', 2)).unwrap();
    let s2 = w.write(0, &block(b'B', 2)).unwrap();
    let s3 = w.write(0, &block(b'C', 2)).unwrap();
    assert!(s1 < s2 && s2 < s3);

    // Refusals: a point not yet written, and (after a sync) one gone.
    assert!(matches!(v.pin(s3 + 100), Err(EngineError::InFuture { .. })));
    let pin = v.pin(s2).unwrap();
    assert_eq!(pin.seq(), s2);
    assert_eq!(v.pinned(), vec![s2]);
    v.sync_now().unwrap();
    // s1 was a plain write point inside the synced window: dissolved (an
    // older point serves a request for it now), and it can no longer be pinned.
    assert!(v.resolve(&At::Seq(s1)).unwrap().seq < s1);
    assert!(matches!(v.pin(s1), Err(EngineError::Expired(_))));
    // s2 was pinned: the mirror rested on it, so it is a generation now.
    let (p, bytes) = v.read(0, 2, &At::Seq(s2)).unwrap();
    assert_eq!(p.seq, s2);
    assert_eq!(bytes, block(b'B', 2));
    assert!(v.generations().iter().any(|g| g.record.point_seq == s2));

    // More history, then a policy that wants only the newest generation.
    for i in 0..3u8 {
        w.write(2, &block(b'a' + i, 1)).unwrap();
        v.sync_now().unwrap();
    }
    v.set_retention(Retention {
        keep_last: Some(1),
        ..Default::default()
    })
    .unwrap();
    let (_, bytes) = v.read(0, 2, &At::Seq(s2)).unwrap();
    assert_eq!(bytes, block(b'B', 2), "the pin holds voluntary expiry back");
    assert!(v.generations().len() > 1);

    // Released, the same policy expires it.
    drop(pin);
    assert!(v.pinned().is_empty());
    v.apply_retention().unwrap();
    assert_eq!(v.generations().len(), 1);
    assert!(
        v.resolve(&At::Seq(s2)).is_err(),
        "s2 is before the retention window now"
    );
    // A second holder keeps a point pinned until both let go.
    let newest = v.generations()[0].record.point_seq;
    let (a, b) = (v.pin(newest).unwrap(), v.pin(newest).unwrap());
    drop(a);
    assert_eq!(v.pinned(), vec![newest]);
    drop(b);
    assert!(v.pinned().is_empty());
    drop(w);
    v.close().unwrap();
}

/// A sync step that ends on a pinned write inside a commit batch leaves the
/// batch's descriptor block at the ring's tail holding a record the mirror
/// already has (its data space released) next to newer ones. Recovery must
/// keep the newer records: a crash at every device operation of that sync
/// loses no acknowledged write. (The model test found this: recovery took the
/// older record's data position, behind the data tail, for damage, and
/// dropped the whole ring.)
#[test]
fn a_crash_after_a_sync_step_ends_inside_a_batch_loses_nothing() {
    let mut crashed_mid_sync = 0;
    for after in 0..40u64 {
        let ram = RamDevice::new(2 << 20, BS as u32).unwrap();
        let fault = FaultDevice::new(ram, FaultConfig::default()).unwrap();
        let v = Volume::format(
            fault.clone() as Arc<dyn Device>,
            &geometry(),
            &FormatOptions::default(),
            quiet(Clock::System),
        )
        .unwrap();
        let mut w = v.writer(0).unwrap();
        for (tag, byte) in [(1u64, b'A'), (2, b'B')] {
            let buf = AlignedBuf::from_slice(&block(byte, 1));
            w.submit_write(0, buf, tag).map_err(|(e, _)| e).unwrap();
        }
        let mut done = Vec::new();
        while done.len() < 2 {
            w.poll(&mut done);
        }
        let mut seqs: Vec<u64> = done.iter().map(|c| *c.result.as_ref().unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs[1], seqs[0] + 1, "one batch");
        let pin = v.pin(seqs[0]).unwrap();
        fault.crash_after(after);
        let synced = v.sync_now().is_ok();
        fault.crash_now();
        drop(pin);
        drop(w);
        let _ = v.close();
        if !synced {
            crashed_mid_sync += 1;
        }
        let image = fault.crash_image();
        let (v, report) = Volume::open(image as Arc<dyn Device>, quiet(Clock::System)).unwrap();
        assert!(
            report.lost_generations.is_empty(),
            "after {after}: {report:?}"
        );
        let (_, now) = v.read(0, 1, &At::Now).unwrap();
        assert_eq!(
            now,
            block(b'B', 1),
            "crash after {after} device ops: {report:?}"
        );
        v.close().unwrap();
    }
    assert!(
        crashed_mid_sync > 0,
        "some crash points fell inside the sync"
    );
}

#[test]
fn a_sync_larger_than_half_the_backward_journal_is_cut_into_exact_steps() {
    // 240 undo blocks: a step may save at most 120, so netting 200 distinct
    // blocks (plus overwrites that net away within a step) takes at least
    // two steps, and the sync cuts them from exact net changes.
    const BLOCKS: u64 = 512;
    let g = Geometry {
        volume_blocks: BLOCKS,
        ring_data_blocks: 240,
        ring_desc_blocks: 240,
        backward_data_blocks: 240,
        ..geometry()
    };
    let ram = RamDevice::new(2 << 20, BS as u32).unwrap();
    let v = Volume::format(ram, &g, &FormatOptions::default(), quiet(Clock::System)).unwrap();
    let mut w = v.writer(0).unwrap();
    let mut image = vec![0u8; BLOCKS as usize * BS];
    let mut history: Vec<(u64, Vec<u8>)> = Vec::new(); // (seq, image after it)
    for i in 0..230u64 {
        // Blocks 0..200 once each (scattered), then 30 overwrites of written blocks.
        let lba = if i < 200 {
            (i * 37) % 200
        } else {
            (i * 11) % 200
        };
        let data = block((i % 250) as u8 + 1, 1);
        let seq = w.write(lba, &data).unwrap();
        image[lba as usize * BS..][..BS].copy_from_slice(&data);
        history.push((seq, image.clone()));
    }
    let report = v.sync_now().unwrap();
    assert!(
        report.generations.len() >= 2,
        "200 changed blocks in steps of at most 120: {report:?}"
    );
    assert!((200..=230).contains(&report.changed_blocks), "{report:?}");
    let (_, now) = v.read(0, BLOCKS, &At::Now).unwrap();
    assert_eq!(now, image);
    // Every retained generation's point reads back as the writes up to it left the volume.
    let gens = v.generations();
    assert!(!gens.is_empty());
    for gen in &gens {
        let seq = gen.record.point_seq;
        let expect = history
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq)
            .map_or(vec![0u8; BLOCKS as usize * BS], |(_, img)| img.clone());
        let (_, bytes) = v.read(0, BLOCKS, &At::Seq(seq)).unwrap();
        assert_eq!(bytes, expect, "point {seq}");
    }
    drop(w);
    v.close().unwrap();
}
