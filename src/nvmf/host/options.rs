//! What a host asks for when it connects ([`ConnectOptions`]) and what it
//! learned about the controller once connected ([`ControllerLimits`]).
//!
//! Invariant: the defaults are those of a conforming host that talks to any
//! target: a random host id, the host NQN derived from it the way Linux
//! does (`nqn.2014-08.org.nvmexpress:uuid:<hostid>`), no digests.

use std::time::Duration;

/// Connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub hostnqn: String,
    pub hostid: [u8; 16],
    /// I/O queues to create (the controller may grant fewer).
    pub io_queues: u16,
    /// Commands in flight per I/O queue (clamped to CAP.MQES and MAXCMD).
    pub queue_depth: u16,
    /// Keep alive timeout; zero disables it. The blocking client sends a
    /// Keep Alive when half of it has passed, from any call or
    /// [`super::Controller::tick`].
    pub kato: Duration,
    pub hdr_digest: bool,
    pub data_digest: bool,
    /// Bound on connecting and on every command.
    pub timeout: Duration,
}

impl ConnectOptions {
    /// The host NQN Linux derives from a host id.
    pub fn hostnqn_for(hostid: &[u8; 16]) -> String {
        format!(
            "nqn.2014-08.org.nvmexpress:uuid:{}",
            uuid::Uuid::from_bytes(*hostid).hyphenated()
        )
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        let hostid = *uuid::Uuid::new_v4().as_bytes();
        ConnectOptions {
            hostnqn: Self::hostnqn_for(&hostid),
            hostid,
            io_queues: 1,
            queue_depth: 32,
            kato: Duration::from_secs(30),
            hdr_digest: false,
            data_digest: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the controller allows, from CAP and Identify Controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerLimits {
    /// Controller id (from the admin Connect).
    pub cntlid: u16,
    /// Controller type (1 I/O, 2 discovery, 3 administrative; 0 unreported).
    pub cntrltype: u8,
    /// Largest data transfer of one command, `None` when unlimited.
    pub max_transfer: Option<u32>,
    /// In-capsule write data on I/O queues (0 when the target takes none
    /// or puts it at a non-zero offset).
    pub io_in_capsule: u32,
    /// Commands in flight per I/O queue.
    pub io_depth: u16,
    /// Number of namespaces (highest NSID).
    pub nn: u32,
    /// Optional NVM commands supported (Identify Controller ONCS).
    pub oncs: u16,
    /// Volatile write cache present.
    pub vwc: bool,
    /// Keep alive granularity, 100 ms units.
    pub kas: u16,
    /// SGL support (Identify Controller SGLS).
    pub sgls: u32,
}
