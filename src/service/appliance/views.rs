//! Views: read-only namespaces presenting a volume at one retained point,
//! added to the volume's subsystem next to the live namespace 1 (hosts
//! already connected get a changed-namespace notice).
//!
//! Invariant: a view is published only at a point the engine resolved, only
//! while its volume is active (checked and published under the appliance's
//! `volumes` lock, which deletion takes to mark a volume deleting), and only
//! namespace IDs >= 2 are ever removed here, so the live namespace stays.

use super::points::{AtSpec, PointInfo};
use super::{Appliance, ApplianceError, ConnectInfo, Slot, View};
use crate::nvmf::target::namespace::{Namespace, NsKind};
use crate::service::time_spec::{format_time, now_ns};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The result of `view_create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViewCreated {
    pub volume: String,
    pub nsid: u32,
    /// How the point was asked for.
    pub requested: String,
    /// The actual point the view presents.
    pub point: PointInfo,
    pub connect: ConnectInfo,
}

/// One entry of `view_list`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViewEntry {
    pub volume: String,
    pub nsid: u32,
    pub point: PointInfo,
    pub created: String,
    pub nqn: String,
}

/// A view's identity: the volume's uuid with the NSID folded in.
fn view_uuid(volume: &[u8; 16], nsid: u32) -> [u8; 16] {
    let mut u = *volume;
    for (i, b) in nsid.to_le_bytes().iter().enumerate() {
        u[12 + i] ^= b;
    }
    u[6] = (u[6] & 0x0F) | 0x80; // not a random (v4) uuid any more: custom (v8)
    u
}

impl Appliance {
    /// Adds a view of `name` at `at`.
    pub fn view_create(&self, name: &str, at: &AtSpec) -> Result<ViewCreated, ApplianceError> {
        let slots = self.slots();
        let served = match slots.get(name) {
            Some(Slot::Ready(s)) if s.is_deleting() => {
                return Err(ApplianceError::VolumeDeleting(name.to_string()))
            }
            Some(Slot::Ready(s)) => Arc::clone(s),
            Some(Slot::Creating { .. }) => {
                return Err(ApplianceError::VolumeCreating(name.to_string()))
            }
            None => return Err(ApplianceError::UnknownVolume(name.to_string())),
        };
        let volume = Arc::clone(served.volume()?);
        let at_engine = at.to_at(name)?;
        let point = volume
            .resolve(&at_engine)
            .map_err(|e| ApplianceError::engine(name, e))?;
        // Pinned before it is published: a plain write point would otherwise
        // dissolve into the next sync and the view would stop reading.
        let pin = Arc::new(
            volume
                .pin(point.seq)
                .map_err(|e| ApplianceError::engine(name, e))?,
        );
        let sub = &served.subsystem;
        let nsid = sub.namespaces.free_id();
        let g = volume.geometry();
        sub.add_namespace(Namespace {
            nsid,
            kind: NsKind::View {
                volume: Arc::clone(&volume),
                point: point.clone(),
            },
            block_size: g.block_size,
            blocks: g.volume_blocks,
            uuid: view_uuid(&volume.uuid(), nsid),
        })
        .map_err(|e| ApplianceError::InvalidParams(format!("volume {name:?}: {e}")))?;
        let info = PointInfo::from(&point);
        served.views().insert(
            nsid,
            View {
                nsid,
                point: info.clone(),
                created: format_time(now_ns()),
                pin,
            },
        );
        drop(slots);
        tracing::info!(
            volume = name,
            nsid,
            seq = point.seq,
            time_ns = point.time_ns,
            requested = %at.describe(),
            "view added"
        );
        Ok(ViewCreated {
            volume: name.to_string(),
            nsid,
            requested: at.describe(),
            point: info,
            connect: self.connect_info(&served.subsystem.nqn),
        })
    }

    /// Every view, of one volume or of all.
    pub fn view_list(&self, name: Option<&str>) -> Result<Vec<ViewEntry>, ApplianceError> {
        let served = match name {
            Some(n) => vec![self.served_any(n)?],
            None => self
                .slots()
                .values()
                .filter_map(|s| match s {
                    Slot::Ready(s) => Some(Arc::clone(s)),
                    Slot::Creating { .. } => None,
                })
                .collect(),
        };
        Ok(served
            .iter()
            .flat_map(|s| {
                s.views()
                    .values()
                    .map(|v| ViewEntry {
                        volume: s.name.clone(),
                        nsid: v.nsid,
                        point: v.point.clone(),
                        created: v.created.clone(),
                        nqn: s.subsystem.nqn.clone(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Removes view `nsid` of `name`.
    pub fn view_delete(&self, name: &str, nsid: u32) -> Result<(), ApplianceError> {
        let served = self.served(name)?;
        let mut views = served.views();
        if nsid < 2 || !views.contains_key(&nsid) {
            return Err(ApplianceError::UnknownView {
                volume: name.to_string(),
                nsid,
            });
        }
        served
            .subsystem
            .remove_namespace(nsid)
            .map_err(|e| ApplianceError::InvalidParams(format!("volume {name:?}: {e}")))?;
        views.remove(&nsid);
        tracing::info!(volume = name, nsid, "view removed");
        Ok(())
    }
}
