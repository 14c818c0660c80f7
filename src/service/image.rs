//! A raw image of a volume at one point, written to a file: sparse (4 KiB
//! pieces that are all zero become holes — the writer seeks over them), with
//! a SHA-256 over every byte of the image (holes count as the zeroes they
//! read as, so `sha256sum image.raw` prints the same digest). The bytes go
//! to `<path>.partial`, which is renamed to `<path>` only once complete and
//! synced. Used by the server's `export_image` and by `rewind export`.
//!
//! Invariant: a file at the final path is a whole image whose bytes hash to
//! the reported digest; a failed or abandoned export leaves nothing behind
//! (the partial file is removed when the writer is dropped unfinished), and
//! an existing file is never overwritten.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Size of the pieces checked for zeroes (the hole granularity).
const PIECE: usize = 4096;

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0} already exists; choose another path or remove it first")]
    Exists(PathBuf),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a finished image holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageSummary {
    pub path: PathBuf,
    /// Size of the image (the volume's size).
    pub bytes: u64,
    /// Bytes actually written (the rest are holes).
    pub data_bytes: u64,
    /// SHA-256 of all `bytes`, lowercase hex.
    pub sha256: String,
}

/// See the module documentation.
pub struct ImageWriter {
    file: File,
    path: PathBuf,
    partial: PathBuf,
    hasher: Sha256,
    offset: u64,
    data_bytes: u64,
    finished: bool,
}

impl std::fmt::Debug for ImageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageWriter")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .finish()
    }
}

impl ImageWriter {
    /// Starts an image at `path` (refused when it exists).
    pub fn create(path: &Path) -> Result<ImageWriter, ImageError> {
        if path.exists() {
            return Err(ImageError::Exists(path.to_path_buf()));
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    ImageError::Exists(partial.clone())
                } else {
                    ImageError::Io {
                        what: "create",
                        path: partial.clone(),
                        source,
                    }
                }
            })?;
        Ok(ImageWriter {
            file,
            path: path.to_path_buf(),
            partial,
            hasher: Sha256::new(),
            offset: 0,
            data_bytes: 0,
            finished: false,
        })
    }

    /// Bytes of the image so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends `bytes`; zero pieces become holes.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.hasher.update(bytes);
        let mut run: Option<usize> = None; // start of the current non-zero run
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + PIECE).min(bytes.len());
            let zero = bytes[at..end].iter().all(|&b| b == 0);
            match (zero, run) {
                (false, None) => run = Some(at),
                (true, Some(start)) => {
                    self.write_at(&bytes[start..at], start)?;
                    run = None;
                }
                _ => {}
            }
            at = end;
        }
        if let Some(start) = run {
            self.write_at(&bytes[start..], start)?;
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Appends `len` zero bytes (all holes).
    pub fn append_zeroes(&mut self, len: u64) {
        let zeroes = [0u8; PIECE];
        let mut left = len;
        while left > 0 {
            let n = left.min(PIECE as u64) as usize;
            self.hasher.update(&zeroes[..n]);
            left -= n as u64;
        }
        self.offset += len;
    }

    fn write_at(&mut self, bytes: &[u8], start_in_chunk: usize) -> Result<(), ImageError> {
        self.file
            .write_all_at(bytes, self.offset + start_in_chunk as u64)
            .map_err(|source| ImageError::Io {
                what: "write",
                path: self.partial.clone(),
                source,
            })?;
        self.data_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Sizes the file (trailing holes included), syncs it and renames it
    /// into place.
    pub fn finish(mut self) -> Result<ImageSummary, ImageError> {
        let io = |what, path: &Path, source| ImageError::Io {
            what,
            path: path.to_path_buf(),
            source,
        };
        self.file
            .set_len(self.offset)
            .map_err(|e| io("size", &self.partial, e))?;
        self.file
            .sync_all()
            .map_err(|e| io("sync", &self.partial, e))?;
        if self.path.exists() {
            return Err(ImageError::Exists(self.path.clone()));
        }
        std::fs::rename(&self.partial, &self.path).map_err(|e| io("rename", &self.partial, e))?;
        self.finished = true;
        let sha256 = self
            .hasher
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(ImageSummary {
            path: self.path.clone(),
            bytes: self.offset,
            data_bytes: self.data_bytes,
            sha256,
        })
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_image_hashes_like_sha256sum_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("img.raw");
        let mut w = ImageWriter::create(&path).unwrap();
        let mut chunk = vec![0u8; 64 << 10];
        chunk[PIECE * 3..PIECE * 3 + 10].fill(0xAB);
        chunk[60 << 10] = 1;
        w.append(&chunk).unwrap();
        w.append_zeroes(4 << 20);
        w.append(&[7u8; PIECE]).unwrap();
        w.append_zeroes(1 << 20);
        let s = w.finish().unwrap();
        assert_eq!(s.bytes, (64 << 10) + (5 << 20) + PIECE as u64);
        assert_eq!(s.data_bytes, 3 * PIECE as u64);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, s.bytes);
        assert_eq!(&bytes[..64 << 10], &chunk[..]);
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(s.sha256, digest);
        // Holes: far fewer 512-byte blocks allocated than the image's size.
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        assert!(blocks * 512 < s.bytes / 4, "{blocks} blocks allocated");
        assert!(matches!(
            ImageWriter::create(&path),
            Err(ImageError::Exists(_))
        ));
    }

    #[test]
    fn an_abandoned_image_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("img.raw");
        let mut w = ImageWriter::create(&path).unwrap();
        w.append(&[1u8; 8192]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
