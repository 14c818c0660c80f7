//! Identify data structures (4096 bytes each): controller, namespace, active
//! namespace list and namespace identification descriptor list, encoded by
//! the target and decoded by the host library.
//!
//! Invariant: every field sits at the byte offset of the NVMe base
//! specification (pinned by tests against Linux `struct nvme_id_ctrl` /
//! `struct nvme_id_ns`); fields not modelled are written as zero; decoding
//! never panics and re-encoding a decoded structure decodes to the same
//! value.

use super::wire::{self, WireError};

/// Size of every Identify data structure.
pub const IDENTIFY_LEN: usize = 4096;

/// CNTRLTYPE values.
pub mod cntrltype {
    pub const IO: u8 = 1;
    pub const DISCOVERY: u8 = 2;
    pub const ADMIN: u8 = 3;
}

/// ONCS bits (optional NVM commands).
pub mod oncs {
    pub const COMPARE: u16 = 1 << 0;
    pub const WRITE_UNCORRECTABLE: u16 = 1 << 1;
    pub const DSM: u16 = 1 << 2;
    pub const WRITE_ZEROES: u16 = 1 << 3;
}

/// SGLS bits.
pub mod sgls {
    /// SGLs supported, no alignment (bits 1:0 = 01b); Linux hosts need bit 0
    /// or 1 set.
    pub const SUPPORTED: u32 = 1 << 0;
    /// SGLs supported with dword alignment (bits 1:0 = 10b).
    pub const SUPPORTED_DWORD_ALIGNED: u32 = 1 << 1;
    pub const KEYED: u32 = 1 << 2;
    /// The offset subtype (in-capsule data) is supported.
    pub const OFFSET: u32 = 1 << 20;
}

/// LPA bits (log page attributes).
pub mod lpa {
    pub const SMART_PER_NAMESPACE: u8 = 1 << 0;
    pub const COMMANDS_EFFECTS: u8 = 1 << 1;
    /// Extended data for Get Log Page (NUMDU, LPO).
    pub const EXTENDED_DATA: u8 = 1 << 2;
}

/// OAES bits (asynchronous events the controller sends).
pub mod oaes {
    pub const NS_ATTRIBUTE_NOTICES: u32 = 1 << 8;
    pub const DISCOVERY_LOG_CHANGE: u32 = 1 << 31;
}

/// Identify Controller fields this appliance sets or a host reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdentifyController<'a> {
    pub vid: u16,
    pub ssvid: u16,
    /// Serial number, ASCII, at most 20 bytes.
    pub sn: &'a str,
    /// Model number, ASCII, at most 40 bytes.
    pub mn: &'a str,
    /// Firmware revision, ASCII, at most 8 bytes.
    pub fr: &'a str,
    pub rab: u8,
    pub ieee: [u8; 3],
    pub cmic: u8,
    /// Maximum data transfer size, a power of two in units of the minimum
    /// page size (4 KiB); 0 means no limit.
    pub mdts: u8,
    pub cntlid: u16,
    /// Version, as the VS property.
    pub ver: u32,
    pub oaes: u32,
    pub ctratt: u32,
    pub cntrltype: u8,
    pub oacs: u16,
    /// Abort command limit, 0-based.
    pub acl: u8,
    /// Asynchronous event request limit, 0-based.
    pub aerl: u8,
    pub frmw: u8,
    pub lpa: u8,
    /// Error log page entries, 0-based.
    pub elpe: u8,
    /// Keep alive granularity in 100 ms units; Linux requires it non-zero
    /// on I/O controllers.
    pub kas: u16,
    /// SQ entry sizes: required (3:0) and maximum (7:4), as powers of two.
    pub sqes: u8,
    pub cqes: u8,
    pub maxcmd: u16,
    /// Number of namespaces (highest valid NSID).
    pub nn: u32,
    pub oncs: u16,
    pub fuses: u16,
    pub fna: u8,
    /// Volatile write cache present (bit 0).
    pub vwc: u8,
    pub awun: u16,
    pub awupf: u16,
    pub acwu: u16,
    pub sgls: u32,
    pub mnan: u32,
    pub subnqn: &'a str,
    /// I/O queue command capsule supported size, in 16-byte units.
    pub ioccsz: u32,
    /// I/O queue response capsule supported size, in 16-byte units.
    pub iorcsz: u32,
    /// In-capsule data offset, in 16-byte units (Linux requires 0).
    pub icdoff: u16,
    /// Controller attributes (bit 0: static controller model).
    pub fcatt: u8,
    /// Maximum SGL data block descriptors.
    pub msdbd: u8,
    pub ofcs: u16,
}

