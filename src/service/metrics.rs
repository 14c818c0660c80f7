//! The Prometheus endpoint: a small HTTP/1.1 server on its own thread that
//! answers `GET /metrics` with [`Appliance::prometheus`] (default address
//! 127.0.0.1:9455; `[service] metrics_address`, off with `metrics = false`
//! or `rewind serve --no-metrics`).
//!
//! One request per connection, handled in turn: a scrape is cheap and
//! Prometheus scrapes one at a time. Each connection gets a short read
//! timeout and a bounded request, so a client that stalls or floods delays
//! the next scrape by at most that timeout and cannot grow memory.
//!
//! Invariant: when [`MetricsServer::stop`] returns, the thread has ended and
//! the port is closed.

use super::appliance::Appliance;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the endpoint listens unless configured otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9455";

/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// How long a client may take to send its request or read the reply.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the idle thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The running endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `appliance`'s metrics until stopped.
    pub fn start(addr: SocketAddr, appliance: Arc<Appliance>) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("rewind-metrics".into())
            .spawn(move || serve(&listener, &appliance, &flag))?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (the port, when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread and closes the port.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shut();
    }
}

fn serve(listener: &TcpListener, appliance: &Appliance, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, appliance) {
                    tracing::debug!(%peer, error = %e, "metrics request not answered");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(STOP_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                std::thread::sleep(STOP_POLL);
            }
        }
    }
}

/// Reads one request head and writes the reply.
fn answer(mut stream: TcpStream, appliance: &Appliance) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > MAX_REQUEST {
            return reply(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            );
        }
    }
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => reply(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &appliance.prometheus(),
        ),
        ("GET", "/") => reply(
            &mut stream,
            "200 OK",
            "text/plain",
            "rewind: metrics at /metrics\n",
        ),
        ("GET", _) => reply(
            &mut stream,
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n",
        ),
        _ => reply(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n",
        ),
    }
}

fn reply(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
