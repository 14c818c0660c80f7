//! The service configuration file (TOML) and its zero-configuration default.
//!
//! ```toml
//! [service]
//! data_dir = "rewind-data"    # lock, catalog, created volumes (default: ./rewind-data)
//! rpc_socket = "/run/rewind/rewind.sock"   # management JSON-RPC (default: <data_dir>/rewind.sock)
//! cores = [0]                 # reactors; default: core 0
//! idle = "adaptive"           # or "busy"
//! sync_core = 1               # pin every volume's sync worker here (default: unpinned)
//! hugepages = "prefer"        # map nodes and RAM devices in 2 MiB hugepages when reserved; or "never"
//! metrics = true              # Prometheus endpoint (GET /metrics); false: off
//! metrics_address = "127.0.0.1:9455"
//!
//! [[listeners]]
//! address = "127.0.0.1"
//! port = 4420
//!
//! [[volumes]]
//! name = "vol0"
//! device = "/dev/nvme0n1"     # a block device, a file (created at `size`), or "ram"
//! size = "256MiB"             # the protected volume's size (format only)
//! block_size = 4096
//! journal = true              # false: a plain pass-through namespace (no history)
//! allowed_hosts = []          # host NQNs; empty: any host
//! ```
//!
//! The older key `control_socket` is read as `rpc_socket`.
//!
//! Invariant: a loaded configuration has unique volume names that are valid
//! NQN suffixes, at least one listener and a size for every volume.

use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The data directory: lock file, catalog of created volumes, their files.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The management socket; `None`: `<data_dir>/rewind.sock`.
    #[serde(default, alias = "control_socket")]
    pub rpc_socket: Option<PathBuf>,
    #[serde(default)]
    pub cores: Option<Vec<usize>>,
    #[serde(default)]
    pub idle: Option<String>,
    #[serde(default)]
    pub sync_core: Option<usize>,
    #[serde(default = "default_hugepages")]
    pub hugepages: String,
    /// Serve Prometheus metrics (`GET /metrics`).
    #[serde(default = "default_metrics")]
    pub metrics: bool,
    /// Where the metrics endpoint listens.
    #[serde(default = "default_metrics_address")]
    pub metrics_address: SocketAddr,
}

fn default_metrics() -> bool {
    true
}

fn default_metrics_address() -> SocketAddr {
    super::metrics::DEFAULT_ADDRESS
        .parse()
        .expect("the default metrics address parses")
}

fn default_hugepages() -> String {
    "prefer".to_string()
}

impl Default for ServiceSection {
    fn default() -> Self {
        ServiceSection {
            data_dir: default_data_dir(),
            rpc_socket: None,
            cores: None,
            idle: None,
            sync_core: None,
            hugepages: default_hugepages(),
            metrics: default_metrics(),
            metrics_address: default_metrics_address(),
        }
    }
}

/// The data directory used when neither the configuration nor `--data-dir` names one.
pub const DEFAULT_DATA_DIR: &str = "rewind-data";

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

impl ServiceSection {
    /// Where the management socket listens.
    pub fn rpc_socket(&self) -> PathBuf {
        self.rpc_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("rewind.sock"))
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    #[serde(default = "default_address")]
    pub address: IpAddr,
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
fn default_port() -> u16 {
    4420
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    pub name: String,
    pub device: PathBuf,
    /// Protected volume size, e.g. "1GiB", "256MiB", or a byte count.
    pub size: String,
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Journal the volume (the product); false exports the device as a
    /// plain namespace, the baseline that measures what journaling costs.
    #[serde(default = "default_journal")]
    pub journal: bool,
}

fn default_journal() -> bool {
    true
}

/// The `device` value that asks for a RAM-backed volume (tests, benchmarks).
pub const RAM_DEVICE: &str = "ram";

fn default_block_size() -> u32 {
    4096
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default)]
    pub service: ServiceSection,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
}

/// Checks a volume name: 1-64 letters, digits, '-', '_' or '.' (it becomes
/// the NQN suffix and the name of the volume's file).
pub fn check_volume_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "volume name {name:?}: use 1-64 letters, digits, '-', '_' or '.' (not starting with '.')"
        ))
    }
}

/// Parses a size such as "1GiB" or "256MiB" (see [`crate::size`]).
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    crate::size::parse_size(s).map_err(ConfigError::Invalid)
}

impl ServiceConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: ServiceConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        if config.listeners.is_empty() {
            config.listeners.push(Listener {
                address: default_address(),
                port: default_port(),
            });
        }
        config.check()?;
        Ok(config)
    }

    /// The zero-configuration default: one 1 GiB file-backed volume `vol0`
    /// under `dir`, listening on 127.0.0.1:4420.
    pub fn zero_config(dir: &Path) -> ServiceConfig {
        ServiceConfig {
            service: ServiceSection {
                data_dir: dir.to_path_buf(),
                ..ServiceSection::default()
            },
            listeners: vec![Listener {
                address: default_address(),
                port: default_port(),
            }],
            volumes: vec![VolumeSpec {
                name: "vol0".to_string(),
                device: dir.join("vol0.img"),
                size: "1GiB".to_string(),
                block_size: default_block_size(),
                allowed_hosts: Vec::new(),
                journal: true,
            }],
        }
    }

    /// Checks names, sizes and block sizes.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !matches!(self.service.hugepages.as_str(), "prefer" | "never") {
            return Err(ConfigError::Invalid(format!(
                "hugepages = {:?}: use \"prefer\" or \"never\"",
                self.service.hugepages
            )));
        }
        let mut names = std::collections::HashSet::new();
        for v in &self.volumes {
            check_volume_name(&v.name).map_err(ConfigError::Invalid)?;
            if !names.insert(v.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "volume name {:?} appears twice",
                    v.name
                )));
            }
            if !matches!(v.block_size, 512 | 4096) {
                return Err(ConfigError::Invalid(format!(
                    "volume {}: block_size must be 512 or 4096",
                    v.name
                )));
            }
            let size = parse_size(&v.size)?;
            if size == 0 || size % u64::from(v.block_size) != 0 {
                return Err(ConfigError::Invalid(format!(
                    "volume {}: size {} is not a positive multiple of the block size",
                    v.name, v.size
                )));
            }
        }
        Ok(())
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .map(|l| SocketAddr::new(l.address, l.port))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn the_e2e_config_parses() {
        let text = r#"
[service]
control_socket = "/run/rewind/control.sock"
data_dir = "/var/lib/rewind"

[[listeners]]
address = "127.0.0.1"
port = 4420

[[volumes]]
name = "vol0"
device = "/dev/ram0"
size = "256MiB"
allowed_hosts = []
"#;
        let c: ServiceConfig = toml::from_str(text).unwrap();
        c.check().unwrap();
        assert_eq!(c.volumes[0].block_size, 4096);
        assert_eq!(c.listen_addrs()[0].port(), 4420);
        // The older key is read as rpc_socket.
        assert_eq!(
            c.service.rpc_socket(),
            PathBuf::from("/run/rewind/control.sock")
        );
        assert_eq!(
            ServiceConfig::zero_config(Path::new("d"))
                .service
                .rpc_socket(),
            PathBuf::from("d/rewind.sock")
        );
    }

    #[test]
    fn bad_names_and_unknown_fields_are_refused() {
        let c: ServiceConfig =
            toml::from_str("[[volumes]]\nname = \"a b\"\ndevice = \"x\"\nsize = \"1MiB\"\n")
                .unwrap();
        assert!(c.check().is_err());
        assert!(toml::from_str::<ServiceConfig>("[service]\nbogus = 1\n").is_err());
    }
}
