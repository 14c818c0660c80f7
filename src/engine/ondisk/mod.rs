//! On-disk formats: superblock, checkpoint, forward descriptor blocks and
//! backward generation records, and the codec they share.
//!
//! Invariant: every persistent record carries a magic, a format version, the
//! volume uuid, its own position where it has one, and a crc32c; decoders never
//! panic and report damage as typed errors.

pub mod checkpoint;
pub mod codec;
pub mod forward_block;
pub mod generation;
pub mod superblock;
