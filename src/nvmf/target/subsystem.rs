//! Subsystems: one per protected volume (`nqn.2026-11.io.rewind:<volume>`),
//! plus the discovery subsystem every target answers on.
//!
//! A subsystem owns its namespace table, the hosts allowed to connect (empty:
//! any host) and the list of controllers to notify when namespaces change.
//!
//! Invariant: a namespace change is published before any controller is told
//! about it, so a host reacting to the notice sees the new table.

use super::controller::Controller;
use super::namespace::{Namespace, NsChangeError, NsSlot};
use crate::lock_audit::AuditedMutex;
use std::sync::{Arc, Weak};

/// NQN prefix of the subsystems this appliance creates.
pub const NQN_PREFIX: &str = "nqn.2026-11.io.rewind:";

/// The NQN of volume `name`'s subsystem.
pub fn volume_nqn(name: &str) -> String {
    format!("{NQN_PREFIX}{name}")
}

/// What a subsystem serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubsystemKind {
    /// I/O controllers over namespaces.
    Nvm,
    /// The discovery service: a log of the other subsystems.
    Discovery,
}

/// One NVM subsystem.
#[derive(Debug)]
pub struct Subsystem {
    pub nqn: String,
    pub kind: SubsystemKind,
    /// Serial number reported in Identify Controller (at most 20 ASCII bytes).
    pub serial: String,
    /// Host NQNs allowed to connect; empty means any.
    pub allowed_hosts: Vec<String>,
    pub namespaces: NsSlot,
    /// Host I/O on every namespace of the subsystem, counted per reactor.
    pub metrics: super::metrics::IoMetrics,
    controllers: AuditedMutex<Vec<Weak<Controller>>>,
}

impl Subsystem {
    pub fn new(
        nqn: String,
        kind: SubsystemKind,
        serial: String,
        allowed_hosts: Vec<String>,
    ) -> Subsystem {
        Subsystem {
            nqn,
            kind,
            serial,
            allowed_hosts,
            namespaces: NsSlot::default(),
            metrics: Default::default(),
            controllers: AuditedMutex::new(Vec::new()),
        }
    }

    /// Whether `hostnqn` may connect.
    pub fn allows(&self, hostnqn: &str) -> bool {
        self.allowed_hosts.is_empty() || self.allowed_hosts.iter().any(|h| h == hostnqn)
    }

    pub(crate) fn attach(&self, controller: &Arc<Controller>) {
        let mut list = self
            .controllers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|c| c.strong_count() > 0);
        list.push(Arc::downgrade(controller));
    }

    /// Live controllers of this subsystem.
    pub fn controllers(&self) -> Vec<Arc<Controller>> {
        let list = self
            .controllers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.iter().filter_map(Weak::upgrade).collect()
    }

    /// Adds a namespace and tells every controller (changed-namespace notice).
    pub fn add_namespace(&self, ns: Namespace) -> Result<(), NsChangeError> {
        let nsid = ns.nsid;
        self.namespaces.add(ns)?;
        self.notify(nsid);
        Ok(())
    }

    /// Removes a namespace and tells every controller.
    pub fn remove_namespace(&self, nsid: u32) -> Result<Arc<Namespace>, NsChangeError> {
        let ns = self.namespaces.remove(nsid)?;
        self.notify(nsid);
        Ok(ns)
    }

    fn notify(&self, nsid: u32) {
        for c in self.controllers() {
            c.namespace_changed(nsid);
        }
    }
}
