//! `rewind`: the appliance's command line.
//!
//! `rewind serve` runs the service (NVMe/TCP target on polled reactors over
//! journaled volumes); `rewind view add|remove` and `rewind mark` talk to a
//! running service over its control socket; `rewind setup-hugepages`
//! reserves 2 MiB pages; `rewind perf` loads an NVMe/TCP target and
//! measures it (see [`rewind::perf`]). Every failure is one line on stderr and a non-zero
//! exit status.

use clap::{Args, Parser, Subcommand};
use rewind::runtime::IdleMode;
use rewind::service::control;
use rewind::service::run;
use rewind::service::ServiceConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "rewind",
    version,
    about = "Continuous data protection over NVMe/TCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service in the foreground (stops on SIGINT/SIGTERM).
    Serve(ServeArgs),
    /// Add or remove a read-only view of a volume at a point in time.
    #[command(subcommand)]
    View(ViewCommand),
    /// Record a bookmark (a labelled consistency point) on a volume.
    Mark {
        #[command(flatten)]
        at: ServiceRef,
        #[arg(long)]
        volume: String,
        #[arg(long)]
        label: String,
    },
    /// Print the running service's statistics (reactors, hugepage pool, volumes) as JSON.
    Stats {
        #[command(flatten)]
        at: ServiceRef,
    },
    /// Reserve 2 MiB hugepages (root).
    SetupHugepages {
        #[arg(long)]
        count: u64,
    },
    /// Load an NVMe/TCP target and report IOPS, MiB/s and latency
    /// (like spdk_nvme_perf). Exits non-zero if any I/O failed.
    Perf(PerfArgs),
}

#[derive(Args, Debug)]
struct PerfArgs {
    /// Target address (IPv4, IPv6 or host name).
    #[arg(long, default_value = "127.0.0.1")]
    addr: String,
    #[arg(long, default_value_t = 4420)]
    port: u16,
    /// Subsystem NQN.
    #[arg(long)]
    nqn: String,
    #[arg(long, default_value_t = 1)]
    nsid: u32,
    /// Bytes per I/O (4096, 64k, 1M, ...).
    #[arg(long, default_value = "4096")]
    bs: String,
    /// Commands in flight per queue.
    #[arg(long, default_value_t = 32)]
    qd: u16,
    /// I/O queues (TCP connections), dealt round-robin to the threads.
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// Worker threads (not pinned); default: one per --cores entry, else 1.
    #[arg(long)]
    threads: Option<usize>,
    /// Pin one worker thread per listed core: 0,1 or 2-3 or a mask 0x3.
    #[arg(long)]
    cores: Option<String>,
    /// read, write, randread, randwrite, rw or randrw.
    #[arg(long, default_value = "randread")]
    rw: String,
    /// Percentage of reads for rw and randrw.
    #[arg(long, default_value_t = 50)]
    rwmixread: u8,
    /// Measured seconds [default: 10].
    #[arg(long, conflicts_with = "verify")]
    time: Option<f64>,
    /// Seconds run before measuring (excluded from the statistics).
    #[arg(long, conflicts_with = "verify")]
    warmup: Option<f64>,
    /// Bytes of the namespace to use from --offset [default: to its end].
    #[arg(long)]
    size: Option<String>,
    /// First byte of the range used.
    #[arg(long, default_value = "0")]
    offset: String,
    #[arg(long)]
    hdr_digest: bool,
    #[arg(long)]
    data_digest: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also print the IOPS of each second (min and median too).
    #[arg(long)]
    per_second: bool,
    /// Instead of a timed run: write a pattern over the range, read it back
    /// and compare (bound the range with --size).
    #[arg(long)]
    verify: bool,
    /// Seed of the offsets, the read/write choice and the data.
    #[arg(long)]
    seed: Option<u64>,
    /// Connect and command timeout, seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Configuration file (TOML). Without it: volume vol0 (1 GiB) in ./rewind-data.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cores for the reactors: a list (0,1), ranges (0-3) or a mask (0x3).
    #[arg(long)]
    cores: Option<String>,
    /// Idle behaviour of the reactors: adaptive (default) or busy.
    #[arg(long)]
    idle: Option<String>,
}

#[derive(Args, Debug)]
struct ServiceRef {
    /// The running service's configuration file (for its control socket).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl ServiceRef {
    fn socket(&self) -> Result<PathBuf, String> {
        Ok(match &self.config {
            Some(path) => {
                ServiceConfig::load(path)
                    .map_err(|e| e.to_string())?
                    .service
                    .control_socket
            }
            None => {
                ServiceConfig::zero_config(Path::new("rewind-data"))
                    .service
                    .control_socket
            }
        })
    }
}

