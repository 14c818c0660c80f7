//! A group of reactors: starting one pinned thread per listed core, the
//! mailboxes and statistics they share, spreading connections over them,
//! and stopping them.
//!
//! [`Peers`] is the only state reactors share: per reactor a mailbox and a
//! cache-line-padded block of counters, each written by its owner (the
//! connection gauge also by whoever places a connection). Nothing in it is
//! behind a lock.
//!
//! Invariants kept: reactor `i` runs on `cores[i]` and nowhere else (it pins
//! itself before running anything else, and start fails if pinning fails);
//! [`ReactorGroup::start`] returns only once every reactor ran its init
//! function, or fails having stopped and joined every thread it started;
//! [`ReactorGroup::stop`] joins every thread (a reactor that panicked is
//! reported, not ignored).

use super::cores::{self, CoreListError};
use super::mailbox::{Mailbox, SendError, MAILBOX_CAPACITY_MAX};
use super::reactor::{Message, Reactor, ReactorConfig, ReactorCtx};
use std::fmt;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`ReactorGroup::stop`] retries a full mailbox, and how long
/// [`ReactorGroup::start`] waits for reactors to come up.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a group could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid reactor configuration: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Cores(#[from] CoreListError),
    #[error("cannot start the reactor thread for core {core}: {message}")]
    Spawn { core: usize, message: String },
    #[error("reactor {reactor} cannot pin itself to core {core}: {message}")]
    Pin {
        reactor: usize,
        core: usize,
        message: String,
    },
    #[error("reactor {reactor} (core {core}) failed to initialise: {message}")]
    Init {
        reactor: usize,
        core: usize,
        message: String,
    },
    #[error("reactor {reactor} (core {core}) panicked")]
    Panicked { reactor: usize, core: usize },
    #[error("reactors did not {what} within {timeout:?}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
}

/// Counters of one reactor, written by it (relaxed) and read by anyone.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct ReactorStats {
    /// Loop rounds run.
    pub rounds: AtomicU64,
    /// Rounds that found work.
    pub busy_rounds: AtomicU64,
    /// Times the reactor slept in `epoll_wait`.
    pub parks: AtomicU64,
    /// Mailbox messages handled.
    pub messages: AtomicU64,
    /// Connections placed on this reactor and not yet finished.
    pub connections: AtomicUsize,
    /// Pollers the reactor owns.
    pub pollers: AtomicUsize,
}

impl ReactorStats {
    pub(crate) fn connection_closed(&self) {
        let before = self.connections.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "connection gauge underflow");
    }
}

/// A copy of one reactor's counters.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReactorStatsSnapshot {
    pub reactor: usize,
    pub core: usize,
    pub rounds: u64,
    pub busy_rounds: u64,
    pub parks: u64,
    pub messages: u64,
    pub connections: usize,
    pub pollers: usize,
}

struct Peer {
    core: usize,
    mailbox: Mailbox<Message>,
    stats: ReactorStats,
}

/// What the reactors of a group share: mailboxes and counters.
pub struct Peers {
    reactors: Vec<Peer>,
    /// Rotates the starting point of placement so ties spread round-robin.
    placement_cursor: AtomicUsize,
}

impl fmt::Debug for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peers")
            .field("reactors", &self.reactors.len())
            .finish()
    }
}

impl Peers {
    /// Reactors in the group.
    pub fn len(&self) -> usize {
        self.reactors.len()
    }

    /// True for a group of no reactors (never: start refuses it).
    pub fn is_empty(&self) -> bool {
        self.reactors.is_empty()
    }

    pub(crate) fn mailbox(&self, reactor: usize) -> &Mailbox<Message> {
        &self.reactors[reactor].mailbox
    }

    pub(crate) fn stats(&self, reactor: usize) -> &ReactorStats {
        &self.reactors[reactor].stats
    }

    /// Sends `message` to reactor `reactor`. Never blocks.
    ///
    /// Panics when `reactor` is not in the group (a caller bug).
    pub fn send(&self, reactor: usize, message: Message) -> Result<(), SendError<Message>> {
        assert!(
            reactor < self.reactors.len(),
            "reactor {reactor} is not in a group of {}",
            self.reactors.len()
        );
        self.reactors[reactor].mailbox.try_send(message)
    }

