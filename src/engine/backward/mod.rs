//! The backward journal: undo data copied out of the mirror before each sync
//! overwrites it, one generation per snapshot point, in circular descriptor
//! and data areas, and the index that finds undo data for any retained point.
//!
//! Invariant 3 (DESIGN.md): undo data and its generation record are durable
//! before the mirror range they protect is overwritten.

pub mod index;
pub mod space;
