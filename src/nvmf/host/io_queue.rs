//! One I/O queue driven without blocking, for load generators and reactors:
//! [`IoQueue::submit`] queues a command with an owned buffer and returns its
//! command id, [`IoQueue::poll`] moves bytes both ways on the non-blocking
//! socket and hands back finished commands with their buffers. No thread
//! per queue, no lock, no allocation per command.
//!
//! Invariant: a buffer given to `submit` comes back exactly once, in the
//! completion of its command (or from [`IoQueue::abort_all`] after the
//! queue failed); until then the queue owns it and the socket reads into or
//! writes from it directly.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::buffers::SlotBuffers;
use super::conn::Conn;
use super::error::{HostError, SubmitError};
use super::queue::{HostCompletion, QueuePair};
use super::slots::Direction;
use crate::nvmf::command::{CommandBuf, ReadWrite, Sgl};
use crate::nvmf::completion::Completion;
use crate::nvmf::status::Status;

/// Socket reads per [`IoQueue::poll`] at most (fairness across queues).
const READS_PER_POLL: usize = 8;

/// The data of a submitted command, owned.
#[derive(Debug, Default)]
pub enum IoData<B> {
    #[default]
    None,
    /// Host to controller.
    Out(B),
    /// Controller to host.
    In(B),
}

/// A finished command and its buffer.
#[derive(Debug)]
pub struct IoCompletion<B> {
    pub cid: u16,
    pub tag: u64,
    pub opcode: u8,
    pub cqe: Completion,
    /// Data bytes moved.
    pub transferred: u32,
    pub buf: Option<B>,
}

impl<B> IoCompletion<B> {
    pub fn status(&self) -> Status {
        self.cqe.status.status
    }
    pub fn is_success(&self) -> bool {
        self.status().is_success()
    }
}

