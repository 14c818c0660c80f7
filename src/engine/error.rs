//! The engine's typed errors: every way a caller request, the device or the
//! on-disk metadata can be refused, each with the numbers that explain it.
//!
//! Invariant: nothing that reaches the engine from a caller or from the disk is
//! turned into a panic; it becomes one of these variants.

use crate::device::DeviceError;

/// Errors from the volume engine.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    #[error("device: {0}")]
    Device(#[from] DeviceError),

    // ---- geometry and format ----
    #[error("block size {0} is not supported (use 512 or 4096)")]
    UnsupportedBlockSize(u32),
    #[error("the device's {device} byte alignment is coarser than the volume block size {block}")]
    BlockSizeBelowDevice { block: u32, device: u32 },
    #[error("invalid geometry: {0}")]
    InvalidGeometry(String),
    #[error("device too small: the geometry needs {needed} bytes, the device has {available}")]
    DeviceTooSmall { needed: u64, available: u64 },
    #[error("no rewind volume on this device: bad magic in {region}")]
    BadMagic { region: &'static str },
    #[error("{region} has on-disk format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        region: &'static str,
        found: u32,
        supported: u32,
    },
    #[error("corrupt {region}: {detail}")]
    Corrupt {
        region: &'static str,
        detail: String,
    },

    // ---- requests ----
    #[error("request for blocks {lba}..{end} is outside the volume (0..{volume_blocks})", end = lba.saturating_add(u64::from(*nblocks)))]
    OutOfRange {
        lba: u64,
        nblocks: u32,
        volume_blocks: u64,
    },
    #[error("request has zero length")]
    ZeroLength,
    #[error("request of {nblocks} blocks exceeds the largest allowed ({max})")]
    TooLarge { nblocks: u64, max: u32 },
    #[error("buffer of {len} bytes does not hold {nblocks} blocks of {block_size} bytes")]
    BufferSize {
        len: usize,
        nblocks: u32,
        block_size: u32,
    },
    #[error("label is {len} bytes; at most {max} are allowed")]
    LabelTooLong { len: usize, max: usize },
    #[error("label must not be empty")]
    EmptyLabel,
    #[error("ring {ring} does not exist (the volume has {rings} writer rings)")]
    NoSuchRing { ring: u16, rings: u16 },
    #[error("ring {0} is already in use by another writer")]
    RingBusy(u16),
    #[error("request tag {0:#x} is in the range reserved for internal use (>= 2^63)")]
    InvalidTag(u64),
    #[error("too many in-flight requests on this handle ({0}); poll completions first")]
    Busy(usize),

    // ---- points in time ----
    #[error("point seq {requested} is before the retention window (oldest retained point is seq {oldest})")]
    BeforeRetention { requested: u64, oldest: u64 },
    #[error("time {requested_ns} ns is before the retention window (oldest retained point is at {oldest_ns} ns)")]
    TimeBeforeRetention { requested_ns: u64, oldest_ns: u64 },
    #[error("point seq {requested} is in the future (newest point is seq {newest})")]
    InFuture { requested: u64, newest: u64 },
    #[error("point seq {0} is no longer retained (expired or coalesced into a snapshot)")]
    Expired(u64),
    #[error("no retained point carries the label {0:?}")]
    UnknownLabel(String),

    // ---- lifecycle ----
    #[error("the volume has failed after an I/O error and accepts no more writes: {0}")]
    Failed(String),
    #[error("the volume is closed")]
    Closed,
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// A corruption error for `region`.
    pub fn corrupt(region: &'static str, detail: impl Into<String>) -> Self {
        EngineError::Corrupt {
            region,
            detail: detail.into(),
        }
    }
}
