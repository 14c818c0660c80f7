//! How a volume behaves once open: retention policy, sync triggers, the clock,
//! and where map nodes get their memory. One typed struct, passed down.
//!
//! Invariant: every knob has a default that suits an unattended appliance;
//! `validate` refuses values that would stall the volume (e.g. a 0% fill trigger).

use super::error::{EngineError, Result};
use super::map::arena::{ChunkSource, HeapChunks};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// When generations expire. The backward journal running out of room always
/// expires the oldest generations (forced expiry, reported as such): writes
/// never stop for want of undo space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Never expire a generation younger than this voluntarily (keep_last and
    /// min_free_percent yield to it; a full backward journal does not).
    #[serde(with = "duration_secs")]
    pub keep_at_least: Duration,
    /// Keep at most this many generations.
    pub keep_last: Option<u64>,
    /// Expire the oldest generations while less than this share of the
    /// backward journal is free, so the next sync has room.
    pub min_free_percent: u8,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_at_least: Duration::ZERO,
            keep_last: None,
            min_free_percent: 0,
        }
    }
}

/// When the sync worker moves the mirror forward.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncPolicy {
    /// Sync when any forward ring is at least this full (percent of its data or descriptor area).
    pub fill_percent: u8,
    /// Sync at least this often when there are new writes (None: only on fill and on demand).
    #[serde(with = "opt_duration_secs")]
    pub interval: Option<Duration>,
    /// Insert a periodic marker this often when writes arrived since the last marker.
    #[serde(with = "opt_duration_secs")]
    pub marker_interval: Option<Duration>,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            fill_percent: 50,
            interval: Some(Duration::from_secs(60)),
            marker_interval: Some(Duration::from_secs(10)),
        }
    }
}

/// Source of wall-clock timestamps.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// A manually advanced clock (tests): nanoseconds since the epoch.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }
}

/// Everything a volume needs besides its device.
#[derive(Clone, Debug)]
pub struct VolumeConfig {
    pub retention: Retention,
    pub sync: SyncPolicy,
    pub clock: Clock,
    /// Memory for map nodes (hugepages in production, the heap by default).
    pub chunks: Arc<dyn ChunkSource>,
    /// Requests in flight per device queue.
    pub queue_depth: u32,
    /// How long the sync worker waits for writers to make a marker stable
    /// before giving up on that sync (a ring whose owner stopped polling).
    pub stable_wait: Duration,
    /// Run first on the sync worker's thread (the service pins it to its
    /// configured core here).
    pub worker_start: Option<ThreadHook>,
    /// Told how far the long steps of format and open have come (zeroing the
    /// mirror, scanning the journals), for progress bars and log lines.
    pub progress: Option<ProgressHook>,
}

/// Progress of a long step: `(what, done, total)`, in bytes, with `done <=
/// total`; a step ends with a call where `done == total`.
#[derive(Clone)]
pub struct ProgressHook(pub Arc<ProgressFn>);

/// What a [`ProgressHook`] calls: `(what, done, total)`.
pub type ProgressFn = dyn Fn(&str, u64, u64) + Send + Sync;

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

impl ProgressHook {
    /// Reports `done` of `total` for `what` (clamped to `total`).
    pub fn report(&self, what: &str, done: u64, total: u64) {
        (self.0)(what, done.min(total), total);
    }
}

/// Reports through `hook` when there is one.
pub(crate) fn report(hook: Option<&ProgressHook>, what: &str, done: u64, total: u64) {
    if let Some(h) = hook {
        h.report(what, done, total);
    }
}

/// A function a volume runs on a thread it starts.
#[derive(Clone)]
pub struct ThreadHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ThreadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadHook")
    }
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            retention: Retention::default(),
            sync: SyncPolicy::default(),
            clock: Clock::System,
            chunks: Arc::new(HeapChunks::default()),
            queue_depth: 256,
            stable_wait: Duration::from_secs(30),
            worker_start: None,
            progress: None,
        }
    }
}

impl VolumeConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(EngineError::InvalidGeometry(m.to_string()));
        if !(1..=100).contains(&self.sync.fill_percent) {
            return bad("sync.fill_percent must be 1..=100");
        }
        if self.retention.min_free_percent > 90 {
            return bad("retention.min_free_percent must be at most 90");
        }
        if self.queue_depth < 8 || self.queue_depth > 4096 {
            return bad("queue_depth must be 8..=4096");
        }
        Ok(())
    }
}

mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

mod opt_duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}
