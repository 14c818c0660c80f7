//! Pinned points: points in time something depends on (a view exported to
//! hosts, an export in progress), which the sync and retention must keep.
//!
//! A pin does two things. A sync that crosses a pinned point rests the mirror
//! on it (cuts a step there, as at a bookmark), so the point becomes a
//! generation instead of dissolving into the sync's net change. And voluntary
//! retention (`keep_last`, `min_free_percent`) stops at the oldest pinned
//! point instead of expiring it. Forced expiry — a backward journal with no
//! room for the next sync — still goes ahead, because refusing it would stop
//! the volume's writes; it says so in a warning and an `Expired` event.
//!
//! Invariant: a pin exists only for a point that was retained when the sync
//! worker took it (pins are taken by the worker, between syncs, so no sync
//! can be halfway past the point); dropping the [`PointPin`] releases it.

use super::state::VolumeState;
use crate::lock_audit::AuditedMutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Pinned seqs of one volume, with how many holders each has.
#[derive(Debug, Default)]
pub struct Pins {
    held: AuditedMutex<BTreeMap<u64, usize>>,
}

impl Pins {
    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one holder of `seq` (the sync worker, after checking the point).
    pub(crate) fn add(&self, seq: u64) {
        *self.held().entry(seq).or_insert(0) += 1;
    }

    fn release(&self, seq: u64) {
        let mut held = self.held();
        match held.get_mut(&seq) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                held.remove(&seq);
            }
            None => debug_assert!(false, "released pin {seq} was not held"),
        }
    }

    /// Pinned seqs with `above < seq <= max`, oldest first.
    pub fn within(&self, above: u64, max: u64) -> Vec<u64> {
        if above >= max {
            return Vec::new();
        }
        self.held()
            .range(above + 1..=max)
            .map(|(s, _)| *s)
            .collect()
    }

    /// The oldest pinned seq, if any.
    pub fn oldest(&self) -> Option<u64> {
        self.held().keys().next().copied()
    }

    /// Every pinned seq, oldest first.
    pub fn all(&self) -> Vec<u64> {
        self.held().keys().copied().collect()
    }
}

/// One holder's pin on a point; the point stays pinned until every holder's
/// `PointPin` is dropped.
#[derive(Debug)]
pub struct PointPin {
    state: Arc<VolumeState>,
    seq: u64,
}

impl PointPin {
    pub(crate) fn new(state: Arc<VolumeState>, seq: u64) -> PointPin {
        PointPin { state, seq }
    }

    /// The pinned point's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for PointPin {
    fn drop(&mut self) {
        self.state.pins.release(self.seq);
    }
}
