//! One worker thread: pinned (when asked) to its core, it busy-polls the
//! I/O queues it was dealt, keeping every one of them at its queue depth
//! until the run ends, then drains them.
//!
//! Per queue the worker preallocates one data buffer and one record per
//! command slot; a command's tag is its slot index, so a completion finds
//! its submit time and block address without a lookup. On the I/O path:
//! no lock, no allocation, no syscall other than the socket's own send and
//! receive (batched by [`IoQueue::poll`]), and one clock read per poll that
//! returned completions (or per loop when none did).
//!
//! Invariant: a queue that fails (transport error, protocol violation,
//! no completion within the timeout) is counted as such, its commands in
//! flight are aborted and counted, and the worker carries on with its other
//! queues; nothing a target does makes a worker panic or spin forever.

use std::time::{Duration, Instant};

use super::histogram::Histogram;
use super::workload::{check_pattern, fill_pattern, next_is_read, Offsets, WyRand};
use crate::nvmf::host::{IoCompletion, IoData, IoQueue, SubmitError};
use crate::nvmf::status::Status;

/// What every worker of a run shares (read-only).
#[derive(Debug, Clone)]
pub struct RunParams {
    pub nsid: u32,
    /// Bytes per I/O.
    pub io_bytes: usize,
    /// Blocks per I/O (1..=65535).
    pub blocks_per_io: u32,
    /// First block of the range.
    pub base_lba: u64,
    /// I/O-sized units in the range.
    pub units: u64,
    /// Queues in the whole run (for spreading sequential streams and
    /// verify stripes).
    pub total_queues: usize,
    pub random: bool,
    pub read_percent: u8,
    pub seed: u64,
    pub mode: Mode,
    /// No completion for this long on a queue with commands in flight
    /// fails the queue.
    pub stall_timeout: Duration,
}

/// Timed workload or verify pass.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Submit until `end`; statistics cover completions in
    /// `[measure_start, end)`.
    Timed {
        measure_start: Instant,
        end: Instant,
        /// Entries in the per-second series.
        seconds: usize,
    },
    /// Write each queue's stripe of the range with the pattern, then read it
    /// back and compare; everything is measured.
    Verify,
}

/// Errors seen by one worker (merged across workers for the report).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Completions with a non-success NVMe status, by status.
    pub by_status: Vec<(Status, u64)>,
    /// Queues lost, with why (one entry per failed queue).
    pub queues_failed: Vec<String>,
    /// Commands in flight on a queue when it failed.
    pub aborted: u64,
    /// Successful completions that moved fewer bytes than asked.
    pub short_transfers: u64,
    /// Blocks whose data read back differs from what `--verify` wrote.
    pub verify_mismatches: u64,
}

impl ErrorCounts {
    /// Every error counted (a failed queue counts once, plus the commands
    /// it aborted).
    pub fn total(&self) -> u64 {
        self.by_status.iter().map(|&(_, n)| n).sum::<u64>()
            + self.queues_failed.len() as u64
            + self.aborted
            + self.short_transfers
            + self.verify_mismatches
    }
    fn status(&mut self, s: Status) {
        // Errors are rare: a linear scan (and a push on a new status) is fine.
        match self.by_status.iter_mut().find(|(st, _)| *st == s) {
            Some((_, n)) => *n += 1,
            None => self.by_status.push((s, 1)),
        }
    }
    pub fn merge(&mut self, o: &ErrorCounts) {
        for &(s, n) in &o.by_status {
            match self.by_status.iter_mut().find(|(st, _)| *st == s) {
                Some((_, m)) => *m += n,
                None => self.by_status.push((s, n)),
            }
        }
        self.queues_failed.extend(o.queues_failed.iter().cloned());
        self.aborted += o.aborted;
        self.short_transfers += o.short_transfers;
        self.verify_mismatches += o.verify_mismatches;
    }
}

