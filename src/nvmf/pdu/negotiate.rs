//! Connection initialization: the ICReq the host sends, the ICResp the
//! controller answers, and the parameters both sides then use (digests, PDU
//! data alignment, MAXH2CDATA, MAXR2T).
//!
//! Invariant: a [`Negotiated`] only comes out of [`accept_ic_req`] or
//! [`accept_ic_resp`], which enforce PFV 1.0, PDA ≤ 31, MAXH2CDATA a multiple
//! of 4 and at least 4096, and digests enabled only if the host asked for
//! them; everything else is a [`PduError::Unsupported`] naming the field.

use super::{dgst, PduError, MAX_PDA, MIN_MAXH2CDATA, PFV_1_0};
use crate::nvmf::wire;

/// ICReq fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcReq {
    /// PDU format version, 0 (1.0).
    pub pfv: u16,
    /// Host PDU data alignment for C2H data, 0-based dwords.
    pub hpda: u8,
    pub hdgst: bool,
    pub ddgst: bool,
    /// Maximum outstanding R2Ts per command, 0-based.
    pub maxr2t: u32,
}

impl IcReq {
    pub const PFV_OFFSET: u32 = 8;
    pub const HPDA_OFFSET: u32 = 10;
    pub const DGST_OFFSET: u32 = 11;
    pub const MAXR2T_OFFSET: u32 = 12;

    /// What a host without alignment needs sends (as Linux does).
    pub const fn new(hdgst: bool, ddgst: bool) -> Self {
        IcReq {
            pfv: PFV_1_0,
            hpda: 0,
            hdgst,
            ddgst,
            maxr2t: 0,
        }
    }
    /// Decodes from a whole ICReq PDU (128 bytes, common header included).
    pub(crate) fn decode(pdu: &[u8]) -> Self {
        let d = wire::u8_at(pdu, 11);
        IcReq {
            pfv: wire::u16_at(pdu, 8),
            hpda: wire::u8_at(pdu, 10),
            hdgst: d & dgst::HDGST_ENABLE != 0,
            ddgst: d & dgst::DDGST_ENABLE != 0,
            maxr2t: wire::u32_at(pdu, 12),
        }
    }
    pub(crate) fn encode_psh(&self, pdu: &mut [u8]) {
        wire::put_u16(pdu, 8, self.pfv);
        wire::put_u8(pdu, 10, self.hpda);
        wire::put_u8(pdu, 11, dgst_byte(self.hdgst, self.ddgst));
        wire::put_u32(pdu, 12, self.maxr2t);
    }
}

/// ICResp fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcResp {
    pub pfv: u16,
    /// Controller PDU data alignment for H2C data, 0-based dwords.
    pub cpda: u8,
    pub hdgst: bool,
    pub ddgst: bool,
    /// Most data bytes in one H2CData PDU.
    pub maxh2cdata: u32,
}

impl IcResp {
    pub const PFV_OFFSET: u32 = 8;
    pub const CPDA_OFFSET: u32 = 10;
    pub const DGST_OFFSET: u32 = 11;
    pub const MAXH2CDATA_OFFSET: u32 = 12;

    pub(crate) fn decode(pdu: &[u8]) -> Self {
        let d = wire::u8_at(pdu, 11);
        IcResp {
            pfv: wire::u16_at(pdu, 8),
            cpda: wire::u8_at(pdu, 10),
            hdgst: d & dgst::HDGST_ENABLE != 0,
            ddgst: d & dgst::DDGST_ENABLE != 0,
            maxh2cdata: wire::u32_at(pdu, 12),
        }
    }
    pub(crate) fn encode_psh(&self, pdu: &mut [u8]) {
        wire::put_u16(pdu, 8, self.pfv);
        wire::put_u8(pdu, 10, self.cpda);
        wire::put_u8(pdu, 11, dgst_byte(self.hdgst, self.ddgst));
        wire::put_u32(pdu, 12, self.maxh2cdata);
    }
}

fn dgst_byte(h: bool, d: bool) -> u8 {
    (if h { dgst::HDGST_ENABLE } else { 0 }) | (if d { dgst::DDGST_ENABLE } else { 0 })
}

