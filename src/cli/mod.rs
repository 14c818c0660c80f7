//! The client side of the `rewind` command: how a `--at` argument becomes a
//! point request, human tables, progress reporting, and the two commands
//! that move volume bytes to the client (`rewind read`, `rewind export`).
//! `main.rs` holds the clap definitions and calls these over
//! [`crate::service::rpc::RpcClient`].
//!
//! - [`at`]: `--at` text → [`AtSpec`](crate::service::appliance::points::AtSpec).
//! - [`table`]: aligned columns for the human output.
//! - [`progress`]: a bar on a terminal, plain periodic lines otherwise.
//! - [`transfer`]: reading ranges and exporting images through `volume_read`.
//!
//! Invariant: nothing here prints to stdout except the command's result, so
//! `--json` output and raw bytes stay clean; progress and notes go to stderr.

pub mod at;
pub mod progress;
pub mod table;
pub mod transfer;