    /// Hands `stream` to the reactor with the fewest connections (ties go
    /// round-robin); a reactor whose mailbox is full is skipped. Returns the
    /// reactor chosen, or the stream back when every mailbox is full or closed.
    /// The connection belongs to that reactor for its whole life.
    pub fn place_connection(&self, stream: TcpStream) -> Result<usize, SendError<Message>> {
        let n = self.reactors.len();
        assert!(n > 0, "a group has at least one reactor");
        let start = self.placement_cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut tried = vec![false; n];
        let mut message = Message::Connection(stream);
        let mut all_closed = true;
        for _ in 0..n {
            let Some(reactor) = (0..n)
                .map(|k| (start + k) % n)
                .filter(|&r| !tried[r])
                .min_by_key(|&r| self.reactors[r].stats.connections.load(Ordering::Relaxed))
            else {
                break;
            };
            tried[reactor] = true;
            let stats = &self.reactors[reactor].stats;
            stats.connections.fetch_add(1, Ordering::Relaxed);
            match self.reactors[reactor].mailbox.try_send(message) {
                Ok(()) => return Ok(reactor),
                Err(refused) => {
                    stats.connection_closed();
                    all_closed &= matches!(refused, SendError::Closed(_));
                    message = refused.into_inner();
                }
            }
        }
        Err(if all_closed {
            SendError::Closed(message)
        } else {
            SendError::Full(message)
        })
    }

    /// A copy of every reactor's counters.
    pub fn snapshot(&self) -> Vec<ReactorStatsSnapshot> {
        self.reactors
            .iter()
            .enumerate()
            .map(|(reactor, peer)| ReactorStatsSnapshot {
                reactor,
                core: peer.core,
                rounds: peer.stats.rounds.load(Ordering::Relaxed),
                busy_rounds: peer.stats.busy_rounds.load(Ordering::Relaxed),
                parks: peer.stats.parks.load(Ordering::Relaxed),
                messages: peer.stats.messages.load(Ordering::Relaxed),
                connections: peer.stats.connections.load(Ordering::Relaxed),
                pollers: peer.stats.pollers.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Runs on each reactor's thread after pinning, before its first round: adds
/// the reactor's own pollers (its ring writer, ...) and its connection handler.
pub type ReactorInit =
    dyn Fn(&mut ReactorCtx) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync;

/// Running reactors (see the module documentation).
pub struct ReactorGroup {
    peers: Arc<Peers>,
    threads: Vec<(usize, JoinHandle<()>)>,
}

impl fmt::Debug for ReactorGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorGroup")
            .field("reactors", &self.peers.len())
            .field("running", &self.threads.len())
            .finish()
    }
}

impl ReactorGroup {
    /// Starts one reactor per core of `config.cores`, each pinned to its core
    /// and named `reactor-<core>` (short enough for Linux's 15-byte thread
    /// names, so `top -H` and `perf` show it whole), each running `init` on
    /// its own thread first. Returns once all are running.
    pub fn start<I>(config: &ReactorConfig, init: I) -> Result<ReactorGroup, RuntimeError>
    where
        I: Fn(&mut ReactorCtx) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
            + Send
            + Sync
            + 'static,
    {
        check_config(config)?;
        let mut reactors = Vec::with_capacity(config.cores.len());
        for &core in &config.cores {
            let mailbox = Mailbox::new(config.mailbox_capacity)
                .map_err(|e| RuntimeError::InvalidConfig(format!("mailbox: {e}")))?;
            reactors.push(Peer {
                core,
                mailbox,
                stats: ReactorStats::default(),
            });
        }
        let peers = Arc::new(Peers {
            reactors,
            placement_cursor: AtomicUsize::new(0),
        });
        let init: Arc<ReactorInit> = Arc::new(init);
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), RuntimeError>)>();
        let mut group = ReactorGroup {
            peers: Arc::clone(&peers),
            threads: Vec::new(),
        };
        for (index, &core) in config.cores.iter().enumerate() {
            let peers = Arc::clone(&peers);
            let init = Arc::clone(&init);
            let ready = ready_tx.clone();
            let reactor_config = config.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("reactor-{core}"))
                .spawn(move || reactor_thread(index, core, peers, &reactor_config, &*init, ready));
            match spawned {
                Ok(handle) => group.threads.push((index, handle)),
                Err(e) => {
                    let error = RuntimeError::Spawn {
                        core,
                        message: e.to_string(),
                    };
                    // The spawn failure is the error to report; stopping the
                    // reactors already started is best effort.
                    if let Err(stop_error) = group.stop_all() {
                        tracing::error!(%stop_error, "stopping reactors after a failed start");
                    }
                    return Err(error);
                }
            }
        }
        drop(ready_tx);
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        let mut first_error = None;
        for _ in 0..config.cores.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok((_, Ok(()))) => {}
                Ok((_, Err(error))) => {
                    first_error.get_or_insert(error);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    first_error.get_or_insert(RuntimeError::Timeout {
                        what: "start",
                        timeout: CONTROL_TIMEOUT,
                    });
                    break;
                }
                // A thread ended without reporting: it panicked in init.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let joined = if first_error.is_some() {
            group.stop_all()
        } else {
            Ok(())
        };
        match (first_error, joined) {
            (Some(error), _) => Err(error),
            (None, Err(error)) => Err(error),
            (None, Ok(())) => {
                assert_eq!(group.threads.len(), config.cores.len());
                Ok(group)
            }
        }
    }

    /// Reactors in the group.
    pub fn reactors(&self) -> usize {
        self.peers.len()
    }

    /// The shared mailboxes and counters (for acceptors and tools outside the reactors).
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    /// Sends `message` to reactor `reactor`. Never blocks.
    pub fn send(&self, reactor: usize, message: Message) -> Result<(), SendError<Message>> {
        self.peers.send(reactor, message)
    }

    /// Hands `stream` to the least-loaded reactor (see [`Peers::place_connection`]).
    pub fn place_connection(&self, stream: TcpStream) -> Result<usize, SendError<Message>> {
        self.peers.place_connection(stream)
    }

    /// A copy of every reactor's counters.
    pub fn stats(&self) -> Vec<ReactorStatsSnapshot> {
        self.peers.snapshot()
    }

    /// Sends every reactor a stop message and joins every thread.
    pub fn stop(mut self) -> Result<(), RuntimeError> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        for (index, _) in &self.threads {
            let mut message = Message::Stop;
            loop {
                match self.peers.send(*index, message) {
                    Ok(()) | Err(SendError::Closed(_)) => break,
                    Err(SendError::Full(back)) => {
                        if Instant::now() > deadline {
                            // Joining a reactor that never saw its stop
                            // message would hang: leave the threads running.
                            return Err(RuntimeError::Timeout {
                                what: "accept a stop message",
                                timeout: CONTROL_TIMEOUT,
                            });
                        }
                        message = back;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
        }
        let mut result = Ok(());
        for (index, handle) in self.threads.drain(..) {
            if handle.join().is_err() {
                result = result.and(Err(RuntimeError::Panicked {
                    reactor: index,
                    core: self.peers.reactors[index].core,
                }));
            }
        }
        result
    }
}

impl Drop for ReactorGroup {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            if let Err(error) = self.stop_all() {
                tracing::error!(%error, "reactor group dropped without a clean stop");
            }
        }
    }
}

