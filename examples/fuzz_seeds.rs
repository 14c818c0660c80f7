//! Writes valid encodings of every on-disk record into a directory: the seed
//! corpus of the `decode_records` fuzz target (`fuzz/`). Each file is raw
//! record bytes; superblock and checkpoint files hold an A/B pair of slots.
//!
//! Usage: `cargo run --example fuzz_seeds -- fuzz/corpus/decode_records`

use rewind::engine::geometry::SLOT_BYTES;
use rewind::engine::ondisk::checkpoint::{Checkpoint, RingTails};
use rewind::engine::ondisk::forward_block::{self, BlockIdentity, ForwardRecord, RecordBody};
use rewind::engine::ondisk::generation::{self, GenerationRecord, UndoExtent};
use rewind::engine::ondisk::superblock::Superblock;
use rewind::engine::{Geometry, MarkerKind};
use std::path::PathBuf;

const UUID: [u8; 16] = *b"rewind-fuzz-seed";

fn slot_pair(encode: impl Fn(u64, &mut [u8])) -> Vec<u8> {
    let slot = SLOT_BYTES as usize;
    let mut out = vec![0u8; 2 * slot];
    encode(7, &mut out[..slot]);
    encode(8, &mut out[slot..]);
    out
}

fn superblock(generation: u64, block_size: u32) -> Superblock {
    Superblock {
        generation,
        uuid: UUID,
        created_ns: 1_700_000_000_000_000_000,
        geometry: Geometry {
            block_size,
            volume_blocks: 64,
            rings: 2,
            ring_desc_blocks: 16,
            ring_data_blocks: 64,
            backward_desc_blocks: 16,
            backward_data_blocks: 128,
        },
    }
}

fn checkpoint(generation: u64, label: Option<&str>) -> Checkpoint {
    Checkpoint {
        generation,
        uuid: UUID,
        mim_seq: 12,
        mim_time_ns: 1_700_000_000_000_000_123,
        mim_marker: label.map(|_| MarkerKind::Bookmark),
        mim_label: label.map(str::to_string),
        seq_floor: 20,
        backward_desc_tail: 3,
        backward_data_tail: 9,
        oldest_generation: 2,
        next_generation: 4,
        rings: vec![
            RingTails { desc: 5, data: 17 },
            RingTails { desc: 6, data: 30 },
            RingTails { desc: 2, data: 0 },
        ],
    }
}

fn forward_records() -> Vec<ForwardRecord> {
    vec![
        ForwardRecord {
            seq: 13,
            time_ns: 100,
            body: RecordBody::Write {
                lba: 3,
                nblocks: 2,
                data_pos: 17,
                data_crc: 0x1234_5678,
            },
        },
        ForwardRecord {
            seq: 14,
            time_ns: 101,
            body: RecordBody::Zero { lba: 0, nblocks: 8 },
        },
        ForwardRecord {
            seq: 16,
            time_ns: 102,
            body: RecordBody::Marker {
                kind: MarkerKind::Bookmark,
                label: Some("nightly".into()),
            },
        },
        ForwardRecord {
            seq: 17,
            time_ns: 103,
            body: RecordBody::Marker {
                kind: MarkerKind::Flush,
                label: None,
            },
        },
    ]
}

fn generation_record(extents: usize) -> GenerationRecord {
    GenerationRecord {
        id: 3,
        point_seq: 10,
        point_time_ns: 99,
        point_marker: Some(MarkerKind::Bookmark),
        point_label: Some("pre-upgrade".into()),
        target_seq: 20,
        change_records: 4,
        data_start: 100,
        data_end: 100 + 2 * extents as u64,
        extents: (0..extents as u64)
            .map(|i| UndoExtent {
                lba: i * 2,
                nblocks: 2,
                data_pos: 100 + 2 * i,
            })
            .collect(),
    }
}

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus/decode_records".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();

    for bs in [512u32, 4096] {
        seeds.push((
            format!("superblock-pair-{bs}"),
            slot_pair(|g, out| superblock(g, bs).encode(out)),
        ));
    }
    seeds.push((
        "checkpoint-pair".into(),
        slot_pair(|g, out| checkpoint(g, None).encode(out)),
    ));
    seeds.push((
        "checkpoint-pair-labelled".into(),
        slot_pair(|g, out| checkpoint(g, Some("before-deploy")).encode(out)),
    ));

    for bs in [512usize, 4096] {
        let id = BlockIdentity {
            ring: 1,
            pos: 40,
            uuid: &UUID,
        };
        let mut block = vec![0u8; bs];
        forward_block::encode(&mut block, id, &forward_records());
        seeds.push((format!("forward-{bs}"), block));

        for extents in [0usize, 1, 14, 100] {
            let record = generation_record(extents);
            let blocks = generation::record_blocks(extents, bs);
            let mut buf = vec![0u8; blocks as usize * bs];
            record.encode(&mut buf, 7, &UUID, bs);
            seeds.push((format!("generation-{bs}-{extents}"), buf));
        }
        let mut wrap = vec![0u8; bs];
        generation::encode_wrap(&mut wrap, 9, &UUID);
        seeds.push((format!("wrap-{bs}"), wrap));
    }

    for (name, bytes) in &seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("{} seeds written to {}", seeds.len(), dir.display());
    Ok(())
}
