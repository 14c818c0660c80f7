//! Readiness for parking: an epoll instance and an eventfd doorbell, both
//! owning their file descriptors.
//!
//! A reactor never waits on epoll to find work — it polls its sockets and
//! queues directly. Epoll is only where an idle reactor sleeps: it holds the
//! reactor's sockets and its doorbell, so a parked reactor wakes as soon as a
//! socket becomes ready or a message is posted. Registrations are
//! level-triggered and keyed by file descriptor, so readiness that arrived
//! before the reactor parked is reported at once, never lost.
//!
//! Invariant kept: descriptors are closed exactly once, by the owner (`OwnedFd`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// What readiness wakes a parked reactor for a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub readable: bool,
    pub writable: bool,
}

impl Interest {
    /// Data to read, or the peer hung up: the usual interest of a connection.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Also room to write (only while output is pending: an idle socket is
    /// always writable, so this interest would keep the reactor awake).
    pub const READ_WRITE: Interest = Interest {
        readable: true,
        writable: true,
    };

    fn events(self) -> u32 {
        let mut events = (libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) as u32;
        if self.readable {
            events |= libc::EPOLLIN as u32;
        }
        if self.writable {
            events |= libc::EPOLLOUT as u32;
        }
        events
    }
}

/// An epoll instance (see the module documentation).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty instance.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn control(&self, op: libc::c_int, fd: RawFd, interest: Interest) -> io::Result<()> {
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "negative file descriptor",
            ));
        }
        let mut event = libc::epoll_event {
            events: interest.events(),
            u64: fd as u64,
        };
        // SAFETY: both descriptors are valid or the kernel says EBADF; the event
        // is a live local.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` for `interest`. The caller keeps `fd` open while it is
    /// watched (closing it removes it from the set).
    pub fn add(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, interest)
    }

    /// Changes the interest of a watched `fd`.
    pub fn modify(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, interest)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_DEL, fd, Interest::READABLE)
    }

    /// Sleeps until a watched descriptor is ready or `timeout` passes; fills
    /// `events` (each event's `u64` is the descriptor) and returns how many.
    /// An interrupted wait returns 0.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        assert!(!events.is_empty(), "epoll_wait needs room for one event");
        let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // Round up so a sub-millisecond timeout still sleeps rather than spins.
        let timeout_ms = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        // SAFETY: `events` is a live, writable buffer of at least `max` entries.
        let n =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(error);
        }
        let n = n as usize;
        assert!(n <= events.len());
        Ok(n)
    }
}

/// A non-blocking eventfd used as a doorbell: ring from any thread, drain on
/// the owner.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new, silent doorbell.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the descriptor readable (wakes an epoll wait on it). A counter
    /// already at its maximum is already readable, so `EAGAIN` is success.
    pub fn ring(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local, as eventfd requires.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n == 8 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            return Ok(());
        }
        Err(error)
    }

    /// Resets the doorbell; returns true when it had been rung.
    pub fn drain(&self) -> bool {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live local, as eventfd requires.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
        n == 8 && value > 0
    }

    /// The descriptor, for registering with [`Epoll`].
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    fn no_events() -> [libc::epoll_event; 4] {
        [libc::epoll_event { events: 0, u64: 0 }; 4]
    }

    #[test]
    fn doorbell_wakes_a_wait() {
        let epoll = Epoll::new().expect("epoll");
        let bell = EventFd::new().expect("eventfd");
        epoll.add(bell.raw_fd(), Interest::READABLE).expect("add");
        let mut events = no_events();
        assert_eq!(epoll.wait(&mut events, Duration::ZERO).expect("wait"), 0);
        assert!(!bell.drain(), "a fresh doorbell is silent");
        bell.ring().expect("ring");
        bell.ring().expect("ring twice");
        let started = Instant::now();
        assert_eq!(
            epoll
                .wait(&mut events, Duration::from_secs(5))
                .expect("wait"),
            1
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!({ events[0].u64 }, bell.raw_fd() as u64);
        assert!(bell.drain());
        assert_eq!(epoll.wait(&mut events, Duration::ZERO).expect("wait"), 0);
    }

    #[test]
    fn socket_readiness_and_interest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let epoll = Epoll::new().expect("epoll");
        let fd = server.as_raw_fd();
        epoll.add(fd, Interest::READABLE).expect("add");
        let mut events = no_events();
        assert_eq!(epoll.wait(&mut events, Duration::ZERO).expect("wait"), 0);
        epoll.modify(fd, Interest::READ_WRITE).expect("modify");
        assert_eq!(
            epoll.wait(&mut events, Duration::ZERO).expect("wait"),
            1,
            "an idle socket is writable"
        );
        epoll.modify(fd, Interest::READABLE).expect("modify");
        client.write_all(b"x").expect("write");
        assert_eq!(
            epoll
                .wait(&mut events, Duration::from_secs(5))
                .expect("wait"),
            1
        );
        assert_eq!({ events[0].u64 }, fd as u64);
        epoll.delete(fd).expect("delete");
        assert_eq!(epoll.wait(&mut events, Duration::ZERO).expect("wait"), 0);
        assert!(epoll.add(-1, Interest::READABLE).is_err());
    }
}
