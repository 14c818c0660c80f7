//! NVMe completion status codes: the (status code type, status code) pair a
//! controller returns in a CQE, with the names the NVMe base and fabrics
//! specifications give them.
//!
//! Invariant: a [`Status`] is exactly the SCT (3 bits) and SC (8 bits) of the
//! CQE status field; the CRD/More/DNR bits travel separately in
//! [`crate::nvmf::completion::StatusField`].

use std::fmt;

/// Status code type (CQE status bits 11:9).
pub mod sct {
    pub const GENERIC: u8 = 0x0;
    pub const COMMAND_SPECIFIC: u8 = 0x1;
    pub const MEDIA: u8 = 0x2;
    pub const PATH: u8 = 0x3;
    pub const VENDOR: u8 = 0x7;
}

/// An NVMe status: status code type and status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status {
    /// Status code type, 3 bits (see [`sct`]).
    pub sct: u8,
    /// Status code.
    pub sc: u8,
}

macro_rules! statuses {
    ($( $name:ident = ($sct:expr, $sc:expr, $text:expr); )*) => {
        impl Status {
            $( pub const $name: Status = Status { sct: $sct, sc: $sc }; )*

            /// Every named status, for tables and tests.
            pub const ALL: &'static [Status] = &[$(Status::$name),*];

            /// The specification's name for this status. Command-specific
            /// codes 0x80..=0x82 mean different things for the fabrics Connect
            /// command and for NVM I/O commands; both names are given.
            pub fn name(self) -> &'static str {
                $( if self == Status::$name { return $text; } )*
                match self.sct {
                    sct::VENDOR => "vendor specific",
                    _ => "unknown status",
                }
            }
        }
    };
}

