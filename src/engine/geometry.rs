//! Geometry (the sizes chosen at format time) and layout (where each region
//! lives on the device).
//!
//! Invariant: the layout is a pure function of the geometry, so the superblock
//! stores only the geometry and every open recomputes identical offsets. Regions
//! never overlap and each starts on a 4096-byte boundary.

use super::error::{EngineError, Result};
use serde::{Deserialize, Serialize};

/// Bytes reserved for one superblock or checkpoint copy.
pub const SLOT_BYTES: u64 = 4096;
/// Every region starts on this boundary (O_DIRECT on any sector size).
pub const REGION_ALIGN: u64 = 4096;
/// At most this many writer rings (one per reactor core).
pub const MAX_RINGS: u16 = 64;
/// Largest single write, in bytes, whatever the ring size (1 MiB, above any NVMe MDTS we advertise).
pub const MAX_WRITE_BYTES: u64 = 1 << 20;

/// Sizes of one volume, fixed at format time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geometry {
    /// Logical block size in bytes: 512 or 4096.
    pub block_size: u32,
    /// Blocks the volume presents to hosts (the size of the mirror).
    pub volume_blocks: u64,
    /// Writer rings: one per reactor core that accepts writes.
    pub rings: u16,
    /// Descriptor blocks per writer ring.
    pub ring_desc_blocks: u64,
    /// Data blocks per writer ring.
    pub ring_data_blocks: u64,
    /// Descriptor blocks of the backward journal (generation records).
    pub backward_desc_blocks: u64,
    /// Data blocks of the backward journal (undo data).
    pub backward_data_blocks: u64,
}

impl Geometry {
    /// A geometry with proportions that suit a general-purpose volume: a
    /// forward journal of 1/8 of the volume split across the rings and a
    /// backward journal of 1/2 of the volume.
    pub fn for_volume(block_size: u32, volume_bytes: u64, rings: u16) -> Result<Self> {
        check_block_size(block_size)?;
        let bs = u64::from(block_size);
        let volume_blocks = volume_bytes / bs;
        let rings_u64 = u64::from(rings.max(1));
        let ring_data_blocks = (volume_blocks / 8 / rings_u64).max(4 * MAX_WRITE_BYTES / bs);
        // A batch takes one descriptor block however few writes it holds, and at
        // low queue depth every write is its own batch: with one descriptor block
        // per data block, small writes never run out of descriptors before data.
        let ring_desc_blocks = ring_data_blocks.max(64);
        let backward_data_blocks = (volume_blocks / 2).max(4 * MAX_WRITE_BYTES / bs);
        let backward_desc_blocks = (backward_data_blocks / 16).max(64);
        let g = Geometry {
            block_size,
            volume_blocks,
            rings: rings.max(1),
            ring_desc_blocks,
            ring_data_blocks,
            backward_desc_blocks,
            backward_data_blocks,
        };
        g.validate()?;
        Ok(g)
    }

    /// Checks internal consistency (not the device size: see [`Layout::check_device`]).
    pub fn validate(&self) -> Result<()> {
        check_block_size(self.block_size)?;
        let bad = |m: String| Err(EngineError::InvalidGeometry(m));
        if self.volume_blocks == 0 {
            return bad("volume_blocks must be positive".into());
        }
        if self.rings == 0 || self.rings > MAX_RINGS {
            return bad(format!("rings must be 1..={MAX_RINGS}, got {}", self.rings));
        }
        if self.ring_desc_blocks < 4 {
            return bad(format!(
                "ring_desc_blocks must be at least 4, got {}",
                self.ring_desc_blocks
            ));
        }
        if self.ring_data_blocks < 8 {
            return bad(format!(
                "ring_data_blocks must be at least 8, got {}",
                self.ring_data_blocks
            ));
        }
        if self.backward_desc_blocks < 8 {
            return bad(format!(
                "backward_desc_blocks must be at least 8, got {}",
                self.backward_desc_blocks
            ));
        }
        if self.backward_data_blocks < 8 {
            return bad(format!(
                "backward_data_blocks must be at least 8, got {}",
                self.backward_data_blocks
            ));
        }
        // A sync step saves at most half the backward journal, and one write
        // alone must fit in such a step.
        if self.backward_data_blocks < 4 * u64::from(self.max_write_blocks()) {
            return bad(format!("backward_data_blocks ({}) must hold at least 4 of the largest writes ({} blocks each)", self.backward_data_blocks, self.max_write_blocks()));
        }
        // Positions are u64 block counts; byte offsets must not overflow.
        let total = [
            self.volume_blocks,
            self.ring_data_blocks,
            self.ring_desc_blocks,
            self.backward_data_blocks,
            self.backward_desc_blocks,
        ]
        .iter()
        .try_fold(0u64, |acc, &b| {
            acc.checked_add(b.checked_mul(u64::from(self.block_size) * u64::from(self.rings) + 1)?)
        });
        if total.is_none_or(|t| t > (1u64 << 56)) {
            return bad("sizes overflow the 2^56-byte addressing limit".into());
        }
        Ok(())
    }

