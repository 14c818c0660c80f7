//! What a perf run asks for ([`PerfConfig`], [`RwMode`]) and why a run can
//! be refused ([`PerfError`]).
//!
//! Invariant: a config that passes [`PerfConfig::validate`] names a
//! non-zero block size, queue depth, queue and thread count, at least one
//! queue per thread, a read mix of 0..=100 and a positive duration; the
//! checks that need the target (block size against the namespace's LBA
//! size and MDTS, the range against the namespace size) happen at connect
//! time in [`super::run`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::nvmf::host::HostError;

/// The I/O pattern, as fio and spdk_nvme_perf name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RwMode {
    Read,
    Write,
    RandRead,
    RandWrite,
    /// Sequential, mixed by `rwmixread`.
    Rw,
    /// Random, mixed by `rwmixread`.
    RandRw,
}

impl RwMode {
    /// Offsets are drawn at random (otherwise sequential per queue).
    pub fn is_random(self) -> bool {
        matches!(self, RwMode::RandRead | RwMode::RandWrite | RwMode::RandRw)
    }
    /// Percentage of reads this mode issues, given the mix setting.
    pub fn read_percent(self, rwmixread: u8) -> u8 {
        match self {
            RwMode::Read | RwMode::RandRead => 100,
            RwMode::Write | RwMode::RandWrite => 0,
            RwMode::Rw | RwMode::RandRw => rwmixread,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            RwMode::Read => "read",
            RwMode::Write => "write",
            RwMode::RandRead => "randread",
            RwMode::RandWrite => "randwrite",
            RwMode::Rw => "rw",
            RwMode::RandRw => "randrw",
        }
    }
}

impl fmt::Display for RwMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RwMode {
    type Err = PerfError;
    fn from_str(s: &str) -> Result<Self, PerfError> {
        Ok(match s {
            "read" => RwMode::Read,
            "write" => RwMode::Write,
            "randread" => RwMode::RandRead,
            "randwrite" => RwMode::RandWrite,
            "rw" | "readwrite" => RwMode::Rw,
            "randrw" => RwMode::RandRw,
            other => {
                return Err(PerfError::Config(format!(
                    "--rw {other:?}: use read, write, randread, randwrite, rw or randrw"
                )))
            }
        })
    }
}

/// One perf run (see the module documentation for what is checked when).
#[derive(Debug, Clone)]
pub struct PerfConfig {
    /// Target address, `host:port`.
    pub addr: String,
    /// Subsystem NQN.
    pub nqn: String,
    pub nsid: u32,
    /// Bytes per I/O; a multiple of the namespace's LBA size.
    pub block_size: u32,
    /// Commands in flight per queue.
    pub queue_depth: u16,
    /// I/O queues (one TCP connection each).
    pub queues: u16,
    /// Worker threads; queues are dealt round-robin among them.
    pub threads: usize,
    /// Core per worker thread (pinned); empty: not pinned.
    pub cores: Vec<usize>,
    pub rw: RwMode,
    /// Percentage of reads in `rw`/`randrw`.
    pub rwmixread: u8,
    /// Measured time.
    pub time: Duration,
    /// Time run before measuring (its I/Os are not in the statistics).
    pub warmup: Duration,
    /// Bytes of the namespace to use from `offset`; `None`: to its end.
    pub size: Option<u64>,
    /// First byte of the range used; a multiple of `block_size`.
    pub offset: u64,
    pub hdr_digest: bool,
    pub data_digest: bool,
    /// Instead of the timed workload: write a pattern over the range, read
    /// it back and compare.
    pub verify: bool,
    /// PRNG seed (offsets, read/write choice, data).
    pub seed: u64,
    /// Connect and per-command timeout; also how long the end of a run waits
    /// for commands still in flight.
    pub timeout: Duration,
}

impl PerfConfig {
    /// A config with spdk_nvme_perf-like defaults against `addr`/`nqn`:
    /// 4 KiB random reads at QD 32 on one queue and one thread for 10 s.
    pub fn new(addr: impl Into<String>, nqn: impl Into<String>) -> Self {
        PerfConfig {
            addr: addr.into(),
            nqn: nqn.into(),
            nsid: 1,
            block_size: 4096,
            queue_depth: 32,
            queues: 1,
            threads: 1,
            cores: Vec::new(),
            rw: RwMode::RandRead,
            rwmixread: 50,
            time: Duration::from_secs(10),
            warmup: Duration::ZERO,
            size: None,
            offset: 0,
            hdr_digest: false,
            data_digest: false,
            verify: false,
            seed: 0x5EED_0F2E_714D,
            timeout: Duration::from_secs(10),
        }
    }

