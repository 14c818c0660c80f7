//! What can go wrong on the host side, as types: [`ProtocolError`] for a
//! target that broke the NVMe/TCP or fabrics rules (the queue-pair core
//! detects these), [`QueueError`] for the core's own failure states, and
//! [`HostError`], the one error every host API returns.
//!
//! Invariant: an error that ends a connection says so ([`QueueError`] is
//! always fatal to its queue; [`HostError::is_fatal`] tells the rest), and
//! every protocol error names the termination request it calls for
//! ([`ProtocolError::fatal`]), so the queue can answer with an H2CTermReq.

use std::io;
use std::time::Duration;

use thiserror::Error;

use crate::nvmf::completion::Completion;
use crate::nvmf::pdu::{DataHeader, FatalError, Fes, PduError, PduType};
use crate::nvmf::status::Status;
use crate::nvmf::wire::WireError;

/// A target that broke the transport or fabrics rules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The PDU framing or a PDU header is invalid (the codec's verdict).
    #[error("bad PDU from the target: {0}")]
    Pdu(#[from] PduError),
    /// A PDU names a command id that is not outstanding.
    #[error("{pdu_type:?} for command id {cid:#06x}, which is not outstanding")]
    UnknownCid { pdu_type: PduType, cid: u16 },
    /// A PDU that makes no sense for this command (an R2T for a read, data
    /// for a command without any, an R2T for in-capsule data).
    #[error("unexpected {pdu_type:?} for command id {cid:#06x}: {why}")]
    Unexpected {
        pdu_type: PduType,
        cid: u16,
        why: &'static str,
    },
    /// Data offset or length outside what the command transfers, or out of
    /// order.
    #[error("{pdu_type:?} for command id {cid:#06x}: offset {offset} length {length} outside the expected {expected_offset}..{limit}")]
    DataRange {
        pdu_type: PduType,
        cid: u16,
        offset: u32,
        length: u32,
        expected_offset: u32,
        limit: u32,
    },
    /// The ICResp granted digests other than those asked for.
    #[error("target granted header digest {hdgst} / data digest {ddgst}, asked for {want_hdgst} / {want_ddgst}")]
    DigestMismatch {
        hdgst: bool,
        ddgst: bool,
        want_hdgst: bool,
        want_ddgst: bool,
    },
    /// A structure the target returned (identify data, log page) does not
    /// decode.
    #[error("bad data from the target: {0}")]
    Data(#[from] WireError),
    /// The target's answers contradict the fabrics rules (wrong controller
    /// id, missing SGL support, controller fatal status, ...).
    #[error("target misbehaves: {0}")]
    Fabrics(String),
}

impl ProtocolError {
    /// The fatal error status and information of the H2CTermReq that
    /// answers this error, when one is due.
    pub fn fatal(&self) -> Option<FatalError> {
        match self {
            ProtocolError::Pdu(e) => e.fatal(),
            ProtocolError::UnknownCid { pdu_type, .. } => Some(FatalError {
                fes: Fes::InvalidHeaderField,
                fei: cid_offset(*pdu_type),
            }),
            ProtocolError::Unexpected { .. } => Some(FatalError {
                fes: Fes::PduSequenceError,
                fei: 0,
            }),
            ProtocolError::DataRange { .. } => Some(FatalError {
                fes: Fes::DataTransferOutOfRange,
                fei: 0,
            }),
            ProtocolError::DigestMismatch { .. } => Some(FatalError {
                fes: Fes::UnsupportedParameter,
                fei: crate::nvmf::pdu::IcResp::DGST_OFFSET,
            }),
            ProtocolError::Data(_) | ProtocolError::Fabrics(_) => None,
        }
    }
}

/// Byte offset of the command id in a PDU of type `t`.
fn cid_offset(t: PduType) -> u32 {
    match t {
        // Common header (8) + CQE bytes 12..14.
        PduType::CapsuleResp => 8 + 12,
        _ => DataHeader::CCCID_OFFSET,
    }
}

/// Why a queue pair stopped; once failed, a queue stays failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueueError {
    #[error("protocol violation by the target: {0}")]
    Protocol(#[from] ProtocolError),
    /// The target sent a C2HTermReq.
    #[error("target terminated the connection: fatal error status {fes:#x}, information {fei:#x}")]
    Terminated { fes: u16, fei: u32 },
    /// The caller's data buffers disagree with what it submitted (a buffer
    /// shorter than the transfer).
    #[error("data buffer for slot {slot} is shorter than its {len}-byte transfer")]
    Buffer { slot: usize, len: u32 },
    /// The target closed the connection.
    #[error("connection closed by the target")]
    Closed,
}

/// Why a command was not submitted (the queue is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SubmitError {
    #[error("all command slots are in use")]
    QueueFull,
    #[error("the connection is not initialized yet")]
    NotReady,
    #[error("the queue has failed")]
    Failed,
    #[error("data buffer shorter than the transfer length")]
    ShortBuffer,
}

/// Every error the host library returns.
#[derive(Debug, Error)]
pub enum HostError {
    /// Socket error.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    /// The command completed with a non-success NVMe status.
    #[error("NVMe status {status} for opcode {opcode:#04x} on queue {qid}{dnr}", dnr = if *dnr { " (do not retry)" } else { "" })]
    Status {
        qid: u16,
        opcode: u8,
        status: Status,
        dnr: bool,
        /// The whole completion (DW0 carries e.g. the Connect IATTR/IPO).
        cqe: Completion,
    },
    /// No answer in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    /// The queue failed (protocol violation, termination, close).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A command was not submitted.
    #[error("not submitted: {0}")]
    Submit(#[from] SubmitError),
    /// The caller asked for something the API or the controller cannot do.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The connection gave up earlier (after a timeout or a transport error)
    /// and must be reconnected.
    #[error("queue {qid} is unusable after an earlier error")]
    Broken { qid: u16 },
}

impl HostError {
    /// The NVMe status, when the error is a completion status.
    pub fn status(&self) -> Option<Status> {
        match self {
            HostError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// Whether the connection the error came from is unusable now.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            HostError::Status { .. } | HostError::Submit(_) | HostError::Invalid(_)
        )
    }
}

impl From<ProtocolError> for HostError {
    fn from(e: ProtocolError) -> Self {
        HostError::Queue(QueueError::Protocol(e))
    }
}
