//! NVMe/TCP header and data digests: CRC32C (Castagnoli) over the PDU
//! header (HLEN bytes) or over the PDU data, stored little-endian after it.
//!
//! Invariant: [`DataDigest`] fed the data in any split equals
//! [`data_digest`] over the whole, so data that arrives or leaves in pieces
//! (R2T chunks, scatter lists) is digested without being copied.

/// Digest of a PDU header (the HLEN bytes before the HDGST field).
pub fn header_digest(header: &[u8]) -> u32 {
    crate::checksum::crc32c(header)
}

/// Digest of PDU data held in one slice.
pub fn data_digest(data: &[u8]) -> u32 {
    crate::checksum::crc32c(data)
}

/// Digest of PDU data that arrives in pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataDigest {
    crc: u32,
}

impl DataDigest {
    pub const fn new() -> Self {
        DataDigest { crc: 0 }
    }
    pub fn update(&mut self, piece: &[u8]) {
        self.crc = crate::checksum::crc32c_append(self.crc, piece);
    }
    pub const fn finish(&self) -> u32 {
        self.crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_split_updates() {
        // The CRC-32C check value (RFC 3720 B.4 / iSCSI, the digest NVMe/TCP reuses).
        assert_eq!(data_digest(b"123456789"), 0xE306_9283);
        assert_eq!(header_digest(&[0u8; 32]), 0x8A91_36AA);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for split in [0, 1, 13, 500, 999, 1000] {
            let mut d = DataDigest::new();
            d.update(&data[..split]);
            d.update(&data[split..]);
            assert_eq!(d.finish(), data_digest(&data));
        }
    }
}
