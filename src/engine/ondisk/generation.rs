//! Backward-journal generation records: one per snapshot, listing the undo
//! extents (volume range and where its saved mirror contents sit in the
//! backward data area), the point the undo data restores and the sync target.
//!
//! Invariants: a record is written only after its undo data is durable, and the
//! mirror is overwritten only after the record is durable (invariant 3); a
//! record spans contiguous descriptor blocks and one crc covers all of them, so
//! a torn record is simply absent. A record never wraps the area's end: the
//! writer leaves a WRAP block and continues at the next lap.

use super::codec::{seal, sealed_ok, Decoder, Encoder};
use crate::engine::error::Result;
use crate::engine::point::{MarkerKind, MAX_LABEL_BYTES};

pub const MAGIC: u32 = u32::from_le_bytes(*b"RWBG");
pub const WRAP_MAGIC: u32 = u32::from_le_bytes(*b"RWBW");
pub const VERSION: u16 = 1;
const CRC_AT: usize = 152;
const EXTENTS_AT: usize = 160;
const EXTENT_BYTES: usize = 24;
const REGION: &str = "backward generation record";

/// One undo extent: `nblocks` at volume `lba`, saved at backward data position `data_pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UndoExtent {
    pub lba: u64,
    pub nblocks: u32,
    pub data_pos: u64,
}

/// A snapshot generation as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationRecord {
    pub id: u64,
    /// The point this generation's undo data restores (the mirror's seq before the sync).
    pub point_seq: u64,
    pub point_time_ns: u64,
    pub point_marker: Option<MarkerKind>,
    pub point_label: Option<String>,
    /// The seq the sync moved the mirror to.
    pub target_seq: u64,
    /// Write and write-zeroes records in `(point_seq, target_seq]` across all
    /// rings: recovery checks it before completing an interrupted sync.
    pub change_records: u64,
    /// Backward data positions `[data_start, data_end)` this generation owns.
    pub data_start: u64,
    pub data_end: u64,
    pub extents: Vec<UndoExtent>,
}

/// Blocks a record with `extents` undo extents occupies.
pub fn record_blocks(extents: usize, block_size: usize) -> u64 {
    (EXTENTS_AT + extents * EXTENT_BYTES).div_ceil(block_size) as u64
}

impl GenerationRecord {
    /// Encodes into `out` (exactly `record_blocks` blocks) for logical position `pos`.
    pub fn encode(&self, out: &mut [u8], pos: u64, uuid: &[u8; 16], block_size: usize) {
        let blocks = record_blocks(self.extents.len(), block_size);
        assert_eq!(out.len() as u64, blocks * block_size as u64);
        out.fill(0);
        let mut e = Encoder::new(out);
        e.u32(0, MAGIC);
        e.u16(4, VERSION);
        e.u64(8, pos);
        e.bytes(16, uuid);
        e.u64(32, self.id);
        e.u64(40, self.point_seq);
        e.u64(48, self.point_time_ns);
        e.u8(56, MarkerKind::code_of(self.point_marker));
        let label = self.point_label.as_deref().unwrap_or("");
        assert!(label.len() <= MAX_LABEL_BYTES);
        e.u8(57, label.len() as u8);
        e.u64(64, self.target_seq);
        e.u64(72, self.change_records);
        e.u64(80, self.extents.len() as u64);
        e.u32(88, blocks as u32);
        e.u64(96, self.data_start);
        e.u64(104, self.data_end);
        e.bytes(112, label.as_bytes());
        for (i, x) in self.extents.iter().enumerate() {
            let at = EXTENTS_AT + i * EXTENT_BYTES;
            e.u64(at, x.lba);
            e.u32(at + 8, x.nblocks);
            e.u64(at + 16, x.data_pos);
        }
        seal(out, CRC_AT);
    }
}

/// Encodes a WRAP block: "the next record starts at the next lap".
pub fn encode_wrap(out: &mut [u8], pos: u64, uuid: &[u8; 16]) {
    out.fill(0);
    let mut e = Encoder::new(out);
    e.u32(0, WRAP_MAGIC);
    e.u16(4, VERSION);
    e.u64(8, pos);
    e.bytes(16, uuid);
    seal(out, CRC_AT);
}

/// What the first block at a position says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadBlock {
    /// A record of this many blocks starts here (read them all, then `decode`).
    Record { blocks: u64 },
    /// Continue at the next lap.
    Wrap,
    /// Nothing of ours here: the end of the journal.
    End,
}

