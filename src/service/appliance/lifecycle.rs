//! Creating and deleting volumes at run time.
//!
//! Create: reserve the name (state creating) → check the free space with
//! statvfs → create `<data-dir>/volumes/<name>.img` and allocate it whole
//! (fallocate; a full disk fails here, not later under a host's writes) →
//! format → add the catalog entry → add the subsystem → active. A failure at
//! any step undoes the steps before it.
//!
//! Delete: mark deleting (no new views or marks) → hide the subsystem from
//! new Connects → if hosts are connected: disconnect them (`force`), or wait
//! up to `wait_s` for them to leave, or refuse — a refusal restores the
//! volume as it was → drop the catalog entry → remove every view and the live
//! namespace → make every reactor let go of the volume → close it → remove
//! its file. Views are torn down by the delete; hosts are never cut off
//! unless asked.
//!
//! Invariant: a volume is in the catalog exactly when its file holds a
//! formatted volume the appliance serves (or served before a crash; files
//! without an entry are swept at start).

use super::points::PointInfo;
use super::{
    live_namespace, subsystem_for, Appliance, ApplianceError, Backing, Origin, Served, Slot,
};
use crate::device::uring::{FileDevice, FileOptions};
use crate::device::Device;
use crate::engine::geometry::Layout;
use crate::engine::{FormatOptions, Geometry, Volume};
use crate::service::catalog::CatalogEntry;
use crate::service::config::check_volume_name;
use crate::service::data_dir::free_bytes;
use crate::service::time_spec::now_ns;
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a deleted volume may take to be let go of by every reactor and
/// every in-flight management request.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The result of `volume_create` and the body of `volume_info`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeSummary {
    pub name: String,
    pub nqn: String,
    /// `creating`, `active` or `deleting`.
    pub state: String,
    /// `config` or `created`.
    pub origin: String,
    pub journal: bool,
    pub size_bytes: u64,
    pub block_size: u32,
    pub device: String,
    pub views: usize,
    pub hosts: usize,
}

/// The result of `volume_delete`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deleted {
    pub name: String,
    pub views_removed: usize,
    pub hosts_disconnected: usize,
}

/// The result of `volume_info`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeInfo {
    #[serde(flatten)]
    pub summary: VolumeSummary,
    pub uuid: Option<String>,
    /// Sizes chosen at format time (journaled volumes).
    pub geometry: Option<Geometry>,
    /// Bytes the volume's device must hold (mirror, journals, metadata).
    pub device_bytes: Option<u64>,
    pub oldest_point: Option<PointInfo>,
    pub newest_point: Option<PointInfo>,
    pub retention: Option<crate::engine::Retention>,
    pub connect: super::ConnectInfo,
}

/// Allocates `len` bytes of `file` (refusing a full filesystem).
fn allocate(file: &std::fs::File, len: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid open descriptor and in-range arguments.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // A filesystem without fallocate: a sparse file (the free-space
        // check still ran).
        return file.set_len(len as u64);
    }
    Err(e)
}

impl Appliance {
    fn summary(&self, s: &Served) -> VolumeSummary {
        VolumeSummary {
            name: s.name.clone(),
            nqn: s.subsystem.nqn.clone(),
            state: if s.is_deleting() {
                "deleting"
            } else {
                "active"
            }
            .into(),
            origin: match s.origin {
                Origin::Config => "config",
                Origin::Created => "created",
            }
            .into(),
            journal: matches!(s.backing, Backing::Journaled(_)),
            size_bytes: s.size_bytes,
            block_size: s.block_size,
            device: s.device.clone(),
            views: s.views().len(),
            hosts: s.hosts(),
        }
    }

    /// Every volume, by name.
    pub fn volume_list(&self) -> Vec<VolumeSummary> {
        self.slots()
            .iter()
            .map(|(name, slot)| match slot {
                Slot::Ready(s) => self.summary(s),
                Slot::Creating {
                    size_bytes,
                    block_size,
                } => VolumeSummary {
                    name: name.clone(),
                    nqn: crate::nvmf::target::subsystem::volume_nqn(name),
                    state: "creating".into(),
                    origin: "created".into(),
                    journal: true,
                    size_bytes: *size_bytes,
                    block_size: *block_size,
                    device: self.dir.volume_file(name).display().to_string(),
                    views: 0,
                    hosts: 0,
                },
            })
            .collect()
    }

