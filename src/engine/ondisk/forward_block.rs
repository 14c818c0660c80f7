//! Forward-journal descriptor blocks: one block per commit batch of a ring,
//! holding the descriptors (seq, time, extent, data position, data crc) of the
//! writes, write-zeroes and markers in that batch.
//!
//! Invariants: a block is written once and never rewritten in place (torn
//! writes cannot damage an acknowledged descriptor); it names its ring, its
//! logical position and the volume uuid, so a stale block from an earlier lap
//! or an earlier format never validates; seqs inside a block strictly increase.

use super::codec::{seal, sealed_ok, Decoder, Encoder};
use crate::engine::error::{EngineError, Result};
use crate::engine::point::{MarkerKind, MAX_LABEL_BYTES};

pub const MAGIC: u32 = u32::from_le_bytes(*b"RWFJ");
pub const VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 64;
pub const ENTRY_BYTES: usize = 64;
const CRC_AT: usize = 60;
const REGION: &str = "forward descriptor block";

const KIND_WRITE: u8 = 1;
const KIND_ZERO: u8 = 2;
const KIND_MARKER: u8 = 3;

/// What a forward record does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordBody {
    /// `nblocks` of data at `lba`, stored at ring data position `data_pos`.
    Write {
        lba: u64,
        nblocks: u32,
        data_pos: u64,
        data_crc: u32,
    },
    /// `nblocks` of zeroes at `lba` (write-zeroes, deallocate): no data stored.
    Zero { lba: u64, nblocks: u32 },
    /// A consistency point.
    Marker {
        kind: MarkerKind,
        label: Option<Box<str>>,
    },
}

/// One forward-journal record as decoded (or about to be encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRecord {
    pub seq: u64,
    pub time_ns: u64,
    pub body: RecordBody,
}

impl ForwardRecord {
    /// The volume extent this record changes, if it changes one.
    pub fn extent(&self) -> Option<(u64, u32)> {
        match self.body {
            RecordBody::Write { lba, nblocks, .. } | RecordBody::Zero { lba, nblocks } => {
                Some((lba, nblocks))
            }
            RecordBody::Marker { .. } => None,
        }
    }
}

/// The header fields a block must carry to be accepted at a position.
#[derive(Clone, Copy, Debug)]
pub struct BlockIdentity<'a> {
    pub ring: u16,
    pub pos: u64,
    pub uuid: &'a [u8; 16],
}

/// Encodes `records` into one descriptor block.
pub fn encode(out: &mut [u8], id: BlockIdentity<'_>, records: &[ForwardRecord]) {
    encode_each(out, id, records.iter());
}

/// [`encode`] of records the caller holds inside other structures (the ring
/// writer's batch entries), so nothing is cloned into a slice first.
pub fn encode_each<'r>(
    out: &mut [u8],
    id: BlockIdentity<'_>,
    records: impl ExactSizeIterator<Item = &'r ForwardRecord>,
) {
    let capacity = (out.len() - HEADER_BYTES) / ENTRY_BYTES;
    let count = records.len();
    assert!(
        count > 0 && count <= capacity,
        "{count} records for a block of {capacity}"
    );
    out.fill(0);
    let mut e = Encoder::new(out);
    e.u32(0, MAGIC);
    e.u16(4, VERSION);
    e.u16(6, count as u16);
    e.u16(8, id.ring);
    e.u64(16, id.pos);
    e.bytes(24, id.uuid);
    let mut last_seq = None;
    let mut encoded = 0;
    for r in records {
        assert!(
            last_seq.is_none_or(|s| s < r.seq),
            "records in a block must have increasing seqs"
        );
        if last_seq.is_none() {
            e.u64(40, r.seq);
        }
        last_seq = Some(r.seq);
        let at = HEADER_BYTES + encoded * ENTRY_BYTES;
        encoded += 1;
        e.u64(at + 8, r.seq);
        e.u64(at + 16, r.time_ns);
        match &r.body {
            RecordBody::Write {
                lba,
                nblocks,
                data_pos,
                data_crc,
            } => {
                e.u8(at, KIND_WRITE);
                e.u32(at + 4, *nblocks);
                e.u64(at + 24, *lba);
                e.u64(at + 32, *data_pos);
                e.u32(at + 40, *data_crc);
            }
            RecordBody::Zero { lba, nblocks } => {
                e.u8(at, KIND_ZERO);
                e.u32(at + 4, *nblocks);
                e.u64(at + 24, *lba);
            }
            RecordBody::Marker { kind, label } => {
                e.u8(at, KIND_MARKER);
                e.u8(at + 1, kind.code());
                let l = label.as_deref().unwrap_or("");
                assert!(l.len() <= MAX_LABEL_BYTES);
                e.u8(at + 2, l.len() as u8);
                e.bytes(at + 24, l.as_bytes());
            }
        }
    }
    assert_eq!(encoded, count, "the iterator's length is its record count");
    seal(out, CRC_AT);
}

/// Why a block at a position is not a valid continuation of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockRejection {
    /// Never written, or written by another ring, lap or volume: the end of the ring.
    NotHere,
    /// Looks like ours but does not check out: a torn write or damage.
    Damaged(String),
}

