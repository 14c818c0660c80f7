//! The appliance's live state as the management plane sees it: every served
//! volume (from the configuration file or created over RPC), its subsystem
//! on the running NVMe/TCP target, its views, its retention policy, and the
//! operations that change them. The JSON-RPC methods are thin wrappers over
//! these (see `rpc::methods`); the results are the RPC's result objects.
//!
//! - [`lifecycle`]: create and delete volumes (files, format, catalog, subsystem).
//! - [`views`]: read-only namespaces at a point.
//! - [`points`]: listing, resolving and marking points; reading bytes at a point.
//! - [`export`]: a sparse raw image at a point, written by the server.
//! - [`stats`]: journal fill, sync lag, retention window, pool use.
//!
//! Invariants: a volume is in exactly one state — creating, active or
//! deleting — and changes state only under the `volumes` lock, so a view or
//! a mark can never be added to a volume that is being deleted; nothing a
//! failed create made is left behind (file, catalog entry, subsystem).

pub mod error;
pub mod export;
pub mod lifecycle;
pub mod points;
pub mod prometheus;
pub mod retention;
pub mod stats;
pub mod views;

pub use error::ApplianceError;

use super::catalog::Catalog;
use super::data_dir::DataDir;
use crate::engine::{Retention, Volume, VolumeConfig};
use crate::lock_audit::AuditedMutex;
use crate::nvmf::target::namespace::Namespace;
use crate::nvmf::target::release::Releaser;
use crate::nvmf::target::subsystem::Subsystem;
use crate::nvmf::target::Target;
use crate::runtime::{HugepagePool, Peers};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};

/// Where a volume's definition lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The TOML configuration (or the zero-configuration `vol0`): not deletable here.
    Config,
    /// Created over RPC: in the catalog, its file under `<data-dir>/volumes/`.
    Created,
}

/// What serves a volume's namespace 1.
#[derive(Debug)]
pub enum Backing {
    /// A protected volume: points in time, views, marks.
    Journaled(Arc<Volume>),
    /// A plain pass-through namespace (journal = false): no history.
    Plain,
}

/// A read-only namespace of a volume at one point. It holds a pin on the
/// point, so the sync rests on it and voluntary retention keeps it for as
/// long as the view exists (see [`crate::engine::pin`]).
#[derive(Clone, Debug, Serialize)]
pub struct View {
    pub nsid: u32,
    pub point: points::PointInfo,
    pub created: String,
    #[serde(skip)]
    pub pin: Arc<crate::engine::PointPin>,
}

/// One served volume.
#[derive(Debug)]
pub struct Served {
    pub name: String,
    pub origin: Origin,
    pub backing: Backing,
    pub subsystem: Arc<Subsystem>,
    pub size_bytes: u64,
    pub block_size: u32,
    /// What namespace 1 is backed by (file, device or "ram").
    pub device: String,
    /// The volume's file under the data directory (created volumes).
    pub file: Option<PathBuf>,
    /// Set (under the appliance's `volumes` lock) when deletion starts.
    deleting: AtomicBool,
    views: AuditedMutex<BTreeMap<u32, View>>,
    retention: AuditedMutex<Retention>,
    /// The previous stats sample, for the rates.
    rate_sample: AuditedMutex<Option<stats::RateSample>>,
}

impl Served {
    /// A served volume exported by `subsystem` (namespace 1 already added).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        origin: Origin,
        backing: Backing,
        subsystem: Arc<Subsystem>,
        size_bytes: u64,
        block_size: u32,
        device: String,
        file: Option<PathBuf>,
        retention: Retention,
    ) -> Served {
        Served {
            name,
            origin,
            backing,
            subsystem,
            size_bytes,
            block_size,
            device,
            file,
            deleting: AtomicBool::new(false),
            views: AuditedMutex::new(BTreeMap::new()),
            retention: AuditedMutex::new(retention),
            rate_sample: AuditedMutex::new(None),
        }
    }

    /// The protected volume, or why there is none.
    pub fn volume(&self) -> Result<&Arc<Volume>, ApplianceError> {
        match &self.backing {
            Backing::Journaled(v) => Ok(v),
            Backing::Plain => Err(ApplianceError::NotJournaled(self.name.clone())),
        }
    }

    pub fn is_deleting(&self) -> bool {
        self.deleting.load(Ordering::Acquire)
    }

    /// Host controllers connected now (not torn down).
    pub fn hosts(&self) -> usize {
        self.subsystem
            .controllers()
            .iter()
            .filter(|c| !c.is_dead())
            .count()
    }

    fn views(&self) -> MutexGuard<'_, BTreeMap<u32, View>> {
        self.views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn retention(&self) -> MutexGuard<'_, Retention> {
        self.retention
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A volume's place in the appliance.
#[derive(Debug)]
enum Slot {
    /// `volume_create` is formatting it.
    Creating { size_bytes: u64, block_size: u32 },
    /// Served (active, or deleting when its flag says so).
    Ready(Arc<Served>),
}

/// How hosts reach a subsystem.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ConnectInfo {
    pub nqn: String,
    pub transport: String,
    /// `address:port` of every listener.
    pub addresses: Vec<String>,
    /// One `nvme connect` line per listener.
    pub nvme_connect: Vec<String>,
}

