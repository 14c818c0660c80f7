//! Crash at every instant of one scenario: for each count `n` of device
//! writes and flushes, the device crashes after the `n`-th, and the volume is
//! recovered from the crash image (un-flushed writes dropped, applied or torn
//! at sector granularity). The window covers appends in flight on two rings,
//! flush markers, a bookmark, syncs before, during and after the mirror
//! update, and expiry; every crash must lose no acknowledged write and keep
//! every listed point exact (checked against the reference model).

mod common;

use common::*;

fn setup() -> Vec<Op> {
    let w = |ring, lba, n| Io {
        ring,
        lba,
        n,
        zero: false,
    };
    vec![
        Op::Burst {
            ios: vec![w(0, 0, 8), w(1, 8, 8), w(0, 16, 8)],
            sync: true,
        },
        Op::Burst {
            ios: vec![w(1, 4, 8), w(0, 12, 4)],
            sync: false,
        },
        Op::Mark,
        Op::Burst {
            ios: vec![
                w(0, 30, 6),
                Io {
                    ring: 1,
                    lba: 2,
                    n: 3,
                    zero: true,
                },
            ],
            sync: true,
        },
    ]
}

fn window() -> Vec<Op> {
    let w = |ring, lba, n| Io {
        ring,
        lba,
        n,
        zero: false,
    };
    vec![
        Op::Burst {
            ios: vec![w(0, 1, 5), w(1, 3, 2), w(0, 40, 8), w(1, 50, 8)],
            sync: false,
        },
        Op::Flush { ring: 1 },
        Op::Burst {
            ios: vec![w(1, 2, 3), w(0, 60, 4)],
            sync: true,
        },
        Op::Mark,
        Op::Burst {
            ios: vec![
                w(0, 0, 8),
                Io {
                    ring: 1,
                    lba: 20,
                    n: 8,
                    zero: true,
                },
            ],
            sync: true,
        },
        Op::KeepLast(Some(2)),
        Op::Burst {
            ios: vec![w(1, 33, 7), w(0, 44, 2)],
            sync: true,
        },
        Op::Flush { ring: 0 },
    ]
}

fn sweep(seed: u64) {
    // How many device writes and flushes does the window take?
    let mut h = Harness::new(seed);
    for op in setup() {
        h.run(&op).unwrap();
    }
    let start = h.fault.write_flush_count();
    for op in window() {
        h.run(&op).unwrap();
    }
    let count = h.fault.write_flush_count() - start;
    assert!(
        count > 20,
        "the window should do real work ({count} device operations)"
    );
    eprintln!("seed {seed}: sweeping {count} crash points");
    for n in 0..=count + 2 {
        let mut h = Harness::new(seed);
        for op in setup() {
            h.run(&op).unwrap();
        }
        if let Err(e) = h.crash_during(n, seed.wrapping_add(n), &window()) {
            panic!("crash after {n} of {count} device operations: {e}");
        }
        // The recovered volume keeps working.
        h.run(&Op::Burst {
            ios: vec![Io {
                ring: 0,
                lba: 7,
                n: 3,
                zero: false,
            }],
            sync: true,
        })
        .unwrap();
        h.check_all_points().unwrap();
    }
}

#[test]
fn crash_at_every_device_operation() {
    sweep(7);
}

#[test]
fn crash_at_every_device_operation_other_tears() {
    sweep(0xdead_beef);
}
