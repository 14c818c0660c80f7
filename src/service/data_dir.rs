//! The appliance's data directory: what lives in it and who may use it.
//!
//! ```text
//! <data-dir>/rewind.lock     flock'ed by the one `rewind serve` using the directory (holds its pid)
//! <data-dir>/rewind.sock     the management JSON-RPC socket (default place)
//! <data-dir>/volumes.json    the catalog of volumes created over RPC (see `catalog`)
//! <data-dir>/volumes/<name>.img   each created volume's file
//! ```
//!
//! Invariant: at most one process holds a [`DataDir`] for a directory at a
//! time (an exclusive `flock` on `rewind.lock`, released by the kernel when
//! the holder dies, so a crash never leaves the directory locked).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the data directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another rewind serve{pid} is using the data directory {dir}", pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse { dir: PathBuf, pid: Option<u32> },
}

/// A locked data directory (see the module documentation).
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// Held open for the flock; closing it releases the directory.
    _lock: File,
}

impl DataDir {
    /// Creates `root` if needed and takes its lock, or says who holds it.
    pub fn lock(root: &Path) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(root.join("volumes")).map_err(|source| DataDirError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        let path = root.join("rewind.lock");
        let failed = |source| DataDirError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(failed)?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(DataDirError::InUse {
                    dir: root.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            return Err(failed(error));
        }
        file.set_len(0).map_err(failed)?;
        file.rewind().map_err(failed)?;
        writeln!(file, "{}", std::process::id()).map_err(failed)?;
        Ok(DataDir {
            root: root.to_path_buf(),
            _lock: file,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The management socket's default place.
    pub fn default_socket(&self) -> PathBuf {
        self.root.join("rewind.sock")
    }

    /// The catalog of created volumes.
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("volumes.json")
    }

    /// Where created volumes' files live.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// The file of created volume `name`.
    pub fn volume_file(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(format!("{name}.img"))
    }

    /// Volume files that no catalog entry names (left by a create or delete
    /// interrupted by a crash): removed, and returned for the log.
    pub fn sweep_orphans(&self, known: &[String]) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.volumes_dir()) else {
            return removed;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".img"));
            if let Some(name) = name {
                if !known.iter().any(|k| k == name) && std::fs::remove_file(&path).is_ok() {
                    removed.push(path);
                }
            }
        }
        removed
    }
}

/// Bytes an unprivileged user may still allocate on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs fills the zeroed struct; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDir::lock(tmp.path()).unwrap();
        match DataDir::lock(tmp.path()) {
            Err(DataDirError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        DataDir::lock(tmp.path()).unwrap();
    }

    #[test]
    fn orphans_are_swept_and_catalogued_files_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::lock(tmp.path()).unwrap();
        std::fs::write(dir.volume_file("kept"), b"x").unwrap();
        std::fs::write(dir.volume_file("orphan"), b"x").unwrap();
        std::fs::write(dir.volumes_dir().join("notes.txt"), b"x").unwrap();
        let removed = dir.sweep_orphans(&["kept".to_string()]);
        assert_eq!(removed, vec![dir.volume_file("orphan")]);
        assert!(dir.volume_file("kept").exists());
        assert!(dir.volumes_dir().join("notes.txt").exists());
        assert!(free_bytes(tmp.path()).unwrap() > 0);
    }
}
