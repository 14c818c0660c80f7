//! One protected volume on a device: forward and backward journals, the
//! mirror, maps, sync, points in time, recovery and retention. No sockets and
//! no thread pools: callers (reactors, tools, tests) own threads and drive the
//! per-thread handles — [`RingWriter`] for writes, [`Reader`] for reads — while
//! the volume runs one sync worker thread of its own.
//!
//! Layout of this folder: `ondisk/` (record formats), `forward/` (rings and
//! their index), `backward/` (generations and their index), `map/` (the
//! versioned block map and its B+-tree), `sync` (the worker), `mirror` (the
//! steps that move the mirror), `recovery`, `read`, `volume` (the API).

pub mod circular;
pub mod error;
pub mod geometry;
pub mod grace;
pub mod map;
pub mod ondisk;
pub mod point;
pub mod twin;

pub use error::{EngineError, Result};
pub use geometry::Geometry;
pub use point::{At, MarkerKind, Point, PointKind};