    /// Block size as u64.
    pub fn bs(&self) -> u64 {
        u64::from(self.block_size)
    }

    /// Largest write accepted, in blocks: a quarter of a ring's data area,
    /// capped at [`MAX_WRITE_BYTES`].
    pub fn max_write_blocks(&self) -> u32 {
        let cap = (MAX_WRITE_BYTES / self.bs())
            .min(self.ring_data_blocks / 4)
            .max(1);
        u32::try_from(cap).unwrap_or(u32::MAX)
    }

    /// Largest write of zeroes accepted in one request, in blocks: a quarter
    /// of the backward data area, so the undo data of any one record fits a
    /// sync step (a sync cannot split a record). Never below the largest write.
    pub fn max_zeroes_blocks(&self) -> u64 {
        (self.backward_data_blocks / 4).max(u64::from(self.max_write_blocks()))
    }

    /// Descriptor entries that fit in one forward descriptor block.
    pub fn entries_per_desc_block(&self) -> usize {
        ((self.bs() - super::ondisk::forward_block::HEADER_BYTES as u64)
            / super::ondisk::forward_block::ENTRY_BYTES as u64) as usize
    }

    /// Descriptor blocks of the control ring (markers from the management plane
    /// and the sync worker): a fixed, small share of a writer ring.
    pub fn control_desc_blocks(&self) -> u64 {
        (self.ring_desc_blocks / 4).max(4)
    }
}

fn check_block_size(block_size: u32) -> Result<()> {
    match block_size {
        512 | 4096 => Ok(()),
        other => Err(EngineError::UnsupportedBlockSize(other)),
    }
}

/// One circular region pair of a forward ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    /// Byte offset of the descriptor area.
    pub desc_offset: u64,
    pub desc_blocks: u64,
    /// Byte offset of the data area.
    pub data_offset: u64,
    pub data_blocks: u64,
}

/// Byte offsets of every region, derived from a [`Geometry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub geometry: Geometry,
    pub superblock: [u64; 2],
    pub checkpoint: [u64; 2],
    pub mim_offset: u64,
    /// Writer rings `0..rings`, then the control ring at index `rings`.
    pub rings: Vec<RingLayout>,
    pub backward_desc_offset: u64,
    pub backward_data_offset: u64,
    /// First byte past the last region: the device must be at least this big.
    pub end: u64,
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(REGION_ALIGN) * REGION_ALIGN
}

impl Layout {
    /// Computes the layout; the geometry must be valid.
    pub fn new(geometry: &Geometry) -> Result<Self> {
        geometry.validate()?;
        let bs = geometry.bs();
        let mut at = 4 * SLOT_BYTES;
        let mim_offset = at;
        at = align_up(at + geometry.volume_blocks * bs);
        let mut rings = Vec::with_capacity(usize::from(geometry.rings) + 1);
        for ring in 0..=geometry.rings {
            let (desc_blocks, data_blocks) = if ring < geometry.rings {
                (geometry.ring_desc_blocks, geometry.ring_data_blocks)
            } else {
                (geometry.control_desc_blocks(), 0)
            };
            let desc_offset = at;
            at = align_up(at + desc_blocks * bs);
            let data_offset = at;
            at = align_up(at + data_blocks * bs);
            rings.push(RingLayout {
                desc_offset,
                desc_blocks,
                data_offset,
                data_blocks,
            });
        }
        let backward_desc_offset = at;
        at = align_up(at + geometry.backward_desc_blocks * bs);
        let backward_data_offset = at;
        at = align_up(at + geometry.backward_data_blocks * bs);
        Ok(Layout {
            geometry: geometry.clone(),
            superblock: [0, SLOT_BYTES],
            checkpoint: [2 * SLOT_BYTES, 3 * SLOT_BYTES],
            mim_offset,
            rings,
            backward_desc_offset,
            backward_data_offset,
            end: at,
        })
    }

