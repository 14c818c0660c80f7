//! rewind: a block-storage appliance that journals every write and serves each
//! volume as it was at any retained point in time (continuous data protection).
//!
//! Layers, arrows pointing down only (see `../shared/DESIGN.md`):
//! `runtime` (polled per-core reactors, cross-core mailboxes, hugepage memory)
//! uses `engine` (one protected volume on a device), which uses `device`
//! (block devices). `nvmf` is the NVMe/TCP wire layer (pure encode/decode). `lock_audit` is a leaf every layer may use: the crate's
//! only lock types, counted per thread.

#![warn(missing_debug_implementations)]

pub mod checksum;
pub mod cli;
pub mod device;
pub mod engine;
pub mod lock_audit;
pub mod nvmf;
pub mod perf;
pub mod runtime;
pub mod service;
pub mod size;