impl<'a> IdentifyController<'a> {
    /// Encodes into a zeroed 4096-byte structure.
    pub fn encode(&self, out: &mut [u8; IDENTIFY_LEN]) {
        out.fill(0);
        let o = &mut out[..];
        wire::put_u16(o, 0, self.vid);
        wire::put_u16(o, 2, self.ssvid);
        wire::put_str(o, 4, 20, self.sn, b' ');
        wire::put_str(o, 24, 40, self.mn, b' ');
        wire::put_str(o, 64, 8, self.fr, b' ');
        wire::put_u8(o, 72, self.rab);
        wire::put_bytes(o, 73, &self.ieee);
        wire::put_u8(o, 76, self.cmic);
        wire::put_u8(o, 77, self.mdts);
        wire::put_u16(o, 78, self.cntlid);
        wire::put_u32(o, 80, self.ver);
        wire::put_u32(o, 92, self.oaes);
        wire::put_u32(o, 96, self.ctratt);
        wire::put_u8(o, 111, self.cntrltype);
        wire::put_u16(o, 256, self.oacs);
        wire::put_u8(o, 258, self.acl);
        wire::put_u8(o, 259, self.aerl);
        wire::put_u8(o, 260, self.frmw);
        wire::put_u8(o, 261, self.lpa);
        wire::put_u8(o, 262, self.elpe);
        wire::put_u16(o, 320, self.kas);
        wire::put_u8(o, 512, self.sqes);
        wire::put_u8(o, 513, self.cqes);
        wire::put_u16(o, 514, self.maxcmd);
        wire::put_u32(o, 516, self.nn);
        wire::put_u16(o, 520, self.oncs);
        wire::put_u16(o, 522, self.fuses);
        wire::put_u8(o, 524, self.fna);
        wire::put_u8(o, 525, self.vwc);
        wire::put_u16(o, 526, self.awun);
        wire::put_u16(o, 528, self.awupf);
        wire::put_u16(o, 532, self.acwu);
        wire::put_u32(o, 536, self.sgls);
        wire::put_u32(o, 540, self.mnan);
        wire::put_cstr(o, 768, 256, self.subnqn);
        wire::put_u32(o, 1792, self.ioccsz);
        wire::put_u32(o, 1796, self.iorcsz);
        wire::put_u16(o, 1800, self.icdoff);
        wire::put_u8(o, 1802, self.fcatt);
        wire::put_u8(o, 1803, self.msdbd);
        wire::put_u16(o, 1804, self.ofcs);
    }

    /// Decodes the fields from a 4096-byte structure (SN/MN/FR must be
    /// ASCII, SUBNQN NUL-terminated UTF-8).
    pub fn decode(b: &'a [u8]) -> Result<Self, WireError> {
        wire::need(b, IDENTIFY_LEN, "identify controller")?;
        Ok(IdentifyController {
            vid: wire::u16_at(b, 0),
            ssvid: wire::u16_at(b, 2),
            sn: wire::get_padded(b, 4, 20, "serial number")?,
            mn: wire::get_padded(b, 24, 40, "model number")?,
            fr: wire::get_padded(b, 64, 8, "firmware revision")?,
            rab: wire::u8_at(b, 72),
            ieee: wire::bytes_at(b, 73),
            cmic: wire::u8_at(b, 76),
            mdts: wire::u8_at(b, 77),
            cntlid: wire::u16_at(b, 78),
            ver: wire::u32_at(b, 80),
            oaes: wire::u32_at(b, 92),
            ctratt: wire::u32_at(b, 96),
            cntrltype: wire::u8_at(b, 111),
            oacs: wire::u16_at(b, 256),
            acl: wire::u8_at(b, 258),
            aerl: wire::u8_at(b, 259),
            frmw: wire::u8_at(b, 260),
            lpa: wire::u8_at(b, 261),
            elpe: wire::u8_at(b, 262),
            kas: wire::u16_at(b, 320),
            sqes: wire::u8_at(b, 512),
            cqes: wire::u8_at(b, 513),
            maxcmd: wire::u16_at(b, 514),
            nn: wire::u32_at(b, 516),
            oncs: wire::u16_at(b, 520),
            fuses: wire::u16_at(b, 522),
            fna: wire::u8_at(b, 524),
            vwc: wire::u8_at(b, 525),
            awun: wire::u16_at(b, 526),
            awupf: wire::u16_at(b, 528),
            acwu: wire::u16_at(b, 532),
            sgls: wire::u32_at(b, 536),
            mnan: wire::u32_at(b, 540),
            subnqn: wire::get_cstr(b, 768, 256, "subsystem nqn")?,
            ioccsz: wire::u32_at(b, 1792),
            iorcsz: wire::u32_at(b, 1796),
            icdoff: wire::u16_at(b, 1800),
            fcatt: wire::u8_at(b, 1802),
            msdbd: wire::u8_at(b, 1803),
            ofcs: wire::u16_at(b, 1804),
        })
    }

