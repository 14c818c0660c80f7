//! Multi-crash sequences the model test found, kept as regressions. Each
//! exposed a real recovery bug: a stale descriptor block from an earlier run,
//! left at a ring's checkpointed tail by a batch whose data was torn, was taken
//! for a continuation after a later crash dropped the block written over it
//! (wrong data at a listed point; a listed point vanishing). Background syncs
//! make each run's timing differ, so each sequence runs several times.

mod common;
use common::*;

const ATTEMPTS: usize = 15;

#[test]
fn listed_point_vanished_after_three_crashes() {
    let ops: Vec<Op> = vec![
        Op::Burst {
            ios: vec![
                Io {
                    ring: 0,
                    lba: 8,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 42,
                    n: 6,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 18,
                    n: 7,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 21,
                    n: 3,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Sync,
        Op::Write(Io {
            ring: 1,
            lba: 33,
            n: 3,
            zero: false,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 14,
            n: 6,
            zero: false,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 59,
            n: 2,
            zero: false,
        }),
        Op::Write(Io {
            ring: 0,
            lba: 39,
            n: 8,
            zero: false,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 27,
            n: 1,
            zero: false,
        }),
        Op::Mark,
        Op::Sync,
        Op::Write(Io {
            ring: 1,
            lba: 25,
            n: 7,
            zero: false,
        }),
        Op::Write(Io {
            ring: 0,
            lba: 34,
            n: 6,
            zero: false,
        }),
        Op::Crash {
            after: 22,
            seed: 14664318864723797265u64,
            ios: vec![
                Io {
                    ring: 1,
                    lba: 45,
                    n: 3,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 11,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 2,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 42,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 34,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 42,
                    n: 5,
                    zero: true,
                },
                Io {
                    ring: 1,
                    lba: 13,
                    n: 2,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::ReadNow { lba: 1, n: 34 },
        Op::Mark,
        Op::Write(Io {
            ring: 1,
            lba: 35,
            n: 3,
            zero: false,
        }),
        Op::Burst {
            ios: vec![
                Io {
                    ring: 1,
                    lba: 43,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 29,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 52,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 61,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 7,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 27,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 53,
                    n: 4,
                    zero: true,
                },
            ],
            sync: false,
        },
        Op::Write(Io {
            ring: 0,
            lba: 29,
            n: 2,
            zero: false,
        }),
        Op::Crash {
            after: 48,
            seed: 8080297863397558143u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 20,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 37,
                    n: 8,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::ReadNow { lba: 14, n: 26 },
        Op::KeepLast(None),
        Op::Write(Io {
            ring: 1,
            lba: 6,
            n: 7,
            zero: false,
        }),
        Op::ReadNow { lba: 25, n: 39 },
        Op::Crash {
            after: 37,
            seed: 12892704710674741396u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 38,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 29,
                    n: 1,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::Crash {
            after: 72,
            seed: 10070834529106187237u64,
            ios: vec![
                Io {
                    ring: 1,
                    lba: 36,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 18,
                    n: 6,
                    zero: true,
                },
                Io {
                    ring: 1,
                    lba: 60,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 36,
                    n: 2,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Crash {
            after: 3,
            seed: 5592812918001399145u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 60,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 52,
                    n: 6,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::KeepLast(None),
        Op::ReadNow { lba: 45, n: 19 },
        Op::ReadNow { lba: 34, n: 27 },
        Op::Write(Io {
            ring: 0,
            lba: 10,
            n: 7,
            zero: false,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 4,
            n: 2,
            zero: false,
        }),
        Op::KeepLast(None),
        Op::ReadNow { lba: 17, n: 19 },
        Op::Write(Io {
            ring: 0,
            lba: 30,
            n: 8,
            zero: false,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 54,
            n: 4,
            zero: false,
        }),
        Op::ReadNow { lba: 2, n: 59 },
        Op::Mark,
        Op::Write(Io {
            ring: 0,
            lba: 24,
            n: 6,
            zero: true,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 25,
            n: 7,
            zero: false,
        }),
        Op::Mark,
        Op::Flush { ring: 0 },
        Op::Burst {
            ios: vec![
                Io {
                    ring: 0,
                    lba: 48,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 23,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 3,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 50,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 47,
                    n: 5,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::ReadNow { lba: 37, n: 27 },
        Op::Sync,
        Op::Sync,
        Op::Write(Io {
            ring: 1,
            lba: 29,
            n: 7,
            zero: false,
        }),
        Op::Burst {
            ios: vec![
                Io {
                    ring: 0,
                    lba: 20,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 17,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 63,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 62,
                    n: 2,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Write(Io {
            ring: 0,
            lba: 1,
            n: 6,
            zero: false,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 33,
            n: 8,
            zero: false,
        }),
        Op::Flush { ring: 0 },
        Op::ReadNow { lba: 26, n: 38 },
        Op::Burst {
            ios: vec![
                Io {
                    ring: 1,
                    lba: 19,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 50,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 25,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 42,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 4,
                    n: 6,
                    zero: false,
                },
            ],
            sync: false,
        },
    ];
    for attempt in 0..ATTEMPTS {
        let mut h = Harness::new(2507897375155475353u64);
        for op in &ops {
            if let Err(e) = h.run(op) {
                panic!("attempt {attempt}: {e}");
            }
        }
    }
}

#[test]
fn zeroes_instead_of_a_recovered_write_after_three_crashes() {
    let ops: Vec<Op> = vec![
        Op::Write(Io {
            ring: 1,
            lba: 28,
            n: 1,
            zero: false,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 49,
            n: 8,
            zero: true,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 58,
            n: 3,
            zero: true,
        }),
        Op::Burst {
            ios: vec![
                Io {
                    ring: 1,
                    lba: 24,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 54,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 5,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 36,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 52,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 45,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 49,
                    n: 5,
                    zero: true,
                },
                Io {
                    ring: 1,
                    lba: 13,
                    n: 2,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 52,
                    n: 8,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Crash {
            after: 29,
            seed: 9809087371809239788u64,
            ios: vec![
                Io {
                    ring: 1,
                    lba: 3,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 43,
                    n: 6,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 9,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 43,
                    n: 6,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 6,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 19,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 1,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 51,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 15,
                    n: 6,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::Write(Io {
            ring: 1,
            lba: 20,
            n: 1,
            zero: true,
        }),
        Op::Crash {
            after: 26,
            seed: 5554580554118141528u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 45,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 46,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 0,
                    n: 5,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Write(Io {
            ring: 0,
            lba: 30,
            n: 7,
            zero: false,
        }),
        Op::ReadNow { lba: 58, n: 6 },
        Op::ReadNow { lba: 53, n: 3 },
        Op::KeepLast(None),
        Op::Write(Io {
            ring: 1,
            lba: 19,
            n: 4,
            zero: false,
        }),
        Op::ReadNow { lba: 3, n: 16 },
        Op::Write(Io {
            ring: 1,
            lba: 52,
            n: 4,
            zero: false,
        }),
        Op::Crash {
            after: 17,
            seed: 2583116877551854970u64,
            ios: vec![
                Io {
                    ring: 1,
                    lba: 1,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 39,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 6,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 33,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 14,
                    n: 6,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Burst {
            ios: vec![
                Io {
                    ring: 0,
                    lba: 14,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 6,
                    n: 4,
                    zero: true,
                },
                Io {
                    ring: 1,
                    lba: 45,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 6,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 38,
                    n: 1,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 12,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 63,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 0,
                    n: 6,
                    zero: true,
                },
            ],
            sync: true,
        },
        Op::ReadNow { lba: 24, n: 40 },
        Op::Sync,
        Op::Crash {
            after: 3,
            seed: 1098314028526794984u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 28,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 36,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 32,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 42,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 58,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 39,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 41,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 45,
                    n: 8,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Write(Io {
            ring: 0,
            lba: 48,
            n: 7,
            zero: true,
        }),
        Op::Flush { ring: 0 },
        Op::Write(Io {
            ring: 1,
            lba: 38,
            n: 5,
            zero: false,
        }),
        Op::Write(Io {
            ring: 0,
            lba: 42,
            n: 6,
            zero: false,
        }),
        Op::Burst {
            ios: vec![Io {
                ring: 1,
                lba: 7,
                n: 8,
                zero: false,
            }],
            sync: false,
        },
        Op::Crash {
            after: 51,
            seed: 18174773907200679028u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 18,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 61,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 8,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 34,
                    n: 5,
                    zero: true,
                },
                Io {
                    ring: 1,
                    lba: 59,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 21,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 51,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 42,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 26,
                    n: 5,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::Write(Io {
            ring: 1,
            lba: 44,
            n: 4,
            zero: false,
        }),
        Op::Mark,
        Op::Write(Io {
            ring: 0,
            lba: 22,
            n: 6,
            zero: false,
        }),
        Op::Crash {
            after: 12,
            seed: 8293759603819172586u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 60,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 43,
                    n: 3,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 29,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 6,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 27,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 40,
                    n: 8,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::ReadNow { lba: 52, n: 12 },
        Op::Burst {
            ios: vec![
                Io {
                    ring: 1,
                    lba: 58,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 63,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 22,
                    n: 3,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 27,
                    n: 8,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Crash {
            after: 9,
            seed: 4060502057212078370u64,
            ios: vec![
                Io {
                    ring: 1,
                    lba: 40,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 49,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 31,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 45,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 29,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 4,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 53,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 30,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 63,
                    n: 1,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::ReadNow { lba: 3, n: 20 },
        Op::Flush { ring: 1 },
        Op::KeepLast(Some(4)),
        Op::Write(Io {
            ring: 1,
            lba: 27,
            n: 8,
            zero: false,
        }),
        Op::Flush { ring: 0 },
        Op::Write(Io {
            ring: 0,
            lba: 28,
            n: 5,
            zero: false,
        }),
        Op::Flush { ring: 1 },
        Op::Flush { ring: 0 },
        Op::ReadNow { lba: 4, n: 60 },
        Op::Write(Io {
            ring: 0,
            lba: 22,
            n: 1,
            zero: false,
        }),
        Op::Write(Io {
            ring: 0,
            lba: 46,
            n: 4,
            zero: false,
        }),
        Op::Crash {
            after: 59,
            seed: 12978196356628708840u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 59,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 14,
                    n: 7,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Write(Io {
            ring: 1,
            lba: 53,
            n: 6,
            zero: false,
        }),
        Op::ReadNow { lba: 0, n: 15 },
        Op::ReadNow { lba: 35, n: 29 },
        Op::Sync,
        Op::Write(Io {
            ring: 1,
            lba: 4,
            n: 7,
            zero: false,
        }),
        Op::Write(Io {
            ring: 0,
            lba: 51,
            n: 3,
            zero: true,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 0,
            n: 7,
            zero: false,
        }),
        Op::ReadNow { lba: 30, n: 27 },
        Op::Burst {
            ios: vec![
                Io {
                    ring: 0,
                    lba: 24,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 18,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 29,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 60,
                    n: 1,
                    zero: true,
                },
                Io {
                    ring: 1,
                    lba: 52,
                    n: 4,
                    zero: true,
                },
                Io {
                    ring: 1,
                    lba: 1,
                    n: 7,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::Sync,
    ];
    for attempt in 0..ATTEMPTS {
        let mut h = Harness::new(1938951059244452622u64);
        for op in &ops {
            if let Err(e) = h.run(op) {
                panic!("attempt {attempt}: {e}");
            }
        }
    }
}

#[test]
fn stale_block_at_the_tail_after_three_crashes() {
    let ops: Vec<Op> = vec![
        Op::ReadNow { lba: 51, n: 13 },
        Op::Burst {
            ios: vec![Io {
                ring: 1,
                lba: 23,
                n: 7,
                zero: false,
            }],
            sync: true,
        },
        Op::Crash {
            after: 39,
            seed: 5183522332003275686u64,
            ios: vec![
                Io {
                    ring: 1,
                    lba: 40,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 1,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 41,
                    n: 3,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 11,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 45,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 32,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 16,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 58,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 38,
                    n: 8,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Burst {
            ios: vec![
                Io {
                    ring: 0,
                    lba: 0,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 54,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 6,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 42,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 30,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 21,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 47,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 14,
                    n: 8,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 46,
                    n: 5,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::Flush { ring: 1 },
        Op::Flush { ring: 0 },
        Op::Write(Io {
            ring: 0,
            lba: 47,
            n: 7,
            zero: false,
        }),
        Op::Write(Io {
            ring: 1,
            lba: 33,
            n: 3,
            zero: true,
        }),
        Op::Burst {
            ios: vec![
                Io {
                    ring: 1,
                    lba: 62,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 41,
                    n: 7,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 60,
                    n: 2,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 7,
                    n: 8,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 32,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 54,
                    n: 2,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 61,
                    n: 3,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 52,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 10,
                    n: 5,
                    zero: false,
                },
            ],
            sync: false,
        },
        Op::Crash {
            after: 55,
            seed: 5957578969969087609u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 51,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 58,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 60,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 35,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 60,
                    n: 4,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 50,
                    n: 1,
                    zero: true,
                },
                Io {
                    ring: 0,
                    lba: 53,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 34,
                    n: 1,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Write(Io {
            ring: 1,
            lba: 54,
            n: 6,
            zero: false,
        }),
        Op::Sync,
        Op::Write(Io {
            ring: 1,
            lba: 13,
            n: 2,
            zero: false,
        }),
        Op::Crash {
            after: 12,
            seed: 4416385649328575576u64,
            ios: vec![
                Io {
                    ring: 0,
                    lba: 12,
                    n: 4,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 38,
                    n: 6,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 22,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 62,
                    n: 1,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 50,
                    n: 3,
                    zero: false,
                },
                Io {
                    ring: 0,
                    lba: 48,
                    n: 5,
                    zero: false,
                },
                Io {
                    ring: 1,
                    lba: 40,
                    n: 2,
                    zero: false,
                },
            ],
            sync: true,
        },
        Op::Write(Io {
            ring: 1,
            lba: 52,
            n: 5,
            zero: false,
        }),
    ];
    for attempt in 0..ATTEMPTS {
        let mut h = Harness::new(13500482843543686679u64);
        for op in &ops {
            if let Err(e) = h.run(op) {
                panic!("attempt {attempt}: {e}");
            }
        }
    }
}
