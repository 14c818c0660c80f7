//! Controller properties a fabrics host reads and writes with Property
//! Get/Set: CAP, VS, CC, CSTS (and NSSR), as typed bit layouts, and their
//! offsets and sizes.
//!
//! Invariant: each register type is a transparent wrapper over the raw value
//! (`from_raw(x).raw() == x` for every `x`), and each accessor reads or
//! writes exactly the bits the NVMe base specification assigns the field
//! (one-bit fields read as 0 or 1).

/// Property offsets.
pub mod offset {
    pub const CAP: u32 = 0x00;
    pub const VS: u32 = 0x08;
    pub const INTMS: u32 = 0x0C;
    pub const INTMC: u32 = 0x10;
    pub const CC: u32 = 0x14;
    pub const CSTS: u32 = 0x1C;
    pub const NSSR: u32 = 0x20;
}

/// The size in bytes of the property at `offset`, if there is one.
pub const fn size(offset: u32) -> Option<usize> {
    match offset {
        offset::CAP => Some(8),
        offset::VS | offset::INTMS | offset::INTMC | offset::CC | offset::CSTS | offset::NSSR => {
            Some(4)
        }
        _ => None,
    }
}

/// The value written to NSSR to reset the subsystem ("NVMe").
pub const NSSR_RESET: u32 = 0x4E56_4D65;

const fn field(v: u64, shift: u32, bits: u32) -> u64 {
    (v >> shift) & ((1u64 << bits) - 1)
}
const fn with(v: u64, shift: u32, bits: u32, x: u64) -> u64 {
    let mask = ((1u64 << bits) - 1) << shift;
    (v & !mask) | ((x << shift) & mask)
}

macro_rules! accessors {
    ($ty:ident, $raw:ty, $( $get:ident / $set:ident : $shift:expr, $bits:expr, $t:ty; )*) => {
        impl $ty {
            pub const fn from_raw(v: $raw) -> Self { $ty(v) }
            pub const fn raw(self) -> $raw { self.0 }
            $(
                pub const fn $get(self) -> $t { field(self.0 as u64, $shift, $bits) as $t }
                pub const fn $set(self, x: $t) -> Self {
                    $ty(with(self.0 as u64, $shift, $bits, x as u64) as $raw)
                }
            )*
        }
    };
}

/// Controller Capabilities (8 bytes at 0x00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cap(u64);

accessors! { Cap, u64,
    mqes / with_mqes: 0, 16, u16;
    cqr / with_cqr: 16, 1, u8;
    ams / with_ams: 17, 2, u8;
    to / with_to: 24, 8, u8;
    dstrd / with_dstrd: 32, 4, u8;
    nssrs / with_nssrs: 36, 1, u8;
    css / with_css: 37, 8, u8;
    bps / with_bps: 45, 1, u8;
    mpsmin / with_mpsmin: 48, 4, u8;
    mpsmax / with_mpsmax: 52, 4, u8;
}

impl Cap {
    /// CSS bit 0: the NVM command set.
    pub const CSS_NVM: u8 = 0x01;
    /// CSS bit 7: no I/O command set (discovery controllers).
    pub const CSS_NO_IO: u8 = 0x80;

    /// Capabilities of a fabrics controller: `mqes` (0-based max queue
    /// entries), contiguous queues required, `to` in 500 ms units, NVM
    /// command set, 4 KiB pages.
    pub const fn fabrics(mqes: u16, to: u8) -> Cap {
        Cap(0)
            .with_mqes(mqes)
            .with_cqr(1)
            .with_to(to)
            .with_css(Cap::CSS_NVM)
            .with_mpsmin(0)
            .with_mpsmax(0)
    }
}

/// Version (4 bytes at 0x08).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vs(u32);

accessors! { Vs, u32,
    ter / with_ter: 0, 8, u8;
    mnr / with_mnr: 8, 8, u8;
    mjr / with_mjr: 16, 16, u16;
}

impl Vs {
    pub const V1_3: Vs = Vs(0x0001_0300);
    pub const V1_4: Vs = Vs(0x0001_0400);
    pub const V2_0: Vs = Vs(0x0002_0000);
}

/// Controller Configuration (4 bytes at 0x14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cc(u32);