    /// Maximum data transfer in bytes for a controller with 4 KiB minimum
    /// pages; `None` when unlimited (MDTS 0).
    pub fn max_transfer_bytes(&self) -> Option<u64> {
        match self.mdts {
            0 => None,
            m => 4096u64.checked_shl(u32::from(m)),
        }
    }
    /// Bytes of in-capsule data an I/O command capsule can carry.
    pub fn in_capsule_data_bytes(&self) -> u64 {
        (u64::from(self.ioccsz) * 16).saturating_sub(64)
    }
}

/// One LBA format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LbaFormat {
    /// Metadata bytes per block.
    pub ms: u16,
    /// Block size as a power of two (9 for 512, 12 for 4096).
    pub lbads: u8,
    /// Relative performance (2 bits).
    pub rp: u8,
}

/// LBA formats an [`IdentifyNamespace`] carries (the first 16).
pub const MAX_LBA_FORMATS: usize = 16;

/// Identify Namespace fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdentifyNamespace {
    /// Size in logical blocks.
    pub nsze: u64,
    pub ncap: u64,
    pub nuse: u64,
    pub nsfeat: u8,
    /// Number of LBA formats, 0-based.
    pub nlbaf: u8,
    /// Formatted LBA size: index bits 3:0 (and 6:5 above 16 formats).
    pub flbas: u8,
    pub nmic: u8,
    /// Deallocate logical block features (bits 2:0 = 001b: reads zeros).
    pub dlfeat: u8,
    pub anagrpid: u32,
    /// Namespace attributes: bit 0 write protected.
    pub nsattr: u8,
    pub nguid: [u8; 16],
    pub eui64: [u8; 8],
    pub lbaf: [LbaFormat; MAX_LBA_FORMATS],
}

impl IdentifyNamespace {
    /// NSATTR bit 0: the namespace is write protected (read-only views).
    pub const NSATTR_WRITE_PROTECTED: u8 = 1 << 0;

    /// A namespace of `blocks` blocks of `1 << lbads` bytes, fully
    /// provisioned, one LBA format.
    pub fn new(blocks: u64, lbads: u8) -> Self {
        let mut lbaf = [LbaFormat::default(); MAX_LBA_FORMATS];
        lbaf[0] = LbaFormat {
            ms: 0,
            lbads,
            rp: 0,
        };
        IdentifyNamespace {
            nsze: blocks,
            ncap: blocks,
            nuse: blocks,
            lbaf,
            ..Default::default()
        }
    }
    /// Marks the namespace write protected.
    pub fn read_only(mut self) -> Self {
        self.nsattr |= Self::NSATTR_WRITE_PROTECTED;
        self
    }
    pub fn is_write_protected(&self) -> bool {
        self.nsattr & Self::NSATTR_WRITE_PROTECTED != 0
    }
    /// Index of the formatted LBA format.
    pub fn format_index(&self) -> usize {
        usize::from(self.flbas & 0xF) | (usize::from((self.flbas >> 5) & 0x3) << 4)
    }
    /// Logical block size in bytes, `None` if FLBAS names a format beyond
    /// NLBAF or beyond the 16 carried, or a size outside 512 B..=2 GiB.
    pub fn lba_size(&self) -> Option<u64> {
        let i = self.format_index();
        if i > usize::from(self.nlbaf) {
            return None;
        }
        let f = self.lbaf.get(i)?;
        (9..=31).contains(&f.lbads).then(|| 1u64 << f.lbads)
    }