statuses! {
    // Generic command status (SCT 0).
    SUCCESS = (sct::GENERIC, 0x00, "successful completion");
    INVALID_OPCODE = (sct::GENERIC, 0x01, "invalid command opcode");
    INVALID_FIELD = (sct::GENERIC, 0x02, "invalid field in command");
    CID_CONFLICT = (sct::GENERIC, 0x03, "command id conflict");
    DATA_TRANSFER_ERROR = (sct::GENERIC, 0x04, "data transfer error");
    POWER_LOSS_ABORT = (sct::GENERIC, 0x05, "commands aborted due to power loss notification");
    INTERNAL = (sct::GENERIC, 0x06, "internal error");
    ABORT_REQUESTED = (sct::GENERIC, 0x07, "command abort requested");
    ABORT_SQ_DELETED = (sct::GENERIC, 0x08, "command aborted due to sq deletion");
    FUSED_FAILED = (sct::GENERIC, 0x09, "command aborted due to failed fused command");
    FUSED_MISSING = (sct::GENERIC, 0x0A, "command aborted due to missing fused command");
    INVALID_NAMESPACE = (sct::GENERIC, 0x0B, "invalid namespace or format");
    COMMAND_SEQUENCE_ERROR = (sct::GENERIC, 0x0C, "command sequence error");
    INVALID_SGL_SEGMENT = (sct::GENERIC, 0x0D, "invalid sgl segment descriptor");
    INVALID_SGL_COUNT = (sct::GENERIC, 0x0E, "invalid number of sgl descriptors");
    DATA_SGL_LENGTH_INVALID = (sct::GENERIC, 0x0F, "data sgl length invalid");
    METADATA_SGL_LENGTH_INVALID = (sct::GENERIC, 0x10, "metadata sgl length invalid");
    SGL_DESCRIPTOR_TYPE_INVALID = (sct::GENERIC, 0x11, "sgl descriptor type invalid");
    INVALID_CMB_USE = (sct::GENERIC, 0x12, "invalid use of controller memory buffer");
    PRP_OFFSET_INVALID = (sct::GENERIC, 0x13, "prp offset invalid");
    ATOMIC_WRITE_UNIT_EXCEEDED = (sct::GENERIC, 0x14, "atomic write unit exceeded");
    OPERATION_DENIED = (sct::GENERIC, 0x15, "operation denied");
    SGL_OFFSET_INVALID = (sct::GENERIC, 0x16, "sgl offset invalid");
    HOST_ID_INCONSISTENT_FORMAT = (sct::GENERIC, 0x18, "host identifier inconsistent format");
    KEEP_ALIVE_EXPIRED = (sct::GENERIC, 0x19, "keep alive timer expired");
    KEEP_ALIVE_INVALID = (sct::GENERIC, 0x1A, "keep alive timeout invalid");
    PREEMPT_ABORT = (sct::GENERIC, 0x1B, "command aborted due to preempt and abort");
    SANITIZE_FAILED = (sct::GENERIC, 0x1C, "sanitize failed");
    SANITIZE_IN_PROGRESS = (sct::GENERIC, 0x1D, "sanitize in progress");
    SGL_DATA_BLOCK_GRANULARITY_INVALID = (sct::GENERIC, 0x1E, "sgl data block granularity invalid");
    CMD_NOT_SUPPORTED_IN_CMB = (sct::GENERIC, 0x1F, "command not supported for queue in cmb");
    NAMESPACE_WRITE_PROTECTED = (sct::GENERIC, 0x20, "namespace is write protected");
    COMMAND_INTERRUPTED = (sct::GENERIC, 0x21, "command interrupted");
    TRANSIENT_TRANSPORT_ERROR = (sct::GENERIC, 0x22, "transient transport error");
    LBA_OUT_OF_RANGE = (sct::GENERIC, 0x80, "lba out of range");
    CAPACITY_EXCEEDED = (sct::GENERIC, 0x81, "capacity exceeded");
    NAMESPACE_NOT_READY = (sct::GENERIC, 0x82, "namespace not ready");
    RESERVATION_CONFLICT = (sct::GENERIC, 0x83, "reservation conflict");
    FORMAT_IN_PROGRESS = (sct::GENERIC, 0x84, "format in progress");

    // Command specific status (SCT 1).
    INVALID_CQ = (sct::COMMAND_SPECIFIC, 0x00, "completion queue invalid");
    INVALID_QUEUE_ID = (sct::COMMAND_SPECIFIC, 0x01, "invalid queue identifier");
    INVALID_QUEUE_SIZE = (sct::COMMAND_SPECIFIC, 0x02, "invalid queue size");
    ABORT_LIMIT_EXCEEDED = (sct::COMMAND_SPECIFIC, 0x03, "abort command limit exceeded");
    AER_LIMIT_EXCEEDED = (sct::COMMAND_SPECIFIC, 0x05, "asynchronous event request limit exceeded");
    INVALID_FIRMWARE_SLOT = (sct::COMMAND_SPECIFIC, 0x06, "invalid firmware slot");
    INVALID_FIRMWARE_IMAGE = (sct::COMMAND_SPECIFIC, 0x07, "invalid firmware image");
    INVALID_INTERRUPT_VECTOR = (sct::COMMAND_SPECIFIC, 0x08, "invalid interrupt vector");
    INVALID_LOG_PAGE = (sct::COMMAND_SPECIFIC, 0x09, "invalid log page");
    INVALID_FORMAT = (sct::COMMAND_SPECIFIC, 0x0A, "invalid format");
    FW_NEEDS_CONVENTIONAL_RESET = (sct::COMMAND_SPECIFIC, 0x0B, "firmware activation requires conventional reset");
    INVALID_QUEUE_DELETION = (sct::COMMAND_SPECIFIC, 0x0C, "invalid queue deletion");
    FEATURE_NOT_SAVEABLE = (sct::COMMAND_SPECIFIC, 0x0D, "feature identifier not saveable");
    FEATURE_NOT_CHANGEABLE = (sct::COMMAND_SPECIFIC, 0x0E, "feature not changeable");
    FEATURE_NOT_PER_NAMESPACE = (sct::COMMAND_SPECIFIC, 0x0F, "feature not namespace specific");
    FW_NEEDS_SUBSYSTEM_RESET = (sct::COMMAND_SPECIFIC, 0x10, "firmware activation requires nvm subsystem reset");
    FW_NEEDS_RESET = (sct::COMMAND_SPECIFIC, 0x11, "firmware activation requires controller level reset");
    FW_NEEDS_MAX_TIME_VIOLATION = (sct::COMMAND_SPECIFIC, 0x12, "firmware activation requires maximum time violation");
    FW_ACTIVATION_PROHIBITED = (sct::COMMAND_SPECIFIC, 0x13, "firmware activation prohibited");
    OVERLAPPING_RANGE = (sct::COMMAND_SPECIFIC, 0x14, "overlapping range");
    NS_INSUFFICIENT_CAPACITY = (sct::COMMAND_SPECIFIC, 0x15, "namespace insufficient capacity");
    NS_ID_UNAVAILABLE = (sct::COMMAND_SPECIFIC, 0x16, "namespace identifier unavailable");
    NS_ALREADY_ATTACHED = (sct::COMMAND_SPECIFIC, 0x18, "namespace already attached");
    NS_IS_PRIVATE = (sct::COMMAND_SPECIFIC, 0x19, "namespace is private");
    NS_NOT_ATTACHED = (sct::COMMAND_SPECIFIC, 0x1A, "namespace not attached");
    THIN_PROVISIONING_NOT_SUPPORTED = (sct::COMMAND_SPECIFIC, 0x1B, "thin provisioning not supported");
    CONTROLLER_LIST_INVALID = (sct::COMMAND_SPECIFIC, 0x1C, "controller list invalid");
    SELF_TEST_IN_PROGRESS = (sct::COMMAND_SPECIFIC, 0x1D, "device self-test in progress");
    BOOT_PARTITION_WRITE_PROHIBITED = (sct::COMMAND_SPECIFIC, 0x1E, "boot partition write prohibited");
    INVALID_CONTROLLER_ID = (sct::COMMAND_SPECIFIC, 0x1F, "invalid controller identifier");
    ANA_GROUP_ID_INVALID = (sct::COMMAND_SPECIFIC, 0x24, "ana group identifier invalid");
    ANA_ATTACH_FAILED = (sct::COMMAND_SPECIFIC, 0x25, "ana attach failed");
    // 0x80..=0x82 are shared between NVM I/O commands and the fabrics Connect
    // command; the constants below name both readings.
    CONNECT_INCOMPATIBLE_FORMAT = (sct::COMMAND_SPECIFIC, 0x80, "connect incompatible format (fabrics) / conflicting attributes (nvm)");
    CONNECT_CONTROLLER_BUSY = (sct::COMMAND_SPECIFIC, 0x81, "connect controller busy (fabrics) / invalid protection information (nvm)");
    CONNECT_INVALID_PARAMETERS = (sct::COMMAND_SPECIFIC, 0x82, "connect invalid parameters (fabrics) / attempted write to read only range (nvm)");
    CONNECT_RESTART_DISCOVERY = (sct::COMMAND_SPECIFIC, 0x83, "connect restart discovery");
    CONNECT_INVALID_HOST = (sct::COMMAND_SPECIFIC, 0x84, "connect invalid host");
    DISCOVERY_RESTART = (sct::COMMAND_SPECIFIC, 0x90, "discover restart");
    AUTH_REQUIRED = (sct::COMMAND_SPECIFIC, 0x91, "authentication required");

    // Media and data integrity errors (SCT 2).
    WRITE_FAULT = (sct::MEDIA, 0x80, "write fault");
    UNRECOVERED_READ_ERROR = (sct::MEDIA, 0x81, "unrecovered read error");
    GUARD_CHECK_ERROR = (sct::MEDIA, 0x82, "end-to-end guard check error");
    APPTAG_CHECK_ERROR = (sct::MEDIA, 0x83, "end-to-end application tag check error");
    REFTAG_CHECK_ERROR = (sct::MEDIA, 0x84, "end-to-end reference tag check error");
    COMPARE_FAILURE = (sct::MEDIA, 0x85, "compare failure");
    ACCESS_DENIED = (sct::MEDIA, 0x86, "access denied");
    DEALLOCATED_OR_UNWRITTEN = (sct::MEDIA, 0x87, "deallocated or unwritten logical block");

    // Path related status (SCT 3).
    INTERNAL_PATH_ERROR = (sct::PATH, 0x00, "internal path error");
    ANA_PERSISTENT_LOSS = (sct::PATH, 0x01, "asymmetric access persistent loss");
    ANA_INACCESSIBLE = (sct::PATH, 0x02, "asymmetric access inaccessible");
    ANA_TRANSITION = (sct::PATH, 0x03, "asymmetric access transition");
    CONTROLLER_PATHING_ERROR = (sct::PATH, 0x60, "controller pathing error");
    HOST_PATHING_ERROR = (sct::PATH, 0x70, "host pathing error");
    ABORTED_BY_HOST = (sct::PATH, 0x71, "command aborted by host");
}

