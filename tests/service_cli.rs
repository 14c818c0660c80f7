//! The appliance as people use it: the `rewind serve` binary on a temporary
//! data directory (a free loopback port, adaptive reactors, killed when the
//! test ends), driven only through the `rewind` CLI binary and the JSON-RPC
//! socket, with the project's NVMe/TCP host library as the host:
//!
//! - create a volume, write, mark, write more, list points, a view at the
//!   mark read through NVMe/TCP, `rewind read` and `rewind export` of the old
//!   bytes (client-pulled and server-side), view list/delete, stats,
//!   retention, and deleting a volume with a host connected (refused, waited
//!   for, and a view refused while it is being deleted);
//! - every bad input: unknown volume, times before retention, in the future
//!   and malformed, a full disk, a configured volume, a second serve on the
//!   same data directory, a live or bogus socket path, malformed JSON-RPC;
//! - created volumes surviving a clean restart and a crash (SIGKILL: the
//!   stale socket is replaced).

use rewind::nvmf::host::{ConnectOptions, Controller};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod nvmf_common;
use nvmf_common::pattern;

const BS: usize = 4096;
const BIN: &str = env!("CARGO_BIN_EXE_rewind");

/// A `rewind serve` child process; killed when dropped.
struct Service {
    child: Child,
    data: PathBuf,
    addr: SocketAddr,
    /// The Prometheus endpoint.
    metrics: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a configuration for data directory `data`: a free loopback port,
/// and the volumes of `extra` (TOML) from the configuration file.
fn config(dir: &Path, data: &Path, extra: &str) -> PathBuf {
    let path = dir.join(format!(
        "rewind-{}.toml",
        data.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &path,
        format!(
            "[service]\ndata_dir = {:?}\nmetrics_address = \"127.0.0.1:0\"\n\n[[listeners]]\naddress = \"127.0.0.1\"\nport = 0\n{extra}",
            data.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// Starts `rewind serve --config config`; returns once its management
/// socket is ready (or panics with its log after 60 s).
fn serve(config: &Path, data: &Path) -> Service {
    let mut child = Command::new(BIN)
        .args(["serve", "--idle", "adaptive", "--cores", "0", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        // Keep the pipe drained; the log is read only on failure.
        let _ = std::io::copy(&mut BufReader::new(stderr), &mut std::io::sink());
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut addr = None;
    let mut metrics = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("ready: listening on ") {
                    addr = rest.split(' ').next().and_then(|a| a.parse().ok());
                }
                if let Some(rest) = line.strip_prefix("ready: metrics http://") {
                    metrics = rest.split('/').next().and_then(|a| a.parse().ok());
                }
                if line.starts_with("ready: management socket") {
                    break;
                }
            }
            Err(_) => {
                let status = child.try_wait().unwrap();
                let _ = child.kill();
                panic!("rewind serve did not become ready (exit {status:?})");
            }
        }
    }
    Service {
        child,
        data: data.to_path_buf(),
        addr: addr.expect("a listening line"),
        metrics: metrics.expect("a metrics line"),
    }
}

/// `GET path` from the metrics endpoint: (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut c, &mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the sample `name{labels}` on a metrics page.
fn sample(page: &str, name_and_labels: &str) -> f64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in:\n{page}"))
}

impl Service {
    fn socket(&self) -> PathBuf {
        self.data.join("rewind.sock")
    }

    /// Runs `rewind --data-dir <data> args...`.
    fn cli(&self, args: &[&str]) -> Output {
        cli_in(&self.data, args)
    }

    /// Runs the CLI with `--json`; asserts success and parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_slice(&ok(&out, args)).unwrap()
    }

    /// Stops with SIGTERM and waits for a clean exit.
    fn stop(mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "rewind serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "rewind serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process as a crash would (no cleanup at all).
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn cli_in(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// Asserts the command succeeded; returns its stdout.
fn ok(out: &Output, what: &[&str]) -> Vec<u8> {
    assert!(
        out.status.success(),
        "rewind {what:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.clone()
}

/// Asserts the command failed with exit status 1 and one line on stderr
/// containing `needle`; returns that line.
fn refused(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal containing {needle:?}; stdout {:?}, stderr {err:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("rewind: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    err
}

fn host(s: &Service, nqn: &str) -> Controller {
    let opts = ConnectOptions {
        io_queues: 1,
        queue_depth: 16,
        timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    Controller::connect(s.addr, nqn, &opts).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One raw JSON-RPC exchange on the socket.
fn raw_rpc(socket: &Path, line: &str) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    writeln!(s, "{line}").unwrap();
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap()
}

fn volume_state(s: &Service, name: &str) -> Option<String> {
    let list = s.json(&["volume", "list"]);
    list["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .map(|v| v["state"].as_str().unwrap().to_string())
}

#[test]
fn time_travel_through_the_cli_the_socket_and_nvme_tcp() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = tmp.path().join("data");
    let s = serve(&config(tmp.path(), &data, ""), &data);

    let created = s.json(&["volume", "create", "db", "--size", "64MiB"]);
    assert_eq!(created["state"], "active");
    assert_eq!(created["size_bytes"], 64 << 20);
    let nqn = created["nqn"].as_str().unwrap().to_string();
    assert_eq!(nqn, "nqn.2026-11.io.rewind:db");
    let connect = created["connect"]["nvme_connect"][0].as_str().unwrap();
    assert!(
        connect.ends_with(&format!("-s {} -n {nqn}", s.addr.port())),
        "{connect}"
    );
    assert!(data.join("volumes/db.img").exists());

    // Write, mark, write more, through NVMe/TCP.
    let mut c = host(&s, &nqn);
    let old = pattern(1, 8 * BS);
    c.write(1, 1, 64, 8, &old).unwrap();
    let mark = s.json(&["mark", "db", "before"]);
    assert_eq!(mark["kind"], "marker");
    assert_eq!(mark["marker"], "bookmark");
    let new = pattern(2, 8 * BS);
    c.write(1, 1, 64, 8, &new).unwrap();
    c.flush(1, 1).unwrap();

    let points = s.json(&["points", "db"]);
    let list = points["points"].as_array().unwrap();
    assert!(list
        .iter()
        .any(|p| p["label"] == "before" && p["seq"] == mark["seq"]));
    assert!(list.iter().any(|p| p["kind"] == "write"));
    let seqs: Vec<u64> = list.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    let human = String::from_utf8(ok(&s.cli(&["points", "db"]), &["points"])).unwrap();
    assert!(
        human.starts_with("SEQ") && human.contains("before"),
        "{human}"
    );
    let recent = s.json(&["points", "db", "--since", "-1h", "--limit", "2"]);
    assert_eq!(recent["points"].as_array().unwrap().len(), 2);
    assert!(recent["omitted"].as_u64().unwrap() >= 1);

    // The Prometheus endpoint counts what the host did.
    let (status, page) = http_get(s.metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    let w = "{volume=\"db\",op=\"write\"}";
    assert_eq!(
        sample(&page, &format!("rewind_io_operations_total{w}")),
        2.0
    );
    assert_eq!(
        sample(&page, &format!("rewind_io_bytes_total{w}")),
        (2 * 8 * BS) as f64
    );
    assert_eq!(sample(&page, &format!("rewind_io_errors_total{w}")), 0.0);
    let inf = "{volume=\"db\",op=\"write\",le=\"+Inf\"}";
    assert_eq!(
        sample(&page, &format!("rewind_io_latency_seconds_bucket{inf}")),
        2.0
    );
    assert_eq!(sample(&page, "rewind_volume_journaled{volume=\"db\"}"), 1.0);
    assert!(sample(&page, "rewind_points_total{volume=\"db\"}") >= 3.0);
    assert!(page.contains("# TYPE rewind_io_latency_seconds histogram"));
    assert!(http_get(s.metrics, "/nope").0.contains("404"));

    // A view at the mark: the old bytes through NVMe/TCP, next to the new.
    let view = s.json(&["view", "create", "db", "--at", "before"]);
    assert_eq!(view["nsid"], 2);
    assert_eq!(view["point"]["seq"], mark["seq"]);
    assert_eq!(view["point"]["label"], "before");
    assert_eq!(view["requested"], "label before");
    let text = String::from_utf8(ok(
        &s.cli(&["view", "create", "db", "--at", &mark["seq"].to_string()]),
        &["view create"],
    ))
    .unwrap();
    assert!(
        text.contains("namespace 3") && text.contains("nvme connect"),
        "{text}"
    );
    assert_eq!(c.active_namespaces().unwrap(), vec![1, 2, 3]);
    let mut back = vec![0u8; 8 * BS];
    c.read(1, 2, 64, 8, &mut back).unwrap();
    assert_eq!(back, old, "the view serves the old bytes");
    c.read(1, 1, 64, 8, &mut back).unwrap();
    assert_eq!(back, new, "namespace 1 serves the new bytes");

    // rewind read: to a file and to stdout.
    let out = tmp.path().join("old.bin");
    let o = s.cli(&[
        "read",
        "db",
        "--at",
        "before",
        "--lba",
        "64",
        "--count",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o, &["read"]);
    assert_eq!(std::fs::read(&out).unwrap(), old);
    let o = s.cli(&["read", "db", "--lba", "64", "--count", "8"]);
    assert_eq!(ok(&o, &["read"]), new, "now, to stdout");
    assert!(String::from_utf8_lossy(&o.stderr).contains("seq"));

    // rewind export at the mark: the image is what was written, sparse.
    let image = tmp.path().join("db.raw");
    let exported = s.json(&[
        "export",
        "db",
        "--at",
        "before",
        "--out",
        image.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&image).unwrap();
    assert_eq!(bytes.len(), 64 << 20);
    let mut expected = vec![0u8; 64 << 20];
    expected[64 * BS..72 * BS].copy_from_slice(&old);
    assert!(
        bytes == expected,
        "the image holds exactly the marked state"
    );
    assert_eq!(exported["sha256"], sha256_hex(&expected));
    assert_eq!(exported["point"]["seq"], mark["seq"]);
    assert_eq!(exported["data_bytes"], 8 * BS);
    let allocated = std::fs::metadata(&image).unwrap().blocks() * 512;
    assert!(allocated < 1 << 20, "sparse: {allocated} bytes allocated");
    let server_image = tmp.path().join("db-server.raw");
    let server = s.json(&[
        "export",
        "db",
        "--at",
        "before",
        "--out",
        server_image.to_str().unwrap(),
        "--server-side",
    ]);
    assert_eq!(server["sha256"], exported["sha256"]);
    assert_eq!(std::fs::read(&server_image).unwrap(), expected);
    refused(
        &s.cli(&["export", "db", "--out", image.to_str().unwrap()]),
        "already exists",
    );

    // Views listed and removed.
    let views = s.json(&["view", "list", "db"]);
    assert_eq!(views["views"].as_array().unwrap().len(), 2);
    ok(&s.cli(&["view", "delete", "db", "3"]), &["view delete"]);
    assert_eq!(c.active_namespaces().unwrap(), vec![1, 2]);

    // Stats and retention.
    let stats = s.json(&["stats", "db"]);
    assert!(stats["seq"]["next"].as_u64().unwrap() > mark["seq"].as_u64().unwrap());
    assert!(stats["journal"]["forward_fill_percent"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["hosts"], 1);
    assert_eq!(stats["views"], 1);
    assert!(stats["hugepages"]["chunks_max"].as_u64().unwrap() > 0);
    assert!(stats["retention"]["oldest"]["seq"].as_u64().unwrap() <= mark["seq"].as_u64().unwrap());
    assert!(!stats["sync_lag"]["seconds"].is_null());
    let w = &stats["io"]["write"];
    assert_eq!(
        (w["ops"].as_u64(), w["errors"].as_u64()),
        (Some(2), Some(0)),
        "{stats}"
    );
    assert_eq!(w["bytes"].as_u64(), Some((2 * 8 * BS) as u64));
    assert!(w["mean_latency_us"].as_f64().unwrap() > 0.0);
    assert!(w["p99_latency_us_at_most"].as_u64().unwrap() >= 1);
    assert!(
        stats["io"]["read"]["ops"].as_u64().unwrap() > 0,
        "reads of both namespaces count"
    );
    let again = s.json(&["stats", "db"]);
    assert!(again["points"]["per_second"].is_number(), "{again}");
    assert!(again["io"]["write"]["per_second"].is_number(), "{again}");
    let human = String::from_utf8(ok(&s.cli(&["stats", "db"]), &["stats"])).unwrap();
    assert!(
        human.contains("sync lag")
            && human.contains("hugepages")
            && human.contains("writes        2 (0 errors)"),
        "{human}"
    );
    let r = s.json(&[
        "retention",
        "db",
        "--keep-at-least",
        "1h",
        "--keep-last",
        "10",
    ]);
    assert_eq!(r["retention"]["keep_at_least"], 3600.0);
    assert_eq!(r["retention"]["keep_last"], 10);
    let info = s.json(&["volume", "info", "db"]);
    assert_eq!(info["retention"]["keep_last"], 10);
    assert_eq!(info["geometry"]["block_size"], 4096);

    // Deleting with a host connected: refused and nothing changes ...
    refused(&s.cli(&["volume", "delete", "db"]), "connected host");
    assert_eq!(volume_state(&s, "db").as_deref(), Some("active"));
    refused(
        &s.cli(&["volume", "delete", "db", "--wait", "1s"]),
        "after waiting",
    );
    assert_eq!(volume_state(&s, "db").as_deref(), Some("active"));
    c.read(1, 2, 64, 8, &mut back).unwrap();
    assert_eq!(back, old, "the view survived the refused delete");

    // ... waited for: while it waits, the volume is "deleting" and refuses
    // views and marks; once the host leaves it is gone, file and all.
    let deleting = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["volume", "delete", "db", "--wait", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while volume_state(&s, "db").as_deref() != Some("deleting") {
        assert!(
            Instant::now() < deadline,
            "the volume never showed as deleting"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    refused(
        &s.cli(&["view", "create", "db", "--at", "before"]),
        "being deleted",
    );
    refused(&s.cli(&["mark", "db", "late"]), "being deleted");
    c.disconnect().unwrap();
    let out = deleting.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("deleted volume db (1 view(s) removed"),
        "{said}"
    );
    assert_eq!(volume_state(&s, "db"), None);
    assert!(!data.join("volumes/db.img").exists());
    refused(&s.cli(&["points", "db"]), "no volume named \"db\"");

    // The name is free again; --force disconnects a connected host.
    s.json(&["volume", "create", "db", "--size", "16MiB"]);
    let mut c = host(&s, &nqn);
    c.write(1, 1, 0, 8, &old).unwrap();
    s.json(&["view", "create", "db", "--at", "now"]);
    let forced = s.json(&["volume", "delete", "db", "--force"]);
    assert_eq!(forced["hosts_disconnected"], 1);
    assert_eq!(forced["views_removed"], 1);
    assert!(
        c.read(1, 1, 0, 8, &mut back).is_err(),
        "the host was disconnected"
    );
    let opts = ConnectOptions {
        timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    assert!(
        Controller::connect(s.addr, &nqn, &opts).is_err(),
        "the subsystem is gone from the target"
    );
    assert!(!data.join("volumes/db.img").exists());
    assert_eq!(volume_state(&s, "db"), None);
    s.stop();
    assert!(
        !data.join("rewind.sock").exists(),
        "the socket goes with the service"
    );
}

#[test]
fn bad_input_is_one_line_and_a_nonzero_exit() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = tmp.path().join("data");
    let cfg = config(
        tmp.path(),
        &data,
        "\n[[volumes]]\nname = \"cfg\"\ndevice = \"ram\"\nsize = \"16MiB\"\n\n[[volumes]]\nname = \"plain\"\ndevice = \"ram\"\nsize = \"16MiB\"\njournal = false\n",
    );
    let s = serve(&cfg, &data);
    s.json(&["volume", "create", "vol", "--size", "16MiB"]);
    let mark = s.json(&["mark", "vol", "m1"]);

    // Unknown volume, everywhere.
    for args in [
        &["points", "nope"][..],
        &["mark", "nope", "x"],
        &["view", "create", "nope", "--at", "now"],
        &["stats", "nope"],
        &["volume", "info", "nope"],
        &["volume", "delete", "nope"],
        &["read", "nope", "--lba", "0", "--count", "1"],
    ] {
        refused(&s.cli(args), "no volume named \"nope\"");
    }
    // Times: before retention, in the future (time and seq), malformed.
    refused(
        &s.cli(&["view", "create", "vol", "--at", "2020-01-01T00:00:00Z"]),
        "before the retention window",
    );
    refused(
        &s.cli(&["view", "create", "vol", "--at", "-3650d"]),
        "before the retention window",
    );
    refused(
        &s.cli(&["view", "create", "vol", "--at", "2100-01-01T00:00:00Z"]),
        "in the future",
    );
    refused(
        &s.cli(&["view", "create", "vol", "--at", "999999"]),
        "in the future",
    );
    refused(
        &s.cli(&["view", "create", "vol", "--at", "2026-13-01T00:00:00Z"]),
        "malformed time",
    );
    refused(
        &s.cli(&["view", "create", "vol", "--at", "-15 parsecs"]),
        "malformed time",
    );
    refused(
        &s.cli(&["points", "vol", "--since", "yesterday-ish-"]),
        "malformed time",
    );
    refused(
        &s.cli(&["view", "create", "vol", "--at", "no-such-label"]),
        "no retained point carries the label",
    );
    refused(
        &s.cli(&["view", "delete", "vol", "7"]),
        "no view with namespace ID 7",
    );
    refused(
        &s.cli(&["read", "vol", "--lba", "4096", "--count", "1"]),
        "outside volume",
    );
    refused(
        &s.cli(&["volume", "delete", "vol", "--wait", "soon"]),
        "malformed duration",
    );
    // Names, sizes, duplicates, the configured volume.
    refused(
        &s.cli(&["volume", "create", "vol", "--size", "16MiB"]),
        "already exists",
    );
    refused(
        &s.cli(&["volume", "create", "cfg", "--size", "16MiB"]),
        "already exists",
    );
    refused(
        &s.cli(&["volume", "create", "bad name", "--size", "16MiB"]),
        "volume name",
    );
    refused(
        &s.cli(&["volume", "create", "odd", "--size", "1000"]),
        "multiple of the block size",
    );
    refused(
        &s.cli(&["volume", "delete", "cfg"]),
        "comes from the configuration file",
    );
    let never = tmp.path().join("never.raw");
    for args in [
        &["points", "plain"][..],
        &["mark", "plain", "x"],
        &["view", "create", "plain", "--at", "now"],
        &["export", "plain", "--out", never.to_str().unwrap()],
    ] {
        refused(&s.cli(args), "plain namespace");
    }
    assert!(!never.exists() && !tmp.path().join("never.raw.partial").exists());
    let plain = s.json(&["volume", "info", "plain"]);
    assert_eq!(
        (plain["journal"].clone(), plain["geometry"].clone()),
        (json!(false), Value::Null)
    );
    // A full disk: more than the filesystem has free; nothing is left behind.
    let free = rewind::service::data_dir::free_bytes(&data).unwrap();
    let too_big = (free / 4096 + 1) * 4096;
    refused(
        &s.cli(&["volume", "create", "huge", "--size", &too_big.to_string()]),
        "not enough free space",
    );
    assert_eq!(volume_state(&s, "huge"), None);
    assert!(!data.join("volumes/huge.img").exists());
    // Usage errors exit 2, in one line.
    let o = s.cli(&["view", "create", "vol"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);

    // The socket itself: garbage, unknown methods and params, batches.
    let sock = s.socket();
    let r = raw_rpc(&sock, "{this is not json");
    assert_eq!(r["error"]["code"], -32700);
    let r = raw_rpc(
        &sock,
        r#"{"jsonrpc":"2.0","id":1,"method":"volume_explode"}"#,
    );
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (json!(1), json!(-32601))
    );
    let r = raw_rpc(
        &sock,
        r#"{"jsonrpc":"2.0","id":2,"method":"volume_info","params":{"name":"vol","bogus":1}}"#,
    );
    assert_eq!(r["error"]["code"], -32602);
    let r = raw_rpc(
        &sock,
        r#"{"jsonrpc":"2.0","id":3,"method":"view_create","params":{"volume":"vol","at":{"time":"2100-01-01T00:00:00Z"}}}"#,
    );
    assert_eq!(r["error"]["code"], -32011);
    assert!(!r["error"]["message"].as_str().unwrap().contains('\n'));
    let r = raw_rpc(
        &sock,
        r#"[{"jsonrpc":"2.0","id":4,"method":"point_list","params":{"volume":"vol"}},{"jsonrpc":"2.0","method":"volume_list"},{"jsonrpc":"2.0","id":5,"method":"volume_info","params":{"name":"nope"}}]"#,
    );
    let batch = r.as_array().unwrap();
    assert_eq!(batch.len(), 2, "the notification gets no response");
    assert!(batch[0]["result"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["seq"] == mark["seq"]));
    assert_eq!(batch[1]["error"]["code"], -32001);
    let r = raw_rpc(
        &sock,
        r#"{"jsonrpc":"2.0","id":6,"method":"export_image","params":{"volume":"vol","path":"relative.raw"}}"#,
    );
    assert_eq!(r["error"]["code"], -32602);

    // A second service on the same data directory is refused, and leaves
    // the first one's socket alone.
    let o = Command::new(BIN)
        .args(["serve", "--idle", "adaptive", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    refused(&o, "another rewind serve");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&s.child.id().to_string()));
    s.json(&["volume", "list"]);

    // Another data directory told to use the live socket: refused.
    let other = tmp.path().join("other");
    let other_cfg = config(tmp.path(), &other, "");
    let o = Command::new(BIN)
        .args(["serve", "--idle", "adaptive", "--config"])
        .arg(&other_cfg)
        .arg("--socket")
        .arg(&sock)
        .output()
        .unwrap();
    refused(&o, "already listening");
    // A socket path that is a plain file: refused, the file kept.
    let plain = tmp.path().join("plain-file");
    std::fs::write(&plain, b"keep me").unwrap();
    let o = Command::new(BIN)
        .args(["serve", "--idle", "adaptive", "--config"])
        .arg(&other_cfg)
        .arg("--socket")
        .arg(&plain)
        .output()
        .unwrap();
    refused(&o, "is not a socket");
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");

    s.stop();
    // Nobody listening: a clear message, not a hang.
    refused(
        &cli_in(&data, &["volume", "list"]),
        "cannot reach the service",
    );
}

#[test]
fn created_volumes_survive_a_restart_and_a_crash() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), &data, "");
    let s = serve(&cfg, &data);
    let created = s.json(&[
        "volume",
        "create",
        "keep",
        "--size",
        "16MiB",
        "--block-size",
        "512",
    ]);
    let nqn = created["nqn"].as_str().unwrap().to_string();
    let mut c = host(&s, &nqn);
    let first = pattern(7, 16 * 512);
    c.write(1, 1, 100, 16, &first).unwrap();
    let mark = s.json(&["mark", "keep", "first"]);
    let second = pattern(8, 16 * 512);
    c.write(1, 1, 100, 16, &second).unwrap();
    c.flush(1, 1).unwrap();
    s.json(&["retention", "keep", "--keep-last", "5"]);
    c.disconnect().unwrap();
    s.stop();

    // A clean restart: the volume, its history and its retention are back.
    let s = serve(&cfg, &data);
    let info = s.json(&["volume", "info", "keep"]);
    assert_eq!(
        (info["origin"].clone(), info["block_size"].clone()),
        (json!("created"), json!(512))
    );
    assert_eq!(info["retention"]["keep_last"], 5);
    let o = s.cli(&[
        "read", "keep", "--at", "first", "--lba", "100", "--count", "16",
    ]);
    assert_eq!(ok(&o, &["read"]), first);
    let o = s.cli(&["read", "keep", "--lba", "100", "--count", "16"]);
    assert_eq!(ok(&o, &["read"]), second);
    let view = s.json(&["view", "create", "keep", "--at", "first"]);
    assert_eq!(view["point"]["seq"], mark["seq"]);
    s.crash();

    // After a crash the socket file is left behind; the next start replaces it.
    assert!(
        data.join("rewind.sock").exists(),
        "a crash leaves the socket"
    );
    let s = serve(&cfg, &data);
    let o = s.cli(&[
        "read", "keep", "--at", "first", "--lba", "100", "--count", "16",
    ]);
    assert_eq!(ok(&o, &["read"]), first);
    // Views are not persisted: a restart starts with none.
    assert!(s.json(&["view", "list"])["views"]
        .as_array()
        .unwrap()
        .is_empty());
    // A file under volumes/ that no catalog entry names (an interrupted
    // create) is swept at the next start.
    s.stop();
    std::fs::write(data.join("volumes/ghost.img"), b"half-made").unwrap();
    let s = serve(&cfg, &data);
    assert!(!data.join("volumes/ghost.img").exists());
    assert!(data.join("volumes/keep.img").exists());
    s.stop();
}