accessors! { Cc, u32,
    en / with_en: 0, 1, u8;
    css / with_css: 4, 3, u8;
    mps / with_mps: 7, 4, u8;
    ams / with_ams: 11, 3, u8;
    shn / with_shn: 14, 2, u8;
    iosqes / with_iosqes: 16, 4, u8;
    iocqes / with_iocqes: 20, 4, u8;
}

impl Cc {
    /// SHN: no notification, normal, abrupt.
    pub const SHN_NONE: u8 = 0;
    pub const SHN_NORMAL: u8 = 1;
    pub const SHN_ABRUPT: u8 = 2;
    /// IOSQES/IOCQES for 64-byte SQEs and 16-byte CQEs.
    pub const IOSQES_64: u8 = 6;
    pub const IOCQES_16: u8 = 4;
    pub const fn enabled(self) -> bool {
        self.en() != 0
    }
}

/// Controller Status (4 bytes at 0x1C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Csts(u32);

accessors! { Csts, u32,
    rdy / with_rdy: 0, 1, u8;
    cfs / with_cfs: 1, 1, u8;
    shst / with_shst: 2, 2, u8;
    nssro / with_nssro: 4, 1, u8;
    pp / with_pp: 5, 1, u8;
}

impl Csts {
    /// SHST: normal operation, shutdown occurring, shutdown complete.
    pub const SHST_NORMAL: u8 = 0;
    pub const SHST_OCCURRING: u8 = 1;
    pub const SHST_COMPLETE: u8 = 2;
    pub const fn ready(self) -> bool {
        self.rdy() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bit_positions_match_linux_nvme_h() {
        // NVME_CAP_MQES(cap) ((cap) & 0xffff), NVME_CAP_TIMEOUT ((cap) >> 24) & 0xff,
        // NVME_CAP_CSS ((cap) >> 37) & 0xff, NVME_CAP_MPSMIN ((cap) >> 48) & 0xf
        let cap = Cap::fabrics(127, 15);
        assert_eq!(cap.raw(), 127 | (1 << 16) | (15 << 24) | (1u64 << 37));
        assert_eq!(
            (cap.mqes(), cap.cqr(), cap.to(), cap.css()),
            (127, 1, 15, 1)
        );
        // NVME_CC_ENABLE 1, CSS_NVM 0 << 4, MPS shift 7, AMS shift 11,
        // SHN_NORMAL 1 << 14, IOSQES 6 << 16, IOCQES 4 << 20
        let cc = Cc::from_raw(0x0046_4001);
        assert!(cc.enabled());
        assert_eq!((cc.css(), cc.mps(), cc.ams()), (0, 0, 0));
        assert_eq!(cc.shn(), Cc::SHN_NORMAL);
        assert_eq!((cc.iosqes(), cc.iocqes()), (6, 4));
        assert_eq!(
            Cc::default()
                .with_en(1)
                .with_shn(1)
                .with_iosqes(6)
                .with_iocqes(4)
                .raw(),
            0x0046_4001
        );
        // NVME_CSTS_RDY 1, CFS 2, SHST_CMPLT 2 << 2
        let csts = Csts::default().with_rdy(1).with_shst(Csts::SHST_COMPLETE);
        assert_eq!(csts.raw(), 0x9);
        assert!(csts.ready());
        assert_eq!(Csts::from_raw(2).cfs(), 1);
        assert_eq!(Vs::V1_3.mjr(), 1);
        assert_eq!(Vs::V1_4.mnr(), 4);
        assert_eq!(size(offset::CAP), Some(8));
        assert_eq!(size(offset::CC), Some(4));
        assert_eq!(size(0x18), None);
        // setting a field never touches its neighbours
        assert_eq!(Cc::from_raw(u32::MAX).with_shn(0).raw(), !(3u32 << 14));
        assert_eq!(
            Cap::from_raw(0).with_mqes(u16::MAX).with_cqr(7).raw(),
            0x1_FFFF
        );
    }

    proptest! {
        #[test]
        fn registers_round_trip(v in any::<u64>()) {
            prop_assert_eq!(Cap::from_raw(v).raw(), v);
            let c = Cap::from_raw(v);
            prop_assert_eq!(c.with_mqes(c.mqes()).with_css(c.css()).with_to(c.to()).raw(), v);
            let cc = Cc::from_raw(v as u32);
            prop_assert_eq!(cc.with_en(cc.en()).with_shn(cc.shn()).with_iosqes(cc.iosqes()).raw(), v as u32);
        }
    }
}
