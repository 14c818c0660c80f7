//! rewind: a block-storage appliance that journals every write and serves each
//! volume as it was at any retained point in time (continuous data protection).
//!
//! Layers, arrows pointing down only (see `../shared/DESIGN.md`):
//! `engine` (one protected volume on a device) uses `device` (block devices).

#![warn(missing_debug_implementations)]

pub mod device;
pub mod engine;
pub mod nvmf;
