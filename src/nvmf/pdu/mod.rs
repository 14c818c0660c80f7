//! NVMe/TCP protocol data units: the common header, the PDU-specific headers
//! of all nine PDU types, and the errors that end a connection.
//!
//! Invariant: the types here are plain values decoded from (or encoded to)
//! the fixed layouts of the NVMe/TCP transport specification; anything the
//! reader rejects becomes a [`PduError`] whose [`PduError::fatal`] gives the
//! Fatal Error Status and Fatal Error Information for the C2HTermReq or
//! H2CTermReq that answers it.
//!
//! Submodules: [`digest`] (CRC32C header and data digests), [`reader`] (the
//! incremental framer), [`writer`] (encoders into a reusable `Vec<u8>`),
//! [`negotiate`] (ICReq/ICResp connection parameters).

pub mod digest;
pub mod negotiate;
pub mod reader;
pub mod writer;

use thiserror::Error;

pub use negotiate::{IcReq, IcResp, Negotiated};
pub use reader::{Frame, HeaderPoll, Pdu, PduHeader, PduReader, Poll, Role};
pub use writer::PduWriter;

use super::wire;

/// Length of the common header every PDU starts with.
pub const CH_LEN: usize = 8;
/// Length of a header or data digest.
pub const DIGEST_LEN: usize = 4;
/// PDU format version 1.0, the only one defined.
pub const PFV_1_0: u16 = 0;
/// Largest HPDA/CPDA value (alignment of `(pda + 1) * 4` = 128 bytes).
pub const MAX_PDA: u8 = 31;
/// Smallest MAXH2CDATA a controller may advertise.
pub const MIN_MAXH2CDATA: u32 = 4096;
/// Most bytes of offending PDU header a termination request carries.
pub const TERM_REQ_MAX_DATA: usize = 128;

/// Header lengths (HLEN) per PDU type.
pub mod hlen {
    pub const IC: u8 = 128;
    pub const TERM_REQ: u8 = 24;
    pub const CAPSULE_CMD: u8 = 72;
    pub const CAPSULE_RESP: u8 = 24;
    pub const DATA: u8 = 24;
    pub const R2T: u8 = 24;
}

/// Common header flags.
pub mod flags {
    /// A header digest follows the PDU header.
    pub const HDGSTF: u8 = 0x01;
    /// A data digest follows the PDU data.
    pub const DDGSTF: u8 = 0x02;
    /// H2CData/C2HData: last PDU of the data transfer.
    pub const LAST_PDU: u8 = 0x04;
    /// C2HData: the command completed successfully, no CapsuleResp follows
    /// (only with [`LAST_PDU`]).
    pub const SUCCESS: u8 = 0x08;
}

/// ICReq/ICResp DGST byte.
pub mod dgst {
    pub const HDGST_ENABLE: u8 = 0x01;
    pub const DDGST_ENABLE: u8 = 0x02;
}

/// PDU types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    IcReq = 0x00,
    IcResp = 0x01,
    H2CTermReq = 0x02,
    C2HTermReq = 0x03,
    CapsuleCmd = 0x04,
    CapsuleResp = 0x05,
    H2CData = 0x06,
    C2HData = 0x07,
    R2T = 0x09,
}

