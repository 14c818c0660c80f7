//! The control socket: a local Unix socket on which the running service
//! takes management requests (today: views and bookmarks), one text line per
//! request and one per reply, so `rewind view add` and scripts can drive it.
//!
//! Requests: `view-add <volume> time <ns>` | `view-add <volume> seq <n>` |
//! `view-add <volume> label <label>` → `ok <nsid> <seq> <time_ns>`;
//! `view-remove <volume> <nsid>` → `ok`; `mark <volume> <label>` →
//! `ok <seq> <time_ns>`; `stats` → `ok <one line of JSON>` (reactors,
//! hugepage pool, volumes). Failures: `error <one-line message>`.
//!
//! Invariant: a view is published only at a point the engine resolved (a
//! retained point), and only namespace IDs >= 2 are ever removed here, so the
//! live namespace 1 stays.

use crate::engine::{At, Volume};
use crate::nvmf::target::namespace::{Namespace, NsKind};
use crate::nvmf::target::subsystem::volume_nqn;
use crate::nvmf::target::Target;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest request line accepted.
const MAX_LINE: usize = 4096;

/// Produces the service's statistics as one line of JSON.
pub type StatsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// What the control socket manages.
pub struct Managed {
    pub target: Arc<Target>,
    pub volumes: HashMap<String, Arc<Volume>>,
    pub stats: StatsSource,
}

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("volumes", &self.volumes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Managed {
    /// Answers one request line.
    pub fn handle(&self, line: &str) -> String {
        match self.try_handle(line) {
            Ok(reply) => format!("ok {reply}"),
            Err(e) => format!("error {}", e.replace('\n', " ")),
        }
    }

    fn volume(&self, name: &str) -> Result<&Arc<Volume>, String> {
        self.volumes
            .get(name)
            .ok_or_else(|| format!("no volume named {name:?}"))
    }

    fn try_handle(&self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["view-add", volume, kind, value] => {
                let v = self.volume(volume)?;
                let at = match *kind {
                    "time" => At::Time(value.parse().map_err(|_| format!("bad time {value:?}"))?),
                    "seq" => At::Seq(value.parse().map_err(|_| format!("bad seq {value:?}"))?),
                    "label" => At::Label(value.to_string()),
                    other => {
                        return Err(format!("unknown point kind {other:?} (time, seq, label)"))
                    }
                };
                let point = v.resolve(&at).map_err(|e| e.to_string())?;
                let nqn = volume_nqn(volume);
                let sub = self
                    .target
                    .subsystem(&nqn)
                    .ok_or_else(|| format!("no subsystem {nqn}"))?;
                let nsid = sub.namespaces.free_id();
                let g = v.geometry();
                sub.add_namespace(Namespace {
                    nsid,
                    kind: NsKind::View {
                        volume: Arc::clone(v),
                        point: point.clone(),
                    },
                    block_size: g.block_size,
                    blocks: g.volume_blocks,
                    uuid: view_uuid(&v.uuid(), nsid),
                })
                .map_err(|e| e.to_string())?;
                tracing::info!(
                    volume,
                    nsid,
                    seq = point.seq,
                    time_ns = point.time_ns,
                    "view added"
                );
                Ok(format!("{nsid} {} {}", point.seq, point.time_ns))
            }
            ["view-remove", volume, nsid] => {
                let nsid: u32 = nsid.parse().map_err(|_| format!("bad nsid {nsid:?}"))?;
                if nsid < 2 {
                    return Err("namespace 1 is the live volume; only views can be removed".into());
                }
                self.volume(volume)?;
                let nqn = volume_nqn(volume);
                let sub = self
                    .target
                    .subsystem(&nqn)
                    .ok_or_else(|| format!("no subsystem {nqn}"))?;
                sub.remove_namespace(nsid).map_err(|e| e.to_string())?;
                tracing::info!(volume, nsid, "view removed");
                Ok(String::new())
            }
            ["stats"] => Ok((self.stats)()),
            ["mark", volume, label] => {
                let p = self
                    .volume(volume)?
                    .mark(label)
                    .map_err(|e| e.to_string())?;
                Ok(format!("{} {}", p.seq, p.time_ns))
            }
            _ => Err(format!("unknown request {line:?}")),
        }
    }
}

/// A view's identity: the volume's uuid with the NSID folded in.
fn view_uuid(volume: &[u8; 16], nsid: u32) -> [u8; 16] {
    let mut u = *volume;
    for (i, b) in nsid.to_le_bytes().iter().enumerate() {
        u[12 + i] ^= b;
    }
    u[6] = (u[6] & 0x0F) | 0x80; // not a random (v4) uuid any more: custom (v8)
    u
}

/// The control socket's thread. Stops when dropped.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `path` (a stale socket file is replaced).
    pub fn start(path: &Path, managed: Managed) -> std::io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("rewind-control".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => serve_client(stream, &managed),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "control socket accept failed");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(stream: UnixStream, managed: &Managed) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    let mut line = String::new();
    while let Ok(n) = (&mut reader).take(MAX_LINE as u64).read_line(&mut line) {
        if n == 0 {
            break;
        }
        let reply = managed.handle(line.trim());
        if writeln!(writer, "{reply}").is_err() {
            break;
        }
        line.clear();
    }
}

use std::io::Read as _;

/// Sends one request to the service at `path`; returns the text after `ok`.
pub fn request(path: &Path, line: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the service at {}: {e} (is `rewind serve` running?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    writeln!(s, "{line}").map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(&s)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    let reply = reply.trim();
    match reply.split_once(' ').unwrap_or((reply, "")) {
        ("ok", rest) => Ok(rest.to_string()),
        ("error", message) => Err(message.to_string()),
        _ => Err(format!("unexpected reply {reply:?}")),
    }
}