    /// Everything about volume `name`.
    pub fn volume_info(&self, name: &str) -> Result<VolumeInfo, ApplianceError> {
        let s = self.served_any(name)?;
        let (uuid, geometry, device_bytes, oldest, newest) = match &s.backing {
            Backing::Journaled(v) => {
                let stats = v.stats();
                let oldest = v
                    .resolve(&crate::engine::At::Seq(stats.oldest_point_seq))
                    .ok();
                let newest = v.resolve(&crate::engine::At::Now).ok();
                (
                    Some(uuid::Uuid::from_bytes(v.uuid()).to_string()),
                    Some(v.geometry().clone()),
                    Some(v.layout().end),
                    oldest.as_ref().map(PointInfo::from),
                    newest.as_ref().map(PointInfo::from),
                )
            }
            Backing::Plain => (None, None, None, None, None),
        };
        Ok(VolumeInfo {
            summary: self.summary(&s),
            uuid,
            geometry,
            device_bytes,
            oldest_point: oldest,
            newest_point: newest,
            retention: matches!(s.backing, Backing::Journaled(_)).then(|| s.retention().clone()),
            connect: self.connect_info(&s.subsystem.nqn),
        })
    }

    /// Creates, formats and exports volume `name` of `size_bytes`.
    pub fn volume_create(
        &self,
        name: &str,
        size_bytes: u64,
        block_size: u32,
    ) -> Result<VolumeInfo, ApplianceError> {
        check_volume_name(name).map_err(ApplianceError::InvalidParams)?;
        if !matches!(block_size, 512 | 4096) {
            return Err(ApplianceError::InvalidParams(format!(
                "block_size {block_size}: use 512 or 4096"
            )));
        }
        if size_bytes == 0 || !size_bytes.is_multiple_of(u64::from(block_size)) {
            return Err(ApplianceError::InvalidParams(format!(
                "size {size_bytes}: a positive multiple of the block size {block_size}"
            )));
        }
        let geometry = Geometry::for_volume(block_size, size_bytes, self.rings)
            .and_then(|g| Layout::new(&g).map(|l| (g, l)))
            .map_err(|e| ApplianceError::InvalidParams(format!("volume {name:?}: {e}")));
        let (geometry, layout) = geometry?;
        {
            let mut slots = self.slots();
            if self.is_stopping() {
                return Err(ApplianceError::Stopping);
            }
            if slots.contains_key(name) {
                return Err(ApplianceError::VolumeExists(name.to_string()));
            }
            slots.insert(
                name.to_string(),
                Slot::Creating {
                    size_bytes,
                    block_size,
                },
            );
        }
        let result = self.build_volume(name, size_bytes, &geometry, layout.end);
        let mut slots = self.slots();
        match result {
            Ok(served) => {
                let served = Arc::new(served);
                slots.insert(name.to_string(), Slot::Ready(Arc::clone(&served)));
                drop(slots);
                tracing::info!(volume = name, size_bytes, "volume created");
                self.volume_info(name)
            }
            Err(e) => {
                slots.remove(name);
                Err(e)
            }
        }
    }