    pub fn encode(&self, out: &mut [u8; IDENTIFY_LEN]) {
        out.fill(0);
        let o = &mut out[..];
        wire::put_u64(o, 0, self.nsze);
        wire::put_u64(o, 8, self.ncap);
        wire::put_u64(o, 16, self.nuse);
        wire::put_u8(o, 24, self.nsfeat);
        wire::put_u8(o, 25, self.nlbaf);
        wire::put_u8(o, 26, self.flbas);
        wire::put_u8(o, 30, self.nmic);
        wire::put_u8(o, 33, self.dlfeat);
        wire::put_u32(o, 92, self.anagrpid);
        wire::put_u8(o, 99, self.nsattr);
        wire::put_bytes(o, 104, &self.nguid);
        wire::put_bytes(o, 120, &self.eui64);
        let formats = (usize::from(self.nlbaf) + 1).min(MAX_LBA_FORMATS);
        for (i, f) in self.lbaf.iter().take(formats).enumerate() {
            let at = 128 + i * 4;
            wire::put_u16(o, at, f.ms);
            wire::put_u8(o, at + 2, f.lbads);
            wire::put_u8(o, at + 3, f.rp & 0x3);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        wire::need(b, IDENTIFY_LEN, "identify namespace")?;
        let nlbaf = wire::u8_at(b, 25);
        let mut lbaf = [LbaFormat::default(); MAX_LBA_FORMATS];
        let formats = (usize::from(nlbaf) + 1).min(MAX_LBA_FORMATS);
        for (i, f) in lbaf.iter_mut().take(formats).enumerate() {
            let at = 128 + i * 4;
            *f = LbaFormat {
                ms: wire::u16_at(b, at),
                lbads: wire::u8_at(b, at + 2),
                rp: wire::u8_at(b, at + 3) & 0x3,
            };
        }
        Ok(IdentifyNamespace {
            nsze: wire::u64_at(b, 0),
            ncap: wire::u64_at(b, 8),
            nuse: wire::u64_at(b, 16),
            nsfeat: wire::u8_at(b, 24),
            nlbaf,
            flbas: wire::u8_at(b, 26),
            nmic: wire::u8_at(b, 30),
            dlfeat: wire::u8_at(b, 33),
            anagrpid: wire::u32_at(b, 92),
            nsattr: wire::u8_at(b, 99),
            nguid: wire::bytes_at(b, 104),
            eui64: wire::bytes_at(b, 120),
            lbaf,
        })
    }
}

/// Most NSIDs in one namespace list.
pub const NS_LIST_MAX: usize = IDENTIFY_LEN / 4;

/// Encodes the active namespace list (CNS 02h): the NSIDs of `active`
/// greater than `after`, ascending, at most 1024, zero-terminated.
/// `active` must be ascending.
pub fn encode_ns_list(
    active: impl IntoIterator<Item = u32>,
    after: u32,
    out: &mut [u8; IDENTIFY_LEN],
) {
    out.fill(0);
    let ids = active.into_iter().filter(|&id| id > after && id != 0);
    for (i, id) in ids.take(NS_LIST_MAX).enumerate() {
        wire::put_u32(out, i * 4, id);
    }
}

/// The NSIDs of a namespace list, up to its first zero.
pub fn decode_ns_list(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .take(NS_LIST_MAX)
        .map(|c| wire::u32_at(c, 0))
        .take_while(|&id| id != 0)
}

/// A namespace identification descriptor (CNS 03h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsIdDescriptor {
    Eui64([u8; 8]),
    Nguid([u8; 16]),
    Uuid([u8; 16]),
    /// Command set identifier (0 for NVM).
    Csi(u8),
}

impl NsIdDescriptor {
    pub const NIDT_EUI64: u8 = 1;
    pub const NIDT_NGUID: u8 = 2;
    pub const NIDT_UUID: u8 = 3;
    pub const NIDT_CSI: u8 = 4;

    fn parts(&self) -> (u8, &[u8]) {
        match self {
            NsIdDescriptor::Eui64(v) => (Self::NIDT_EUI64, v),
            NsIdDescriptor::Nguid(v) => (Self::NIDT_NGUID, v),
            NsIdDescriptor::Uuid(v) => (Self::NIDT_UUID, v),
            NsIdDescriptor::Csi(v) => (Self::NIDT_CSI, std::slice::from_ref(v)),
        }
    }
}

