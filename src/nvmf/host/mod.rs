//! The NVMe/TCP host (initiator): connects to any conforming NVMe/TCP
//! target (Linux nvmet, SPDK, ours), for the integration tests, `rewind
//! perf` and replication.
//!
//! Layers, lowest first: [`slots`] (command ids and per-command state),
//! [`buffers`] (where command data lives), [`tx`] (the zero-copy transmit
//! queue), [`queue`] (the sans-IO queue pair: bytes in, bytes out,
//! completions out), [`error`] (typed errors); over sockets: [`conn`] (one
//! queue, blocking, one command at a time), [`controller`] (the connect
//! sequence and the admin/NVM command API), [`io_queue`] (one I/O queue,
//! non-blocking, many commands in flight, for load generators), with
//! [`options`] for what a host asks and learns.
//!
//! Invariant: everything below the socket layer is sans-IO and
//! deterministic, so the protocol logic is tested byte for byte against
//! scripted targets; nothing a target sends can panic the host.

pub mod buffers;
pub mod conn;
pub mod controller;
pub mod error;
pub mod io_queue;
pub mod options;
pub mod queue;
pub mod slots;
pub mod tx;

pub use buffers::{Data, DataBuffers, NoData, SlotBuffers};
pub use conn::Transport;
pub use controller::{discover, Controller, DiscoveryRecord, Point, OPC_READ_AT_POINT};
pub use error::{HostError, ProtocolError, QueueError, SubmitError};
pub use io_queue::{IoCompletion, IoData, IoQueue};
pub use options::{ConnectOptions, ControllerLimits};
pub use queue::{HostCompletion, QueueConfig, QueuePair};
pub use slots::Direction;

#[cfg(test)]
mod tests;
