//! `retention_set`: changing how long a volume keeps its snapshot
//! generations, applied by the engine at once and kept in the catalog so a
//! restart applies it again.
//!
//! Invariant: the engine, the served volume's copy and the catalog agree on
//! the policy after a successful call; on failure the policy is unchanged
//! (the catalog is written only after the engine accepted the policy, and a
//! catalog failure puts the previous policy back).

use super::{Appliance, ApplianceError};
use crate::engine::Retention;
use std::time::Duration;

/// Changes to a retention policy; `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionChange {
    pub keep_at_least: Option<Duration>,
    /// `Some(0)` removes the limit.
    pub keep_last: Option<u64>,
    pub min_free_percent: Option<u8>,
}

impl Appliance {
    /// Applies `change` to volume `name`; returns the policy now in force.
    pub fn retention_set(
        &self,
        name: &str,
        change: &RetentionChange,
    ) -> Result<Retention, ApplianceError> {
        let (served, volume) = self.volume(name)?;
        if change.min_free_percent.is_some_and(|p| p > 90) {
            return Err(ApplianceError::InvalidParams(
                "min_free_percent: 0 to 90".into(),
            ));
        }
        let mut policy = served.retention();
        let before = policy.clone();
        let mut next = before.clone();
        if let Some(d) = change.keep_at_least {
            next.keep_at_least = d;
        }
        if let Some(n) = change.keep_last {
            next.keep_last = (n > 0).then_some(n);
        }
        if let Some(p) = change.min_free_percent {
            next.min_free_percent = p;
        }
        volume
            .set_retention(next.clone())
            .map_err(|e| ApplianceError::engine(name, e))?;
        let mut catalog = self.catalog();
        let mut saved = catalog.clone();
        saved.retention.insert(name.to_string(), next.clone());
        if let Err(e) = saved.save(&self.dir.catalog_path()) {
            let _ = volume.set_retention(before);
            return Err(ApplianceError::Io {
                what: "update the catalog".into(),
                detail: e.to_string(),
            });
        }
        *catalog = saved;
        *policy = next.clone();
        tracing::info!(volume = name, ?next, "retention policy set");
        Ok(next)
    }
}