    /// The steps of a create after the name is reserved; undoes its own
    /// steps on failure.
    fn build_volume(
        &self,
        name: &str,
        size_bytes: u64,
        geometry: &Geometry,
        device_bytes: u64,
    ) -> Result<Served, ApplianceError> {
        let dir = self.dir.volumes_dir();
        let io = |what: String, e: std::io::Error| ApplianceError::Io {
            what,
            detail: e.to_string(),
        };
        let available =
            free_bytes(&dir).map_err(|e| io(format!("statvfs {}", dir.display()), e))?;
        let disk_full = |available| ApplianceError::DiskFull {
            volume: name.to_string(),
            dir: dir.display().to_string(),
            needed: device_bytes,
            available,
        };
        if device_bytes > available {
            return Err(disk_full(available));
        }
        let path = self.dir.volume_file(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io(format!("create {}", path.display()), e))?;
        // From here on the file is ours to remove on failure.
        let undo_file = |e: ApplianceError| {
            let _ = std::fs::remove_file(&path);
            e
        };
        if let Err(e) = allocate(&file, device_bytes) {
            let err = if e.raw_os_error() == Some(libc::ENOSPC) {
                disk_full(free_bytes(&dir).unwrap_or(0))
            } else {
                io(format!("allocate {}", path.display()), e)
            };
            return Err(undo_file(err));
        }
        drop(file);
        let volume = self
            .format_file(&path, geometry)
            .map_err(|e| undo_file(ApplianceError::engine(name, e)))?;
        let volume = Arc::new(volume);
        let close = |volume: Arc<Volume>, e: ApplianceError| {
            if let Ok(v) = Arc::try_unwrap(volume) {
                let _ = v.close();
            }
            undo_file(e)
        };
        let sub = subsystem_for(name, volume.uuid(), Vec::new());
        if let Err(e) = sub.namespaces.add(live_namespace(&volume)) {
            return Err(close(volume, ApplianceError::InvalidParams(e.to_string())));
        }
        let sub = Arc::new(sub);
        {
            let mut catalog = self.catalog();
            let mut next = catalog.clone();
            next.volumes.push(CatalogEntry {
                name: name.to_string(),
                size_bytes,
                block_size: geometry.block_size,
                created_ns: now_ns(),
            });
            if let Err(e) = next.save(&self.dir.catalog_path()) {
                drop(sub);
                return Err(close(
                    volume,
                    ApplianceError::Io {
                        what: "update the catalog".into(),
                        detail: e.to_string(),
                    },
                ));
            }
            *catalog = next;
        }
        if let Err(sub) = self.target.add_subsystem(Arc::clone(&sub)) {
            // Only a name clash with a configured subsystem can do this.
            self.forget_in_catalog(name);
            drop(sub);
            return Err(close(
                volume,
                ApplianceError::VolumeExists(name.to_string()),
            ));
        }
        Ok(Served::new(
            name.to_string(),
            Origin::Created,
            Backing::Journaled(volume),
            sub,
            size_bytes,
            geometry.block_size,
            path.display().to_string(),
            Some(path.clone()),
            self.engine.retention.clone(),
        ))
    }

    fn format_file(&self, path: &Path, geometry: &Geometry) -> crate::engine::Result<Volume> {
        let device: Arc<dyn Device> = FileDevice::open(path, FileOptions::default())?;
        // The file was just allocated: it reads as zeroes already.
        Volume::format(
            device,
            geometry,
            &FormatOptions { zero_mirror: false },
            self.engine.clone(),
        )
    }

    /// Drops `name` from the catalog (entry and retention); logs a failure.
    fn forget_in_catalog(&self, name: &str) -> bool {
        let mut catalog = self.catalog();
        let mut next = catalog.clone();
        next.volumes.retain(|v| v.name != name);
        next.retention.remove(name);
        match next.save(&self.dir.catalog_path()) {
            Ok(()) => {
                *catalog = next;
                true
            }
            Err(e) => {
                tracing::error!(volume = name, error = %e, "cannot update the catalog");
                false
            }
        }
    }

