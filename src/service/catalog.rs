//! The catalog: `<data-dir>/volumes.json`, the volumes created over the
//! management API (so they come back when `rewind serve` restarts) and the
//! retention policy set on any volume.
//!
//! ```json
//! {"format": 1,
//!  "volumes": [{"name": "db", "size_bytes": 1073741824, "block_size": 4096,
//!               "created_ns": 1793612460000000000}],
//!  "retention": {"db": {"keep_at_least": 86400.0, "keep_last": null, "min_free_percent": 0}}}
//! ```
//!
//! Invariant: the file on disk is always a whole catalog, the old one or the
//! new one: a change is written to a temporary file, synced, renamed over the
//! catalog, and the directory is synced.

use crate::engine::Retention;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The catalog format this build writes and reads.
pub const CATALOG_FORMAT: u32 = 1;

/// Why the catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a volume catalog: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has catalog format {found}; this build reads format {CATALOG_FORMAT}")]
    Format { path: PathBuf, found: u32 },
}

/// One created volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub name: String,
    /// The protected volume's size (the file is larger: journals, mirror).
    pub size_bytes: u64,
    pub block_size: u32,
    pub created_ns: u64,
}

/// See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub format: u32,
    #[serde(default)]
    pub volumes: Vec<CatalogEntry>,
    /// Retention set with `retention_set`, by volume name (any volume).
    #[serde(default)]
    pub retention: BTreeMap<String, Retention>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            format: CATALOG_FORMAT,
            volumes: Vec::new(),
            retention: BTreeMap::new(),
        }
    }
}

impl Catalog {
    /// Reads the catalog at `path`; an absent file is an empty catalog.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Catalog::default()),
            Err(source) => {
                return Err(CatalogError::Io {
                    what: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let catalog: Catalog = serde_json::from_str(&text).map_err(|e| CatalogError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if catalog.format != CATALOG_FORMAT {
            return Err(CatalogError::Format {
                path: path.to_path_buf(),
                found: catalog.format,
            });
        }
        Ok(catalog)
    }

    /// Replaces the catalog at `path` with this one, atomically.
    pub fn save(&self, path: &Path) -> Result<(), CatalogError> {
        let io = |what, source| CatalogError::Io {
            what,
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| io("encode", e.into()))?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("write", e));
        }
        drop(file);
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("replace", e));
        }
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("sync the directory of", e))?;
        }
        Ok(())
    }

    /// The entry of volume `name`.
    pub fn entry(&self, name: &str) -> Option<&CatalogEntry> {
        self.volumes.iter().find(|v| v.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn round_trip_absent_and_damaged() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("volumes.json");
        assert_eq!(Catalog::load(&path).unwrap(), Catalog::default());
        let mut c = Catalog::default();
        c.volumes.push(CatalogEntry {
            name: "db".into(),
            size_bytes: 1 << 30,
            block_size: 4096,
            created_ns: 7,
        });
        c.retention.insert(
            "db".into(),
            Retention {
                keep_at_least: Duration::from_secs(60),
                keep_last: Some(3),
                min_free_percent: 10,
            },
        );
        c.save(&path).unwrap();
        assert_eq!(Catalog::load(&path).unwrap(), c);
        assert!(!path.with_extension("json.tmp").exists());
        assert_eq!(
            Catalog::load(&path)
                .unwrap()
                .entry("db")
                .unwrap()
                .size_bytes,
            1 << 30
        );

        std::fs::write(&path, "{\"format\": 1, \"volumes\": [{\"name\": 3}]}").unwrap();
        assert!(matches!(
            Catalog::load(&path),
            Err(CatalogError::Parse { .. })
        ));
        std::fs::write(&path, "{\"format\": 99}").unwrap();
        assert!(matches!(
            Catalog::load(&path),
            Err(CatalogError::Format { found: 99, .. })
        ));
    }
}
