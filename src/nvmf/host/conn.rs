//! One queue over a blocking byte stream: the queue pair plus its socket,
//! executing one command at a time with a deadline. [`Transport`] is the
//! little a stream must offer (a `TcpStream`, or an in-memory scripted
//! target in tests).
//!
//! Invariant: a connection that saw a timeout or a transport error is
//! marked broken and refuses further commands (a command may still be in
//! flight on it, with a buffer that no longer exists); an NVMe error status
//! leaves it usable.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::buffers::{Data, Single};
use super::error::HostError;
use super::queue::{HostCompletion, QueueConfig, QueuePair};
use super::slots::Direction;
use crate::nvmf::command::CommandBuf;

/// A blocking byte stream to a target.
pub trait Transport: Read + Write {
    /// Bounds each blocking read and write (a read that waits longer fails
    /// with `WouldBlock` or `TimedOut`).
    fn set_io_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Closes both directions (best effort).
    fn close(&mut self);
}

impl Transport for TcpStream {
    fn set_io_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let t = Some(timeout.max(Duration::from_millis(1)));
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
    fn close(&mut self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// A queue pair and its stream.
#[derive(Debug)]
pub struct Conn<T: Transport> {
    pub(crate) stream: T,
    pub(crate) qp: QueuePair,
    timeout: Duration,
    broken: bool,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl<T: Transport> Conn<T> {
    /// Initializes the connection: sends the ICReq and waits for the
    /// ICResp.
    pub fn open(mut stream: T, cfg: QueueConfig, timeout: Duration) -> Result<Self, HostError> {
        stream.set_io_timeout(timeout)?;
        let mut c = Conn {
            stream,
            qp: QueuePair::new(cfg),
            timeout,
            broken: false,
        };
        let deadline = Instant::now() + timeout;
        let mut none = Single::new(usize::MAX, Data::None);
        while !c.qp.is_ready() {
            c.flush(&none)?;
            if Instant::now() > deadline {
                c.broken = true;
                return Err(HostError::Timeout {
                    what: "ICResp",
                    after: timeout,
                });
            }
            c.read_once(&mut none, "ICResp")?;
        }
        Ok(c)
    }

    pub fn qid(&self) -> u16 {
        self.qp.qid()
    }
    pub fn queue(&self) -> &QueuePair {
        &self.qp
    }
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn flush(&mut self, bufs: &Single<'_>) -> Result<(), HostError> {
        while self.qp.tx_pending() > 0 {
            match self.qp.write_to(&mut self.stream, bufs) {
                Ok(0) => {
                    self.broken = true;
                    return Err(HostError::Timeout {
                        what: "the socket to take data",
                        after: self.timeout,
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    fn read_once(&mut self, bufs: &mut Single<'_>, what: &'static str) -> Result<(), HostError> {
        match self.qp.read_from(&mut self.stream, bufs) {
            Ok(_) => Ok(()),
            Err(HostError::Io(e)) if is_timeout(&e) => {
                self.broken = true;
                Err(HostError::Timeout {
                    what,
                    after: self.timeout,
                })
            }
            Err(e) => {
                self.broken = true;
                // Best effort: the H2CTermReq a protocol failure queued.
                let _ = self.qp.write_to(&mut self.stream, bufs);
                Err(e)
            }
        }
    }

    /// Runs one command to completion; returns its completion whatever the
    /// status (see [`Conn::execute_ok`]).
    pub fn execute(
        &mut self,
        cmd: CommandBuf,
        data: Data<'_>,
        what: &'static str,
    ) -> Result<HostCompletion, HostError> {
        if self.broken || self.qp.error().is_some() {
            return Err(HostError::Broken { qid: self.qid() });
        }
        let Some(slot) = self.qp.next_slot() else {
            return Err(super::error::SubmitError::QueueFull.into());
        };
        let (dir, len) = match &data {
            Data::None => (Direction::None, 0),
            Data::Out(b) => (Direction::Out, b.len()),
            Data::In(b) => (Direction::In, b.len()),
        };
        let len =
            u32::try_from(len).map_err(|_| HostError::Invalid(format!("{len}-byte transfer")))?;
        let mut bufs = Single::new(slot, data);
        let cid = self.qp.submit(cmd, dir, len, 0, &mut bufs)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            self.flush(&bufs)?;
            while let Some(c) = self.qp.pop_completion() {
                if c.cid == cid {
                    return Ok(c);
                }
            }
            if Instant::now() > deadline {
                self.broken = true;
                return Err(HostError::Timeout {
                    what,
                    after: self.timeout,
                });
            }
            self.read_once(&mut bufs, what)?;
        }
    }

    /// Runs one command; a non-success status is an error.
    pub fn execute_ok(
        &mut self,
        cmd: CommandBuf,
        data: Data<'_>,
        what: &'static str,
    ) -> Result<HostCompletion, HostError> {
        let c = self.execute(cmd, data, what)?;
        if c.is_success() {
            Ok(c)
        } else {
            Err(HostError::Status {
                qid: self.qid(),
                opcode: c.opcode,
                status: c.status(),
                dnr: c.cqe.status.dnr,
                cqe: c.cqe,
            })
        }
    }

    /// Sends whatever is queued (a termination request) and closes.
    pub fn close(&mut self) {
        let none = Single::new(usize::MAX, Data::None);
        let _ = self.qp.write_to(&mut self.stream, &none);
        self.stream.close();
        self.broken = true;
    }
}