    /// Deletes created volume `name` (see the module documentation).
    pub fn volume_delete(
        &self,
        name: &str,
        force: bool,
        wait: Duration,
    ) -> Result<Deleted, ApplianceError> {
        let served = {
            let slots = self.slots();
            let served = match slots.get(name) {
                Some(Slot::Ready(s)) => Arc::clone(s),
                Some(Slot::Creating { .. }) => {
                    return Err(ApplianceError::VolumeCreating(name.to_string()))
                }
                None => return Err(ApplianceError::UnknownVolume(name.to_string())),
            };
            if served.origin == Origin::Config {
                return Err(ApplianceError::ConfiguredVolume(name.to_string()));
            }
            if served
                .deleting
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                return Err(ApplianceError::VolumeDeleting(name.to_string()));
            }
            served
        };
        let nqn = served.subsystem.nqn.clone();
        let restore = |e: ApplianceError| {
            if self
                .target
                .add_subsystem(Arc::clone(&served.subsystem))
                .is_err()
            {
                tracing::error!(volume = name, "cannot restore the subsystem");
            }
            served
                .deleting
                .store(false, std::sync::atomic::Ordering::Release);
            e
        };
        self.target.remove_subsystem(&nqn);
        let hosts = served.hosts();
        let mut disconnected = 0;
        if hosts > 0 && force {
            for c in served.subsystem.controllers() {
                if !c.is_dead() {
                    c.kill();
                    disconnected += 1;
                }
            }
            tracing::warn!(
                volume = name,
                hosts = disconnected,
                "hosts disconnected for deletion"
            );
        } else if hosts > 0 {
            let deadline = Instant::now() + wait;
            while served.hosts() > 0 {
                if Instant::now() >= deadline {
                    return Err(restore(ApplianceError::HostsConnected {
                        volume: name.to_string(),
                        nqn,
                        hosts: served.hosts(),
                        waited_s: wait.as_secs_f64(),
                    }));
                }
                if self.is_stopping() {
                    return Err(restore(ApplianceError::Stopping));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !self.forget_in_catalog(name) {
            return Err(restore(ApplianceError::Io {
                what: format!("delete volume {name:?}"),
                detail: "cannot update the catalog (see the service log)".into(),
            }));
        }
        // Past this point the volume is gone for good (a crash from here on
        // leaves only a file the next start sweeps).
        let views_removed = {
            let mut views = served.views();
            for nsid in views.keys() {
                let _ = served.subsystem.namespaces.remove(*nsid);
            }
            let n = views.len();
            views.clear();
            n
        };
        let _ = served.subsystem.namespaces.remove(1);
        let finished = self.finish_delete(name, &served);
        // The name is free again only once the file is gone (or the delete
        // gave up; then the next start sweeps the file).
        self.slots().remove(name);
        finished?;
        if let Ok(served) = Arc::try_unwrap(served) {
            if let Backing::Journaled(volume) = served.backing {
                if let Ok(volume) = Arc::try_unwrap(volume) {
                    if let Err(e) = volume.close() {
                        tracing::warn!(volume = name, error = %e, "deleted volume closed with an error");
                    }
                }
            }
        }
        tracing::info!(volume = name, views_removed, "volume deleted");
        Ok(Deleted {
            name: name.to_string(),
            views_removed,
            hosts_disconnected: disconnected,
        })
    }

    /// Waits until nothing but `served` uses the detached volume, then
    /// removes its file (the space is freed when the volume closes).
    fn finish_delete(&self, name: &str, served: &Arc<Served>) -> Result<(), ApplianceError> {
        let stuck = |what: &str| ApplianceError::Io {
            what: format!("delete volume {name:?}"),
            detail: format!(
                "{what}; its file stays until the next start of rewind serve removes it"
            ),
        };
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        // Queues of killed or departing hosts hold the subsystem until they close.
        while !served.subsystem.controllers().is_empty() {
            if Instant::now() >= deadline {
                return Err(stuck("host queues did not close"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Backing::Journaled(volume) = &served.backing {
            if !self.releaser.release(volume, RELEASE_TIMEOUT) {
                return Err(stuck("a reactor did not let go of the volume"));
            }
            // Other management requests (an export, a read) finish or notice.
            while Arc::strong_count(volume) > 1 {
                if Instant::now() >= deadline {
                    return Err(stuck("the volume is still in use"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(path) = &served.file {
            std::fs::remove_file(path)
                .map_err(|e| stuck(&format!("cannot remove {}: {e}", path.display())))?;
        }
        Ok(())
    }
}
