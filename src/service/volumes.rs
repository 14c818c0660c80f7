//! Opening each configured volume: the device (a file is created at the size
//! the layout needs), then `Volume::open`, or `Volume::format` when the
//! device holds no rewind volume yet.

use super::config::{parse_size, ConfigError, VolumeSpec};
use crate::device::uring::{FileDevice, FileOptions};
use crate::device::Device;
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
        source: crate::device::DeviceError,
    },
}

/// An opened volume and what happened on the way.
#[derive(Debug)]
pub struct Opened {
    pub volume: Volume,
    pub formatted: bool,
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

/// Opens (or formats) the volume `spec` with `rings` writer rings.
pub fn open_volume(spec: &VolumeSpec, rings: u16) -> Result<Opened, VolumeError> {
    let size = parse_size(&spec.size)?;
    let engine = |source| VolumeError::Engine {
        name: spec.name.clone(),
        source,
    };
    let geometry = Geometry::for_volume(spec.block_size, size, rings).map_err(engine)?;
    let layout = Layout::new(&geometry).map_err(engine)?;
    let is_file = !spec.device.starts_with("/dev/");
    let device = FileDevice::open(
        &spec.device,
        FileOptions {
            create_size: is_file.then_some(layout.end),
            ..FileOptions::default()
        },
    )
    .map_err(|source| VolumeError::Device {
        name: spec.name.clone(),
        device: spec.device.display().to_string(),
        source,
    })?;
    let device: Arc<dyn Device> = device;
    let config = volume_config();
    match Volume::open(Arc::clone(&device), config.clone()) {
        Ok((volume, report)) => {
            tracing::info!(volume = %spec.name, ?report, "volume opened");
            Ok(Opened {
                volume,
                formatted: false,
            })
        }
        Err(EngineError::BadMagic { .. }) => {
            tracing::info!(volume = %spec.name, device = %spec.device.display(), size, "formatting a new volume");
            let volume = Volume::format(device, &geometry, &FormatOptions::default(), config)
                .map_err(engine)?;
            Ok(Opened {
                volume,
                formatted: true,
            })
        }
        Err(e) => Err(engine(e)),
    }
}
