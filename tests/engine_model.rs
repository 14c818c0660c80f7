//! Model-based test of the engine: random overlapping writes and write-zeroes
//! on two rings (blocking and in flight together), flushes, bookmarks, syncs
//! (on demand, in the background while writes are in flight, and forced by
//! full rings), reads at random listed points, retention expiry, and crashes at
//! random device-operation counts through the fault device followed by
//! recovery. A reference model keeps every write by seq; every listed point
//! must read back byte-exact, before and after every crash.
//!
//! Knobs: `PROPTEST_CASES` (default 256) and `REWIND_MODEL_OPS` (max ops per case,
//! default 60) for long soaks.

mod common;

use common::*;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

fn max_ops() -> usize {
    std::env::var("REWIND_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..max_ops())) {
        let mut h = Harness::new(seed);
        for op in &ops {
            h.run(op)?;
        }
        h.check_all_points()?;
    }
}
