//! The management API: JSON-RPC 2.0 over a Unix socket
//! (`<data-dir>/rewind.sock` by default), method names in SPDK's style
//! (`volume_create`, `view_create`, ...). Every method, its parameters,
//! result and errors are documented in `docs/rpc.md`.
//!
//! - [`wire`]: the framing (one JSON request or batch per line).
//! - [`methods`]: parameters → appliance operation → result.
//! - [`error`]: every error code, in one place.
//! - [`server`]: the socket (stale-socket handling, one thread per client).
//! - [`client`]: what the `rewind` CLI calls through.
//!
//! Invariant: the socket only ever answers with a JSON-RPC response; the
//! process never panics on what a client sends.

pub mod client;
pub mod error;
pub mod methods;
pub mod server;
pub mod wire;

pub use client::{ClientError, RpcClient};
pub use error::RpcError;
