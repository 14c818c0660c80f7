//! The forward journal: per-ring circular descriptor and data areas holding
//! every accepted write since the mirror's seq, the ring writer that appends
//! to them, and the in-memory index readers use.
//!
//! Invariant 1 (DESIGN.md): a write is acknowledged only when its data and its
//! descriptor are durable *and* every earlier record of its ring is, so the
//! recovery scan, which stops at the first torn block, never drops an
//! acknowledged write.

pub mod index;
pub mod writer;
