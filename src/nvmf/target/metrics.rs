//! Per-subsystem I/O counters: operations, bytes, errors and a latency
//! histogram for reads and for writes, as hosts see them (from the command
//! capsule to the response being queued).
//!
//! Each reactor counts into its own cache-line-aligned cells, so the I/O path
//! shares nothing between cores and takes no lock; a scrape sums the cells.
//! Invariant: counters only grow; a snapshot is a consistent-enough sum for
//! monitoring (cells are read one by one while reactors keep counting).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets in µs (1 µs to about 1 s, doubling);
/// a last, unbounded bucket takes the rest.
pub const LATENCY_BOUNDS_US: [u64; 21] = {
    let mut b = [0u64; 21];
    let mut i = 0;
    while i < b.len() {
        b[i] = 1 << i;
        i += 1;
    }
    b
};

const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Reactors with cells of their own; further reactors share (still correct,
/// the counters are atomic).
const REACTOR_CELLS: usize = 64;

/// The kind of I/O counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
}

#[derive(Default)]
struct OpCells {
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    latency_ns: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

#[derive(Default)]
#[repr(align(128))]
struct ReactorCells {
    read: OpCells,
    write: OpCells,
}

/// See the module documentation.
pub struct IoMetrics {
    cells: Box<[ReactorCells]>,
}

impl std::fmt::Debug for IoMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("IoMetrics")
            .field("reads", &s.read.ops)
            .field("writes", &s.write.ops)
            .finish()
    }
}

impl Default for IoMetrics {
    fn default() -> Self {
        IoMetrics {
            cells: (0..REACTOR_CELLS)
                .map(|_| ReactorCells::default())
                .collect(),
        }
    }
}

/// Totals of one kind of I/O.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpTotals {
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Sum of the latencies, ns.
    pub latency_ns: u64,
    /// Count per bucket of [`LATENCY_BOUNDS_US`] (not cumulative), then the
    /// count above the last bound.
    pub buckets: Vec<u64>,
}

/// Totals of reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoTotals {
    pub read: OpTotals,
    pub write: OpTotals,
}

fn bucket(latency: Duration) -> usize {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    LATENCY_BOUNDS_US
        .iter()
        .position(|&bound| us <= bound)
        .unwrap_or(LATENCY_BOUNDS_US.len())
}

impl IoMetrics {
    /// Counts one finished I/O on `reactor`.
    pub fn record(&self, reactor: usize, op: IoOp, bytes: u64, latency: Duration, ok: bool) {
        let cells = &self.cells[reactor % self.cells.len()];
        let c = match op {
            IoOp::Read => &cells.read,
            IoOp::Write => &cells.write,
        };
        c.ops.fetch_add(1, Ordering::Relaxed);
        if ok {
            c.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        c.latency_ns.fetch_add(ns, Ordering::Relaxed);
        c.buckets[bucket(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// The sums over every reactor.
    pub fn snapshot(&self) -> IoTotals {
        let sum = |pick: fn(&ReactorCells) -> &OpCells| {
            let mut t = OpTotals {
                buckets: vec![0; BUCKETS],
                ..OpTotals::default()
            };
            for cells in self.cells.iter() {
                let c = pick(cells);
                t.ops += c.ops.load(Ordering::Relaxed);
                t.bytes += c.bytes.load(Ordering::Relaxed);
                t.errors += c.errors.load(Ordering::Relaxed);
                t.latency_ns += c.latency_ns.load(Ordering::Relaxed);
                for (total, b) in t.buckets.iter_mut().zip(&c.buckets) {
                    *total += b.load(Ordering::Relaxed);
                }
            }
            t
        };
        IoTotals {
            read: sum(|c| &c.read),
            write: sum(|c| &c.write),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_over_reactors_and_land_in_their_buckets() {
        let m = IoMetrics::default();
        m.record(0, IoOp::Write, 4096, Duration::from_micros(3), true);
        m.record(1, IoOp::Write, 4096, Duration::from_nanos(900), true);
        m.record(70, IoOp::Read, 8192, Duration::from_secs(5), false);
        let s = m.snapshot();
        assert_eq!((s.write.ops, s.write.bytes, s.write.errors), (2, 8192, 0));
        assert_eq!(s.write.latency_ns, 3_900);
        assert_eq!(s.write.buckets[0], 1, "900 ns: the 1 µs bucket");
        assert_eq!(s.write.buckets[2], 1, "3 µs: the 4 µs bucket");
        assert_eq!((s.read.ops, s.read.bytes, s.read.errors), (1, 0, 1));
        assert_eq!(
            s.read.buckets[LATENCY_BOUNDS_US.len()],
            1,
            "5 s: above every bound"
        );
        assert_eq!(s.write.buckets.iter().sum::<u64>(), 2);
    }
}
