//! The result of a run ([`PerfReport`]) and its two renderings: a human
//! table ([`PerfReport::to_table`]) and one JSON object
//! ([`PerfReport::to_json`], written by hand: a flat, fixed shape needs no
//! serializer).
//!
//! Invariant: IOPS and MiB/s are measured completions over the measured
//! window; latencies are microseconds, submit to completion, of successful
//! measured I/Os only; every error counted by a worker appears in
//! `errors`.

use std::fmt::Write as _;

use super::histogram::Histogram;
use super::options::RwMode;
use super::worker::ErrorCounts;

/// Latency summary, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    /// The summary of `h` (ns), `None` when it is empty.
    pub fn from_histogram(h: &Histogram) -> Option<Latency> {
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Latency {
            min: us(h.min()?),
            mean: h.mean()? / 1000.0,
            p50: us(h.percentile(50.0)?),
            p90: us(h.percentile(90.0)?),
            p99: us(h.percentile(99.0)?),
            p99_9: us(h.percentile(99.9)?),
            max: us(h.max()?),
        })
    }
}

/// Min, median and max of the per-second IOPS series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesSummary {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

impl SeriesSummary {
    pub fn of(series: &[u64]) -> Option<SeriesSummary> {
        let mut v = series.to_vec();
        v.sort_unstable();
        Some(SeriesSummary {
            min: *v.first()?,
            median: v[v.len() / 2],
            max: *v.last()?,
        })
    }
}

/// Outcome of `--verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// Blocks written with the pattern and read back.
    pub blocks: u64,
    pub mismatches: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct PerfReport {
    pub addr: String,
    pub nqn: String,
    pub nsid: u32,
    pub rw: RwMode,
    pub rwmixread: u8,
    pub block_size: u32,
    /// Queue depth granted per queue.
    pub queue_depth: usize,
    /// I/O queues granted.
    pub queues: usize,
    pub threads: usize,
    pub hdr_digest: bool,
    pub data_digest: bool,
    /// Measured window, seconds.
    pub seconds: f64,
    pub warmup_seconds: f64,
    /// Successful measured I/Os.
    pub ios: u64,
    pub reads: u64,
    pub writes: u64,
    pub iops: f64,
    pub mib_per_sec: f64,
    pub latency: Option<Latency>,
    /// Successful completions in each second of the window.
    pub per_second: Vec<u64>,
    pub errors: ErrorCounts,
    /// Keep alive failures on the admin queue (the I/O may go on).
    pub admin_errors: Vec<String>,
    pub verify: Option<VerifyOutcome>,
}

impl PerfReport {
    /// Errors of every kind (I/O and admin).
    pub fn error_total(&self) -> u64 {
        self.errors.total() + self.admin_errors.len() as u64
    }

