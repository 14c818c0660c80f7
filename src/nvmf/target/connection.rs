//! A host connection on its reactor: moves bytes between the non-blocking
//! socket and the connection's [`QueuePair`], and drives the reactor's I/O.
//!
//! Invariants: the socket is read only while the unsent output is small (a
//! host that stops reading stops being served, it cannot make us buffer
//! without bound); the connection stays registered with the reactor until
//! its queue pair closed and everything queued for the host was sent (or the
//! host went away).

use super::io::ReactorIo;
use super::queue::QueuePair;
use super::Target;
use crate::runtime::{Interest, Poller, Progress, ReactorCtx};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;

/// Unsent bytes above which the socket is not read.
const OUTPUT_HIGH_WATER: usize = 4 << 20;

/// Reads per poll at most (fairness between connections of a reactor).
const READS_PER_POLL: usize = 4;

/// See the module documentation.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    qp: QueuePair,
    io: Rc<RefCell<ReactorIo>>,
    rx: Vec<u8>,
    rx_len: usize,
    sent: usize,
    watching_writes: bool,
    registered: bool,
    finished: bool,
}

impl Connection {
    /// Adopts `stream` (already non-blocking) on the current reactor.
    pub fn new(
        stream: TcpStream,
        target: Arc<Target>,
        io: Rc<RefCell<ReactorIo>>,
        ctx: &mut ReactorCtx,
    ) -> io::Result<Connection> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        ctx.watch(stream.as_raw_fd(), Interest::READABLE)?;
        let limits = &target.limits;
        // Room for the largest PDU plus the start of the next one.
        let rx_size = (limits.max_h2c_data.max(limits.in_capsule_bytes) as usize + 4096) * 2;
        let peer = stream.peer_addr().ok();
        tracing::debug!(?peer, reactor = ctx.index(), "host connected");
        Ok(Connection {
            stream,
            peer,
            qp: QueuePair::new(target),
            io,
            rx: vec![0; rx_size],
            rx_len: 0,
            sent: 0,
            watching_writes: false,
            registered: true,
            finished: false,
        })
    }

    fn read_socket(&mut self, io: &mut ReactorIo) -> io::Result<bool> {
        let mut work = false;
        for _ in 0..READS_PER_POLL {
            if self.qp.closing() || self.qp.output().len() - self.sent > OUTPUT_HIGH_WATER {
                break;
            }
            let free = self.rx.get_mut(self.rx_len..).unwrap_or(&mut []);
            if free.is_empty() {
                // The reader bounds every PDU to what fits; a full buffer
                // with nothing consumable cannot happen.
                return Err(io::Error::other("receive buffer full without a whole PDU"));
            }
            match self.stream.read(free) {
                Ok(0) => {
                    self.finished = true;
                    return Ok(true);
                }
                Ok(n) => {
                    work = true;
                    self.rx_len += n;
                    let used = self.qp.on_input(&self.rx[..self.rx_len], io);
                    self.rx.copy_within(used..self.rx_len, 0);
                    self.rx_len -= used;
                    if n < free_len_hint(self.rx.len()) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(work)
    }

    fn write_socket(&mut self) -> io::Result<bool> {
        let mut work = false;
        loop {
            let out = self.qp.output();
            if self.sent >= out.len() {
                out.clear();
                self.sent = 0;
                return Ok(work);
            }
            match self.stream.write(&out[self.sent..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.sent += n;
                    work = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(work),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn close(&mut self, ctx: &mut ReactorCtx) {
        if self.registered {
            let _ = ctx.unwatch(self.stream.as_raw_fd());
            self.registered = false;
        }
        let mut io = self.io.borrow_mut();
        self.qp.shutdown(&mut io);
        tracing::debug!(peer = ?self.peer, "host connection closed");
    }
}

/// Reads shorter than this part of the buffer mean the socket is drained.
fn free_len_hint(buffer: usize) -> usize {
    buffer / 4
}

impl Poller for Connection {
    fn poll(&mut self, ctx: &mut ReactorCtx) -> Progress {
        let io_rc = Rc::clone(&self.io);
        let mut io = io_rc.borrow_mut();
        let mut work = false;
        let read = self.read_socket(&mut io);
        work |= io.pump() > 0;
        work |= self.qp.on_tick(&mut io);
        drop(io);
        let written = self.write_socket();
        match (read, written) {
            (Ok(r), Ok(w)) => work |= r || w,
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(peer = ?self.peer, error = %e, "connection error");
                self.close(ctx);
                return Progress::Done;
            }
        }
        let pending = self.qp.output().len() > self.sent;
        if (self.qp.closing() && !pending) || self.finished {
            self.close(ctx);
            return Progress::Done;
        }
        if pending != self.watching_writes {
            let interest = if pending {
                Interest::READ_WRITE
            } else {
                Interest::READABLE
            };
            if ctx.rewatch(self.stream.as_raw_fd(), interest).is_ok() {
                self.watching_writes = pending;
            }
        }
        if work || self.qp.in_flight() > 0 || pending {
            Progress::Busy
        } else {
            Progress::Idle
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.qp.closing() {
            if let Ok(mut io) = self.io.try_borrow_mut() {
                self.qp.shutdown(&mut io);
            }
        }
    }
}