    /// Fails with a typed error when the device cannot hold this layout.
    pub fn check_device(&self, info: &crate::device::DeviceInfo) -> Result<()> {
        if info.block_size > self.geometry.block_size {
            return Err(EngineError::BlockSizeBelowDevice {
                block: self.geometry.block_size,
                device: info.block_size,
            });
        }
        if info.size_bytes < self.end {
            return Err(EngineError::DeviceTooSmall {
                needed: self.end,
                available: info.size_bytes,
            });
        }
        Ok(())
    }

    /// Byte offset of volume block `lba` in the mirror.
    pub fn mim_byte(&self, lba: u64) -> u64 {
        debug_assert!(lba <= self.geometry.volume_blocks);
        self.mim_offset + lba * self.geometry.bs()
    }

    /// Byte offset of logical descriptor position `pos` of ring `ring`.
    pub fn ring_desc_byte(&self, ring: usize, pos: u64) -> u64 {
        let r = &self.rings[ring];
        r.desc_offset + (pos % r.desc_blocks) * self.geometry.bs()
    }

    /// Byte offset of logical data position `pos` of ring `ring`.
    pub fn ring_data_byte(&self, ring: usize, pos: u64) -> u64 {
        let r = &self.rings[ring];
        assert!(r.data_blocks > 0, "ring {ring} has no data area");
        r.data_offset + (pos % r.data_blocks) * self.geometry.bs()
    }

    /// Byte offset of logical backward descriptor position `pos`.
    pub fn backward_desc_byte(&self, pos: u64) -> u64 {
        self.backward_desc_offset + (pos % self.geometry.backward_desc_blocks) * self.geometry.bs()
    }

    /// Byte offset of logical backward data position `pos`.
    pub fn backward_data_byte(&self, pos: u64) -> u64 {
        self.backward_data_offset + (pos % self.geometry.backward_data_blocks) * self.geometry.bs()
    }

    /// Index of the control ring.
    pub fn control_ring(&self) -> usize {
        usize::from(self.geometry.rings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Geometry {
        Geometry {
            block_size: 512,
            volume_blocks: 100,
            rings: 2,
            ring_desc_blocks: 8,
            ring_data_blocks: 16,
            backward_desc_blocks: 8,
            backward_data_blocks: 32,
        }
    }

    #[test]
    fn regions_are_aligned_and_disjoint() {
        let l = Layout::new(&small()).unwrap();
        let mut regions = vec![(l.mim_offset, 100 * 512)];
        for r in &l.rings {
            regions.push((r.desc_offset, r.desc_blocks * 512));
            regions.push((r.data_offset, r.data_blocks * 512));
        }
        regions.push((l.backward_desc_offset, 8 * 512));
        regions.push((l.backward_data_offset, 32 * 512));
        assert_eq!(l.rings.len(), 3, "two writer rings and the control ring");
        let mut prev_end = 4 * SLOT_BYTES;
        for (off, len) in regions {
            assert_eq!(off % REGION_ALIGN, 0);
            assert!(off >= prev_end, "regions overlap");
            prev_end = off + len;
        }
        assert!(l.end >= prev_end);
    }

    #[test]
    fn bad_geometry_is_a_typed_error() {
        let mut g = small();
        g.block_size = 1000;
        assert_eq!(g.validate(), Err(EngineError::UnsupportedBlockSize(1000)));
        let mut g = small();
        g.rings = 0;
        assert!(matches!(g.validate(), Err(EngineError::InvalidGeometry(_))));
        let mut g = small();
        g.volume_blocks = u64::MAX / 2;
        assert!(matches!(g.validate(), Err(EngineError::InvalidGeometry(_))));
    }

    #[test]
    fn for_volume_is_valid() {
        let g = Geometry::for_volume(4096, 1 << 30, 2).unwrap();
        assert!(g.ring_data_blocks >= 1024);
        assert_eq!(g.max_write_blocks(), 256);
        Layout::new(&g).unwrap();
    }
}
