//! Controllers: the state one host association shares across its queues.
//!
//! A controller is created by the admin queue's Connect (with a dynamic
//! controller ID) and found again by each I/O queue's Connect through the
//! [`Registry`]. Its admin queue and I/O queues may live on different
//! reactors, so everything here is atomics (read per command at most once) or
//! control-path locks (Connect, namespace changes, log pages).
//!
//! Invariants: CSTS.RDY follows CC.EN (we are ready at once); a controller
//! marked dead (keep-alive expiry, admin queue gone, shutdown) never becomes
//! alive again and every queue of it closes; controller IDs are unique among
//! live controllers and never 0xFFFF/0xFFFE.

use super::subsystem::Subsystem;
use crate::lock_audit::AuditedMutex;
use crate::nvmf::properties::{Cc, Csts};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Largest changed-namespace list kept before it reports overflow.
const CHANGED_NS_MAX: usize = 1024;

/// One controller (host association).
#[derive(Debug)]
pub struct Controller {
    pub cntlid: u16,
    pub subsystem: Arc<Subsystem>,
    pub hostnqn: String,
    pub hostid: [u8; 16],
    /// Keep-alive timeout in ms (0: none).
    kato_ms: AtomicU32,
    cc: AtomicU32,
    csts: AtomicU32,
    /// I/O queue pairs granted by Set Features (Number of Queues).
    io_queues: AtomicU32,
    /// Async event configuration (Set Features 0Bh).
    aec: AtomicU32,
    /// Volatile write cache enabled (Set Features 06h).
    vwc: AtomicBool,
    /// Last keep-alive (or Connect), ns since the registry's epoch.
    last_keep_alive: AtomicU64,
    dead: AtomicBool,
    /// A changed-namespace notice waits for an AER.
    notice_pending: AtomicBool,
    changed: AuditedMutex<Vec<u32>>,
    epoch: Instant,
}

impl Controller {
    pub fn kato_ms(&self) -> u32 {
        self.kato_ms.load(Ordering::Relaxed)
    }
    pub fn set_kato_ms(&self, ms: u32) {
        self.kato_ms.store(ms, Ordering::Relaxed);
        self.keep_alive();
    }
    pub fn cc(&self) -> Cc {
        Cc::from_raw(self.cc.load(Ordering::Acquire))
    }
    pub fn csts(&self) -> Csts {
        Csts::from_raw(self.csts.load(Ordering::Acquire))
    }
    /// Applies a Property Set of CC: enable makes the controller ready,
    /// disable makes it not ready, a shutdown request completes at once.
    pub fn set_cc(&self, cc: Cc) {
        self.cc.store(cc.raw(), Ordering::Release);
        let mut csts = Csts::from_raw(0).with_rdy(cc.en());
        if cc.shn() != Cc::SHN_NONE {
            csts = csts.with_shst(Csts::SHST_COMPLETE);
        }
        if self.dead.load(Ordering::Acquire) {
            csts = csts.with_cfs(1);
        }
        self.csts.store(csts.raw(), Ordering::Release);
    }
    /// Enabled and ready for I/O.
    pub fn ready(&self) -> bool {
        self.csts().ready() && !self.is_dead()
    }
    pub fn io_queues(&self) -> u32 {
        self.io_queues.load(Ordering::Relaxed)
    }
    pub fn set_io_queues(&self, n: u32) {
        self.io_queues.store(n, Ordering::Relaxed);
    }
    pub fn aec(&self) -> u32 {
        self.aec.load(Ordering::Relaxed)
    }
    pub fn set_aec(&self, v: u32) {
        self.aec.store(v, Ordering::Relaxed);
    }
    pub fn vwc(&self) -> bool {
        self.vwc.load(Ordering::Relaxed)
    }
    pub fn set_vwc(&self, on: bool) {
        self.vwc.store(on, Ordering::Relaxed);
    }
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    /// Restarts the keep-alive timer.
    pub fn keep_alive(&self) {
        self.last_keep_alive.store(self.now_ns(), Ordering::Relaxed);
    }
    /// Whether the keep-alive timer ran out (never with KATO 0).
    pub fn keep_alive_expired(&self) -> bool {
        let kato = u64::from(self.kato_ms());
        if kato == 0 {
            return false;
        }
        // The host sends keep-alives at KATO/2 (Linux) or so; allow a
        // little slack on top of KATO for a busy reactor.
        let limit = kato * 1_000_000 + 500_000_000;
        self.now_ns()
            .saturating_sub(self.last_keep_alive.load(Ordering::Relaxed))
            > limit
    }
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }
    /// Ends the association: every queue of this controller closes.
    pub fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        let csts = self.csts().with_cfs(1);
        self.csts.store(csts.raw(), Ordering::Release);
    }
    /// Records that namespace `nsid` changed (added, removed).
    pub fn namespace_changed(&self, nsid: u32) {
        let mut list = self
            .changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.len() < CHANGED_NS_MAX && !list.contains(&nsid) {
            list.push(nsid);
        } else if list.len() >= CHANGED_NS_MAX {
            list.clear();
            list.push(u32::MAX);
        }
        self.notice_pending.store(true, Ordering::Release);
    }
    /// Takes a pending changed-namespace notice if the host enabled them.
    pub fn take_notice(&self) -> bool {
        self.notice_pending.load(Ordering::Acquire)
            && self.aec() & crate::nvmf::identify::oaes::NS_ATTRIBUTE_NOTICES != 0
            && self.notice_pending.swap(false, Ordering::AcqRel)
    }
    /// Reads (and, unless `retain`, clears) the changed-namespace list.
    pub fn changed_namespaces(&self, retain: bool) -> Vec<u32> {
        let mut list = self
            .changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = list.clone();
        out.sort_unstable();
        if !retain {
            list.clear();
        }
        out
    }
}