/// Encodes a namespace identification descriptor list.
pub fn encode_ns_descriptors(descs: &[NsIdDescriptor], out: &mut [u8; IDENTIFY_LEN]) {
    out.fill(0);
    let mut at = 0;
    for d in descs {
        let (nidt, nid) = d.parts();
        if at + 4 + nid.len() > IDENTIFY_LEN {
            break;
        }
        wire::put_u8(out, at, nidt);
        wire::put_u8(out, at + 1, nid.len() as u8);
        wire::put_bytes(out, at + 4, nid);
        at += 4 + nid.len();
    }
}

/// The descriptors of a namespace identification descriptor list, up to
/// the first zero NIDT; unknown types are skipped, a known type with the
/// wrong length is an error (and ends the list).
pub fn decode_ns_descriptors(
    b: &[u8],
) -> impl Iterator<Item = Result<NsIdDescriptor, WireError>> + '_ {
    let mut at = 0usize;
    let mut done = false;
    std::iter::from_fn(move || loop {
        if done || at + 4 > b.len().min(IDENTIFY_LEN) {
            return None;
        }
        let nidt = wire::u8_at(b, at);
        let nidl = usize::from(wire::u8_at(b, at + 1));
        if nidt == 0 {
            return None;
        }
        let nid = at + 4;
        let expected = match nidt {
            NsIdDescriptor::NIDT_EUI64 => Some(8),
            NsIdDescriptor::NIDT_NGUID | NsIdDescriptor::NIDT_UUID => Some(16),
            NsIdDescriptor::NIDT_CSI => Some(1),
            _ => None,
        };
        if nid + nidl > b.len().min(IDENTIFY_LEN) || expected.is_some_and(|e| e != nidl) {
            done = true;
            return Some(Err(WireError::Invalid {
                what: "namespace descriptor length",
                offset: at + 1,
                value: nidl as u64,
            }));
        }
        at = nid + nidl;
        let d = match nidt {
            NsIdDescriptor::NIDT_EUI64 => NsIdDescriptor::Eui64(wire::bytes_at(b, nid)),
            NsIdDescriptor::NIDT_NGUID => NsIdDescriptor::Nguid(wire::bytes_at(b, nid)),
            NsIdDescriptor::NIDT_UUID => NsIdDescriptor::Uuid(wire::bytes_at(b, nid)),
            NsIdDescriptor::NIDT_CSI => NsIdDescriptor::Csi(wire::u8_at(b, nid)),
            _ => continue,
        };
        return Some(Ok(d));
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn controller() -> IdentifyController<'static> {
        IdentifyController {
            vid: 0x1B36,
            ssvid: 0x1AF4,
            sn: "REWIND0001",
            mn: "rewind CDP appliance",
            fr: "0.1.0",
            mdts: 5,
            cntlid: 0x11,
            ver: 0x0001_0400,
            oaes: oaes::NS_ATTRIBUTE_NOTICES,
            cntrltype: cntrltype::IO,
            aerl: 3,
            lpa: lpa::EXTENDED_DATA,
            elpe: 0,
            kas: 10,
            sqes: 0x66,
            cqes: 0x44,
            maxcmd: 128,
            nn: 32,
            oncs: oncs::DSM | oncs::WRITE_ZEROES,
            vwc: 1,
            sgls: sgls::SUPPORTED | sgls::OFFSET,
            subnqn: "nqn.2024-01.io.rewind:vol0",
            ioccsz: (64 + 8192) / 16,
            iorcsz: 1,
            msdbd: 1,
            ..Default::default()
        }
    }

    #[test]
    fn controller_fields_sit_at_nvme_id_ctrl_offsets() {
        let c = controller();
        let mut b = [0u8; IDENTIFY_LEN];
        c.encode(&mut b);
        assert_eq!(&b[0..2], &0x1B36u16.to_le_bytes());
        assert_eq!(&b[4..24], b"REWIND0001          ");
        assert_eq!(&b[24..44], b"rewind CDP appliance");
        assert!(b[44..64].iter().all(|&x| x == b' '));
        assert_eq!(&b[64..72], b"0.1.0   ");
        assert_eq!(b[77], 5);
        assert_eq!(&b[78..80], &[0x11, 0]);
        assert_eq!(&b[80..84], &[0, 4, 1, 0]);
        assert_eq!(b[111], 1);
        assert_eq!(b[259], 3);
        assert_eq!(b[261], 4);
        assert_eq!(&b[320..322], &[10, 0]);
        assert_eq!((b[512], b[513]), (0x66, 0x44));
        assert_eq!(&b[514..516], &[128, 0]);
        assert_eq!(&b[516..520], &[32, 0, 0, 0]);
        assert_eq!(&b[520..522], &[0x0C, 0]);
        assert_eq!(b[525], 1);
        assert_eq!(&b[536..540], &[1, 0, 0x10, 0]);
        assert_eq!(&b[768..768 + 26], c.subnqn.as_bytes());
        assert_eq!(b[768 + 26], 0);
        assert_eq!(&b[1792..1796], &516u32.to_le_bytes());
        assert_eq!(b[1803], 1);
        let d = IdentifyController::decode(&b).unwrap();
        assert_eq!(d, c);
        assert_eq!(d.max_transfer_bytes(), Some(128 * 1024));
        assert_eq!(d.in_capsule_data_bytes(), 8192);
        assert!(IdentifyController::decode(&b[..4095]).is_err());
        let mut bad = b;
        bad[4] = 0xC3;
        assert!(IdentifyController::decode(&bad).is_err());
    }

    #[test]
    fn namespace_fields_sit_at_nvme_id_ns_offsets() {
        let mut ns = IdentifyNamespace::new(1 << 21, 12).read_only();
        ns.nguid = [0xAB; 16];
        ns.eui64 = [0xCD; 8];
        ns.dlfeat = 1;
        let mut b = [0u8; IDENTIFY_LEN];
        ns.encode(&mut b);
        assert_eq!(&b[0..8], &(1u64 << 21).to_le_bytes());
        assert_eq!(&b[8..16], &(1u64 << 21).to_le_bytes());
        assert_eq!((b[25], b[26], b[33], b[99]), (0, 0, 1, 1));
        assert_eq!(&b[104..120], &[0xAB; 16]);
        assert_eq!(&b[120..128], &[0xCD; 8]);
        assert_eq!(&b[128..132], &[0, 0, 12, 0]);
        let d = IdentifyNamespace::decode(&b).unwrap();
        assert_eq!(d, ns);
        assert_eq!(d.lba_size(), Some(4096));
        assert!(d.is_write_protected());
        assert_eq!(IdentifyNamespace::new(8, 9).lba_size(), Some(512));
        let mut odd = ns;
        odd.flbas = 3; // beyond NLBAF
        assert_eq!(odd.lba_size(), None);
    }

    #[test]
    fn namespace_list_and_descriptors() {
        let mut b = [0u8; IDENTIFY_LEN];
        encode_ns_list([1, 2, 5, 9], 2, &mut b);
        assert_eq!(decode_ns_list(&b).collect::<Vec<_>>(), vec![5, 9]);
        encode_ns_list(1..=5000, 0, &mut b);
        assert_eq!(decode_ns_list(&b).count(), 1024);
        assert_eq!(decode_ns_list(&b).last(), Some(1024));

        let descs = [
            NsIdDescriptor::Eui64([1; 8]),
            NsIdDescriptor::Nguid([2; 16]),
            NsIdDescriptor::Uuid([3; 16]),
            NsIdDescriptor::Csi(0),
        ];
        encode_ns_descriptors(&descs, &mut b);
        // struct nvme_ns_id_desc: nidt, nidl, reserved[2], nid
        assert_eq!(&b[0..4], &[1, 8, 0, 0]);
        assert_eq!(&b[12..16], &[2, 16, 0, 0]);
        assert_eq!(&b[32..36], &[3, 16, 0, 0]);
        assert_eq!(&b[52..57], &[4, 1, 0, 0, 0]);
        let got: Vec<_> = decode_ns_descriptors(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, descs);
        b[1] = 9;
        let got: Vec<_> = decode_ns_descriptors(&b).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic_and_reencode(bytes in proptest::collection::vec(any::<u8>(), 4096)) {
            if let Ok(c) = IdentifyController::decode(&bytes) {
                let mut b = [0u8; IDENTIFY_LEN];
                c.encode(&mut b);
                prop_assert_eq!(IdentifyController::decode(&b), Ok(c));
            }
            let ns = IdentifyNamespace::decode(&bytes).unwrap();
            let _ = ns.lba_size();
            let mut b = [0u8; IDENTIFY_LEN];
            ns.encode(&mut b);
            prop_assert_eq!(IdentifyNamespace::decode(&b), Ok(ns));
            let _ = decode_ns_list(&bytes).count();
            let _ = decode_ns_descriptors(&bytes).count();
        }
    }
}
