//! The superblock: volume identity and geometry, written A/B with a generation
//! number so a torn update never leaves the volume without a valid copy.
//!
//! Invariant: `open` uses the valid copy with the highest generation; a volume
//! with no valid copy is refused with a typed error, never guessed at.

use super::codec::{seal, sealed_ok, Decoder, Encoder};
use crate::engine::error::{EngineError, Result};
use crate::engine::geometry::{Geometry, SLOT_BYTES};

pub const MAGIC: &[u8; 8] = b"RWNDSUPR";
pub const VERSION: u32 = 1;
const CRC_AT: usize = SLOT_BYTES as usize - 4;
const REGION: &str = "superblock";

/// The decoded superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub generation: u64,
    pub uuid: [u8; 16],
    pub created_ns: u64,
    pub geometry: Geometry,
}

impl Superblock {
    /// Encodes into a `SLOT_BYTES` buffer.
    pub fn encode(&self, out: &mut [u8]) {
        assert_eq!(out.len(), SLOT_BYTES as usize);
        out.fill(0);
        let g = &self.geometry;
        let mut e = Encoder::new(out);
        e.bytes(0, MAGIC);
        e.u32(8, VERSION);
        e.u64(16, self.generation);
        e.bytes(24, &self.uuid);
        e.u64(40, self.created_ns);
        e.u32(48, g.block_size);
        e.u16(52, g.rings);
        e.u64(56, g.volume_blocks);
        e.u64(64, g.ring_desc_blocks);
        e.u64(72, g.ring_data_blocks);
        e.u64(80, g.backward_desc_blocks);
        e.u64(88, g.backward_data_blocks);
        seal(out, CRC_AT);
    }

    /// Decodes one copy; `Err` says why it is not usable.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let d = Decoder::new(buf, REGION);
        if d.bytes(0, 8)? != MAGIC {
            return Err(EngineError::BadMagic { region: REGION });
        }
        if !sealed_ok(buf, CRC_AT) || buf.len() != SLOT_BYTES as usize {
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
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(d.bytes(24, 16)?);
        let geometry = Geometry {
            block_size: d.u32(48)?,
            rings: d.u16(52)?,
            volume_blocks: d.u64(56)?,
            ring_desc_blocks: d.u64(64)?,
            ring_data_blocks: d.u64(72)?,
            backward_desc_blocks: d.u64(80)?,
            backward_data_blocks: d.u64(88)?,
        };
        geometry
            .validate()
            .map_err(|e| d.corrupt(format!("geometry: {e}")))?;
        Ok(Superblock {
            generation: d.u64(16)?,
            uuid,
            created_ns: d.u64(40)?,
            geometry,
        })
    }

    /// Picks the newest valid of the two copies. When neither is valid, the
    /// error of copy A explains why (bad magic means "not a rewind volume").
    pub fn choose(a: &[u8], b: &[u8]) -> Result<Self> {
        match (Self::decode(a), Self::decode(b)) {
            (Ok(x), Ok(y)) => Ok(if y.generation > x.generation { y } else { x }),
            (Ok(x), Err(_)) | (Err(_), Ok(x)) => Ok(x),
            (Err(ea), Err(eb)) => Err(match (&ea, &eb) {
                (EngineError::BadMagic { .. }, EngineError::BadMagic { .. }) => ea,
                (EngineError::BadMagic { .. }, _) => eb,
                _ => ea,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(generation: u64) -> Superblock {
        Superblock {
            generation,
            uuid: [7; 16],
            created_ns: 42,
            geometry: Geometry {
                block_size: 512,
                volume_blocks: 64,
                rings: 2,
                ring_desc_blocks: 8,
                ring_data_blocks: 32,
                backward_desc_blocks: 8,
                backward_data_blocks: 64,
            },
        }
    }

    #[test]
    fn round_trip_and_choice() {
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        sb(1).encode(&mut a);
        sb(2).encode(&mut b);
        assert_eq!(Superblock::decode(&a).unwrap(), sb(1));
        assert_eq!(Superblock::choose(&a, &b).unwrap().generation, 2);
        b[100] ^= 0xff;
        assert_eq!(
            Superblock::choose(&a, &b).unwrap().generation,
            1,
            "a torn B falls back to A"
        );
    }

    #[test]
    fn typed_errors() {
        let zero = vec![0u8; 4096];
        assert_eq!(
            Superblock::choose(&zero, &zero),
            Err(EngineError::BadMagic { region: REGION })
        );
        let mut a = vec![0u8; 4096];
        sb(1).encode(&mut a);
        a[8] = 9;
        seal(&mut a, CRC_AT);
        assert!(matches!(
            Superblock::decode(&a),
            Err(EngineError::UnsupportedVersion { found: 9, .. })
        ));
        assert!(Superblock::decode(&a[..100]).is_err());
    }
}
