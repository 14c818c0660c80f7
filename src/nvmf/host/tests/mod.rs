//! Tests of the host library: the sans-IO core against scripted targets
//! ([`core`], with [`peer`] as the hand-driven target end), the blocking
//! client against an in-memory fake controller ([`client`], [`fake`]), and
//! one bounded loopback TCP run ([`loopback`]).

mod client;
mod core;
mod fake;
mod loopback;
mod peer;
