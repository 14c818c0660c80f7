//! Every way a management request on the appliance can be refused, each
//! with what the operator needs to act on it. The JSON-RPC layer gives each
//! variant its error code (`rpc::error`); the CLI prints the message as is.
//!
//! Invariant: every message is one line and names the volume, point or path
//! it is about.

use crate::engine::EngineError;
use crate::service::image::ImageError;
use crate::service::time_spec::TimeError;

/// Why a management request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    #[error("no volume named {0:?}")]
    UnknownVolume(String),
    #[error("a volume named {0:?} already exists")]
    VolumeExists(String),
    #[error("volume {0:?} is being created")]
    VolumeCreating(String),
    #[error("volume {0:?} is being deleted")]
    VolumeDeleting(String),
    #[error("volume {volume:?} has {hosts} connected host controller(s){waited}; disconnect them (nvme disconnect -n {nqn}), pass --wait, or --force", waited = if *waited_s > 0.0 { format!(" after waiting {waited_s} s") } else { String::new() })]
    HostsConnected {
        volume: String,
        nqn: String,
        hosts: usize,
        waited_s: f64,
    },
    #[error("volume {0:?} comes from the configuration file; remove it there and restart")]
    ConfiguredVolume(String),
    #[error("volume {0:?} is a plain namespace (journal = false): it has no points in time")]
    NotJournaled(String),
    #[error("{0}")]
    InvalidParams(String),
    #[error("{0}")]
    Time(#[from] TimeError),
    #[error("not enough free space for volume {volume:?}: it needs {needed} bytes, {dir} has {available} free")]
    DiskFull {
        volume: String,
        dir: String,
        needed: u64,
        available: u64,
    },
    #[error("volume {volume:?} has no view with namespace ID {nsid}")]
    UnknownView { volume: String, nsid: u32 },
    #[error("volume {volume:?}: {detail}")]
    InFuture { volume: String, detail: String },
    #[error("volume {volume:?}: {detail}")]
    BeforeRetention { volume: String, detail: String },
    #[error("volume {volume:?}: no retained point carries the label {label:?}")]
    UnknownLabel { volume: String, label: String },
    #[error("volume {volume:?}: point seq {wanted} is no longer retained (a sync coalesced it or retention expired it; seq {served} would be served instead) — use a bookmark (rewind mark) for exports that must not move")]
    PointMoved {
        volume: String,
        wanted: u64,
        served: u64,
    },
    #[error("volume {volume:?} has failed: {detail}")]
    VolumeFailed { volume: String, detail: String },
    #[error("volume {volume:?} is busy: {detail}; try again")]
    EngineBusy { volume: String, detail: String },
    #[error("volume {volume:?}: {source}")]
    Engine { volume: String, source: EngineError },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{what}: {detail}")]
    Io { what: String, detail: String },
    #[error("the service is stopping")]
    Stopping,
}

impl ApplianceError {
    /// The engine's refusal of a request on `volume`, sorted into the
    /// variants an operator can act on.
    pub fn engine(volume: &str, e: EngineError) -> ApplianceError {
        let volume = volume.to_string();
        match e {
            EngineError::BeforeRetention { .. }
            | EngineError::TimeBeforeRetention { .. }
            | EngineError::Expired(_) => ApplianceError::BeforeRetention {
                detail: e.to_string(),
                volume,
            },
            EngineError::UnknownLabel(label) => ApplianceError::UnknownLabel { volume, label },
            EngineError::InFuture { .. } => ApplianceError::InFuture {
                detail: e.to_string(),
                volume,
            },
            EngineError::Failed(detail) => ApplianceError::VolumeFailed { volume, detail },
            EngineError::Closed => ApplianceError::VolumeFailed {
                volume,
                detail: "closed".into(),
            },
            EngineError::Busy(_) => ApplianceError::EngineBusy {
                detail: e.to_string(),
                volume,
            },
            EngineError::OutOfRange { .. }
            | EngineError::ZeroLength
            | EngineError::TooLarge { .. }
            | EngineError::LabelTooLong { .. }
            | EngineError::EmptyLabel => {
                ApplianceError::InvalidParams(format!("volume {volume:?}: {e}"))
            }
            EngineError::Device(d) => ApplianceError::Io {
                what: format!("volume {volume:?}"),
                detail: d.to_string(),
            },
            source => ApplianceError::Engine { volume, source },
        }
    }
}
