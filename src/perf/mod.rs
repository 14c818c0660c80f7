//! `rewind perf`: an NVMe/TCP load generator on the project's host library,
//! in the spirit of spdk_nvme_perf and fio, for any conforming target.
//!
//! [`run`] connects one controller with the asked number of I/O queues,
//! checks the namespace (LBA size, size, write protection), detaches every
//! I/O queue and deals them round-robin to worker threads
//! ([`worker::run_worker`]), each pinned to its core when cores are given
//! and busy-polling its queues at full depth. The calling thread keeps the
//! admin queue alive meanwhile. Afterwards the per-worker statistics (a
//! [`histogram::Histogram`], counts, a per-second series, errors) are
//! merged into a [`report::PerfReport`].
//!
//! Modules: [`options`] (what a run asks for, typed errors), [`workload`]
//! (PRNG, offsets, patterns), [`worker`] (the polling loop), [`histogram`]
//! (latency), [`report`] (table and JSON).
//!
//! Invariant: a run either is refused before any I/O ([`PerfError`]) or
//! ends with a report in bounded time (`warmup + time`, plus the drain,
//! bounded by the command timeout); target failures during the run are
//! counted in the report, never a panic.

pub mod histogram;
pub mod options;
pub mod report;
pub mod worker;
pub mod workload;

pub use histogram::Histogram;
pub use options::{parse_size, PerfConfig, PerfError, RwMode};
pub use report::{Latency, PerfReport, SeriesSummary, VerifyOutcome};

use std::time::{Duration, Instant};

use crate::nvmf::host::{ConnectOptions, Controller, HostError, IoQueue};
use worker::{Mode, RunParams, WorkerStats};

/// Runs `cfg` against its target and reports what it measured.
pub fn run(cfg: &PerfConfig) -> Result<PerfReport, PerfError> {
    cfg.validate()?;
    let connect_err = |source: HostError| PerfError::Connect {
        addr: cfg.addr.clone(),
        source,
    };
    let opts = ConnectOptions {
        io_queues: cfg.queues,
        queue_depth: cfg.queue_depth,
        hdr_digest: cfg.hdr_digest,
        data_digest: cfg.data_digest,
        timeout: cfg.timeout,
        ..ConnectOptions::default()
    };
    let mut ctrl = Controller::connect(cfg.addr.as_str(), &cfg.nqn, &opts).map_err(connect_err)?;
    let result = prepare_and_run(cfg, &mut ctrl);
    // Best effort: an orderly shutdown (the report stands either way).
    let _ = ctrl.disconnect();
    result
}

