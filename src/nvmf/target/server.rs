//! Starting the target on a group of reactors: bind the listeners, put an
//! acceptor on the first reactor, give every reactor its [`ReactorIo`]
//! (appending to the engine ring with the reactor's index), a handler that
//! turns accepted streams into [`Connection`]s and a [`ReleasePoller`] that
//! drops the reactor's handles on deleted volumes.
//!
//! Invariant: reactor `i` is the only writer of ring `i` of every volume it
//! serves, so volumes need at least as many rings as there are reactors
//! (checked at start).

use super::connection::Connection;
use super::io::ReactorIo;
use super::release::{ReleasePoller, Releaser, Releases};
use super::Target;
use crate::runtime::{Acceptor, HugepagePool, ReactorConfig, ReactorGroup, RuntimeError};
use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;

/// Why the target did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("volume {nqn} has {rings} writer rings but {reactors} reactors would append to it; format it with at least {reactors} rings or use fewer cores")]
    TooFewRings {
        nqn: String,
        rings: u16,
        reactors: usize,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A running target. Stops when dropped.
#[derive(Debug)]
pub struct Server {
    group: Option<ReactorGroup>,
    target: Arc<Target>,
    addrs: Vec<SocketAddr>,
    releases: Arc<Releases>,
}

impl Server {
    /// Binds `listen` (port 0 picks a free port), then starts the reactors;
    /// data buffers come from the heap.
    pub fn start(
        target: Target,
        reactors: &ReactorConfig,
        listen: &[SocketAddr],
    ) -> Result<Server, ServeError> {
        Server::start_with(target, reactors, listen, None)
    }

    /// [`Server::start`] with each reactor's data buffers carved from
    /// `buffers` (hugepages when reserved).
    pub fn start_with(
        mut target: Target,
        reactors: &ReactorConfig,
        listen: &[SocketAddr],
        buffers: Option<Arc<HugepagePool>>,
    ) -> Result<Server, ServeError> {
        for s in target.subsystems() {
            for ns in s.namespaces.load().iter() {
                if let Some(v) = ns.volume() {
                    let rings = v.geometry().rings;
                    if usize::from(rings) < reactors.cores.len() {
                        return Err(ServeError::TooFewRings {
                            nqn: s.nqn.clone(),
                            rings,
                            reactors: reactors.cores.len(),
                        });
                    }
                }
            }
        }
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for &addr in listen {
            let l =
                TcpListener::bind(addr).map_err(|source| ServeError::Listen { addr, source })?;
            addrs.push(
                l.local_addr()
                    .map_err(|source| ServeError::Listen { addr, source })?,
            );
            listeners.push(l);
        }
        target.set_listeners(addrs.clone());
        let target = Arc::new(target);
        let shared = Arc::clone(&target);
        let listeners = std::sync::Mutex::new(Some(listeners));
        let releases = Arc::new(Releases::new(reactors.cores.len()));
        let board = Arc::clone(&releases);
        let group = ReactorGroup::start(reactors, move |ctx| {
            let ring = ctx.index() as u16;
            let io = match &buffers {
                Some(pool) => ReactorIo::with_buffers(ring, pool),
                None => ReactorIo::new(ring),
            };
            let io = Rc::new(RefCell::new(io));
            ctx.add_poller(Box::new(ReleasePoller::new(
                Rc::clone(&io),
                Arc::clone(&board),
                ctx.index(),
            )));
            if ctx.index() == 0 {
                let taken = listeners
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .unwrap_or_default();
                for l in taken {
                    ctx.add_poller(Box::new(Acceptor::new(l)?));
                }
            }
            let target = Arc::clone(&shared);
            ctx.set_connection_handler(Box::new(
                move |stream, ctx: &mut crate::runtime::ReactorCtx| {
                    let c = Connection::new(stream, Arc::clone(&target), Rc::clone(&io), ctx)?;
                    Ok(Box::new(c) as Box<dyn crate::runtime::Poller>)
                },
            ));
            Ok(())
        })?;
        tracing::info!(
            ?addrs,
            reactors = reactors.cores.len(),
            "NVMe/TCP target listening"
        );
        Ok(Server {
            group: Some(group),
            target,
            addrs,
            releases,
        })
    }

    /// Where hosts reach the target.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// The reactors' statistics.
    pub fn reactor_stats(&self) -> Vec<crate::runtime::ReactorStatsSnapshot> {
        self.group.as_ref().map(|g| g.stats()).unwrap_or_default()
    }

    /// A handle that reads the reactors' statistics from any thread.
    pub fn peers(&self) -> Option<Arc<crate::runtime::Peers>> {
        self.group.as_ref().map(|g| Arc::clone(g.peers()))
    }

    /// The handle that makes reactors drop deleted volumes.
    pub fn releaser(&self) -> Releaser {
        Releaser {
            releases: Arc::clone(&self.releases),
            peers: self.peers(),
        }
    }

    /// Stops every reactor (closing every connection).
    pub fn stop(mut self) -> Result<(), ServeError> {
        match self.group.take() {
            Some(g) => Ok(g.stop()?),
            None => Ok(()),
        }
    }
}
