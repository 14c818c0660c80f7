//! Points in time as the management plane shows them: how a request names
//! one ([`AtSpec`]: a seq, an RFC 3339 or relative time, a label, or now),
//! how a resolved point is reported ([`PointInfo`]), listing, marking, and
//! reading raw bytes at a point.
//!
//! Invariant: a time in the future is refused (by the appliance's clock),
//! never silently served as "now"; every answer that serves data says which
//! actual point served it.

use super::{Appliance, ApplianceError, Served};
use crate::engine::{At, MarkerKind, Point, PointKind, Volume};
use crate::service::time_spec::{format_time, now_ns, parse_time};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest `volume_read`, in bytes.
pub const MAX_READ_BYTES: u64 = 1 << 20;

/// How a request names a point: at most one field; none means now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// RFC 3339 (`2026-11-02T09:41:00Z`) or relative (`-15m`, `2h ago`, `now`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl AtSpec {
    /// The engine's request for this spec on `volume` (its name, for errors).
    pub fn to_at(&self, volume: &str) -> Result<At, ApplianceError> {
        let given = [
            self.seq.is_some(),
            self.time.is_some(),
            self.time_ns.is_some(),
            self.label.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        if given > 1 {
            return Err(ApplianceError::InvalidParams(
                "name the point with one of seq, time, time_ns or label".into(),
            ));
        }
        let now = now_ns();
        let future = |t: u64| ApplianceError::InFuture {
            volume: volume.to_string(),
            detail: format!(
                "time {} is in the future (the appliance's clock says {})",
                format_time(t),
                format_time(now)
            ),
        };
        if let Some(seq) = self.seq {
            return Ok(At::Seq(seq));
        }
        if let Some(label) = &self.label {
            crate::engine::point::check_label(label)
                .map_err(|e| ApplianceError::InvalidParams(format!("label {label:?}: {e}")))?;
            return Ok(At::Label(label.clone()));
        }
        let t = match (&self.time, self.time_ns) {
            (Some(text), _) => parse_time(text, now)?,
            (None, Some(t)) => t,
            (None, None) => return Ok(At::Now),
        };
        if t > now {
            return Err(future(t));
        }
        Ok(At::Time(t))
    }

    /// How the request was written, for messages and echoes.
    pub fn describe(&self) -> String {
        match (&self.seq, &self.time, &self.time_ns, &self.label) {
            (Some(s), ..) => format!("seq {s}"),
            (_, Some(t), ..) => format!("time {t}"),
            (_, _, Some(t), _) => format!("time {}", format_time(*t)),
            (_, _, _, Some(l)) => format!("label {l}"),
            _ => "now".to_string(),
        }
    }
}

/// A point as the RPC reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointInfo {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub time_ns: u64,
    /// `write`, `marker` or `snapshot`.
    pub kind: String,
    /// The marker's kind (flush, bookmark, periodic, format), when there is one.
    pub marker: Option<MarkerKind>,
    /// The snapshot generation (null for the newest synced point, the mirror).
    pub generation: Option<u64>,
    pub label: Option<String>,
}

impl From<&Point> for PointInfo {
    fn from(p: &Point) -> PointInfo {
        let (kind, marker, generation) = match &p.kind {
            PointKind::Write => ("write", None, None),
            PointKind::Marker(m) => ("marker", Some(*m), None),
            PointKind::Mirror { marker } => ("snapshot", *marker, None),
            PointKind::Snapshot { generation, marker } => ("snapshot", *marker, Some(*generation)),
        };
        PointInfo {
            seq: p.seq,
            time: format_time(p.time_ns),
            time_ns: p.time_ns,
            kind: kind.to_string(),
            marker,
            generation,
            label: p.label.clone(),
        }
    }
}

/// The result of `point_list`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointList {
    pub volume: String,
    /// Oldest first.
    pub points: Vec<PointInfo>,
    /// Points that matched `since` but were left out (older than the `limit` newest).
    pub omitted: usize,
}

/// The result of `volume_read`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadResult {
    pub volume: String,
    /// The point that served the read.
    pub point: PointInfo,
    pub lba: u64,
    pub count: u64,
    pub block_size: u32,
    /// True when every byte is zero; `data` is then empty.
    pub all_zero: bool,
    /// The bytes, base64 (standard alphabet, padded).
    pub data: String,
}

