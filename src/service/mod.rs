//! The appliance service behind `rewind serve`: locks its data directory,
//! opens (or formats, on first start) each configured volume and each volume
//! created over the management API, exports every volume as an NVMe/TCP
//! subsystem on the reactors, and answers the management JSON-RPC on a Unix
//! socket.
//!
//! - [`config`]: the TOML configuration; [`data_dir`]: the lock, paths and
//!   free space; [`catalog`]: the persisted list of created volumes.
//! - [`volumes`]: bringing up a configured volume's device.
//! - [`appliance`]: the live state and every management operation.
//! - [`rpc`]: JSON-RPC framing, methods, error codes, socket, client.
//! - [`image`]: sparse raw images with a SHA-256; [`time_spec`]: how times
//!   and durations are written.
//! - [`run`]: starting and stopping it all in order.
//!
//! Invariant: a volume's device is formatted only when it holds no rewind
//! volume at all (no superblock magic) — configured volumes on first start,
//! created volumes when they are created; a device holding a damaged volume
//! is refused with the engine's typed error, never reformatted.

pub mod appliance;
pub mod catalog;
pub mod config;
pub mod data_dir;
pub mod image;
pub mod metrics;
pub mod progress;
pub mod rpc;
pub mod run;
pub mod time_spec;
pub mod volumes;

pub use config::{ServiceConfig, VolumeSpec};
