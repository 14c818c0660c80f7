//! Checkpoints: where the journals start and what the mirror holds, written
//! A/B with a generation number after every sync and expiry.
//!
//! Invariants: a checkpoint is written (and flushed) only after everything it
//! claims is durable — the mirror state `mim_seq` (invariant 4: forward space
//! behind `ring tails` is recycled only once this is durable) and the backward
//! tail (space behind it is reused only once this is durable). Recovery scans
//! forward from the tails of the newest valid copy.

use super::codec::{seal, sealed_ok, Decoder, Encoder};
use crate::engine::error::{EngineError, Result};
use crate::engine::geometry::SLOT_BYTES;
use crate::engine::point::{MarkerKind, MAX_LABEL_BYTES};

pub const MAGIC: &[u8; 8] = b"RWNDCKPT";
pub const VERSION: u32 = 1;
const CRC_AT: usize = SLOT_BYTES as usize - 4;
const RINGS_AT: usize = 160;
const REGION: &str = "checkpoint";

/// Tails of one forward ring: the oldest positions still holding live records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RingTails {
    pub desc: u64,
    pub data: u64,
}

/// The decoded checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub generation: u64,
    pub uuid: [u8; 16],
    /// The mirror holds the volume as of this seq.
    pub mim_seq: u64,
    pub mim_time_ns: u64,
    pub mim_marker: Option<MarkerKind>,
    pub mim_label: Option<String>,
    /// Every seq ever handed out is below this (seqs never repeat after recovery).
    pub seq_floor: u64,
    /// Oldest live position of the backward descriptor and data areas.
    pub backward_desc_tail: u64,
    pub backward_data_tail: u64,
    /// Generation id at the backward tail (the oldest retained one).
    pub oldest_generation: u64,
    /// Generations with ids below this were committed before this checkpoint;
    /// recovery reports any of them it cannot find as lost.
    pub next_generation: u64,
    /// Writer rings then the control ring.
    pub rings: Vec<RingTails>,
}

impl Checkpoint {
    /// Largest ring count a checkpoint slot holds.
    pub const MAX_RINGS: usize = (CRC_AT - RINGS_AT) / 16;

    pub fn encode(&self, out: &mut [u8]) {
        assert_eq!(out.len(), SLOT_BYTES as usize);
        assert!(self.rings.len() <= Self::MAX_RINGS);
        out.fill(0);
        let mut e = Encoder::new(out);
        e.bytes(0, MAGIC);
        e.u32(8, VERSION);
        e.u16(12, self.rings.len() as u16);
        e.u8(14, MarkerKind::code_of(self.mim_marker));
        let label = self.mim_label.as_deref().unwrap_or("");
        assert!(label.len() <= MAX_LABEL_BYTES);
        e.u8(15, label.len() as u8);
        e.u64(16, self.generation);
        e.bytes(24, &self.uuid);
        e.u64(40, self.mim_seq);
        e.u64(48, self.mim_time_ns);
        e.u64(56, self.seq_floor);
        e.u64(64, self.backward_desc_tail);
        e.u64(72, self.backward_data_tail);
        e.u64(80, self.oldest_generation);
        e.u64(88, self.next_generation);
        e.bytes(96, label.as_bytes());
        for (i, t) in self.rings.iter().enumerate() {
            e.u64(RINGS_AT + 16 * i, t.desc);
            e.u64(RINGS_AT + 16 * i + 8, t.data);
        }
        seal(out, CRC_AT);
    }

    pub fn decode(buf: &[u8], uuid: &[u8; 16]) -> Result<Self> {
        let d = Decoder::new(buf, REGION);
        if d.bytes(0, 8)? != MAGIC {
            return Err(EngineError::BadMagic { region: REGION });
        }
        if buf.len() != SLOT_BYTES as usize || !sealed_ok(buf, CRC_AT) {
            return Err(d.corrupt("checksum mismatch"));
        }
        let version = d.u32(8)?;
        if version != VERSION {
            return Err(EngineError::UnsupportedVersion {
                region: REGION,
                found: version,
                supported: VERSION,
            });
        }
        if d.bytes(24, 16)? != uuid {
            return Err(d.corrupt("belongs to another volume (uuid mismatch)"));
        }
        let count = usize::from(d.u16(12)?);
        if count > Self::MAX_RINGS {
            return Err(d.corrupt(format!("{count} rings exceed the slot")));
        }
        let mim_marker = MarkerKind::optional_from_code(d.u8(14)?)
            .map_err(|_| d.corrupt("unknown marker kind"))?;
        let label_len = usize::from(d.u8(15)?);
        if label_len > MAX_LABEL_BYTES {
            return Err(d.corrupt("label length"));
        }
        let label = d.label(96, label_len)?;
        let rings = (0..count)
            .map(|i| {
                Ok(RingTails {
                    desc: d.u64(RINGS_AT + 16 * i)?,
                    data: d.u64(RINGS_AT + 16 * i + 8)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut id = [0u8; 16];
        id.copy_from_slice(d.bytes(24, 16)?);
        Ok(Checkpoint {
            generation: d.u64(16)?,
            uuid: id,
            mim_seq: d.u64(40)?,
            mim_time_ns: d.u64(48)?,
            mim_marker,
            mim_label: (label_len > 0).then_some(label),
            seq_floor: d.u64(56)?,
            backward_desc_tail: d.u64(64)?,
            backward_data_tail: d.u64(72)?,
            oldest_generation: d.u64(80)?,
            next_generation: d.u64(88)?,
            rings,
        })
    }

    /// The newest valid copy; an error when neither copy is valid.
    pub fn choose(a: &[u8], b: &[u8], uuid: &[u8; 16]) -> Result<Self> {
        match (Self::decode(a, uuid), Self::decode(b, uuid)) {
            (Ok(x), Ok(y)) => Ok(if y.generation > x.generation { y } else { x }),
            (Ok(x), Err(_)) | (Err(_), Ok(x)) => Ok(x),
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// Slot (0 = A, 1 = B) the next copy goes to: never the newest one.
    pub fn slot_for(generation: u64) -> usize {
        (generation % 2) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ck(generation: u64) -> Checkpoint {
        Checkpoint {
            generation,
            uuid: [3; 16],
            mim_seq: 77,
            mim_time_ns: 5,
            mim_marker: Some(MarkerKind::Bookmark),
            mim_label: Some("before-deploy".into()),
            seq_floor: 100,
            backward_desc_tail: 9,
            backward_data_tail: 11,
            oldest_generation: 2,
            next_generation: 6,
            rings: vec![
                RingTails { desc: 1, data: 2 },
                RingTails { desc: 3, data: 4 },
            ],
        }
    }

    #[test]
    fn round_trip_choice_and_foreign_uuid() {
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        ck(4).encode(&mut a);
        ck(5).encode(&mut b);
        assert_eq!(Checkpoint::decode(&a, &[3; 16]).unwrap(), ck(4));
        assert_eq!(Checkpoint::choose(&a, &b, &[3; 16]).unwrap().generation, 5);
        b[200] ^= 1;
        assert_eq!(Checkpoint::choose(&a, &b, &[3; 16]).unwrap().generation, 4);
        assert!(Checkpoint::decode(&a, &[4; 16]).is_err());
        assert_eq!(Checkpoint::slot_for(4), 0);
        assert_eq!(Checkpoint::slot_for(5), 1);
    }
}