fn check_config(config: &ReactorConfig) -> Result<(), RuntimeError> {
    if config.cores.is_empty() {
        return Err(CoreListError::Empty.into());
    }
    let available = cores::available_cores().map_err(|e| CoreListError::Affinity {
        message: e.to_string(),
    })?;
    for (i, &core) in config.cores.iter().enumerate() {
        if config.cores[..i].contains(&core) {
            return Err(CoreListError::Duplicate { core }.into());
        }
        if !available.contains(&core) {
            return Err(CoreListError::Unavailable {
                core,
                available: available.clone(),
            }
            .into());
        }
    }
    if config.mailbox_capacity == 0 || config.mailbox_capacity > MAILBOX_CAPACITY_MAX {
        return Err(RuntimeError::InvalidConfig(format!(
            "mailbox capacity {} is outside 1..={MAILBOX_CAPACITY_MAX}",
            config.mailbox_capacity
        )));
    }
    if config.messages_per_round == 0 {
        return Err(RuntimeError::InvalidConfig(
            "messages per round must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Closes the reactor's mailbox however its thread ends (a panic included),
/// so senders get `Closed` instead of filling a dead queue.
struct CloseOnExit<'a>(&'a Mailbox<Message>);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn reactor_thread(
    index: usize,
    core: usize,
    peers: Arc<Peers>,
    config: &ReactorConfig,
    init: &ReactorInit,
    ready: mpsc::Sender<(usize, Result<(), RuntimeError>)>,
) {
    let _close = CloseOnExit(peers.mailbox(index));
    if let Err(e) = cores::pin_current_thread(core) {
        let _ = ready.send((
            index,
            Err(RuntimeError::Pin {
                reactor: index,
                core,
                message: e.to_string(),
            }),
        ));
        return;
    }
    let mut reactor = match Reactor::new(index, core, Arc::clone(&peers), config) {
        Ok(reactor) => reactor,
        Err(e) => {
            let _ = ready.send((
                index,
                Err(RuntimeError::Init {
                    reactor: index,
                    core,
                    message: format!("epoll: {e}"),
                }),
            ));
            return;
        }
    };
    if let Err(e) = init(reactor.ctx()) {
        let _ = ready.send((
            index,
            Err(RuntimeError::Init {
                reactor: index,
                core,
                message: e.to_string(),
            }),
        ));
        return;
    }
    let _ = ready.send((index, Ok(())));
    drop(ready);
    tracing::debug!(reactor = index, core, "reactor running");
    reactor.run();
    tracing::debug!(reactor = index, core, "reactor stopped");
}