/// Reads the header of the block at `pos`. A block with our magic, uuid and
/// position whose record cannot be complete is `End` as well; `decode` makes
/// the final call on the whole record.
pub fn peek(block: &[u8], pos: u64, uuid: &[u8; 16], max_blocks: u64) -> HeadBlock {
    let d = Decoder::new(block, REGION);
    let ours = d.bytes(16, 16).map(|u| u == uuid).unwrap_or(false)
        && d.u64(8).map(|p| p == pos).unwrap_or(false);
    if !ours {
        return HeadBlock::End;
    }
    match d.u32(0) {
        Ok(WRAP_MAGIC) if sealed_ok(block, CRC_AT) => HeadBlock::Wrap,
        Ok(MAGIC) => match d.u32(88) {
            Ok(b) if b >= 1 && u64::from(b) <= max_blocks => HeadBlock::Record {
                blocks: u64::from(b),
            },
            _ => HeadBlock::End,
        },
        _ => HeadBlock::End,
    }
}

/// Decodes a whole record read from `pos`; `Err` when torn or damaged.
pub fn decode(
    buf: &[u8],
    pos: u64,
    uuid: &[u8; 16],
    block_size: usize,
) -> Result<GenerationRecord> {
    let d = Decoder::new(buf, REGION);
    if d.u32(0)? != MAGIC || d.u64(8)? != pos || d.bytes(16, 16)? != uuid {
        return Err(d.corrupt("not a generation record of this volume at this position"));
    }
    if !sealed_ok(buf, CRC_AT) {
        return Err(d.corrupt("checksum mismatch (torn or damaged)"));
    }
    let version = d.u16(4)?;
    if version != VERSION {
        return Err(crate::engine::error::EngineError::UnsupportedVersion {
            region: REGION,
            found: u32::from(version),
            supported: u32::from(VERSION),
        });
    }
    let count = d.u64(80)?;
    let blocks = u64::from(d.u32(88)?);
    if count > (buf.len() as u64) / EXTENT_BYTES as u64
        || record_blocks(count as usize, block_size) != blocks
        || blocks * block_size as u64 != buf.len() as u64
    {
        return Err(d.corrupt(format!("{count} extents do not match {blocks} blocks")));
    }
    let label_len = usize::from(d.u8(57)?);
    if label_len > MAX_LABEL_BYTES {
        return Err(d.corrupt("label length"));
    }
    let label = d.label(112, label_len)?;
    let point_marker =
        MarkerKind::optional_from_code(d.u8(56)?).map_err(|_| d.corrupt("unknown marker kind"))?;
    let extents = (0..count as usize)
        .map(|i| {
            let at = EXTENTS_AT + i * EXTENT_BYTES;
            let x = UndoExtent {
                lba: d.u64(at)?,
                nblocks: d.u32(at + 8)?,
                data_pos: d.u64(at + 16)?,
            };
            if x.nblocks == 0 {
                return Err(d.corrupt("zero-length undo extent"));
            }
            Ok(x)
        })
        .collect::<Result<Vec<_>>>()?;
    let record = GenerationRecord {
        id: d.u64(32)?,
        point_seq: d.u64(40)?,
        point_time_ns: d.u64(48)?,
        point_marker,
        point_label: (label_len > 0).then_some(label),
        target_seq: d.u64(64)?,
        change_records: d.u64(72)?,
        data_start: d.u64(96)?,
        data_end: d.u64(104)?,
        extents,
    };
    if record.target_seq <= record.point_seq || record.data_end < record.data_start {
        return Err(d.corrupt("inconsistent seq or data range"));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize) -> GenerationRecord {
        GenerationRecord {
            id: 3,
            point_seq: 10,
            point_time_ns: 99,
            point_marker: Some(MarkerKind::Bookmark),
            point_label: Some("pre".into()),
            target_seq: 20,
            change_records: 4,
            data_start: 100,
            data_end: 100 + n as u64,
            extents: (0..n)
                .map(|i| UndoExtent {
                    lba: i as u64 * 2,
                    nblocks: 1,
                    data_pos: 100 + i as u64,
                })
                .collect(),
        }
    }

    #[test]
    fn multi_block_round_trip_and_torn() {
        let uuid = [9u8; 16];
        for n in [1usize, 14, 15, 100] {
            let blocks = record_blocks(n, 512);
            let mut buf = vec![0u8; blocks as usize * 512];
            rec(n).encode(&mut buf, 7, &uuid, 512);
            assert_eq!(
                peek(&buf[..512], 7, &uuid, 1000),
                HeadBlock::Record { blocks }
            );
            assert_eq!(decode(&buf, 7, &uuid, 512).unwrap(), rec(n));
            let last = buf.len() - 1;
            buf[last] ^= 1;
            assert!(
                decode(&buf, 7, &uuid, 512).is_err(),
                "damage in the last block is detected"
            );
        }
    }

    #[test]
    fn wrap_and_end() {
        let uuid = [9u8; 16];
        let mut b = vec![0u8; 512];
        encode_wrap(&mut b, 5, &uuid);
        assert_eq!(peek(&b, 5, &uuid, 10), HeadBlock::Wrap);
        assert_eq!(peek(&b, 6, &uuid, 10), HeadBlock::End);
        assert_eq!(peek(&[0u8; 512], 5, &uuid, 10), HeadBlock::End);
    }
}
