//! The NVMe completion queue entry (CQE, 16 bytes) and its status field.
//!
//! Invariant: [`Completion::encode`] and [`Completion::decode`] are exact
//! inverses over all 16 bytes (every bit of the CQE is a field here), and
//! decoding never panics.

use super::status::Status;
use super::wire::{self, WireError};

/// Size of a completion queue entry.
pub const CQE_LEN: usize = 16;

/// The CQE status field (bytes 14..16): phase tag, status, retry delay,
/// More and Do Not Retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusField {
    /// Phase tag (bit 0); fabrics controllers leave it 0.
    pub phase: bool,
    /// Status code type and status code (bits 11:1).
    pub status: Status,
    /// Command retry delay index, 2 bits (bits 13:12).
    pub crd: u8,
    /// More status information in the error log (bit 14).
    pub more: bool,
    /// Do not retry (bit 15).
    pub dnr: bool,
}

impl StatusField {
    /// A status with DNR clear.
    pub const fn new(status: Status) -> Self {
        StatusField {
            phase: false,
            status,
            crd: 0,
            more: false,
            dnr: false,
        }
    }
    /// A status with Do Not Retry set (what targets return for malformed
    /// commands).
    pub const fn dnr(status: Status) -> Self {
        StatusField {
            phase: false,
            status,
            crd: 0,
            more: false,
            dnr: true,
        }
    }
    pub const fn to_u16(self) -> u16 {
        (self.phase as u16)
            | ((self.status.sc as u16) << 1)
            | (((self.status.sct & 0x7) as u16) << 9)
            | (((self.crd & 0x3) as u16) << 12)
            | ((self.more as u16) << 14)
            | ((self.dnr as u16) << 15)
    }
    pub const fn from_u16(v: u16) -> Self {
        StatusField {
            phase: v & 1 != 0,
            status: Status::new(((v >> 9) & 0x7) as u8, (v >> 1) as u8),
            crd: ((v >> 12) & 0x3) as u8,
            more: v & (1 << 14) != 0,
            dnr: v & (1 << 15) != 0,
        }
    }
}

/// A completion queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completion {
    /// Command specific result, dword 0 (e.g. the controller ID for Connect,
    /// the low 32 bits of a Property Get value).
    pub dw0: u32,
    /// Dword 1 (the high 32 bits of an 8-byte Property Get value).
    pub dw1: u32,
    /// Submission queue head pointer.
    pub sqhd: u16,
    /// Submission queue identifier.
    pub sqid: u16,
    /// Command identifier of the completed command.
    pub cid: u16,
    pub status: StatusField,
}

impl Completion {
    /// A successful completion for `cid`.
    pub const fn success(cid: u16) -> Self {
        Completion {
            dw0: 0,
            dw1: 0,
            sqhd: 0,
            sqid: 0,
            cid,
            status: StatusField::new(Status::SUCCESS),
        }
    }
    /// A failed completion for `cid` with `status` and DNR set.
    pub const fn error(cid: u16, status: Status) -> Self {
        Completion {
            dw0: 0,
            dw1: 0,
            sqhd: 0,
            sqid: 0,
            cid,
            status: StatusField::dnr(status),
        }
    }
    /// The 64-bit result (dw1:dw0), as an 8-byte Property Get returns it.
    pub const fn result64(&self) -> u64 {
        (self.dw0 as u64) | ((self.dw1 as u64) << 32)
    }
    pub fn encode(&self) -> [u8; CQE_LEN] {
        let mut b = [0u8; CQE_LEN];
        wire::put_u32(&mut b, 0, self.dw0);
        wire::put_u32(&mut b, 4, self.dw1);
        wire::put_u16(&mut b, 8, self.sqhd);
        wire::put_u16(&mut b, 10, self.sqid);
        wire::put_u16(&mut b, 12, self.cid);
        wire::put_u16(&mut b, 14, self.status.to_u16());
        b
    }
    /// Decodes the first 16 bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        wire::need(buf, CQE_LEN, "completion queue entry")?;
        Ok(Completion {
            dw0: wire::u32_at(buf, 0),
            dw1: wire::u32_at(buf, 4),
            sqhd: wire::u16_at(buf, 8),
            sqid: wire::u16_at(buf, 10),
            cid: wire::u16_at(buf, 12),
            status: StatusField::from_u16(wire::u16_at(buf, 14)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_matches_struct_nvme_completion() {
        // struct nvme_completion: result 0 (u64), sq_head 8, sq_id 10,
        // command_id 12, status 14; status = (NVME_SC_* << 1) | phase,
        // NVME_STATUS_DNR = 0x4000 and MORE = 0x2000 before the shift.
        let c = Completion {
            dw0: 0x1122_3344,
            dw1: 0x5566_7788,
            sqhd: 0x0102,
            sqid: 0x0304,
            cid: 0xBEEF,
            status: StatusField::dnr(Status::CONNECT_INVALID_PARAMETERS),
        };
        let b = c.encode();
        assert_eq!(&b[0..4], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(&b[8..10], &[0x02, 0x01]);
        assert_eq!(&b[12..14], &[0xEF, 0xBE]);
        let raw = u16::from_le_bytes([b[14], b[15]]);
        assert_eq!(raw, (0x4000 | 0x182) << 1);
        let more = StatusField {
            more: true,
            ..StatusField::new(Status::SUCCESS)
        };
        assert_eq!(more.to_u16(), 0x2000 << 1);
        assert_eq!(c.result64(), 0x5566_7788_1122_3344);
        assert_eq!(Completion::decode(&b), Ok(c));
    }

    #[test]
    fn short_buffer_is_an_error() {
        assert!(Completion::decode(&[0u8; 15]).is_err());
    }

    proptest! {
        #[test]
        fn status_field_round_trips(v in any::<u16>()) {
            prop_assert_eq!(StatusField::from_u16(v).to_u16(), v);
        }

        #[test]
        fn cqe_round_trips(bytes in proptest::array::uniform16(any::<u8>())) {
            let c = Completion::decode(&bytes).unwrap();
            prop_assert_eq!(c.encode(), bytes);
        }
    }
}
