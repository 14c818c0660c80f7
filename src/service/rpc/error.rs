//! Every JSON-RPC error code the management API returns, in one place, with
//! the appliance error each comes from. `docs/rpc.md` lists the same table
//! (a test checks that every code here is documented there).
//!
//! Invariant: every error reply carries one of [`CODES`] and a one-line
//! human message.

use crate::service::appliance::ApplianceError;
use serde::{Deserialize, Serialize};

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        let message: String = message.into();
        RpcError {
            code,
            message: message.replace('\n', " "),
        }
    }

    /// The short name of this error's code (`unknown_volume`, ...).
    pub fn name(&self) -> &'static str {
        CODES
            .iter()
            .find(|(c, _, _)| *c == self.code)
            .map_or("unknown_error", |(_, n, _)| n)
    }
}

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
pub const UNKNOWN_VOLUME: i64 = -32001;
pub const VOLUME_EXISTS: i64 = -32002;
pub const VOLUME_CREATING: i64 = -32003;
pub const VOLUME_DELETING: i64 = -32004;
pub const HOSTS_CONNECTED: i64 = -32005;
pub const CONFIGURED_VOLUME: i64 = -32006;
pub const NOT_JOURNALED: i64 = -32007;
pub const DISK_FULL: i64 = -32008;
pub const UNKNOWN_VIEW: i64 = -32009;
pub const MALFORMED_TIME: i64 = -32010;
pub const IN_FUTURE: i64 = -32011;
pub const BEFORE_RETENTION: i64 = -32012;
pub const UNKNOWN_LABEL: i64 = -32013;
pub const POINT_MOVED: i64 = -32014;
pub const VOLUME_FAILED: i64 = -32015;
pub const ENGINE_BUSY: i64 = -32016;
pub const IO_ERROR: i64 = -32017;
pub const FILE_EXISTS: i64 = -32018;
pub const STOPPING: i64 = -32019;
pub const TOO_MANY_CLIENTS: i64 = -32020;

/// (code, name, meaning) of every error.
pub const CODES: &[(i64, &str, &str)] = &[
    (PARSE_ERROR, "parse_error", "the request is not JSON"),
    (
        INVALID_REQUEST,
        "invalid_request",
        "not a JSON-RPC 2.0 request object",
    ),
    (METHOD_NOT_FOUND, "method_not_found", "no such method"),
    (
        INVALID_PARAMS,
        "invalid_params",
        "missing, unknown or out-of-range parameters",
    ),
    (
        INTERNAL_ERROR,
        "internal_error",
        "a bug in the service (see its log)",
    ),
    (UNKNOWN_VOLUME, "unknown_volume", "no volume by that name"),
    (
        VOLUME_EXISTS,
        "volume_exists",
        "a volume by that name exists",
    ),
    (
        VOLUME_CREATING,
        "volume_creating",
        "the volume is still being created",
    ),
    (
        VOLUME_DELETING,
        "volume_deleting",
        "the volume is being deleted",
    ),
    (
        HOSTS_CONNECTED,
        "hosts_connected",
        "hosts are connected to the volume being deleted",
    ),
    (
        CONFIGURED_VOLUME,
        "configured_volume",
        "the volume comes from the configuration file",
    ),
    (
        NOT_JOURNALED,
        "not_journaled",
        "a plain namespace has no points in time",
    ),
    (
        DISK_FULL,
        "disk_full",
        "not enough free space in the data directory",
    ),
    (
        UNKNOWN_VIEW,
        "unknown_view",
        "the volume has no view with that namespace ID",
    ),
    (
        MALFORMED_TIME,
        "malformed_time",
        "a time or duration that does not parse",
    ),
    (
        IN_FUTURE,
        "in_future",
        "a time or seq past the newest point",
    ),
    (
        BEFORE_RETENTION,
        "before_retention",
        "a point older than the retention window",
    ),
    (
        UNKNOWN_LABEL,
        "unknown_label",
        "no retained point carries that label",
    ),
    (
        POINT_MOVED,
        "point_moved",
        "the point stopped being retained during the request",
    ),
    (
        VOLUME_FAILED,
        "volume_failed",
        "the volume failed after an I/O error",
    ),
    (
        ENGINE_BUSY,
        "engine_busy",
        "the volume's queues are full; try again",
    ),
    (IO_ERROR, "io_error", "a file or device operation failed"),
    (FILE_EXISTS, "file_exists", "the export path exists"),
    (STOPPING, "stopping", "the service is stopping"),
    (
        TOO_MANY_CLIENTS,
        "too_many_clients",
        "too many management connections",
    ),
];

impl From<&ApplianceError> for RpcError {
    fn from(e: &ApplianceError) -> RpcError {
        use crate::service::image::ImageError;
        let code = match e {
            ApplianceError::UnknownVolume(_) => UNKNOWN_VOLUME,
            ApplianceError::VolumeExists(_) => VOLUME_EXISTS,
            ApplianceError::VolumeCreating(_) => VOLUME_CREATING,
            ApplianceError::VolumeDeleting(_) => VOLUME_DELETING,
            ApplianceError::HostsConnected { .. } => HOSTS_CONNECTED,
            ApplianceError::ConfiguredVolume(_) => CONFIGURED_VOLUME,
            ApplianceError::NotJournaled(_) => NOT_JOURNALED,
            ApplianceError::InvalidParams(_) => INVALID_PARAMS,
            ApplianceError::Time(_) => MALFORMED_TIME,
            ApplianceError::DiskFull { .. } => DISK_FULL,
            ApplianceError::UnknownView { .. } => UNKNOWN_VIEW,
            ApplianceError::InFuture { .. } => IN_FUTURE,
            ApplianceError::BeforeRetention { .. } => BEFORE_RETENTION,
            ApplianceError::UnknownLabel { .. } => UNKNOWN_LABEL,
            ApplianceError::PointMoved { .. } => POINT_MOVED,
            ApplianceError::VolumeFailed { .. } => VOLUME_FAILED,
            ApplianceError::EngineBusy { .. } => ENGINE_BUSY,
            ApplianceError::Engine { .. } => INTERNAL_ERROR,
            ApplianceError::Image(ImageError::Exists(_)) => FILE_EXISTS,
            ApplianceError::Image(ImageError::Io { .. }) | ApplianceError::Io { .. } => IO_ERROR,
            ApplianceError::Stopping => STOPPING,
        };
        RpcError::new(code, e.to_string())
    }
}

impl From<ApplianceError> for RpcError {
    fn from(e: ApplianceError) -> RpcError {
        RpcError::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_documented() {
        let doc = include_str!("../../../docs/rpc.md");
        let mut seen = std::collections::HashSet::new();
        for (code, name, _) in CODES {
            assert!(seen.insert(*code), "code {code} twice");
            assert!(
                doc.contains(&format!("| {code} | `{name}` |")),
                "docs/rpc.md has no row for {code} {name}"
            );
        }
        let e = RpcError::from(ApplianceError::UnknownVolume("x".into()));
        assert_eq!((e.code, e.name()), (UNKNOWN_VOLUME, "unknown_volume"));
        assert_eq!(RpcError::new(1, "a\nb").message, "a b");
    }
}
