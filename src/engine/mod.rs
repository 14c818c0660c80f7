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

pub mod backward;
pub mod circular;
pub mod config;
pub mod error;
pub mod events;
pub mod forward;
pub mod geometry;
pub mod grace;
pub mod map;
pub mod mirror;
pub mod ondisk;
pub mod pin;
pub mod point;
pub mod read;
pub mod recovery;
pub mod state;
pub mod sync;
pub mod twin;
pub mod volume;

pub use config::{Clock, ProgressHook, Retention, SyncPolicy, ThreadHook, VolumeConfig};
pub use error::{EngineError, Result};
pub use events::{Event, RecoveryReport};
pub use forward::writer::{RingWriter, WriteCompletion};
pub use geometry::Geometry;
pub use pin::PointPin;
pub use point::{At, MarkerKind, Point, PointKind};
pub use read::{ReadAt, ReadCompletion, Reader};
pub use sync::SyncReport;
pub use volume::{FormatOptions, Volume, VolumeStats};
