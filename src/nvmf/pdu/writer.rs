//! PDU encoders: each appends one PDU (or the part of it before the data, for
//! callers that send data from their own buffers) to a reusable `Vec<u8>`.
//!
//! Invariant: what a [`PduWriter`] configured with the negotiated parameters
//! writes is exactly what a [`super::PduReader`] with the same parameters on
//! the other end accepts: HLEN per type, HDGSTF/DDGSTF and digests as
//! negotiated, PDO = header (and digest) rounded up to the peer's PDA, PLEN
//! covering everything.

use super::negotiate::{IcReq, IcResp, Negotiated};
use super::reader::Role;
use super::{
    digest, flags, CommonHeader, DataHeader, Fes, PduType, R2t, CH_LEN, DIGEST_LEN,
    TERM_REQ_MAX_DATA,
};
use crate::nvmf::command::SQE_LEN;
use crate::nvmf::completion::Completion;
use crate::nvmf::wire;

/// Appends an ICReq PDU.
pub fn ic_req(out: &mut Vec<u8>, req: &IcReq) {
    let start = header(out, PduType::IcReq, 0, 0, PduType::IcReq.hlen().into());
    if let Some(pdu) = out.get_mut(start..) {
        req.encode_psh(pdu);
    }
}

/// Appends an ICResp PDU.
pub fn ic_resp(out: &mut Vec<u8>, resp: &IcResp) {
    let start = header(out, PduType::IcResp, 0, 0, PduType::IcResp.hlen().into());
    if let Some(pdu) = out.get_mut(start..) {
        resp.encode_psh(pdu);
    }
}

/// Appends a termination request from `sender` (C2HTermReq from the
/// controller, H2CTermReq from the host) carrying up to 128 bytes of the
/// offending PDU's header.
pub fn term_req(out: &mut Vec<u8>, sender: Role, fes: Fes, fei: u32, offending: &[u8]) {
    let t = match sender {
        Role::Controller => PduType::C2HTermReq,
        Role::Host => PduType::H2CTermReq,
    };
    let data = offending.get(..TERM_REQ_MAX_DATA).unwrap_or(offending);
    let hlen = usize::from(t.hlen());
    let start = header(out, t, 0, 0, (hlen + data.len()) as u32);
    if let Some(pdu) = out.get_mut(start..) {
        wire::put_u16(pdu, 8, fes as u16);
        wire::put_u32(pdu, 10, fei);
    }
    out.extend_from_slice(data);
}

/// Appends a common header and zeroed room for the rest of a `t` header;
/// returns where the PDU starts.
fn header(out: &mut Vec<u8>, t: PduType, fl: u8, pdo: u8, plen: u32) -> usize {
    let start = out.len();
    let ch = CommonHeader {
        pdu_type: t as u8,
        flags: fl,
        hlen: t.hlen(),
        pdo,
        plen,
    };
    out.extend_from_slice(&ch.encode());
    out.resize(start + usize::from(t.hlen()), 0);
    start
}

/// Encoder for the PDUs of an initialized connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduWriter {
    hdgst: bool,
    ddgst: bool,
    align: usize,
}

impl Default for PduWriter {
    /// No digests, no alignment: what applies before negotiation.
    fn default() -> Self {
        PduWriter {
            hdgst: false,
            ddgst: false,
            align: 4,
        }
    }
}

impl PduWriter {
    /// A writer for the `sender` end of a connection with `n`: the data
    /// alignment is the peer's (HPDA when the controller sends, CPDA when
    /// the host does).
    pub const fn new(sender: Role, n: &Negotiated) -> Self {
        let pda = match sender {
            Role::Controller => n.hpda,
            Role::Host => n.cpda,
        };
        PduWriter {
            hdgst: n.hdgst,
            ddgst: n.ddgst,
            align: Negotiated::pda_bytes(pda),
        }
    }
    pub const fn header_digest(&self) -> bool {
        self.hdgst
    }
    pub const fn data_digest(&self) -> bool {
        self.ddgst
    }