/// A non-blocking I/O queue (see the module documentation).
#[derive(Debug)]
pub struct IoQueue<B = Vec<u8>> {
    stream: TcpStream,
    qp: QueuePair,
    bufs: SlotBuffers<B>,
    done: Vec<HostCompletion>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> IoQueue<B> {
    pub(crate) fn from_conn(conn: Conn<TcpStream>) -> Result<Self, HostError> {
        if conn.is_broken() || conn.qp.outstanding() > 0 {
            return Err(HostError::Broken { qid: conn.qid() });
        }
        let Conn { stream, qp, .. } = conn;
        stream.set_nonblocking(true)?;
        let depth = qp.depth();
        Ok(IoQueue {
            stream,
            qp,
            bufs: SlotBuffers::new(depth),
            done: Vec::with_capacity(depth),
        })
    }

    pub fn qid(&self) -> u16 {
        self.qp.qid()
    }
    /// Commands the queue can hold in flight.
    pub fn depth(&self) -> usize {
        self.qp.depth()
    }
    pub fn outstanding(&self) -> usize {
        self.qp.outstanding()
    }
    /// The queue pair (negotiated parameters, in-capsule limit, error).
    pub fn queue(&self) -> &QueuePair {
        &self.qp
    }

    /// Queues `cmd` with its data; the transfer length is the buffer's
    /// length. Nothing is sent before the next [`IoQueue::poll`]. On
    /// refusal the data comes back.
    pub fn submit(
        &mut self,
        cmd: CommandBuf,
        data: IoData<B>,
        tag: u64,
    ) -> Result<u16, (SubmitError, IoData<B>)> {
        let Some(slot) = self.qp.next_slot() else {
            return Err((SubmitError::QueueFull, data));
        };
        let (dir, buf) = match data {
            IoData::None => (Direction::None, None),
            IoData::Out(b) => (Direction::Out, Some(b)),
            IoData::In(b) => (Direction::In, Some(b)),
        };
        let len = buf.as_ref().map_or(0, |b| b.as_ref().len());
        let Ok(len) = u32::try_from(len) else {
            return Err((SubmitError::ShortBuffer, rewrap(dir, buf)));
        };
        self.bufs.put(slot, buf);
        match self.qp.submit(cmd, dir, len, tag, &mut self.bufs) {
            Ok(cid) => Ok(cid),
            Err(e) => Err((e, rewrap(dir, self.bufs.take(slot)))),
        }
    }

    /// Queues a Read of `nblocks` (1..=65535; 0 reads one) into `buf`,
    /// whose length must be `nblocks` times the block size: the queue does
    /// not know the namespace's block size, the target checks the match.
    pub fn submit_read(
        &mut self,
        nsid: u32,
        slba: u64,
        nblocks: u16,
        buf: B,
        tag: u64,
    ) -> Result<u16, (SubmitError, IoData<B>)> {
        let cmd = CommandBuf::read(0, nsid, &rw(slba, nblocks), &Sgl::Transport { length: 0 });
        self.submit(cmd, IoData::In(buf), tag)
    }

    /// Queues a Write of `buf` (`nblocks` blocks).
    pub fn submit_write(
        &mut self,
        nsid: u32,
        slba: u64,
        nblocks: u16,
        buf: B,
        tag: u64,
    ) -> Result<u16, (SubmitError, IoData<B>)> {
        let cmd = CommandBuf::write(0, nsid, &rw(slba, nblocks), &Sgl::Transport { length: 0 });
        self.submit(cmd, IoData::Out(buf), tag)
    }

    /// Sends what is queued, reads what has arrived, and appends finished
    /// commands to `out`; returns how many it appended. Never blocks.
    pub fn poll(&mut self, out: &mut Vec<IoCompletion<B>>) -> Result<usize, HostError> {
        if let Some(e) = self.qp.error() {
            return Err(e.clone().into());
        }
        self.flush()?;
        if self.qp.outstanding() > 0 {
            for _ in 0..READS_PER_POLL {
                let (n, room) = {
                    let b = self.qp.recv_buf(&mut self.bufs);
                    let room = b.len();
                    match (&self.stream).read(b) {
                        Ok(n) => (n, room),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    }
                };
                if n == 0 {
                    return Err(self.closed());
                }
                if let Err(e) = self.qp.received(n, &mut self.bufs) {
                    // Best effort: the H2CTermReq the failure queued.
                    let _ = self.flush();
                    return Err(e.into());
                }
                // R2Ts turn into H2CData right away.
                self.flush()?;
                if n < room {
                    break;
                }
            }
        }
        Ok(self.collect(out))
    }

    /// Like [`IoQueue::poll`], but waits up to `timeout` for at least one
    /// completion (sleeping in `poll(2)`, not spinning). Returns 0 when
    /// nothing is outstanding or time ran out.
    pub fn wait(
        &mut self,
        out: &mut Vec<IoCompletion<B>>,
        timeout: Duration,
    ) -> Result<usize, HostError> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.poll(out)?;
            if n > 0 || self.qp.outstanding() == 0 {
                return Ok(n);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(0);
            }
            let mut events = libc::POLLIN;
            if self.qp.tx_pending() > 0 {
                events |= libc::POLLOUT;
            }
            let mut pfd = libc::pollfd {
                fd: self.stream.as_raw_fd(),
                events,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e.into());
                }
            }
        }
    }

    /// After a failure: completes every command in flight with "aborted by
    /// host" and returns their buffers through `out`.
    pub fn abort_all(&mut self, out: &mut Vec<IoCompletion<B>>) -> usize {
        self.qp.abort_all();
        self.collect(out)
    }

    /// Closes the connection (commands in flight are lost; see
    /// [`IoQueue::abort_all`]).
    pub fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn flush(&mut self) -> Result<(), HostError> {
        if self.qp.tx_pending() > 0 {
            self.qp.write_to(&mut &self.stream, &self.bufs)?;
        }
        Ok(())
    }

    fn closed(&mut self) -> HostError {
        self.qp.peer_closed().into()
    }

    fn collect(&mut self, out: &mut Vec<IoCompletion<B>>) -> usize {
        self.qp.drain_completions(&mut self.done);
        let n = self.done.len();
        for c in self.done.drain(..) {
            out.push(IoCompletion {
                cid: c.cid,
                tag: c.tag,
                opcode: c.opcode,
                cqe: c.cqe,
                transferred: c.transferred,
                buf: self.bufs.take(usize::from(c.slot)),
            });
        }
        n
    }
}

fn rewrap<B>(dir: Direction, buf: Option<B>) -> IoData<B> {
    match (dir, buf) {
        (Direction::Out, Some(b)) => IoData::Out(b),
        (Direction::In, Some(b)) => IoData::In(b),
        _ => IoData::None,
    }
}

fn rw(slba: u64, nblocks: u16) -> ReadWrite {
    ReadWrite {
        slba,
        nlb0: nblocks.saturating_sub(1),
        fua: false,
        lr: false,
        prinfo: 0,
        dtype: 0,
    }
}
