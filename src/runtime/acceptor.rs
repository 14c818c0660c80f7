//! The acceptor: a poller owning a non-blocking listening socket, handing
//! each accepted connection to the least-loaded reactor of its group.
//!
//! Invariant kept: an accepted connection is never dropped for lack of room —
//! when every mailbox is full the acceptor holds it (one at most) and stops
//! accepting, leaving later connections in the kernel's backlog, until a
//! mailbox has room. It never blocks its reactor.

use super::epoll::Interest;
use super::mailbox::SendError;
use super::reactor::{Message, Poller, Progress, ReactorCtx};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Connections accepted per poll at most (bounds one round's work).
const ACCEPTS_PER_POLL: usize = 16;

/// How long after an empty `accept` the next one is tried.
pub const IDLE_RETRY: Duration = Duration::from_micros(500);

/// See the module documentation.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    /// A connection no mailbox had room for yet.
    pending: Option<TcpStream>,
    watched: bool,
    accepted: u64,
    /// No `accept` before this instant (set when one found the backlog empty).
    quiet_until: Option<Instant>,
}

impl Acceptor {
    /// An acceptor on `listener` (made non-blocking here).
    pub fn new(listener: TcpListener) -> io::Result<Acceptor> {
        listener.set_nonblocking(true)?;
        Ok(Acceptor {
            listener,
            pending: None,
            watched: false,
            accepted: 0,
            quiet_until: None,
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Places `stream`; keeps it when every mailbox is full. Returns false then.
    fn place(&mut self, stream: TcpStream, ctx: &mut ReactorCtx) -> bool {
        assert!(self.pending.is_none(), "one held connection at most");
        match ctx.place_connection(stream) {
            Ok(_) => true,
            Err(SendError::Full(Message::Connection(stream))) => {
                self.pending = Some(stream);
                false
            }
            Err(SendError::Closed(_)) => {
                tracing::warn!("every reactor has stopped; connection closed");
                true
            }
            Err(SendError::Full(_)) => {
                unreachable!("place_connection returns the connection it was given")
            }
        }
    }
}

impl Poller for Acceptor {
    fn poll(&mut self, ctx: &mut ReactorCtx) -> Progress {
        if !self.watched {
            if let Err(error) = ctx.watch(self.listener.as_raw_fd(), Interest::READABLE) {
                tracing::warn!(%error, "listener not watched; parked reactor wakes on its timeout only");
            }
            self.watched = true;
        }
        let mut progress = Progress::Idle;
        if let Some(stream) = self.pending.take() {
            if !self.place(stream, ctx) {
                return Progress::Idle;
            }
            progress = Progress::Busy;
        }
        if let Some(until) = self.quiet_until {
            if Instant::now() < until {
                return progress;
            }
            self.quiet_until = None;
        }
        for _ in 0..ACCEPTS_PER_POLL {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    progress = Progress::Busy;
                    self.accepted += 1;
                    if let Err(error) = stream
                        .set_nonblocking(true)
                        .and_then(|()| stream.set_nodelay(true))
                    {
                        tracing::warn!(%peer, %error, "cannot configure accepted connection; closed");
                        continue;
                    }
                    if !self.place(stream, ctx) {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.quiet_until = Some(Instant::now() + IDLE_RETRY);
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // EMFILE, ECONNABORTED...: the listener itself is fine; retry next poll.
                    tracing::warn!(%error, "accept failed");
                    break;
                }
            }
        }
        progress
    }
}
