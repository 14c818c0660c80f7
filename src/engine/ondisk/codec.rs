//! Little-endian field encoding for on-disk records, with bounds-checked
//! decoding and the crc32c convention every record shares.
//!
//! Invariant: decoding never panics on any input; a short or inconsistent
//! buffer becomes [`EngineError::Corrupt`] naming the region.

use crate::engine::error::{EngineError, Result};

/// Writes fixed-offset fields into a record buffer.
#[derive(Debug)]
pub struct Encoder<'a> {
    buf: &'a mut [u8],
}

impl<'a> Encoder<'a> {
    /// Wraps `buf`; callers pass offsets that fit (a programming error otherwise).
    pub fn new(buf: &'a mut [u8]) -> Self {
        Encoder { buf }
    }
    pub fn u8(&mut self, at: usize, v: u8) {
        self.buf[at] = v;
    }
    pub fn u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, at: usize, v: u64) {
        self.buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, at: usize, v: &[u8]) {
        self.buf[at..at + v.len()].copy_from_slice(v);
    }
}

/// Reads fixed-offset fields from a record buffer, failing cleanly when short.
#[derive(Debug, Clone, Copy)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    region: &'static str,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8], region: &'static str) -> Self {
        Decoder { buf, region }
    }
    fn slice(&self, at: usize, len: usize) -> Result<&'a [u8]> {
        at.checked_add(len)
            .and_then(|end| self.buf.get(at..end))
            .ok_or_else(|| {
                EngineError::corrupt(
                    self.region,
                    format!(
                        "field at {at}+{len} beyond a {}-byte record",
                        self.buf.len()
                    ),
                )
            })
    }
    pub fn u8(&self, at: usize) -> Result<u8> {
        Ok(self.slice(at, 1)?[0])
    }
    pub fn u16(&self, at: usize) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.slice(at, 2)?.try_into().unwrap_or_default(),
        ))
    }
    pub fn u32(&self, at: usize) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.slice(at, 4)?.try_into().unwrap_or_default(),
        ))
    }
    pub fn u64(&self, at: usize) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.slice(at, 8)?.try_into().unwrap_or_default(),
        ))
    }
    pub fn bytes(&self, at: usize, len: usize) -> Result<&'a [u8]> {
        self.slice(at, len)
    }
    /// A UTF-8 label of `len` bytes at `at`.
    pub fn label(&self, at: usize, len: usize) -> Result<String> {
        let raw = self.slice(at, len)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| EngineError::corrupt(self.region, "label is not UTF-8"))
    }
    pub fn corrupt(&self, detail: impl Into<String>) -> EngineError {
        EngineError::corrupt(self.region, detail)
    }
}

/// crc32c of `buf` with the 4 bytes at `crc_at` treated as zero.
pub fn crc_skipping(buf: &[u8], crc_at: usize) -> u32 {
    let head = crate::checksum::crc32c(&buf[..crc_at]);
    let zero = crate::checksum::crc32c_append(head, &[0u8; 4]);
    crate::checksum::crc32c_append(zero, &buf[crc_at + 4..])
}

/// Stamps the crc of `buf` at `crc_at`.
pub fn seal(buf: &mut [u8], crc_at: usize) {
    let crc = crc_skipping(buf, crc_at);
    buf[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// True when the crc stored at `crc_at` matches the contents.
pub fn sealed_ok(buf: &[u8], crc_at: usize) -> bool {
    if buf.len() < crc_at + 4 {
        return false;
    }
    let stored = u32::from_le_bytes([
        buf[crc_at],
        buf[crc_at + 1],
        buf[crc_at + 2],
        buf[crc_at + 3],
    ]);
    stored == crc_skipping(buf, crc_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_detects_flips() {
        let mut b = vec![0u8; 64];
        Encoder::new(&mut b).u64(8, 0xdead_beef);
        seal(&mut b, 60);
        assert!(sealed_ok(&b, 60));
        b[9] ^= 1;
        assert!(!sealed_ok(&b, 60));
        assert!(!sealed_ok(&b[..10], 60), "short buffers are not sealed");
    }

    #[test]
    fn decoder_is_bounds_checked() {
        let b = [1u8, 2, 3];
        let d = Decoder::new(&b, "test");
        assert_eq!(d.u16(0).unwrap(), 0x0201);
        assert!(d.u32(0).is_err());
        assert!(d.u64(usize::MAX).is_err());
    }
}
