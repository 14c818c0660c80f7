//! The management methods: each method's parameters (by name, unknown
//! names refused), the appliance operation it runs and the result object it
//! returns. `docs/rpc.md` documents each one; [`METHODS`] lists them (a test
//! checks every one is documented).
//!
//! Invariant: a method either returns its result or one [`RpcError`]; bad
//! parameters are `invalid_params` before anything changes.

use super::error::{RpcError, INVALID_PARAMS, METHOD_NOT_FOUND};
use crate::service::appliance::points::AtSpec;
use crate::service::appliance::retention::RetentionChange;
use crate::service::appliance::Appliance;
use crate::service::time_spec::parse_duration;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Every method, in the order `docs/rpc.md` documents them.
pub const METHODS: &[&str] = &[
    "service_info",
    "volume_create",
    "volume_list",
    "volume_info",
    "volume_delete",
    "point_list",
    "point_mark",
    "view_create",
    "view_list",
    "view_delete",
    "volume_read",
    "volume_stats",
    "retention_set",
    "export_image",
];

/// Points `point_list` returns when no `limit` is given.
pub const POINT_LIST_DEFAULT_LIMIT: usize = 1000;
/// Largest `limit` of `point_list`.
pub const POINT_LIST_MAX_LIMIT: usize = 100_000;
/// Longest `wait_s` of `volume_delete`.
pub const DELETE_WAIT_MAX_S: f64 = 3600.0;

/// A byte size: a number of bytes or text like "1GiB".
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// A duration: seconds or text like "7d".
#[derive(Deserialize)]
#[serde(untagged)]
enum Span {
    Seconds(f64),
    Text(String),
}

fn span(s: &Span) -> Result<Duration, RpcError> {
    match s {
        Span::Seconds(secs) => Duration::try_from_secs_f64(*secs)
            .map_err(|_| RpcError::new(INVALID_PARAMS, format!("{secs}: a non-negative duration"))),
        Span::Text(t) => parse_duration(t)
            .map_err(|e| RpcError::from(crate::service::appliance::ApplianceError::Time(e))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByName {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByVolume {
    volume: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeCreate {
    name: String,
    size: Size,
    #[serde(default)]
    block_size: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeDelete {
    name: String,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    wait_s: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointListParams {
    volume: String,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointMark {
    volume: String,
    label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewCreate {
    volume: String,
    at: AtSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewList {
    #[serde(default)]
    volume: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewDelete {
    volume: String,
    nsid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeRead {
    volume: String,
    #[serde(default)]
    at: AtSpec,
    lba: u64,
    count: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSet {
    volume: String,
    #[serde(default)]
    keep_at_least: Option<Span>,
    #[serde(default)]
    keep_last: Option<u64>,
    #[serde(default)]
    min_free_percent: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportImage {
    volume: String,
    #[serde(default)]
    at: AtSpec,
    path: PathBuf,
}

fn params<T: DeserializeOwned>(method: &str, v: Value) -> Result<T, RpcError> {
    serde_json::from_value(v).map_err(|e| RpcError::new(INVALID_PARAMS, format!("{method}: {e}")))
}

fn to_value<T: serde::Serialize>(t: T) -> Result<Value, RpcError> {
    serde_json::to_value(t).map_err(|e| {
        RpcError::new(
            super::error::INTERNAL_ERROR,
            format!("encoding the result: {e}"),
        )
    })
}

/// Runs `method` with `params` on `app`.
pub fn call(app: &Appliance, method: &str, p: Value) -> Result<Value, RpcError> {
    match method {
        "service_info" => {
            params::<Empty>(method, p)?;
            Ok(app.service_info())
        }
        "volume_create" => {
            let p: VolumeCreate = params(method, p)?;
            let size = match p.size {
                Size::Bytes(b) => b,
                Size::Text(t) => crate::size::parse_size(&t)
                    .map_err(|e| RpcError::new(INVALID_PARAMS, format!("size: {e}")))?,
            };
            to_value(app.volume_create(&p.name, size, p.block_size.unwrap_or(4096))?)
        }
        "volume_list" => {
            params::<Empty>(method, p)?;
            Ok(json!({ "volumes": app.volume_list() }))
        }
        "volume_info" => to_value(app.volume_info(&params::<ByName>(method, p)?.name)?),
        "volume_delete" => {
            let p: VolumeDelete = params(method, p)?;
            if !(0.0..=DELETE_WAIT_MAX_S).contains(&p.wait_s) {
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    format!("wait_s {}: 0 to {DELETE_WAIT_MAX_S}", p.wait_s),
                ));
            }
            let wait = Duration::from_secs_f64(p.wait_s);
            to_value(app.volume_delete(&p.name, p.force, wait)?)
        }
        "point_list" => {
            let p: PointListParams = params(method, p)?;
            let limit = p.limit.unwrap_or(POINT_LIST_DEFAULT_LIMIT);
            if limit == 0 || limit > POINT_LIST_MAX_LIMIT {
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    format!("limit {limit}: 1 to {POINT_LIST_MAX_LIMIT}"),
                ));
            }
            to_value(app.point_list(&p.volume, p.since.as_deref(), limit)?)
        }
        "point_mark" => {
            let p: PointMark = params(method, p)?;
            to_value(app.point_mark(&p.volume, &p.label)?)
        }
        "view_create" => {
            let p: ViewCreate = params(method, p)?;
            to_value(app.view_create(&p.volume, &p.at)?)
        }
        "view_list" => {
            let p: ViewList = params(method, p)?;
            Ok(json!({ "views": app.view_list(p.volume.as_deref())? }))
        }
        "view_delete" => {
            let p: ViewDelete = params(method, p)?;
            app.view_delete(&p.volume, p.nsid)?;
            Ok(json!({ "volume": p.volume, "nsid": p.nsid }))
        }
        "volume_read" => {
            let p: VolumeRead = params(method, p)?;
            to_value(app.volume_read(&p.volume, &p.at, p.lba, p.count)?)
        }
        "volume_stats" => Ok(app.volume_stats(&params::<ByVolume>(method, p)?.volume)?),
        "retention_set" => {
            let p: RetentionSet = params(method, p)?;
            let change = RetentionChange {
                keep_at_least: p.keep_at_least.as_ref().map(span).transpose()?,
                keep_last: p.keep_last,
                min_free_percent: p.min_free_percent,
            };
            let policy = app.retention_set(&p.volume, &change)?;
            Ok(json!({ "volume": p.volume, "retention": policy }))
        }
        "export_image" => {
            let p: ExportImage = params(method, p)?;
            to_value(app.export_image(&p.volume, &p.at, &p.path)?)
        }
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("no method {other:?} (see docs/rpc.md)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_documented() {
        let doc = include_str!("../../../docs/rpc.md");
        for m in METHODS {
            assert!(doc.contains(&format!("### `{m}`")), "docs/rpc.md lacks {m}");
        }
    }
}
