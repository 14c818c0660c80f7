//! Maps: ordered in-memory indexes from logical block ranges to physical
//! locations (the MIM, forward and backward maps are all built on them).
//!
//! [`btree`] is the multi-way tree every map uses; [`arena`] owns the memory
//! its nodes live in, carved from large aligned chunks so that a hugepage pool
//! can supply them later without the tree noticing. [`version_index`] is the
//! versioned block map both journals use; [`net_change`] coalesces a run of
//! writes into the change a sync applies.

pub mod arena;
pub mod btree;
pub mod net_change;
pub mod version_index;
