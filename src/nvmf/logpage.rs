//! Log pages a target returns to Get Log Page: Error Information, SMART /
//! Health, Firmware Slot, Changed Namespace List and the Discovery log, plus
//! the offset/length window every Get Log Page reply is cut with.
//!
//! Invariant: encoders write the specification's byte layout (pinned by
//! tests against Linux `struct nvme_smart_log`, `nvme_fw_slot_info_log`,
//! `nvme_error_slot` and `nvmf_disc_rsp_page_*`); decoders never panic and
//! re-encoding a decoded value decodes to the same value.

use thiserror::Error;

use super::status::Status;
use super::wire::{self, WireError};

/// Log page identifiers.
pub mod lid {
    pub const ERROR_INFO: u8 = 0x01;
    pub const SMART: u8 = 0x02;
    pub const FIRMWARE_SLOT: u8 = 0x03;
    pub const CHANGED_NS_LIST: u8 = 0x04;
    pub const COMMANDS_EFFECTS: u8 = 0x05;
    pub const ANA: u8 = 0x0C;
    pub const DISCOVERY: u8 = 0x70;
}

/// A Get Log Page window the log cannot serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LogRangeError {
    #[error("log page offset {0} is not dword aligned")]
    Unaligned(u64),
    #[error("log page offset {lpo} beyond the {len}-byte log")]
    BeyondEnd { lpo: u64, len: usize },
}

impl LogRangeError {
    pub const fn status(&self) -> Status {
        Status::INVALID_FIELD
    }
}

/// Fills `out` (the host's NUMD window) with `page` from byte `lpo`: the
/// bytes that exist, then zeros. Returns how many came from `page`.
pub fn copy_window(page: &[u8], lpo: u64, out: &mut [u8]) -> Result<usize, LogRangeError> {
    if !lpo.is_multiple_of(4) {
        return Err(LogRangeError::Unaligned(lpo));
    }
    let start = usize::try_from(lpo)
        .ok()
        .filter(|&s| s <= page.len())
        .ok_or(LogRangeError::BeyondEnd {
            lpo,
            len: page.len(),
        })?;
    let src = page.get(start..).unwrap_or(&[]);
    let n = src.len().min(out.len());
    let (head, tail) = out.split_at_mut(n);
    head.copy_from_slice(src.get(..n).unwrap_or(&[]));
    tail.fill(0);
    Ok(n)
}

/// One Error Information log entry (64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorInfoEntry {
    pub error_count: u64,
    pub sqid: u16,
    pub cid: u16,
    /// CQE status field (bits 15:1 of the CQE status; bit 0 is the phase).
    pub status_field: u16,
    pub param_error_location: u16,
    pub lba: u64,
    pub nsid: u32,
    pub vs: u8,
    pub trtype: u8,
    pub cs: u64,
    pub trtype_spec_info: u16,
}

impl ErrorInfoEntry {
    pub const LEN: usize = 64;
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        wire::put_u64(&mut b, 0, self.error_count);
        wire::put_u16(&mut b, 8, self.sqid);
        wire::put_u16(&mut b, 10, self.cid);
        wire::put_u16(&mut b, 12, self.status_field);
        wire::put_u16(&mut b, 14, self.param_error_location);
        wire::put_u64(&mut b, 16, self.lba);
        wire::put_u32(&mut b, 24, self.nsid);
        wire::put_u8(&mut b, 28, self.vs);
        wire::put_u8(&mut b, 29, self.trtype);
        wire::put_u64(&mut b, 32, self.cs);
        wire::put_u16(&mut b, 40, self.trtype_spec_info);
        b
    }
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        wire::need(b, Self::LEN, "error information entry")?;
        Ok(ErrorInfoEntry {
            error_count: wire::u64_at(b, 0),
            sqid: wire::u16_at(b, 8),
            cid: wire::u16_at(b, 10),
            status_field: wire::u16_at(b, 12),
            param_error_location: wire::u16_at(b, 14),
            lba: wire::u64_at(b, 16),
            nsid: wire::u32_at(b, 24),
            vs: wire::u8_at(b, 28),
            trtype: wire::u8_at(b, 29),
            cs: wire::u64_at(b, 32),
            trtype_spec_info: wire::u16_at(b, 40),
        })
    }
}

