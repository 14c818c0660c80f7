//! Maps: ordered in-memory indexes from logical block ranges to physical
//! locations (the MIM, forward and backward maps are all built on them).
//!
//! [`btree`] is the multi-way tree every map uses; [`arena`] owns the memory
//! its nodes live in, carved from large aligned chunks so that a hugepage pool
//! can supply them later without the tree noticing.

pub mod arena;
pub mod btree;