/// Why a Connect could not create or find a controller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("no free controller ID")]
    Full,
    #[error("no controller {0}")]
    NoController(u16),
    #[error("controller {0} belongs to another host or subsystem")]
    Mismatch(u16),
}

/// Every live controller of a target, by controller ID.
#[derive(Debug)]
pub struct Registry {
    controllers: AuditedMutex<HashMap<u16, Arc<Controller>>>,
    next: AtomicU32,
    epoch: Instant,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            controllers: AuditedMutex::new(HashMap::new()),
            next: AtomicU32::new(1),
            epoch: Instant::now(),
        }
    }
}

impl Registry {
    /// Creates a controller for an admin queue Connect.
    pub fn create(
        &self,
        subsystem: &Arc<Subsystem>,
        hostnqn: &str,
        hostid: [u8; 16],
        kato_ms: u32,
        max_io_queues: u16,
    ) -> Result<Arc<Controller>, RegistryError> {
        let mut map = self
            .controllers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, c| !c.is_dead());
        // IDs 1..=0xFFEF; 0xFFF0.. are reserved (0xFFFF dynamic, 0xFFFE static).
        let cntlid = (0..0xFFEF)
            .map(|i| {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                ((n + i) % 0xFFEF + 1) as u16
            })
            .find(|id| !map.contains_key(id))
            .ok_or(RegistryError::Full)?;
        let controller = Arc::new(Controller {
            cntlid,
            subsystem: Arc::clone(subsystem),
            hostnqn: hostnqn.to_string(),
            hostid,
            kato_ms: AtomicU32::new(kato_ms),
            cc: AtomicU32::new(0),
            csts: AtomicU32::new(0),
            // Until the host sets Number of Queues, every queue we allow.
            io_queues: AtomicU32::new(u32::from(max_io_queues)),
            aec: AtomicU32::new(0),
            vwc: AtomicBool::new(true),
            last_keep_alive: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            notice_pending: AtomicBool::new(false),
            changed: AuditedMutex::new(Vec::new()),
            epoch: self.epoch,
        });
        controller.keep_alive();
        map.insert(cntlid, Arc::clone(&controller));
        subsystem.attach(&controller);
        Ok(controller)
    }

    /// Finds the controller an I/O queue Connect names.
    pub fn find(
        &self,
        cntlid: u16,
        subnqn: &str,
        hostnqn: &str,
    ) -> Result<Arc<Controller>, RegistryError> {
        let map = self
            .controllers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = map
            .get(&cntlid)
            .filter(|c| !c.is_dead())
            .ok_or(RegistryError::NoController(cntlid))?;
        if c.subsystem.nqn != subnqn || c.hostnqn != hostnqn {
            return Err(RegistryError::Mismatch(cntlid));
        }
        Ok(Arc::clone(c))
    }

    /// Forgets a controller (its admin queue closed).
    pub fn remove(&self, cntlid: u16) {
        let mut map = self
            .controllers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.remove(&cntlid) {
            c.kill();
        }
    }

    /// Live controllers.
    pub fn len(&self) -> usize {
        let map = self
            .controllers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().filter(|c| !c.is_dead()).count()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
