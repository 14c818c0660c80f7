//! The incremental PDU reader: given the bytes received so far (in a buffer
//! the caller owns), it says how many more bytes it needs or hands back one
//! complete, validated PDU as a typed header view plus a data slice, both
//! borrowed from the buffer.
//!
//! Invariant: a PDU is returned only after every check the transport
//! specification asks of a receiver has passed: known type, sent in this
//! direction and in sequence (ICReq/ICResp first and once), exact HLEN, PLEN
//! consistent with the header and within the configured data limit (checked
//! from the first 8 bytes, before waiting for data), PDO aligned to the
//! negotiated PDA, digest flags as negotiated, header digest and then data
//! digest correct, and data-length fields agreeing with PLEN.

use std::ops::Range;

use super::negotiate::{IcReq, IcResp, Negotiated};
use super::{
    digest, flags, CommonHeader, DataHeader, PduError, PduType, R2t, TermReq, CH_LEN, DIGEST_LEN,
    TERM_REQ_MAX_DATA,
};
use crate::nvmf::command::{Command, SQE_LEN};
use crate::nvmf::completion::{Completion, CQE_LEN};
use crate::nvmf::wire;

/// Which end of the connection is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The target: receives ICReq, H2CTermReq, CapsuleCmd, H2CData.
    Controller,
    /// The initiator: receives ICResp, C2HTermReq, CapsuleResp, C2HData, R2T.
    Host,
}

impl Role {
    fn receives(self, t: PduType) -> bool {
        match self {
            Role::Controller => t.from_host(),
            Role::Host => !t.from_host(),
        }
    }
}

/// Where the parts of a PDU lie, from its validated common header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub pdu_type: PduType,
    pub flags: u8,
    pub hlen: usize,
    /// End of the header and its digest.
    pub header_end: usize,
    /// The PDU data (after any padding), relative to the PDU start; empty
    /// when the PDU carries none.
    pub data: Range<usize>,
    /// A data digest follows the data.
    pub data_digest: bool,
    /// Total PDU length (PLEN).
    pub plen: usize,
}

impl Frame {
    /// Checks a data digest computed by the caller (with
    /// [`digest::DataDigest`]) over data it received outside the reader's
    /// buffer, against the 4 digest bytes that followed the data.
    pub fn verify_data(
        &self,
        header: &PduHeader<'_>,
        computed: u32,
        received: [u8; DIGEST_LEN],
    ) -> Result<(), PduError> {
        let received = u32::from_le_bytes(received);
        if !self.data_digest || self.data.is_empty() || received == computed {
            return Ok(());
        }
        Err(PduError::DataDigest {
            pdu_type: self.pdu_type,
            cccid: header.cccid(),
            len: self.plen,
            received,
            computed,
        })
    }
}

/// A PDU-specific header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduHeader<'a> {
    IcReq(IcReq),
    IcResp(IcResp),
    H2CTermReq(TermReq),
    C2HTermReq(TermReq),
    CapsuleCmd(Command<'a>),
    CapsuleResp(Completion),
    H2CData(DataHeader),
    C2HData(DataHeader),
    R2T(R2t),
}

impl PduHeader<'_> {
    /// The command id the PDU belongs to, where it has one.
    pub fn cccid(&self) -> Option<u16> {
        match self {
            PduHeader::CapsuleCmd(c) => Some(c.cid()),
            PduHeader::CapsuleResp(c) => Some(c.cid),
            PduHeader::H2CData(d) | PduHeader::C2HData(d) => Some(d.cccid),
            PduHeader::R2T(r) => Some(r.cccid),
            _ => None,
        }
    }
}

/// A complete PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pdu<'a> {
    pub header: PduHeader<'a>,
    /// Common header flags.
    pub flags: u8,
    /// The PDU data: in-capsule data, H2C/C2H data, or a termination
    /// request's offending header; empty when none.
    pub data: &'a [u8],
    /// Bytes the PDU occupies in the buffer (PLEN): consume these.
    pub len: usize,
}

/// Result of [`PduReader::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll<'a> {
    /// At least this many more bytes are needed.
    NeedMore(usize),
    Pdu(Pdu<'a>),
}

/// Result of [`PduReader::poll_header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderPoll<'a> {
    /// At least this many more bytes are needed before the header (and any
    /// padding before the data) is complete.
    NeedMore(usize),
    /// The header is complete and verified; the data is `frame.data` of the
    /// PDU (it may not have arrived yet).
    Header { header: PduHeader<'a>, frame: Frame },
}

/// The incremental PDU reader of one connection end.
#[derive(Debug, Clone)]
pub struct PduReader {
    role: Role,
    negotiated: Option<Negotiated>,
    max_data: u32,
}

