//! Every on-disk decoder on arbitrary bytes, at both block sizes.
//!
//! The input is raw record bytes (the seed corpus holds valid encodings made
//! by `examples/fuzz_seeds.rs`); each decoder sees it as it is, cut or
//! zero-padded to the size its record has, and once more with the record's
//! crc32c recomputed, so the fuzzer gets past the checksum and reaches the
//! field checks behind it. Identities (uuid, ring, position) are taken from
//! the input's own header fields, so a block "belongs here" as often as it
//! can.
//!
//! Properties: no decoder panics; whatever decodes re-encodes to bytes that
//! decode to the same value (and re-encoding those gives the same bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::engine::ondisk::checkpoint::Checkpoint;
use rewind::engine::ondisk::codec::seal;
use rewind::engine::ondisk::forward_block::{self, BlockIdentity};
use rewind::engine::ondisk::generation::{self, GenerationRecord, HeadBlock};
use rewind::engine::ondisk::superblock::Superblock;

/// Size of a superblock or checkpoint slot.
const SLOT: usize = 4096;
// Where each record keeps its crc32c. The decoders keep these private; every
// successful round trip below checks that resealing at them changes nothing.
const SLOT_CRC_AT: usize = SLOT - 4;
const FORWARD_CRC_AT: usize = 60;
const GENERATION_CRC_AT: usize = 152;
/// Longest generation record looked at, in blocks.
const MAX_GENERATION_BLOCKS: u64 = 64;

/// `len` bytes of `data` from `start`, zero-padded.
fn window(data: &[u8], start: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    if start < data.len() {
        let n = (data.len() - start).min(len);
        out[..n].copy_from_slice(&data[start..start + n]);
    }
    out
}