#[derive(Subcommand, Debug)]
enum ViewCommand {
    /// Export the volume as it was at a point; prints the new namespace ID.
    Add {
        #[command(flatten)]
        at: ServiceRef,
        #[arg(long)]
        volume: String,
        /// Wall-clock time, nanoseconds since the Unix epoch.
        #[arg(long, conflicts_with_all = ["seq", "label"])]
        at_ns: Option<u64>,
        /// A point's sequence number.
        #[arg(long, conflicts_with = "label")]
        seq: Option<u64>,
        /// A bookmark label.
        #[arg(long)]
        label: Option<String>,
    },
    /// Remove a view namespace.
    Remove {
        #[command(flatten)]
        at: ServiceRef,
        #[arg(long)]
        volume: String,
        #[arg(long)]
        nsid: u32,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || matches!(
                    e.kind(),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                )
            {
                e.exit();
            }
            // One line: clap's first, without its usage block.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("rewind: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Perf(args) => perf(args),
        Command::Serve(args) => serve(args),
        Command::View(ViewCommand::Add {
            at,
            volume,
            at_ns,
            seq,
            label,
        }) => {
            let point = match (at_ns, seq, label) {
                (Some(t), None, None) => Ok(format!("time {t}")),
                (None, Some(s), None) => Ok(format!("seq {s}")),
                (None, None, Some(l)) if l.is_empty() || l.contains(char::is_whitespace) => {
                    Err("a label is one word".to_string())
                }
                (None, None, Some(l)) => Ok(format!("label {l}")),
                _ => Err("name the point with --at-ns, --seq or --label".to_string()),
            };
            point.and_then(|point| {
                let socket = at.socket()?;
                let reply = control::request(&socket, &format!("view-add {volume} {point}"))?;
                let nsid = reply.split_whitespace().next().unwrap_or_default();
                println!("{nsid}");
                Ok(())
            })
        }
        Command::View(ViewCommand::Remove { at, volume, nsid }) => at.socket().and_then(|s| {
            control::request(&s, &format!("view-remove {volume} {nsid}")).map(|_| ())
        }),
        Command::Mark { at, volume, label } => at.socket().and_then(|s| {
            let reply = control::request(&s, &format!("mark {volume} {label}"))?;
            println!("{reply}");
            Ok(())
        }),
        Command::Stats { at } => at.socket().and_then(|s| {
            println!("{}", control::request(&s, "stats")?);
            Ok(())
        }),
        Command::SetupHugepages { count } => rewind::runtime::setup_hugepages(count)
            .map(|r| {
                println!(
                    "hugepages (2 MiB): asked for {}, had {}, the kernel granted {} ({} free)",
                    r.requested, r.before, r.granted, r.free
                );
            })
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rewind: {message}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(flag: &str, s: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(s)
        .map_err(|_| format!("{flag} {s}: a non-negative number of seconds"))
}

fn perf(a: PerfArgs) -> Result<(), String> {
    use rewind::perf::{parse_size, PerfConfig};
    let host = if a.addr.contains(':') && !a.addr.starts_with('[') {
        format!("[{}]", a.addr)
    } else {
        a.addr.clone()
    };
    let mut cfg = PerfConfig::new(format!("{host}:{}", a.port), a.nqn);
    cfg.nsid = a.nsid;
    let bs = parse_size(&a.bs).map_err(|e| e.to_string())?;
    cfg.block_size = u32::try_from(bs).map_err(|_| format!("--bs {bs} is too large"))?;
    cfg.queue_depth = a.qd;
    cfg.queues = a.queues;
    if let Some(text) = &a.cores {
        cfg.cores = rewind::runtime::resolve_cores(text).map_err(|e| format!("--cores: {e}"))?;
    }
    cfg.threads = a.threads.unwrap_or(if cfg.cores.is_empty() {
        1
    } else {
        cfg.cores.len()
    });
    cfg.rw =
        a.rw.parse()
            .map_err(|e: rewind::perf::PerfError| e.to_string())?;
    cfg.rwmixread = a.rwmixread;
    cfg.time = seconds("--time", a.time.unwrap_or(10.0))?;
    cfg.warmup = seconds("--warmup", a.warmup.unwrap_or(0.0))?;
    cfg.size = a
        .size
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| e.to_string())?;
    cfg.offset = parse_size(&a.offset).map_err(|e| e.to_string())?;
    cfg.hdr_digest = a.hdr_digest;
    cfg.data_digest = a.data_digest;
    cfg.verify = a.verify;
    if let Some(seed) = a.seed {
        cfg.seed = seed;
    }
    cfg.timeout = seconds("--timeout", a.timeout)?;
    if cfg.timeout.is_zero() {
        return Err("--timeout must be positive".into());
    }
    let report = rewind::perf::run(&cfg).map_err(|e| format!("perf: {e}"))?;
    if a.json {
        println!("{}", report.to_json(a.per_second));
    } else {
        print!("{}", report.to_table(a.per_second));
    }
    match report.error_total() {
        0 => Ok(()),
        n => Err(format!("perf: {n} errors (see the report)")),
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread it
/// starts afterwards); [`wait_for_signal`] then takes them synchronously.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is a valid, initialised signal set.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let signals = block_signals();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match &args.config {
        Some(path) => ServiceConfig::load(path).map_err(|e| e.to_string())?,
        None => {
            let dir = Path::new("rewind-data");
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            ServiceConfig::zero_config(dir)
        }
    };
    let cores = match (&args.cores, &config.service.cores) {
        (Some(text), _) => rewind::runtime::resolve_cores(text).map_err(|e| e.to_string())?,
        (None, Some(list)) => list.clone(),
        (None, None) => vec![0],
    };
    let idle = match args.idle.as_deref().or(config.service.idle.as_deref()) {
        None | Some("adaptive") => IdleMode::default(),
        Some("busy") => IdleMode::Busy,
        Some(other) => return Err(format!("--idle {other:?}: use adaptive or busy")),
    };
    let running = run::start(&config, cores, idle)?;
    for line in running.connect_lines() {
        println!("ready: {line}");
    }
    let sig = wait_for_signal(&signals);
    tracing::info!(signal = sig, "stopping");
    running.stop()
}
