//! CRC32C (Castagnoli, the CRC-32/ISCSI of the crc catalogue): the one
//! checksum of every on-disk record, every journaled block's `data_crc` and
//! the NVMe/TCP header and data digests.
//!
//! Invariant: [`crc32c_append`] continues a finished crc, so
//! `crc32c_append(crc32c(a), b) == crc32c(a ++ b)` for any split; callers
//! digest data that arrives in pieces without copying it together.
//! The arithmetic is the crc-fast crate's (carry-less-multiply folding,
//! chosen at run time for the CPU), which costs about half the crc32c
//! crate's `crc32` instruction chains on the 4 KiB blocks of the write path.

use crc_fast::{CrcAlgorithm, Digest};

/// CRC32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// CRC32C of the bytes whose crc is `crc` followed by `data`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    // The digest's state is the crc register before the final inversion.
    let mut d = Digest::new_with_init_state(CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    d.update(data);
    d.finalize() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_values() {
        // RFC 3720 B.4 and the crc catalogue's check value of CRC-32/ISCSI.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(&[]), 0);
        assert_eq!(crc32c_append(0, &[]), 0);
    }

    proptest! {
        #[test]
        fn append_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..9000), cut in any::<prop::sample::Index>()) {
            let at = cut.index(data.len() + 1);
            prop_assert_eq!(crc32c_append(crc32c(&data[..at]), &data[at..]), crc32c(&data));
        }
    }
}
