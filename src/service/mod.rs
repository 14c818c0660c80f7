//! The appliance service behind `rewind serve`: reads the configuration,
//! opens (or formats, on first start) each volume's device, exports every
//! volume as an NVMe/TCP subsystem on the reactors, and answers management
//! requests (views) on a local control socket.
//!
//! Invariant: a volume's device is formatted only when it holds no rewind
//! volume at all (no superblock magic); a device holding a damaged volume is
//! refused with the engine's typed error, never reformatted.

pub mod config;
pub mod control;
pub mod run;
pub mod volumes;

pub use config::{ServiceConfig, VolumeSpec};