    /// Writes everything of a `t` PDU before its data: common header, the
    /// PDU-specific header `psh` fills in, header digest, padding. Returns
    /// the PDU start.
    fn begin(
        &self,
        out: &mut Vec<u8>,
        t: PduType,
        extra_flags: u8,
        data_len: usize,
        psh: impl FnOnce(&mut [u8]),
    ) -> usize {
        let hlen = usize::from(t.hlen());
        let hd = if self.hdgst { DIGEST_LEN } else { 0 };
        let header_end = hlen + hd;
        let mut fl = extra_flags | if self.hdgst { flags::HDGSTF } else { 0 };
        let (pdo, plen) = if data_len > 0 {
            let pdo = header_end.div_ceil(self.align) * self.align;
            let dd = if self.ddgst {
                fl |= flags::DDGSTF;
                DIGEST_LEN
            } else {
                0
            };
            (pdo, pdo + data_len + dd)
        } else {
            (0, header_end)
        };
        debug_assert!(u32::try_from(plen).is_ok(), "PDU of {plen} bytes");
        let start = header(
            out,
            t,
            fl,
            u8::try_from(pdo).unwrap_or(u8::MAX),
            u32::try_from(plen).unwrap_or(u32::MAX),
        );
        if let Some(pdu) = out.get_mut(start..) {
            psh(pdu);
        }
        if self.hdgst {
            let d = digest::header_digest(out.get(start..start + hlen).unwrap_or(&[]));
            out.extend_from_slice(&d.to_le_bytes());
        }
        if data_len > 0 {
            out.resize(start + pdo, 0);
        }
        start
    }

    /// Appends the data digest of data whose CRC the caller computed (with
    /// [`digest::DataDigest`]) when data digests are on; call after the data
    /// of a PDU begun with one of the `*_header` methods.
    pub fn finish_data(&self, out: &mut Vec<u8>, data_crc: u32) {
        if self.ddgst {
            out.extend_from_slice(&data_crc.to_le_bytes());
        }
    }

    fn with_data(&self, out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(data);
        if self.ddgst && !data.is_empty() {
            self.finish_data(out, digest::data_digest(data));
        }
    }

    /// A command capsule up to its in-capsule data of `data_len` bytes.
    pub fn capsule_cmd_header(&self, out: &mut Vec<u8>, sqe: &[u8; SQE_LEN], data_len: usize) {
        self.begin(out, PduType::CapsuleCmd, 0, data_len, |p| {
            wire::put_bytes(p, CH_LEN, sqe)
        });
    }
    /// A whole command capsule with its in-capsule data (may be empty).
    pub fn capsule_cmd(&self, out: &mut Vec<u8>, sqe: &[u8; SQE_LEN], data: &[u8]) {
        self.capsule_cmd_header(out, sqe, data.len());
        self.with_data(out, data);
    }
    /// A response capsule.
    pub fn capsule_resp(&self, out: &mut Vec<u8>, cqe: &Completion) {
        self.begin(out, PduType::CapsuleResp, 0, 0, |p| {
            wire::put_bytes(p, CH_LEN, &cqe.encode())
        });
    }

    fn data_header(&self, out: &mut Vec<u8>, t: PduType, d: &DataHeader) {
        let mut fl = if d.last { flags::LAST_PDU } else { 0 };
        if d.success && t == PduType::C2HData {
            fl |= flags::SUCCESS;
        }
        self.begin(out, t, fl, d.length as usize, |p| {
            wire::put_u16(p, 8, d.cccid);
            wire::put_u16(p, 10, d.ttag);
            wire::put_u32(p, 12, d.offset);
            wire::put_u32(p, 16, d.length);
        });
    }
    /// An H2CData PDU up to its data (`d.length` bytes follow).
    pub fn h2c_data_header(&self, out: &mut Vec<u8>, d: &DataHeader) {
        self.data_header(out, PduType::H2CData, d);
    }
    /// A C2HData PDU up to its data (`d.length` bytes follow).
    pub fn c2h_data_header(&self, out: &mut Vec<u8>, d: &DataHeader) {
        self.data_header(out, PduType::C2HData, d);
    }
    /// A whole H2CData PDU; `d.length` is taken from `data`.
    pub fn h2c_data(&self, out: &mut Vec<u8>, d: &DataHeader, data: &[u8]) {
        let d = DataHeader {
            length: u32::try_from(data.len()).unwrap_or(u32::MAX),
            ..*d
        };
        self.h2c_data_header(out, &d);
        self.with_data(out, data);
    }
    /// A whole C2HData PDU; `d.length` is taken from `data`.
    pub fn c2h_data(&self, out: &mut Vec<u8>, d: &DataHeader, data: &[u8]) {
        let d = DataHeader {
            length: u32::try_from(data.len()).unwrap_or(u32::MAX),
            ..*d
        };
        self.c2h_data_header(out, &d);
        self.with_data(out, data);
    }
    /// An R2T PDU.
    pub fn r2t(&self, out: &mut Vec<u8>, r: &R2t) {
        self.begin(out, PduType::R2T, 0, 0, |p| {
            wire::put_u16(p, 8, r.cccid);
            wire::put_u16(p, 10, r.ttag);
            wire::put_u32(p, 12, r.offset);
            wire::put_u32(p, 16, r.length);
        });
    }
}
