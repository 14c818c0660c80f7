//! Cross-core messages: a bounded lock-free queue into one reactor plus the
//! eventfd doorbell that wakes it when it is parked.
//!
//! Any thread may send; only the owning reactor receives. Sending never blocks
//! and never allocates: a full queue hands the message back
//! ([`SendError::Full`]) so the sender — often another reactor — can try a
//! different reactor or retry on its next poll; a mailbox whose reactor has
//! exited hands it back as [`SendError::Closed`].
//!
//! Invariant kept (no lost wake-up): a reactor sleeps in epoll only after it
//! announced it is parking and then saw its queue empty; a sender rings the
//! doorbell whenever it sees that announcement after its push. With both
//! sides' store-then-load ordered by `SeqCst` fences, either the reactor sees
//! the message or the sender sees the announcement (Dekker). The doorbell is
//! rung only while the reactor is parked, so a busy reactor costs senders no
//! syscall.

use super::epoll::EventFd;
use crossbeam_queue::ArrayQueue;
use std::fmt;
use std::io;
use std::sync::atomic::{fence, AtomicBool, Ordering};

/// Largest mailbox capacity accepted (a bound on every queue's memory).
pub const MAILBOX_CAPACITY_MAX: usize = 1 << 16;

/// A message that could not be delivered, handed back to the sender.
pub enum SendError<M> {
    /// The queue is full: retry later or pick another reactor.
    Full(M),
    /// The receiving reactor has stopped.
    Closed(M),
}

impl<M> SendError<M> {
    /// The undelivered message.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(m) | SendError::Closed(m) => m,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("SendError::Full(..)"),
            SendError::Closed(_) => f.write_str("SendError::Closed(..)"),
        }
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("the reactor's mailbox is full"),
            SendError::Closed(_) => f.write_str("the reactor has stopped"),
        }
    }
}

impl<M> std::error::Error for SendError<M> {}

/// One reactor's inbox (see the module documentation).
pub struct Mailbox<M> {
    queue: ArrayQueue<M>,
    doorbell: EventFd,
    /// Set by the owner just before it sleeps, cleared when it wakes.
    parked: AtomicBool,
    closed: AtomicBool,
}

impl<M> fmt::Debug for Mailbox<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("len", &self.queue.len())
            .field("capacity", &self.queue.capacity())
            .field("parked", &self.parked.load(Ordering::Relaxed))
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl<M> Mailbox<M> {
    /// A mailbox holding at most `capacity` messages (1..=[`MAILBOX_CAPACITY_MAX`]).
    pub fn new(capacity: usize) -> io::Result<Mailbox<M>> {
        if capacity == 0 || capacity > MAILBOX_CAPACITY_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mailbox capacity {capacity} is outside 1..={MAILBOX_CAPACITY_MAX}"),
            ));
        }
        Ok(Mailbox {
            queue: ArrayQueue::new(capacity),
            doorbell: EventFd::new()?,
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// Queues `message` for the owner and wakes it if it is parked. Never blocks.
    pub fn try_send(&self, message: M) -> Result<(), SendError<M>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SendError::Closed(message));
        }
        self.queue.push(message).map_err(SendError::Full)?;
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            // A doorbell that cannot be written leaves the reactor to wake at
            // its park timeout: late, never lost.
            if let Err(error) = self.doorbell.ring() {
                tracing::warn!(%error, "reactor doorbell could not be rung");
            }
        }
        Ok(())
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no message waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Most messages the queue holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// True once the owner stopped receiving.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes the oldest message (owner only).
    pub(crate) fn receive(&self) -> Option<M> {
        self.queue.pop()
    }

    /// Announces that the owner is about to sleep. Returns false — and
    /// withdraws the announcement — when a message is already waiting.
    pub(crate) fn prepare_park(&self) -> bool {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !self.queue.is_empty() {
            self.parked.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The owner woke up; resets the doorbell.
    pub(crate) fn finish_park(&self) {
        self.parked.store(false, Ordering::SeqCst);
        self.doorbell.drain();
    }

    /// Refuses further messages (the owner is stopping).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The doorbell descriptor, for the owner's epoll set.
    pub(crate) fn doorbell_fd(&self) -> std::os::fd::RawFd {
        self.doorbell.raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::epoll::{Epoll, Interest};
    use std::time::{Duration, Instant};

    #[test]
    fn full_and_closed_hand_the_message_back() {
        assert!(Mailbox::<u32>::new(0).is_err());
        assert!(Mailbox::<u32>::new(MAILBOX_CAPACITY_MAX + 1).is_err());
        let mailbox = Mailbox::new(2).expect("mailbox");
        mailbox.try_send(1u32).expect("send");
        mailbox.try_send(2).expect("send");
        match mailbox.try_send(3) {
            Err(SendError::Full(3)) => {}
            other => panic!("expected Full(3), got {other:?}"),
        }
        assert_eq!(mailbox.receive(), Some(1));
        mailbox.try_send(3).expect("room again");
        mailbox.close();
        assert!(mailbox.is_closed());
        let refused = mailbox.try_send(4).expect_err("closed");
        assert!(matches!(refused, SendError::Closed(4)));
        assert_eq!(refused.into_inner(), 4);
        assert_eq!(mailbox.receive(), Some(2));
        assert_eq!(mailbox.receive(), Some(3));
        assert_eq!(mailbox.receive(), None);
    }

    #[test]
    fn parked_owner_is_woken_and_busy_owner_is_not_rung() {
        let mailbox = Mailbox::new(4).expect("mailbox");
        let epoll = Epoll::new().expect("epoll");
        epoll
            .add(mailbox.doorbell_fd(), Interest::READABLE)
            .expect("add");
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        // Not parked: a send does not ring.
        mailbox.try_send(1u32).expect("send");
        assert_eq!(epoll.wait(&mut events, Duration::ZERO).expect("wait"), 0);
        assert!(
            !mailbox.prepare_park(),
            "a waiting message prevents parking"
        );
        assert_eq!(mailbox.receive(), Some(1));
        assert!(mailbox.prepare_park());
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                mailbox.try_send(2).expect("send");
            });
            let started = Instant::now();
            let n = epoll
                .wait(&mut events, Duration::from_secs(10))
                .expect("wait");
            assert_eq!(n, 1, "the doorbell woke the parked owner");
            assert!(started.elapsed() < Duration::from_secs(5));
        });
        mailbox.finish_park();
        assert_eq!(mailbox.receive(), Some(2));
        assert_eq!(epoll.wait(&mut events, Duration::ZERO).expect("wait"), 0);
    }
}
