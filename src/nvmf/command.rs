//! The NVMe submission queue entry (SQE, 64 bytes): a borrowing view with
//! typed accessors for the admin, NVM and fabrics commands the appliance
//! serves, the SGL data pointer as NVMe/TCP uses it, the 1024-byte Connect
//! data, and an owned builder the host library uses to issue commands.
//!
//! Invariant: every accessor reads fixed offsets of a full 64-byte entry, so
//! none can fail or panic; the decoders that interpret variable data (SGL
//! descriptor, fabrics command type, Connect data, DSM ranges) return a
//! [`CommandError`] that names the NVMe status the target should answer with.

use thiserror::Error;

use super::status::Status;
use super::wire::{self, WireError};

/// Size of a submission queue entry.
pub const SQE_LEN: usize = 64;

/// Admin command opcodes.
pub mod admin {
    pub const DELETE_SQ: u8 = 0x00;
    pub const CREATE_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_CQ: u8 = 0x04;
    pub const CREATE_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0A;
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0C;
    pub const NS_MANAGEMENT: u8 = 0x0D;
    pub const FIRMWARE_COMMIT: u8 = 0x10;
    pub const FIRMWARE_DOWNLOAD: u8 = 0x11;
    pub const NS_ATTACH: u8 = 0x15;
    pub const KEEP_ALIVE: u8 = 0x18;
    pub const DIRECTIVE_SEND: u8 = 0x19;
    pub const DIRECTIVE_RECEIVE: u8 = 0x1A;
    pub const FORMAT_NVM: u8 = 0x80;
    pub const SECURITY_SEND: u8 = 0x81;
    pub const SECURITY_RECEIVE: u8 = 0x82;
}

/// NVM command set I/O opcodes.
pub mod io {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE_UNCORRECTABLE: u8 = 0x04;
    pub const COMPARE: u8 = 0x05;
    pub const WRITE_ZEROES: u8 = 0x08;
    pub const DATASET_MANAGEMENT: u8 = 0x09;
    pub const VERIFY: u8 = 0x0C;
}

/// The fabrics command opcode; the command type is byte 4 ([`fctype`]).
pub const FABRICS_OPCODE: u8 = 0x7F;

/// Fabrics command types (SQE byte 4 of opcode 0x7F).
pub mod fctype {
    pub const PROPERTY_SET: u8 = 0x00;
    pub const CONNECT: u8 = 0x01;
    pub const PROPERTY_GET: u8 = 0x04;
    pub const AUTH_SEND: u8 = 0x05;
    pub const AUTH_RECEIVE: u8 = 0x06;
    pub const DISCONNECT: u8 = 0x08;
}

/// Identify CNS values.
pub mod cns {
    pub const NAMESPACE: u8 = 0x00;
    pub const CONTROLLER: u8 = 0x01;
    pub const ACTIVE_NS_LIST: u8 = 0x02;
    pub const NS_ID_DESCRIPTORS: u8 = 0x03;
    pub const CSI_NAMESPACE: u8 = 0x05;
    pub const CSI_CONTROLLER: u8 = 0x06;
    pub const CSI_ACTIVE_NS_LIST: u8 = 0x07;
}

/// Feature identifiers (Get/Set Features CDW10 bits 7:0).
pub mod feature {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MANAGEMENT: u8 = 0x02;
    pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    pub const WRITE_ATOMICITY: u8 = 0x0A;
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0B;
    pub const TIMESTAMP: u8 = 0x0E;
    pub const KEEP_ALIVE_TIMER: u8 = 0x0F;
    pub const HOST_IDENTIFIER: u8 = 0x81;
    pub const RESERVATION_MASK: u8 = 0x82;
    pub const RESERVATION_PERSISTENCE: u8 = 0x83;
    pub const WRITE_PROTECT: u8 = 0x84;
}

/// SQE byte 1: fused operation (bits 1:0) and PSDT (bits 7:6).
pub mod flags {
    pub const FUSE_MASK: u8 = 0x03;
    pub const PSDT_MASK: u8 = 0xC0;
    /// PSDT 01b: SGLs for data, MPTR is a contiguous buffer. Fabrics
    /// commands must carry exactly this.
    pub const SGL_METABUF: u8 = 0x40;
    /// PSDT 10b: SGLs for data, MPTR points to an SGL segment.
    pub const SGL_METASEG: u8 = 0x80;
}

/// SGL descriptor types (byte 15 bits 7:4) and subtypes (bits 3:0).
pub mod sgl {
    pub const TYPE_DATA_BLOCK: u8 = 0x0;
    pub const TYPE_BIT_BUCKET: u8 = 0x1;
    pub const TYPE_SEGMENT: u8 = 0x2;
    pub const TYPE_LAST_SEGMENT: u8 = 0x3;
    pub const TYPE_KEYED_DATA_BLOCK: u8 = 0x4;
    pub const TYPE_TRANSPORT_DATA_BLOCK: u8 = 0x5;
    pub const SUBTYPE_ADDRESS: u8 = 0x0;
    pub const SUBTYPE_OFFSET: u8 = 0x1;
    pub const SUBTYPE_TRANSPORT_A: u8 = 0xA;
}

/// A command that cannot be served as encoded; [`CommandError::status`] is
/// the completion the target returns (with DNR set).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// An SGL descriptor NVMe/TCP does not carry (keyed, segment, bit
    /// bucket, address subtypes, unknown transport subtypes).
    #[error("SGL descriptor type {sgl_type:#x} subtype {subtype:#x} is not supported over TCP")]
    SglType { sgl_type: u8, subtype: u8 },
    /// A fabrics command type this layer does not know.
    #[error("fabrics command type {0:#04x} is not supported")]
    FabricsType(u8),
    /// In-band authentication (Authentication Send/Receive) is not supported.
    #[error("fabrics authentication command {0:#04x} is not supported")]
    Authentication(u8),
    /// Property Get/Set with a size other than 4 or 8 bytes.
    #[error("property attribute {0:#x}: size must be 4 or 8 bytes")]
    PropertySize(u8),
    /// The Connect data is malformed; `offset` is the field's byte offset in
    /// the 1024-byte Connect data.
    #[error("connect data: {source}")]
    ConnectData { offset: u16, source: WireError },
    /// Data the command needs is shorter than the command says.
    #[error("command data: {0}")]
    Data(WireError),
}

