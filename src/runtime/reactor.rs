//! The reactor: one thread pinned to one core, running a poll loop over the
//! pollers it owns — its connections, its device queue and ring writer,
//! whatever a service registers — and its mailbox.
//!
//! A round drains a bounded number of messages, then polls every poller once.
//! While rounds find work the loop keeps polling. When they stop finding work
//! the [`IdleMode`] decides: `Busy` keeps polling (appliance hardware),
//! `Adaptive` spins for a short while and then parks in `epoll_wait` with a
//! short timeout, on an epoll set holding the reactor's watched sockets and
//! its mailbox doorbell, so a socket becoming ready or a message arriving
//! wakes it at once.
//!
//! Invariants kept: everything a reactor owns is touched only by its thread
//! (pollers need not be `Send`; nothing here takes a lock); a connection handed
//! to a reactor stays there until its poller reports [`Progress::Done`]; the
//! loop parks only after its mailbox announced it (no lost wake-up, see
//! [`super::mailbox`]); each round handles at most
//! [`ReactorConfig::messages_per_round`] messages, so a flood of messages
//! cannot starve the pollers.

use super::epoll::{Epoll, Interest};
use super::group::{Peers, ReactorStats};
use super::mailbox::SendError;
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a reactor does when a round found no work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleMode {
    /// Poll without pause: lowest latency, one core always at 100 %.
    Busy,
    /// Poll while there is work; after `spin` without work, park in
    /// `epoll_wait` for at most `park` (a socket or message wakes it earlier).
    Adaptive {
        #[serde(with = "duration_us")]
        spin: Duration,
        #[serde(with = "duration_us")]
        park: Duration,
    },
}

impl Default for IdleMode {
    /// Adaptive, spinning 100 µs before parking for at most 1 ms.
    fn default() -> Self {
        IdleMode::Adaptive {
            spin: Duration::from_micros(100),
            park: Duration::from_millis(1),
        }
    }
}

mod duration_us {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

/// Settings shared by every reactor of a group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReactorConfig {
    /// One reactor per core, pinned to it, in this order (reactor `i` runs on `cores[i]`).
    pub cores: Vec<usize>,
    pub idle: IdleMode,
    /// Messages each mailbox holds before senders get [`SendError::Full`].
    pub mailbox_capacity: usize,
    /// Most messages handled per round.
    pub messages_per_round: usize,
}

impl ReactorConfig {
    /// Reactors on `cores` with the default idle mode and queue sizes.
    pub fn on_cores(cores: Vec<usize>) -> Self {
        ReactorConfig {
            cores,
            idle: IdleMode::default(),
            mailbox_capacity: 1024,
            messages_per_round: 32,
        }
    }
}

/// What one call to [`Poller::poll`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing to do this time.
    Idle,
    /// Did some work (moved bytes, completed requests): poll again soon.
    Busy,
    /// Finished for good (a connection closed): the reactor drops the poller.
    Done,
}

/// Something a reactor polls every round. Implementations must not block:
/// non-blocking sockets, [`crate::device::DeviceQueue::poll`], lock-free queues.
pub trait Poller {
    fn poll(&mut self, ctx: &mut ReactorCtx) -> Progress;
}

/// Turns a connection handed to this reactor into the poller that serves it
/// for its whole life. Built once per reactor, on the reactor's thread.
pub trait ConnectionHandler {
    fn adopt(&mut self, stream: TcpStream, ctx: &mut ReactorCtx) -> io::Result<Box<dyn Poller>>;
}

impl<F> ConnectionHandler for F
where
    F: FnMut(TcpStream, &mut ReactorCtx) -> io::Result<Box<dyn Poller>>,
{
    fn adopt(&mut self, stream: TcpStream, ctx: &mut ReactorCtx) -> io::Result<Box<dyn Poller>> {
        self(stream, ctx)
    }
}

/// A control task run on a reactor's thread (add a namespace, start a poller,
/// sample state). Control-plane only: boxing it allocates.
pub type Task = Box<dyn FnOnce(&mut ReactorCtx) + Send>;

/// What travels through a reactor's mailbox.
pub enum Message {
    /// A newly accepted connection: the reactor's [`ConnectionHandler`] adopts it.
    Connection(TcpStream),
    /// Run a task on the reactor.
    Run(Task),
    /// Drop every poller and end the thread.
    Stop,
}