/// What one worker measured.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// Latency of measured completions, submit to completion, ns.
    pub latency: Histogram,
    pub reads: u64,
    pub writes: u64,
    /// Measured completions per second of the measured window.
    pub per_second: Vec<u64>,
    pub errors: ErrorCounts,
}

impl WorkerStats {
    pub fn merge(&mut self, o: &WorkerStats) {
        self.latency.merge(&o.latency);
        self.reads += o.reads;
        self.writes += o.writes;
        if self.per_second.len() < o.per_second.len() {
            self.per_second.resize(o.per_second.len(), 0);
        }
        for (a, b) in self.per_second.iter_mut().zip(&o.per_second) {
            *a += b;
        }
        self.errors.merge(&o.errors);
    }
}

/// One command slot: its buffer (when not in flight) and what was sent.
#[derive(Debug)]
struct Slot {
    buf: Option<Vec<u8>>,
    submitted: Instant,
    lba: u64,
    read: bool,
}

/// Where a verify stripe stands.
#[derive(Debug, Clone, Copy)]
struct Stripe {
    first: u64,
    end: u64,
    next: u64,
    reading: bool,
}

/// One queue and its preallocated state.
#[derive(Debug)]
struct QueueState {
    q: IoQueue<Vec<u8>>,
    slots: Vec<Slot>,
    free: Vec<u16>,
    done: Vec<IoCompletion<Vec<u8>>>,
    offsets: Offsets,
    rng: WyRand,
    stripe: Stripe,
    /// Last completion, or the submission that started a busy period.
    progress: Instant,
    dead: bool,
}

impl QueueState {
    fn new(q: IoQueue<Vec<u8>>, index: usize, p: &RunParams, now: Instant) -> Self {
        let depth = q.depth();
        let mut rng = WyRand::new(p.seed ^ (index as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03));
        let slots = (0..depth)
            .map(|_| {
                // Random bytes, so a target cannot shortcut zero blocks.
                let mut buf = vec![0u8; p.io_bytes];
                fill_pattern(&mut buf, rng.next_u64(), 0);
                Slot {
                    buf: Some(buf),
                    submitted: now,
                    lba: 0,
                    read: false,
                }
            })
            .collect();
        let n = p.total_queues.max(1) as u128;
        let units = u128::from(p.units);
        let first = (units * index as u128 / n) as u64;
        let end = (units * (index as u128 + 1) / n) as u64;
        QueueState {
            q,
            slots,
            free: (0..depth as u16).rev().collect(),
            done: Vec::with_capacity(depth),
            offsets: Offsets::new(
                p.base_lba,
                u64::from(p.blocks_per_io),
                p.units,
                p.random,
                index,
                p.total_queues,
            ),
            rng,
            stripe: Stripe {
                first,
                end,
                next: first,
                reading: false,
            },
            progress: now,
            dead: false,
        }
    }

    fn inflight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Verify: the read pass has submitted its last command.
    fn stripe_done(&self) -> bool {
        self.stripe.reading && self.stripe.next == self.stripe.end
    }

