//! `export_image`: the server writes a sparse raw image of a volume at one
//! point to a path on its own filesystem (see [`crate::service::image`]).
//! The point is resolved once; every chunk is read at that exact seq.
//!
//! Invariant: the image holds the bytes of exactly one point — the point is
//! pinned for the export's duration, and a chunk served by any other point
//! (a forced expiry mid-export) fails the export and removes the partial file.

use super::points::{AtSpec, PointInfo};
use super::{Appliance, ApplianceError};
use crate::engine::At;
use crate::service::image::ImageWriter;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Bytes read per engine request.
const CHUNK_BYTES: u64 = 4 << 20;

/// The result of `export_image`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Exported {
    pub volume: String,
    pub point: PointInfo,
    pub path: String,
    /// The image's size (the volume's size).
    pub bytes: u64,
    /// Bytes written (the rest are holes).
    pub data_bytes: u64,
    /// SHA-256 of the whole image, lowercase hex (what `sha256sum` prints).
    pub sha256: String,
}

impl Appliance {
    /// Writes the image of `name` at `at` to `path` (absolute; must not exist).
    pub fn export_image(
        &self,
        name: &str,
        at: &AtSpec,
        path: &Path,
    ) -> Result<Exported, ApplianceError> {
        if !path.is_absolute() {
            return Err(ApplianceError::InvalidParams(format!(
                "path {}: give an absolute path (it is written by the service)",
                path.display()
            )));
        }
        let (served, volume, point) = self.resolve(name, at)?;
        // Held for the whole export: the sync rests on the point meanwhile.
        let _pin = volume
            .pin(point.seq)
            .map_err(|e| ApplianceError::engine(name, e))?;
        let g = volume.geometry().clone();
        let bs = u64::from(g.block_size);
        let mut image = ImageWriter::create(path)?;
        let per_chunk = CHUNK_BYTES / bs;
        let mut lba = 0;
        while lba < g.volume_blocks {
            if self.is_stopping() {
                return Err(ApplianceError::Stopping);
            }
            if served.is_deleting() {
                return Err(ApplianceError::VolumeDeleting(name.to_string()));
            }
            let n = per_chunk.min(g.volume_blocks - lba);
            let (served_by, bytes) = volume
                .read(lba, n, &At::Seq(point.seq))
                .map_err(|e| ApplianceError::engine(name, e))?;
            if served_by.seq != point.seq {
                return Err(ApplianceError::PointMoved {
                    volume: name.to_string(),
                    wanted: point.seq,
                    served: served_by.seq,
                });
            }
            image.append(&bytes)?;
            lba += n;
        }
        let summary = image.finish()?;
        tracing::info!(volume = name, seq = point.seq, path = %path.display(), sha256 = %summary.sha256, "image exported");
        Ok(Exported {
            volume: name.to_string(),
            point: PointInfo::from(&point),
            path: summary.path.display().to_string(),
            bytes: summary.bytes,
            data_bytes: summary.data_bytes,
            sha256: summary.sha256,
        })
    }
}