impl CommandError {
    /// The status a target completes the command with.
    pub fn status(&self) -> Status {
        match self {
            CommandError::SglType { .. } => Status::SGL_DESCRIPTOR_TYPE_INVALID,
            CommandError::FabricsType(_) | CommandError::Authentication(_) => {
                Status::INVALID_OPCODE
            }
            CommandError::PropertySize(_) => Status::INVALID_FIELD,
            CommandError::ConnectData { .. } => Status::CONNECT_INVALID_PARAMETERS,
            CommandError::Data(_) => Status::DATA_SGL_LENGTH_INVALID,
        }
    }
    /// Completion dword 0 for the error: for Connect Invalid Parameters, the
    /// IATTR/IPO pair pointing at the bad field.
    pub fn result(&self) -> u32 {
        match self {
            CommandError::ConnectData { offset, .. } => connect_invalid_in_data(*offset),
            _ => 0,
        }
    }
}

/// Completion dword 0 of a Connect failed with Invalid Parameters, the field
/// at `offset` of the Connect *data* (IATTR = 1).
pub const fn connect_invalid_in_data(offset: u16) -> u32 {
    (1 << 16) | offset as u32
}
/// Completion dword 0 of a Connect failed with Invalid Parameters, the field
/// at `offset` of the Connect *command* (IATTR = 0).
pub const fn connect_invalid_in_command(offset: u16) -> u32 {
    offset as u32
}

/// The data pointer of an NVMe/TCP command: one SGL descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sgl {
    /// Data block, offset subtype: data is in the command capsule, `offset`
    /// bytes after the SQE (ICDOFF, 0 for us).
    InCapsule { offset: u64, length: u32 },
    /// Transport SGL data block (type 0x5, subtype 0xA): data moves in
    /// H2CData/C2HData PDUs. `length` 0 is the null descriptor Linux sends
    /// for commands without data.
    Transport { length: u32 },
}

impl Sgl {
    pub const LEN: usize = 16;

    /// Data length the descriptor describes.
    pub const fn length(&self) -> u32 {
        match self {
            Sgl::InCapsule { length, .. } | Sgl::Transport { length } => *length,
        }
    }
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        match *self {
            Sgl::InCapsule { offset, length } => {
                wire::put_u64(&mut b, 0, offset);
                wire::put_u32(&mut b, 8, length);
                wire::put_u8(
                    &mut b,
                    15,
                    (sgl::TYPE_DATA_BLOCK << 4) | sgl::SUBTYPE_OFFSET,
                );
            }
            Sgl::Transport { length } => {
                wire::put_u32(&mut b, 8, length);
                wire::put_u8(
                    &mut b,
                    15,
                    (sgl::TYPE_TRANSPORT_DATA_BLOCK << 4) | sgl::SUBTYPE_TRANSPORT_A,
                );
            }
        }
        b
    }
    pub fn decode(b: &[u8; 16]) -> Result<Sgl, CommandError> {
        let id = wire::u8_at(b, 15);
        let (sgl_type, subtype) = (id >> 4, id & 0xF);
        let length = wire::u32_at(b, 8);
        match (sgl_type, subtype) {
            (sgl::TYPE_DATA_BLOCK, sgl::SUBTYPE_OFFSET) => Ok(Sgl::InCapsule {
                offset: wire::u64_at(b, 0),
                length,
            }),
            (sgl::TYPE_TRANSPORT_DATA_BLOCK, sgl::SUBTYPE_TRANSPORT_A) => {
                Ok(Sgl::Transport { length })
            }
            _ => Err(CommandError::SglType { sgl_type, subtype }),
        }
    }
}

/// Read or Write (NVM): starting LBA and 0-based block count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadWrite {
    pub slba: u64,
    /// Number of logical blocks, 0-based (0 means one block).
    pub nlb0: u16,
    /// Force unit access (CDW12 bit 30).
    pub fua: bool,
    /// Limited retry (CDW12 bit 31).
    pub lr: bool,
    /// Protection information field (CDW12 bits 29:26).
    pub prinfo: u8,
    /// Directive type (CDW12 bits 23:20).
    pub dtype: u8,
}

impl ReadWrite {
    /// Number of blocks (1-based).
    pub const fn blocks(&self) -> u32 {
        self.nlb0 as u32 + 1
    }
}

/// Write Zeroes (NVM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteZeroes {
    pub slba: u64,
    /// Number of logical blocks, 0-based.
    pub nlb0: u16,
    /// Deallocate (CDW12 bit 25).
    pub deac: bool,
    pub fua: bool,
    pub lr: bool,
}

impl WriteZeroes {
    pub const fn blocks(&self) -> u32 {
        self.nlb0 as u32 + 1
    }
}

/// Dataset Management (NVM): number of ranges and attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dsm {
    /// Number of ranges, 0-based (CDW10 bits 7:0).
    pub nr0: u8,
    /// Integral dataset for read (CDW11 bit 0).
    pub idr: bool,
    /// Integral dataset for write (CDW11 bit 1).
    pub idw: bool,
    /// Deallocate (CDW11 bit 2).
    pub ad: bool,
}

impl Dsm {
    pub const fn ranges(&self) -> usize {
        self.nr0 as usize + 1
    }
    /// Bytes of range data the command transfers.
    pub const fn data_len(&self) -> usize {
        self.ranges() * DsmRange::LEN
    }
}

/// One Dataset Management range (16 bytes). Unlike Read/Write, `nlb` is a
/// 1-based count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsmRange {
    pub cattr: u32,
    pub nlb: u32,
    pub slba: u64,
}