/// Appends an Error Information log of `entries` (newest first), padded with
/// empty entries to `elpe + 1` entries (ELPE from Identify Controller).
pub fn encode_error_log(entries: &[ErrorInfoEntry], elpe: u8, out: &mut Vec<u8>) {
    let total = (usize::from(elpe) + 1).max(entries.len());
    for i in 0..total {
        out.extend_from_slice(&entries.get(i).copied().unwrap_or_default().encode());
    }
}

/// SMART / Health Information (512 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmartLog {
    pub critical_warning: u8,
    /// Composite temperature in kelvins.
    pub temperature: u16,
    pub avail_spare: u8,
    pub spare_thresh: u8,
    pub percent_used: u8,
    /// In thousands of 512-byte units.
    pub data_units_read: u128,
    pub data_units_written: u128,
    pub host_reads: u128,
    pub host_writes: u128,
    pub ctrl_busy_time: u128,
    pub power_cycles: u128,
    pub power_on_hours: u128,
    pub unsafe_shutdowns: u128,
    pub media_errors: u128,
    pub num_err_log_entries: u128,
}

impl SmartLog {
    pub const LEN: usize = 512;
    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        out.fill(0);
        let o = &mut out[..];
        wire::put_u8(o, 0, self.critical_warning);
        wire::put_u16(o, 1, self.temperature);
        wire::put_u8(o, 3, self.avail_spare);
        wire::put_u8(o, 4, self.spare_thresh);
        wire::put_u8(o, 5, self.percent_used);
        for (i, v) in self.counters().iter().enumerate() {
            wire::put_u128(o, 32 + i * 16, *v);
        }
    }
    fn counters(&self) -> [u128; 10] {
        [
            self.data_units_read,
            self.data_units_written,
            self.host_reads,
            self.host_writes,
            self.ctrl_busy_time,
            self.power_cycles,
            self.power_on_hours,
            self.unsafe_shutdowns,
            self.media_errors,
            self.num_err_log_entries,
        ]
    }
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        wire::need(b, Self::LEN, "smart log")?;
        let c = |i: usize| wire::u128_at(b, 32 + i * 16);
        Ok(SmartLog {
            critical_warning: wire::u8_at(b, 0),
            temperature: wire::u16_at(b, 1),
            avail_spare: wire::u8_at(b, 3),
            spare_thresh: wire::u8_at(b, 4),
            percent_used: wire::u8_at(b, 5),
            data_units_read: c(0),
            data_units_written: c(1),
            host_reads: c(2),
            host_writes: c(3),
            ctrl_busy_time: c(4),
            power_cycles: c(5),
            power_on_hours: c(6),
            unsafe_shutdowns: c(7),
            media_errors: c(8),
            num_err_log_entries: c(9),
        })
    }
}

/// Firmware Slot Information (512 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirmwareSlotLog {
    /// Active firmware info: active slot (2:0), next slot (6:4).
    pub afi: u8,
    /// Firmware revision per slot 1..=7 (8 ASCII bytes each, zero if empty).
    pub frs: [[u8; 8]; 7],
}

impl FirmwareSlotLog {
    pub const LEN: usize = 512;
    /// Slot 1 active, holding revision `fr`.
    pub fn single(fr: &str) -> Self {
        let mut s = FirmwareSlotLog {
            afi: 1,
            ..Default::default()
        };
        wire::put_str(&mut s.frs[0], 0, 8, fr, b' ');
        s
    }
    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        out.fill(0);
        wire::put_u8(out, 0, self.afi);
        for (i, fr) in self.frs.iter().enumerate() {
            wire::put_bytes(out, 8 + i * 8, fr);
        }
    }
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        wire::need(b, Self::LEN, "firmware slot log")?;
        let mut frs = [[0u8; 8]; 7];
        for (i, fr) in frs.iter_mut().enumerate() {
            *fr = wire::bytes_at(b, 8 + i * 8);
        }
        Ok(FirmwareSlotLog {
            afi: wire::u8_at(b, 0),
            frs,
        })
    }
}

/// Size of the Changed Namespace List log (1024 NSIDs).
pub const CHANGED_NS_LEN: usize = 4096;
/// Entries of the Changed Namespace List.
pub const CHANGED_NS_MAX: usize = 1024;
/// First entry when more than 1024 namespaces changed.
pub const CHANGED_NS_OVERFLOW: u32 = 0xFFFF_FFFF;

