//! Letting go of a deleted volume on every reactor. Each reactor keeps a
//! ring writer and a reader per volume it served ([`ReactorIo`]); when the
//! management plane deletes a volume, those handles must be dropped on the
//! reactor's own thread before the volume can be closed and its files
//! removed. [`Releases`] is the board the control plane posts to; a
//! [`ReleasePoller`] on each reactor notices a new version with one atomic
//! load per round, drops its handles and acknowledges.
//!
//! Invariant: a reactor acknowledges version `v` only after it dropped its
//! handles on every volume posted up to `v`; the board holds volumes weakly,
//! so posting never keeps a volume alive.

use super::io::ReactorIo;
use crate::engine::Volume;
use crate::lock_audit::AuditedMutex;
use crate::runtime::{Message, Peers, Poller, Progress, ReactorCtx};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Volumes the reactors must let go of (see the module documentation).
#[derive(Debug)]
pub struct Releases {
    version: AtomicU64,
    volumes: AuditedMutex<Vec<Weak<Volume>>>,
    /// Per reactor: the newest version it has acted on.
    acked: Vec<AtomicU64>,
}

impl Releases {
    /// A board for `reactors` reactors.
    pub fn new(reactors: usize) -> Releases {
        Releases {
            version: AtomicU64::new(0),
            volumes: AuditedMutex::new(Vec::new()),
            acked: (0..reactors).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Posts `volume`, wakes every reactor and waits up to `timeout` until
    /// each has dropped its handles. Returns false on timeout.
    fn release(&self, volume: &Arc<Volume>, peers: Option<&Peers>, timeout: Duration) -> bool {
        let version = {
            let mut list = self
                .volumes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(volume));
            self.version.fetch_add(1, Ordering::AcqRel) + 1
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(peers) = peers {
                // A parked reactor wakes on its mailbox's doorbell.
                for r in 0..peers.len() {
                    let _ = peers.send(r, Message::run(|_| {}));
                }
            }
            if self
                .acked
                .iter()
                .all(|a| a.load(Ordering::Acquire) >= version)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn posted(&self) -> Vec<Arc<Volume>> {
        self.volumes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

/// What the control plane holds to post releases (from [`super::server::Server::releaser`]).
#[derive(Clone, Debug)]
pub struct Releaser {
    pub(crate) releases: Arc<Releases>,
    pub(crate) peers: Option<Arc<Peers>>,
}

impl Releaser {
    /// Makes every reactor drop its handles on `volume` (deleted: no
    /// subsystem exports it and no queue uses it any more); false when a
    /// reactor did not confirm within `timeout`.
    pub fn release(&self, volume: &Arc<Volume>, timeout: Duration) -> bool {
        self.releases
            .release(volume, self.peers.as_deref(), timeout)
    }
}

/// Acts on the board for one reactor.
#[derive(Debug)]
pub struct ReleasePoller {
    io: Rc<RefCell<ReactorIo>>,
    releases: Arc<Releases>,
    reactor: usize,
    seen: u64,
}

impl ReleasePoller {
    pub fn new(io: Rc<RefCell<ReactorIo>>, releases: Arc<Releases>, reactor: usize) -> Self {
        assert!(
            reactor < releases.acked.len(),
            "reactor {reactor} has no slot"
        );
        ReleasePoller {
            io,
            releases,
            reactor,
            seen: 0,
        }
    }
}

impl Poller for ReleasePoller {
    fn poll(&mut self, _ctx: &mut ReactorCtx) -> Progress {
        let version = self.releases.version.load(Ordering::Acquire);
        if version == self.seen {
            return Progress::Idle;
        }
        let Ok(mut io) = self.io.try_borrow_mut() else {
            return Progress::Busy;
        };
        for volume in self.releases.posted() {
            if io.release(&volume) {
                tracing::debug!(reactor = self.reactor, "released a deleted volume");
            }
        }
        drop(io);
        self.seen = version;
        self.releases.acked[self.reactor].store(version, Ordering::Release);
        Progress::Busy
    }
}