/// Decodes the block that should sit at `id.pos` of ring `id.ring`.
pub fn decode(
    buf: &[u8],
    id: BlockIdentity<'_>,
) -> std::result::Result<Vec<ForwardRecord>, BlockRejection> {
    let d = Decoder::new(buf, REGION);
    let field = |r: Result<u64>| r.map_err(|e: EngineError| BlockRejection::Damaged(e.to_string()));
    if buf.len() < HEADER_BYTES + ENTRY_BYTES {
        return Err(BlockRejection::Damaged("block too small".into()));
    }
    if field(d.u32(0).map(u64::from))? != u64::from(MAGIC) {
        return Err(BlockRejection::NotHere);
    }
    // Identity first: a valid block from another lap/ring/volume is the end, not damage.
    let same_place = d.bytes(24, 16).map(|u| u == id.uuid).unwrap_or(false)
        && d.u16(8).map(|r| r == id.ring).unwrap_or(false)
        && d.u64(16).map(|p| p == id.pos).unwrap_or(false);
    if !sealed_ok(buf, CRC_AT) {
        return Err(if same_place {
            BlockRejection::Damaged("checksum mismatch".into())
        } else {
            BlockRejection::NotHere
        });
    }
    if !same_place {
        return Err(BlockRejection::NotHere);
    }
    let version = field(d.u16(4).map(u64::from))?;
    if version != u64::from(VERSION) {
        return Err(BlockRejection::Damaged(format!(
            "format version {version}, expected {VERSION}"
        )));
    }
    let count = field(d.u16(6).map(u64::from))? as usize;
    let capacity = (buf.len() - HEADER_BYTES) / ENTRY_BYTES;
    if count == 0 || count > capacity {
        return Err(BlockRejection::Damaged(format!(
            "{count} entries in a block of {capacity}"
        )));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = HEADER_BYTES + i * ENTRY_BYTES;
        let seq = field(d.u64(at + 8))?;
        let time_ns = field(d.u64(at + 16))?;
        let nblocks = field(d.u32(at + 4).map(u64::from))? as u32;
        let body = match field(d.u8(at).map(u64::from))? as u8 {
            KIND_WRITE => RecordBody::Write {
                lba: field(d.u64(at + 24))?,
                nblocks,
                data_pos: field(d.u64(at + 32))?,
                data_crc: field(d.u32(at + 40).map(u64::from))? as u32,
            },
            KIND_ZERO => RecordBody::Zero {
                lba: field(d.u64(at + 24))?,
                nblocks,
            },
            KIND_MARKER => {
                let kind = MarkerKind::from_code(field(d.u8(at + 1).map(u64::from))? as u8)
                    .ok_or_else(|| BlockRejection::Damaged("unknown marker kind".into()))?;
                let len = field(d.u8(at + 2).map(u64::from))? as usize;
                if len > MAX_LABEL_BYTES {
                    return Err(BlockRejection::Damaged("label length".into()));
                }
                let label = d
                    .label(at + 24, len)
                    .map_err(|e| BlockRejection::Damaged(e.to_string()))?;
                RecordBody::Marker {
                    kind,
                    label: (len > 0).then(|| label.into_boxed_str()),
                }
            }
            other => {
                return Err(BlockRejection::Damaged(format!(
                    "unknown record kind {other}"
                )))
            }
        };
        if matches!(body, RecordBody::Write { .. } | RecordBody::Zero { .. }) && nblocks == 0 {
            return Err(BlockRejection::Damaged("zero-length extent".into()));
        }
        if let Some(prev) = out.last().map(|r: &ForwardRecord| r.seq) {
            if seq <= prev {
                return Err(BlockRejection::Damaged(format!("seq {seq} after {prev}")));
            }
        }
        out.push(ForwardRecord { seq, time_ns, body });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<ForwardRecord> {
        vec![
            ForwardRecord {
                seq: 5,
                time_ns: 10,
                body: RecordBody::Write {
                    lba: 3,
                    nblocks: 2,
                    data_pos: 17,
                    data_crc: 0xabcd,
                },
            },
            ForwardRecord {
                seq: 6,
                time_ns: 11,
                body: RecordBody::Zero {
                    lba: 0,
                    nblocks: 64,
                },
            },
            ForwardRecord {
                seq: 9,
                time_ns: 12,
                body: RecordBody::Marker {
                    kind: MarkerKind::Bookmark,
                    label: Some("nightly".into()),
                },
            },
            ForwardRecord {
                seq: 10,
                time_ns: 12,
                body: RecordBody::Marker {
                    kind: MarkerKind::Flush,
                    label: None,
                },
            },
        ]
    }

    #[test]
    fn round_trip() {
        let uuid = [1u8; 16];
        let id = BlockIdentity {
            ring: 2,
            pos: 40,
            uuid: &uuid,
        };
        let mut b = vec![0u8; 512];
        encode(&mut b, id, &records());
        assert_eq!(decode(&b, id).unwrap(), records());
    }

    #[test]
    fn stale_foreign_and_torn_blocks() {
        let uuid = [1u8; 16];
        let id = BlockIdentity {
            ring: 2,
            pos: 40,
            uuid: &uuid,
        };
        let mut b = vec![0u8; 512];
        encode(&mut b, id, &records());
        assert_eq!(
            decode(&b, BlockIdentity { pos: 40 + 8, ..id }),
            Err(BlockRejection::NotHere),
            "earlier lap"
        );
        assert_eq!(
            decode(&b, BlockIdentity { ring: 1, ..id }),
            Err(BlockRejection::NotHere),
            "other ring"
        );
        assert_eq!(
            decode(
                &b,
                BlockIdentity {
                    uuid: &[2; 16],
                    ..id
                }
            ),
            Err(BlockRejection::NotHere),
            "other volume"
        );
        assert_eq!(
            decode(&vec![0u8; 512], id),
            Err(BlockRejection::NotHere),
            "never written"
        );
        let mut torn = b.clone();
        torn[300] ^= 0x55;
        assert!(matches!(decode(&torn, id), Err(BlockRejection::Damaged(_))));
    }
}