    /// Fills every free slot (or, verifying, as many as the stripe has left
    /// in the current pass).
    fn submit_free(&mut self, p: &RunParams, now: Instant, stats: &mut WorkerStats) {
        if self.inflight() == 0 {
            self.progress = now;
        }
        while let Some(&slot) = self.free.last() {
            let (lba, read) = match p.mode {
                Mode::Timed { .. } => {
                    let read = next_is_read(&mut self.rng, p.read_percent);
                    (self.offsets.next_lba(&mut self.rng), read)
                }
                Mode::Verify => {
                    let st = &mut self.stripe;
                    if st.next == st.end {
                        // The read pass starts once every write completed.
                        if st.reading || self.slots.len() != self.free.len() {
                            return;
                        }
                        st.reading = true;
                        st.next = st.first;
                        if st.next == st.end {
                            return;
                        }
                    }
                    let lba = p.base_lba + st.next * u64::from(p.blocks_per_io);
                    st.next += 1;
                    (lba, st.reading)
                }
            };
            let s = &mut self.slots[usize::from(slot)];
            let Some(mut buf) = s.buf.take() else {
                // Cannot happen: free slots hold their buffer.
                self.free.pop();
                continue;
            };
            if matches!(p.mode, Mode::Verify) && !read {
                let bs = p.io_bytes / p.blocks_per_io as usize;
                for (i, block) in buf.chunks_mut(bs).enumerate() {
                    fill_pattern(block, p.seed, lba + i as u64);
                }
            }
            s.lba = lba;
            s.read = read;
            s.submitted = now;
            // 1..=65535, checked when the run was set up.
            let nblocks = p.blocks_per_io as u16;
            let r = if read {
                self.q
                    .submit_read(p.nsid, lba, nblocks, buf, u64::from(slot))
            } else {
                self.q
                    .submit_write(p.nsid, lba, nblocks, buf, u64::from(slot))
            };
            match r {
                Ok(_) => {
                    self.free.pop();
                }
                Err((e, data)) => {
                    s.buf = match data {
                        IoData::In(b) | IoData::Out(b) => Some(b),
                        IoData::None => None,
                    };
                    if s.buf.is_none() {
                        self.free.pop();
                    }
                    // QueueFull with nothing in flight would never clear.
                    if e != SubmitError::QueueFull || self.inflight() == 0 {
                        // The queue failed; the next poll says why.
                        stats
                            .errors
                            .queues_failed
                            .push(format!("queue {}: submit refused: {e}", self.q.qid()));
                        self.abort(stats);
                    }
                    return;
                }
            }
        }
    }

    /// Handles the completions in `self.done`, seen at `now`.
    fn complete(&mut self, p: &RunParams, now: Instant, stats: &mut WorkerStats) {
        self.progress = now;
        let (window, second_of) = match p.mode {
            Mode::Timed {
                measure_start, end, ..
            } => (
                now >= measure_start && now < end,
                now.saturating_duration_since(measure_start).as_secs() as usize,
            ),
            Mode::Verify => (true, usize::MAX),
        };
        for c in self.done.drain(..) {
            let Some(s) = self.slots.get_mut(c.tag as usize) else {
                continue;
            };
            let ok = c.is_success();
            let short = ok && c.transferred as usize != p.io_bytes;
            if !ok {
                stats.errors.status(c.status());
            } else if short {
                stats.errors.short_transfers += 1;
            } else if s.read && matches!(p.mode, Mode::Verify) {
                if let Some(buf) = &c.buf {
                    let bs = p.io_bytes / p.blocks_per_io as usize;
                    for (i, block) in buf.chunks(bs).enumerate() {
                        if !check_pattern(block, p.seed, s.lba + i as u64) {
                            stats.errors.verify_mismatches += 1;
                        }
                    }
                }
            }
            if let Some(buf) = c.buf {
                s.buf = Some(buf);
                self.free.push(c.tag as u16);
            }
            if ok && !short && window {
                stats
                    .latency
                    .record(now.saturating_duration_since(s.submitted).as_nanos() as u64);
                if s.read {
                    stats.reads += 1;
                } else {
                    stats.writes += 1;
                }
                if let Some(n) = stats.per_second.get_mut(second_of) {
                    *n += 1;
                }
            }
        }
    }

    /// Gives up the queue: aborts and counts what is in flight.
    fn abort(&mut self, stats: &mut WorkerStats) {
        self.done.clear();
        self.q.abort_all(&mut self.done);
        stats.errors.aborted += self.done.len() as u64;
        for c in self.done.drain(..) {
            if let (Some(s), Some(buf)) = (self.slots.get_mut(c.tag as usize), c.buf) {
                s.buf = Some(buf);
                self.free.push(c.tag as u16);
            }
        }
        self.dead = true;
    }
}

