//! The management socket: a Unix socket on which the service answers
//! JSON-RPC 2.0 (see [`super::wire`]), one thread per client connection (at
//! most [`MAX_CLIENTS`]), so a long request (an export, a delete waiting for
//! hosts) does not hold up the others.
//!
//! Binding: a socket file left by a crashed service (nobody accepts on it)
//! is removed and bound again; a socket a live process accepts on is
//! refused, and so is a path that is not a socket. The socket is made
//! readable and writable by its owner and group only (mode 0660).
//!
//! Invariant: when [`RpcServer::stop`] returns, no client thread runs and
//! the socket file is gone, so the service can close its volumes.

use super::error::{RpcError, TOO_MANY_CLIENTS};
use super::methods;
use super::wire::{self, Incoming, MAX_REQUEST_BYTES};
use crate::lock_audit::AuditedMutex;
use crate::service::appliance::Appliance;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Concurrent client connections at most.
pub const MAX_CLIENTS: usize = 32;

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("a service is already listening on {0} (stop it first, or choose another socket)")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; remove it or choose another socket path")]
    NotASocket(PathBuf),
    #[error("socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds `path`, replacing a stale socket (see the module documentation).
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(SocketError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                tracing::warn!(socket = %path.display(), "removing a stale socket left by a stopped service");
                std::fs::remove_file(path).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        },
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    // The socket creates and deletes volumes and writes files as the
    // service's user: its owner and group only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    Ok(listener)
}

struct Client {
    stream: UnixStream,
    thread: JoinHandle<()>,
}

/// A running management socket.
pub struct RpcServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    clients: Arc<AuditedMutex<Vec<Client>>>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("path", &self.path)
            .finish()
    }
}

impl RpcServer {
    /// Serves `app` on `listener` (bound at `path` by [`bind`]).
    pub fn start(
        path: &Path,
        listener: UnixListener,
        app: Arc<Appliance>,
    ) -> std::io::Result<RpcServer> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Arc<AuditedMutex<Vec<Client>>> = Arc::new(AuditedMutex::new(Vec::new()));
        let (flag, list) = (Arc::clone(&stop), Arc::clone(&clients));
        let accept = std::thread::Builder::new()
            .name("rewind-rpc".into())
            .spawn(move || accept_loop(&listener, &app, &flag, &list))?;
        Ok(RpcServer {
            path: path.to_path_buf(),
            stop,
            accept: Some(accept),
            clients,
        })
    }

    /// Stops accepting, ends every client connection, removes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let clients = std::mem::take(
            &mut *self
                .clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for c in &clients {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        for c in clients {
            let _ = c.thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shutdown();
        }
    }
}

fn accept_loop(
    listener: &UnixListener,
    app: &Arc<Appliance>,
    stop: &Arc<AtomicBool>,
    clients: &Arc<AuditedMutex<Vec<Client>>>,
) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let mut list = clients
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                list.retain(|c| !c.thread.is_finished());
                if list.len() >= MAX_CLIENTS {
                    drop(list);
                    refuse(stream);
                    continue;
                }
                let Ok(kept) = stream.try_clone() else {
                    continue;
                };
                let (app, stop) = (Arc::clone(app), Arc::clone(stop));
                match std::thread::Builder::new()
                    .name("rewind-rpc-client".into())
                    .spawn(move || serve_client(stream, &app, &stop))
                {
                    Ok(thread) => list.push(Client {
                        stream: kept,
                        thread,
                    }),
                    Err(e) => tracing::warn!(error = %e, "cannot start an RPC client thread"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                tracing::warn!(error = %e, "management socket accept failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn refuse(mut stream: UnixStream) {
    let e = RpcError::new(
        TOO_MANY_CLIENTS,
        format!("too many management connections (at most {MAX_CLIENTS}); try again"),
    );
    let _ = stream.set_nonblocking(false);
    let _ = writeln!(stream, "{}", wire::failure(&Value::Null, &e));
}

/// Answers one line: the response line, or `None` (only notifications).
pub fn answer(app: &Appliance, line: &str) -> Option<Value> {
    let run = |r: Result<wire::Request, Value>| -> Option<Value> {
        match r {
            Err(response) => Some(response),
            Ok(req) => {
                let result = methods::call(app, &req.method, req.params);
                if let Err(e) = &result {
                    tracing::debug!(method = %req.method, code = e.code, error = %e.message, "request refused");
                }
                let id = req.id?;
                Some(match result {
                    Ok(v) => wire::success(&id, v),
                    Err(e) => wire::failure(&id, &e),
                })
            }
        }
    };
    match wire::parse(line) {
        Incoming::Invalid(response) => Some(response),
        Incoming::Single(r) => run(r),
        Incoming::Batch(items) => {
            let out: Vec<Value> = items.into_iter().filter_map(run).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
    }
}

fn serve_client(stream: UnixStream, app: &Appliance, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let mut line = Vec::new();
    let mut respond = |line: &[u8]| -> bool {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        match (!text.is_empty()).then(|| answer(app, text)).flatten() {
            Some(response) => writeln!(writer, "{response}").is_ok(),
            None => true,
        }
    };
    while !stop.load(Ordering::Acquire) {
        let room = (MAX_REQUEST_BYTES + 1).saturating_sub(line.len()) as u64;
        match (&mut reader).take(room).read_until(b'\n', &mut line) {
            Ok(0) => {
                // The client closed; a last line without a newline still counts.
                if !line.is_empty() {
                    respond(&line);
                }
                return;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        if line.len() > MAX_REQUEST_BYTES {
            let e = RpcError::new(
                super::error::INVALID_REQUEST,
                format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            );
            let response = wire::failure(&Value::Null, &e).to_string();
            respond_raw(&mut reader, &response);
            return;
        }
        if line.last() != Some(&b'\n') {
            continue;
        }
        if !respond(&line) {
            return;
        }
        line.clear();
    }
}

fn respond_raw(reader: &mut BufReader<UnixStream>, response: &str) {
    let _ = writeln!(reader.get_mut(), "{response}");
}