/// Conflicting attributes (NVM command set, same code as
/// [`Status::CONNECT_INCOMPATIBLE_FORMAT`]).
pub const CONFLICTING_ATTRIBUTES: Status = Status::CONNECT_INCOMPATIBLE_FORMAT;
/// Attempted write to a read-only range (NVM command set, same code as
/// [`Status::CONNECT_INVALID_PARAMETERS`]).
pub const WRITE_TO_READ_ONLY_RANGE: Status = Status::CONNECT_INVALID_PARAMETERS;

impl Status {
    /// A status from its parts (`sct` is masked to 3 bits).
    pub const fn new(sct: u8, sc: u8) -> Status {
        Status { sct: sct & 0x7, sc }
    }
    pub const fn is_success(self) -> bool {
        self.sct == 0 && self.sc == 0
    }
    /// The 11-bit value Linux writes as `NVME_SC_*` (`sct << 8 | sc`).
    pub const fn code(self) -> u16 {
        ((self.sct as u16) << 8) | self.sc as u16
    }
    /// Inverse of [`Status::code`] (bits above 10 ignored).
    pub const fn from_code(code: u16) -> Status {
        Status::new((code >> 8) as u8, code as u8)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (sct {:#x}, sc {:#04x})",
            self.name(),
            self.sct,
            self.sc
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_match_linux_nvme_h() {
        // NVME_SC_* values from include/linux/nvme.h: (sct << 8) | sc.
        assert_eq!(Status::INVALID_FIELD.code(), 0x2);
        assert_eq!(Status::INVALID_NAMESPACE.code(), 0xB);
        assert_eq!(Status::NAMESPACE_WRITE_PROTECTED.code(), 0x20);
        assert_eq!(Status::LBA_OUT_OF_RANGE.code(), 0x80);
        assert_eq!(Status::INVALID_QUEUE_ID.code(), 0x101);
        assert_eq!(Status::INVALID_LOG_PAGE.code(), 0x109);
        assert_eq!(Status::FEATURE_NOT_CHANGEABLE.code(), 0x10E);
        assert_eq!(Status::CONNECT_INCOMPATIBLE_FORMAT.code(), 0x180);
        assert_eq!(Status::CONNECT_INVALID_HOST.code(), 0x184);
        assert_eq!(Status::UNRECOVERED_READ_ERROR.code(), 0x281);
        assert_eq!(Status::ANA_TRANSITION.code(), 0x303);
        assert_eq!(Status::from_code(0x184), Status::CONNECT_INVALID_HOST);
        assert_eq!(Status::LBA_OUT_OF_RANGE.name(), "lba out of range");
        assert_eq!(Status::new(7, 0xC0).name(), "vendor specific");
        assert!(Status::SUCCESS.is_success());
        assert!(!Status::INTERNAL.is_success());
    }

    #[test]
    fn every_named_status_is_distinct() {
        for (i, a) in Status::ALL.iter().enumerate() {
            for b in Status::ALL.iter().skip(i + 1) {
                assert_ne!(a, b, "{} duplicates {}", a.name(), b.name());
            }
        }
    }
}
