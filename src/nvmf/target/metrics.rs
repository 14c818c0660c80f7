//! Per-subsystem I/O counters: operations, bytes, errors and a latency
//! histogram for reads and for writes, as hosts see them (from the command
//! capsule to the response being queued).
//!
//! Each reactor counts into its own cache-line-aligned cells with plain
//! stores (it is their only writer), so the I/O path shares nothing between
//! cores and takes no lock; a scrape sums the cells.
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

/// Cells: one per reactor below the last, whose cell reactors from there on
/// share (with atomic adds, so still exact).
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

impl OpTotals {
    /// Mean latency in µs (None before the first I/O).
    pub fn mean_latency_us(&self) -> Option<f64> {
        (self.ops > 0).then(|| self.latency_ns as f64 / self.ops as f64 / 1e3)
    }

    /// The smallest bucket bound (µs) under which at least `q` (0-1) of the
    /// I/Os completed: an upper bound on that quantile. None before the first
    /// I/O or when the quantile lies above the last bound.
    pub fn quantile_bound_us(&self, q: f64) -> Option<u64> {
        let want = (self.ops as f64 * q).ceil() as u64;
        if self.ops == 0 {
            return None;
        }
        let mut seen = 0;
        for (count, bound) in self.buckets.iter().zip(LATENCY_BOUNDS_US) {
            seen += count;
            if seen >= want {
                return Some(bound);
            }
        }
        None
    }
}

/// Totals of reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoTotals {
    pub read: OpTotals,
    pub write: OpTotals,
}

/// The bucket of a latency: the first bound at or above it, in O(1).
fn bucket(latency: Duration) -> usize {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let i = if us <= 1 {
        0
    } else {
        (64 - (us - 1).leading_zeros()) as usize
    };
    debug_assert!(i >= LATENCY_BOUNDS_US.len() || us <= LATENCY_BOUNDS_US[i]);
    i.min(LATENCY_BOUNDS_US.len())
}

/// Adds `n` to a cell only this reactor writes: a plain load and store, no
/// locked instruction on the I/O path.
fn bump(cell: &AtomicU64, n: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl IoMetrics {
    /// Counts one finished I/O on `reactor`. Reactors below the cell count
    /// own their cells (single writer); any further ones share the last cell
    /// with atomic adds.
    pub fn record(&self, reactor: usize, op: IoOp, bytes: u64, latency: Duration, ok: bool) {
        let last = self.cells.len() - 1;
        let cells = &self.cells[reactor.min(last)];
        let c = match op {
            IoOp::Read => &cells.read,
            IoOp::Write => &cells.write,
        };
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let add = |cell: &AtomicU64, n: u64| {
            if reactor < last {
                bump(cell, n);
            } else {
                cell.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&c.ops, 1);
        if ok {
            add(&c.bytes, bytes);
        } else {
            add(&c.errors, 1);
        }
        add(&c.latency_ns, ns);
        add(&c.buckets[bucket(latency)], 1);
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
        m.record(63, IoOp::Read, 512, Duration::from_micros(1024), true);
        let s = m.snapshot();
        assert_eq!((s.write.ops, s.write.bytes, s.write.errors), (2, 8192, 0));
        assert_eq!(s.write.latency_ns, 3_900);
        assert_eq!(s.write.buckets[0], 1, "900 ns: the 1 µs bucket");
        assert_eq!(s.write.buckets[2], 1, "3 µs: the 4 µs bucket");
        assert_eq!((s.read.ops, s.read.bytes, s.read.errors), (2, 512, 1));
        assert_eq!(
            s.read.buckets[LATENCY_BOUNDS_US.len()],
            1,
            "5 s: above every bound"
        );
        assert_eq!(s.read.buckets[10], 1, "1024 µs: the 1024 µs bucket");
        for (i, &bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            assert_eq!(bucket(Duration::from_micros(bound)), i);
            assert_eq!(bucket(Duration::from_micros(bound + 1)), i + 1);
        }
        assert_eq!(s.write.buckets.iter().sum::<u64>(), 2);
        assert_eq!(s.write.mean_latency_us(), Some(1.95));
        assert_eq!(s.write.quantile_bound_us(0.5), Some(1));
        assert_eq!(s.write.quantile_bound_us(0.99), Some(4));
        assert_eq!(s.read.quantile_bound_us(0.5), Some(1024));
        assert_eq!(s.read.quantile_bound_us(0.99), None, "above every bound");
        assert_eq!(OpTotals::default().mean_latency_us(), None);
    }
}
