//! Tests of the host library: the sans-IO core against scripted targets
//! ([`core`], with [`peer`] as the hand-driven target end).

mod core;
mod peer;
