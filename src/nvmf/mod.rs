//! NVMe over Fabrics on TCP, the wire layer: PDU framing and every structure
//! the target and the host exchange, as pure encode/decode (no sockets, no
//! threads, no clocks).
//!
//! Invariant: decoders take bytes from the network and never panic; they
//! borrow from the caller's buffer and report bad input as typed errors that
//! carry what the protocol needs to answer it (a fatal-error status and field
//! offset for the transport, an NVMe [`status::Status`] for commands).
//! Encoders write into caller-owned buffers, so the I/O path allocates nothing
//! per PDU.
//!
//! Modules, lowest first: [`wire`] (little-endian fields), [`status`],
//! [`completion`] (CQE), [`command`] (SQE, SGL, fabrics commands, Connect
//! data), [`pdu`] (NVMe/TCP PDUs, digests, the incremental reader, ICReq/ICResp
//! negotiation), [`properties`] (CAP/VS/CC/CSTS), [`identify`] and
//! [`logpage`] (admin data structures). On top of them, [`host`] is the
//! NVMe/TCP initiator (its queue-pair core is sans-IO too; its clients own
//! sockets).

pub mod command;
pub mod completion;
pub mod host;
pub mod identify;
pub mod logpage;
pub mod pdu;
pub mod properties;
pub mod status;
pub mod target;
pub mod wire;