impl PduType {
    pub const fn from_u8(v: u8) -> Option<PduType> {
        Some(match v {
            0x00 => PduType::IcReq,
            0x01 => PduType::IcResp,
            0x02 => PduType::H2CTermReq,
            0x03 => PduType::C2HTermReq,
            0x04 => PduType::CapsuleCmd,
            0x05 => PduType::CapsuleResp,
            0x06 => PduType::H2CData,
            0x07 => PduType::C2HData,
            0x09 => PduType::R2T,
            _ => return None,
        })
    }
    /// The header length (HLEN) this type must carry.
    pub const fn hlen(self) -> u8 {
        match self {
            PduType::IcReq | PduType::IcResp => hlen::IC,
            PduType::H2CTermReq | PduType::C2HTermReq => hlen::TERM_REQ,
            PduType::CapsuleCmd => hlen::CAPSULE_CMD,
            PduType::CapsuleResp => hlen::CAPSULE_RESP,
            PduType::H2CData | PduType::C2HData => hlen::DATA,
            PduType::R2T => hlen::R2T,
        }
    }
    /// Sent by the host (H2C) rather than the controller.
    pub const fn from_host(self) -> bool {
        matches!(
            self,
            PduType::IcReq | PduType::H2CTermReq | PduType::CapsuleCmd | PduType::H2CData
        )
    }
    /// Carries a header digest when header digests are negotiated (all but
    /// the initialization and termination PDUs).
    pub const fn has_header_digest(self) -> bool {
        matches!(
            self,
            PduType::CapsuleCmd
                | PduType::CapsuleResp
                | PduType::H2CData
                | PduType::C2HData
                | PduType::R2T
        )
    }
    /// May carry data (and then a data digest when negotiated).
    pub const fn may_carry_data(self) -> bool {
        matches!(
            self,
            PduType::CapsuleCmd | PduType::H2CData | PduType::C2HData
        )
    }
}

/// The 8-byte common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    pub pdu_type: u8,
    pub flags: u8,
    pub hlen: u8,
    pub pdo: u8,
    pub plen: u32,
}

impl CommonHeader {
    /// Byte offsets of the fields, for Fatal Error Information.
    pub const TYPE_OFFSET: u32 = 0;
    pub const FLAGS_OFFSET: u32 = 1;
    pub const HLEN_OFFSET: u32 = 2;
    pub const PDO_OFFSET: u32 = 3;
    pub const PLEN_OFFSET: u32 = 4;

    /// Decodes the first 8 bytes of `buf`, if present.
    pub fn decode(buf: &[u8]) -> Option<CommonHeader> {
        if buf.len() < CH_LEN {
            return None;
        }
        Some(CommonHeader {
            pdu_type: wire::u8_at(buf, 0),
            flags: wire::u8_at(buf, 1),
            hlen: wire::u8_at(buf, 2),
            pdo: wire::u8_at(buf, 3),
            plen: wire::u32_at(buf, 4),
        })
    }
    pub fn encode(&self) -> [u8; CH_LEN] {
        let mut b = [0u8; CH_LEN];
        wire::put_u8(&mut b, 0, self.pdu_type);
        wire::put_u8(&mut b, 1, self.flags);
        wire::put_u8(&mut b, 2, self.hlen);
        wire::put_u8(&mut b, 3, self.pdo);
        wire::put_u32(&mut b, 4, self.plen);
        b
    }
}

/// H2CTermReq/C2HTermReq header fields; the offending PDU header (up to 128
/// bytes) is the PDU's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermReq {
    /// Fatal error status (a [`Fes`] value, kept raw as received).
    pub fes: u16,
    /// Fatal error information.
    pub fei: u32,
}

/// H2CData/C2HData header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataHeader {
    /// Command capsule CID the data belongs to.
    pub cccid: u16,
    /// Transfer tag from the R2T (H2CData only; reserved in C2HData).
    pub ttag: u16,
    /// Offset of this PDU's data in the command's data buffer.
    pub offset: u32,
    /// Length of this PDU's data.
    pub length: u32,
    /// [`flags::LAST_PDU`].
    pub last: bool,
    /// [`flags::SUCCESS`] (C2HData only).
    pub success: bool,
}

impl DataHeader {
    pub const CCCID_OFFSET: u32 = 8;
    pub const TTAG_OFFSET: u32 = 10;
    pub const DATAO_OFFSET: u32 = 12;
    pub const DATAL_OFFSET: u32 = 16;
}

/// R2T header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2t {
    pub cccid: u16,
    pub ttag: u16,
    /// Offset of the requested data in the command's data buffer.
    pub offset: u32,
    /// Bytes requested.
    pub length: u32,
}

/// Fatal Error Status of a termination request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Fes {
    InvalidHeaderField = 0x01,
    PduSequenceError = 0x02,
    HeaderDigestError = 0x03,
    DataTransferOutOfRange = 0x04,
    DataTransferLimitExceeded = 0x05,
    UnsupportedParameter = 0x06,
}

