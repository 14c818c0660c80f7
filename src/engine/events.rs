//! Things an operator must be told about: expiry, syncs, recovery, failure.
//! Each is logged through `tracing` and delivered to every subscriber.
//!
//! Invariant: a generation disappears from `points()` only with an
//! [`Event::Expired`], sent by the sync worker right after the generation left
//! the map and before it serves any request: a reader may see the generation
//! gone a moment before the event arrives, but the reply to any later request
//! to the worker (a `pin`, a `sync_now`) comes after it.

use super::point::Point;
use crate::lock_audit::AuditedMutex;
use std::sync::mpsc::{channel, Receiver, Sender};

/// A notable change in a volume's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A snapshot generation expired, oldest first. `forced` when the backward
    /// journal had no room (retention policy could not be honoured). Delivered
    /// at least once: it is announced before the checkpoint that makes it
    /// final, so after a crash in between the generation is back (still exact)
    /// and is announced again when it expires again. Sent just after the
    /// generation left `points()` (see the module invariant).
    Expired {
        generation: u64,
        point: Point,
        forced: bool,
    },
    /// A sync moved the mirror forward.
    Synced {
        from_seq: u64,
        to_seq: u64,
        generations: Vec<u64>,
        changed_blocks: u64,
    },
    /// The volume was opened after a crash or an unclean stop.
    Recovered(RecoveryReport),
    /// The volume failed (I/O error) and accepts no more writes.
    Failed { message: String },
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The mirror's seq once recovery finished.
    pub mirror_seq: u64,
    /// Per ring (writer rings, then the control ring): the newest seq found on
    /// disk, 0 when the ring holds nothing newer than the mirror. A ring
    /// recovers a prefix of what it wrote, so a write that failed with seq `s`
    /// on ring `r` survived exactly when `s <= newest_seq_per_ring[r]`.
    pub newest_seq_per_ring: Vec<u64>,
    /// Forward records replayed into the maps.
    pub forward_records: u64,
    /// Generations found in the backward journal.
    pub generations: u64,
    /// Rings whose scan stopped at a torn or damaged block (normal after a crash).
    pub torn_rings: Vec<u16>,
    /// Records found beyond a damaged block and dropped (never acknowledged
    /// after a crash; lost data if the device damaged acknowledged blocks).
    pub dropped_records: u64,
    /// A sync interrupted after its generation was committed was completed.
    pub completed_sync_to: Option<u64>,
    /// The generation chain was broken by damage while the mirror may have been
    /// mid-rewrite, so the mirror was rebuilt from every recovered forward
    /// record up to this seq: the live volume is exact; every point before it
    /// is lost (see `lost_generations`).
    pub mirror_rebuilt_to: Option<u64>,
    /// Generations that were committed but could not be read back: their points,
    /// and every older one, are reported lost.
    pub lost_generations: Vec<u64>,
    /// The mirror could not be brought forward because forward records the last
    /// generation relies on are missing (device damage); reads of the live
    /// volume may be wrong and the volume is marked failed.
    pub mirror_incomplete: bool,
}

/// Subscriber list.
#[derive(Debug, Default)]
pub struct Events {
    subscribers: AuditedMutex<Vec<Sender<Event>>>,
}

impl Events {
    /// A new receiver of every event from now on.
    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// Logs `event` and delivers it; subscribers that hung up are dropped.
    pub fn emit(&self, event: Event) {
        match &event {
            Event::Expired {
                generation,
                point,
                forced,
            } => tracing::info!(
                generation,
                seq = point.seq,
                time_ns = point.time_ns,
                forced,
                "snapshot generation expired"
            ),
            Event::Synced {
                from_seq,
                to_seq,
                generations,
                changed_blocks,
            } => tracing::debug!(
                from_seq,
                to_seq,
                ?generations,
                changed_blocks,
                "mirror moved forward"
            ),
            Event::Recovered(r) => tracing::info!(?r, "volume recovered"),
            Event::Failed { message } => tracing::error!(%message, "volume failed"),
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| s.send(event.clone()).is_ok());
    }
}