impl DsmRange {
    pub const LEN: usize = 16;
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        wire::put_u32(&mut b, 0, self.cattr);
        wire::put_u32(&mut b, 4, self.nlb);
        wire::put_u64(&mut b, 8, self.slba);
        b
    }
    fn decode(b: &[u8]) -> DsmRange {
        DsmRange {
            cattr: wire::u32_at(b, 0),
            nlb: wire::u32_at(b, 4),
            slba: wire::u64_at(b, 8),
        }
    }
}

/// The ranges of a Dataset Management command from its data: exactly
/// `dsm.ranges()` of them, or an error if `data` is too short.
pub fn dsm_ranges<'a>(
    dsm: &Dsm,
    data: &'a [u8],
) -> Result<impl Iterator<Item = DsmRange> + 'a, CommandError> {
    let len = dsm.data_len();
    wire::need(data, len, "dataset management ranges").map_err(CommandError::Data)?;
    Ok(data
        .get(..len)
        .unwrap_or(&[])
        .chunks_exact(DsmRange::LEN)
        .map(DsmRange::decode))
}

/// Identify: CNS, controller id, command set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identify {
    pub cns: u8,
    pub cntid: u16,
    /// Command set identifier (CDW11 bits 31:24).
    pub csi: u8,
}

/// Get Log Page fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLogPage {
    pub lid: u8,
    /// Log specific field (CDW10 bits 14:8).
    pub lsp: u8,
    /// Retain asynchronous event (CDW10 bit 15).
    pub rae: bool,
    /// Number of dwords, 0-based (NUMDU:NUMDL).
    pub numd: u32,
    /// Log specific identifier (CDW11 bits 31:16).
    pub lsi: u16,
    /// Log page offset in bytes (CDW13:CDW12).
    pub lpo: u64,
    /// Command set identifier (CDW14 bits 31:24).
    pub csi: u8,
}

impl GetLogPage {
    /// Bytes the host asked for.
    pub const fn len_bytes(&self) -> u64 {
        (self.numd as u64 + 1) * 4
    }
}

/// Set Features fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetFeatures {
    pub fid: u8,
    /// Save (CDW10 bit 31).
    pub sv: bool,
    /// Feature value (CDW11).
    pub value: u32,
}

/// Get Features fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetFeatures {
    pub fid: u8,
    /// Select: 0 current, 1 default, 2 saved, 3 supported capabilities.
    pub sel: u8,
    /// CDW11, feature specific.
    pub cdw11: u32,
}

/// Abort fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    pub sqid: u16,
    pub cid: u16,
}

/// Property size of a Property Get/Set (ATTRIB bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertySize {
    Four,
    Eight,
}

impl PropertySize {
    pub const fn bytes(self) -> usize {
        match self {
            PropertySize::Four => 4,
            PropertySize::Eight => 8,
        }
    }
    const fn attrib(self) -> u8 {
        match self {
            PropertySize::Four => 0,
            PropertySize::Eight => 1,
        }
    }
}

/// Fabrics Connect command fields (SQE bytes 40..52).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    /// Record format, 0 is the only one defined.
    pub recfmt: u16,
    /// Queue id: 0 admin, otherwise I/O.
    pub qid: u16,
    /// Submission queue size, 0-based.
    pub sqsize: u16,
    /// Connect attributes (bit 2: disable SQ flow control).
    pub cattr: u8,
    /// Keep alive timeout in milliseconds (admin queue).
    pub kato: u32,
}

impl Connect {
    /// Byte offsets in the SQE, for [`connect_invalid_in_command`].
    pub const RECFMT_OFFSET: u16 = 40;
    pub const QID_OFFSET: u16 = 42;
    pub const SQSIZE_OFFSET: u16 = 44;
    pub const CATTR_OFFSET: u16 = 46;
    pub const KATO_OFFSET: u16 = 48;
    /// CATTR bit 2: the host asks to disable SQ flow control.
    pub const fn sq_flow_control_disabled(&self) -> bool {
        self.cattr & (1 << 2) != 0
    }
}

/// A decoded fabrics command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fabrics {
    Connect(Connect),
    PropertyGet {
        size: PropertySize,
        offset: u32,
    },
    PropertySet {
        size: PropertySize,
        offset: u32,
        value: u64,
    },
    Disconnect {
        recfmt: u16,
    },
}

/// A borrowed 64-byte submission queue entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    raw: &'a [u8; SQE_LEN],
}

impl std::fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("opcode", &format_args!("{:#04x}", self.opcode()))
            .field("cid", &self.cid())
            .field("nsid", &self.nsid())
            .finish_non_exhaustive()
    }
}

