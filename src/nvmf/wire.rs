//! Little-endian fixed-offset fields and fixed-width string fields of NVMe
//! wire structures, shared by every codec in [`crate::nvmf`].
//!
//! Invariant: nothing here panics. Reads outside the buffer yield zero (callers
//! check a structure's length once, up front, with [`need`]); writes outside
//! the buffer are dropped (encoders write constant offsets into buffers of the
//! structure's size, which the tests pin).

use thiserror::Error;

/// A structure on the wire could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The buffer is shorter than the structure.
    #[error("{what}: need {need} bytes, got {got}")]
    Short {
        what: &'static str,
        need: usize,
        got: usize,
    },
    /// A NUL-terminated string field has no NUL inside its width.
    #[error("{what} at byte {offset}: string not NUL-terminated")]
    Unterminated { what: &'static str, offset: usize },
    /// A string field is not UTF-8 (or, for ASCII fields, not ASCII).
    #[error("{what} at byte {offset}: not valid text")]
    NotText { what: &'static str, offset: usize },
    /// A field holds a value the structure does not allow.
    #[error("{what} at byte {offset}: invalid value {value:#x}")]
    Invalid {
        what: &'static str,
        offset: usize,
        value: u64,
    },
}

/// Checks `buf` holds at least `len` bytes of structure `what`.
pub fn need(buf: &[u8], len: usize, what: &'static str) -> Result<(), WireError> {
    if buf.len() < len {
        Err(WireError::Short {
            what,
            need: len,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}

fn arr<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

/// Byte at `at`, zero when out of range.
pub fn u8_at(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}
/// Little-endian u16 at `at`, zero when out of range.
pub fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(arr(buf, at))
}
/// Little-endian u32 at `at`, zero when out of range.
pub fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(arr(buf, at))
}
/// Little-endian u64 at `at`, zero when out of range.
pub fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(arr(buf, at))
}
/// Little-endian u128 at `at`, zero when out of range.
pub fn u128_at(buf: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(arr(buf, at))
}
/// `N` bytes at `at`, zeros when out of range.
pub fn bytes_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    arr(buf, at)
}
/// The slice `at..at + len`, empty when out of range.
pub fn slice_at(buf: &[u8], at: usize, len: usize) -> &[u8] {
    at.checked_add(len)
        .and_then(|end| buf.get(at..end))
        .unwrap_or(&[])
}

/// Writes `v` at `at`; dropped when out of range.
pub fn put_bytes(buf: &mut [u8], at: usize, v: &[u8]) {
    debug_assert!(
        at + v.len() <= buf.len(),
        "field {at}+{} out of range",
        v.len()
    );
    if let Some(dst) = at.checked_add(v.len()).and_then(|end| buf.get_mut(at..end)) {
        dst.copy_from_slice(v);
    }
}
pub fn put_u8(buf: &mut [u8], at: usize, v: u8) {
    put_bytes(buf, at, &[v]);
}
pub fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    put_bytes(buf, at, &v.to_le_bytes());
}
pub fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    put_bytes(buf, at, &v.to_le_bytes());
}
pub fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    put_bytes(buf, at, &v.to_le_bytes());
}
pub fn put_u128(buf: &mut [u8], at: usize, v: u128) {
    put_bytes(buf, at, &v.to_le_bytes());
}

/// Writes `s` into the `width`-byte field at `at`, truncated to `width`
/// (at a char boundary) and padded with `pad` (space for the ASCII fields of
/// Identify and the discovery log, NUL for NQNs).
pub fn put_str(buf: &mut [u8], at: usize, width: usize, s: &str, pad: u8) {
    let mut n = s.len().min(width);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    let field = at.checked_add(width).and_then(|end| buf.get_mut(at..end));
    if let Some(field) = field {
        field.fill(pad);
        if let Some(dst) = field.get_mut(..n) {
            dst.copy_from_slice(s.as_bytes().get(..n).unwrap_or(&[]));
        }
    }
}

/// Writes `s` into a NUL-terminated field of `width` bytes: at most
/// `width - 1` bytes of text, then NULs.
pub fn put_cstr(buf: &mut [u8], at: usize, width: usize, s: &str) {
    put_str(buf, at, width.saturating_sub(1), s, 0);
    put_u8(buf, at + width.saturating_sub(1), 0);
}

/// The `width`-byte field at `at`, or `Short` when `buf` ends inside it.
fn whole_field<'a>(
    buf: &'a [u8],
    at: usize,
    width: usize,
    what: &'static str,
) -> Result<&'a [u8], WireError> {
    let field = slice_at(buf, at, width);
    if field.len() != width {
        return Err(WireError::Short {
            what,
            need: at.saturating_add(width),
            got: buf.len(),
        });
    }
    Ok(field)
}

/// Reads a NUL-terminated UTF-8 string from the `width`-byte field at `at`;
/// the NUL must lie inside the field.
pub fn get_cstr<'a>(
    buf: &'a [u8],
    at: usize,
    width: usize,
    what: &'static str,
) -> Result<&'a str, WireError> {
    let field = whole_field(buf, at, width, what)?;
    let end = field
        .iter()
        .position(|&b| b == 0)
        .ok_or(WireError::Unterminated { what, offset: at })?;
    std::str::from_utf8(field.get(..end).unwrap_or(&[]))
        .map_err(|_| WireError::NotText { what, offset: at })
}

/// Reads a padded ASCII field (SN, MN, FR, TRADDR, TRSVCID): the text up to
/// the first NUL, with trailing spaces removed.
pub fn get_padded<'a>(
    buf: &'a [u8],
    at: usize,
    width: usize,
    what: &'static str,
) -> Result<&'a str, WireError> {
    let field = whole_field(buf, at, width, what)?;
    let end = field.iter().position(|&b| b == 0).unwrap_or(width);
    let text = field.get(..end).unwrap_or(&[]);
    if !text.is_ascii() {
        return Err(WireError::NotText { what, offset: at });
    }
    std::str::from_utf8(text)
        .map(|s| s.trim_end_matches(' '))
        .map_err(|_| WireError::NotText { what, offset: at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_out_of_range_are_zero_and_writes_are_dropped() {
        let b = [1u8, 2, 3];
        assert_eq!(u16_at(&b, 0), 0x0201);
        assert_eq!(u32_at(&b, 0), 0);
        assert_eq!(u64_at(&b, usize::MAX), 0);
        assert_eq!(slice_at(&b, 2, usize::MAX), &[] as &[u8]);
    }

    #[test]
    fn strings_pad_truncate_and_parse() {
        let mut b = [0xffu8; 8];
        put_str(&mut b, 0, 8, "ab", b' ');
        assert_eq!(&b, b"ab      ");
        assert_eq!(get_padded(&b, 0, 8, "x"), Ok("ab"));
        put_cstr(&mut b, 0, 8, "abcdefghij");
        assert_eq!(&b, b"abcdefg\0");
        assert_eq!(get_cstr(&b, 0, 8, "x"), Ok("abcdefg"));
        let full = *b"abcdefgh";
        assert!(matches!(
            get_cstr(&full, 0, 8, "x"),
            Err(WireError::Unterminated { .. })
        ));
        let bad = [0xc3u8, 0x28, 0, 0];
        assert!(matches!(
            get_cstr(&bad, 0, 4, "x"),
            Err(WireError::NotText { .. })
        ));
        // multi-byte char is not split
        let mut c = [0u8; 4];
        put_cstr(&mut c, 0, 4, "aé€");
        assert_eq!(get_cstr(&c, 0, 4, "x"), Ok("aé"));
    }
}
