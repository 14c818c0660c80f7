//! Damage recovery must survive without wrong data or a panic: on-disk states
//! a crash can leave (a durable descriptor whose data is torn, later overwritten
//! in place by a retried write) and states only a damaged or forged device can
//! hold (crc-valid records with absurd seqs, positions or duplicate seqs).
//! Each gets a typed error or a volume whose listed points are exact.

use rewind::device::ram::RamDevice;
use rewind::device::Device;
use rewind::engine::ondisk::checkpoint::Checkpoint;
use rewind::engine::ondisk::forward_block::{self, BlockIdentity, ForwardRecord, RecordBody};
use rewind::engine::{
    At, EngineError, FormatOptions, Geometry, MarkerKind, SyncPolicy, Volume, VolumeConfig,
};
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

fn quiet() -> VolumeConfig {
    VolumeConfig {
        sync: SyncPolicy {
            fill_percent: 100,
            interval: None,
            marker_interval: None,
        },
        stable_wait: Duration::from_secs(5),
        ..Default::default()
    }
}

#[test]
fn a_torn_batch_never_comes_back_even_when_its_data_is_rewritten() {
    let ram = RamDevice::new(2 << 20, BS as u32).unwrap();
    let v = Volume::format(ram.clone(), &geometry(), &FormatOptions::default(), quiet()).unwrap();
    let layout = v.layout().clone();
    let torn_seq = {
        let mut w0 = v.writer(0).unwrap();
        w0.write(0, &[0x11; BS]).unwrap(); // ring 0: descriptor 0, data 0
        w0.write(5, &[0xbb; BS]).unwrap() // ring 0: descriptor 1, data 1
    };
    v.close().unwrap();
    // The crash image of "the second batch's descriptor landed, its data did not".
    let data_at = layout.ring_data_byte(0, 1);
    let good = ram.read_bytes(data_at, BS);
    ram.write_bytes(data_at, &[0xee; BS]);

    let (v, report) = Volume::open(ram.clone(), quiet()).unwrap();
    assert_eq!(report.torn_rings, vec![0], "{report:?}");
    let later = v.writer(1).unwrap().write(8, &[0xcc; BS]).unwrap();
    assert!(
        later > torn_seq,
        "seqs of a torn batch are never handed out again"
    );
    let (_, before) = v.read(5, 1, &At::Seq(later)).unwrap();
    assert_eq!(
        before,
        vec![0u8; BS],
        "the torn write is not part of the volume"
    );
    v.close().unwrap();

    // A host retries the unacknowledged write: the same bytes land at the same
    // data position, and a crash loses only the new descriptor. The old
    // descriptor must not be taken for it.
    ram.write_bytes(data_at, &good);
    let (v, _) = Volume::open(ram.clone(), quiet()).unwrap();
    let (p, after) = v.read(5, 1, &At::Seq(later)).unwrap();
    assert_eq!(p.seq, later);
    assert_eq!(after, before, "a listed point changed across a crash");
    assert!(v.points().iter().all(|p| p.seq != torn_seq));
    v.sync_now().unwrap();
    v.close().unwrap();
}

/// Formats, writes one block, syncs (mirror at seq 2), then puts `records` in
/// ring `ring`'s descriptor block 0, sealed with a valid crc.
fn forged(ring: u16, records: Vec<ForwardRecord>) -> Arc<RamDevice> {
    let ram = RamDevice::new(2 << 20, BS as u32).unwrap();
    let v = Volume::format(ram.clone(), &geometry(), &FormatOptions::default(), quiet()).unwrap();
    let layout = v.layout().clone();
    let uuid = v.uuid();
    v.writer(0).unwrap().write(0, &[1; BS]).unwrap();
    v.sync_now().unwrap();
    v.close().unwrap();
    let mut block = vec![0u8; BS];
    forward_block::encode(
        &mut block,
        BlockIdentity {
            ring,
            pos: 0,
            uuid: &uuid,
        },
        &records,
    );
    ram.write_bytes(layout.ring_desc_byte(usize::from(ring), 0), &block);
    ram
}

fn open_and_use(device: Arc<RamDevice>) -> Result<(), EngineError> {
    let (v, _) = Volume::open(device as Arc<dyn Device>, quiet())?;
    for ring in 0..2 {
        let mut w = v.writer(ring)?;
        w.write(3, &[9; BS])?;
    }
    for p in v.points() {
        v.read(0, 64, &At::Seq(p.seq))?;
    }
    v.sync_now()?;
    v.close()
}

