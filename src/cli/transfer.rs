//! Moving volume bytes to the client through `volume_read`: a range for
//! `rewind read`, a whole sparse image for `rewind export`.
//!
//! Why the CLI pulls chunks instead of calling `export_image`: the image
//! lands on the client's filesystem with the client's permissions (the
//! service needs no write access there, and the path means what the user
//! typed), and the client knows how far it got, so it can draw progress.
//! The point is resolved by the first chunk and every later chunk asks for
//! that exact seq; `export_image` (`rewind export --server-side`) remains
//! for large volumes, where base64 over JSON costs too much.
//!
//! Invariant: every byte delivered was served by one point — a chunk served
//! by another seq (the point was coalesced or expired meanwhile) ends the
//! transfer with an error, and an unfinished image file is removed.

use super::progress::Progress;
use crate::service::appliance::points::{AtSpec, PointInfo, ReadResult, MAX_READ_BYTES};
use crate::service::image::{ImageSummary, ImageWriter};
use crate::service::rpc::{ClientError, RpcClient};
use base64::Engine as _;
use serde_json::json;
use std::path::Path;

/// A piece of a range, in order.
#[derive(Debug)]
pub enum Piece<'a> {
    Bytes(&'a [u8]),
    Zeroes(u64),
}

/// Why a transfer stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Image(#[from] crate::service::image::ImageError),
    #[error("{0}")]
    Other(String),
}

/// Reads blocks `lba..lba+count` of `volume` at `at` through `volume_read`
/// and hands them to `sink` in order; returns the point that served them.
pub fn pull(
    client: &mut RpcClient,
    volume: &str,
    at: &AtSpec,
    (lba, count, block_size): (u64, u64, u32),
    mut sink: impl FnMut(Piece<'_>) -> Result<(), TransferError>,
) -> Result<PointInfo, TransferError> {
    let per_call = (MAX_READ_BYTES / u64::from(block_size)).max(1);
    let mut point: Option<PointInfo> = None;
    let mut at_lba = lba;
    let end = lba.saturating_add(count);
    while at_lba < end {
        let n = per_call.min(end - at_lba);
        let ask = match &point {
            Some(p) => AtSpec {
                seq: Some(p.seq),
                ..AtSpec::default()
            },
            None => at.clone(),
        };
        let result = client.call(
            "volume_read",
            json!({"volume": volume, "at": ask, "lba": at_lba, "count": n}),
        )?;
        let r: ReadResult = serde_json::from_value(result)
            .map_err(|e| TransferError::Other(format!("a malformed volume_read result: {e}")))?;
        match &point {
            Some(p) if p.seq != r.point.seq => {
                return Err(TransferError::Other(format!(
                    "volume {volume:?}: point seq {} is no longer retained (a sync coalesced it or retention expired it; seq {} would be served instead) — use a bookmark (rewind mark) for exports that must not move",
                    p.seq, r.point.seq
                )))
            }
            Some(_) => {}
            None => point = Some(r.point.clone()),
        }
        let bytes = n * u64::from(block_size);
        if r.all_zero {
            sink(Piece::Zeroes(bytes))?;
        } else {
            let data = base64::engine::general_purpose::STANDARD
                .decode(r.data.as_bytes())
                .map_err(|e| {
                    TransferError::Other(format!("volume_read data is not base64: {e}"))
                })?;
            if data.len() as u64 != bytes {
                return Err(TransferError::Other(format!(
                    "volume_read returned {} bytes for {n} blocks",
                    data.len()
                )));
            }
            sink(Piece::Bytes(&data))?;
        }
        at_lba += n;
    }
    point.ok_or_else(|| TransferError::Other("nothing to read (count 0)".into()))
}

/// Writes the sparse image of `volume` at `at` to `out`, with progress.
pub fn export(
    client: &mut RpcClient,
    volume: &str,
    at: &AtSpec,
    out: &Path,
) -> Result<(PointInfo, ImageSummary), TransferError> {
    let info = client.call("volume_info", json!({"name": volume}))?;
    let size = info["size_bytes"].as_u64().unwrap_or(0);
    let bs = info["block_size"]
        .as_u64()
        .and_then(|b| u32::try_from(b).ok());
    let Some(bs) = bs.filter(|&b| b > 0 && size > 0) else {
        return Err(TransferError::Other(format!(
            "volume {volume:?}: volume_info gave no size"
        )));
    };
    let mut image = ImageWriter::create(out)?;
    let mut progress = Progress::new(&format!("export {volume}"), size);
    let pulled = pull(client, volume, at, (0, size / u64::from(bs), bs), |piece| {
        match piece {
            Piece::Bytes(b) => {
                image.append(b)?;
                progress.advance(b.len() as u64);
            }
            Piece::Zeroes(n) => {
                image.append_zeroes(n);
                progress.advance(n);
            }
        }
        Ok(())
    });
    let point = match pulled {
        Ok(point) => point,
        Err(e) => {
            progress.abandon();
            return Err(e);
        }
    };
    progress.finish();
    let summary = image.finish()?;
    Ok((point, summary))
}