impl Message {
    /// A [`Message::Run`] of `task`.
    pub fn run(task: impl FnOnce(&mut ReactorCtx) + Send + 'static) -> Message {
        Message::Run(Box::new(task))
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Connection(stream) => write!(f, "Connection({:?})", stream.peer_addr().ok()),
            Message::Run(_) => f.write_str("Run(..)"),
            Message::Stop => f.write_str("Stop"),
        }
    }
}

/// A reactor's view of itself and its peers, handed to every poller.
pub struct ReactorCtx {
    index: usize,
    core: usize,
    epoll: Epoll,
    peers: Arc<Peers>,
    /// Pollers added during a round; joined to the loop at its end.
    added: Vec<Box<dyn Poller>>,
    /// Adopts connections handed to this reactor; `None` refuses them.
    handler: Option<Box<dyn ConnectionHandler>>,
    stop_requested: bool,
}

impl fmt::Debug for ReactorCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorCtx")
            .field("index", &self.index)
            .field("core", &self.core)
            .field("added", &self.added.len())
            .field("stop_requested", &self.stop_requested)
            .finish()
    }
}

impl ReactorCtx {
    /// This reactor's position in the group (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The core this reactor is pinned to.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Reactors in the group.
    pub fn reactors(&self) -> usize {
        self.peers.len()
    }

    /// Adds a poller; it is first polled in the next round.
    pub fn add_poller(&mut self, poller: Box<dyn Poller>) {
        self.added.push(poller);
    }

    /// Lets readiness of `fd` wake this reactor when parked. Keep `fd` open
    /// while watched; closing it unwatches it.
    pub fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.epoll.add(fd, interest)
    }

    /// Changes what wakes this reactor for a watched `fd` (ask for
    /// writability only while output is pending).
    pub fn rewatch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.epoll.modify(fd, interest)
    }

    /// Stops watching `fd`.
    pub fn unwatch(&self, fd: RawFd) -> io::Result<()> {
        self.epoll.delete(fd)
    }

    /// Sends `message` to reactor `reactor` (possibly this one). Never blocks.
    pub fn send(&self, reactor: usize, message: Message) -> Result<(), SendError<Message>> {
        self.peers.send(reactor, message)
    }

    /// Hands a connection to the least-loaded reactor (see [`Peers::place_connection`]).
    pub fn place_connection(&self, stream: TcpStream) -> Result<usize, SendError<Message>> {
        self.peers.place_connection(stream)
    }

    /// Sets what adopts connections handed to this reactor (usually from the
    /// group's init function). Without one, connections are refused (closed).
    pub fn set_connection_handler(&mut self, handler: Box<dyn ConnectionHandler>) {
        self.handler = Some(handler);
    }

    /// Ends this reactor after the current round (its pollers are dropped).
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }
}

struct Slot {
    poller: Box<dyn Poller>,
    /// Counts in the reactor's connection gauge until it is done.
    connection: bool,
}

/// One reactor's loop state, living on its own thread.
pub(crate) struct Reactor {
    ctx: ReactorCtx,
    pollers: Vec<Slot>,
    idle: IdleMode,
    messages_per_round: usize,
    events: [libc::epoll_event; 64],
}

impl Reactor {
    /// The loop state for reactor `index` (on `core`); registers the doorbell.
    pub(crate) fn new(
        index: usize,
        core: usize,
        peers: Arc<Peers>,
        config: &ReactorConfig,
    ) -> io::Result<Reactor> {
        assert!(index < peers.len(), "reactor index within the group");
        assert!(config.messages_per_round > 0, "checked by the group");
        let epoll = Epoll::new()?;
        epoll.add(peers.mailbox(index).doorbell_fd(), Interest::READABLE)?;
        Ok(Reactor {
            ctx: ReactorCtx {
                index,
                core,
                epoll,
                peers,
                added: Vec::new(),
                handler: None,
                stop_requested: false,
            },
            pollers: Vec::new(),
            idle: config.idle,
            messages_per_round: config.messages_per_round,
            events: [libc::epoll_event { events: 0, u64: 0 }; 64],
        })
    }

    pub(crate) fn ctx(&mut self) -> &mut ReactorCtx {
        &mut self.ctx
    }

    fn stats(&self) -> &ReactorStats {
        self.ctx.peers.stats(self.ctx.index)
    }