impl Appliance {
    /// The point that serves `at` on active volume `name`.
    pub fn resolve(
        &self,
        name: &str,
        at: &AtSpec,
    ) -> Result<(Arc<Served>, Arc<Volume>, Point), ApplianceError> {
        let (served, volume) = self.volume(name)?;
        let point = volume
            .resolve(&at.to_at(name)?)
            .map_err(|e| ApplianceError::engine(name, e))?;
        Ok((served, volume, point))
    }

    /// Retained points at or after `since` (a time), oldest first; at most
    /// the `limit` newest.
    pub fn point_list(
        &self,
        name: &str,
        since: Option<&str>,
        limit: usize,
    ) -> Result<PointList, ApplianceError> {
        let (_, volume) = self.volume(name)?;
        let since = since.map(|t| parse_time(t, now_ns())).transpose()?;
        let mut points: Vec<Point> = volume.points();
        if let Some(t) = since {
            points.retain(|p| p.time_ns >= t);
        }
        let omitted = points.len().saturating_sub(limit);
        Ok(PointList {
            volume: name.to_string(),
            points: points[omitted..].iter().map(PointInfo::from).collect(),
            omitted,
        })
    }

    /// Records bookmark `label` once every earlier write is durable.
    pub fn point_mark(&self, name: &str, label: &str) -> Result<PointInfo, ApplianceError> {
        let (_, volume) = self.volume(name)?;
        let point = volume
            .mark(label)
            .map_err(|e| ApplianceError::engine(name, e))?;
        tracing::info!(volume = name, label, seq = point.seq, "bookmark recorded");
        Ok(PointInfo::from(&point))
    }

    /// `count` blocks at `lba` as of `at` (at most [`MAX_READ_BYTES`]).
    pub fn volume_read(
        &self,
        name: &str,
        at: &AtSpec,
        lba: u64,
        count: u64,
    ) -> Result<ReadResult, ApplianceError> {
        let (_, volume) = self.volume(name)?;
        let bs = volume.geometry().block_size;
        if count == 0 || count.saturating_mul(u64::from(bs)) > MAX_READ_BYTES {
            return Err(ApplianceError::InvalidParams(format!(
                "count {count}: read 1 to {} blocks of {bs} bytes at a time",
                MAX_READ_BYTES / u64::from(bs)
            )));
        }
        let blocks = volume.geometry().volume_blocks;
        if lba.checked_add(count).is_none_or(|end| end > blocks) {
            return Err(ApplianceError::InvalidParams(format!(
                "blocks {lba}..{} are outside volume {name:?} (0..{blocks})",
                lba.saturating_add(count)
            )));
        }
        let (point, bytes) = volume
            .read(lba, count, &at.to_at(name)?)
            .map_err(|e| ApplianceError::engine(name, e))?;
        let all_zero = bytes.iter().all(|&b| b == 0);
        Ok(ReadResult {
            volume: name.to_string(),
            point: PointInfo::from(&point),
            lba,
            count,
            block_size: bs,
            all_zero,
            data: if all_zero {
                String::new()
            } else {
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_specs() {
        assert_eq!(AtSpec::default().to_at("v").unwrap(), At::Now);
        let seq = AtSpec {
            seq: Some(5),
            ..AtSpec::default()
        };
        assert_eq!(seq.to_at("v").unwrap(), At::Seq(5));
        assert_eq!(seq.describe(), "seq 5");
        let two = AtSpec {
            seq: Some(5),
            label: Some("x".into()),
            ..AtSpec::default()
        };
        assert!(matches!(
            two.to_at("v"),
            Err(ApplianceError::InvalidParams(_))
        ));
        let future = AtSpec {
            time: Some("2999-01-01T00:00:00Z".into()),
            ..AtSpec::default()
        };
        let e = future.to_at("v").unwrap_err();
        assert!(matches!(e, ApplianceError::InFuture { .. }), "{e}");
        assert!(e.to_string().contains("in the future"), "{e}");
        let bad = AtSpec {
            time: Some("yesterday-ish".into()),
            ..AtSpec::default()
        };
        assert!(matches!(bad.to_at("v"), Err(ApplianceError::Time(_))));
        let rel = AtSpec {
            time: Some("-1h".into()),
            ..AtSpec::default()
        };
        assert!(matches!(rel.to_at("v").unwrap(), At::Time(_)));
        let long = AtSpec {
            label: Some("x".repeat(100)),
            ..AtSpec::default()
        };
        assert!(matches!(
            long.to_at("v"),
            Err(ApplianceError::InvalidParams(_))
        ));
    }
}