/// Parameters of an initialized connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub hdgst: bool,
    pub ddgst: bool,
    /// Alignment the host wants for C2H data, 0-based dwords.
    pub hpda: u8,
    /// Alignment the controller wants for H2C data, 0-based dwords.
    pub cpda: u8,
    pub maxh2cdata: u32,
    /// Maximum outstanding R2Ts per command, 0-based.
    pub maxr2t: u32,
}

impl Negotiated {
    /// Byte alignment of a 0-based dword PDA.
    pub const fn pda_bytes(pda: u8) -> usize {
        (pda as usize + 1) * 4
    }
}

/// What the controller offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerParams {
    /// Header digests are supported (enabled when the host asks).
    pub hdgst: bool,
    /// Data digests are supported (enabled when the host asks).
    pub ddgst: bool,
    /// Alignment wanted for H2C data; 0 for Linux hosts, which reject
    /// anything else.
    pub cpda: u8,
    /// MAXH2CDATA; rounded down to a multiple of 4, at least 4096.
    pub maxh2cdata: u32,
}

/// Controller side: validates an ICReq and builds the ICResp and the
/// connection parameters.
pub fn accept_ic_req(
    req: &IcReq,
    ours: &ControllerParams,
) -> Result<(IcResp, Negotiated), PduError> {
    if req.pfv != PFV_1_0 {
        return Err(PduError::Unsupported {
            what: "PFV",
            offset: IcReq::PFV_OFFSET,
            value: req.pfv.into(),
        });
    }
    if req.hpda > MAX_PDA {
        return Err(PduError::Unsupported {
            what: "HPDA",
            offset: IcReq::HPDA_OFFSET,
            value: req.hpda.into(),
        });
    }
    let maxh2cdata = (ours.maxh2cdata & !3).max(MIN_MAXH2CDATA);
    let resp = IcResp {
        pfv: PFV_1_0,
        cpda: ours.cpda.min(MAX_PDA),
        hdgst: req.hdgst && ours.hdgst,
        ddgst: req.ddgst && ours.ddgst,
        maxh2cdata,
    };
    let neg = Negotiated {
        hdgst: resp.hdgst,
        ddgst: resp.ddgst,
        hpda: req.hpda,
        cpda: resp.cpda,
        maxh2cdata,
        maxr2t: req.maxr2t,
    };
    Ok((resp, neg))
}

/// Host side: validates the ICResp to the ICReq `sent`. The digests are
/// those the controller enabled (a subset of those asked for; a host that
/// insists on its digests, as Linux does, compares them itself).
pub fn accept_ic_resp(sent: &IcReq, resp: &IcResp) -> Result<Negotiated, PduError> {
    let unsupported = |what, offset, value: u32| PduError::Unsupported {
        what,
        offset,
        value,
    };
    if resp.pfv != PFV_1_0 {
        return Err(unsupported("PFV", IcResp::PFV_OFFSET, resp.pfv.into()));
    }
    if resp.cpda > MAX_PDA {
        return Err(unsupported("CPDA", IcResp::CPDA_OFFSET, resp.cpda.into()));
    }
    if (resp.hdgst && !sent.hdgst) || (resp.ddgst && !sent.ddgst) {
        return Err(unsupported(
            "digest not requested",
            IcResp::DGST_OFFSET,
            dgst_byte(resp.hdgst, resp.ddgst).into(),
        ));
    }
    if !resp.maxh2cdata.is_multiple_of(4) || resp.maxh2cdata < MIN_MAXH2CDATA {
        return Err(unsupported(
            "MAXH2CDATA",
            IcResp::MAXH2CDATA_OFFSET,
            resp.maxh2cdata,
        ));
    }
    Ok(Negotiated {
        hdgst: resp.hdgst,
        ddgst: resp.ddgst,
        hpda: sent.hpda,
        cpda: resp.cpda,
        maxh2cdata: resp.maxh2cdata,
        maxr2t: sent.maxr2t,
    })
}