impl PduReader {
    /// A reader for `role`, before connection initialization. `max_data`
    /// bounds the data of any one PDU (in-capsule data, H2C/C2H data).
    pub const fn new(role: Role, max_data: u32) -> Self {
        PduReader {
            role,
            negotiated: None,
            max_data,
        }
    }
    /// Switches to the initialized connection: from now on ICReq/ICResp is
    /// a sequence error and the negotiated digests and alignment apply.
    pub fn set_negotiated(&mut self, negotiated: Negotiated) {
        self.negotiated = Some(negotiated);
    }
    pub const fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }
    pub const fn role(&self) -> Role {
        self.role
    }
    pub const fn max_data(&self) -> u32 {
        self.max_data
    }
    /// Changes the per-PDU data limit.
    pub fn set_max_data(&mut self, max_data: u32) {
        self.max_data = max_data;
    }

    fn rx_align(&self, n: &Negotiated) -> usize {
        Negotiated::pda_bytes(match self.role {
            Role::Controller => n.cpda,
            Role::Host => n.hpda,
        })
    }

    /// Validates the common header at the start of `buf`; `None` until 8
    /// bytes are there.
    pub fn frame(&self, buf: &[u8]) -> Result<Option<Frame>, PduError> {
        let Some(ch) = CommonHeader::decode(buf) else {
            return Ok(None);
        };
        let t = PduType::from_u8(ch.pdu_type).ok_or(PduError::UnknownType(ch.pdu_type))?;
        if !self.role.receives(t) {
            return Err(PduError::WrongDirection(t));
        }
        let is_ic = matches!(t, PduType::IcReq | PduType::IcResp);
        let is_term = matches!(t, PduType::H2CTermReq | PduType::C2HTermReq);
        let negotiated = match (is_ic, self.negotiated) {
            (true, Some(_)) => return Err(PduError::Sequence(t)),
            (false, None) if !is_term => return Err(PduError::Sequence(t)),
            (_, n) => n,
        };
        if ch.hlen != t.hlen() {
            return Err(PduError::Hlen {
                pdu_type: t,
                got: ch.hlen,
                expected: t.hlen(),
            });
        }
        let hlen = usize::from(ch.hlen);
        let plen = usize::try_from(ch.plen).unwrap_or(usize::MAX);
        let plen_err = || PduError::Plen {
            pdu_type: t,
            plen: ch.plen,
        };
        let frame = |header_end, data: Range<usize>, data_digest| Frame {
            pdu_type: t,
            flags: ch.flags,
            hlen,
            header_end,
            data,
            data_digest,
            plen,
        };
        if is_ic {
            if plen != hlen {
                return Err(plen_err());
            }
            return Ok(Some(frame(hlen, plen..plen, false)));
        }
        if is_term {
            if plen < hlen || plen > hlen + TERM_REQ_MAX_DATA {
                return Err(plen_err());
            }
            return Ok(Some(frame(hlen, hlen..plen, false)));
        }
        // Past this point the connection is initialized.
        let n = negotiated.ok_or(PduError::Sequence(t))?;
        if (ch.flags & flags::HDGSTF != 0) != n.hdgst {
            return Err(PduError::Flags {
                pdu_type: t,
                flags: ch.flags,
            });
        }
        let header_end = hlen + if n.hdgst { DIGEST_LEN } else { 0 };
        if plen < header_end {
            return Err(plen_err());
        }
        if plen == header_end {
            if matches!(t, PduType::H2CData | PduType::C2HData) {
                return Err(plen_err());
            }
            return Ok(Some(frame(header_end, plen..plen, false)));
        }
        if !t.may_carry_data() {
            return Err(plen_err());
        }
        if (ch.flags & flags::DDGSTF != 0) != n.ddgst {
            return Err(PduError::Flags {
                pdu_type: t,
                flags: ch.flags,
            });
        }
        let align = self.rx_align(&n);
        let pdo = usize::from(ch.pdo);
        if pdo < header_end || pdo % align != 0 {
            return Err(PduError::Pdo {
                pdu_type: t,
                pdo: ch.pdo,
                header_end,
                align,
            });
        }
        let ddgst = if n.ddgst { DIGEST_LEN } else { 0 };
        let data_len = plen
            .checked_sub(pdo + ddgst)
            .filter(|&l| l > 0)
            .ok_or_else(plen_err)?;
        if data_len > self.max_data as usize {
            return Err(PduError::DataLimit {
                pdu_type: t,
                len: data_len as u64,
                max: self.max_data.into(),
            });
        }
        Ok(Some(frame(header_end, pdo..pdo + data_len, n.ddgst)))
    }

    /// Verifies the header digest and decodes the PDU-specific header; `buf`
    /// holds at least `frame.header_end` bytes.
    fn header<'a>(&self, buf: &'a [u8], frame: &Frame) -> Result<PduHeader<'a>, PduError> {
        let t = frame.pdu_type;
        if frame.header_end > frame.hlen {
            let received = wire::u32_at(buf, frame.hlen);
            let computed = digest::header_digest(wire::slice_at(buf, 0, frame.hlen));
            if received != computed {
                return Err(PduError::HeaderDigest { received, computed });
            }
        }
        let data_len = frame.data.len();
        let data_header = |frame: &Frame| -> Result<DataHeader, PduError> {
            let d = DataHeader {
                cccid: wire::u16_at(buf, 8),
                ttag: wire::u16_at(buf, 10),
                offset: wire::u32_at(buf, 12),
                length: wire::u32_at(buf, 16),
                last: frame.flags & flags::LAST_PDU != 0,
                // SUCCESS is reserved in H2CData.
                success: t == PduType::C2HData && frame.flags & flags::SUCCESS != 0,
            };
            if d.length as usize != data_len {
                return Err(PduError::Field {
                    pdu_type: t,
                    offset: DataHeader::DATAL_OFFSET,
                    value: d.length,
                });
            }
            Ok(d)
        };
        Ok(match t {
            PduType::IcReq => PduHeader::IcReq(IcReq::decode(buf)),
            PduType::IcResp => PduHeader::IcResp(IcResp::decode(buf)),
            PduType::H2CTermReq | PduType::C2HTermReq => {
                let tr = TermReq {
                    fes: wire::u16_at(buf, 8),
                    fei: wire::u32_at(buf, 10),
                };
                if t == PduType::H2CTermReq {
                    PduHeader::H2CTermReq(tr)
                } else {
                    PduHeader::C2HTermReq(tr)
                }
            }
            PduType::CapsuleCmd => PduHeader::CapsuleCmd(
                Command::parse(wire::slice_at(buf, CH_LEN, SQE_LEN)).map_err(|_| {
                    PduError::Hlen {
                        pdu_type: t,
                        got: 0,
                        expected: t.hlen(),
                    }
                })?,
            ),
            PduType::CapsuleResp => PduHeader::CapsuleResp(
                Completion::decode(wire::slice_at(buf, CH_LEN, CQE_LEN)).map_err(|_| {
                    PduError::Hlen {
                        pdu_type: t,
                        got: 0,
                        expected: t.hlen(),
                    }
                })?,
            ),
            PduType::H2CData => {
                let d = data_header(frame)?;
                if let Some(n) = &self.negotiated {
                    if d.length > n.maxh2cdata {
                        return Err(PduError::DataLimit {
                            pdu_type: t,
                            len: d.length.into(),
                            max: n.maxh2cdata.into(),
                        });
                    }
                }
                PduHeader::H2CData(d)
            }
            PduType::C2HData => {
                let d = data_header(frame)?;
                if d.success && !d.last {
                    return Err(PduError::Flags {
                        pdu_type: t,
                        flags: frame.flags,
                    });
                }
                PduHeader::C2HData(d)
            }
            PduType::R2T => PduHeader::R2T(R2t {
                cccid: wire::u16_at(buf, 8),
                ttag: wire::u16_at(buf, 10),
                offset: wire::u32_at(buf, 12),
                length: wire::u32_at(buf, 16),
            }),
        })
    }

    /// Header-first reading, for callers that receive large data straight
    /// into their own buffers: returns once the header (and the padding
    /// before the data) is in `buf` and verified. The caller then takes
    /// `frame.data.len()` data bytes and, if `frame.data_digest`, 4 digest
    /// bytes, and checks them with [`Frame::verify_data`].
    pub fn poll_header<'a>(&self, buf: &'a [u8]) -> Result<HeaderPoll<'a>, PduError> {
        let Some(frame) = self.frame(buf)? else {
            return Ok(HeaderPoll::NeedMore(CH_LEN - buf.len()));
        };
        let header_done = frame.data.start.max(frame.header_end);
        if buf.len() < header_done {
            return Ok(HeaderPoll::NeedMore(header_done - buf.len()));
        }
        let header = self.header(buf, &frame)?;
        Ok(HeaderPoll::Header { header, frame })
    }

    /// Reads one PDU from the start of `buf`. On [`Poll::Pdu`], consume
    /// `pdu.len` bytes; on [`Poll::NeedMore`], receive at least that many
    /// more (the whole rest of the PDU once its common header is known).
    pub fn poll<'a>(&self, buf: &'a [u8]) -> Result<Poll<'a>, PduError> {
        let Some(frame) = self.frame(buf)? else {
            return Ok(Poll::NeedMore(CH_LEN - buf.len()));
        };
        if buf.len() < frame.data.start.max(frame.header_end) {
            return Ok(Poll::NeedMore(frame.plen - buf.len()));
        }
        let header = self.header(buf, &frame)?;
        if buf.len() < frame.plen {
            return Ok(Poll::NeedMore(frame.plen - buf.len()));
        }
        let data = buf.get(frame.data.clone()).unwrap_or(&[]);
        if frame.data_digest {
            let received = wire::bytes_at(buf, frame.data.end);
            frame.verify_data(&header, digest::data_digest(data), received)?;
        }
        Ok(Poll::Pdu(Pdu {
            header,
            flags: frame.flags,
            data,
            len: frame.plen,
        }))
    }
}