impl<'a> Command<'a> {
    pub const fn new(raw: &'a [u8; SQE_LEN]) -> Self {
        Command { raw }
    }
    /// A view of the first 64 bytes of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        buf.get(..SQE_LEN)
            .and_then(|s| <&[u8; SQE_LEN]>::try_from(s).ok())
            .map(Command::new)
            .ok_or(WireError::Short {
                what: "submission queue entry",
                need: SQE_LEN,
                got: buf.len(),
            })
    }
    pub const fn raw(&self) -> &'a [u8; SQE_LEN] {
        self.raw
    }
    /// An owned copy, for commands that outlive the receive buffer.
    pub const fn to_buf(&self) -> CommandBuf {
        CommandBuf { raw: *self.raw }
    }
    pub fn opcode(&self) -> u8 {
        wire::u8_at(self.raw, 0)
    }
    pub fn flags(&self) -> u8 {
        wire::u8_at(self.raw, 1)
    }
    /// Fused operation: 0 normal, 1 first, 2 second.
    pub fn fuse(&self) -> u8 {
        self.flags() & flags::FUSE_MASK
    }
    /// PRP or SGL for data transfer: 0 PRP, 1 SGL with MPTR buffer, 2 SGL
    /// with MPTR segment.
    pub fn psdt(&self) -> u8 {
        (self.flags() & flags::PSDT_MASK) >> 6
    }
    pub fn cid(&self) -> u16 {
        wire::u16_at(self.raw, 2)
    }
    pub fn nsid(&self) -> u32 {
        wire::u32_at(self.raw, 4)
    }
    pub fn cdw2(&self) -> u32 {
        wire::u32_at(self.raw, 8)
    }
    pub fn cdw3(&self) -> u32 {
        wire::u32_at(self.raw, 12)
    }
    pub fn mptr(&self) -> u64 {
        wire::u64_at(self.raw, 16)
    }
    pub fn dptr(&self) -> [u8; 16] {
        wire::bytes_at(self.raw, 24)
    }
    /// Command dword `n` (0..=15; anything else reads 0).
    pub fn cdw(&self, n: usize) -> u32 {
        if n < 16 {
            wire::u32_at(self.raw, n * 4)
        } else {
            0
        }
    }
    pub fn cdw10(&self) -> u32 {
        self.cdw(10)
    }
    pub fn cdw11(&self) -> u32 {
        self.cdw(11)
    }
    pub fn cdw12(&self) -> u32 {
        self.cdw(12)
    }
    pub fn cdw13(&self) -> u32 {
        self.cdw(13)
    }
    pub fn cdw14(&self) -> u32 {
        self.cdw(14)
    }
    pub fn cdw15(&self) -> u32 {
        self.cdw(15)
    }
    /// The data pointer as an NVMe/TCP SGL descriptor.
    pub fn sgl(&self) -> Result<Sgl, CommandError> {
        Sgl::decode(&self.dptr())
    }
    fn slba(&self) -> u64 {
        wire::u64_at(self.raw, 40)
    }
    /// Read/Write fields (meaningful for [`io::READ`], [`io::WRITE`],
    /// [`io::COMPARE`], [`io::VERIFY`]).
    pub fn read_write(&self) -> ReadWrite {
        let c12 = self.cdw12();
        ReadWrite {
            slba: self.slba(),
            nlb0: c12 as u16,
            fua: c12 & (1 << 30) != 0,
            lr: c12 & (1 << 31) != 0,
            prinfo: ((c12 >> 26) & 0xF) as u8,
            dtype: ((c12 >> 20) & 0xF) as u8,
        }
    }
    pub fn write_zeroes(&self) -> WriteZeroes {
        let c12 = self.cdw12();
        WriteZeroes {
            slba: self.slba(),
            nlb0: c12 as u16,
            deac: c12 & (1 << 25) != 0,
            fua: c12 & (1 << 30) != 0,
            lr: c12 & (1 << 31) != 0,
        }
    }
    pub fn dsm(&self) -> Dsm {
        let c11 = self.cdw11();
        Dsm {
            nr0: self.cdw10() as u8,
            idr: c11 & 1 != 0,
            idw: c11 & 2 != 0,
            ad: c11 & 4 != 0,
        }
    }
    pub fn identify(&self) -> Identify {
        Identify {
            cns: self.cdw10() as u8,
            cntid: (self.cdw10() >> 16) as u16,
            csi: (self.cdw11() >> 24) as u8,
        }
    }
    pub fn get_log_page(&self) -> GetLogPage {
        let c10 = self.cdw10();
        let c11 = self.cdw11();
        GetLogPage {
            lid: c10 as u8,
            lsp: ((c10 >> 8) & 0x7F) as u8,
            rae: c10 & (1 << 15) != 0,
            numd: (c10 >> 16) | ((c11 & 0xFFFF) << 16),
            lsi: (c11 >> 16) as u16,
            lpo: (self.cdw12() as u64) | ((self.cdw13() as u64) << 32),
            csi: (self.cdw14() >> 24) as u8,
        }
    }
    pub fn set_features(&self) -> SetFeatures {
        SetFeatures {
            fid: self.cdw10() as u8,
            sv: self.cdw10() & (1 << 31) != 0,
            value: self.cdw11(),
        }
    }
    pub fn get_features(&self) -> GetFeatures {
        GetFeatures {
            fid: self.cdw10() as u8,
            sel: ((self.cdw10() >> 8) & 0x7) as u8,
            cdw11: self.cdw11(),
        }
    }
    pub fn abort(&self) -> Abort {
        Abort {
            sqid: self.cdw10() as u16,
            cid: (self.cdw10() >> 16) as u16,
        }
    }
    /// Fabrics command type (byte 4); meaningful when the opcode is
    /// [`FABRICS_OPCODE`].
    pub fn fctype(&self) -> u8 {
        wire::u8_at(self.raw, 4)
    }
    /// Decodes a fabrics command (the caller checked the opcode).
    pub fn fabrics(&self) -> Result<Fabrics, CommandError> {
        let property_size = |attrib: u8| match attrib & 0x7 {
            0 => Ok(PropertySize::Four),
            1 => Ok(PropertySize::Eight),
            _ => Err(CommandError::PropertySize(attrib)),
        };
        match self.fctype() {
            fctype::CONNECT => Ok(Fabrics::Connect(Connect {
                recfmt: wire::u16_at(self.raw, 40),
                qid: wire::u16_at(self.raw, 42),
                sqsize: wire::u16_at(self.raw, 44),
                cattr: wire::u8_at(self.raw, 46),
                kato: wire::u32_at(self.raw, 48),
            })),
            fctype::PROPERTY_GET => Ok(Fabrics::PropertyGet {
                size: property_size(wire::u8_at(self.raw, 40))?,
                offset: wire::u32_at(self.raw, 44),
            }),
            fctype::PROPERTY_SET => Ok(Fabrics::PropertySet {
                size: property_size(wire::u8_at(self.raw, 40))?,
                offset: wire::u32_at(self.raw, 44),
                value: wire::u64_at(self.raw, 48),
            }),
            fctype::DISCONNECT => Ok(Fabrics::Disconnect {
                recfmt: wire::u16_at(self.raw, 40),
            }),
            t @ (fctype::AUTH_SEND | fctype::AUTH_RECEIVE) => Err(CommandError::Authentication(t)),
            t => Err(CommandError::FabricsType(t)),
        }
    }
}

