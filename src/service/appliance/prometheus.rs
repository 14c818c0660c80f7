//! The Prometheus text exposition of the appliance: per volume, journal
//! fill, sync lag, retention window, generations kept and expired, and host
//! I/O (operations, bytes, errors, a latency histogram) for reads and writes;
//! for the service, the hugepage pool. Served by [`crate::service::metrics`].
//!
//! Invariant: every figure is read at scrape time from the engine, the
//! target's per-reactor counters or the runtime; counters only grow (they
//! restart at zero with the service, as Prometheus expects of `_total`).

use super::stats::{fill, Window};
use super::{Appliance, Backing, Slot};
use crate::nvmf::target::metrics::{OpTotals, LATENCY_BOUNDS_US};
use std::fmt::Write;

/// Metric families: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "rewind_volume_journaled",
        "gauge",
        "1 for a journaled volume, 0 for a plain namespace.",
    ),
    (
        "rewind_volume_failed",
        "gauge",
        "1 once the volume failed (it refuses writes).",
    ),
    (
        "rewind_forward_journal_fill_ratio",
        "gauge",
        "Fill of the fullest forward-journal ring (0-1).",
    ),
    (
        "rewind_backward_journal_fill_ratio",
        "gauge",
        "Fill of the backward journal's data area (0-1).",
    ),
    (
        "rewind_sync_lag_seqs",
        "gauge",
        "Stable writes not yet in the mirror.",
    ),
    (
        "rewind_sync_lag_seconds",
        "gauge",
        "Time between the mirror's point and the newest write.",
    ),
    (
        "rewind_retention_oldest_timestamp_seconds",
        "gauge",
        "Time of the oldest retained point (Unix seconds).",
    ),
    (
        "rewind_retention_newest_timestamp_seconds",
        "gauge",
        "Time of the newest point (Unix seconds).",
    ),
    (
        "rewind_retention_window_seconds",
        "gauge",
        "Newest minus oldest retained point.",
    ),
    (
        "rewind_generations",
        "gauge",
        "Snapshot generations retained.",
    ),
    (
        "rewind_expired_generations_total",
        "counter",
        "Generations expired since start (policy or room).",
    ),
    (
        "rewind_points_total",
        "counter",
        "Points (writes and markers) the volume has taken.",
    ),
    (
        "rewind_io_operations_total",
        "counter",
        "Host I/O commands completed, by op.",
    ),
    (
        "rewind_io_bytes_total",
        "counter",
        "Bytes transferred by successful host I/O, by op.",
    ),
    (
        "rewind_io_errors_total",
        "counter",
        "Host I/O commands that failed, by op.",
    ),
    (
        "rewind_io_latency_seconds",
        "histogram",
        "Host I/O latency, capsule to response, by op.",
    ),
    (
        "rewind_hugepage_chunks",
        "gauge",
        "2 MiB chunks mapped, by backing (hugepage or fallback).",
    ),
    (
        "rewind_hugepage_bytes_mapped",
        "gauge",
        "Bytes of the chunk pool mapped.",
    ),
];

impl Appliance {
    /// The metrics page (text format 0.0.4).
    pub fn prometheus(&self) -> String {
        let served: Vec<_> = self
            .slots()
            .values()
            .filter_map(|s| match s {
                Slot::Ready(s) => Some(std::sync::Arc::clone(s)),
                Slot::Creating { .. } => None,
            })
            .collect();
        let mut families: Vec<String> = FAMILIES
            .iter()
            .map(|(name, kind, help)| format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"))
            .collect();
        let mut put = |family: &str, labels: &str, value: f64| {
            let i = FAMILIES
                .iter()
                .position(|(n, _, _)| family.starts_with(n))
                .expect("every sample belongs to a declared family");
            let _ = if labels.is_empty() {
                writeln!(families[i], "{family} {value}")
            } else {
                writeln!(families[i], "{family}{{{labels}}} {value}")
            };
        };
        for s in &served {
            let v = format!("volume=\"{}\"", s.name);
            match &s.backing {
                Backing::Journaled(volume) => {
                    let stats = volume.stats();
                    let w = Window::of(volume, &stats);
                    put("rewind_volume_journaled", &v, 1.0);
                    put(
                        "rewind_volume_failed",
                        &v,
                        f64::from(u8::from(stats.failed.is_some())),
                    );
                    let forward = stats
                        .rings
                        .iter()
                        .map(|(d, a)| fill(d).max(fill(a)))
                        .fold(0.0, f64::max);
                    put("rewind_forward_journal_fill_ratio", &v, forward / 100.0);
                    put(
                        "rewind_backward_journal_fill_ratio",
                        &v,
                        fill(&stats.backward_data) / 100.0,
                    );
                    put("rewind_sync_lag_seqs", &v, count(w.lag_seq));
                    put("rewind_sync_lag_seconds", &v, w.lag_s);
                    if let Some(o) = &w.oldest {
                        put(
                            "rewind_retention_oldest_timestamp_seconds",
                            &v,
                            o.time_ns as f64 / 1e9,
                        );
                    }
                    if let Some(n) = &w.newest {
                        put(
                            "rewind_retention_newest_timestamp_seconds",
                            &v,
                            n.time_ns as f64 / 1e9,
                        );
                    }
                    put("rewind_retention_window_seconds", &v, w.window_s);
                    put("rewind_generations", &v, count(stats.generations));
                    put(
                        "rewind_expired_generations_total",
                        &v,
                        count(stats.expired_generations),
                    );
                    put(
                        "rewind_points_total",
                        &v,
                        count(stats.next_seq.saturating_sub(1)),
                    );
                }
                Backing::Plain => put("rewind_volume_journaled", &v, 0.0),
            }
            let io = s.subsystem.metrics.snapshot();
            for (op, t) in [("read", &io.read), ("write", &io.write)] {
                let l = format!("{v},op=\"{op}\"");
                put("rewind_io_operations_total", &l, count(t.ops));
                put("rewind_io_bytes_total", &l, count(t.bytes));
                put("rewind_io_errors_total", &l, count(t.errors));
                histogram(&mut put, &l, t);
            }
        }
        let pool = self.pool.stats();
        put(
            "rewind_hugepage_chunks",
            "backing=\"hugepage\"",
            pool.chunks_hugepage as f64,
        );
        put(
            "rewind_hugepage_chunks",
            "backing=\"fallback\"",
            pool.chunks_fallback as f64,
        );
        put("rewind_hugepage_bytes_mapped", "", pool.bytes_mapped as f64);
        families.concat()
    }
}

/// A count as a sample value (exact below 2^53, which counts stay under).
fn count(n: u64) -> f64 {
    n as f64
}

/// `_bucket` (cumulative, `le` in seconds), `_sum` and `_count` of one op.
fn histogram(put: &mut impl FnMut(&str, &str, f64), labels: &str, t: &OpTotals) {
    let mut cumulative = 0u64;
    for (i, bound_us) in LATENCY_BOUNDS_US.iter().enumerate() {
        cumulative += t.buckets.get(i).copied().unwrap_or(0);
        let le = *bound_us as f64 / 1e6;
        put(
            "rewind_io_latency_seconds_bucket",
            &format!("{labels},le=\"{le}\""),
            count(cumulative),
        );
    }
    put(
        "rewind_io_latency_seconds_bucket",
        &format!("{labels},le=\"+Inf\""),
        count(t.ops),
    );
    put(
        "rewind_io_latency_seconds_sum",
        labels,
        t.latency_ns as f64 / 1e9,
    );
    put("rewind_io_latency_seconds_count", labels, count(t.ops));
}