/// Runs one worker over `queues` (with their run-wide indexes) and returns
/// its statistics; the queues are closed at the end.
pub fn run_worker(
    queues: Vec<(usize, IoQueue<Vec<u8>>)>,
    p: &RunParams,
    core: Option<usize>,
) -> Result<WorkerStats, String> {
    if let Some(core) = core {
        crate::runtime::pin_current_thread(core)
            .map_err(|e| format!("cannot pin to core {core}: {e}"))?;
    }
    let now = Instant::now();
    // Buffers are allocated here, after pinning, so they are local to the
    // core that uses them.
    let mut qs: Vec<QueueState> = queues
        .into_iter()
        .map(|(i, q)| QueueState::new(q, i, p, now))
        .collect();
    let mut stats = WorkerStats::default();
    if let Mode::Timed { seconds, .. } = p.mode {
        stats.per_second = vec![0; seconds];
    }
    let end = match p.mode {
        Mode::Timed { end, .. } => Some(end),
        Mode::Verify => None,
    };
    let mut submitting = true;
    let mut now = Instant::now();
    loop {
        let mut busy = false;
        let mut clock_read = false;
        for q in qs.iter_mut().filter(|q| !q.dead) {
            if submitting {
                q.submit_free(p, now, &mut stats);
                if q.dead {
                    continue;
                }
            }
            match q.q.poll(&mut q.done) {
                Ok(0) => {}
                Ok(_) => {
                    now = Instant::now();
                    clock_read = true;
                    q.complete(p, now, &mut stats);
                }
                Err(e) => {
                    stats
                        .errors
                        .queues_failed
                        .push(format!("queue {}: {e}", q.q.qid()));
                    q.abort(&mut stats);
                    continue;
                }
            }
            if matches!(p.mode, Mode::Verify) && !q.stripe_done() {
                busy = true;
            }
            if q.inflight() > 0 {
                busy = true;
                if now.saturating_duration_since(q.progress) > p.stall_timeout {
                    stats.errors.queues_failed.push(format!(
                        "queue {}: no completion for {:?} with {} commands in flight",
                        q.q.qid(),
                        p.stall_timeout,
                        q.inflight()
                    ));
                    q.abort(&mut stats);
                }
            }
        }
        if !clock_read {
            now = Instant::now();
        }
        if submitting && end.is_some_and(|e| now >= e) {
            submitting = false;
        }
        if !busy && (!submitting || matches!(p.mode, Mode::Verify)) {
            // Timed: ended and drained. Verify: both passes of every stripe
            // submitted and completed.
            break;
        }
        if qs.iter().all(|q| q.dead) {
            break;
        }
    }
    for q in qs {
        q.q.close();
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_merge_by_status_and_total() {
        let mut a = ErrorCounts::default();
        a.status(Status::LBA_OUT_OF_RANGE);
        a.status(Status::LBA_OUT_OF_RANGE);
        a.short_transfers = 1;
        let mut b = ErrorCounts::default();
        b.status(Status::INTERNAL);
        b.status(Status::LBA_OUT_OF_RANGE);
        b.queues_failed.push("queue 1: closed".into());
        b.aborted = 31;
        a.merge(&b);
        assert_eq!(
            a.by_status,
            vec![(Status::LBA_OUT_OF_RANGE, 3), (Status::INTERNAL, 1)]
        );
        assert_eq!(a.total(), 3 + 1 + 1 + 1 + 31);
    }

    #[test]
    fn stats_merge_sums_counts_series_and_latency() {
        let mut a = WorkerStats {
            per_second: vec![1, 2],
            reads: 3,
            ..WorkerStats::default()
        };
        a.latency.record(1000);
        let mut b = WorkerStats {
            per_second: vec![10, 20, 30],
            writes: 60,
            ..WorkerStats::default()
        };
        b.latency.record(3000);
        a.merge(&b);
        assert_eq!(a.per_second, vec![11, 22, 30]);
        assert_eq!((a.reads, a.writes), (3, 60));
        assert_eq!(a.latency.count(), 2);
    }
}