/// What a termination request reports: status and information (the byte
/// offset of the bad field for [`Fes::InvalidHeaderField`] and
/// [`Fes::UnsupportedParameter`], 0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatalError {
    pub fes: Fes,
    pub fei: u32,
}

/// A PDU stream that cannot continue (every variant but
/// [`PduError::DataDigest`] is fatal to the connection).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PduError {
    #[error("unknown PDU type {0:#04x}")]
    UnknownType(u8),
    #[error("{0:?} PDU is not sent in this direction")]
    WrongDirection(PduType),
    #[error("{0:?} PDU out of sequence (before or after connection initialization)")]
    Sequence(PduType),
    #[error("{pdu_type:?} PDU with HLEN {got}, expected {expected}")]
    Hlen {
        pdu_type: PduType,
        got: u8,
        expected: u8,
    },
    #[error("{pdu_type:?} PDU flags {flags:#04x} disagree with the negotiated digests or the PDU")]
    Flags { pdu_type: PduType, flags: u8 },
    #[error("{pdu_type:?} PDU with PDO {pdo} (header ends at {header_end}, alignment {align})")]
    Pdo {
        pdu_type: PduType,
        pdo: u8,
        header_end: usize,
        align: usize,
    },
    #[error("{pdu_type:?} PDU with PLEN {plen} inconsistent with its header")]
    Plen { pdu_type: PduType, plen: u32 },
    #[error("{pdu_type:?} PDU data of {len} bytes exceeds the limit of {max}")]
    DataLimit {
        pdu_type: PduType,
        len: u64,
        max: u64,
    },
    #[error("{pdu_type:?} PDU field at byte {offset} holds {value}, inconsistent with the PDU")]
    Field {
        pdu_type: PduType,
        offset: u32,
        value: u32,
    },
    #[error("header digest mismatch: received {received:#010x}, computed {computed:#010x}")]
    HeaderDigest { received: u32, computed: u32 },
    /// The PDU is well framed but its data is damaged; `len` bytes may be
    /// skipped to continue. The command `cccid` should complete with
    /// [`crate::nvmf::status::Status::TRANSIENT_TRANSPORT_ERROR`] (or the
    /// connection be dropped, as Linux nvmet does).
    #[error("data digest mismatch in {pdu_type:?} PDU: received {received:#010x}, computed {computed:#010x}")]
    DataDigest {
        pdu_type: PduType,
        cccid: Option<u16>,
        len: usize,
        received: u32,
        computed: u32,
    },
    #[error("unsupported {what} {value} (byte {offset})")]
    Unsupported {
        what: &'static str,
        offset: u32,
        value: u32,
    },
}

impl PduError {
    /// The termination request this error calls for, or `None` when the
    /// connection may continue ([`PduError::DataDigest`]).
    pub fn fatal(&self) -> Option<FatalError> {
        let (fes, fei) = match self {
            PduError::UnknownType(_) | PduError::WrongDirection(_) => {
                (Fes::InvalidHeaderField, CommonHeader::TYPE_OFFSET)
            }
            PduError::Sequence(_) => (Fes::PduSequenceError, 0),
            PduError::Hlen { .. } => (Fes::InvalidHeaderField, CommonHeader::HLEN_OFFSET),
            PduError::Flags { .. } => (Fes::InvalidHeaderField, CommonHeader::FLAGS_OFFSET),
            PduError::Pdo { .. } => (Fes::InvalidHeaderField, CommonHeader::PDO_OFFSET),
            PduError::Plen { .. } => (Fes::InvalidHeaderField, CommonHeader::PLEN_OFFSET),
            PduError::DataLimit { .. } => (Fes::DataTransferLimitExceeded, 0),
            PduError::Field { offset, .. } => (Fes::InvalidHeaderField, *offset),
            PduError::HeaderDigest { .. } => (Fes::HeaderDigestError, 0),
            PduError::DataDigest { .. } => return None,
            PduError::Unsupported { offset, .. } => (Fes::UnsupportedParameter, *offset),
        };
        Some(FatalError { fes, fei })
    }
}

#[cfg(test)]
mod tests;