/// Encodes the Changed Namespace List: the NSIDs, or the overflow marker
/// alone when there are more than 1024.
pub fn encode_changed_ns(nsids: &[u32], out: &mut [u8; CHANGED_NS_LEN]) {
    out.fill(0);
    if nsids.len() > CHANGED_NS_MAX {
        wire::put_u32(out, 0, CHANGED_NS_OVERFLOW);
        return;
    }
    for (i, id) in nsids.iter().enumerate() {
        wire::put_u32(out, i * 4, *id);
    }
}

/// The entries of a Changed Namespace List up to the first zero (a lone
/// [`CHANGED_NS_OVERFLOW`] means "more than 1024, rescan all").
pub fn decode_changed_ns(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .take(CHANGED_NS_MAX)
        .map(|c| wire::u32_at(c, 0))
        .take_while(|&id| id != 0)
}

/// Discovery log constants.
pub mod discovery {
    /// Transport types.
    pub const TRTYPE_RDMA: u8 = 1;
    pub const TRTYPE_FC: u8 = 2;
    pub const TRTYPE_TCP: u8 = 3;
    /// Address families.
    pub const ADRFAM_IPV4: u8 = 1;
    pub const ADRFAM_IPV6: u8 = 2;
    /// Subsystem types.
    pub const SUBTYPE_DISCOVERY_REFERRAL: u8 = 1;
    pub const SUBTYPE_NVME: u8 = 2;
    pub const SUBTYPE_CURRENT_DISCOVERY: u8 = 3;
    /// TREQ: secure channel not specified / required / not required, and
    /// SQ flow control disable supported.
    pub const TREQ_NOT_SPECIFIED: u8 = 0;
    pub const TREQ_REQUIRED: u8 = 1;
    pub const TREQ_NOT_REQUIRED: u8 = 2;
    pub const TREQ_DISABLE_SQFLOW: u8 = 1 << 2;
    /// Controller id of the dynamic controller model.
    pub const CNTLID_DYNAMIC: u16 = 0xFFFF;
    /// TCP security type in TSAS byte 0: none.
    pub const TCP_SECTYPE_NONE: u8 = 0;
    /// Size of the header and of each entry.
    pub const RECORD_LEN: usize = 1024;
    /// The well-known discovery subsystem NQN.
    pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
}

/// The Discovery log page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiscoveryLogHeader {
    /// Generation counter, changes whenever the log changes.
    pub genctr: u64,
    pub numrec: u64,
    pub recfmt: u16,
}

impl DiscoveryLogHeader {
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        wire::need(b, discovery::RECORD_LEN, "discovery log header")?;
        Ok(DiscoveryLogHeader {
            genctr: wire::u64_at(b, 0),
            numrec: wire::u64_at(b, 8),
            recfmt: wire::u16_at(b, 16),
        })
    }
}

/// One Discovery log page entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiscoveryEntry<'a> {
    pub trtype: u8,
    pub adrfam: u8,
    pub subtype: u8,
    pub treq: u8,
    pub portid: u16,
    pub cntlid: u16,
    /// Admin max submission queue size.
    pub asqsz: u16,
    pub eflags: u16,
    /// Transport service id (the TCP port, as text), at most 32 bytes.
    pub trsvcid: &'a str,
    pub subnqn: &'a str,
    /// Transport address (the IP address, as text), at most 256 bytes.
    pub traddr: &'a str,
    /// TSAS byte 0 for TCP: security type.
    pub tcp_sectype: u8,
}

