//! `rewind serve` as a library: lock the data directory, bind the management
//! socket, bring every configured and every catalogued volume up, export each
//! as a subsystem on the reactors, answer JSON-RPC; and tear it all down in
//! order (management socket, reactors, then volumes closed cleanly).
//!
//! Invariant: volumes are closed only after every reactor and every
//! management request stopped, so no acknowledged write is in flight when a
//! volume's checkpoint is written; a start that fails leaves no socket file.

use super::appliance::{live_namespace, subsystem_for, Appliance, Backing, Origin, Parts, Served};
use super::catalog::Catalog;
use super::config::ServiceConfig;
use super::data_dir::DataDir;
use super::metrics::MetricsServer;
use super::rpc::server::{bind, RpcServer};
use super::volumes::{open_volume, volume_config, Opened};
use crate::device::uring::{FileDevice, FileOptions};
use crate::device::Device;
use crate::engine::{ThreadHook, Volume, VolumeConfig};
use crate::nvmf::target::namespace::{Namespace, NsKind};
use crate::nvmf::target::server::Server;
use crate::nvmf::target::{Limits, Target};
use crate::runtime::{pin_current_thread, HugepagePool, HugepageUse, IdleMode, ReactorConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// Most 2 MiB chunks of map-node memory the service maps (16 GiB).
const MAX_MAP_CHUNKS: usize = 8192;

/// A running service.
#[derive(Debug)]
pub struct Running {
    server: Server,
    rpc: Option<RpcServer>,
    metrics: Option<MetricsServer>,
    appliance: Arc<Appliance>,
    pool: Arc<HugepagePool>,
    socket: PathBuf,
    /// Held (locked) until the service stopped.
    _dir: Arc<DataDir>,
}

/// Starts the service described by `config` on `cores`.
pub fn start(config: &ServiceConfig, cores: Vec<usize>, idle: IdleMode) -> Result<Running, String> {
    let dir = Arc::new(DataDir::lock(&config.service.data_dir).map_err(|e| e.to_string())?);
    let socket = config.service.rpc_socket();
    let listener = bind(&socket).map_err(|e| e.to_string())?;
    let started = start_locked(config, cores, idle, &dir, &socket, listener);
    if started.is_err() {
        let _ = std::fs::remove_file(&socket);
    }
    started
}

fn start_locked(
    config: &ServiceConfig,
    cores: Vec<usize>,
    idle: IdleMode,
    dir: &Arc<DataDir>,
    socket: &std::path::Path,
    listener: std::os::unix::net::UnixListener,
) -> Result<Running, String> {
    let rings = u16::try_from(cores.len()).map_err(|_| "too many cores".to_string())?;
    let mode = if config.service.hugepages == "never" {
        HugepageUse::Never
    } else {
        HugepageUse::Prefer
    };
    let pool = Arc::new(HugepagePool::new(MAX_MAP_CHUNKS, mode));
    let mut engine = volume_config();
    engine.chunks = Arc::clone(&pool) as _;
    if let Some(core) = config.service.sync_core {
        engine.worker_start = Some(ThreadHook(Arc::new(move || {
            if let Err(e) = pin_current_thread(core) {
                tracing::warn!(core, error = %e, "sync worker not pinned");
            }
        })));
    }
    let catalog = Catalog::load(&dir.catalog_path()).map_err(|e| e.to_string())?;
    for c in &catalog.volumes {
        if config.volumes.iter().any(|v| v.name == c.name) {
            return Err(format!(
                "volume {:?} is both in the configuration file and in {} (created over RPC); rename one",
                c.name,
                dir.catalog_path().display()
            ));
        }
    }
    let known: Vec<String> = catalog.volumes.iter().map(|v| v.name.clone()).collect();
    for orphan in dir.sweep_orphans(&known) {
        tracing::warn!(file = %orphan.display(), "removed a volume file no catalog entry names (an interrupted create or delete)");
    }
    let with_retention = |name: &str| VolumeConfig {
        retention: catalog.retention.get(name).cloned().unwrap_or_default(),
        ..engine.clone()
    };
    let mut served = Vec::new();
    for spec in &config.volumes {
        served.push(open_configured(
            spec,
            rings,
            mode == HugepageUse::Prefer,
            with_retention(&spec.name),
        )?);
    }
    for entry in &catalog.volumes {
        let path = dir.volume_file(&entry.name);
        if !path.exists() {
            return Err(format!(
                "volume {:?} is in {} but its file {} is missing; restore the file or remove the entry",
                entry.name,
                dir.catalog_path().display(),
                path.display()
            ));
        }
        let device: Arc<dyn Device> = FileDevice::open(&path, FileOptions::default())
            .map_err(|e| format!("volume {}: {e}", entry.name))?;
        let config = with_retention(&entry.name);
        let retention = config.retention.clone();
        let (volume, report) =
            Volume::open(device, config).map_err(|e| format!("volume {}: {e}", entry.name))?;
        tracing::info!(volume = %entry.name, ?report, "volume opened");
        let volume = Arc::new(volume);
        let sub = subsystem_for(&entry.name, volume.uuid(), Vec::new());
        sub.namespaces
            .add(live_namespace(&volume))
            .map_err(|e| e.to_string())?;
        served.push(Served::new(
            entry.name.clone(),
            Origin::Created,
            Backing::Journaled(volume),
            Arc::new(sub),
            entry.size_bytes,
            entry.block_size,
            path.display().to_string(),
            Some(path),
            retention,
        ));
    }
    let target = Target::new(Limits::default(), Vec::new(), Vec::new());
    for s in &served {
        if target.add_subsystem(Arc::clone(&s.subsystem)).is_err() {
            return Err(format!("volume {:?} is defined twice", s.name));
        }
    }
    let reactors = ReactorConfig {
        idle,
        ..ReactorConfig::on_cores(cores)
    };
    let server = Server::start_with(
        target,
        &reactors,
        &config.listen_addrs(),
        Some(Arc::clone(&pool)),
    )
    .map_err(|e| e.to_string())?;
    let appliance = Arc::new(Appliance::new(Parts {
        dir: Arc::clone(dir),
        target: Arc::clone(server.target()),
        releaser: server.releaser(),
        addrs: server.local_addrs().to_vec(),
        rings,
        engine,
        pool: Arc::clone(&pool),
        peers: server.peers(),
        catalog,
        served,
    }));
    let rpc = RpcServer::start(socket, listener, Arc::clone(&appliance))
        .map_err(|e| format!("management socket {}: {e}", socket.display()))?;
    tracing::info!(socket = %socket.display(), data_dir = %dir.root().display(), "management socket ready");
    let metrics = if config.service.metrics {
        let addr = config.service.metrics_address;
        let m = MetricsServer::start(addr, Arc::clone(&appliance)).map_err(|e| {
            format!("metrics endpoint {addr}: {e} (choose another with --metrics-address, or --no-metrics)")
        })?;
        tracing::info!(address = %m.local_addr(), "metrics endpoint ready (GET /metrics)");
        Some(m)
    } else {
        None
    };
    Ok(Running {
        server,
        rpc: Some(rpc),
        metrics,
        appliance,
        pool,
        socket: socket.to_path_buf(),
        _dir: Arc::clone(dir),
    })
}

/// Opens (or formats on first start) a volume from the configuration file.
fn open_configured(
    spec: &super::VolumeSpec,
    rings: u16,
    hugepages: bool,
    config: VolumeConfig,
) -> Result<Served, String> {
    let retention = config.retention.clone();
    match open_volume(spec, rings, hugepages, config).map_err(|e| e.to_string())? {
        Opened::Journaled { volume, .. } => {
            let volume: Arc<Volume> = Arc::from(volume);
            let sub = subsystem_for(&spec.name, volume.uuid(), spec.allowed_hosts.clone());
            sub.namespaces
                .add(live_namespace(&volume))
                .map_err(|e| e.to_string())?;
            let g = volume.geometry();
            let (size, bs) = (g.volume_blocks * g.bs(), g.block_size);
            Ok(Served::new(
                spec.name.clone(),
                Origin::Config,
                Backing::Journaled(volume),
                Arc::new(sub),
                size,
                bs,
                spec.device.display().to_string(),
                None,
                retention,
            ))
        }
        Opened::Plain { device, blocks } => {
            let uuid = *uuid::Uuid::new_v4().as_bytes();
            let sub = subsystem_for(&spec.name, uuid, spec.allowed_hosts.clone());
            sub.namespaces
                .add(Namespace {
                    nsid: 1,
                    kind: NsKind::Raw(device),
                    block_size: spec.block_size,
                    blocks,
                    uuid,
                })
                .map_err(|e| e.to_string())?;
            Ok(Served::new(
                spec.name.clone(),
                Origin::Config,
                Backing::Plain,
                Arc::new(sub),
                blocks * u64::from(spec.block_size),
                spec.block_size,
                spec.device.display().to_string(),
                None,
                retention,
            ))
        }
    }
}

impl Running {
    /// What `rewind serve` prints once it is ready: the listeners, the
    /// management socket and the `nvme connect` line of every volume.
    pub fn ready_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .server
            .local_addrs()
            .iter()
            .map(|a| format!("listening on {a} (NVMe/TCP)"))
            .collect();
        if let Some(m) = &self.metrics {
            lines.push(format!("metrics http://{}/metrics", m.local_addr()));
        }
        lines.push(format!("management socket {}", self.socket.display()));
        for s in self.server.target().subsystems() {
            lines.extend(self.appliance.connect_info(&s.nqn).nvme_connect);
        }
        lines
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn pool(&self) -> &Arc<HugepagePool> {
        &self.pool
    }

    pub fn appliance(&self) -> &Arc<Appliance> {
        &self.appliance
    }

    /// Stops the management socket and the reactors, then closes every volume.
    pub fn stop(mut self) -> Result<(), String> {
        self.appliance.begin_stop();
        if let Some(m) = self.metrics.take() {
            m.stop();
        }
        if let Some(rpc) = self.rpc.take() {
            rpc.stop();
        }
        self.server.stop().map_err(|e| e.to_string())?;
        let volumes = self.appliance.shut_down();
        drop(self.appliance);
        let mut result = Ok(());
        for (name, volume) in volumes {
            match Arc::try_unwrap(volume) {
                Ok(v) => {
                    if let Err(e) = v.close() {
                        result = Err(format!("volume {name}: {e}"));
                    }
                }
                Err(_) => {
                    tracing::warn!(volume = %name, "volume still referenced at exit; not closed cleanly")
                }
            }
        }
        result
    }
}
