//! `volume_stats`: what an operator watches on a volume — journal fill,
//! how far the mirror lags the newest write (in seq and in seconds), the
//! retention window (oldest → newest retained point), the rate of new points
//! (writes and markers) since the previous stats request, the hugepage
//! pool, the reactors, and the engine's raw counters.
//!
//! Invariant: every figure is read from the engine or the runtime at the
//! time of the request; nothing is estimated except the rate, which says
//! over how many seconds it was measured.

use super::points::PointInfo;
use super::{Appliance, ApplianceError, Served};
use crate::engine::volume::{AreaUse, VolumeStats};
use crate::engine::{At, Point, Volume};
use crate::nvmf::target::metrics::OpTotals;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// What the rates of the next `volume_stats` are measured from.
#[derive(Clone, Copy, Debug)]
pub struct RateSample {
    at: Instant,
    next_seq: u64,
    reads: u64,
    writes: u64,
}

/// Per-second rates between two samples.
struct Rates {
    points: f64,
    reads: f64,
    writes: f64,
    secs: f64,
}

/// One kind of host I/O, as `volume_stats` reports it.
fn io_json(t: &OpTotals, per_second: Option<f64>) -> Value {
    json!({
        "ops": t.ops,
        "bytes": t.bytes,
        "errors": t.errors,
        "per_second": per_second,
        "mean_latency_us": t.mean_latency_us(),
        "p99_latency_us_at_most": t.quantile_bound_us(0.99),
    })
}

/// Rates measured over a longer gap than this are not reported.
const RATE_WINDOW_MAX: Duration = Duration::from_secs(600);

/// How far the mirror lags and which points are retained, from one stats read.
pub(super) struct Window {
    pub lag_seq: u64,
    pub lag_s: f64,
    pub oldest: Option<Point>,
    pub newest: Option<Point>,
    pub window_s: f64,
}

impl Window {
    pub(super) fn of(volume: &Volume, stats: &VolumeStats) -> Window {
        let mirror = volume.resolve(&At::Seq(stats.mirror_seq)).ok();
        let newest = volume.resolve(&At::Now).ok();
        let oldest = volume
            .resolve(&At::Seq(stats.oldest_point_seq))
            .ok()
            .or_else(|| mirror.clone());
        let lag_seq = stats.stable_seq.saturating_sub(stats.mirror_seq);
        let lag_s = match (&mirror, &newest) {
            (Some(m), Some(n)) if lag_seq > 0 => n.time_ns.saturating_sub(m.time_ns) as f64 / 1e9,
            _ => 0.0,
        };
        let window_s = match (&oldest, &newest) {
            (Some(o), Some(n)) => n.time_ns.saturating_sub(o.time_ns) as f64 / 1e9,
            _ => 0.0,
        };
        Window {
            lag_seq,
            lag_s,
            oldest,
            newest,
            window_s,
        }
    }
}

/// Percent full of an engine area, one decimal.
pub(super) fn fill(area: &AreaUse) -> f64 {
    if area.capacity_blocks == 0 {
        0.0
    } else {
        (area.used_blocks as f64 * 1000.0 / area.capacity_blocks as f64).round() / 10.0
    }
}

impl Appliance {
    /// The statistics of volume `name`.
    pub fn volume_stats(&self, name: &str) -> Result<Value, ApplianceError> {
        let (served, volume) = self.volume(name)?;
        let stats = volume.stats();
        let Window {
            lag_seq,
            lag_s,
            oldest,
            newest,
            window_s,
        } = Window::of(&volume, &stats);
        let writer_rings = stats.rings.len().saturating_sub(1);
        let rings: Vec<Value> = stats
            .rings
            .iter()
            .enumerate()
            .map(|(i, (desc, data))| {
                json!({
                    "ring": if i < writer_rings { json!(i) } else { json!("control") },
                    "descriptor_fill_percent": fill(desc),
                    "data_fill_percent": fill(data),
                    "descriptor": desc,
                    "data": data,
                })
            })
            .collect();
        let forward_fill = stats
            .rings
            .iter()
            .map(|(d, a)| fill(d).max(fill(a)))
            .fold(0.0, f64::max);
        let io = served.subsystem.metrics.snapshot();
        let rate = self.rates(
            &served,
            RateSample {
                at: Instant::now(),
                next_seq: stats.next_seq,
                reads: io.read.ops,
                writes: io.write.ops,
            },
        );
        let retention = served.retention().clone();
        Ok(json!({
            "volume": name,
            "seq": {
                "next": stats.next_seq,
                "stable": stats.stable_seq,
                "mirror": stats.mirror_seq,
                "oldest": stats.oldest_point_seq,
            },
            "sync_lag": { "seq": lag_seq, "seconds": lag_s },
            "journal": {
                "forward_fill_percent": forward_fill,
                "rings": rings,
                "backward_descriptor_fill_percent": fill(&stats.backward_desc),
                "backward_data_fill_percent": fill(&stats.backward_data),
                "backward_descriptor": stats.backward_desc,
                "backward_data": stats.backward_data,
                "backward_map_bytes": stats.backward_map_bytes,
            },
            "retention": {
                "oldest": oldest.as_ref().map(PointInfo::from),
                "newest": newest.as_ref().map(PointInfo::from),
                "window_seconds": window_s,
                "generations": stats.generations,
                "policy": retention,
            },
            "points": {
                "total": stats.next_seq.saturating_sub(1),
                "per_second": rate.as_ref().map(|r| r.points),
                "measured_over_seconds": rate.as_ref().map(|r| r.secs),
            },
            "io": {
                "read": io_json(&io.read, rate.as_ref().map(|r| r.reads)),
                "write": io_json(&io.write, rate.as_ref().map(|r| r.writes)),
                "measured_over_seconds": rate.as_ref().map(|r| r.secs),
            },
            "hosts": served.hosts(),
            "views": served.views().len(),
            "hugepages": self.pool.stats(),
            "reactors": self.peers.as_ref().map(|p| p.snapshot()).unwrap_or_default(),
            "failed": stats.failed,
        }))
    }

    /// Points, reads and writes per second since the previous sample of
    /// `served`, and over how many seconds.
    fn rates(&self, served: &Served, now: RateSample) -> Option<Rates> {
        let mut sample = served
            .rate_sample
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = sample.replace(now)?;
        let dt = now.at.duration_since(previous.at);
        if dt.is_zero() || dt > RATE_WINDOW_MAX {
            return None;
        }
        let secs = dt.as_secs_f64();
        let per_s = |new: u64, old: u64| new.saturating_sub(old) as f64 / secs;
        Some(Rates {
            points: per_s(now.next_seq, previous.next_seq),
            reads: per_s(now.reads, previous.reads),
            writes: per_s(now.writes, previous.writes),
            secs,
        })
    }
}
