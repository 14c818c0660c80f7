//! Bringing up each configured volume: the device (a file is created at the
//! size the layout needs; "ram" is memory), then `Volume::open`, or
//! `Volume::format` when the device holds no rewind volume yet — or, with
//! `journal = false`, the device itself as a plain namespace.

use super::config::{parse_size, ConfigError, VolumeSpec, RAM_DEVICE};
use crate::device::ram::RamDevice;
use crate::device::uring::{FileDevice, FileOptions};
use crate::device::{Device, DeviceError};
use crate::engine::geometry::Layout;
use crate::engine::{EngineError, FormatOptions, Geometry, Volume, VolumeConfig};
use std::sync::Arc;

/// Why a volume could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("volume {name}: {source}")]
    Engine { name: String, source: EngineError },
    #[error("volume {name}: device {device}: {source}")]
    Device {
        name: String,
        device: String,
        source: DeviceError,
    },
}

/// What a configured volume became.
pub enum Opened {
    /// A protected volume (`formatted` on first start).
    Journaled {
        volume: Box<Volume>,
        formatted: bool,
    },
    /// A device exported without journaling: `blocks` of the spec's block size.
    Plain {
        device: Arc<dyn Device>,
        blocks: u64,
    },
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opened::Journaled { formatted, .. } => {
                write!(f, "Journaled {{ formatted: {formatted} }}")
            }
            Opened::Plain { device, blocks } => {
                write!(f, "Plain({}, {blocks} blocks)", device.describe())
            }
        }
    }
}

/// Engine settings for a served volume: the deepest queues the engine
/// allows, since every host queue on a reactor shares that reactor's ring
/// writer and device queue.
pub fn volume_config() -> VolumeConfig {
    VolumeConfig {
        queue_depth: crate::device::QUEUE_DEPTH_MAX,
        ..VolumeConfig::default()
    }
}

fn device_for(
    spec: &VolumeSpec,
    bytes: u64,
    hugepages: bool,
) -> Result<Arc<dyn Device>, VolumeError> {
    let failed = |source| VolumeError::Device {
        name: spec.name.clone(),
        device: spec.device.display().to_string(),
        source,
    };
    if spec.device.as_os_str() == RAM_DEVICE {
        let ram = RamDevice::new_resident(bytes, spec.block_size, hugepages).map_err(failed)?;
        tracing::info!(volume = %spec.name, device = %ram.describe(), "RAM device resident");
        let ram: Arc<dyn Device> = ram;
        return Ok(ram);
    }
    let is_file = !spec.device.starts_with("/dev/");
    let file: Arc<dyn Device> = FileDevice::open(
        &spec.device,
        FileOptions {
            create_size: is_file.then_some(bytes),
            ..FileOptions::default()
        },
    )
    .map_err(failed)?;
    Ok(file)
}

/// Opens (or formats) the volume `spec` with `rings` writer rings; a RAM
/// device takes reserved hugepages when `hugepages` and enough are free.
pub fn open_volume(
    spec: &VolumeSpec,
    rings: u16,
    hugepages: bool,
    mut config: VolumeConfig,
) -> Result<Opened, VolumeError> {
    config.progress = Some(super::progress::hook(&spec.name));
    let size = parse_size(&spec.size)?;
    let bs = u64::from(spec.block_size);
    if !spec.journal {
        let device = device_for(spec, size, hugepages)?;
        let blocks = device.info().size_bytes.min(size) / bs;
        tracing::info!(volume = %spec.name, device = %device.describe(), blocks, "plain namespace (no journaling)");
        return Ok(Opened::Plain { device, blocks });
    }
    let engine = |source| VolumeError::Engine {
        name: spec.name.clone(),
        source,
    };
    let geometry = Geometry::for_volume(spec.block_size, size, rings).map_err(engine)?;
    let layout = Layout::new(&geometry).map_err(engine)?;
    let device = device_for(spec, layout.end, hugepages)?;
    match Volume::open(Arc::clone(&device), config.clone()) {
        Ok((volume, report)) => {
            tracing::info!(volume = %spec.name, ?report, "volume opened");
            Ok(Opened::Journaled {
                volume: Box::new(volume),
                formatted: false,
            })
        }
        Err(EngineError::BadMagic { .. }) => {
            tracing::info!(volume = %spec.name, device = %device.describe(), size, "formatting a new volume");
            let volume = Volume::format(device, &geometry, &FormatOptions::default(), config)
                .map_err(engine)?;
            Ok(Opened::Journaled {
                volume: Box::new(volume),
                formatted: true,
            })
        }
        Err(e) => Err(engine(e)),
    }
}
