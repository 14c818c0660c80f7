//! Seed 001's worked example, end to end: "12345" at blocks 1..=5, then
//! "ABCDE" over it, then "ZXC" at 2..=4; after the sync the mirror holds
//! "AZXCE", the backward journal holds "12345" for 1..=5, and the three points
//! read back as "12345", "ABCDE" and "AZXCE".

use rewind::device::blocking::BlockingQueue;
use rewind::device::ram::RamDevice;
use rewind::device::{AlignedBuf, Device};
use rewind::engine::{At, FormatOptions, Geometry, PointKind, SyncPolicy, Volume, VolumeConfig};
use std::sync::Arc;

const BS: usize = 512;

fn geometry() -> Geometry {
    Geometry {
        block_size: BS as u32,
        volume_blocks: 16,
        rings: 1,
        ring_desc_blocks: 16,
        ring_data_blocks: 64,
        backward_desc_blocks: 16,
        backward_data_blocks: 64,
    }
}

/// One block per character, filled with that byte.
fn blocks(s: &str) -> Vec<u8> {
    s.bytes().flat_map(|c| std::iter::repeat_n(c, BS)).collect()
}

fn chars(bytes: &[u8]) -> String {
    bytes
        .chunks(BS)
        .map(|b| {
            assert!(b.iter().all(|&x| x == b[0]), "a block mixes bytes");
            if b[0] == 0 {
                '.'
            } else {
                b[0] as char
            }
        })
        .collect()
}

/// Device bytes read through a queue of their own (the volume's queues stay open).
fn raw(device: &dyn Device, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = AlignedBuf::zeroed(len);
    let mut queue = BlockingQueue::new(device, 1).expect("queue");
    queue.read(offset, &mut buf).expect("raw read");
    buf.to_vec()
}

fn quiet() -> VolumeConfig {
    VolumeConfig {
        sync: SyncPolicy {
            fill_percent: 100,
            interval: None,
            marker_interval: None,
        },
        ..Default::default()
    }
}

#[test]
fn abcde_then_zxc_nets_to_azxce() {
    let ram = RamDevice::new(1 << 20, BS as u32).unwrap();
    let device: Arc<dyn Device> = ram.clone();
    let volume = Volume::format(device, &geometry(), &FormatOptions::default(), quiet()).unwrap();
    let mut w = volume.writer(0).unwrap();

    w.write(1, &blocks("12345")).unwrap();
    let first = volume.sync_now().unwrap();
    assert_eq!(chars(&volume.read(0, 7, &At::Now).unwrap().1), ".12345.");
    let p12345 = first.to_seq;

    w.write(1, &blocks("ABCDE")).unwrap();
    let abcde = volume.mark("abcde").unwrap();
    w.write(2, &blocks("ZXC")).unwrap();
    let report = volume.sync_now().unwrap();
    assert_eq!(
        report.generations.len(),
        2,
        "the bookmark keeps its own snapshot: {report:?}"
    );

    // The mirror holds the net change.
    let layout = volume.layout().clone();
    let mirror = raw(&*ram, layout.mim_offset, 7 * BS);
    assert_eq!(chars(&mirror), ".AZXCE.");

    // The generation restoring the "12345" point holds 12345 for blocks 1..=5.
    let gens = volume.generations();
    let g = gens
        .iter()
        .find(|g| g.record.point_seq == p12345)
        .expect("generation for the 12345 point");
    assert_eq!(g.record.extents.len(), 1);
    let x = g.record.extents[0];
    assert_eq!((x.lba, x.nblocks), (1, 5));
    assert_eq!(
        chars(&raw(&*ram, layout.backward_data_byte(x.data_pos), 5 * BS)),
        "12345"
    );

    // The three points.
    let at = |seq| volume.read(1, 5, &At::Seq(seq)).unwrap();
    assert_eq!(chars(&at(p12345).1), "12345");
    assert_eq!(chars(&at(abcde.seq).1), "ABCDE");
    assert_eq!(chars(&volume.read(1, 5, &At::Now).unwrap().1), "AZXCE");
    assert_eq!(
        volume.resolve(&At::Label("abcde".into())).unwrap().seq,
        abcde.seq
    );

    let points = volume.points();
    let kinds: Vec<_> = points.iter().map(|p| (p.seq, p.kind.clone())).collect();
    assert!(
        matches!(points.last().unwrap().kind, PointKind::Mirror { .. }),
        "{kinds:?}"
    );
    assert!(
        points
            .iter()
            .any(|p| p.seq == abcde.seq && p.label.as_deref() == Some("abcde")),
        "{kinds:?}"
    );

    drop(w);
    volume.close().unwrap();
}
