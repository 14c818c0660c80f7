//! `rewind serve` as a library: brings every configured volume up, exports
//! each as a subsystem on the reactors, starts the control socket, and tears
//! it all down in order (control, reactors, then volumes closed cleanly).
//!
//! Invariant: volumes are closed only after every reactor stopped, so no
//! acknowledged write is in flight when a volume's checkpoint is written.

use super::config::ServiceConfig;
use super::control::{ControlServer, Managed, StatsSource};
use super::volumes::{open_volume, volume_config, Opened};
use crate::engine::{ThreadHook, Volume};
use crate::nvmf::target::namespace::{Namespace, NsKind};
use crate::nvmf::target::server::Server;
use crate::nvmf::target::subsystem::{volume_nqn, Subsystem, SubsystemKind};
use crate::nvmf::target::{Limits, Target};
use crate::runtime::{pin_current_thread, HugepagePool, HugepageUse, IdleMode, ReactorConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// Most 2 MiB chunks of map-node memory the service maps (16 GiB).
const MAX_MAP_CHUNKS: usize = 8192;

/// A running service.
#[derive(Debug)]
pub struct Running {
    server: Server,
    control: Option<ControlServer>,
    volumes: HashMap<String, Arc<Volume>>,
    pool: Arc<HugepagePool>,
}

/// Starts the service described by `config` on `cores`.
pub fn start(config: &ServiceConfig, cores: Vec<usize>, idle: IdleMode) -> Result<Running, String> {
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
    let mut volumes = HashMap::new();
    let mut subsystems = Vec::new();
    for spec in &config.volumes {
        let sub_ns = |uuid: [u8; 16]| {
            let serial: String = uuid.iter().take(10).map(|b| format!("{b:02x}")).collect();
            Subsystem::new(
                volume_nqn(&spec.name),
                SubsystemKind::Nvm,
                serial,
                spec.allowed_hosts.clone(),
            )
        };
        let (sub, ns) = match open_volume(spec, rings, engine.clone()).map_err(|e| e.to_string())? {
            Opened::Journaled { volume, .. } => {
                let volume: Arc<Volume> = Arc::from(volume);
                let g = volume.geometry();
                let ns = Namespace {
                    nsid: 1,
                    kind: NsKind::Live(Arc::clone(&volume)),
                    block_size: g.block_size,
                    blocks: g.volume_blocks,
                    uuid: volume.uuid(),
                };
                volumes.insert(spec.name.clone(), Arc::clone(&volume));
                (sub_ns(volume.uuid()), ns)
            }
            Opened::Plain { device, blocks } => {
                let uuid = *uuid::Uuid::new_v4().as_bytes();
                let ns = Namespace {
                    nsid: 1,
                    kind: NsKind::Raw(device),
                    block_size: spec.block_size,
                    blocks,
                    uuid,
                };
                (sub_ns(uuid), ns)
            }
        };
        sub.namespaces.add(ns).map_err(|e| e.to_string())?;
        subsystems.push(sub);
    }
    let target = Target::new(Limits::default(), subsystems, Vec::new());
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
    let stats = stats_source(&server, &pool, &volumes);
    let control = ControlServer::start(
        &config.service.control_socket,
        Managed {
            target: Arc::clone(server.target()),
            volumes: volumes.clone(),
            stats,
        },
    )
    .map_err(|e| {
        format!(
            "control socket {}: {e}",
            config.service.control_socket.display()
        )
    })?;
    Ok(Running {
        server,
        control: Some(control),
        volumes,
        pool,
    })
}

fn stats_source(
    server: &Server,
    pool: &Arc<HugepagePool>,
    volumes: &HashMap<String, Arc<Volume>>,
) -> StatsSource {
    let peers = server.peers();
    let pool = Arc::clone(pool);
    let volumes = volumes.clone();
    Arc::new(move || {
        let reactors = peers.as_ref().map(|p| p.snapshot()).unwrap_or_default();
        let vols: serde_json::Map<String, serde_json::Value> = volumes
            .iter()
            .map(|(name, v)| {
                (
                    name.clone(),
                    serde_json::to_value(v.stats()).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect();
        serde_json::json!({
            "reactors": reactors,
            "hugepages": pool.stats(),
            "volumes": vols,
        })
        .to_string()
    })
}

impl Running {
    /// The `nvme connect` line of every exported subsystem and listener.
    pub fn connect_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for addr in self.server.local_addrs() {
            for s in self.server.target().subsystems() {
                lines.push(format!(
                    "nvme connect -t tcp -a {} -s {} -n {}",
                    addr.ip(),
                    addr.port(),
                    s.nqn
                ));
            }
        }
        lines
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn pool(&self) -> &Arc<HugepagePool> {
        &self.pool
    }

    /// Stops the control socket and the reactors, then closes every volume.
    pub fn stop(mut self) -> Result<(), String> {
        drop(self.control.take());
        self.server.stop().map_err(|e| e.to_string())?;
        for (name, volume) in self.volumes {
            match Arc::try_unwrap(volume) {
                Ok(v) => v.close().map_err(|e| format!("volume {name}: {e}"))?,
                Err(_) => {
                    tracing::warn!(volume = %name, "volume still referenced at exit; not closed cleanly")
                }
            }
        }
        Ok(())
    }
}