/// An owned submission queue entry, built field by field (host side) or
/// copied from a [`Command`] (target side).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommandBuf {
    raw: [u8; SQE_LEN],
}

impl std::fmt::Debug for CommandBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

impl Default for CommandBuf {
    fn default() -> Self {
        CommandBuf { raw: [0; SQE_LEN] }
    }
}

impl CommandBuf {
    /// A command with `opcode` and `cid`, PSDT set to SGL (as NVMe/TCP
    /// requires) and a null transport SGL.
    pub fn new(opcode: u8, cid: u16) -> Self {
        let mut c = CommandBuf::default();
        wire::put_u8(&mut c.raw, 0, opcode);
        wire::put_u8(&mut c.raw, 1, flags::SGL_METABUF);
        wire::put_u16(&mut c.raw, 2, cid);
        c.set_sgl(&Sgl::Transport { length: 0 })
    }
    pub const fn from_raw(raw: [u8; SQE_LEN]) -> Self {
        CommandBuf { raw }
    }
    pub const fn raw(&self) -> &[u8; SQE_LEN] {
        &self.raw
    }
    pub const fn view(&self) -> Command<'_> {
        Command::new(&self.raw)
    }
    pub fn set_cid(mut self, cid: u16) -> Self {
        wire::put_u16(&mut self.raw, 2, cid);
        self
    }
    pub fn set_flags(mut self, flags: u8) -> Self {
        wire::put_u8(&mut self.raw, 1, flags);
        self
    }
    pub fn set_nsid(mut self, nsid: u32) -> Self {
        wire::put_u32(&mut self.raw, 4, nsid);
        self
    }
    pub fn set_sgl(mut self, sgl: &Sgl) -> Self {
        wire::put_bytes(&mut self.raw, 24, &sgl.encode());
        self
    }
    /// Sets command dword `n` (0..=15); out-of-range `n` is ignored.
    pub fn set_cdw(mut self, n: usize, v: u32) -> Self {
        if n < 16 {
            wire::put_u32(&mut self.raw, n * 4, v);
        }
        self
    }
    fn set_slba(self, slba: u64) -> Self {
        self.set_cdw(10, slba as u32)
            .set_cdw(11, (slba >> 32) as u32)
    }

    fn rw(opcode: u8, cid: u16, nsid: u32, rw: &ReadWrite, sgl: &Sgl) -> Self {
        let c12 = rw.nlb0 as u32
            | ((rw.dtype as u32 & 0xF) << 20)
            | ((rw.prinfo as u32 & 0xF) << 26)
            | ((rw.fua as u32) << 30)
            | ((rw.lr as u32) << 31);
        CommandBuf::new(opcode, cid)
            .set_nsid(nsid)
            .set_sgl(sgl)
            .set_slba(rw.slba)
            .set_cdw(12, c12)
    }
    pub fn read(cid: u16, nsid: u32, rw: &ReadWrite, sgl: &Sgl) -> Self {
        Self::rw(io::READ, cid, nsid, rw, sgl)
    }
    pub fn write(cid: u16, nsid: u32, rw: &ReadWrite, sgl: &Sgl) -> Self {
        Self::rw(io::WRITE, cid, nsid, rw, sgl)
    }
    pub fn flush(cid: u16, nsid: u32) -> Self {
        CommandBuf::new(io::FLUSH, cid).set_nsid(nsid)
    }
    pub fn write_zeroes(cid: u16, nsid: u32, wz: &WriteZeroes) -> Self {
        let c12 = wz.nlb0 as u32
            | ((wz.deac as u32) << 25)
            | ((wz.fua as u32) << 30)
            | ((wz.lr as u32) << 31);
        CommandBuf::new(io::WRITE_ZEROES, cid)
            .set_nsid(nsid)
            .set_slba(wz.slba)
            .set_cdw(12, c12)
    }
    /// Dataset Management; the ranges travel as data described by `sgl`.
    pub fn dsm(cid: u16, nsid: u32, dsm: &Dsm, sgl: &Sgl) -> Self {
        let c11 = dsm.idr as u32 | ((dsm.idw as u32) << 1) | ((dsm.ad as u32) << 2);
        CommandBuf::new(io::DATASET_MANAGEMENT, cid)
            .set_nsid(nsid)
            .set_sgl(sgl)
            .set_cdw(10, dsm.nr0 as u32)
            .set_cdw(11, c11)
    }
    /// Identify, returning 4096 bytes through a transport SGL.
    pub fn identify(cid: u16, nsid: u32, id: &Identify) -> Self {
        CommandBuf::new(admin::IDENTIFY, cid)
            .set_nsid(nsid)
            .set_sgl(&Sgl::Transport { length: 4096 })
            .set_cdw(10, id.cns as u32 | ((id.cntid as u32) << 16))
            .set_cdw(11, (id.csi as u32) << 24)
    }
    pub fn get_log_page(cid: u16, nsid: u32, glp: &GetLogPage) -> Self {
        let c10 = glp.lid as u32
            | ((glp.lsp as u32 & 0x7F) << 8)
            | ((glp.rae as u32) << 15)
            | ((glp.numd & 0xFFFF) << 16);
        let c11 = (glp.numd >> 16) | ((glp.lsi as u32) << 16);
        let len = u32::try_from(glp.len_bytes()).unwrap_or(u32::MAX);
        CommandBuf::new(admin::GET_LOG_PAGE, cid)
            .set_nsid(nsid)
            .set_sgl(&Sgl::Transport { length: len })
            .set_cdw(10, c10)
            .set_cdw(11, c11)
            .set_cdw(12, glp.lpo as u32)
            .set_cdw(13, (glp.lpo >> 32) as u32)
            .set_cdw(14, (glp.csi as u32) << 24)
    }
    pub fn set_features(cid: u16, nsid: u32, sf: &SetFeatures) -> Self {
        CommandBuf::new(admin::SET_FEATURES, cid)
            .set_nsid(nsid)
            .set_cdw(10, sf.fid as u32 | ((sf.sv as u32) << 31))
            .set_cdw(11, sf.value)
    }
    pub fn get_features(cid: u16, nsid: u32, gf: &GetFeatures) -> Self {
        CommandBuf::new(admin::GET_FEATURES, cid)
            .set_nsid(nsid)
            .set_cdw(10, gf.fid as u32 | ((gf.sel as u32 & 0x7) << 8))
            .set_cdw(11, gf.cdw11)
    }
    pub fn keep_alive(cid: u16) -> Self {
        CommandBuf::new(admin::KEEP_ALIVE, cid)
    }
    pub fn async_event_request(cid: u16) -> Self {
        CommandBuf::new(admin::ASYNC_EVENT_REQUEST, cid)
    }
    pub fn abort(cid: u16, target: &Abort) -> Self {
        CommandBuf::new(admin::ABORT, cid)
            .set_cdw(10, target.sqid as u32 | ((target.cid as u32) << 16))
    }
    fn fabrics(fc: u8, cid: u16) -> Self {
        let mut c = CommandBuf::new(FABRICS_OPCODE, cid);
        wire::put_u8(&mut c.raw, 4, fc);
        c
    }
    /// Connect; the 1024-byte [`ConnectData`] travels as data described by
    /// `sgl` (in-capsule on the admin queue as Linux sends it).
    pub fn connect(cid: u16, connect: &Connect, sgl: &Sgl) -> Self {
        let mut c = CommandBuf::fabrics(fctype::CONNECT, cid).set_sgl(sgl);
        wire::put_u16(&mut c.raw, 40, connect.recfmt);
        wire::put_u16(&mut c.raw, 42, connect.qid);
        wire::put_u16(&mut c.raw, 44, connect.sqsize);
        wire::put_u8(&mut c.raw, 46, connect.cattr);
        wire::put_u32(&mut c.raw, 48, connect.kato);
        c
    }
    pub fn property_get(cid: u16, size: PropertySize, offset: u32) -> Self {
        let mut c = CommandBuf::fabrics(fctype::PROPERTY_GET, cid);
        wire::put_u8(&mut c.raw, 40, size.attrib());
        wire::put_u32(&mut c.raw, 44, offset);
        c
    }
    pub fn property_set(cid: u16, size: PropertySize, offset: u32, value: u64) -> Self {
        let mut c = CommandBuf::fabrics(fctype::PROPERTY_SET, cid);
        wire::put_u8(&mut c.raw, 40, size.attrib());
        wire::put_u32(&mut c.raw, 44, offset);
        wire::put_u64(&mut c.raw, 48, value);
        c
    }
    pub fn disconnect(cid: u16) -> Self {
        CommandBuf::fabrics(fctype::DISCONNECT, cid)
    }
}