    /// The human rendering; the per-second series only if `per_second`.
    pub fn to_table(&self, per_second: bool) -> String {
        let mut s = String::new();
        let mix = match self.rw {
            RwMode::Rw | RwMode::RandRw => format!(" ({}% reads)", self.rwmixread),
            _ => String::new(),
        };
        let what = if self.verify.is_some() {
            "verify (write pattern, read back)".to_string()
        } else {
            format!("{}{mix}", self.rw)
        };
        let _ = writeln!(
            s,
            "rewind perf: {what}, {} B, QD {} x {} queue(s) on {} thread(s); {} {} ns {}{}",
            self.block_size,
            self.queue_depth,
            self.queues,
            self.threads,
            self.addr,
            self.nqn,
            self.nsid,
            match (self.hdr_digest, self.data_digest) {
                (false, false) => "",
                (true, false) => ", header digest",
                (false, true) => ", data digest",
                (true, true) => ", header+data digest",
            }
        );
        let _ = writeln!(
            s,
            "time {:.2} s (warm-up {:.2} s excluded): {} I/Os ({} reads, {} writes)",
            self.seconds, self.warmup_seconds, self.ios, self.reads, self.writes
        );
        let _ = writeln!(
            s,
            "{:>12} {:>10} | {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "IOPS", "MiB/s", "min", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        let lat = match &self.latency {
            Some(l) => format!(
                "{:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                l.min, l.mean, l.p50, l.p90, l.p99, l.p99_9, l.max
            ),
            None => format!("{:>9}", "-"),
        };
        let _ = writeln!(
            s,
            "{:>12.0} {:>10.1} | {lat}   (latency µs)",
            self.iops, self.mib_per_sec
        );
        if per_second && !self.per_second.is_empty() {
            let list: Vec<String> = self.per_second.iter().map(u64::to_string).collect();
            let _ = writeln!(s, "per-second IOPS: {}", list.join(" "));
            if let Some(m) = SeriesSummary::of(&self.per_second) {
                let _ = writeln!(
                    s,
                    "per-second IOPS min {} / median {} / max {} (min/median {:.3})",
                    m.min,
                    m.median,
                    m.max,
                    m.min as f64 / m.median.max(1) as f64
                );
            }
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                s,
                "verify: {} blocks written and read back, {} mismatched",
                v.blocks, v.mismatches
            );
        }
        let e = &self.errors;
        let _ = writeln!(s, "errors: {}", self.error_total());
        for (st, n) in &e.by_status {
            let _ = writeln!(s, "  {n} x NVMe status {st}");
        }
        if e.short_transfers > 0 {
            let _ = writeln!(s, "  {} x short data transfer", e.short_transfers);
        }
        if e.verify_mismatches > 0 {
            let _ = writeln!(s, "  {} x verify mismatch", e.verify_mismatches);
        }
        if e.aborted > 0 {
            let _ = writeln!(s, "  {} x aborted (queue failed)", e.aborted);
        }
        for q in &e.queues_failed {
            let _ = writeln!(s, "  queue failed: {q}");
        }
        for a in &self.admin_errors {
            let _ = writeln!(s, "  admin queue: {a}");
        }
        s
    }

    /// One JSON object (one line); `per_second_iops` only if `per_second`.
    ///
    /// Shape: `{"addr","nqn","nsid","rw" (or "verify"),"rwmixread","bs",
    /// "qd","queues","threads","hdr_digest","data_digest","time_s",
    /// "warmup_s","ios","reads","writes","iops","mib_s",
    /// "latency_us":{"min","mean","p50","p90","p99","p99_9","max"} | null,
    /// ["per_second_iops":[..],"per_second_summary":{"min","median","max"}],
    /// ["verify":{"blocks","mismatches"}],
    /// "errors":{"total","by_status":[{"sct","sc","name","count"}],
    /// "short_transfers","verify_mismatches","aborted","queues_failed":[..],
    /// "admin":[..]}}`.
    pub fn to_json(&self, per_second: bool) -> String {
        let mut s = String::from("{");
        let mut field = |name: &str, value: String| {
            if s.len() > 1 {
                s.push(',');
            }
            let _ = write!(s, "\"{name}\":{value}");
        };
        field("addr", json_str(&self.addr));
        field("nqn", json_str(&self.nqn));
        field("nsid", self.nsid.to_string());
        field(
            "rw",
            json_str(if self.verify.is_some() {
                "verify"
            } else {
                self.rw.name()
            }),
        );
        field("rwmixread", self.rwmixread.to_string());
        field("bs", self.block_size.to_string());
        field("qd", self.queue_depth.to_string());
        field("queues", self.queues.to_string());
        field("threads", self.threads.to_string());
        field("hdr_digest", self.hdr_digest.to_string());
        field("data_digest", self.data_digest.to_string());
        field("time_s", json_f64(self.seconds));
        field("warmup_s", json_f64(self.warmup_seconds));
        field("ios", self.ios.to_string());
        field("reads", self.reads.to_string());
        field("writes", self.writes.to_string());
        field("iops", json_f64(self.iops));
        field("mib_s", json_f64(self.mib_per_sec));
        field(
            "latency_us",
            match &self.latency {
                Some(l) => format!(
                    "{{\"min\":{},\"mean\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"p99_9\":{},\"max\":{}}}",
                    json_f64(l.min),
                    json_f64(l.mean),
                    json_f64(l.p50),
                    json_f64(l.p90),
                    json_f64(l.p99),
                    json_f64(l.p99_9),
                    json_f64(l.max)
                ),
                None => "null".into(),
            },
        );
        if per_second {
            let list: Vec<String> = self.per_second.iter().map(u64::to_string).collect();
            field("per_second_iops", format!("[{}]", list.join(",")));
            field(
                "per_second_summary",
                match SeriesSummary::of(&self.per_second) {
                    Some(m) => format!(
                        "{{\"min\":{},\"median\":{},\"max\":{}}}",
                        m.min, m.median, m.max
                    ),
                    None => "null".into(),
                },
            );
        }
        if let Some(v) = &self.verify {
            field(
                "verify",
                format!(
                    "{{\"blocks\":{},\"mismatches\":{}}}",
                    v.blocks, v.mismatches
                ),
            );
        }
        let e = &self.errors;
        let statuses: Vec<String> = e
            .by_status
            .iter()
            .map(|(st, n)| {
                format!(
                    "{{\"sct\":{},\"sc\":{},\"name\":{},\"count\":{n}}}",
                    st.sct,
                    st.sc,
                    json_str(st.name())
                )
            })
            .collect();
        let strings = |v: &[String]| {
            let l: Vec<String> = v.iter().map(|x| json_str(x)).collect();
            format!("[{}]", l.join(","))
        };
        field(
            "errors",
            format!(
                "{{\"total\":{},\"by_status\":[{}],\"short_transfers\":{},\"verify_mismatches\":{},\"aborted\":{},\"queues_failed\":{},\"admin\":{}}}",
                self.error_total(),
                statuses.join(","),
                e.short_transfers,
                e.verify_mismatches,
                e.aborted,
                strings(&e.queues_failed),
                strings(&self.admin_errors)
            ),
        );
        s.push('}');
        s
    }
}