/// What the appliance is built from (see `service::run`).
#[derive(Debug)]
pub struct Parts {
    pub dir: Arc<DataDir>,
    pub target: Arc<Target>,
    pub releaser: Releaser,
    pub addrs: Vec<SocketAddr>,
    /// Writer rings of created volumes (one per reactor).
    pub rings: u16,
    /// Engine settings of created volumes (memory, worker pinning).
    pub engine: VolumeConfig,
    pub pool: Arc<HugepagePool>,
    pub peers: Option<Arc<Peers>>,
    pub catalog: Catalog,
    pub served: Vec<Served>,
}

/// See the module documentation.
pub struct Appliance {
    dir: Arc<DataDir>,
    target: Arc<Target>,
    releaser: Releaser,
    addrs: Vec<SocketAddr>,
    rings: u16,
    engine: VolumeConfig,
    pool: Arc<HugepagePool>,
    peers: Option<Arc<Peers>>,
    volumes: AuditedMutex<BTreeMap<String, Slot>>,
    /// The catalog as last saved; changed and saved under this lock.
    catalog: AuditedMutex<Catalog>,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Appliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appliance")
            .field("dir", &self.dir.root())
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl Appliance {
    pub fn new(parts: Parts) -> Appliance {
        let volumes = parts
            .served
            .into_iter()
            .map(|s| (s.name.clone(), Slot::Ready(Arc::new(s))))
            .collect();
        Appliance {
            dir: parts.dir,
            target: parts.target,
            releaser: parts.releaser,
            addrs: parts.addrs,
            rings: parts.rings,
            engine: parts.engine,
            pool: parts.pool,
            peers: parts.peers,
            volumes: AuditedMutex::new(volumes),
            catalog: AuditedMutex::new(parts.catalog),
            stopping: AtomicBool::new(false),
        }
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.volumes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Long operations (exports, waits) give up once this is set.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The served volume `name` in any state but creating (deleting included).
    fn served_any(&self, name: &str) -> Result<Arc<Served>, ApplianceError> {
        match self.slots().get(name) {
            Some(Slot::Ready(s)) => Ok(Arc::clone(s)),
            Some(Slot::Creating { .. }) => Err(ApplianceError::VolumeCreating(name.to_string())),
            None => Err(ApplianceError::UnknownVolume(name.to_string())),
        }
    }

    /// The active (not deleting) served volume `name`.
    pub fn served(&self, name: &str) -> Result<Arc<Served>, ApplianceError> {
        let s = self.served_any(name)?;
        if s.is_deleting() {
            return Err(ApplianceError::VolumeDeleting(name.to_string()));
        }
        Ok(s)
    }

    /// The protected volume `name`, active.
    pub fn volume(&self, name: &str) -> Result<(Arc<Served>, Arc<Volume>), ApplianceError> {
        let s = self.served(name)?;
        let v = Arc::clone(s.volume()?);
        Ok((s, v))
    }

    /// How hosts reach subsystem `nqn`.
    pub fn connect_info(&self, nqn: &str) -> ConnectInfo {
        ConnectInfo {
            nqn: nqn.to_string(),
            transport: "tcp".to_string(),
            addresses: self.addrs.iter().map(|a| a.to_string()).collect(),
            nvme_connect: self
                .addrs
                .iter()
                .map(|a| format!("nvme connect -t tcp -a {} -s {} -n {nqn}", a.ip(), a.port()))
                .collect(),
        }
    }

    /// The service's own facts: version, data directory, listeners, reactors.
    pub fn service_info(&self) -> serde_json::Value {
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "data_dir": self.dir.root(),
            "listeners": self.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "reactors": self.rings,
            "discovery_nqn": crate::nvmf::logpage::discovery::DISCOVERY_NQN,
        })
    }

    /// Takes every served volume out and stops exporting them (the service
    /// is stopping: the management socket and the reactors are down), so
    /// the caller holds the last reference to each volume and can close it.
    pub fn shut_down(&self) -> Vec<(String, Arc<Volume>)> {
        self.begin_stop();
        let slots = std::mem::take(&mut *self.slots());
        let mut volumes = Vec::new();
        for (name, slot) in slots {
            let Slot::Ready(served) = slot else { continue };
            self.target.remove_subsystem(&served.subsystem.nqn);
            let table = served.subsystem.namespaces.load();
            for ns in table.iter() {
                let _ = served.subsystem.namespaces.remove(ns.nsid);
            }
            if let Backing::Journaled(v) = &served.backing {
                volumes.push((name, Arc::clone(v)));
            }
        }
        volumes
    }
}

/// Namespace 1 of a served volume's subsystem.
pub fn live_namespace(volume: &Arc<Volume>) -> Namespace {
    let g = volume.geometry();
    Namespace {
        nsid: 1,
        kind: crate::nvmf::target::namespace::NsKind::Live(Arc::clone(volume)),
        block_size: g.block_size,
        blocks: g.volume_blocks,
        uuid: volume.uuid(),
    }
}

/// The subsystem that exports volume `name` (serial from its uuid).
pub fn subsystem_for(name: &str, uuid: [u8; 16], allowed_hosts: Vec<String>) -> Subsystem {
    let serial: String = uuid.iter().take(10).map(|b| format!("{b:02x}")).collect();
    Subsystem::new(
        crate::nvmf::target::subsystem::volume_nqn(name),
        crate::nvmf::target::subsystem::SubsystemKind::Nvm,
        serial,
        allowed_hosts,
    )
}
