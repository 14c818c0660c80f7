//! `rewind perf` against the project's target over loopback, on a served
//! RAM-backed volume: the library engine for about a second of randwrite
//! and randread at QD 32 on two queues and two threads, a verify pass, the
//! built binary once with `--json`, a target error counted rather than
//! fatal, and bad input refused in one line.

mod nvmf_common;

use rewind::perf::{self, PerfConfig, RwMode};
use std::process::Command;
use std::time::Duration;

fn config(s: &nvmf_common::Served, rw: RwMode) -> PerfConfig {
    let mut c = PerfConfig::new(s.addr.to_string(), s.nqn.clone());
    c.rw = rw;
    c.queue_depth = 32;
    c.queues = 2;
    c.threads = 2;
    c.time = Duration::from_millis(1000);
    c.warmup = Duration::from_millis(200);
    c
}

#[test]
fn engine_randwrite_randread_and_verify() {
    let s = nvmf_common::serve_volume("perf", 32 << 20, Vec::new());
    for rw in [RwMode::RandWrite, RwMode::RandRead, RwMode::RandRw] {
        let r = perf::run(&config(&s, rw)).unwrap();
        assert!(r.ios > 0 && r.iops > 0.0, "{rw}: {}", r.to_table(true));
        assert_eq!(r.error_total(), 0, "{rw}: {}", r.to_table(true));
        assert_eq!(r.queues, 2);
        assert_eq!(r.queue_depth, 32);
        let l = r.latency.unwrap();
        assert!(l.min <= l.p50 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
        assert_eq!(r.per_second.len(), 1);
        match rw {
            RwMode::RandWrite => assert_eq!(r.reads, 0),
            RwMode::RandRead => assert_eq!(r.writes, 0),
            _ => assert!(r.reads > 0 && r.writes > 0),
        }
    }

    // Verify over 4 MiB at an offset, 8 KiB I/Os, digests on.
    let mut v = config(&s, RwMode::Write);
    v.verify = true;
    v.offset = 1 << 20;
    v.size = Some(4 << 20);
    v.block_size = 8192;
    v.hdr_digest = true;
    v.data_digest = true;
    let r = perf::run(&v).unwrap();
    assert_eq!(r.error_total(), 0, "{}", r.to_table(false));
    let out = r.verify.unwrap();
    assert_eq!(out.blocks, 1024);
    assert_eq!(out.mismatches, 0);
    assert_eq!((r.reads, r.writes), (512, 512));
    s.server.stop().unwrap();
}

#[test]
fn target_errors_are_counted_not_fatal() {
    let s = nvmf_common::serve_volume("perferr", 8 << 20, Vec::new());
    // Namespace 2 does not exist: refused before any I/O, one line.
    let mut c = config(&s, RwMode::RandRead);
    c.nsid = 2;
    let e = perf::run(&c).unwrap_err().to_string();
    assert!(e.contains("namespace 2") && !e.contains('\n'), "{e}");
    // A range past the end: refused.
    let mut c = config(&s, RwMode::RandRead);
    c.size = Some((s.volume.geometry().volume_blocks + 1) * 4096);
    let e = perf::run(&c).unwrap_err().to_string();
    assert!(e.contains("runs past"), "{e}");
    // A block size that is not a multiple of the LBA size: refused.
    let mut c = config(&s, RwMode::RandRead);
    c.block_size = 1000;
    assert!(perf::run(&c).is_err());
    let c = config(&s, RwMode::RandRead);
    s.server.stop().unwrap();
    // Nobody listening any more: a connect error, not a panic.
    assert!(perf::run(&c).is_err());
}

#[test]
fn a_lost_target_is_counted_in_the_report() {
    let s = nvmf_common::serve_volume("perflost", 8 << 20, Vec::new());
    let mut c = config(&s, RwMode::RandWrite);
    c.time = Duration::from_secs(3);
    c.warmup = Duration::ZERO;
    c.timeout = Duration::from_secs(2);
    let run = std::thread::spawn(move || perf::run(&c));
    std::thread::sleep(Duration::from_millis(500));
    s.server.stop().unwrap();
    let r = run.join().expect("no panic").expect("a report");
    assert!(r.error_total() > 0, "{}", r.to_table(false));
    assert_eq!(r.errors.queues_failed.len(), 2, "{}", r.to_table(false));
    assert!(r.writes > 0, "{}", r.to_table(false));
    // The window ends when the last queue did, not at --time.
    assert!(r.seconds < 2.5, "{}", r.to_table(false));
}

#[test]
fn binary_reports_json_and_refuses_bad_input() {
    let s = nvmf_common::serve_volume("perfbin", 16 << 20, Vec::new());
    let bin = env!("CARGO_BIN_EXE_rewind");
    let out = Command::new(bin)
        .args(["perf", "--addr", "127.0.0.1", "--port"])
        .arg(s.addr.port().to_string())
        .args(["--nqn", &s.nqn, "--rw", "randwrite", "--qd", "16"])
        .args(["--time", "1", "--json", "--per-second"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(j["rw"], "randwrite");
    assert_eq!(j["qd"], 16);
    assert!(j["iops"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["writes"].as_u64().unwrap() > 0);
    assert_eq!(j["errors"]["total"], 0);
    assert!(j["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(j["per_second_iops"].as_array().unwrap().len(), 1);

    // Bad input: one line on stderr, non-zero exit.
    for bad in [
        vec!["--rw", "sideways"],
        vec!["--qd", "0"],
        vec!["--bs", "4q"],
        vec!["--threads", "3"],
        vec!["--qd", "many"],
    ] {
        let out = Command::new(bin)
            .args(["perf", "--nqn", &s.nqn, "--time", "1"])
            .args(&bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{bad:?}: {stderr}");
        assert!(stderr.starts_with("rewind: "), "{stderr}");
    }
    s.server.stop().unwrap();
}
