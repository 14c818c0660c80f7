//! Points in time: how a caller names one ([`At`]) and what the engine lists
//! and resolves ([`Point`]).
//!
//! A point is a `seq`: the state of the volume after every write with a
//! sequence number at or below it. Inside the forward window every write is a
//! point; older than the mirror, the retained points are the snapshot
//! generations. Invariant: a listed point reads back byte-exact until it is
//! expired by retention or coalesced by a sync, and `resolve` always says which
//! actual point serves a request.

use serde::{Deserialize, Serialize};

/// Largest label, in bytes, a marker can carry (stored inline in its descriptor).
pub const MAX_LABEL_BYTES: usize = 40;

/// Why a marker (consistency point) was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// The volume was formatted (the initial point, seq 0).
    Format,
    /// A host Flush: every earlier write is durable.
    Flush,
    /// A named bookmark (e.g. from a database hook); survives every sync as its own snapshot.
    Bookmark,
    /// Inserted by the engine on a timer or to give a sync a target.
    Periodic,
}

impl MarkerKind {
    /// On-disk code of an optional marker kind (0: a write point).
    pub(crate) fn code_of(kind: Option<Self>) -> u8 {
        kind.map_or(0, Self::code)
    }

    /// Decodes an optional marker kind; `Err(())` for an unknown code.
    pub(crate) fn optional_from_code(code: u8) -> std::result::Result<Option<Self>, ()> {
        if code == 0 {
            Ok(None)
        } else {
            Self::from_code(code).map(Some).ok_or(())
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            MarkerKind::Format => 4,
            MarkerKind::Flush => 1,
            MarkerKind::Bookmark => 2,
            MarkerKind::Periodic => 3,
        }
    }
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => MarkerKind::Flush,
            2 => MarkerKind::Bookmark,
            3 => MarkerKind::Periodic,
            4 => MarkerKind::Format,
            _ => return None,
        })
    }
}

/// What a listed point is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// A write (or write-zeroes) inside the forward window.
    Write,
    /// A marker inside the forward window.
    Marker(MarkerKind),
    /// The state the mirror holds (the target of the last sync); `marker` is
    /// `None` when that point is a write rather than a marker.
    Mirror { marker: Option<MarkerKind> },
    /// A retained snapshot generation (undo data in the backward journal).
    Snapshot {
        generation: u64,
        marker: Option<MarkerKind>,
    },
}

/// One retained point in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Sequence number: the state after every write with `seq <= this`.
    pub seq: u64,
    /// Wall-clock time of the point, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub kind: PointKind,
    /// Marker label, when the point is a labelled marker.
    pub label: Option<String>,
}

/// How a caller asks for a point in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum At {
    /// The live volume: every acknowledged write.
    Now,
    /// The retained point with this seq, or the newest retained point before it.
    Seq(u64),
    /// The newest retained point at or before this wall-clock time (ns since the epoch).
    Time(u64),
    /// The newest retained marker with this label.
    Label(String),
}

/// Checks a marker label: non-empty, at most [`MAX_LABEL_BYTES`].
pub fn check_label(label: &str) -> super::error::Result<()> {
    if label.is_empty() {
        return Err(super::error::EngineError::EmptyLabel);
    }
    if label.len() > MAX_LABEL_BYTES {
        return Err(super::error::EngineError::LabelTooLong {
            len: label.len(),
            max: MAX_LABEL_BYTES,
        });
    }
    Ok(())
}