fn prepare_and_run(cfg: &PerfConfig, ctrl: &mut Controller) -> Result<PerfReport, PerfError> {
    let connect_err = |source: HostError| PerfError::Connect {
        addr: cfg.addr.clone(),
        source,
    };
    let target = |m: String| PerfError::Target(m);
    let nn = ctrl.limits().nn;
    if cfg.nsid > nn {
        return Err(target(format!(
            "namespace {} does not exist (the controller has {nn})",
            cfg.nsid
        )));
    }
    let ns = ctrl.identify_namespace(cfg.nsid).map_err(connect_err)?;
    if ns.nsze == 0 {
        return Err(target(format!("namespace {} is not active", cfg.nsid)));
    }
    let lba = ctrl.lba_size(cfg.nsid).map_err(connect_err)?;
    let read_percent = cfg.rw.read_percent(cfg.rwmixread);
    if ns.is_write_protected() && (read_percent < 100 || cfg.verify) {
        return Err(target(format!(
            "namespace {} is write protected: use --rw read or randread",
            cfg.nsid
        )));
    }
    if !cfg.block_size.is_multiple_of(lba) {
        return Err(target(format!(
            "--bs {} is not a multiple of the namespace's {lba}-byte blocks",
            cfg.block_size
        )));
    }
    let blocks_per_io = cfg.block_size / lba;
    if blocks_per_io > u32::from(u16::MAX) {
        return Err(target(format!(
            "--bs {} is {blocks_per_io} blocks; one command moves at most 65535",
            cfg.block_size
        )));
    }
    if let Some(max) = ctrl.limits().max_transfer {
        if cfg.block_size > max {
            return Err(target(format!(
                "--bs {} exceeds the controller's largest transfer (MDTS) of {max} bytes",
                cfg.block_size
            )));
        }
    }
    let ns_bytes = ns.nsze.saturating_mul(u64::from(lba));
    if cfg.offset >= ns_bytes {
        return Err(target(format!(
            "--offset {} is beyond the namespace's {ns_bytes} bytes",
            cfg.offset
        )));
    }
    if !cfg.offset.is_multiple_of(u64::from(lba)) {
        return Err(target(format!(
            "--offset {} is not a multiple of the {lba}-byte blocks",
            cfg.offset
        )));
    }
    let size = cfg.size.unwrap_or(ns_bytes - cfg.offset);
    if size > ns_bytes - cfg.offset {
        return Err(target(format!(
            "--offset {} plus --size {size} runs past the namespace's {ns_bytes} bytes",
            cfg.offset
        )));
    }
    let units = size / u64::from(cfg.block_size);
    if units == 0 {
        return Err(target(format!(
            "the range holds no whole I/O of {} bytes",
            cfg.block_size
        )));
    }

    let granted = usize::from(ctrl.io_queue_count());
    if granted < cfg.threads {
        return Err(target(format!(
            "the controller granted {granted} I/O queues, fewer than the {} threads",
            cfg.threads
        )));
    }
    let mut per_thread: Vec<Vec<(usize, IoQueue<Vec<u8>>)>> =
        (0..cfg.threads).map(|_| Vec::new()).collect();
    let mut depth = 0;
    for i in 0..granted {
        let q: IoQueue<Vec<u8>> = ctrl.detach_io_queue(i as u16 + 1).map_err(connect_err)?;
        depth = q.depth();
        per_thread[i % cfg.threads].push((i, q));
    }

    let start = Instant::now();
    let (measure_start, end, seconds) = if cfg.verify {
        (start, start, 0)
    } else {
        let m = start + cfg.warmup;
        let secs = cfg.time.as_secs() as usize + usize::from(cfg.time.subsec_nanos() > 0);
        (m, m + cfg.time, secs)
    };
    let params = RunParams {
        nsid: cfg.nsid,
        io_bytes: cfg.block_size as usize,
        blocks_per_io,
        base_lba: cfg.offset / u64::from(lba),
        units,
        total_queues: granted,
        random: cfg.rw.is_random(),
        read_percent,
        seed: cfg.seed,
        mode: if cfg.verify {
            Mode::Verify
        } else {
            Mode::Timed {
                measure_start,
                end,
                seconds,
            }
        },
        stall_timeout: cfg.timeout,
    };

    let mut admin_errors = Vec::new();
    let outcomes: Vec<Result<WorkerStats, String>> = std::thread::scope(|scope| {
        let main = std::thread::current();
        let mut handles = Vec::new();
        for (t, queues) in per_thread.into_iter().enumerate() {
            let core = cfg.cores.get(t).copied();
            let params = &params;
            let main = main.clone();
            let h = std::thread::Builder::new()
                .name(format!("perf-{t}"))
                .spawn_scoped(scope, move || {
                    let r = worker::run_worker(queues, params, core);
                    main.unpark();
                    r
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Workers already started finish on their own (bounded).
                    admin_errors.push(format!("cannot start worker thread {t}: {e}"));
                    break;
                }
            }
        }
        // Keep the controller alive while the workers run.
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::park_timeout(Duration::from_millis(100));
            if let Err(e) = ctrl.tick() {
                if admin_errors.is_empty() {
                    admin_errors.push(format!("keep alive: {e}"));
                }
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("worker thread panicked".into()))
            })
            .collect()
    });
    let finished = Instant::now();
    if admin_errors
        .iter()
        .any(|e| e.starts_with("cannot start worker"))
    {
        return Err(PerfError::Thread(admin_errors.swap_remove(0)));
    }

    let mut total = WorkerStats::default();
    for o in outcomes {
        total.merge(&o.map_err(PerfError::Thread)?);
    }
    // Verify: the whole pass. Timed: up to the end, or until the last
    // queue failed if that came first.
    let window = if cfg.verify {
        finished.saturating_duration_since(start)
    } else {
        finished.min(end).saturating_duration_since(measure_start)
    };
    let secs = window.as_secs_f64().max(1e-9);
    let ios = total.reads + total.writes;
    let iops = ios as f64 / secs;
    Ok(PerfReport {
        addr: cfg.addr.clone(),
        nqn: cfg.nqn.clone(),
        nsid: cfg.nsid,
        rw: cfg.rw,
        rwmixread: read_percent,
        block_size: cfg.block_size,
        queue_depth: depth,
        queues: granted,
        threads: cfg.threads,
        hdr_digest: cfg.hdr_digest,
        data_digest: cfg.data_digest,
        seconds: secs,
        warmup_seconds: if cfg.verify {
            0.0
        } else {
            cfg.warmup.as_secs_f64()
        },
        ios,
        reads: total.reads,
        writes: total.writes,
        iops,
        mib_per_sec: iops * f64::from(cfg.block_size) / (1024.0 * 1024.0),
        latency: Latency::from_histogram(&total.latency),
        per_second: total.per_second,
        verify: cfg.verify.then_some(VerifyOutcome {
            blocks: total.reads * u64::from(blocks_per_io),
            mismatches: total.errors.verify_mismatches,
        }),
        errors: total.errors,
        admin_errors,
    })
}