/// `buf` with its crc recomputed at `crc_at`.
fn resealed(buf: &[u8], crc_at: usize) -> Vec<u8> {
    let mut out = buf.to_vec();
    if out.len() >= crc_at + 4 {
        seal(&mut out, crc_at);
    }
    out
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn uuid_at(b: &[u8], at: usize) -> [u8; 16] {
    b[at..at + 16].try_into().unwrap()
}

fn check_superblock(sb: &Superblock) {
    let mut out = vec![0u8; SLOT];
    sb.encode(&mut out);
    assert_eq!(resealed(&out, SLOT_CRC_AT), out, "superblock crc offset");
    let again = Superblock::decode(&out).expect("a re-encoded superblock decodes");
    assert_eq!(&again, sb, "superblock round trip");
    let mut twice = vec![0u8; SLOT];
    again.encode(&mut twice);
    assert_eq!(twice, out, "superblock encoding is a fixed point");
}

fn superblocks(data: &[u8]) {
    if let Ok(sb) = Superblock::decode(data) {
        check_superblock(&sb);
    }
    let a = window(data, 0, SLOT);
    let b = window(data, SLOT, SLOT);
    let (ra, rb) = (resealed(&a, SLOT_CRC_AT), resealed(&b, SLOT_CRC_AT));
    for (x, y) in [(&a, &b), (&ra, &rb), (&ra, &b)] {
        let dx = Superblock::decode(x);
        let dy = Superblock::decode(y);
        for d in [&dx, &dy] {
            if let Ok(sb) = d {
                check_superblock(sb);
            }
        }
        match Superblock::choose(x, y) {
            Ok(chosen) => {
                assert!(
                    dx.as_ref() == Ok(&chosen) || dy.as_ref() == Ok(&chosen),
                    "choose returned a copy that does not decode"
                );
                for sb in [&dx, &dy].into_iter().flatten() {
                    assert!(
                        sb.generation <= chosen.generation,
                        "choose skipped a newer copy"
                    );
                }
            }
            Err(_) => assert!(dx.is_err() && dy.is_err(), "choose refused a valid copy"),
        }
    }
}

fn check_checkpoint(ck: &Checkpoint, uuid: &[u8; 16]) {
    let mut out = vec![0u8; SLOT];
    ck.encode(&mut out);
    assert_eq!(resealed(&out, SLOT_CRC_AT), out, "checkpoint crc offset");
    let again = Checkpoint::decode(&out, uuid).expect("a re-encoded checkpoint decodes");
    assert_eq!(&again, ck, "checkpoint round trip");
    let mut twice = vec![0u8; SLOT];
    again.encode(&mut twice);
    assert_eq!(twice, out, "checkpoint encoding is a fixed point");
}

fn checkpoints(data: &[u8]) {
    let a = window(data, 0, SLOT);
    let b = window(data, SLOT, SLOT);
    // The uuid the record claims, and one it does not.
    let own = uuid_at(&a, 24);
    let mut foreign = own;
    foreign[0] ^= 1;
    if let Ok(ck) = Checkpoint::decode(data, &own) {
        check_checkpoint(&ck, &own);
    }
    let (ra, rb) = (resealed(&a, SLOT_CRC_AT), resealed(&b, SLOT_CRC_AT));
    for uuid in [&own, &foreign] {
        for (x, y) in [(&a, &b), (&ra, &rb), (&ra, &b)] {
            let dx = Checkpoint::decode(x, uuid);
            let dy = Checkpoint::decode(y, uuid);
            for ck in [&dx, &dy].into_iter().flatten() {
                assert_eq!(&ck.uuid, uuid, "a checkpoint of another volume decoded");
                check_checkpoint(ck, uuid);
            }
            match Checkpoint::choose(x, y, uuid) {
                Ok(chosen) => {
                    assert!(dx.as_ref() == Ok(&chosen) || dy.as_ref() == Ok(&chosen));
                    for ck in [&dx, &dy].into_iter().flatten() {
                        assert!(ck.generation <= chosen.generation);
                    }
                }
                Err(_) => assert!(dx.is_err() && dy.is_err(), "choose refused a valid copy"),
            }
        }
    }
}

fn forward(data: &[u8], bs: usize) {
    let block = window(data, 0, bs);
    let rblock = resealed(&block, FORWARD_CRC_AT);
    let uuid = uuid_at(&block, 24);
    let own = BlockIdentity {
        ring: u16_at(&block, 8),
        pos: u64_at(&block, 16),
        uuid: &uuid,
    };
    // Another identity from further into the input: mostly "not here".
    let other_bytes = window(data, bs, 26);
    let other_uuid = uuid_at(&other_bytes, 10);
    let other = BlockIdentity {
        ring: u16_at(&other_bytes, 0),
        pos: u64_at(&other_bytes, 2),
        uuid: &other_uuid,
    };
    for id in [own, other] {
        for buf in [data, &block[..], &rblock[..]] {
            if let Ok(records) = forward_block::decode(buf, id) {
                assert!(!records.is_empty(), "a block decoded to no records");
                let mut out = vec![0u8; buf.len()];
                forward_block::encode(&mut out, id, &records);
                assert_eq!(resealed(&out, FORWARD_CRC_AT), out, "forward crc offset");
                assert_eq!(
                    forward_block::decode(&out, id).as_ref(),
                    Ok(&records),
                    "forward block round trip"
                );
            }
        }
    }
}

fn check_generation(r: &GenerationRecord, pos: u64, uuid: &[u8; 16], bs: usize) {
    let blocks = generation::record_blocks(r.extents.len(), bs);
    let mut out = vec![0u8; blocks as usize * bs];
    r.encode(&mut out, pos, uuid, bs);
    assert_eq!(
        resealed(&out, GENERATION_CRC_AT),
        out,
        "generation crc offset"
    );
    assert_eq!(
        generation::peek(&out[..bs], pos, uuid, blocks),
        HeadBlock::Record { blocks },
        "peek at a re-encoded record"
    );
    assert_eq!(
        generation::decode(&out, pos, uuid, bs).as_ref(),
        Ok(r),
        "generation round trip"
    );
}

fn generations(data: &[u8], bs: usize) {
    let first = window(data, 0, bs);
    let pos = u64_at(&first, 8);
    let uuid = uuid_at(&first, 16);
    let check = |buf: &[u8]| {
        if let Ok(r) = generation::decode(buf, pos, &uuid, bs) {
            check_generation(&r, pos, &uuid, bs);
        }
    };
    // As the recovery scan does it: peek at the first block, then read the
    // whole record it announces.
    for head in [first.clone(), resealed(&first, GENERATION_CRC_AT)] {
        match generation::peek(&head, pos, &uuid, MAX_GENERATION_BLOCKS) {
            HeadBlock::Record { blocks } => {
                assert!((1..=MAX_GENERATION_BLOCKS).contains(&blocks));
                let whole = window(data, 0, blocks as usize * bs);
                check(&whole);
                check(&resealed(&whole, GENERATION_CRC_AT));
            }
            HeadBlock::Wrap => {
                let mut out = vec![0u8; bs];
                generation::encode_wrap(&mut out, pos, &uuid);
                assert_eq!(generation::peek(&out, pos, &uuid, 1), HeadBlock::Wrap);
            }
            HeadBlock::End => {}
        }
    }
    // And the input as it is, and padded to whole blocks.
    check(data);
    let blocks = data
        .len()
        .div_ceil(bs)
        .clamp(1, MAX_GENERATION_BLOCKS as usize);
    let whole = window(data, 0, blocks * bs);
    check(&whole);
    check(&resealed(&whole, GENERATION_CRC_AT));
}

fuzz_target!(|data: &[u8]| {
    superblocks(data);
    checkpoints(data);
    for bs in [512, 4096] {
        forward(data, bs);
        generations(data, bs);
    }
});