impl<'a> DiscoveryEntry<'a> {
    /// Encodes into a 1024-byte record; TRSVCID and TRADDR are space padded.
    pub fn encode(&self, out: &mut [u8]) {
        let o = match out.get_mut(..discovery::RECORD_LEN) {
            Some(o) => o,
            None => return,
        };
        o.fill(0);
        wire::put_u8(o, 0, self.trtype);
        wire::put_u8(o, 1, self.adrfam);
        wire::put_u8(o, 2, self.subtype);
        wire::put_u8(o, 3, self.treq);
        wire::put_u16(o, 4, self.portid);
        wire::put_u16(o, 6, self.cntlid);
        wire::put_u16(o, 8, self.asqsz);
        wire::put_u16(o, 10, self.eflags);
        wire::put_str(o, 32, 32, self.trsvcid, b' ');
        wire::put_cstr(o, 256, 256, self.subnqn);
        wire::put_str(o, 512, 256, self.traddr, b' ');
        wire::put_u8(o, 768, self.tcp_sectype);
    }
    pub fn decode(b: &'a [u8]) -> Result<Self, WireError> {
        wire::need(b, discovery::RECORD_LEN, "discovery log entry")?;
        Ok(DiscoveryEntry {
            trtype: wire::u8_at(b, 0),
            adrfam: wire::u8_at(b, 1),
            subtype: wire::u8_at(b, 2),
            treq: wire::u8_at(b, 3),
            portid: wire::u16_at(b, 4),
            cntlid: wire::u16_at(b, 6),
            asqsz: wire::u16_at(b, 8),
            eflags: wire::u16_at(b, 10),
            trsvcid: wire::get_padded(b, 32, 32, "trsvcid")?,
            subnqn: wire::get_cstr(b, 256, 256, "subnqn")?,
            traddr: wire::get_padded(b, 512, 256, "traddr")?,
            tcp_sectype: wire::u8_at(b, 768),
        })
    }
}

