//! Namespaces a subsystem exports and the versioned table that holds them.
//!
//! A namespace is the live volume (read-write), a *view* of the volume at one
//! retained point (read-only), or a raw pass-through of a device (no
//! journaling; the baseline the cost of continuous data protection is
//! measured against). The table is replaced whole when a namespace is added
//! or removed; queues keep an `Arc` of the table they last saw and compare
//! one atomic version number per command, so the I/O path never locks.
//!
//! Invariant: a published table is never mutated; NSIDs are unique within it
//! and never 0 or 0xFFFFFFFF.

use crate::device::Device;
use crate::engine::{Point, Volume};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::lock_audit::AuditedMutex;

/// What a namespace serves.
#[derive(Clone)]
pub enum NsKind {
    /// The protected volume as of now: reads and writes.
    Live(Arc<Volume>),
    /// The protected volume as it was at `point`: reads only.
    View { volume: Arc<Volume>, point: Point },
    /// A device without journaling: reads and writes go straight to it.
    Raw(Arc<dyn Device>),
}

impl fmt::Debug for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsKind::Live(_) => f.write_str("Live"),
            NsKind::View { point, .. } => write!(f, "View(seq {})", point.seq),
            NsKind::Raw(d) => write!(f, "Raw({})", d.describe()),
        }
    }
}

/// One exported namespace.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub nsid: u32,
    pub kind: NsKind,
    /// Logical block size in bytes (512 or 4096).
    pub block_size: u32,
    /// Size in logical blocks.
    pub blocks: u64,
    /// Identity reported in Identify (NGUID and UUID).
    pub uuid: [u8; 16],
}

impl Namespace {
    pub fn read_only(&self) -> bool {
        matches!(self.kind, NsKind::View { .. })
    }
    /// log2 of the block size (LBADS).
    pub fn lbads(&self) -> u8 {
        self.block_size.trailing_zeros() as u8
    }
    /// The volume behind a live namespace or a view.
    pub fn volume(&self) -> Option<&Arc<Volume>> {
        match &self.kind {
            NsKind::Live(v) | NsKind::View { volume: v, .. } => Some(v),
            NsKind::Raw(_) => None,
        }
    }
}

/// An immutable set of namespaces, by NSID.
#[derive(Debug, Default)]
pub struct NsTable {
    pub version: u64,
    by_id: BTreeMap<u32, Arc<Namespace>>,
}

impl NsTable {
    pub fn get(&self, nsid: u32) -> Option<&Arc<Namespace>> {
        self.by_id.get(&nsid)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Namespace>> {
        self.by_id.values()
    }
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
    /// The highest NSID present (Identify Controller's NN is at least this).
    pub fn max_nsid(&self) -> u32 {
        self.by_id.keys().next_back().copied().unwrap_or(0)
    }
}

/// The current table of a subsystem: readers load an atomic version and only
/// take the (control-path) lock when it moved.
#[derive(Debug)]
pub struct NsSlot {
    version: AtomicU64,
    table: AuditedMutex<Arc<NsTable>>,
}

impl Default for NsSlot {
    fn default() -> Self {
        NsSlot {
            version: AtomicU64::new(0),
            table: AuditedMutex::new(Arc::new(NsTable::default())),
        }
    }
}

/// Why a table change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NsChangeError {
    #[error("namespace ID {0} is reserved")]
    ReservedId(u32),
    #[error("namespace ID {0} is already in use")]
    InUse(u32),
    #[error("no namespace with ID {0}")]
    NotFound(u32),
}

impl NsSlot {
    /// The version of the current table (cheap: one atomic load).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
    /// The current table.
    pub fn load(&self) -> Arc<NsTable> {
        let guard = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }
    /// Refreshes `cached` when the table changed since it was loaded.
    pub fn refresh(&self, cached: &mut Arc<NsTable>) {
        if self.version() != cached.version {
            *cached = self.load();
        }
    }
    /// Publishes a copy of the table with `f` applied.
    fn change(
        &self,
        f: impl FnOnce(&mut BTreeMap<u32, Arc<Namespace>>) -> Result<(), NsChangeError>,
    ) -> Result<(), NsChangeError> {
        let mut guard = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut by_id = guard.by_id.clone();
        f(&mut by_id)?;
        let version = guard.version + 1;
        *guard = Arc::new(NsTable { version, by_id });
        self.version.store(version, Ordering::Release);
        Ok(())
    }
    /// Adds `ns` under its NSID.
    pub fn add(&self, ns: Namespace) -> Result<(), NsChangeError> {
        let nsid = ns.nsid;
        if nsid == 0 || nsid == u32::MAX {
            return Err(NsChangeError::ReservedId(nsid));
        }
        self.change(|t| {
            if t.contains_key(&nsid) {
                return Err(NsChangeError::InUse(nsid));
            }
            t.insert(nsid, Arc::new(ns));
            Ok(())
        })
    }
    /// Removes namespace `nsid`.
    pub fn remove(&self, nsid: u32) -> Result<Arc<Namespace>, NsChangeError> {
        let mut removed = None;
        self.change(|t| {
            removed = t.remove(&nsid);
            removed
                .as_ref()
                .map(|_| ())
                .ok_or(NsChangeError::NotFound(nsid))
        })?;
        removed.ok_or(NsChangeError::NotFound(nsid))
    }
    /// The lowest free NSID from 2 up (1 is the live volume by convention).
    pub fn free_id(&self) -> u32 {
        let table = self.load();
        (2..u32::MAX)
            .find(|id| table.get(*id).is_none())
            .unwrap_or(u32::MAX)
    }
}