    /// Checks what can be checked without the target.
    pub fn validate(&self) -> Result<(), PerfError> {
        let bad = |m: String| Err(PerfError::Config(m));
        if self.nqn.is_empty() {
            return bad("--nqn is required".into());
        }
        if self.nsid == 0 || self.nsid == u32::MAX {
            return bad(format!("--nsid {}: not a valid namespace id", self.nsid));
        }
        if self.block_size == 0 {
            return bad("--bs must be positive".into());
        }
        if self.queue_depth == 0 {
            return bad("--qd must be positive".into());
        }
        if self.queues == 0 {
            return bad("--queues must be positive".into());
        }
        if self.threads == 0 {
            return bad("--threads must be positive".into());
        }
        if !self.cores.is_empty() && self.cores.len() != self.threads {
            return bad(format!(
                "{} cores listed for {} threads",
                self.cores.len(),
                self.threads
            ));
        }
        if self.threads > usize::from(self.queues) {
            return bad(format!(
                "{} threads for {} queues: each thread needs a queue (raise --queues)",
                self.threads, self.queues
            ));
        }
        if self.rwmixread > 100 {
            return bad(format!(
                "--rwmixread {}: a percentage, 0..=100",
                self.rwmixread
            ));
        }
        if !self.verify && self.time.is_zero() {
            return bad("--time must be positive".into());
        }
        if !self.offset.is_multiple_of(u64::from(self.block_size)) {
            return bad(format!(
                "--offset {} is not a multiple of --bs {}",
                self.offset, self.block_size
            ));
        }
        if let Some(size) = self.size {
            if size < u64::from(self.block_size) {
                return bad(format!(
                    "--size {size} is smaller than one I/O of {} bytes",
                    self.block_size
                ));
            }
        }
        Ok(())
    }
}

/// Why a run did not happen (errors during a run are counted in the report
/// instead).
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// The options are inconsistent.
    #[error("{0}")]
    Config(String),
    /// The options do not fit the target (namespace size, LBA size, MDTS).
    #[error("{0}")]
    Target(String),
    /// Connecting or identifying failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: HostError,
    },
    /// A worker thread could not start or be pinned.
    #[error("worker thread: {0}")]
    Thread(String),
}

/// Parses a byte size such as 4096, 64k or 1G (see [`crate::size`]).
pub fn parse_size(text: &str) -> Result<u64, PerfError> {
    crate::size::parse_size(text).map_err(PerfError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_mix() {
        assert_eq!("randrw".parse::<RwMode>().unwrap(), RwMode::RandRw);
        assert!("random".parse::<RwMode>().is_err());
        assert_eq!(RwMode::RandRead.read_percent(30), 100);
        assert_eq!(RwMode::Write.read_percent(30), 0);
        assert_eq!(RwMode::Rw.read_percent(30), 30);
        assert!(RwMode::RandWrite.is_random() && !RwMode::Rw.is_random());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert!(parse_size("12q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999t").is_err());
    }

    #[test]
    fn validation_refuses_inconsistent_options() {
        let ok = PerfConfig::new("127.0.0.1:4420", "nqn.x");
        ok.validate().unwrap();
        let refuse = |f: &dyn Fn(&mut PerfConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            assert!(c.validate().is_err(), "{c:?}");
        };
        refuse(&|c| c.nqn.clear());
        refuse(&|c| c.block_size = 0);
        refuse(&|c| c.queue_depth = 0);
        refuse(&|c| c.threads = 2);
        refuse(&|c| {
            c.queues = 2;
            c.threads = 2;
            c.cores = vec![0];
        });
        refuse(&|c| c.rwmixread = 101);
        refuse(&|c| c.time = Duration::ZERO);
        refuse(&|c| c.offset = 100);
        refuse(&|c| c.size = Some(512));
    }
}