/// Appends a whole Discovery log page (header, then one record per entry).
pub fn encode_discovery_log(genctr: u64, entries: &[DiscoveryEntry<'_>], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + discovery::RECORD_LEN * (1 + entries.len()), 0);
    let page = out.get_mut(start..).unwrap_or(&mut []);
    wire::put_u64(page, 0, genctr);
    wire::put_u64(page, 8, entries.len() as u64);
    wire::put_u16(page, 16, 0);
    for (i, e) in entries.iter().enumerate() {
        if let Some(rec) = page.get_mut((i + 1) * discovery::RECORD_LEN..) {
            e.encode(rec);
        }
    }
}

/// The entries present in (a prefix of) a Discovery log page, at most
/// `numrec` of them.
pub fn decode_discovery_entries(
    page: &[u8],
) -> Result<impl Iterator<Item = Result<DiscoveryEntry<'_>, WireError>> + '_, WireError> {
    let h = DiscoveryLogHeader::decode(page)?;
    let records = page.get(discovery::RECORD_LEN..).unwrap_or(&[]);
    let n = usize::try_from(h.numrec).unwrap_or(usize::MAX);
    Ok(records
        .chunks_exact(discovery::RECORD_LEN)
        .take(n)
        .map(DiscoveryEntry::decode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_slices_pads_and_rejects() {
        let page: Vec<u8> = (0..100u8).collect();
        let mut out = [0xFFu8; 16];
        assert_eq!(copy_window(&page, 8, &mut out), Ok(16));
        assert_eq!(out[0], 8);
        assert_eq!(copy_window(&page, 92, &mut out), Ok(8));
        assert_eq!(&out[8..], &[0; 8]);
        assert_eq!(copy_window(&page, 100, &mut out), Ok(0));
        assert_eq!(
            copy_window(&page, 2, &mut out),
            Err(LogRangeError::Unaligned(2))
        );
        let e = copy_window(&page, 104, &mut out).unwrap_err();
        assert_eq!(e.status(), Status::INVALID_FIELD);
        assert!(copy_window(&page, u64::MAX - 3, &mut out).is_err());
    }

    #[test]
    fn smart_fw_and_error_layouts() {
        let s = SmartLog {
            temperature: 300,
            avail_spare: 100,
            data_units_read: 5,
            host_writes: 7,
            power_on_hours: 9,
            num_err_log_entries: 11,
            ..Default::default()
        };
        let mut b = [0u8; 512];
        s.encode(&mut b);
        assert_eq!(&b[1..3], &300u16.to_le_bytes());
        assert_eq!(b[3], 100);
        assert_eq!(b[32], 5);
        assert_eq!(b[80], 7);
        assert_eq!(b[128], 9);
        assert_eq!(b[176], 11);
        assert_eq!(SmartLog::decode(&b), Ok(s));

        let f = FirmwareSlotLog::single("0.1.0");
        let mut b = [0u8; 512];
        f.encode(&mut b);
        assert_eq!(b[0], 1);
        assert_eq!(&b[8..16], b"0.1.0   ");
        assert_eq!(FirmwareSlotLog::decode(&b), Ok(f));

        let e = ErrorInfoEntry {
            error_count: 1,
            sqid: 2,
            cid: 3,
            status_field: 4,
            nsid: 5,
            lba: 6,
            ..Default::default()
        };
        let raw = e.encode();
        assert_eq!(
            (raw[0], raw[8], raw[10], raw[12], raw[16], raw[24]),
            (1, 2, 3, 4, 6, 5)
        );
        assert_eq!(ErrorInfoEntry::decode(&raw), Ok(e));
        let mut log = Vec::new();
        encode_error_log(&[], 3, &mut log);
        assert_eq!(log, vec![0; 256]);
    }

    #[test]
    fn changed_ns_list_and_overflow() {
        let mut b = [0u8; CHANGED_NS_LEN];
        encode_changed_ns(&[3, 7], &mut b);
        assert_eq!(decode_changed_ns(&b).collect::<Vec<_>>(), vec![3, 7]);
        let many: Vec<u32> = (1..=1025).collect();
        encode_changed_ns(&many, &mut b);
        assert_eq!(
            decode_changed_ns(&b).collect::<Vec<_>>(),
            vec![CHANGED_NS_OVERFLOW]
        );
    }

    #[test]
    fn discovery_log_matches_nvmf_disc_rsp_page_layout() {
        let entries = [
            DiscoveryEntry {
                trtype: discovery::TRTYPE_TCP,
                adrfam: discovery::ADRFAM_IPV4,
                subtype: discovery::SUBTYPE_NVME,
                treq: discovery::TREQ_NOT_SPECIFIED | discovery::TREQ_DISABLE_SQFLOW,
                portid: 1,
                cntlid: discovery::CNTLID_DYNAMIC,
                asqsz: 32,
                eflags: 0,
                trsvcid: "4420",
                subnqn: "nqn.2024-01.io.rewind:vol0",
                traddr: "192.168.1.10",
                tcp_sectype: discovery::TCP_SECTYPE_NONE,
            },
            DiscoveryEntry {
                subtype: discovery::SUBTYPE_CURRENT_DISCOVERY,
                subnqn: discovery::DISCOVERY_NQN,
                trsvcid: "8009",
                traddr: "192.168.1.10",
                trtype: discovery::TRTYPE_TCP,
                adrfam: discovery::ADRFAM_IPV4,
                ..Default::default()
            },
        ];
        let mut page = Vec::new();
        encode_discovery_log(42, &entries, &mut page);
        assert_eq!(page.len(), 3 * 1024);
        assert_eq!(&page[0..8], &42u64.to_le_bytes());
        assert_eq!(&page[8..16], &2u64.to_le_bytes());
        let e = &page[1024..2048];
        assert_eq!(&e[0..4], &[3, 1, 2, 4]);
        assert_eq!(&e[4..10], &[1, 0, 0xFF, 0xFF, 32, 0]);
        assert_eq!(&e[32..36], b"4420");
        assert_eq!(e[36], b' ');
        assert_eq!(&e[256..256 + 26], entries[0].subnqn.as_bytes());
        assert_eq!(&e[512..524], b"192.168.1.10");
        let h = DiscoveryLogHeader::decode(&page).unwrap();
        assert_eq!((h.genctr, h.numrec, h.recfmt), (42, 2, 0));
        let got: Vec<_> = decode_discovery_entries(&page)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, entries);
        // a NUL-padded TRADDR (as Linux nvmet writes it) decodes the same
        let mut linux = page.clone();
        linux[1024 + 512 + 12..1024 + 768].fill(0);
        let got: Vec<_> = decode_discovery_entries(&linux)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got[0].traddr, "192.168.1.10");
        // a short page yields only the records present
        assert_eq!(decode_discovery_entries(&page[..2048]).unwrap().count(), 1);
    }

    proptest! {
        #[test]
        fn decoders_never_panic_and_reencode(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
            if let Ok(s) = SmartLog::decode(&bytes) {
                let mut b = [0u8; 512];
                s.encode(&mut b);
                prop_assert_eq!(SmartLog::decode(&b), Ok(s));
            }
            if let Ok(it) = decode_discovery_entries(&bytes) {
                for e in it.flatten() {
                    let mut b = [0u8; 1024];
                    e.encode(&mut b);
                    prop_assert_eq!(DiscoveryEntry::decode(&b), Ok(e));
                }
            }
            let _ = decode_changed_ns(&bytes).count();
            let _ = ErrorInfoEntry::decode(&bytes);
            let _ = FirmwareSlotLog::decode(&bytes);
        }
    }
}