/// Size of the Connect command's data.
pub const CONNECT_DATA_LEN: usize = 1024;
/// Width of an NQN field (NUL-terminated, so at most 255 bytes of text; the
/// spec limits NQNs to [`NQN_MAX_LEN`]).
pub const NQN_FIELD_LEN: usize = 256;
/// Longest NQN the specification allows, in bytes.
pub const NQN_MAX_LEN: usize = 223;

/// The data of a fabrics Connect command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectData<'a> {
    /// Host identifier (a UUID).
    pub hostid: [u8; 16],
    /// 0xFFFF (dynamic model) or 0xFFFE (any) on the admin queue; the
    /// controller id returned by the admin Connect on I/O queues.
    pub cntlid: u16,
    pub subnqn: &'a str,
    pub hostnqn: &'a str,
}

impl<'a> ConnectData<'a> {
    pub const HOSTID_OFFSET: u16 = 0;
    pub const CNTLID_OFFSET: u16 = 16;
    pub const SUBNQN_OFFSET: u16 = 256;
    pub const HOSTNQN_OFFSET: u16 = 512;

    pub fn decode(buf: &'a [u8]) -> Result<Self, CommandError> {
        wire::need(buf, CONNECT_DATA_LEN, "connect data").map_err(CommandError::Data)?;
        let nqn = |offset: u16, what| {
            let s = wire::get_cstr(buf, offset as usize, NQN_FIELD_LEN, what)
                .map_err(|source| CommandError::ConnectData { offset, source })?;
            if s.len() > NQN_MAX_LEN {
                return Err(CommandError::ConnectData {
                    offset,
                    source: WireError::Invalid {
                        what,
                        offset: offset as usize,
                        value: s.len() as u64,
                    },
                });
            }
            Ok(s)
        };
        Ok(ConnectData {
            hostid: wire::bytes_at(buf, 0),
            cntlid: wire::u16_at(buf, 16),
            subnqn: nqn(Self::SUBNQN_OFFSET, "subsystem nqn")?,
            hostnqn: nqn(Self::HOSTNQN_OFFSET, "host nqn")?,
        })
    }
    /// Encodes into a 1024-byte buffer (NQNs longer than the field are
    /// truncated; decode rejects those longer than [`NQN_MAX_LEN`]).
    pub fn encode(&self, out: &mut [u8; CONNECT_DATA_LEN]) {
        out.fill(0);
        wire::put_bytes(out, 0, &self.hostid);
        wire::put_u16(out, 16, self.cntlid);
        wire::put_cstr(out, 256, NQN_FIELD_LEN, self.subnqn);
        wire::put_cstr(out, 512, NQN_FIELD_LEN, self.hostnqn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn common_fields_sit_where_struct_nvme_common_command_has_them() {
        let mut raw = [0u8; 64];
        raw[0] = 0x02;
        raw[1] = 0x41;
        raw[2..4].copy_from_slice(&0x1234u16.to_le_bytes());
        raw[4..8].copy_from_slice(&7u32.to_le_bytes());
        raw[8..12].copy_from_slice(&0xAAu32.to_le_bytes());
        raw[12..16].copy_from_slice(&0xBBu32.to_le_bytes());
        raw[16..24].copy_from_slice(&0xCCu64.to_le_bytes());
        for i in 10..16u32 {
            raw[i as usize * 4..i as usize * 4 + 4].copy_from_slice(&(i * 0x101).to_le_bytes());
        }
        let c = Command::new(&raw);
        assert_eq!(c.opcode(), 0x02);
        assert_eq!(c.fuse(), 1);
        assert_eq!(c.psdt(), 1);
        assert_eq!(c.cid(), 0x1234);
        assert_eq!(c.nsid(), 7);
        assert_eq!((c.cdw2(), c.cdw3(), c.mptr()), (0xAA, 0xBB, 0xCC));
        assert_eq!(c.cdw10(), 10 * 0x101);
        assert_eq!(c.cdw15(), 15 * 0x101);
        assert_eq!(c.cdw(16), 0);
        assert!(Command::parse(&raw[..63]).is_err());
    }

    #[test]
    fn sgl_descriptors_match_linux_tcp_host() {
        // nvme_tcp_set_sg_inline: addr = icdoff, type = DATA_DESC << 4 | OFFSET.
        let b = Sgl::InCapsule {
            offset: 0,
            length: 4096,
        }
        .encode();
        assert_eq!(b[15], 0x01);
        assert_eq!(&b[8..12], &4096u32.to_le_bytes());
        // nvme_tcp_set_sg_host_data / null: TRANSPORT_SGL_DATA_DESC << 4 | TRANSPORT_A.
        let b = Sgl::Transport { length: 512 }.encode();
        assert_eq!(b[15], 0x5A);
        assert_eq!(&b[0..8], &[0; 8]);
        for sgl in [
            Sgl::InCapsule {
                offset: 9,
                length: 1,
            },
            Sgl::Transport { length: 0 },
        ] {
            assert_eq!(Sgl::decode(&sgl.encode()), Ok(sgl));
        }
        let mut keyed = [0u8; 16];
        keyed[15] = 0x40;
        let err = Sgl::decode(&keyed).unwrap_err();
        assert_eq!(
            err,
            CommandError::SglType {
                sgl_type: 4,
                subtype: 0
            }
        );
        assert_eq!(err.status(), Status::SGL_DESCRIPTOR_TYPE_INVALID);
        keyed[15] = 0x00; // data block, address subtype: no host memory over TCP
        assert!(Sgl::decode(&keyed).is_err());
        keyed[15] = 0x20; // segment
        assert!(Sgl::decode(&keyed).is_err());
    }

    #[test]
    fn io_commands_round_trip() {
        let rw = ReadWrite {
            slba: 0x1_0000_0002,
            nlb0: 7,
            fua: true,
            lr: false,
            prinfo: 0,
            dtype: 0,
        };
        let c = CommandBuf::write(
            3,
            1,
            &rw,
            &Sgl::InCapsule {
                offset: 0,
                length: 4096,
            },
        );
        let v = c.view();
        assert_eq!(v.opcode(), io::WRITE);
        assert_eq!(v.flags(), flags::SGL_METABUF);
        assert_eq!(v.read_write(), rw);
        assert_eq!(v.read_write().blocks(), 8);
        assert_eq!(v.cdw10(), 2);
        assert_eq!(v.cdw11(), 1);
        assert_eq!(v.cdw12(), 7 | (1 << 30));
        assert_eq!(
            v.sgl(),
            Ok(Sgl::InCapsule {
                offset: 0,
                length: 4096
            })
        );

        let wz = WriteZeroes {
            slba: 9,
            nlb0: 0xFFFF,
            deac: true,
            fua: false,
            lr: true,
        };
        assert_eq!(
            CommandBuf::write_zeroes(1, 1, &wz).view().write_zeroes(),
            wz
        );

        let dsm = Dsm {
            nr0: 1,
            idr: false,
            idw: true,
            ad: true,
        };
        let c = CommandBuf::dsm(
            1,
            1,
            &dsm,
            &Sgl::InCapsule {
                offset: 0,
                length: 32,
            },
        );
        assert_eq!(c.view().dsm(), dsm);
        let r = [
            DsmRange {
                cattr: 0,
                nlb: 8,
                slba: 100,
            },
            DsmRange {
                cattr: 1,
                nlb: 1,
                slba: 0,
            },
        ];
        let mut data = Vec::new();
        for x in &r {
            data.extend_from_slice(&x.encode());
        }
        let got: Vec<_> = dsm_ranges(&dsm, &data).unwrap().collect();
        assert_eq!(got, r);
        assert!(dsm_ranges(&dsm, &data[..31]).is_err());
        assert_eq!(CommandBuf::flush(5, 2).view().nsid(), 2);
    }

    #[test]
    fn admin_commands_round_trip() {
        let id = Identify {
            cns: cns::NS_ID_DESCRIPTORS,
            cntid: 0x22,
            csi: 0,
        };
        let c = CommandBuf::identify(1, 9, &id);
        assert_eq!(c.view().identify(), id);
        assert_eq!(c.view().cdw10(), 0x0022_0003);

        let glp = GetLogPage {
            lid: 0x70,
            lsp: 0,
            rae: true,
            numd: 0x1_0003,
            lsi: 0,
            lpo: 0x1_0000_0010,
            csi: 0,
        };
        let c = CommandBuf::get_log_page(1, 0, &glp);
        assert_eq!(c.view().get_log_page(), glp);
        assert_eq!(c.view().cdw10() >> 16, 3);
        assert_eq!(c.view().cdw11() & 0xFFFF, 1);
        assert_eq!(glp.len_bytes(), 0x1_0004 * 4);

        let sf = SetFeatures {
            fid: feature::KEEP_ALIVE_TIMER,
            sv: false,
            value: 5000,
        };
        assert_eq!(
            CommandBuf::set_features(1, 0, &sf).view().set_features(),
            sf
        );
        let gf = GetFeatures {
            fid: feature::NUMBER_OF_QUEUES,
            sel: 3,
            cdw11: 0,
        };
        assert_eq!(
            CommandBuf::get_features(1, 0, &gf).view().get_features(),
            gf
        );
        let ab = Abort { sqid: 2, cid: 77 };
        assert_eq!(CommandBuf::abort(1, &ab).view().abort(), ab);
        assert_eq!(CommandBuf::keep_alive(4).view().opcode(), admin::KEEP_ALIVE);
        assert_eq!(
            CommandBuf::async_event_request(4).view().opcode(),
            admin::ASYNC_EVENT_REQUEST
        );
    }

    #[test]
    fn fabrics_commands_match_struct_nvmf_layouts() {
        let conn = Connect {
            recfmt: 0,
            qid: 3,
            sqsize: 127,
            cattr: 4,
            kato: 0,
        };
        let c = CommandBuf::connect(
            9,
            &conn,
            &Sgl::InCapsule {
                offset: 0,
                length: 1024,
            },
        );
        let r = c.raw();
        assert_eq!(r[0], 0x7F);
        assert_eq!(r[4], fctype::CONNECT);
        assert_eq!(&r[42..44], &3u16.to_le_bytes());
        assert_eq!(&r[44..46], &127u16.to_le_bytes());
        assert_eq!(r[46], 4);
        assert_eq!(c.view().fabrics(), Ok(Fabrics::Connect(conn)));
        assert!(conn.sq_flow_control_disabled());

        let c = CommandBuf::property_get(1, PropertySize::Eight, 0);
        assert_eq!(c.raw()[40], 1);
        assert_eq!(
            c.view().fabrics(),
            Ok(Fabrics::PropertyGet {
                size: PropertySize::Eight,
                offset: 0
            })
        );
        let c = CommandBuf::property_set(1, PropertySize::Four, 0x14, 0x46_0001);
        assert_eq!(&c.raw()[44..48], &0x14u32.to_le_bytes());
        assert_eq!(&c.raw()[48..56], &0x46_0001u64.to_le_bytes());
        assert_eq!(
            c.view().fabrics(),
            Ok(Fabrics::PropertySet {
                size: PropertySize::Four,
                offset: 0x14,
                value: 0x46_0001
            })
        );
        assert_eq!(
            CommandBuf::disconnect(1).view().fabrics(),
            Ok(Fabrics::Disconnect { recfmt: 0 })
        );

        let mut raw = *CommandBuf::property_get(1, PropertySize::Four, 0).raw();
        raw[40] = 3;
        let e = Command::new(&raw).fabrics().unwrap_err();
        assert_eq!(e.status(), Status::INVALID_FIELD);
        raw[4] = fctype::AUTH_SEND;
        assert_eq!(
            Command::new(&raw).fabrics(),
            Err(CommandError::Authentication(5))
        );
        raw[4] = 0x42;
        let e = Command::new(&raw).fabrics().unwrap_err();
        assert_eq!(e.status(), Status::INVALID_OPCODE);
    }

    #[test]
    fn connect_data_layout_and_validation() {
        let d = ConnectData {
            hostid: [7; 16],
            cntlid: 0xFFFF,
            subnqn: "nqn.2024-01.io.rewind:vol0",
            hostnqn: "nqn.2014-08.org.nvmexpress:uuid:1",
        };
        let mut b = [0u8; 1024];
        d.encode(&mut b);
        assert_eq!(&b[0..16], &[7; 16]);
        assert_eq!(&b[16..18], &[0xFF, 0xFF]);
        assert_eq!(&b[256..256 + d.subnqn.len()], d.subnqn.as_bytes());
        assert_eq!(&b[512..512 + d.hostnqn.len()], d.hostnqn.as_bytes());
        assert_eq!(ConnectData::decode(&b), Ok(d));

        assert!(matches!(
            ConnectData::decode(&b[..1023]),
            Err(CommandError::Data(_))
        ));
        let mut bad = b;
        bad[512..768].fill(b'a');
        let e = ConnectData::decode(&bad).unwrap_err();
        assert_eq!(e.status(), Status::CONNECT_INVALID_PARAMETERS);
        assert_eq!(e.result(), (1 << 16) | 512);
        let mut long = b;
        long[256..256 + 224].fill(b'a');
        assert_eq!(
            ConnectData::decode(&long).unwrap_err().result(),
            (1 << 16) | 256
        );
        let mut not_utf8 = b;
        not_utf8[256] = 0xFF;
        assert!(ConnectData::decode(&not_utf8).is_err());
    }

    proptest! {
        #[test]
        fn any_sqe_decodes_without_panic(raw in proptest::collection::vec(any::<u8>(), 64)) {
            let c = Command::parse(&raw).unwrap();
            let _ = (c.sgl(), c.fabrics(), c.read_write(), c.get_log_page(), c.identify());
            let owned = c.to_buf();
            prop_assert_eq!(owned.raw(), c.raw());
            if let Ok(s) = c.sgl() {
                let again = Sgl::decode(&s.encode()).unwrap();
                prop_assert_eq!(again, s);
            }
        }

        #[test]
        fn read_write_round_trips(slba in any::<u64>(), nlb0 in any::<u16>(), fua in any::<bool>(), lr in any::<bool>(), prinfo in 0u8..16, dtype in 0u8..16) {
            let rw = ReadWrite { slba, nlb0, fua, lr, prinfo, dtype };
            prop_assert_eq!(CommandBuf::read(1, 1, &rw, &Sgl::Transport { length: 0 }).view().read_write(), rw);
        }

        #[test]
        fn connect_data_round_trips(hostid in any::<[u8; 16]>(), cntlid in any::<u16>(), sub in "[a-z0-9.:-]{0,223}", host in "[a-z0-9.:-]{0,223}") {
            let d = ConnectData { hostid, cntlid, subnqn: &sub, hostnqn: &host };
            let mut b = [0u8; 1024];
            d.encode(&mut b);
            prop_assert_eq!(ConnectData::decode(&b), Ok(d));
        }
    }
}
