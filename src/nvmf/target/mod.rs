//! The NVMe/TCP target: what the appliance's hosts connect to.
//!
//! [`Target`] holds what every queue on every reactor shares: the subsystems
//! (one per protected volume, plus discovery), the controller registry and
//! the limits advertised to hosts. A [`queue::QueuePair`] is the protocol
//! state of one TCP connection (one NVMe queue), written without sockets so
//! it can be tested byte for byte; a [`connection::Connection`] moves its
//! bytes on a reactor; [`io::ReactorIo`] is the reactor's engine ring writer,
//! readers and device queues; [`admin`] answers admin commands;
//! [`server`] starts it all on a reactor group; [`release`] lets reactors
//! drop deleted volumes.
//!
//! Invariant: a write is acknowledged to the host only after the engine
//! reported it durable (data and descriptor), and a Flush only after every
//! write before it is (an engine flush marker). Subsystems come and go at
//! run time (the management plane creates and deletes volumes); a change
//! bumps the discovery log's generation counter.

pub mod admin;
pub mod connection;
pub mod controller;
pub mod io;
pub mod metrics;
pub mod namespace;
pub mod queue;
pub mod release;
pub mod server;
pub mod subsystem;

use crate::lock_audit::AuditedMutex;
use crate::nvmf::logpage::discovery;
use controller::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use subsystem::{Subsystem, SubsystemKind};

/// The vendor-specific I/O command that reads at a point in time.
///
/// Layout (an ordinary Read otherwise): CDW10/11 starting LBA, CDW12 bits
/// 15:0 number of blocks minus one, CDW13 bit 0 selects what CDW14/15 hold
/// (0: a wall-clock time in ns since the Unix epoch, 1: a point `seq`),
/// CDW14/15 that value (low, high). The data is the volume as of the newest
/// retained point at or before it; the completion's DW0/DW1 carry the `seq`
/// of the point that served the read.
pub const OPC_READ_AT_POINT: u8 = 0x82;

/// What the target advertises and enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries per queue the controller supports (CAP.MQES + 1).
    pub queue_entries: u16,
    /// I/O queue pairs a controller may have.
    pub max_io_queues: u16,
    /// In-capsule data bytes accepted on I/O queues (IOCCSZ - 64 bytes).
    pub in_capsule_bytes: u32,
    /// In-capsule data bytes accepted on the admin queue.
    pub admin_in_capsule_bytes: u32,
    /// Largest data transfer of one command (MDTS), a power of two >= 4096.
    pub max_transfer_bytes: u32,
    /// MAXH2CDATA: largest H2CData PDU.
    pub max_h2c_data: u32,
    /// A connection that has not completed ICReq and Connect this long
    /// after it was accepted is closed: half-open connections would
    /// otherwise hold a reactor slot and a receive buffer for ever.
    pub establish_timeout: std::time::Duration,
    /// Serial number reported by every controller (subsystems may override).
    pub firmware: String,
    pub model: String,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_entries: 128,
            max_io_queues: 64,
            in_capsule_bytes: 16384,
            admin_in_capsule_bytes: 8192,
            max_transfer_bytes: 1 << 20,
            max_h2c_data: 128 << 10,
            establish_timeout: std::time::Duration::from_secs(10),
            firmware: env!("CARGO_PKG_VERSION").to_string(),
            model: "rewind continuous data protection".to_string(),
        }
    }
}

/// What all queues share. See the module documentation.
#[derive(Debug)]
pub struct Target {
    pub limits: Limits,
    /// NVM subsystems by NQN (control path only: Connect, discovery, management).
    subsystems: AuditedMutex<BTreeMap<String, Arc<Subsystem>>>,
    discovery: Arc<Subsystem>,
    pub registry: Registry,
    /// Where hosts reach us, for the discovery log.
    listeners: Vec<SocketAddr>,
    /// Discovery log generation counter.
    genctr: AtomicU64,
}

impl Target {
    /// A target serving `subsystems` on `listeners`.
    pub fn new(limits: Limits, subsystems: Vec<Subsystem>, listeners: Vec<SocketAddr>) -> Target {
        let discovery = Arc::new(Subsystem::new(
            discovery::DISCOVERY_NQN.to_string(),
            SubsystemKind::Discovery,
            "rewind-discovery".to_string(),
            Vec::new(),
        ));
        Target {
            limits,
            subsystems: AuditedMutex::new(
                subsystems
                    .into_iter()
                    .map(|s| (s.nqn.clone(), Arc::new(s)))
                    .collect(),
            ),
            discovery,
            registry: Registry::default(),
            listeners,
            genctr: AtomicU64::new(1),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Subsystem>>> {
        self.subsystems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The subsystem named `nqn` (the discovery NQN included).
    pub fn subsystem(&self, nqn: &str) -> Option<Arc<Subsystem>> {
        if nqn == self.discovery.nqn {
            return Some(Arc::clone(&self.discovery));
        }
        self.table().get(nqn).cloned()
    }

    /// The NVM subsystems, by NQN.
    pub fn subsystems(&self) -> Vec<Arc<Subsystem>> {
        self.table().values().cloned().collect()
    }

    /// Starts serving `subsystem`; refused (handed back) when its NQN is taken.
    pub fn add_subsystem(&self, subsystem: Arc<Subsystem>) -> Result<(), Arc<Subsystem>> {
        let mut table = self.table();
        if table.contains_key(&subsystem.nqn) || subsystem.nqn == self.discovery.nqn {
            return Err(subsystem);
        }
        table.insert(subsystem.nqn.clone(), subsystem);
        self.genctr.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stops serving subsystem `nqn`: new Connects to it are refused; hosts
    /// already connected keep their controllers until they disconnect.
    pub fn remove_subsystem(&self, nqn: &str) -> Option<Arc<Subsystem>> {
        let removed = self.table().remove(nqn);
        if removed.is_some() {
            self.genctr.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    pub fn listeners(&self) -> &[SocketAddr] {
        &self.listeners
    }

    /// Records that the listeners changed (they are fixed at start today).
    pub fn set_listeners(&mut self, listeners: Vec<SocketAddr>) {
        self.listeners = listeners;
        self.genctr.fetch_add(1, Ordering::Relaxed);
    }

    pub fn discovery_generation(&self) -> u64 {
        self.genctr.load(Ordering::Relaxed)
    }
}