fn json_f64(x: f64) -> String {
    if x.is_finite() {
        // Three decimals: µs to the nanosecond, IOPS to a thousandth.
        let t = format!("{x:.3}");
        let t = t.trim_end_matches('0').trim_end_matches('.');
        if t.is_empty() || t == "-" {
            "0".into()
        } else {
            t.to_string()
        }
    } else {
        "null".into()
    }
}

fn json_str(x: &str) -> String {
    let mut s = String::with_capacity(x.len() + 2);
    s.push('"');
    for c in x.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvmf::status::Status;

    fn sample() -> PerfReport {
        let mut h = Histogram::new();
        for v in [10_000u64, 20_000, 30_000] {
            h.record(v);
        }
        PerfReport {
            addr: "127.0.0.1:4420".into(),
            nqn: "nqn.\"quoted\"".into(),
            nsid: 1,
            rw: RwMode::RandRw,
            rwmixread: 70,
            block_size: 4096,
            queue_depth: 32,
            queues: 2,
            threads: 1,
            hdr_digest: false,
            data_digest: true,
            seconds: 2.0,
            warmup_seconds: 0.5,
            ios: 3,
            reads: 2,
            writes: 1,
            iops: 1.5,
            mib_per_sec: 1.5 * 4096.0 / 1048576.0,
            latency: Latency::from_histogram(&h),
            per_second: vec![1, 2],
            errors: ErrorCounts {
                by_status: vec![(Status::LBA_OUT_OF_RANGE, 4)],
                ..ErrorCounts::default()
            },
            admin_errors: Vec::new(),
            verify: None,
        }
    }

    #[test]
    fn json_is_one_object_with_escapes() {
        let j = sample().to_json(true);
        assert!(j.starts_with('{') && j.ends_with('}') && !j.contains('\n'));
        assert!(j.contains("\"nqn\":\"nqn.\\\"quoted\\\"\""));
        assert!(j.contains("\"iops\":1.5,"));
        assert!(j.contains("\"p50\":20.0"), "{j}"); // within the bucket of 20 µs
        assert!(j.contains("\"per_second_iops\":[1,2]"));
        assert!(j.contains("\"total\":4,"));
        assert!(!sample().to_json(false).contains("per_second"));
    }

    #[test]
    fn table_names_errors_by_status() {
        let t = sample().to_table(true);
        assert!(t.contains("randrw (70% reads)"), "{t}");
        assert!(t.contains("errors: 4"));
        assert!(t.contains("4 x NVMe status"));
        assert!(t.contains("per-second IOPS: 1 2"));
    }

    #[test]
    fn numbers_render_compactly() {
        assert_eq!(json_f64(1.0), "1");
        assert_eq!(json_f64(0.0), "0");
        assert_eq!(json_f64(12.3456), "12.346");
        assert_eq!(json_f64(f64::NAN), "null");
        assert_eq!(SeriesSummary::of(&[5, 1, 3]).unwrap().median, 3);
        assert_eq!(SeriesSummary::of(&[]), None);
    }
}
