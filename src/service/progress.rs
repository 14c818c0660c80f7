//! Progress of a volume's long start-up steps — zeroing the mirror of a new
//! volume, scanning the journals when it opens — shown the way the CLI shows
//! an export ([`crate::cli::progress`]): a bar when stderr is a terminal,
//! a plain line every few seconds otherwise.
//!
//! Only steps that are still running after [`SHOW_AFTER`] are shown, so a
//! small volume opens without noise. Invariant: at most one step is shown at
//! a time, and a shown step is finished (its last line printed, or its bar
//! cleared) before the next one starts.

use crate::cli::progress::Progress;
use crate::engine::ProgressHook;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a step runs before it gets a progress display.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

struct Step {
    what: String,
    started: Instant,
    done: u64,
    shown: Option<Progress>,
}

/// A hook reporting `volume`'s steps (see the module documentation).
pub fn hook(volume: &str) -> ProgressHook {
    let volume = volume.to_string();
    let current: Mutex<Option<Step>> = Mutex::new(None);
    ProgressHook(Arc::new(move |what: &str, done: u64, total: u64| {
        let mut cur = current.lock().unwrap_or_else(PoisonError::into_inner);
        if cur.as_ref().is_none_or(|s| s.what != what) {
            if let Some(shown) = cur.take().and_then(|s| s.shown) {
                shown.finish();
            }
            *cur = Some(Step {
                what: what.to_string(),
                started: Instant::now(),
                done: 0,
                shown: None,
            });
        }
        let Some(step) = cur.as_mut() else {
            return;
        };
        if step.shown.is_none() && step.started.elapsed() >= SHOW_AFTER {
            let mut p = Progress::new(&format!("volume {volume}: {what}"), total);
            p.advance(step.done);
            step.shown = Some(p);
        }
        if let Some(p) = step.shown.as_mut() {
            p.advance(done.saturating_sub(step.done));
        }
        step.done = done;
        if done >= total {
            if let Some(shown) = cur.take().and_then(|s| s.shown) {
                shown.finish();
            }
        }
    }))
}