    /// Runs rounds until a stop message or [`ReactorCtx::stop`].
    pub(crate) fn run(&mut self) {
        self.join_added();
        let mut idle_since: Option<Instant> = None;
        while !self.ctx.stop_requested {
            let work = self.round();
            if work > 0 {
                idle_since = None;
                continue;
            }
            match self.idle {
                IdleMode::Busy => std::hint::spin_loop(),
                IdleMode::Adaptive { spin, park } => {
                    let now = Instant::now();
                    let since = *idle_since.get_or_insert(now);
                    if now.duration_since(since) >= spin {
                        self.park(park);
                    }
                }
            }
        }
        self.shut_down();
    }

    /// One round: messages, then every poller once. Returns the work done.
    fn round(&mut self) -> usize {
        let mut work = 0;
        for _ in 0..self.messages_per_round {
            let Some(message) = self.ctx.peers.mailbox(self.ctx.index).receive() else {
                break;
            };
            work += 1;
            self.handle(message);
            if self.ctx.stop_requested {
                return work;
            }
        }
        let mut i = 0;
        while i < self.pollers.len() {
            match self.pollers[i].poller.poll(&mut self.ctx) {
                Progress::Idle => i += 1,
                Progress::Busy => {
                    work += 1;
                    i += 1;
                }
                Progress::Done => {
                    work += 1;
                    let slot = self.pollers.swap_remove(i);
                    if slot.connection {
                        self.stats().connection_closed();
                    }
                }
            }
        }
        self.join_added();
        let stats = self.stats();
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        if work > 0 {
            stats.busy_rounds.fetch_add(1, Ordering::Relaxed);
        }
        work
    }

    fn join_added(&mut self) {
        let added = self.ctx.added.len();
        self.pollers
            .extend(self.ctx.added.drain(..).map(|poller| Slot {
                poller,
                connection: false,
            }));
        if added > 0 {
            self.publish_poller_count();
        }
    }

    fn publish_poller_count(&self) {
        self.stats()
            .pollers
            .store(self.pollers.len(), Ordering::Relaxed);
    }

    fn handle(&mut self, message: Message) {
        self.stats().messages.fetch_add(1, Ordering::Relaxed);
        match message {
            Message::Stop => self.ctx.stop_requested = true,
            Message::Run(task) => task(&mut self.ctx),
            Message::Connection(stream) => {
                // The placing side already counted it in the gauge.
                let peer = stream.peer_addr().ok();
                let adopted = match self.ctx.handler.take() {
                    Some(mut handler) => {
                        let adopted = handler.adopt(stream, &mut self.ctx);
                        // A handler the task replaced meanwhile wins.
                        self.ctx.handler.get_or_insert(handler);
                        adopted
                    }
                    None => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "this reactor has no connection handler",
                    )),
                };
                match adopted {
                    Ok(poller) => {
                        self.pollers.push(Slot {
                            poller,
                            connection: true,
                        });
                        self.publish_poller_count();
                    }
                    Err(error) => {
                        tracing::warn!(reactor = self.ctx.index, ?peer, %error, "connection refused by its handler");
                        self.ctx.peers.stats(self.ctx.index).connection_closed();
                    }
                }
            }
        }
    }

    fn park(&mut self, timeout: Duration) {
        let mailbox = self.ctx.peers.mailbox(self.ctx.index);
        if !mailbox.prepare_park() {
            return;
        }
        let result = self.ctx.epoll.wait(&mut self.events, timeout);
        mailbox.finish_park();
        let stats = self.ctx.peers.stats(self.ctx.index);
        stats.parks.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = result {
            // Parking is an optimisation: keep polling rather than fail.
            tracing::warn!(reactor = self.ctx.index, %error, "epoll_wait failed; polling instead");
        }
    }

    /// Refuses new messages, drops pending ones and every poller (closing
    /// their sockets) on this thread.
    fn shut_down(&mut self) {
        let peers = Arc::clone(&self.ctx.peers);
        let mailbox = peers.mailbox(self.ctx.index);
        mailbox.close();
        while let Some(message) = mailbox.receive() {
            if let Message::Connection(_) = message {
                peers.stats(self.ctx.index).connection_closed();
            }
        }
        for slot in self.pollers.drain(..) {
            if slot.connection {
                peers.stats(self.ctx.index).connection_closed();
            }
        }
        self.ctx.added.clear();
        self.publish_poller_count();
    }
}