fn marker(seq: u64) -> ForwardRecord {
    ForwardRecord {
        seq,
        time_ns: 1,
        body: RecordBody::Marker {
            kind: MarkerKind::Flush,
            label: None,
        },
    }
}

#[test]
fn forged_records_never_panic_recovery() {
    // A seq of u64::MAX.
    let r = open_and_use(forged(1, vec![marker(u64::MAX)]));
    assert!(
        r.is_ok() || matches!(r, Err(EngineError::Corrupt { .. })),
        "{r:?}"
    );
    // A record already in the mirror whose data position is far outside the ring.
    let far = ForwardRecord {
        seq: 1,
        time_ns: 1,
        body: RecordBody::Write {
            lba: 0,
            nblocks: 1,
            data_pos: 1_000_000,
            data_crc: 0,
        },
    };
    assert!(open_and_use(forged(1, vec![far, marker(7)])).is_ok());
    // A write reaching past the end of the volume.
    let past = ForwardRecord {
        seq: 9,
        time_ns: 1,
        body: RecordBody::Zero {
            lba: 60,
            nblocks: 10,
        },
    };
    assert!(open_and_use(forged(1, vec![past])).is_ok());
    // The same seq in two rings.
    let ram = forged(1, vec![marker(40)]);
    let v = Volume::open(ram.clone() as Arc<dyn Device>, quiet())
        .unwrap()
        .0;
    let (layout, uuid) = (v.layout().clone(), v.uuid());
    v.close().unwrap();
    let mut block = vec![0u8; BS];
    let tail = {
        let ck = Checkpoint::choose(
            &ram.read_bytes(layout.checkpoint[0], 4096),
            &ram.read_bytes(layout.checkpoint[1], 4096),
            &uuid,
        )
        .unwrap();
        ck.rings[0].desc
    };
    forward_block::encode(
        &mut block,
        BlockIdentity {
            ring: 0,
            pos: tail,
            uuid: &uuid,
        },
        &[marker(40)],
    );
    ram.write_bytes(layout.ring_desc_byte(0, tail), &block);
    assert!(matches!(
        Volume::open(ram as Arc<dyn Device>, quiet()),
        Err(EngineError::Corrupt {
            region: "forward journal",
            ..
        })
    ));
}

#[test]
fn an_absurd_checkpoint_is_a_typed_error() {
    let ram = RamDevice::new(2 << 20, BS as u32).unwrap();
    let v = Volume::format(ram.clone(), &geometry(), &FormatOptions::default(), quiet()).unwrap();
    let (layout, uuid) = (v.layout().clone(), v.uuid());
    v.close().unwrap();
    for slot in layout.checkpoint {
        let Ok(mut ck) = Checkpoint::decode(&ram.read_bytes(slot, 4096), &uuid) else {
            continue;
        };
        ck.rings[1].desc = u64::MAX - 3;
        let mut buf = vec![0u8; 4096];
        ck.encode(&mut buf);
        ram.write_bytes(slot, &buf);
    }
    assert!(matches!(
        Volume::open(ram as Arc<dyn Device>, quiet()),
        Err(EngineError::Corrupt {
            region: "checkpoint",
            ..
        })
    ));
}

#[test]
fn a_read_with_more_pieces_than_the_queue_depth_completes() {
    let ram = RamDevice::new(2 << 20, BS as u32).unwrap();
    let config = VolumeConfig {
        queue_depth: 8,
        ..quiet()
    };
    let v = Volume::format(ram, &geometry(), &FormatOptions::default(), config).unwrap();
    let mut w = v.writer(0).unwrap();
    // Every other block from the forward ring, the rest from the mirror: 64 pieces.
    for lba in (0..64).step_by(2) {
        w.write(lba, &[lba as u8 + 1; BS]).unwrap();
    }
    let (_, bytes) = v.read(0, 64, &At::Now).unwrap();
    for (i, block) in bytes.chunks(BS).enumerate() {
        let expect = if i % 2 == 0 { i as u8 + 1 } else { 0 };
        assert!(block.iter().all(|&b| b == expect), "block {i}");
    }
    drop(w);
    v.close().unwrap();
}
