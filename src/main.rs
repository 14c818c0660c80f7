//! `rewind`: the appliance's command line.
//!
//! `rewind serve` runs the service (NVMe/TCP target on polled reactors over
//! journaled volumes, management JSON-RPC on `<data-dir>/rewind.sock`);
//! `rewind volume|points|mark|view|read|export|stats|retention` talk to a
//! running service over that socket (see `docs/rpc.md`); `rewind
//! setup-hugepages` reserves 2 MiB pages; `rewind perf` loads an NVMe/TCP
//! target and measures it (see [`rewind::perf`]). Human tables by default,
//! `--json` for scripts. Every failure is one line on stderr and a non-zero
//! exit status (2 for bad arguments, 1 for everything else).

use clap::{Args, Parser, Subcommand};
use rewind::cli::at::parse_at;
use rewind::cli::progress::human_bytes;
use rewind::cli::table::Table;
use rewind::cli::transfer::{self, Piece, TransferError};
use rewind::runtime::IdleMode;
use rewind::service::config::DEFAULT_DATA_DIR;
use rewind::service::rpc::{ClientError, RpcClient};
use rewind::service::run;
use rewind::service::ServiceConfig;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "rewind",
    version,
    about = "Continuous data protection over NVMe/TCP"
)]
struct Cli {
    /// The service's data directory [default: ./rewind-data]; the
    /// management socket is <data-dir>/rewind.sock.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The management socket, when it is not <data-dir>/rewind.sock.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print the result as JSON (the RPC's result object).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service in the foreground (stops on SIGINT/SIGTERM).
    Serve(ServeArgs),
    /// Create, list, inspect and delete volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// List a volume's retained points in time (oldest first).
    Points {
        volume: String,
        /// Only points at or after this time (RFC 3339, -15m, 2h ago).
        #[arg(long, allow_hyphen_values = true)]
        since: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Record a bookmark (a labelled consistency point) on a volume.
    Mark { volume: String, label: String },
    /// Create, list and delete read-only views of a volume at a point.
    #[command(subcommand)]
    View(ViewCommand),
    /// Raw bytes of a volume at a point, to stdout or a file.
    Read {
        volume: String,
        /// The point: a seq, a time (RFC 3339, -15m, 2h ago) or a label [default: now].
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
        /// First block.
        #[arg(long)]
        lba: u64,
        /// Blocks to read.
        #[arg(long)]
        count: u64,
        /// Write the bytes to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A sparse raw image of a volume at a point (losetup -r, mount -o ro).
    Export {
        volume: String,
        /// The point: a seq, a time (RFC 3339, -15m, 2h ago) or a label [default: now].
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
        /// The image file to create (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Let the service write the file (the path is on its machine) instead
        /// of pulling the bytes through the socket.
        #[arg(long)]
        server_side: bool,
    },
    /// A volume's journal fill, sync lag, retention window and pool use.
    Stats { volume: String },
    /// Show or change how long a volume keeps its snapshots.
    Retention {
        volume: String,
        /// Never expire snapshots younger than this (90s, 15m, 7d).
        #[arg(long)]
        keep_at_least: Option<String>,
        /// Keep at most this many snapshot generations (0: no limit).
        #[arg(long)]
        keep_last: Option<u64>,
        /// Expire the oldest while less than this share of undo space is free.
        #[arg(long)]
        min_free_percent: Option<u8>,
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

#[derive(Subcommand, Debug)]
enum VolumeCommand {
    /// Create, format and export a new volume (a file under <data-dir>/volumes).
    Create {
        name: String,
        /// The volume's size (1GiB, 256M, ...); the file takes about 1.7 times this.
        #[arg(long)]
        size: String,
        #[arg(long, default_value_t = 4096)]
        block_size: u32,
    },
    /// Every volume.
    List,
    /// Everything about one volume (sizes chosen at format, points, connect line).
    Info { name: String },
    /// Delete a volume created with `volume create` (its views go with it).
    Delete {
        name: String,
        /// Disconnect connected hosts instead of refusing.
        #[arg(long)]
        force: bool,
        /// Wait this long for connected hosts to disconnect (30s, 5m).
        #[arg(long)]
        wait: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ViewCommand {
    /// Export the volume as it was at a point, as a new read-only namespace.
    Create {
        volume: String,
        /// A seq, a time (RFC 3339, -15m, 2h ago) or a bookmark label.
        #[arg(long, allow_hyphen_values = true)]
        at: String,
    },
    /// Views of one volume, or of all.
    List { volume: Option<String> },
    /// Remove a view namespace.
    Delete { volume: String, nsid: u32 },
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
    /// Configuration file (TOML). Without it: volume vol0 (1 GiB) in the data directory.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cores for the reactors: a list (0,1), ranges (0-3) or a mask (0x3).
    #[arg(long)]
    cores: Option<String>,
    /// Idle behaviour of the reactors: adaptive (default) or busy.
    #[arg(long)]
    idle: Option<String>,
    /// Prometheus endpoint address (default 127.0.0.1:9455, or the config's).
    #[arg(long, conflicts_with = "no_metrics")]
    metrics_address: Option<std::net::SocketAddr>,
    /// Do not serve Prometheus metrics.
    #[arg(long)]
    no_metrics: bool,
}

/// Why a command failed: the one line printed after `rewind: `.
type Failure = String;

fn client_error(e: ClientError) -> Failure {
    e.to_string()
}

fn transfer_error(e: TransferError) -> Failure {
    e.to_string()
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
    let result = run_command(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rewind: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Where the CLI finds the management socket.
fn socket_of(cli: &Cli) -> PathBuf {
    match (&cli.socket, &cli.data_dir) {
        (Some(s), _) => s.clone(),
        (None, Some(d)) => d.join("rewind.sock"),
        (None, None) => Path::new(DEFAULT_DATA_DIR).join("rewind.sock"),
    }
}

fn connect(cli: &Cli) -> Result<RpcClient, Failure> {
    RpcClient::connect(&socket_of(cli)).map_err(client_error)
}

fn call(cli: &Cli, method: &str, params: Value) -> Result<Value, Failure> {
    connect(cli)?.call(method, params).map_err(client_error)
}

/// Calls `method` and shows its result: the JSON with `--json`, otherwise
/// what `human` prints.
fn answer(
    cli: &Cli,
    method: &str,
    params: Value,
    human: impl FnOnce(&Value),
) -> Result<(), Failure> {
    let r = call(cli, method, params)?;
    show(cli, &r, human);
    Ok(())
}

/// Prints `r` as JSON with `--json`, otherwise through `human`.
fn show(cli: &Cli, r: &Value, human: impl FnOnce(&Value)) {
    if cli.json {
        print_json(r);
    } else {
        human(r);
    }
}

/// The `nvme connect` lines of a result's `connect` member, each after `prefix`.
fn print_connect(r: &Value, prefix: &str) {
    for line in r["connect"]["nvme_connect"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("{prefix}{}", s(line));
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `seq 42 2026-11-02T09:41:00Z marker bookmark "before-upgrade"`.
fn point_line(p: &Value) -> String {
    let mut out = format!(
        "seq {} at {} ({}",
        s(&p["seq"]),
        s(&p["time"]),
        s(&p["kind"])
    );
    if !p["marker"].is_null() {
        out.push_str(&format!(", {}", s(&p["marker"])));
    }
    if !p["generation"].is_null() {
        out.push_str(&format!(", generation {}", s(&p["generation"])));
    }
    out.push(')');
    if let Some(l) = p["label"].as_str() {
        out.push_str(&format!(" label {l:?}"));
    }
    out
}

fn at_param(at: Option<&str>) -> Result<Value, Failure> {
    let spec = match at {
        Some(t) => parse_at(t)?,
        None => Default::default(),
    };
    serde_json::to_value(spec).map_err(|e| e.to_string())
}

fn run_command(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Perf(args) => perf(args),
        Command::Serve(args) => serve(&cli, args),
        Command::SetupHugepages { count } => rewind::runtime::setup_hugepages(*count)
            .map(|r| {
                println!(
                    "hugepages (2 MiB): asked for {}, had {}, the kernel granted {} ({} free)",
                    r.requested, r.before, r.granted, r.free
                );
            })
            .map_err(|e| e.to_string()),
        Command::Volume(v) => volume(&cli, v),
        Command::Points {
            volume,
            since,
            limit,
        } => {
            let mut params = json!({"volume": volume, "limit": limit});
            if let Some(t) = since {
                params["since"] = json!(t);
            }
            answer(&cli, "point_list", params, |r| {
                let mut t = Table::new(&["SEQ", "TIME", "KIND", "MARKER", "GENERATION", "LABEL"]);
                for p in r["points"].as_array().into_iter().flatten() {
                    t.row(vec![
                        s(&p["seq"]),
                        s(&p["time"]),
                        s(&p["kind"]),
                        s(&p["marker"]),
                        s(&p["generation"]),
                        s(&p["label"]),
                    ]);
                }
                print!("{}", t.render());
                if let Some(n) = r["omitted"].as_u64().filter(|&n| n > 0) {
                    eprintln!("({n} older points not shown; use --since or --limit)");
                }
            })
        }
        Command::Mark { volume, label } => answer(
            &cli,
            "point_mark",
            json!({"volume": volume, "label": label}),
            |r| println!("marked {volume}: {}", point_line(r)),
        ),
        Command::View(v) => view(&cli, v),
        Command::Read {
            volume,
            at,
            lba,
            count,
            out,
        } => read(&cli, volume, at.as_deref(), *lba, *count, out.as_deref()),
        Command::Export {
            volume,
            at,
            out,
            server_side,
        } => export(&cli, volume, at.as_deref(), out, *server_side),
        Command::Stats { volume } => {
            answer(&cli, "volume_stats", json!({"volume": volume}), print_stats)
        }
        Command::Retention {
            volume,
            keep_at_least,
            keep_last,
            min_free_percent,
        } => {
            let mut params = json!({"volume": volume});
            if let Some(d) = keep_at_least {
                params["keep_at_least"] = json!(d);
            }
            if let Some(n) = keep_last {
                params["keep_last"] = json!(n);
            }
            if let Some(p) = min_free_percent {
                params["min_free_percent"] = json!(p);
            }
            answer(&cli, "retention_set", params, |r| {
                let p = &r["retention"];
                println!(
                    "{volume}: keep at least {} s, keep last {}, min free {}%",
                    s(&p["keep_at_least"]),
                    s(&p["keep_last"]),
                    s(&p["min_free_percent"])
                );
            })
        }
    }
}

fn volume(cli: &Cli, cmd: &VolumeCommand) -> Result<(), Failure> {
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            block_size,
        } => answer(
            cli,
            "volume_create",
            json!({"name": name, "size": size, "block_size": block_size}),
            |r| {
                println!(
                    "created volume {name}: {} in {}-byte blocks, file {}",
                    human_bytes(r["size_bytes"].as_u64().unwrap_or(0)),
                    s(&r["block_size"]),
                    s(&r["device"])
                );
                print_connect(r, "");
            },
        ),
        VolumeCommand::List => answer(cli, "volume_list", json!({}), |r| {
            let mut t = Table::new(&[
                "NAME", "STATE", "ORIGIN", "SIZE", "BLOCK", "JOURNAL", "VIEWS", "HOSTS", "NQN",
            ]);
            for v in r["volumes"].as_array().into_iter().flatten() {
                t.row(vec![
                    s(&v["name"]),
                    s(&v["state"]),
                    s(&v["origin"]),
                    human_bytes(v["size_bytes"].as_u64().unwrap_or(0)),
                    s(&v["block_size"]),
                    s(&v["journal"]),
                    s(&v["views"]),
                    s(&v["hosts"]),
                    s(&v["nqn"]),
                ]);
            }
            print!("{}", t.render());
        }),
        VolumeCommand::Info { name } => answer(cli, "volume_info", json!({"name": name}), |r| {
            let size = human_bytes(r["size_bytes"].as_u64().unwrap_or(0));
            println!(
                "volume      {name} ({}, {})",
                s(&r["state"]),
                s(&r["origin"])
            );
            println!("size        {size} in {}-byte blocks", s(&r["block_size"]));
            println!(
                "device      {} ({} bytes)",
                s(&r["device"]),
                s(&r["device_bytes"])
            );
            println!("uuid        {}", s(&r["uuid"]));
            println!("nqn         {}", s(&r["nqn"]));
            let g = &r["geometry"];
            if !g.is_null() {
                println!(
                    "geometry    {} writer ring(s) of {} descriptor + {} data blocks; backward journal {} descriptor + {} data blocks",
                    s(&g["rings"]),
                    s(&g["ring_desc_blocks"]),
                    s(&g["ring_data_blocks"]),
                    s(&g["backward_desc_blocks"]),
                    s(&g["backward_data_blocks"])
                );
            }
            if !r["oldest_point"].is_null() {
                println!("oldest      {}", point_line(&r["oldest_point"]));
                println!("newest      {}", point_line(&r["newest_point"]));
            }
            println!("views       {}, hosts {}", s(&r["views"]), s(&r["hosts"]));
            print_connect(r, "connect     ");
        }),
        VolumeCommand::Delete { name, force, wait } => {
            let wait_s = match wait {
                Some(w) => rewind::service::time_spec::parse_duration(w)
                    .map_err(|e| format!("--wait: {e}"))?
                    .as_secs_f64(),
                None => 0.0,
            };
            let mut client = connect(cli)?;
            let r = client
                .call_with_timeout(
                    "volume_delete",
                    json!({"name": name, "force": force, "wait_s": wait_s}),
                    Some(Duration::from_secs_f64(wait_s + 120.0)),
                )
                .map_err(client_error)?;
            show(cli, &r, |r| {
                println!(
                    "deleted volume {name} ({} view(s) removed, {} host(s) disconnected)",
                    s(&r["views_removed"]),
                    s(&r["hosts_disconnected"])
                );
            });
            Ok(())
        }
    }
}

fn view(cli: &Cli, cmd: &ViewCommand) -> Result<(), Failure> {
    match cmd {
        ViewCommand::Create { volume, at } => {
            let at = at_param(Some(at))?;
            answer(
                cli,
                "view_create",
                json!({"volume": volume, "at": at}),
                |r| {
                    println!("view of {volume}: namespace {}", s(&r["nsid"]));
                    println!("asked for   {}", s(&r["requested"]));
                    println!("resolved to {}", point_line(&r["point"]));
                    print_connect(r, "");
                },
            )
        }
        ViewCommand::List { volume } => {
            let params = match volume {
                Some(v) => json!({"volume": v}),
                None => json!({}),
            };
            answer(cli, "view_list", params, |r| {
                let mut t =
                    Table::new(&["VOLUME", "NSID", "SEQ", "TIME", "KIND", "LABEL", "CREATED"]);
                for v in r["views"].as_array().into_iter().flatten() {
                    t.row(vec![
                        s(&v["volume"]),
                        s(&v["nsid"]),
                        s(&v["point"]["seq"]),
                        s(&v["point"]["time"]),
                        s(&v["point"]["kind"]),
                        s(&v["point"]["label"]),
                        s(&v["created"]),
                    ]);
                }
                print!("{}", t.render());
            })
        }
        ViewCommand::Delete { volume, nsid } => answer(
            cli,
            "view_delete",
            json!({"volume": volume, "nsid": nsid}),
            |_| println!("removed view {nsid} of {volume}"),
        ),
    }
}

fn read(
    cli: &Cli,
    volume: &str,
    at: Option<&str>,
    lba: u64,
    count: u64,
    out: Option<&Path>,
) -> Result<(), Failure> {
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    let spec = match at {
        Some(t) => parse_at(t)?,
        None => Default::default(),
    };
    let mut client = connect(cli)?;
    let info = client
        .call("volume_info", json!({"name": volume}))
        .map_err(client_error)?;
    let bs = info["block_size"]
        .as_u64()
        .and_then(|b| u32::try_from(b).ok())
        .ok_or_else(|| format!("volume {volume:?}: volume_info gave no block size"))?;
    let mut file = match out {
        Some(p) => Some(
            std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let mut collected: Vec<u8> = Vec::new();
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let point = transfer::pull(&mut client, volume, &spec, (lba, count, bs), |piece| {
        let zeroes;
        let bytes: &[u8] = match piece {
            Piece::Bytes(b) => b,
            Piece::Zeroes(n) => {
                zeroes = vec![0u8; n as usize];
                &zeroes
            }
        };
        let written = match (&mut file, cli.json) {
            (_, true) => {
                collected.extend_from_slice(bytes);
                Ok(())
            }
            (Some(f), false) => f.write_all(bytes),
            (None, false) => stdout.write_all(bytes),
        };
        written.map_err(|e| TransferError::Other(format!("writing the bytes: {e}")))
    })
    .map_err(|e| {
        if let Some(p) = out {
            let _ = std::fs::remove_file(p);
        }
        transfer_error(e)
    })?;
    if cli.json {
        use base64::Engine as _;
        print_json(&json!({
            "volume": volume,
            "point": point,
            "lba": lba,
            "count": count,
            "block_size": bs,
            "data": base64::engine::general_purpose::STANDARD.encode(&collected),
        }));
    } else {
        stdout
            .flush()
            .map_err(|e| format!("writing the bytes: {e}"))?;
        if let Some(f) = file {
            f.sync_all().map_err(|e| format!("writing the file: {e}"))?;
        }
        let p = serde_json::to_value(&point).unwrap_or_default();
        eprintln!(
            "read {count} block(s) at lba {lba} of {volume}: {}",
            point_line(&p)
        );
    }
    Ok(())
}

fn export(
    cli: &Cli,
    volume: &str,
    at: Option<&str>,
    out: &Path,
    server_side: bool,
) -> Result<(), Failure> {
    let (point, result) = if server_side {
        let path = std::path::absolute(out).map_err(|e| format!("--out: {e}"))?;
        let mut client = connect(cli)?;
        let r = client
            .call_with_timeout(
                "export_image",
                json!({"volume": volume, "at": at_param(at)?, "path": path}),
                None,
            )
            .map_err(client_error)?;
        (r["point"].clone(), r)
    } else {
        let spec = match at {
            Some(t) => parse_at(t)?,
            None => Default::default(),
        };
        let mut client = connect(cli)?;
        let (point, summary) =
            transfer::export(&mut client, volume, &spec, out).map_err(transfer_error)?;
        let point = serde_json::to_value(&point).unwrap_or_default();
        let r = json!({
            "volume": volume,
            "point": point,
            "path": summary.path,
            "bytes": summary.bytes,
            "data_bytes": summary.data_bytes,
            "sha256": summary.sha256,
        });
        (point, r)
    };
    show(cli, &result, |r| {
        println!("exported {volume} at {}", point_line(&point));
        println!(
            "image  {} ({}, {} written, the rest sparse)",
            s(&r["path"]),
            human_bytes(r["bytes"].as_u64().unwrap_or(0)),
            human_bytes(r["data_bytes"].as_u64().unwrap_or(0))
        );
        println!("sha256 {}", s(&r["sha256"]));
    });
    Ok(())
}

fn print_stats(r: &Value) {
    let seq = &r["seq"];
    println!(
        "seq           next {}, stable {}, mirror {}, oldest {}",
        s(&seq["next"]),
        s(&seq["stable"]),
        s(&seq["mirror"]),
        s(&seq["oldest"])
    );
    println!(
        "sync lag      {} write(s), {:.1} s",
        s(&r["sync_lag"]["seq"]),
        r["sync_lag"]["seconds"].as_f64().unwrap_or(0.0)
    );
    let j = &r["journal"];
    println!(
        "journal       forward {}% full; backward {}% descriptors, {}% data",
        s(&j["forward_fill_percent"]),
        s(&j["backward_descriptor_fill_percent"]),
        s(&j["backward_data_fill_percent"])
    );
    let ret = &r["retention"];
    if !ret["oldest"].is_null() {
        println!("oldest point  {}", point_line(&ret["oldest"]));
    }
    if !ret["newest"].is_null() {
        println!("newest point  {}", point_line(&ret["newest"]));
    }
    println!(
        "window        {:.1} s over {} snapshot generation(s)",
        ret["window_seconds"].as_f64().unwrap_or(0.0),
        s(&ret["generations"])
    );
    let pts = &r["points"];
    match pts["per_second"].as_f64() {
        Some(rate) => println!(
            "points        {} in all; {rate:.1}/s over the last {:.1} s",
            s(&pts["total"]),
            pts["measured_over_seconds"].as_f64().unwrap_or(0.0)
        ),
        None => println!(
            "points        {} in all (run again for a rate)",
            s(&pts["total"])
        ),
    }
    for (label, op) in [("reads", "read"), ("writes", "write")] {
        let t = &r["io"][op];
        let rate = t["per_second"]
            .as_f64()
            .map_or_else(String::new, |v| format!(", {v:.0}/s"));
        let latency = match (
            t["mean_latency_us"].as_f64(),
            t["p99_latency_us_at_most"].as_u64(),
        ) {
            (Some(mean), Some(p99)) => format!(", latency mean {mean:.1} µs, p99 <= {p99} µs"),
            (Some(mean), None) => format!(", latency mean {mean:.1} µs"),
            _ => String::new(),
        };
        println!(
            "{label:<13} {} ({} errors){rate}{latency}",
            s(&t["ops"]),
            s(&t["errors"])
        );
    }
    println!("hosts, views  {}, {}", s(&r["hosts"]), s(&r["views"]));
    let h = &r["hugepages"];
    println!(
        "hugepages     {} of {} chunks mapped ({} hugepage, {} fallback, {} cached)",
        h["chunks_hugepage"].as_u64().unwrap_or(0) + h["chunks_fallback"].as_u64().unwrap_or(0),
        s(&h["chunks_max"]),
        s(&h["chunks_hugepage"]),
        s(&h["chunks_fallback"]),
        s(&h["chunks_cached"])
    );
    if !r["failed"].is_null() {
        println!("FAILED        {}", s(&r["failed"]));
    }
}

fn seconds(flag: &str, s: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(s)
        .map_err(|_| format!("{flag} {s}: a non-negative number of seconds"))
}

fn perf(a: &PerfArgs) -> Result<(), String> {
    use rewind::perf::{parse_size, PerfConfig};
    let host = if a.addr.contains(':') && !a.addr.starts_with('[') {
        format!("[{}]", a.addr)
    } else {
        a.addr.clone()
    };
    let mut cfg = PerfConfig::new(format!("{host}:{}", a.port), a.nqn.clone());
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

fn serve(cli: &Cli, args: &ServeArgs) -> Result<(), String> {
    let signals = block_signals();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = match &args.config {
        Some(path) => ServiceConfig::load(path).map_err(|e| e.to_string())?,
        None => {
            let dir = cli
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            ServiceConfig::zero_config(&dir)
        }
    };
    if let Some(dir) = &cli.data_dir {
        config.service.data_dir = dir.clone();
    }
    if let Some(socket) = &cli.socket {
        config.service.rpc_socket = Some(socket.clone());
    }
    if args.no_metrics {
        config.service.metrics = false;
    }
    if let Some(addr) = args.metrics_address {
        config.service.metrics_address = addr;
    }
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
    for line in running.ready_lines() {
        println!("ready: {line}");
    }
    let _ = std::io::stdout().flush();
    let sig = wait_for_signal(&signals);
    tracing::info!(signal = sig, "stopping");
    running.stop()
}
