//! One protected volume on a device: forward and backward journals, mirror,
//! maps, sync, points in time, recovery, retention.

pub mod map;
